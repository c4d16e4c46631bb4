"""End-to-end latency at a steady input rate, micro-batch trigger versus Spark's real-time mode.

A driver process (`python -m bench.latency`) produces `{"id", "text"}` messages keyed by their id at a
fixed rate and keeps each id's send time; a thread of the same process consumes the output and the
dead-letter topics and notes when each id arrives (the job keys a scored record by its id and a dead letter
by the original key; a tweet without a feature is a NO_FEATURES dead letter, answered all the same). Both
clocks are CLOCK_MONOTONIC. Messages sent during the warm-up are left out of the figures.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

PROBE_ID = -1
PERCENTILES = (50, 95, 99)
# "Keeps up": every message from then on answered within a second (the figures' own targets are far lower).
KEEP_UP_MS = 1000.0


# ------------------------------------------------------------------------------------------ arithmetic


def percentile(values: np.ndarray, p: float) -> float:
    """Nearest-rank percentile: the smallest value with at least p% of the values at or below it."""
    if len(values) == 0:
        raise ValueError("percentile of no values")
    ordered = np.sort(values)
    rank = math.ceil(Fraction(str(p)) * len(ordered) / 100)  # exact, no 0.95 * 1000 = 949.99... surprises
    return float(ordered[min(max(rank, 1), len(ordered)) - 1])


def first_arrivals(sent: Mapping[int, int], received: Iterable[tuple[int, int]]) -> dict[int, int]:
    """When each sent id first arrived (a replayed record can arrive twice; the first answer counts)."""
    first: dict[int, int] = {}
    for ident, at in received:
        if ident in sent and (ident not in first or at < first[ident]):
            first[ident] = at
    return first


def latency_stats(
    sent: Mapping[int, int], received: Iterable[tuple[int, int]], start_ns: int, warmup_s: float
) -> dict[str, Any]:
    """Latency figures (ms) of the messages sent after the warm-up; the first arrival of an id counts."""
    first = first_arrivals(sent, received)
    cutoff = start_ns + int(warmup_s * 1e9)
    measured_ids = [i for i, at in sent.items() if at >= cutoff]
    arrived = [i for i in measured_ids if i in first]
    latencies = np.array([(first[i] - sent[i]) / 1e6 for i in arrived], dtype=np.float64)
    stats: dict[str, Any] = {
        "sent": len(sent),
        "warmup_messages": len(sent) - len(measured_ids),
        "measured": len(arrived),
        "missing": len(measured_ids) - len(arrived),
    }
    if len(latencies) == 0:
        stats.update({f"p{p}_ms": None for p in PERCENTILES} | {"max_ms": None, "min_ms": None, "mean_ms": None})
        return stats
    stats.update({f"p{p}_ms": percentile(latencies, p) for p in PERCENTILES})
    stats.update(
        {"max_ms": float(latencies.max()), "min_ms": float(latencies.min()), "mean_ms": float(latencies.mean())}
    )
    return stats


def caught_up_after(
    sent: Mapping[int, int], received: Iterable[tuple[int, int]], start_ns: int, bound_ms: float = KEEP_UP_MS
) -> float | None:
    """Seconds from the first message sent to the send time of the first message from which on every message
    was answered within `bound_ms`: how long the job took to keep up. None when the last one was late too."""
    first = first_arrivals(sent, received)
    order = sorted(sent, key=sent.__getitem__)
    late = [k for k, i in enumerate(order) if i not in first or (first[i] - sent[i]) / 1e6 > bound_ms]
    if not late:
        return 0.0
    if late[-1] == len(order) - 1:
        return None
    return (sent[order[late[-1] + 1]] - start_ns) / 1e9


def latency_series(sent: Mapping[int, int], received: Iterable[tuple[int, int]], start_ns: int) -> np.ndarray:
    """(seconds since start, latency ms) per arrived message, first arrivals, in send order (for plots)."""
    first = first_arrivals(sent, received)
    rows = sorted(((sent[i] - start_ns) / 1e9, (at - sent[i]) / 1e6) for i, at in first.items())
    return np.array(rows, dtype=np.float64).reshape(-1, 2)


def driver_stats(result: Mapping[str, Any], rate: float, duration_s: float, warmup_s: float) -> dict[str, Any]:
    """The figures of one driver run: latency after the warm-up, time to keep up, dead letters, send pacing."""
    sent = {int(i): int(at) for i, at in result["sent"]}
    received = [(int(i), int(at)) for i, at in result["received"]]
    stats = latency_stats(sent, received, result["start_ns"], warmup_s)
    caught_up = caught_up_after(sent, received, result["start_ns"])
    stats.update(
        {
            "rate": rate,
            "duration_s": duration_s,
            "warmup_s": warmup_s,
            "kept_up_after_s": None if caught_up is None else round(caught_up, 2),
            "keep_up_bound_ms": KEEP_UP_MS,
            "dead_lettered": len(result.get("dead_lettered", [])),
            "achieved_rate": result["achieved_rate"],
            "worst_send_lag_ms": result["worst_send_lag_ms"],
            "probe_round_trip_ms": result["probe_ms"],
        }
    )
    return stats


# ---------------------------------------------------------------------------------------------- driver


def drive(
    bootstrap: str,
    input_topic: str,
    output_topic: str,
    dead_letter_topic: str,
    texts: Sequence[str],
    rate: float,
    duration_s: float,
    grace_s: float,
    probe_timeout_s: float,
) -> dict[str, Any]:
    """Send a probe and wait for it (the query is live), then send at `rate` for `duration_s`."""
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    received: list[tuple[int, int]] = []
    dead_letters: list[int] = []
    lock = threading.Lock()
    stop = threading.Event()
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, fetch_max_wait_ms=20, check_crcs=False
    )
    partitions = [
        TopicPartition(topic, p)
        for topic in (output_topic, dead_letter_topic)
        for p in sorted(consumer.partitions_for_topic(topic) or [])
    ]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)

    def consume() -> None:
        while not stop.is_set():
            polled = consumer.poll(timeout_ms=20)
            now = time.monotonic_ns()
            batch = [(int(r.key), now) for records in polled.values() for r in records if r.key is not None]
            dead = [int(r.key) for tp, records in polled.items() if tp.topic == dead_letter_topic for r in records]
            if batch:
                with lock:
                    received.extend(batch)
                    dead_letters.extend(dead)

    thread = threading.Thread(target=consume, name="latency-consumer", daemon=True)
    thread.start()
    # linger 5 ms, as a producer at this rate would batch: each record sent alone cost this process most of a
    # core on a 2-core machine, taken from the job under test. The send time is taken at send(), so the
    # linger counts in the latency.
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks=1, linger_ms=5)
    sent: dict[int, int] = {}
    try:
        probe_sent = time.monotonic_ns()
        probe = json.dumps({"id": PROBE_ID, "text": "probe"}).encode()
        producer.send(input_topic, key=str(PROBE_ID).encode(), value=probe).get(timeout=30)
        deadline = time.monotonic() + probe_timeout_s
        while time.monotonic() < deadline:
            with lock:
                probe_at = next((at for ident, at in received if ident == PROBE_ID), None)
            if probe_at is not None:
                break
            time.sleep(0.01)
        else:
            raise RuntimeError(f"the probe message did not come back within {probe_timeout_s:.0f} s")
        total = int(rate * duration_s)
        interval_ns = 1e9 / rate
        start = time.monotonic_ns()
        worst_lag_ns = 0
        for i in range(total):
            target = start + int(i * interval_ns)
            now = time.monotonic_ns()
            if target > now:
                time.sleep((target - now) / 1e9)
                now = time.monotonic_ns()
            worst_lag_ns = max(worst_lag_ns, now - target)
            sent[i] = now
            value = json.dumps({"id": i, "text": texts[i % len(texts)]}).encode()
            producer.send(input_topic, key=str(i).encode(), value=value)
        producer.flush()
        send_seconds = (time.monotonic_ns() - start) / 1e9
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            with lock:
                if len({ident for ident, _ in received}) >= total + 1:
                    break
            time.sleep(0.05)
    finally:
        stop.set()
        thread.join(timeout=5)
        producer.close()
        consumer.close()
    with lock:
        arrivals = [(ident, at) for ident, at in received if ident != PROBE_ID]
        dead_lettered = sorted(set(dead_letters) - {PROBE_ID})
    return {
        "start_ns": start,
        "probe_ms": round((probe_at - probe_sent) / 1e6, 1),
        "sent": [[i, at] for i, at in sent.items()],
        "received": arrivals,
        "dead_lettered": dead_lettered,
        "achieved_rate": round(total / send_seconds, 1),
        "worst_send_lag_ms": round(worst_lag_ns / 1e6, 1),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.latency", description="latency driver (one run)")
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--input-topic", required=True)
    parser.add_argument("--output-topic", required=True)
    parser.add_argument("--dead-letter-topic", required=True)
    parser.add_argument("--texts", required=True, type=Path, help="JSON list of tweet texts")
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--duration", type=float, required=True)
    parser.add_argument("--grace", type=float, default=30.0)
    parser.add_argument("--probe-timeout", type=float, default=120.0)
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    texts = json.loads(args.texts.read_text())
    result = drive(
        args.bootstrap, args.input_topic, args.output_topic, args.dead_letter_topic, texts, args.rate,
        args.duration, args.grace,
        args.probe_timeout,
    )  # fmt: skip
    args.out.write_text(json.dumps(result))
    return 0


# --------------------------------------------------------------------------------------- orchestration


def run_driver(
    bootstrap: str,
    topics: Any,
    texts_path: Path,
    rate: float,
    duration_s: float,
    workdir: Path,
    tag: str,
    probe_timeout_s: float = 120.0,
) -> dict[str, Any]:
    """Run the driver as its own process (its threads stay clear of the Spark driver's Python)."""
    out = workdir / f"latency-{tag}.json"
    log = workdir / f"latency-{tag}.log"
    from job.tools.deps import PROJECT_ROOT

    with log.open("wb") as log_file:
        proc = subprocess.run(
            [sys.executable, "-m", "bench.latency", "--bootstrap", bootstrap, "--input-topic", topics.source,
             "--output-topic", topics.target, "--dead-letter-topic", topics.dead_letter, "--texts", str(texts_path),
             "--rate", str(rate), "--duration", str(duration_s), "--probe-timeout", str(probe_timeout_s),
             "--out", str(out)],
            cwd=PROJECT_ROOT, stdout=log_file, stderr=subprocess.STDOUT,
            timeout=duration_s + probe_timeout_s + 300, check=False,
        )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"latency driver failed: {log.read_text(errors='replace')[-800:]}")
    return dict(json.loads(out.read_text()))


