"""Start-up time: from launching `spark-submit.sh ... run` to the first scored record in the output topic.

The job runs as a person would run it (`./spark-submit.sh --master local[2] run --spec FILE`), on fresh
topics with a few messages already waiting; its status document shows when it reported INITIALIZING
and RUNNING along the way. It is then stopped the documented way (the stop marker in its state folder).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from bench import kafka_io
from bench.kafka_io import OffsetWatcher
from job.runtime.status import StateStore
from job.tools import specs
from job.tools.processes import launch_job, stop_job
from job.tools.specs import spec_document

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
    roles = {"in": topics.source, "out": topics.target, "dlq": topics.dead_letter}
    document = spec_document(
        f"bench-startup-{tag}", roles, run_dir / "checkpoint", bootstrap, model=model_location, state=state,
        options={"starting_offsets": "earliest", "trigger": {"processing_time": "1 second"}},
    )  # fmt: skip
    spec_path = specs.write_spec(run_dir / "spec.yaml", document)
    store = StateStore(str(state))
    log_path = run_dir / "job.log"
    milestones: dict[str, float] = {}
    with OffsetWatcher(bootstrap, topics.target) as out:
        started = time.monotonic()
        proc = launch_job(["run", "--spec", str(spec_path)], log_path)
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
