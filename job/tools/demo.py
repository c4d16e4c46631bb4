"""`make demo`: the local broker, the job in local mode with config/local.yaml, and tweets scored live."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from job.runtime.connection import kafka_python_config
from job.runtime.spec import load_spec
from job.runtime.status import StateStore, now_iso
from job.runtime.values import DeploymentSpec
from job.tools.broker import BrokerConfig, LocalBroker
from job.tools.deps import PROJECT_ROOT
from job.tools.processes import launch_job, stop_job
from job.view.cli import start_view

logger = logging.getLogger(__name__)

# Written for this demo: plain, sarcastic-free tweets on both sides, plus two that are not tweets at all.
DEMO_TWEETS = [
    "Just finished my first marathon, I feel amazing!",
    "Our new puppy is the sweetest thing ever, so happy",
    "Thanks everyone for the lovely birthday messages :)",
    "The concert last night was incredible, best night of the year",
    "Finally got the job offer, can't stop smiling",
    "Coffee with an old friend this morning, what a great start",
    "Sunny weekend at the lake with the family, perfect",
    "Love this little café, the cake is wonderful",
    "Got a surprise upgrade on my flight, lucky me!",
    "Our team won the final, so proud of everyone",
    "Beautiful sunrise on my walk today",
    "This new album is fantastic, listening on repeat",
    "My phone died again and I lost all my photos, awful",
    "Stuck in traffic for two hours, I hate this commute",
    "Flight delayed, then cancelled. Worst airline ever",
    "Feeling sick and miserable, can't sleep",
    "The package never arrived and support won't answer. Terrible",
    "Rain all week and my umbrella broke, so sad",
    "I failed my driving test again, really disappointed",
    "My laptop crashed and I lost a day of work",
    "Missed the last train home, freezing and tired",
    "So bored and lonely tonight",
    "Broke my wrist falling off my bike, painful",
    "They cancelled my favourite show, gutted",
]
BAD_MESSAGES = [b"this is not JSON", json.dumps({"id": 999, "text": ""}).encode()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--spec", default="config/local.yaml")
    parser.add_argument("--timeout", type=float, default=240.0, help="seconds to wait for the job and the results")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.ERROR)  # the demo's own clients; their warnings are noise here
    spec = load_spec([args.spec])
    assert spec.state_location is not None, "the demo spec needs a state_location to watch the job"
    state_dir = Path(spec.state_location)

    port = int(spec.source.connection.bootstrap_servers[0].rsplit(":", 1)[1])
    broker = LocalBroker(BrokerConfig(run_dir=PROJECT_ROOT / ".state" / "broker", port=port))
    print(f"1/5 starting the local Kafka broker on {broker.start(timeout_s=120)}")
    for topic in (spec.source.topic, spec.target.topic, spec.dead_letter.topic):
        broker.create_topic(topic, partitions=2)
    print(f"2/5 topics ready: {spec.source.topic} -> {spec.target.topic} (dead letters: {spec.dead_letter.topic})")
    view = start_view(spec, since="1h")
    print(f"    live view: {view.url}  (open it: it shows the tweets as they are scored)")
    try:
        return run_job(args, spec, state_dir, view.url)
    finally:
        view.stop()


def run_job(args: argparse.Namespace, spec: DeploymentSpec, state_dir: Path, view_url: str) -> int:
    """Start the job, send the tweets, show them as they come back, stop the job."""

    log_path = state_dir.parent / "demo-job.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    store = StateStore(str(state_dir))
    launched_at = now_iso()
    print(f"3/5 starting the job: ./spark-submit.sh --master 'local[2]' run --spec {args.spec}  (log: {log_path})")
    log_path.unlink(missing_ok=True)
    job = launch_job(["run", "--spec", args.spec], log_path)
    try:
        wait_until_running(store, job, launched_at, args.timeout, log_path)
        first_id = int(time.time()) % 1_000_000 * 100
        start = end_offsets(spec)
        sent, bad = send_tweets(spec, first_id)
        print(f"4/5 sent {len(sent)} tweets and {len(bad)} malformed messages; as they come back:")
        show_results(spec, start, sent, bad, args.timeout)
    finally:
        print("5/5 stopping the job gracefully")
        stop_job(job, store, timeout_s=120)
    status = store.read_status() or {}
    totals = status.get("totals", {})
    print(
        f"\nThe job is {status.get('state')}: {totals.get('records_scored', 0)} scored and "
        f"{totals.get('records_dead_lettered', 0)} dead-lettered in total in this deployment."
    )
    print(
        "To run it for real:\n"
        f"  ./spark-submit.sh --master 'local[2]' run --spec {args.spec}     # keeps running; Ctrl-C stops it\n"
        f"  .venv/bin/job status --spec {args.spec}\n"
        "  Against Message Hub / Event Streams: see config/messagehub.yaml and the README.\n"
        "The broker keeps running; `make broker-stop` stops it."
    )
    if sys.stdin.isatty():  # a person at a terminal: leave the page up until they are done with it
        with contextlib.suppress(EOFError, KeyboardInterrupt):
            input(f"The live view stays up at {view_url} ; press Enter to close it. ")
    return 0 if status.get("state") == "STOPPED" else 1


def wait_until_running(
    store: StateStore, job: subprocess.Popen[bytes], launched_at: str, timeout_s: float, log: Path
) -> None:
    """Wait for a trigger of this run (a batch or an idle one), so 'latest' offsets are pinned before we send."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if job.poll() is not None:
            tail = log.read_text(encoding="utf-8", errors="replace").splitlines()[-15:]
            raise SystemExit("the job exited early:\n" + "\n".join(tail))
        status = store.read_status() or {}
        if status.get("state") == "RUNNING" and (status.get("heartbeat_at") or "") > launched_at:
            return
        time.sleep(0.5)
    raise SystemExit(f"the job did not start within {timeout_s:.0f}s; see {log}")