def measure(
    spark: Any,
    query: Any,
    bootstrap: str,
    topics: Any,
    texts_path: Path,
    rate: float,
    duration_s: float,
    warmup_s: float,
    workdir: Path,
    tag: str,
) -> tuple[dict[str, Any], np.ndarray]:
    """Drive a started query, then stop it: the latency figures and the (time, latency) series."""
    from bench.codegen import CodegenCounter

    codegen = CodegenCounter(spark)
    try:
        result = run_driver(bootstrap, topics, texts_path, rate, duration_s, workdir, tag)
        error = query.exception()
        progress = list(query.recentProgress)
        compiled = codegen.result()
    finally:
        query.stop()
    if error is not None:
        raise RuntimeError(f"the query failed during the latency run: {first_error_line(error)}")
    stats = driver_stats(result, rate, duration_s, warmup_s)
    with_data = [p for p in progress if p.get("numInputRows", 0) > 0]
    durations = [p["batchDuration"] for p in with_data if "batchDuration" in p]
    parts = sorted({k for p in with_data for k in p.get("durationMs", {})})
    stats.update(
        {
            "batches_with_data": len(durations),
            "median_batch_ms": float(np.median(durations)) if durations else None,
            "median_rows_per_batch": float(np.median([p["numInputRows"] for p in with_data])) if with_data else None,
            "batches": len(progress),
            "codegen": compiled,
            "median_duration_ms": {k: float(np.median([p["durationMs"].get(k, 0) for p in with_data])) for k in parts},
            "warmup_batches": warmup_batches(with_data, warmup_s),
        }
    )
    sent = {int(i): int(at) for i, at in result["sent"]}
    received = [(int(i), int(at)) for i, at in result["received"]]
    return stats, latency_series(sent, received, result["start_ns"])


def warmup_batches(progress: Sequence[Mapping[str, Any]], warmup_s: float) -> int:
    """How many of these batches began within `warmup_s` of the first one (their `timestamp`, ISO 8601)."""
    from datetime import datetime

    times = [datetime.fromisoformat(str(p["timestamp"]).replace("Z", "+00:00")) for p in progress]
    if not times:
        return 0
    return sum(1 for t in times if (t - times[0]).total_seconds() < warmup_s)


def wait_started(query: Any, settle_s: float = 10.0) -> str | None:
    """Give a just-started query time to fail on its checks; its error text if it did, else None."""
    deadline = time.monotonic() + settle_s
    while time.monotonic() < deadline:
        if not query.isActive:
            error = query.exception()
            return first_error_line(error) if error is not None else "the query stopped by itself"
        time.sleep(0.2)
    return None


def first_error_line(exc: BaseException) -> str:
    """The error class and message as Spark printed them, without the JVM stack trace."""
    text = str(exc).split("=== Streaming Query ===")[0].strip()
    lines = [line for line in text.splitlines() if line.strip() and not line.strip().startswith("at ")]
    return " ".join(lines[:3])[:1000] if lines else type(exc).__name__


if __name__ == "__main__":
    sys.exit(main())
