"""Scale-out: the job draining a backlog on a Spark standalone cluster, 1 executor against 2 executors.

    python -m bench.scaleout --messages 20000 --partitions 4 --repeats 1

A local Kafka broker (or the caller's) holds a backlog of `messages` tweets in a topic of `partitions`
partitions. A standalone cluster (`job.tools.standalone`: one master, one worker with 2 cores and 2g) runs the
job exactly as a person would (`./spark-submit.sh --master spark://... --deploy-mode client run --spec
FILE`), once with one executor of one core (`spark.cores.max=1`) and once with two (`spark.cores.max=2`,
`spark.executor.cores=1`), interleaved over `repeats` rounds, each on fresh output topics and a fresh
checkpoint, reading the backlog from the earliest offset.

The clock starts when the deployment reports RUNNING in its status document (the query has started;
both executors are registered, since the cluster's submit options wait for them) and stops when the
output and dead-letter topics together hold every message. So the figure is the rate of draining the
backlog, without the JVM start-up and model load, which `startup_s` reports apart. With more than one
micro-batch (`max_offsets_per_trigger` below `messages`), `steady_messages_per_s` is the rate after the
first batch, when every executor's JIT, generated code and Kafka clients are warm: the rate a long-running
deployment sees. Medians over the repeats; the ratios are the 2-executor medians over the 1-executor ones.

On one machine both executors share its cores with the driver and the Kafka broker: with 2 cores the
ratio shows how much of the work the second executor can take over, not what two cluster nodes give.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import kafka_io
from bench.kafka_io import OffsetWatcher, Topics
from job.runtime.status import StateStore
from job.tools import specs
from job.tools.deps import PROJECT_ROOT
from job.tools.processes import stop_job
from job.tools.specs import SHIPPED_MODEL, spec_document
from job.tools.standalone import StandaloneCluster

logger = logging.getLogger(__name__)

MODEL = SHIPPED_MODEL
RESULTS_DIR = PROJECT_ROOT / "bench" / "results"
# name -> (spark.cores.max, spark.executor.cores): executors = cores.max / executor.cores.
CONFIGS: dict[str, tuple[int, int]] = {"1_executor": (1, 1), "2_executors": (2, 1)}
WORKER_CORES = 2
WORKER_MEMORY = "2g"


def run_scaleout(
    messages: int,
    partitions: int,
    repeats: int,
    workdir: Path,
    *,
    broker: Any = None,
    texts: Sequence[str] | None = None,
    max_offsets_per_trigger: int | None = None,
    executor_memory: str = "1g",
    driver_memory: str = "1g",
    timeout_s: float = 900.0,
) -> dict[str, Any]:
    """Messages per second draining the same backlog with 1 and with 2 executors; medians and their ratio.

    `broker` is a started `job.tools.broker.LocalBroker` (or anything with `bootstrap_servers` and
    `create_topic`); without one, a broker is started in `workdir` and stopped at the end. `texts` are
    the tweets (default: the shared data set, else generated ones). `max_offsets_per_trigger` defaults
    to the job's own default.
    """
    if partitions < 2:
        raise ValueError(f"partitions: found {partitions}, expected at least 2 (one task per executor at least)")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    own_broker = broker is None
    if own_broker:
        from job.tools.broker import BrokerConfig, LocalBroker
        from job.tools.processes import free_port

        broker = LocalBroker(BrokerConfig(run_dir=workdir / "kafka", port=free_port(), controller_port=free_port()))
        broker.start(timeout_s=120)
    if texts is None:
        texts, source = kafka_io.load_tweets()
    else:
        source = f"given ({len(texts)} tweets)"
    results: dict[str, Any] = {
        "messages": messages,
        "partitions": partitions,
        "repeats": repeats,
        "max_offsets_per_trigger": max_offsets_per_trigger,
        "tweets": source,
        "cluster": {
            "workers": 1,
            "worker_cores": WORKER_CORES,
            "worker_memory": WORKER_MEMORY,
            "executor_memory": executor_memory,
            "driver_memory": driver_memory,
            "deploy_mode": "client",
        },
        "cpu_count": os.cpu_count(),
        "load_average_start": [round(x, 2) for x in os.getloadavg()],
    }
    cluster = StandaloneCluster(workdir / "cluster", workers=1, worker_cores=WORKER_CORES, worker_memory=WORKER_MEMORY)
    try:
        source_topic = kafka_io.unique_topic("scaleout-in")
        broker.create_topic(source_topic, partitions=partitions)
        results["fill"] = fill(broker.bootstrap_servers, source_topic, texts, messages, partitions)
        cluster.start(timeout_s=180)
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in CONFIGS}
        for repeat in range(repeats):
            # Alternate the order, so that a machine getting busier or quieter favours neither.
            order = list(CONFIGS) if repeat % 2 == 0 else list(reversed(CONFIGS))
            for name in order:
                cores_max, executor_cores = CONFIGS[name]
                run = drain(
                    cluster,
                    broker,
                    source_topic,
                    messages,
                    partitions,
                    workdir / f"{name}-{repeat}",
                    cores_max=cores_max,
                    executor_cores=executor_cores,
                    executor_memory=executor_memory,
                    driver_memory=driver_memory,
                    max_offsets_per_trigger=max_offsets_per_trigger,
                    timeout_s=timeout_s,
                )
                logger.info("%s, repeat %d: %.0f msgs/s (%s)", name, repeat + 1, run["messages_per_s"], run)
                runs[name].append(run)
        kafka_io.delete_topics(broker.bootstrap_servers, [source_topic])
    finally:
        cluster.stop()
        if own_broker:
            broker.stop()
    results["configs"] = {name: summarize(name, runs[name]) for name in CONFIGS}
    one, two = (results["configs"][name]["median_messages_per_s"] for name in CONFIGS)
    results["ratio_2_vs_1"] = round(two / one, 2) if one else None
    one, two = (results["configs"][name]["median_steady_messages_per_s"] for name in CONFIGS)
    results["steady_ratio_2_vs_1"] = round(two / one, 2) if one and two else None
    results["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    return results


def fill(bootstrap: str, topic: str, texts: Sequence[str], messages: int, partitions: int) -> dict[str, float]:
    """`messages` JSON tweets {"id", "text"}, id i to partition i % partitions, every send acknowledged."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20, batch_size=1024 * 1024)
    started = time.perf_counter()
    try:
        for i in range(messages):
            value = json.dumps({"id": i, "text": texts[i % len(texts)]}).encode()
            producer.send(topic, value, key=str(i).encode(), partition=i % partitions)
        producer.flush(timeout=300)
    finally:
        producer.close()
    seconds = time.perf_counter() - started
    with OffsetWatcher(bootstrap, topic) as watcher:
        stored = watcher.total()
    if stored != messages:
        raise RuntimeError(f"the backlog topic {topic} holds {stored} messages after the fill, not {messages}")
    return {"messages": messages, "seconds": round(seconds, 2), "messages_per_s": round(messages / seconds, 1)}


