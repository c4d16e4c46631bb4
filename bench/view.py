"""The live view's CPU at a steady record rate, `python -m bench.view` (the bound: under 5% of one core at 1,000/s).

It starts the project's broker on free ports (or uses KAFKA_BOOTSTRAP_SERVERS), runs `job view` as a process of its own
with one page connected to its event stream, keeps a RUNNING status document fresh, and produces records in the job's
exact output format (1% dead letters) at `--rate` for `--seconds`. It reads the view's CPU time from /proc over the
measured window (after `--warmup`), checks at the end that /api/summary counted every record, and writes
bench/results/view-<UTC timestamp>.json. Also measured: the same view idle (no records), for the fixed cost.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from job.tools.broker import BrokerConfig, LocalBroker
from job.tools.deps import PROJECT_ROOT
from job.tools.processes import cpu_seconds, free_port, rss_bytes

MODEL_VERSION = "bench"


def iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def output_record(offset: int) -> tuple[bytes, bytes]:
    """A scored record as the job writes it (README: Output records)."""
    label = "POSITIVE" if offset % 3 else "NEGATIVE"
    doc = {
        "id": offset,
        "text": f"benchmark tweet number {offset}, neither here nor there but about as long as a real one",
        "prediction": 1.0 if label == "POSITIVE" else 0.0,
        "predictedLabel": label,
        "probability": 0.5 + (offset % 50) / 100,
        "modelName": "Sentiment Prediction",
        "modelVersion": MODEL_VERSION,
        "scoredAt": iso(time.time()),
        "sourceTopic": "tweets",
        "sourcePartition": offset % 2,
        "sourceOffset": offset // 2,
    }
    return str(offset).encode(), json.dumps(doc).encode()


def dead_letter(offset: int) -> bytes:
    doc = {
        "errorCode": "NOT_JSON",
        "errorReason": "the value is not valid JSON",
        "deployment": "bench-view",
        "sourceTopic": "tweets",
        "sourcePartition": offset % 2,
        "sourceOffset": offset // 2,
        "sourceTimestamp": iso(time.time()),
        "rejectedAt": iso(time.time()),
        "key": None,
        "keyEncoding": None,
        "value": "{oops",
        "valueEncoding": "utf-8",
    }
    return json.dumps(doc).encode()


def write_status(state_dir: Path, records: int) -> None:
    now = iso(time.time())
    doc = {
        "schema_version": 1,
        "deployment": "bench-view",
        "state": "RUNNING",
        "reason": None,
        "updated_at": now,
        "started_at": now,
        "pid": None,
        "host": None,
        "model": {"name": "Sentiment Prediction", "version": MODEL_VERSION},
        "progress": {"batch_id": records, "input_rows_per_second": 1000.0, "offsets_behind_latest": 0},
        "heartbeat_at": now,
        "totals": {"records_in": records, "records_scored": records, "records_dead_lettered": 0},
        "last_error": None,
    }
    tmp = state_dir / ".status.json.tmp"
    tmp.write_text(json.dumps(doc))
    os.replace(tmp, state_dir / "status.json")


def get_json(port: int, path: str) -> Any:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path)
        return json.loads(connection.getresponse().read())
    finally:
        connection.close()


def page_reader(port: int, stop: threading.Event, seen: list[int]) -> None:
    """One open page: reads every server-sent event, as a browser would."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request("GET", "/api/events")
    response = connection.getresponse()
    while not stop.is_set():
        line = response.fp.readline()
        if not line:
            return
        if line.startswith(b"data: "):
            seen[0] += 1
    connection.close()


