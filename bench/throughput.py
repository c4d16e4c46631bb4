"""Throughput on a backlog: the job, the job without its model (I/O ceiling), and the NumPy baseline.

Each run reads the same pre-filled input topic from the earliest offset and writes to fresh output
topics. The clock starts when the query (or the baseline's worker processes) is started and stops when
the output topic's end offsets add up to the number of input messages.
"""

from __future__ import annotations

import json
import logging
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession
from pyspark.sql.streaming import StreamingQuery

from bench import kafka_io
from bench.baseline import Scorer, ScorerParams
from bench.codegen import CodegenCounter
from bench.kafka_io import OffsetWatcher, Topics
from bench.queries import make_spec
from job.tools.deps import PROJECT_ROOT
from job.tools.processes import Monitor, descendants, has_exited, sample_until, wait_with_rusage

logger = logging.getLogger(__name__)

JOB = "job"
IO_CEILING = "io_ceiling"
BASELINE = "baseline"
JOB_SPARSE_LR = "job_sparse_lr"
DESCRIPTIONS = {
    JOB: "the job as shipped: job.runtime.query.start_query, trigger available_now",
    IO_CEILING: "the same query without the model (parse, constant scores, shape, write): the I/O ceiling",
    BASELINE: "hand-written kafka-python consumer + NumPy scorer with the same model",
    JOB_SPARSE_LR: "the job with the LogisticRegression coefficients as saved (sparse), without the load-time fix",
}


@dataclass(frozen=True)
class Context:
    """What every throughput run needs."""

    spark: SparkSession
    broker: Any
    bootstrap: str
    model: Any
    model_location: str
    workdir: Path
    jvm_pid: int
    broker_pid: int
    max_offsets_per_trigger: int
    timeout_s: float


class Progress:
    """Polls a record count; remembers when the first record appeared."""

    def __init__(self, count: Callable[[], int], target: int) -> None:
        self._count = count
        self._target = target
        self.first_at: float | None = None

    def complete(self) -> bool:
        n = self._count()
        if n > 0 and self.first_at is None:
            self.first_at = time.monotonic()
        return n >= self._target

    def steady(self, started: float, done: float) -> dict[str, float | None]:
        """Seconds to the first output record, and the rate from then on (start-up costs left out)."""
        if self.first_at is None or done <= self.first_at:
            return {"seconds_to_first_record": None, "steady_msgs_per_s": None}
        return {
            "seconds_to_first_record": round(self.first_at - started, 3),
            "steady_msgs_per_s": round(self._target / (done - self.first_at), 1),
        }


def _finish_query(query: StreamingQuery, timeout_s: float) -> str | None:
    """Let an available-now query end by itself; return its error text, if any."""
    if not query.awaitTermination(int(timeout_s)):
        query.stop()
    error = query.exception()
    return str(error).splitlines()[0] if error is not None else None


