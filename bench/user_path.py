"""The job as a user runs it: `./spark-submit.sh --master local[2] run --spec FILE`, default memory settings.

Three measurements share the launch code:

- latency at a steady rate, the producer and the consumer in a process of their own (`bench.latency`'s
  driver), on fresh topics of 1 and of 2 partitions, micro-batch and real-time mode;
- a backlog drained by the job (trigger available_now), with the peak resident memory of its JVM and
  Python processes;
- the floor of every start-up: a bare `spark-submit` of a script that starts a SparkSession and stops.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bench import kafka_io, latency
from bench.kafka_io import OffsetWatcher
from job.runtime.status import StateStore
from job.tools import specs
from job.tools.deps import PROJECT_ROOT, spark_home
from job.tools.processes import descendants, launch_job, stop_job
from job.tools.specs import spec_document

logger = logging.getLogger(__name__)

BARE_SESSION_SCRIPT = """\
from pyspark.sql import SparkSession

SparkSession.builder.appName("bare-spark-submit").getOrCreate().stop()
"""


def write_spec(
    run_dir: Path, name: str, topics: kafka_io.Topics, bootstrap: str, model: str, options: Mapping[str, Any]
) -> tuple[Path, StateStore]:
    run_dir.mkdir(parents=True, exist_ok=True)
    roles = {"in": topics.source, "out": topics.target, "dlq": topics.dead_letter}
    document = spec_document(
        name, roles, run_dir / "checkpoint", bootstrap, model=model, state=run_dir / "state", options=dict(options)
    )
    return specs.write_spec(run_dir / "spec.yaml", document), StateStore(str(run_dir / "state"))


def measure_latency(
    broker: Any,
    bootstrap: str,
    model: str,
    partitions: int,
    trigger: Mapping[str, str],
    texts_path: Path,
    rate: float,
    duration_s: float,
    warmup_s: float,
    workdir: Path,
    tag: str,
) -> dict[str, Any]:
    """Launch the job, let the driver process send and receive, stop the job the documented way."""
    topics = kafka_io.new_topics(broker, partitions, prefix=f"user-{tag}-")
    run_dir = workdir / f"user-{tag}"
    # earliest: the driver's probe may be sent before the query has looked at the (fresh) topic.
    options = {"starting_offsets": "earliest", "trigger": dict(trigger)}
    spec_path, store = write_spec(run_dir, f"bench-user-{tag}", topics, bootstrap, model, options)
    log_path = run_dir / "job.log"
    launched = time.monotonic()
    proc = launch_job(["run", "--spec", str(spec_path)], log_path)
    try:
        result = latency.run_driver(bootstrap, topics, texts_path, rate, duration_s, workdir, tag, probe_timeout_s=240)
        alive = proc.poll() is None
    finally:
        code = stop_job(proc, store)
    if not alive:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-15:])
        raise RuntimeError(f"the job exited during the latency run (exit {proc.returncode}):\n{tail}")
    stats = latency.driver_stats(result, rate, duration_s, warmup_s)
    stats.update(
        {
            "partitions": partitions,
            "trigger": dict(trigger),
            # The driver's monotonic_ns and this process's monotonic are the same clock (CLOCK_MONOTONIC).
            "seconds_from_launch_to_sending": round(result["start_ns"] / 1e9 - launched, 1),
            "stop_exit_code": code,
            "last_batch": (store.read_status() or {}).get("progress"),
        }
    )
    kafka_io.delete_topics(bootstrap, [topics.source, topics.target, topics.dead_letter])
    return stats


class PeakRss:
    """The largest resident set (VmHWM) seen of each process in a job's process group, by its kind."""

    def __init__(self, root_pid: int) -> None:
        self.root_pid = root_pid
        self.peaks_kib: dict[int, tuple[str, int]] = {}

    def sample(self) -> None:
        for pid in descendants(self.root_pid):
            try:
                status = Path(f"/proc/{pid}/status").read_text()
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            hwm = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:")), 0)
            kind = kind_of(cmdline)
            if kind is not None:
                old = self.peaks_kib.get(pid, (kind, 0))[1]
                self.peaks_kib[pid] = (kind, max(old, hwm))

    def by_kind_mib(self) -> dict[str, float]:
        peaks: dict[str, float] = {}
        for kind, kib in self.peaks_kib.values():
            peaks[kind] = max(peaks.get(kind, 0.0), round(kib / 1024, 1))
        return peaks