def measure(args: argparse.Namespace, bootstrap: str, work: Path) -> dict[str, Any]:
    from kafka import KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic

    tag = f"{int(time.time())}"
    out, dlq = f"bench-view-out-{tag}", f"bench-view-dlq-{tag}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([NewTopic(out, 2, 1), NewTopic(dlq, 1, 1)])
    admin.close()
    state = work / "state"
    state.mkdir()
    write_status(state, 0)
    spec = work / "spec.yaml"
    connection = {"bootstrap_servers": [bootstrap]}
    spec.write_text(
        json.dumps(
            {
                "name": "bench-view",
                "type": "stream",
                "input": {"connection": connection, "source": {"topic": "tweets", "type": "kafka"}},
                "output": {"connection": connection, "target": {"topic": out, "type": "kafka"}},
                "dead_letter": {"topic": dlq},
                "model": {"location": str(PROJECT_ROOT / "models" / "sentiment-prediction")},
                "checkpoint_location": str(work / "checkpoint"),
                "state_location": str(state),
                "options": {"trigger": {"processing_time": "1 second"}},
            }
        )
    )
    view = subprocess.Popen(
        [sys.executable, "-m", "job.view", "--spec", str(spec), "--since", "now"],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    stop = threading.Event()
    try:
        line = view.stdout.readline() if view.stdout else ""
        port = int(line.split("http://127.0.0.1:", 1)[1].split("/", 1)[0])
        events = [0]
        page = threading.Thread(target=page_reader, args=(port, stop, events), daemon=True)
        page.start()
        time.sleep(3)  # start-up (imports, first metadata) is not part of either figure

        cpu0, t0 = cpu_seconds(view.pid), time.monotonic()
        deadline = t0 + args.idle_seconds
        while time.monotonic() < deadline:
            write_status(state, 0)
            time.sleep(1)
        idle = {"seconds": time.monotonic() - t0, "cpu_seconds": cpu_seconds(view.pid) - cpu0}

        producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, acks=1)
        sent = dead = 0
        tick = 0.01
        start = time.monotonic()
        measured: dict[str, float] = {}
        next_status = start
        while True:
            now = time.monotonic()
            elapsed = now - start
            if elapsed >= args.warmup and not measured:
                measured = {"cpu": cpu_seconds(view.pid), "t": now, "sent": sent + dead}
            if elapsed >= args.warmup + args.seconds:
                break
            due = int(elapsed * args.rate) + 1
            while sent + dead < due:
                offset = sent + dead
                if offset % 100 == 99:
                    producer.send(dlq, dead_letter(offset))
                    dead += 1
                else:
                    key, value = output_record(offset)
                    producer.send(out, key=key, value=value)
                    sent += 1
            if now >= next_status:
                write_status(state, sent + dead)
                next_status += 1.0
            time.sleep(max(0.0, start + (int(elapsed / tick) + 1) * tick - time.monotonic()))
        cpu_end, t_end = cpu_seconds(view.pid), time.monotonic()
        producer.flush()
        producer.close()
        window = t_end - measured["t"]
        records_in_window = sent + dead - measured["sent"]
        # The view must have kept up: every record counted, once.
        summary: dict[str, Any] = {}
        wait_until = time.monotonic() + 60
        while time.monotonic() < wait_until:
            summary = get_json(port, "/api/summary")
            if summary["totals"]["scored"] + summary["totals"]["dead_lettered"] >= sent + dead:
                break
            time.sleep(0.5)
        result = {
            "rate_target": args.rate,
            "rate_produced": records_in_window / window,
            "window_s": window,
            "view_cpu_seconds": cpu_end - measured["cpu"],
            "view_cpu_percent_of_one_core": 100 * (cpu_end - measured["cpu"]) / window,
            "idle_cpu_percent_of_one_core": 100 * idle["cpu_seconds"] / idle["seconds"],
            "view_rss_mib": rss_bytes(view.pid) / 2**20,
            "sent": {"scored": sent, "dead_lettered": dead},
            "view_counted": {
                "scored": summary["totals"]["scored"],
                "dead_lettered": summary["totals"]["dead_lettered"],
                "duplicates": summary["records"]["duplicate"],
            },
            "events_received_by_the_page": events[0],
        }
        result["kept_up"] = result["view_counted"]["scored"] == sent and result["view_counted"]["dead_lettered"] == dead
        return result
    finally:
        stop.set()
        view.terminate()
        view.wait(timeout=30)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=1000, help="records per second (default 1000)")
    parser.add_argument("--seconds", type=float, default=60, help="measured seconds (default 60)")
    parser.add_argument("--warmup", type=float, default=10, help="seconds before measuring (default 10)")
    parser.add_argument("--idle-seconds", type=float, default=10, help="seconds measured idle first (default 10)")
    parser.add_argument("--results-dir", type=Path, default=PROJECT_ROOT / "bench" / "results")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-view-") as tmp:
        work = Path(tmp)
        external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        broker = None
        if external:
            bootstrap = external
        else:
            broker = LocalBroker(BrokerConfig(run_dir=work / "kafka", port=free_port(), controller_port=free_port()))
            bootstrap = broker.start(timeout_s=120)
        try:
            result = measure(args, bootstrap, work)
        finally:
            if broker is not None:
                broker.stop()
    result["load_average"] = os.getloadavg()
    args.results_dir.mkdir(parents=True, exist_ok=True)
    path = args.results_dir / f"view-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(
        f"job view at {result['rate_produced']:.0f} records/s for {result['window_s']:.0f} s: "
        f"{result['view_cpu_percent_of_one_core']:.2f}% of one core "
        f"(idle: {result['idle_cpu_percent_of_one_core']:.2f}%), RSS {result['view_rss_mib']:.0f} MiB, "
        f"kept up: {result['kept_up']} ({result['view_counted']}), page events: "
        f"{result['events_received_by_the_page']}; load average {result['load_average'][0]:.1f}\n{path}"
    )
    return 0 if result["kept_up"] else 1


if __name__ == "__main__":
    sys.exit(main())
