"""Start-up time: from launching `spark-submit.sh ... run` to the first scored record in the output topic.

The job runs as a person would run it (`./spark-submit.sh --master local[2] run --spec FILE`), on fresh
topics with a few messages already waiting; its status document shows when it reported INITIALIZING
and RUNNING along the way. It is then stopped the documented way (the stop marker in its state folder).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import yaml

from bench import kafka_io
from bench.kafka_io import OffsetWatcher
from job.deps import PROJECT_ROOT
from job.status import StateStore

logger = logging.getLogger(__name__)

WAITING_MESSAGES = 10


def measure_startup(
    broker: Any, bootstrap: str, model_location: str, partitions: int, workdir: Path, timeout_s: float, tag: str
) -> dict[str, Any]:
    """One launch of the real job; seconds from Popen to each milestone."""
    from kafka import KafkaProducer

    topics = kafka_io.new_topics(broker, partitions, prefix="startup-")
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        for i in range(WAITING_MESSAGES):
            producer.send(topics.source, json.dumps({"id": i, "text": "good morning, what a lovely day"}).encode())
        producer.flush()
    finally:
        producer.close()
    run_dir = workdir / f"startup-{tag}"
    run_dir.mkdir(parents=True, exist_ok=True)
    state = run_dir / "state"
    spec = {
        "name": f"bench-startup-{tag}",
        "type": "stream",
        "input": {"connection": {"bootstrap_servers": [bootstrap]}, "source": {"topic": topics.source}},
        "output": {"connection": {"bootstrap_servers": [bootstrap]}, "target": {"topic": topics.target}},
        "dead_letter": {"topic": topics.dead_letter},
        "model": {"location": model_location},
        "checkpoint_location": str(run_dir / "checkpoint"),
        "state_location": str(state),
        "options": {"starting_offsets": "earliest", "trigger": {"processing_time": "1 second"}},
    }
    spec_path = run_dir / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
    store = StateStore(str(state))
    log_path = run_dir / "job.log"
    milestones: dict[str, float] = {}
    command = [str(PROJECT_ROOT / "spark-submit.sh"), "--master", "local[2]", "run", "--spec", str(spec_path)]
    with OffsetWatcher(bootstrap, topics.target) as out, log_path.open("wb") as log:
        started = time.monotonic()
        # Its own session, so that it (the JVM and the Python driver under it) can be stopped as a group.
        proc = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            while time.monotonic() - started < timeout_s:
                status = (store.read_status() or {}).get("state")
                if status and status not in milestones:
                    milestones[status] = time.monotonic() - started
                if out.total() > 0:
                    milestones["first_scored_record"] = time.monotonic() - started
                    break
                if proc.poll() is not None:
                    break
                time.sleep(0.05)
        finally:
            stop_job(proc, store)
    if "first_scored_record" not in milestones:
        tail = log_path.read_text(errors="replace").splitlines()[-15:]
        raise RuntimeError(f"the job produced no record (exit {proc.returncode}):\n" + "\n".join(tail))
    kafka_io.delete_topics(bootstrap, [topics.source, topics.target, topics.dead_letter])
    return {
        "seconds_to_first_scored_record": round(milestones["first_scored_record"], 2),
        "seconds_to_status": {k: round(v, 2) for k, v in milestones.items() if k != "first_scored_record"},
        "command": " ".join(["./spark-submit.sh", "--master", "local[2]", "run", "--spec", "<spec.yaml>"]),
    }


def stop_job(proc: subprocess.Popen[bytes], store: StateStore, timeout_s: float = 60) -> None:
    """The stop marker first (a graceful stop), then SIGTERM, then SIGKILL to the job's process group."""
    if proc.poll() is None:
        store.request_stop()
        try:
            proc.wait(timeout=timeout_s)
            return
        except subprocess.TimeoutExpired:
            logger.warning("the job did not stop on its stop marker within %.0f s; sending SIGTERM", timeout_s)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=20)
            return
        except subprocess.TimeoutExpired:
            continue