def drain(
    cluster: StandaloneCluster,
    broker: Any,
    source_topic: str,
    messages: int,
    partitions: int,
    run_dir: Path,
    *,
    cores_max: int,
    executor_cores: int,
    executor_memory: str,
    driver_memory: str,
    max_offsets_per_trigger: int | None,
    timeout_s: float,
) -> dict[str, Any]:
    """One run of the job on the cluster over the whole backlog; seconds from RUNNING to the last record."""
    topics = Topics(source_topic, kafka_io.unique_topic("scaleout-out"), kafka_io.unique_topic("scaleout-dlq"))
    for topic in (topics.target, topics.dead_letter):
        broker.create_topic(topic, partitions=partitions)
    run_dir.mkdir(parents=True, exist_ok=True)
    spec_path = write_spec(run_dir, broker.bootstrap_servers, topics, max_offsets_per_trigger)
    store = StateStore(str(run_dir / "state"))
    log_path = run_dir / "job.log"
    started = time.monotonic()
    running_at = finished_at = None
    first_batch: tuple[float, int] | None = None  # when the first micro-batch was recorded, and its rows
    proc = cluster.submit(
        spec_path,
        log_path,
        cores_max=cores_max,
        executor_cores=executor_cores,
        executor_memory=executor_memory,
        driver_memory=driver_memory,
    )
    try:
        with (
            OffsetWatcher(broker.bootstrap_servers, topics.target) as out,
            OffsetWatcher(broker.bootstrap_servers, topics.dead_letter) as dead,
        ):
            while time.monotonic() - started < timeout_s and proc.poll() is None:
                now = time.monotonic()
                if running_at is None and _status(store).get("state") == "RUNNING":
                    running_at = now
                if first_batch is None and _records_in(store) > 0:
                    first_batch = (now, _records_in(store))
                if out.total() + dead.total() >= messages:
                    finished_at = time.monotonic()
                    break
                time.sleep(0.05)
            written, dead_lettered = out.total(), dead.total()
        # The records are in Kafka before the listener records the batch's progress; wait for it.
        deadline = time.monotonic() + 30
        while _records_in(store) < messages and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.1)
        status = _status(store)
    finally:
        code = stop_job(proc)
    if finished_at is None or running_at is None:
        tail = log_path.read_text(errors="replace").splitlines()[-15:]
        raise RuntimeError(
            f"the job on {cores_max} core(s) wrote {written + dead_lettered} of {messages} records "
            f"(exit {code}, status {status.get('state')}):\n" + "\n".join(tail)
        )
    kafka_io.delete_topics(broker.bootstrap_servers, [topics.target, topics.dead_letter])
    shutil.rmtree(run_dir / "checkpoint", ignore_errors=True)
    drain_s = finished_at - running_at
    # After the first micro-batch every executor has its JIT, generated code and Kafka clients warm: the
    # rate from there on is the one a long-running deployment sees (only with more than one batch).
    steady = None
    if first_batch is not None and first_batch[1] < messages and finished_at > first_batch[0]:
        steady = round((messages - first_batch[1]) / (finished_at - first_batch[0]), 1)
    return {
        "spark.cores.max": cores_max,
        "spark.executor.cores": executor_cores,
        "executors": cores_max // executor_cores,
        "messages_per_s": round(messages / drain_s, 1),
        "drain_s": round(drain_s, 2),
        "steady_messages_per_s": steady,
        "startup_s": round(running_at - started, 2),
        "scored": written,
        "dead_lettered": dead_lettered,
        "micro_batches": (status.get("progress") or {}).get("batch_id", -1) + 1,
        "exit_code": code,
    }


