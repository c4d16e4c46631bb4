"""`make bench`: run the benchmarks against the project's own local broker and write the results.

    python -m bench.run [--quick] [--only throughput,latency,static,startup] [--messages N] ...

Starts a Kafka broker on free ports in a temporary folder, an in-process SparkSession (local[2]) for the
job's query, runs the chosen measurements, stops everything and writes bench/results/<timestamp>/
(results.json, results.md, PNG plots), with bench/results/latest pointing at it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import eventlog, kafka_io, report
from bench.listener import timed_status_listener
from job.tools.deps import PROJECT_ROOT

logger = logging.getLogger("bench.run")

SECTIONS = ("throughput", "latency", "user_latency", "static", "startup", "model_change")
# Not in the default run: scaleout starts a standalone cluster and says little on a 2-core machine; backlog is
# the job drained through spark-submit.sh, run once with --messages 1000000 (several minutes).
OPTIONAL_SECTIONS = ("scaleout", "backlog")
DEFAULTS: dict[str, Any] = {
    # 1,000,000 messages x 4 variants x 3 repetitions does not fit in 10 minutes on 2 cores (the job
    # runs at a few thousand messages/s); 100,000 does, with the other sections at their full sizes.
    "messages": 100_000,
    "partitions": 2,
    "repeats": 3,
    "rate": 1000.0,
    "duration": 60.0,
    "warmup": 10.0,
    "static_rows": 1_000_000,
    "investigation_rows": 100_000,
    "static_repeats": 1,
    "sample": 2000,
    "baseline_workers": 1,
    "max_offsets_per_trigger": 250_000,
    "real_time_interval": "5 seconds,30 seconds",
    "startup_repeats": 1,
    "user_partitions": "1,2",
    # A fresh JVM on 2 cores compiles (JIT) for a minute or more while it scores; the user's path is measured
    # long enough to see it keep up, and its figures leave that first minute out.
    "user_duration": 150.0,
    "user_warmup": 60.0,
    "changes": 5,
    "timeout": 900.0,
}
# --quick: minutes for development; any option given explicitly still wins.
QUICK: dict[str, Any] = {
    "messages": 20_000,
    "repeats": 1,
    "duration": 15.0,
    "warmup": 5.0,
    "static_rows": 50_000,
    "investigation_rows": 20_000,
    "sample": 300,
    "max_offsets_per_trigger": 10_000,
    "user_duration": 40.0,
    "user_warmup": 10.0,
    "timeout": 300.0,
}


HELP = {
    "messages": "throughput: messages in the backlog",
    "partitions": "partitions of every input and output topic",
    "repeats": "throughput: runs of each variant (interleaved); medians are reported",
    "rate": "latency: messages sent per second",
    "duration": "latency: seconds of sending, per mode",
    "warmup": "latency: first seconds of sending left out of the figures",
    "static_rows": "static: cached tweets scored by PipelineModel.transform",
    "investigation_rows": "static: cached rows for the timings of each part alone",
    "static_repeats": "static: timings per figure (median)",
    "sample": "tweets sent through the job and the baseline to check they agree",
    "baseline_workers": "throughput: baseline consumer processes (partitions shared round-robin)",
    "max_offsets_per_trigger": "throughput: Spark's maxOffsetsPerTrigger (available_now runs several batches)",
    "real_time_interval": "latency: real-time mode batch durations, comma-separated (each a checkpoint interval, "
    "at least 5 seconds; the first also for user_latency)",
    "startup_repeats": "start-up: launches of spark-submit.sh (each beside a bare spark-submit)",
    "user_partitions": "user_latency: input topic partition counts, comma-separated",
    "user_duration": "user_latency: seconds of sending, per run",
    "user_warmup": "user_latency: first seconds of sending left out of the figures",
    "changes": "model_change: job update changes (back and forth between --model and models/sentiment140-only)",
    "timeout": "seconds before one run is declared stuck",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"development sizes: {QUICK} (explicit options win)")
    parser.add_argument(
        "--only",
        default=",".join(SECTIONS),
        help=f"comma-separated sections, of {', '.join(SECTIONS + OPTIONAL_SECTIONS)} (scaleout only when named)",
    )
    parser.add_argument("--model", default="models/sentiment-prediction", help="model folder (default %(default)s)")
    for key, default in DEFAULTS.items():
        kind = str if isinstance(default, str) else type(default)
        parser.add_argument(f"--{key.replace('_', '-')}", type=kind, help=f"{HELP[key]} (default {default})")
    parser.add_argument("--driver-memory", default="4g", help="in-process Spark driver memory (default %(default)s)")
    parser.add_argument(
        "--no-event-log",
        dest="event_log",
        action="store_false",
        help="no Spark event log in the in-process session: no per-batch costs, and none of its CPU on the driver",
    )
    parser.add_argument("--results-dir", type=Path, default=PROJECT_ROOT / "bench" / "results")
    return parser


def resolve(args: argparse.Namespace) -> argparse.Namespace:
    """Explicit options, else the --quick preset, else the defaults; and validated."""
    for key, default in DEFAULTS.items():
        if getattr(args, key) is None:
            setattr(args, key, QUICK.get(key, default) if args.quick else default)
    args.only = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(args.only) - set(SECTIONS) - set(OPTIONAL_SECTIONS))
    if unknown:
        raise SystemExit(f"--only: unknown section(s) {', '.join(unknown)}; choose from {', '.join(SECTIONS)}")
    for key in ("messages", "partitions", "repeats", "changes", "static_rows", "investigation_rows", "sample",
                "baseline_workers", "max_offsets_per_trigger", "startup_repeats", "static_repeats"):  # fmt: skip
        if getattr(args, key) < 1:
            raise SystemExit(f"--{key.replace('_', '-')} must be at least 1, got {getattr(args, key)}")
    if not real_time_intervals(args):
        raise SystemExit("--real-time-interval: give at least one interval, such as '5 seconds'")
    if args.warmup >= args.duration:
        raise SystemExit(f"--warmup ({args.warmup:g} s) must be shorter than --duration ({args.duration:g} s)")
    if args.user_warmup >= args.user_duration:
        raise SystemExit(
            f"--user-warmup ({args.user_warmup:g} s) must be shorter than --user-duration ({args.user_duration:g} s)"
        )
    model = Path(args.model)
    args.model = str(model if model.is_absolute() else (PROJECT_ROOT / model).resolve())
    return args


@dataclass
class Bench:
    """What the sections share: the broker, the Spark session (made on first use), the model, the tweets."""

    args: argparse.Namespace
    workdir: Path
    broker: Any
    texts: list[str]
    _spark: Any = None
    _model: Any = None
    series: dict[str, Any] = field(default_factory=dict)

    @property
    def bootstrap(self) -> str:
        return self.broker.bootstrap_servers

    @property
    def broker_pid(self) -> int:
        return int(self.broker.pid_path.read_text().strip())

    @property
    def spark(self) -> Any:
        if self._spark is None:
            self._spark = build_spark(self.args.driver_memory, self.event_log_dir if self.args.event_log else None)
        return self._spark

    @property
    def event_log_dir(self) -> Path:
        return self.workdir / "eventlog"

    @property
    def jvm_pid(self) -> int:
        return self.spark.sparkContext._gateway.proc.pid

    def driver_texts(self) -> Path:
        """The tweets the latency driver process sends (bench.latency --texts), written once per run."""
        path = self.workdir / "latency-texts.json"
        if not path.exists():
            path.write_text(json.dumps(self.texts[:20_000]))
        return path

    @property
    def model(self) -> Any:
        if self._model is None:
            from job.runtime.model import load_model

            self._model = load_model(self.spark, self.args.model)
        return self._model


def build_spark(driver_memory: str, event_log_dir: Path | None) -> Any:
    """The benchmark's in-process session; with `event_log_dir`, Spark writes its event log there."""
    from job.runtime.session import local_session
    from job.tools.deps import spark_package_conf

    conf = {
        **spark_package_conf(),
        "spark.driver.memory": driver_memory,
        "spark.sql.streaming.stopTimeout": "120s",
        # Keep every batch's progress of a latency run (the default keeps the last 100).
        "spark.sql.streaming.numRecentProgressUpdates": "100000",
    }
    if event_log_dir is not None:
        conf.update(event_log_conf(event_log_dir))
    return local_session("stream-deployment-bench", conf=conf, log_level="ERROR")