def send_tweets(spec: DeploymentSpec, first_id: int) -> tuple[dict[int, str], set[tuple[int, int]]]:
    """Send the tweets and the malformed messages; returns the tweets by id and where the bad ones landed."""
    producer = KafkaProducer(**kafka_python_config(spec.source.connection), acks="all")
    sent = {first_id + i: text for i, text in enumerate(DEMO_TWEETS)}
    futures = [producer.send(spec.source.topic, json.dumps({"id": i, "text": t}).encode()) for i, t in sent.items()]
    for future in futures:
        future.get(timeout=30)
    bad = [producer.send(spec.source.topic, value).get(timeout=30) for value in BAD_MESSAGES]
    producer.close()
    return sent, {(meta.partition, meta.offset) for meta in bad}


def end_offsets(spec: DeploymentSpec) -> dict[Any, int]:
    """Where the output and dead-letter topics end now, so the demo shows only what this run adds."""
    consumer = KafkaConsumer(**kafka_python_config(spec.target.connection))
    try:
        partitions = [
            TopicPartition(topic, p)
            for topic in (spec.target.topic, spec.dead_letter.topic)
            for p in sorted(consumer.partitions_for_topic(topic) or [])
        ]
        return dict(consumer.end_offsets(partitions))
    finally:
        consumer.close()


def show_results(
    spec: DeploymentSpec, start: dict[Any, int], sent: dict[int, str], bad: set[tuple[int, int]], timeout_s: float
) -> None:
    # No consumer group: the demo reads its own slice of both topics and commits nothing.
    consumer = KafkaConsumer(**kafka_python_config(spec.target.connection), enable_auto_commit=False)
    consumer.assign(list(start))
    for partition, offset in start.items():
        consumer.seek(partition, offset)
    waiting = set(sent)
    waiting_bad = set(bad)
    deadline = time.monotonic() + timeout_s
    while (waiting or waiting_bad) and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            for record in records:
                doc = json.loads(record.value)
                where = (doc.get("sourcePartition"), doc.get("sourceOffset"))
                if record.topic == spec.dead_letter.topic and where in waiting_bad:
                    waiting_bad.discard(where)
                    print(f"  DEAD-LETTER  {doc['errorCode']:<13} {doc['errorReason']}: {doc['value']!r}")
                elif record.topic == spec.target.topic and doc.get("id") in waiting:
                    waiting.discard(doc["id"])
                    print(f"  {doc['predictedLabel']:<8}  {doc['probability']:.3f}  {doc['text']}")
    consumer.close()
    if waiting or waiting_bad:
        print(f"  ({len(waiting) + len(waiting_bad)} messages not back within {timeout_s:.0f}s)")


if __name__ == "__main__":
    sys.exit(main())