def run_query(ctx: Context, name: str, input_topic: str, messages: int, partitions: int, start: Callable) -> dict:
    """One timed run of a Spark query over the backlog; `start(spark, spec)` starts the query."""
    topics = Topics(input_topic, kafka_io.unique_topic(f"{name}-out"), kafka_io.unique_topic(f"{name}-dlq"))
    for topic in (topics.target, topics.dead_letter):
        ctx.broker.create_topic(topic, partitions=partitions)
    checkpoint = ctx.workdir / "checkpoints" / topics.target
    spec = make_spec(
        f"bench-{name}",
        ctx.bootstrap,
        topics,
        ctx.model_location,
        str(checkpoint),
        "available_now",
        max_offsets_per_trigger=ctx.max_offsets_per_trigger,
    )
    with OffsetWatcher(ctx.bootstrap, topics.target) as out, OffsetWatcher(ctx.bootstrap, topics.dead_letter) as dlq:
        job_monitor = Monitor(lambda: descendants(ctx.jvm_pid))
        broker_monitor = Monitor(lambda: [ctx.broker_pid])
        job_monitor.start()
        broker_monitor.start()
        codegen = CodegenCounter(ctx.spark)
        started = time.monotonic()
        query = start(ctx.spark, spec)
        try:
            progress = Progress(lambda: out.total() + dlq.total(), messages)
            done = sample_until(progress.complete, ctx.timeout_s)
        finally:
            job_usage = job_monitor.stop()
            broker_usage = broker_monitor.stop()
            error = _finish_query(query, 120)
        batches = len(query.recentProgress)
        compiled = codegen.result()
        written, dead = out.total(), dlq.total()
    kafka_io.delete_topics(ctx.bootstrap, [topics.target, topics.dead_letter])
    if done is None or error is not None:
        raise RuntimeError(
            f"{name}: {written + dead} of {messages} records written after {ctx.timeout_s:.0f} s"
            + (f"; query failed: {error}" if error else "")
        )
    seconds = done - started
    return {
        "messages": messages,
        "written": written,
        "dead_lettered": dead,
        "seconds": round(seconds, 3),
        "msgs_per_s": round(messages / seconds, 1),
        **progress.steady(started, done),
        "micro_batches": batches,
        "codegen_compilations": compiled["compilations"],
        **job_usage.as_dict(),
        "broker_cpu_s": broker_usage.as_dict()["cpu_s"],
    }


def _baseline_command(
    bootstrap: str, input_topic: str, output_topic: str, params: Path, partitions: Sequence[int]
) -> list[str]:
    return [
        sys.executable, "-m", "bench.baseline", "--bootstrap", bootstrap, "--input-topic", input_topic,
        "--output-topic", output_topic, "--params", str(params), "--partitions", ",".join(map(str, partitions)),
    ]  # fmt: skip


def run_baseline(
    ctx: Context, input_topic: str, messages: int, partitions: int, params_path: Path, workers: int, expected: int
) -> dict:
    """One timed run of the baseline: `workers` processes share the input partitions round-robin. It is done when
    `expected` records are written: the messages but those whose text has no feature, which it skips as the job
    dead-letters them (`expected_from_baseline`)."""
    target = kafka_io.unique_topic("baseline-out")
    ctx.broker.create_topic(target, partitions=partitions)
    shares = [[p for p in range(partitions) if p % workers == w] for w in range(workers)]
    shares = [s for s in shares if s]
    reports = [ctx.workdir / f"{target}-worker{w}.json" for w in range(len(shares))]
    logs = [ctx.workdir / f"{target}-worker{w}.log" for w in range(len(shares))]
    with OffsetWatcher(ctx.bootstrap, target) as out:
        broker_monitor = Monitor(lambda: [ctx.broker_pid]).start()
        started = time.monotonic()
        procs = []
        for share, report, log in zip(shares, reports, logs, strict=True):
            command = [
                *_baseline_command(ctx.bootstrap, input_topic, target, params_path, share),
                "--report",
                str(report),
            ]
            with log.open("wb") as log_file:
                procs.append(subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=log_file, stderr=subprocess.STDOUT))
        try:
            progress = Progress(out.total, expected)
            done = sample_until(lambda: progress.complete() or all(has_exited(p.pid) for p in procs), ctx.timeout_s)
            if done is not None and out.total() < expected:
                done = None
        finally:
            broker_usage = broker_monitor.stop()
            usage = []
            for proc in procs:
                if done is None and not has_exited(proc.pid):
                    proc.kill()
                code, cpu, rss = wait_with_rusage(proc.pid)
                proc.returncode = code  # reaped here, with its CPU time and peak RSS
                usage.append((code, cpu, rss))
        written = out.total()
    kafka_io.delete_topics(ctx.bootstrap, [target])
    failed = [(i, code) for i, (code, _, _) in enumerate(usage) if code != 0]
    if done is None or failed:
        tails = "; ".join(f"worker {i}: " + logs[i].read_text(errors="replace")[-500:] for i, _ in failed)
        raise RuntimeError(f"baseline: {written} of {expected} records written; {tails}")
    seconds = done - started
    worker_reports = [json.loads(r.read_text()) for r in reports]
    return {
        "messages": messages,
        "written": written,
        "seconds": round(seconds, 3),
        "msgs_per_s": round(messages / seconds, 1),
        **progress.steady(started, done),
        "workers": len(procs),
        "cpu_s": round(sum(cpu for _, cpu, _ in usage), 3),
        "peak_rss_mb": round(sum(rss for _, _, rss in usage) / 2**20, 1),
        "broker_cpu_s": broker_usage.as_dict()["cpu_s"],
        "worker_seconds": {
            step: round(sum(r["seconds"][step] for r in worker_reports), 3) for step in worker_reports[0]["seconds"]
        },
    }