def event_log_conf(event_log_dir: Path) -> dict[str, str]:
    """Spark's event log with block updates, one uncompressed file in `event_log_dir` (made here)."""
    event_log_dir.mkdir(parents=True, exist_ok=True)
    return {
        # Spark's event log with block updates: each batch's task binary and task times (bench.eventlog). A
        # line of JSON per event (each batch's plan among them), written on the listener bus's thread: off the
        # batches' own path, but CPU on 2 cores (--no-event-log leaves it out).
        "spark.eventLog.enabled": "true",
        "spark.eventLog.dir": event_log_dir.as_uri(),
        "spark.eventLog.compress": "false",
        # One file (Spark 4 rolls event logs by default into a folder of numbered files).
        "spark.eventLog.rolling.enabled": "false",
        "spark.eventLog.logBlockUpdates.enabled": "true",
    }


# ---------------------------------------------------------------------------------------------- sections


def section_throughput(bench: Bench) -> dict[str, Any]:
    from pyspark.ml import PipelineModel

    from bench import throughput as tp
    from bench.baseline import ScorerParams
    from bench.queries import unscored, with_pipeline
    from job.runtime.query import start_query

    args, model = bench.args, bench.model
    ctx = tp.Context(
        spark=bench.spark,
        broker=bench.broker,
        bootstrap=bench.bootstrap,
        model=model,
        model_location=args.model,
        workdir=bench.workdir,
        jvm_pid=bench.jvm_pid,
        broker_pid=bench.broker_pid,
        max_offsets_per_trigger=args.max_offsets_per_trigger,
        timeout_s=args.timeout,
    )
    meta = model.metadata
    params_path = bench.workdir / "baseline-params.npz"
    ScorerParams.from_pipeline(model.pipeline, meta.label_values, meta.name, meta.version).save(params_path)
    # The job densifies the LR coefficients at load (job.runtime.model.with_dense_coefficients); this variant runs the
    # model as saved, so the run shows what that buys.
    sparse_model = with_pipeline(model, PipelineModel.load(args.model))
    starters: dict[str, Callable] = {
        tp.JOB: lambda spark, spec: start_query(spark, spec, model),
        tp.IO_CEILING: lambda spark, spec: start_query(spark, spec, model, transform=unscored(spec, model)),
        tp.JOB_SPARSE_LR: lambda spark, spec: start_query(spark, spec, sparse_model),
    }
    result: dict[str, Any] = {
        "trigger": f"trigger available_now, max_offsets_per_trigger {args.max_offsets_per_trigger:,}, "
        f"starting_offsets earliest, in-process SparkSession local[2] (driver memory {args.driver_memory})",
        "baseline_workers": args.baseline_workers,
    }

    step = max(1, len(bench.texts) // args.sample)
    sample = bench.texts[::step][: args.sample] + list(kafka_io.TRICKY_TEXTS)
    logger.info("throughput: checking that the baseline scores %d tweets like the job", len(sample))
    result["agreement"] = tp.check_agreement(
        ctx, params_path, sample, args.partitions, starters[tp.JOB], starters[tp.JOB_SPARSE_LR]
    )
    logger.info("throughput: agreement %s", json.dumps(result["agreement"]["baseline_vs_job"]))

    source = kafka_io.unique_topic("backlog")
    bench.broker.create_topic(source, partitions=args.partitions)
    logger.info("throughput: filling %s with %d messages", source, args.messages)
    result["fill"] = kafka_io.fill_topic(
        bench.spark, bench.bootstrap, source, bench.texts, args.messages, args.partitions
    )
    logger.info("throughput: filled in %.1f s", result["fill"]["seconds"])
    result["kafka_python_produce_msgs_per_s"] = kafka_io.kafka_python_produce_rate(
        bench.broker, bench.texts, min(args.messages, 50_000), args.partitions
    )

    expected = tp.expected_from_baseline(params_path, bench.texts, args.messages)
    result["baseline_skips_without_features"] = args.messages - expected
    runs: dict[str, list[dict]] = {tp.JOB: [], tp.IO_CEILING: [], tp.BASELINE: [], tp.JOB_SPARSE_LR: []}
    names = list(runs)
    for rep in range(args.repeats):
        # Each repetition starts with another variant, so no variant always runs first (JIT, caches).
        for name in names[rep % len(names) :] + names[: rep % len(names)]:
            logger.info("throughput: %s, run %d of %d", name, rep + 1, args.repeats)
            if name == tp.BASELINE:
                run = tp.run_baseline(
                    ctx, source, args.messages, args.partitions, params_path, args.baseline_workers, expected
                )
            else:
                run = tp.run_query(ctx, name, source, args.messages, args.partitions, starters[name])
            logger.info("throughput: %s: %.0f msgs/s", name, run["msgs_per_s"])
            runs[name].append(run)
    kafka_io.delete_topics(bench.bootstrap, [source])
    result["runs"] = runs
    result["summary"] = tp.summarize(runs)
    return result  # fmt: skip


def section_latency(bench: Bench) -> dict[str, Any]:
    from bench import latency
    from bench.queries import make_spec
    from job.runtime.publish import load_serving_model
    from job.runtime.query import start_query

    args, spark = bench.args, bench.spark
    texts_path = bench.driver_texts()
    result: dict[str, Any] = {}

    def spec_for(tag: str, trigger: Any) -> tuple[Any, Any]:
        topics = kafka_io.new_topics(bench.broker, args.partitions, prefix=f"lat-{tag}-")
        checkpoint = str(bench.workdir / "checkpoints" / topics.target)
        return topics, make_spec(f"bench-latency-{tag}", bench.bootstrap, topics, args.model, checkpoint, trigger)

    def served(spec: Any) -> Any:
        # As `run` loads it for this trigger (job.runtime.publish.load_serving_model): coefficients as saved
        # (sparse) for a processing-time or real-time trigger, dense for available_now.
        model = load_serving_model(spark, args.model, spec.options)
        result.setdefault("model_bytes", {})[spec.options.trigger.kind] = eventlog.java_serialized_bytes(
            spark, model.pipeline
        )
        return model

    def attempt(tag: str, trigger: Any, name: str, settle_s: float) -> dict[str, Any]:
        """Start the query as deployed (the status listener keeps its status document in the workdir), drive it,
        and read its per-batch costs; the listener goes with the query, whether it ran or failed to start."""
        topics, spec = spec_for(tag, trigger)
        tracker, listener = timed_status_listener(spark, spec, bench.workdir / "state" / spec.name)
        try:
            query = start_query(spark, spec, served(spec), tracker)
            error = latency.wait_started(query, settle_s=settle_s)
            if error:
                raise RuntimeError(f"the {name} query failed to start: {error}")
            logger.info("latency: %s: sending %g msgs/s for %g s", tag, args.rate, args.duration)
            stats, series = latency.measure(
                spark, query, bench.bootstrap, topics, texts_path, args.rate, args.duration, args.warmup,
                bench.workdir, tag,
            )  # fmt: skip
        finally:
            spark.streams.removeListener(listener)
        stats["per_batch"] = per_batch_costs(bench, str(query.id), stats.get("warmup_batches", 0))
        stats["per_batch"]["status_listener_ms"] = listener.summary()
        bench.series[tag] = series
        kafka_io.delete_topics(bench.bootstrap, [topics.source, topics.target, topics.dead_letter])
        return stats

    micro: dict[str, Any] = {"trigger": "micro-batch, processing_time 0 seconds", "query": "start_query (as shipped)"}
    try:
        micro.update(attempt("micro_batch", {"processing_time": "0 seconds"}, "micro-batch", settle_s=2))
    except Exception as exc:  # the real-time attempts still run
        logger.exception("latency: micro-batch run failed")
        micro["error"] = latency.first_error_line(exc)
    result["micro_batch"] = micro

    # Each interval is a checkpoint interval: the first is the one the user path runs; a longer one shows the trade.
    for index, interval in enumerate(real_time_intervals(args)):
        key = "real_time" if index == 0 else f"real_time_{interval.split()[0]}s"
        real_time: dict[str, Any] = {
            "trigger": f"real-time mode, realTime={interval!r}",
            "query": "start_query (as shipped)",
        }
        try:
            real_time.update(attempt(key, {"real_time": interval}, "real-time", settle_s=10))
        except Exception as exc:
            logger.exception("latency: real-time run (%s) failed", interval)
            real_time["error"] = latency.first_error_line(exc)
        result[key] = real_time
    return result


def real_time_intervals(args: argparse.Namespace) -> list[str]:
    """--real-time-interval's comma-separated intervals ("5 seconds,30 seconds"), in order."""
    return [part.strip() for part in str(args.real_time_interval).split(",") if part.strip()]


def per_batch_costs(bench: Bench, query_id: str, warmup_batches: int) -> dict[str, Any]:
    """The query's batches after the warm-up, from the session's event log (bench.eventlog)."""
    if not bench.args.event_log:
        return {"error": "no event log (--no-event-log)"}
    path = eventlog.newest_log(bench.event_log_dir)
    if path is None:
        return {"error": f"no event log in {bench.event_log_dir}"}
    time.sleep(2)  # the listener bus writes the stopped query's last events
    return eventlog.summary(eventlog.batch_costs(eventlog.events(path), query_id), skip_first=warmup_batches)


def section_user_latency(bench: Bench) -> dict[str, Any]:
    from bench import user_path

    args = bench.args
    texts_path = bench.driver_texts()
    partition_counts = [int(p) for p in str(args.user_partitions).split(",") if p.strip()]
    first_interval = real_time_intervals(args)[0]
    triggers = {"micro_batch": {"processing_time": "0 seconds"}, "real_time": {"real_time": first_interval}}
    result: dict[str, Any] = {
        "command": "./spark-submit.sh --master local[2] run --spec <spec.yaml> (default memory settings); "
        "producer and consumer in their own process",
    }
    for partitions in partition_counts:
        for mode, trigger in triggers.items():
            tag = f"{mode}_{partitions}p"
            logger.info("user_latency: %s: %g msgs/s for %g s", tag, args.rate, args.user_duration)
            try:
                result[tag] = user_path.measure_latency(
                    bench.broker, bench.bootstrap, args.model, partitions, trigger, texts_path, args.rate,
                    args.user_duration, args.user_warmup, bench.workdir, tag,
                )  # fmt: skip
                logger.info("user_latency: %s: %s", tag, user_path.summary_line(result[tag]))
            except Exception as exc:
                logger.exception("user_latency: %s failed", tag)
                result[tag] = {"error": str(exc)[:1000], "partitions": partitions, "trigger": trigger}
    return result


def section_backlog(bench: Bench) -> dict[str, Any]:
    from bench import user_path

    args = bench.args
    logger.info("backlog: %d messages through spark-submit.sh", args.messages)
    return user_path.measure_backlog(
        bench.spark, bench.broker, bench.bootstrap, args.model, bench.texts, args.messages, args.partitions,
        bench.workdir, args.timeout,
    )  # fmt: skip


def section_model_change(bench: Bench) -> dict[str, Any]:
    from bench.model_change import measure_model_change

    args = bench.args
    texts_path = bench.driver_texts()
    other = str(PROJECT_ROOT / "models" / "sentiment140-only")
    return measure_model_change(
        bench.broker, bench.bootstrap, (args.model, other), args.partitions, texts_path, bench.workdir,
        changes=args.changes, timeout_s=args.timeout,
    )  # fmt: skip


def section_static(bench: Bench) -> dict[str, Any]:
    from pyspark.ml import PipelineModel

    from bench.queries import with_pipeline
    from bench.static import run_static

    args = bench.args
    # `PipelineModel.transform` of the model as saved (sparse LR coefficients); the section also measures it
    # with the coefficients made dense, which is how the job loads it.
    as_saved = with_pipeline(bench.model, PipelineModel.load(args.model))
    return run_static(
        bench.spark, as_saved, bench.texts, args.static_rows, args.investigation_rows, args.static_repeats,
        log=logger.info,
    )  # fmt: skip


def section_scaleout(bench: Bench) -> dict[str, Any]:
    from bench.scaleout import run_scaleout

    args = bench.args
    return run_scaleout(
        args.messages, max(args.partitions, 2), args.repeats, bench.workdir / "scaleout",
        broker=bench.broker, texts=bench.texts,
    )  # fmt: skip


def section_startup(bench: Bench) -> dict[str, Any]:
    from bench.startup import measure_startup
    from bench.user_path import measure_bare_submit

    args = bench.args
    runs, floors = [], []
    for i in range(args.startup_repeats):
        logger.info("startup: a bare spark-submit (%d of %d)", i + 1, args.startup_repeats)
        floors.append(measure_bare_submit(bench.workdir, args.timeout))
        logger.info("startup: bare spark-submit took %.1f s", floors[-1]["seconds"])
        logger.info("startup: launching spark-submit.sh (%d of %d)", i + 1, args.startup_repeats)
        runs.append(
            measure_startup(
                bench.broker, bench.bootstrap, args.model, args.partitions, bench.workdir, args.timeout, str(i)
            )
        )
        logger.info("startup: first scored record after %.1f s", runs[-1]["seconds_to_first_scored_record"])
    median = statistics.median(r["seconds_to_first_scored_record"] for r in runs)
    floor = statistics.median(f["seconds"] for f in floors)
    return {
        "runs": runs,
        "median_seconds": median,
        "bare_spark_submit": floors,
        "bare_spark_submit_median_seconds": floor,
        "ratio_to_bare_spark_submit": round(median / floor, 2),
    }


SECTION_RUNNERS: dict[str, Callable[[Bench], dict[str, Any]]] = {
    "throughput": section_throughput,
    "latency": section_latency,
    "static": section_static,
    "startup": section_startup,
    "user_latency": section_user_latency,
    "backlog": section_backlog,
    "model_change": section_model_change,
    "scaleout": section_scaleout,
}


# ---------------------------------------------------------------------------------------------- main


def environment() -> dict[str, Any]:
    import pyspark

    from job.tools.broker import KAFKA_VERSION

    def first_line(cmd: list[str]) -> str:
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30, cwd=PROJECT_ROOT, check=False)
        except OSError:
            return "unknown"
        return (proc.stdout or proc.stderr).strip().splitlines()[0] if (proc.stdout or proc.stderr).strip() else ""

    dirty = first_line(["git", "status", "--porcelain"])
    mem_kib = next(
        int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")
    )
    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(mem_kib / 2**20, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "pyspark": pyspark.__version__,
        "java": first_line(["java", "-version"]),
        "kafka": KAFKA_VERSION,
        "git_commit": first_line(["git", "rev-parse", "--short", "HEAD"]) + (" (with local changes)" if dirty else ""),
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
    }


