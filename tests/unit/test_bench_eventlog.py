"""The benchmark's per-batch costs: Spark's event log read per batch, the warm-up cut, the model's serialized size."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pyspark.ml import Estimator, Pipeline, Transformer
from pyspark.ml.classification import LogisticRegression
from pyspark.ml.feature import HashingTF, Tokenizer
from pyspark.sql import SparkSession

from bench.eventlog import BatchCosts, batch_costs, events, java_serialized_bytes, summary
from bench.latency import warmup_batches
from bench.report import _per_batch_md
from job.runtime.model import with_dense_coefficients

QUERY = "5f3c0c1e-0000-4000-8000-000000000001"
OTHER = "5f3c0c1e-0000-4000-8000-000000000002"


def job_start(job: int, stages: list[int], batch: int | None, query: str | None = QUERY) -> dict[str, Any]:
    props = {} if batch is None else {"streaming.sql.batchId": str(batch), "sql.streaming.queryId": query}
    return {"Event": "SparkListenerJobStart", "Job ID": job, "Stage IDs": stages, "Properties": props}


def block(name: str, size: int, replication: int = 1, executor: str = "driver") -> dict[str, Any]:
    return {
        "Event": "SparkListenerBlockUpdated",
        "Block Updated Info": {
            "Block Manager ID": {"Executor ID": executor, "Host": "192.0.2.2", "Port": 40000},
            "Block ID": name,
            "Storage Level": {"Use Disk": False, "Use Memory": True, "Deserialized": False, "Replication": replication},
            "Memory Size": size,
            "Disk Size": 0,
        },
    }


def task_end(stage: int, deserialize_ms: int, run_ms: int, cpu_ns: int) -> dict[str, Any]:
    return {
        "Event": "SparkListenerTaskEnd",
        "Stage ID": stage,
        "Task Metrics": {
            "Executor Deserialize Time": deserialize_ms,
            "Executor Deserialize CPU Time": 2_000_000,
            "Executor Run Time": run_ms,
            "Executor CPU Time": cpu_ns,
        },
    }


def test_each_batch_gets_its_broadcasts_and_tasks_and_removals_and_other_queries_do_not_count() -> None:
    log = [
        block("broadcast_0_piece0", 41_513),  # before any streaming job: the model check's own job
        job_start(0, [0], None),
        block("broadcast_1_piece0", 5_367),
        task_end(0, 500, 900, 10**9),  # a stage of no batch
        job_start(1, [1], 0),
        block("broadcast_2_piece0", 134_204),
        block("broadcast_0_piece0", 41_513, replication=0),  # the cleaner removing an old one
        task_end(1, 12, 300, 150_000_000),
        task_end(1, 8, 200, 50_000_000),
        job_start(2, [2], 7, query=OTHER),
        block("broadcast_3_piece0", 99_999),
        task_end(2, 99, 999, 10**9),
        job_start(3, [3], 1),
        block("broadcast_4_piece0", 4_194_304),  # a broadcast of two pieces
        block("broadcast_4_piece1", 1_000),
        block("broadcast_4_piece0", 4_194_304, executor="1"),  # an executor's fetched copy
        block("broadcast_2_piece0", 134_204, replication=0),
        task_end(3, 5, 100, 20_000_000),
    ]
    batches = batch_costs(log, QUERY)
    assert sorted(batches) == [0, 1]
    assert batches[0] == BatchCosts(
        broadcast_bytes={2: 134_204}, tasks=2, deserialize_ms=20, deserialize_cpu_ms=4.0, run_ms=500, cpu_ms=200.0
    )
    assert batches[1] == BatchCosts(
        broadcast_bytes={4: 4_195_304}, tasks=1, deserialize_ms=5, deserialize_cpu_ms=2.0, run_ms=100, cpu_ms=20.0
    )


def test_summary_leaves_out_the_warm_up_batches_in_batch_order() -> None:
    batches = {
        3: BatchCosts({9: 100}, 1, 1.0, 1.0, 10.0, 5.0),
        1: BatchCosts({1: 2_000_000}, 1, 90.0, 80.0, 900.0, 800.0),  # warm-up: first by batch id
        2: BatchCosts({5: 300, 6: 10}, 3, 3.0, 2.0, 30.0, 15.0),
    }
    assert summary(batches, skip_first=1) == {
        "batches": 2,
        "broadcasts_per_batch": 1.5,
        "task_binary_bytes_per_batch": 205.0,
        "largest_task_binary_bytes": 300,
        "tasks_per_batch": 2.0,
        "deserialize_ms_per_batch": 2.0,
        "deserialize_cpu_ms_per_batch": 1.5,
        "task_run_ms_per_batch": 20.0,
        "task_cpu_ms_per_batch": 10.0,
    }
    assert summary(batches, skip_first=3) == {"batches": 0}


def test_events_skip_a_half_written_last_line(tmp_path: Path) -> None:
    path = tmp_path / "local-1.inprogress"
    path.write_text(json.dumps(job_start(0, [0], 0)) + "\n" + '{"Event":"SparkListenerTaskEnd","Stage')
    assert list(events(path)) == [job_start(0, [0], 0)]


def test_warmup_batches_counts_the_batches_begun_within_the_warm_up_of_the_first() -> None:
    progress = [
        {"timestamp": "2026-12-02T14:00:00.000Z"},
        {"timestamp": "2026-12-02T14:00:09.999Z"},
        {"timestamp": "2026-12-02T14:00:10.000Z"},
        {"timestamp": "2026-12-02T14:00:30.500Z"},
    ]
    assert warmup_batches(progress, 10.0) == 2
    assert warmup_batches(progress, 0.0) == 0
    assert warmup_batches([], 10.0) == 0


def test_the_dense_coefficients_are_what_make_the_model_heavy(spark: SparkSession) -> None:
    frame = spark.createDataFrame(
        [(0, "good day", 1.0), (1, "bad day", 0.0), (2, "good good", 1.0), (3, "bad bad", 0.0)],
        "id int, text string, label double",
    )
    stages: list[Estimator[Any] | Transformer] = [
        Tokenizer(inputCol="text", outputCol="words"),
        HashingTF(inputCol="words", outputCol="features", numFeatures=1 << 18),
        LogisticRegression(maxIter=5),
    ]
    fitted = Pipeline(stages=stages).fit(frame)
    lr: Any = fitted.stages[2]
    if lr.coefficients.toArray().nonzero()[0].size == 1 << 18:
        raise AssertionError("the fit gave every coefficient a weight: the sparse case is not tested")
    sparse = java_serialized_bytes(spark, fitted)
    dense = java_serialized_bytes(spark, with_dense_coefficients(spark, fitted))
    assert list(sparse) == ["0_Tokenizer", "1_HashingTF", "2_LogisticRegressionModel"]
    assert sparse["0_Tokenizer"] == dense["0_Tokenizer"] and sparse["1_HashingTF"] == dense["1_HashingTF"]
    # 2^18 doubles dense; a handful of words' weights as saved.
    assert dense["2_LogisticRegressionModel"] > 8 * (1 << 18) > 100 * sparse["2_LogisticRegressionModel"]


def test_the_report_shows_each_batch_cost_beside_the_progress_split() -> None:
    run = {
        "trigger": "micro-batch, processing_time 0 seconds",
        "batches": 40,
        "codegen": {"compilations": 0},
        "median_duration_ms": {"queryPlanning": 107, "walCommit": 48, "addBatch": 248, "commitOffsets": 53},
        "per_batch": {
            "batches": 30,
            "broadcasts_per_batch": 1.0,
            "task_binary_bytes_per_batch": 134_204.0,
            "deserialize_ms_per_batch": 4.0,
            "task_run_ms_per_batch": 180.0,
            "task_cpu_ms_per_batch": 120.5,
            "status_listener_ms": {"events": 40, "median_ms": 3.9, "p99_ms": 6.4},
        },
    }
    lines = _per_batch_md(
        {"micro_batch": run, "model_bytes": {"processing_time": {"2_LogisticRegressionModel": 86_450}}}
    )
    assert (
        "| micro-batch, processing_time 0 seconds | 30 | 0.00 | 134.2 | 1 | 4.0 | 180.0 | 120.5 | 107 | 48 | 248 | 53 "
        "| 3.9 (6.4) |" in lines
    )
    assert (
        "- The model's stages as Java serialization writes them (processing_time): LogisticRegressionModel 86.5 KB."
        in lines
    )
    assert _per_batch_md({"micro_batch": {"error": "failed"}}) == []


def test_real_time_intervals_are_read_in_order_and_none_is_refused() -> None:
    from bench.run import build_parser, real_time_intervals, resolve

    args = resolve(build_parser().parse_args(["--real-time-interval", " 5 seconds, 30 seconds ,", "--only", "latency"]))
    assert real_time_intervals(args) == ["5 seconds", "30 seconds"]
    assert real_time_intervals(resolve(build_parser().parse_args([]))) == ["5 seconds", "30 seconds"]
    with pytest.raises(SystemExit, match="at least one interval"):
        resolve(build_parser().parse_args(["--real-time-interval", " , "]))


def test_latency_modes_keep_the_order_the_runs_ran_in() -> None:
    from bench.report import latency_modes

    lat = {"micro_batch": {}, "real_time": {}, "real_time_30s": {"error": "x"}, "model_bytes": {"a": 1}, "note": "n"}
    assert latency_modes(lat) == ["micro_batch", "real_time", "real_time_30s"]


def test_the_event_log_is_on_unless_left_out(tmp_path: Path) -> None:
    from bench.run import build_parser, event_log_conf, resolve

    assert resolve(build_parser().parse_args([])).event_log is True
    assert resolve(build_parser().parse_args(["--no-event-log"])).event_log is False
    conf = event_log_conf(tmp_path / "events")
    assert (tmp_path / "events").is_dir()
    assert conf["spark.eventLog.dir"] == (tmp_path / "events").as_uri()
    # What bench.eventlog reads: one uncompressed file, with the block updates.
    assert (conf["spark.eventLog.enabled"], conf["spark.eventLog.compress"], conf["spark.eventLog.rolling.enabled"],
            conf["spark.eventLog.logBlockUpdates.enabled"]) == ("true", "false", "false", "true")  # fmt: skip