def check_agreement(
    ctx: Context, params_path: Path, texts: Sequence[str], partitions: int, start_job: Callable, start_sparse: Callable
) -> dict:
    """Score the same sample with the job, the baseline and the dense-LR job, through Kafka; compare by id."""
    from kafka import KafkaProducer

    topics = kafka_io.new_topics(ctx.broker, partitions, prefix="agree-")
    producer = KafkaProducer(bootstrap_servers=ctx.bootstrap, acks="all", linger_ms=5)
    try:
        for i, text in enumerate(texts):
            producer.send(topics.source, json.dumps({"id": i, "text": text}).encode())
        producer.flush()
    finally:
        producer.close()
    n = len(texts)
    outputs: dict[str, dict[int, dict]] = {}
    dead: dict[str, dict[int, str]] = {}
    for name, start in (("job", start_job), ("sparse", start_sparse)):
        out = Topics(topics.source, kafka_io.unique_topic(f"agree-{name}"), kafka_io.unique_topic(f"agree-{name}-dlq"))
        for topic in (out.target, out.dead_letter):
            ctx.broker.create_topic(topic, partitions=partitions)
        checkpoint = str(ctx.workdir / "checkpoints" / out.target)
        spec = make_spec(f"bench-agreement-{name}", ctx.bootstrap, out, ctx.model_location, checkpoint, "available_now")
        error = _finish_query(start(ctx.spark, spec), ctx.timeout_s)
        if error:
            raise RuntimeError(f"agreement check: the {name} query failed: {error}")
        outputs[name] = kafka_io.read_json_records(ctx.bootstrap, out.target)
        dead[name] = kafka_io.read_dead_letters(ctx.bootstrap, out.dead_letter)
    baseline_topic = kafka_io.unique_topic("agree-baseline")
    ctx.broker.create_topic(baseline_topic, partitions=partitions)
    report = ctx.workdir / "agree-baseline.json"
    command = _baseline_command(ctx.bootstrap, topics.source, baseline_topic, params_path, range(partitions))
    subprocess.run(
        [*command, "--report", str(report)], cwd=PROJECT_ROOT, check=True, capture_output=True, timeout=ctx.timeout_s
    )
    baseline = kafka_io.read_json_records(ctx.bootstrap, baseline_topic)
    return {
        "baseline_vs_job": compare_outputs(outputs["job"], baseline, n, dead["job"]),
        "sparse_vs_job": compare_outputs(outputs["job"], outputs["sparse"], n, dead["job"], dead["sparse"]),
    }


def expected_from_baseline(params_path: Path, texts: Sequence[str], messages: int) -> int:
    """How many of a backlog's messages (text of id i: texts[i % len(texts)], as kafka_io.fill_topic writes them)
    the baseline scores: those in whose text the model finds a feature."""
    found = set(Scorer(ScorerParams.load(params_path)).score_found(texts)[0])
    full, rest = divmod(messages, len(texts))
    return full * len(found) + sum(1 for i in range(rest) if i in found)