def write_spec(run_dir: Path, bootstrap: str, topics: Topics, max_offsets_per_trigger: int | None) -> Path:
    options: dict[str, Any] = {"starting_offsets": "earliest"}  # default trigger: as fast as possible
    if max_offsets_per_trigger is not None:
        options["max_offsets_per_trigger"] = max_offsets_per_trigger
    roles = {"in": topics.source, "out": topics.target, "dlq": topics.dead_letter}
    document = spec_document(
        f"bench-scaleout-{run_dir.name}", roles, run_dir / "checkpoint", bootstrap, model=MODEL,
        state=run_dir / "state", options=options,
    )  # fmt: skip
    return specs.write_spec(run_dir / "spec.yaml", document)


def summarize(name: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    cores_max, executor_cores = CONFIGS[name]
    return {
        "spark.cores.max": cores_max,
        "spark.executor.cores": executor_cores,
        "executors": cores_max // executor_cores,
        "median_messages_per_s": round(statistics.median(r["messages_per_s"] for r in runs), 1),
        "median_steady_messages_per_s": _median([r["steady_messages_per_s"] for r in runs]),
        "median_drain_s": round(statistics.median(r["drain_s"] for r in runs), 2),
        "median_startup_s": round(statistics.median(r["startup_s"] for r in runs), 2),
        "runs": runs,
    }


def _median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(statistics.median(known), 1) if known else None


def _status(store: StateStore) -> dict[str, Any]:
    try:
        return store.read_status() or {}
    except ValueError:  # never half a document (it is replaced atomically), but say nothing rather than fail
        return {}


def _records_in(store: StateStore) -> int:
    return int((_status(store).get("totals") or {}).get("records_in", 0))


def summary_lines(results: dict[str, Any]) -> list[str]:
    lines = [
        f"scale-out: {results['messages']} messages, {results['partitions']} partitions, "
        f"{results['repeats']} repeat(s), {results['cpu_count']} CPUs, load {results['load_average_start']} -> "
        f"{results['load_average_end']}",
        f"{'config':<12} {'executors':>9} {'msgs/s':>10} {'steady':>10} {'drain s':>8} {'start-up s':>10}",
    ]
    for name, config in results["configs"].items():
        lines.append(
            f"{name:<12} {config['executors']:>9} {config['median_messages_per_s']:>10.0f} "
            f"{_shown(config['median_steady_messages_per_s']):>10} "
            f"{config['median_drain_s']:>8.1f} {config['median_startup_s']:>10.1f}"
        )
    lines.append(
        f"2 executors / 1 executor: {results['ratio_2_vs_1']}x draining the backlog, "
        f"{_shown(results['steady_ratio_2_vs_1'], '{:.2f}x')} after the first micro-batch"
    )
    return lines


def _shown(value: float | None, fmt: str = "{:.0f}") -> str:
    return "-" if value is None else fmt.format(value)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scaleout", description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200_000, help="messages in the backlog (default 200000)")
    parser.add_argument("--partitions", type=int, default=4, help="partitions of the topics (default 4)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each configuration, interleaved (default 3)")
    parser.add_argument("--max-offsets-per-trigger", type=int, help="the job's cap per micro-batch (default: its own)")
    parser.add_argument("--executor-memory", default="1g")
    parser.add_argument("--driver-memory", default="1g")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per run before giving up")
    parser.add_argument(
        "--out", type=Path, help="JSON file for the figures (default bench/results/scaleout-<UTC>.json)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("kafka", "py4j"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    workdir = Path(tempfile.mkdtemp(prefix="bench-scaleout-"))
    try:
        results = run_scaleout(
            args.messages,
            args.partitions,
            args.repeats,
            workdir,
            max_offsets_per_trigger=args.max_offsets_per_trigger,
            executor_memory=args.executor_memory,
            driver_memory=args.driver_memory,
            timeout_s=args.timeout,
        )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    out = args.out or RESULTS_DIR / f"scaleout-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print("\n".join(summary_lines(results)))
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
