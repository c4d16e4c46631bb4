"""The pause in scoring when a running deployment changes its model (`job update`), beside a stop and a start.

The job runs as a user runs it (`./spark-submit.sh --master local[2] run`), `bench.latency`'s driver process
sends a steady stream and waits for every answer. Once the job keeps up, `job update` changes the model
several times, back and forth between two published models; then `job stop` and a new launch. The gap of a
change is the time on the output topic (Kafka timestamps of the scored records) from the last record of the
old version to the first of the new; the gap of the restart, from the last record before the stop to the
first after the launch. Nothing may be missing: every message sent is answered once the run ends.
"""

from __future__ import annotations

import json
import logging
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench import kafka_io, latency
from bench.kafka_io import OffsetWatcher
from bench.user_path import write_spec
from job.tools.deps import PROJECT_ROOT
from job.tools.processes import launch_job, stop_job

logger = logging.getLogger(__name__)


def job_update(spec_path: Path, model: str, timeout_s: float) -> dict[str, Any]:
    started = time.time()
    proc = subprocess.run(
        [sys.executable, "-m", "job.runtime.main", "update", "--spec", str(spec_path), "--model", model],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=timeout_s, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"job update to {model} failed ({proc.returncode}): {(proc.stdout + proc.stderr)[-600:]}")
    return {"asked_at_ms": int(started * 1000), "answered_s": round(time.time() - started, 2), "model": model}


def version_runs(records: list[tuple[int, str]]) -> list[tuple[str, int, int]]:
    """(version, first timestamp, last timestamp) of each run of one version, records in timestamp order."""
    runs: list[tuple[str, int, int]] = []
    for at, version in sorted(records):
        if runs and runs[-1][0] == version:
            runs[-1] = (version, runs[-1][1], at)
        else:
            runs.append((version, at, at))
    return runs


def restart_gap_s(timestamps: list[int], stopped_at_ms: int, relaunched_at_ms: int) -> float:
    """From the last record written before the job stopped to the first written after it was launched again."""
    before = [t for t in timestamps if t <= stopped_at_ms]
    after = [t for t in timestamps if t >= relaunched_at_ms]
    if not before or not after:
        raise ValueError("no record on one side of the restart")
    return (min(after) - max(before)) / 1000


def measure_model_change(
    broker: Any,
    bootstrap: str,
    models: tuple[str, str],
    partitions: int,
    texts_path: Path,
    workdir: Path,
    changes: int = 5,
    rate: float = 300.0,
    timeout_s: float = 600.0,
) -> dict[str, Any]:
    topics = kafka_io.new_topics(broker, partitions, prefix="swap-")
    run_dir = workdir / "model-change"
    options = {"starting_offsets": "earliest", "trigger": {"processing_time": "0 seconds"}}
    spec_path, store = write_spec(run_dir, "bench-model-change", topics, bootstrap, models[0], options)
    log_path = run_dir / "job.log"
    # Enough sending for the warm-up, the changes (each about 10 s: `job update` checks the model first) and a
    # stop and a launch (about 40 s to the first record); the driver then waits for every answer.
    duration_s = 60 + changes * 15 + 60
    driven: dict[str, Any] = {}

    def drive() -> None:
        try:
            driven.update(
                latency.run_driver(
                    bootstrap, topics, texts_path, rate, duration_s, workdir, "model-change", probe_timeout_s=240
                )
            )
        except Exception as exc:  # reported below
            driven["error"] = str(exc)

    proc = launch_job(["run", "--spec", str(spec_path)], log_path)
    driver = threading.Thread(target=drive, name="model-change-driver", daemon=True)
    driver.start()
    updates: list[dict[str, Any]] = []
    try:
        with OffsetWatcher(bootstrap, topics.target) as out:
            deadline = time.monotonic() + timeout_s
            while out.total() == 0 and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.5)
        time.sleep(45)  # past the JIT warm-up of a fresh JVM (see the user path's "kept up after")
        for k in range(changes):
            target = models[(k + 1) % 2]
            logger.info("model_change: job update %d of %d to %s", k + 1, changes, target)
            updates.append(job_update(spec_path, target, timeout_s))
            time.sleep(4)
        logger.info("model_change: job stop, then a new launch")
        stop_asked = time.time()
        stop_job(proc, store)
        stopped_at_ms = int(time.time() * 1000)
        stop_s = time.time() - stop_asked
        relaunched_at_ms = int(time.time() * 1000)
        proc = launch_job(["run", "--spec", str(spec_path)], log_path)
        driver.join(timeout=duration_s + 600)
    finally:
        stop_job(proc, store)
    if "error" in driven:
        raise RuntimeError(f"model_change: the driver failed: {driven['error']}")
    records = kafka_io.read_to_end(bootstrap, topics.target)
    stamped = [(r.timestamp, json.loads(r.value)["modelVersion"]) for r in records]
    runs = version_runs(stamped)
    gaps = [(runs[k][1] - runs[k - 1][2]) / 1000 for k in range(1, len(runs))]
    restart = restart_gap_s([t for t, _ in stamped], stopped_at_ms, relaunched_at_ms)
    stats = latency.driver_stats(driven, rate, duration_s, 0.0)
    kafka_io.delete_topics(bootstrap, [topics.source, topics.target, topics.dead_letter])
    if len(gaps) != changes:
        raise RuntimeError(f"model_change: {len(gaps)} version changes on the output topic, {changes} asked for")
    return {
        "changes": changes,
        "rate": rate,
        "partitions": partitions,
        "models": list(models),
        "gaps_s": gaps,
        "median_gap_s": statistics.median(gaps),
        "job_update_answered_s": [u["answered_s"] for u in updates],
        "request_to_first_new_record_s": [
            round((runs[k + 1][1] - u["asked_at_ms"]) / 1000, 2) for k, u in enumerate(updates)
        ],
        "stop_s": round(stop_s, 1),
        "restart_gap_s": restart,
        "ratio_restart_to_median_gap": round(restart / statistics.median(gaps), 1) if statistics.median(gaps) else None,
        "sent": stats["sent"],
        "missing": stats["missing"],
        "dead_lettered": stats["dead_lettered"],
    }