def shown_path(path: str) -> str:
    """Relative to the project when inside it."""
    resolved = Path(path).resolve()
    return str(resolved.relative_to(PROJECT_ROOT)) if resolved.is_relative_to(PROJECT_ROOT) else str(resolved)


def model_summary(bench: Bench) -> dict[str, Any]:
    meta = bench.model.metadata
    stages = bench.model.pipeline.stages
    return {
        "location": shown_path(bench.args.model),
        "name": meta.name,
        "version": meta.version,
        "labels": list(meta.label_values),
        "stages": [type(s).__name__ for s in stages],
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = resolve(build_parser().parse_args(argv))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("kafka", "py4j"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    from job.tools.broker import BrokerConfig, LocalBroker
    from job.tools.processes import free_port

    started = time.monotonic()
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    out_dir = args.results_dir / stamp
    out_dir.mkdir(parents=True, exist_ok=False)
    workdir = Path(tempfile.mkdtemp(prefix="bench-"))
    texts, source = kafka_io.load_tweets()
    results: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "parameters": {k: getattr(args, k) for k in ("quick", "only", *DEFAULTS, "driver_memory", "event_log")},
        "environment": environment(),
        "tweets": source,
        "errors": {},
    }
    broker = LocalBroker(BrokerConfig(run_dir=workdir / "kafka", port=free_port(), controller_port=free_port()))
    bench = Bench(args=args, workdir=workdir, broker=broker, texts=texts)
    try:
        logger.info("starting the local Kafka broker in %s", broker.run_dir)
        broker.start(timeout_s=120)
        for section in args.only:
            logger.info("=== %s ===", section)
            try:
                if section in ("throughput", "latency", "static") and "model" not in results:
                    results["model"] = model_summary(bench)
                results[section] = SECTION_RUNNERS[section](bench)
            except Exception as exc:
                logger.exception("section %s failed", section)
                results["errors"][section] = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:500]}"
    except KeyboardInterrupt:
        results["errors"]["interrupted"] = "KeyboardInterrupt"
    finally:
        if bench._spark is not None:
            bench._spark.stop()
            # Kept beside the results, for Spark's history server or a second look at a batch.
            if bench.event_log_dir.is_dir():
                shutil.copytree(bench.event_log_dir, out_dir / "eventlog")
        broker.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    if "model" not in results:
        results["model"] = {"location": shown_path(args.model)}
    results["environment"]["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    results["seconds"] = round(time.monotonic() - started, 1)
    results["plots"] = report.plots(results, bench.series, out_dir)
    report.write_json(results, out_dir / "results.json")
    (out_dir / "results.md").write_text(report.markdown(results))
    report.link_latest(args.results_dir, out_dir)
    print("\n".join(report.console_summary(results)))
    print(f"results: {out_dir}/results.md (and results.json, {', '.join(results['plots']) or 'no plots'})")
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