def kind_of(cmdline: list[bytes]) -> str | None:
    """ "jvm" for the Spark JVM (driver and executor in one in local mode), "python" for the job's driver
    and Python workers; None for the shell script."""
    program = Path(cmdline[0].decode(errors="replace")).name if cmdline and cmdline[0] else ""
    if program == "java":
        return "jvm"
    if program.startswith("python"):
        return "python"
    return None


def measure_backlog(
    bench_spark: Any,
    broker: Any,
    bootstrap: str,
    model: str,
    texts: list[str],
    messages: int,
    partitions: int,
    workdir: Path,
    timeout_s: float,
) -> dict[str, Any]:
    """Fill a topic with `messages` tweets, then drain it with the job launched by spark-submit.sh."""
    topics = kafka_io.new_topics(broker, partitions, prefix="backlog-user-")
    fill = kafka_io.fill_topic(bench_spark, bootstrap, topics.source, texts, messages, partitions)
    run_dir = workdir / "backlog-user"
    options = {"starting_offsets": "earliest", "trigger": "available_now"}
    spec_path, store = write_spec(run_dir, "bench-backlog", topics, bootstrap, model, options)
    log_path = run_dir / "job.log"
    rss = None
    first_at = last_at = None
    with OffsetWatcher(bootstrap, topics.target) as out, OffsetWatcher(bootstrap, topics.dead_letter) as dead:
        launched = time.monotonic()
        proc = launch_job(["run", "--spec", str(spec_path)], log_path)
        rss = PeakRss(proc.pid)
        try:
            while proc.poll() is None and time.monotonic() - launched < timeout_s:
                rss.sample()
                done = out.total() + dead.total()
                now = time.monotonic()
                if done and first_at is None:
                    first_at = now
                if done >= messages:
                    last_at = last_at or now
                time.sleep(0.25)
        finally:
            code = stop_job(proc, store) if proc.poll() is None else proc.returncode
        written, dead_lettered = out.total(), dead.total()
    ended = time.monotonic()
    kafka_io.delete_topics(bootstrap, [topics.source, topics.target, topics.dead_letter])
    if written + dead_lettered < messages or first_at is None:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-15:])
        raise RuntimeError(f"the job wrote {written} + {dead_lettered} of {messages} records (exit {code}):\n{tail}")
    last = last_at or ended
    return {
        "messages": messages,
        "partitions": partitions,
        "fill": fill,
        "exit_code": code,
        "scored": written,
        "dead_lettered": dead_lettered,
        "seconds_launch_to_exit": round(ended - launched, 1),
        "seconds_first_to_last_record": round(last - first_at, 1),
        "msgs_per_s_first_to_last": round(messages / max(last - first_at, 1e-9)),
        "peak_rss_mib": rss.by_kind_mib(),
        "command": "./spark-submit.sh --master local[2] run --spec <spec.yaml> (default driver memory)",
    }


def measure_bare_submit(workdir: Path, timeout_s: float) -> dict[str, Any]:
    """Seconds for `spark-submit --master local[2] script.py` whose script starts a SparkSession and stops it."""
    script = workdir / "bare_session.py"
    script.write_text(BARE_SESSION_SCRIPT)
    home = spark_home()
    # As spark-submit.sh sets them (the same Python, Spark and log settings), and nothing else.
    env = {
        **os.environ,
        "SPARK_HOME": str(home),
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        "SPARK_CONF_DIR": str(PROJECT_ROOT / "config" / "spark"),
    }
    started = time.monotonic()
    proc = subprocess.run(
        [str(home / "bin" / "spark-submit"), "--master", "local[2]", str(script)],
        cwd=workdir, env=env, capture_output=True, timeout=timeout_s, check=False,
    )  # fmt: skip
    seconds = time.monotonic() - started
    if proc.returncode != 0:
        raise RuntimeError(f"bare spark-submit failed: {proc.stderr.decode(errors='replace')[-800:]}")
    return {"seconds": round(seconds, 2), "command": f"spark-submit --master local[2] {script.name}"}


def summary_line(stats: Mapping[str, Any]) -> str:
    return json.dumps({k: stats.get(k) for k in ("p50_ms", "p99_ms", "missing", "kept_up_after_s")})