def compare_outputs(
    job: dict[int, dict],
    other: dict[int, dict],
    n: int,
    job_dead: dict[int, str] | None = None,
    other_dead: dict[int, str] | None = None,
) -> dict:
    """Exact labels and predictions, probabilities within 1e-9, for every id of the sample.

    An id the job dead-lettered as NO_FEATURES is expected from neither side (the baseline skips texts without a
    feature as the job does); `other_dead`, for another job, must then name the same ids with the same codes. Any
    other dead letter, and any id that is missing or unexpected, makes the two disagree.
    """
    job_dead = job_dead or {}
    skipped = {i for i, code in job_dead.items() if code == "NO_FEATURES"}
    expected = [i for i in range(n) if i not in skipped]
    missing_job = [i for i in expected if i not in job]
    missing_other = [i for i in expected if i not in other]
    unexpected = sorted((set(job) | set(other)) - set(expected))
    other_dead_differs = other_dead is not None and other_dead != job_dead
    both = [i for i in expected if i in job and i in other]
    label_diff = [i for i in both if job[i]["predictedLabel"] != other[i]["predictedLabel"]]
    prediction_diff = [i for i in both if job[i]["prediction"] != other[i]["prediction"]]
    prob_diffs = [abs(job[i]["probability"] - other[i]["probability"]) for i in both]
    max_diff = max(prob_diffs, default=0.0)
    agree = (
        not (missing_job or missing_other or unexpected or label_diff or prediction_diff or other_dead_differs)
        and len(job_dead) == len(skipped)
        and max_diff <= 1e-9
    )
    return {
        "sample": n,
        "compared": len(both),
        "no_features_on_both_sides": len(skipped),
        "other_dead_letters": len(job_dead) - len(skipped),
        "missing_from_job": len(missing_job),
        "missing_from_baseline": len(missing_other),
        "unexpected_records": len(unexpected),
        "dead_letters_differ": other_dead_differs,
        "label_mismatches": len(label_diff),
        "prediction_mismatches": len(prediction_diff),
        "max_abs_probability_diff": max_diff,
        "probabilities_bit_identical": sum(d == 0.0 for d in prob_diffs),
        "agree": agree,
        "first_mismatches": [
            {
                "id": i,
                "text": job[i]["text"],
                "job": job[i]["predictedLabel"],
                "baseline": other[i]["predictedLabel"],
            }
            for i in label_diff[:5]
        ],
    }


def summarize(runs: dict[str, list[dict]]) -> dict[str, dict]:
    """Medians per variant and their ratio to the job's median, all from the same bench run."""
    summary: dict[str, dict] = {}
    job_rate = statistics.median(r["msgs_per_s"] for r in runs[JOB]) if runs.get(JOB) else None
    for name, items in runs.items():
        if not items:
            continue
        rate = statistics.median(r["msgs_per_s"] for r in items)
        cpu = statistics.median(r["cpu_s"] for r in items)
        summary[name] = {
            "description": DESCRIPTIONS.get(name, name),
            "repetitions": len(items),
            "median_msgs_per_s": round(rate, 1),
            "ratio_to_job": round(rate / job_rate, 3) if job_rate else None,
            "median_seconds": round(statistics.median(r["seconds"] for r in items), 3),
            "median_seconds_to_first_record": _median_or_none([r.get("seconds_to_first_record") for r in items]),
            "median_steady_msgs_per_s": _median_or_none([r.get("steady_msgs_per_s") for r in items]),
            "median_cpu_s": round(cpu, 3),
            "cpu_us_per_msg": round(cpu / items[0]["messages"] * 1e6, 1),
            "max_peak_rss_mb": max(r["peak_rss_mb"] for r in items),
            "median_broker_cpu_s": round(statistics.median(r["broker_cpu_s"] for r in items), 3),
        }
    return summary


def _median_or_none(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return round(statistics.median(present), 3) if present else None
