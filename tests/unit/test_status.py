"""Status document: state changes, progress folding, lag arithmetic, atomic writes and scrubbed errors."""

from __future__ import annotations

import json
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from job.runtime.connection import connection_scrubber
from job.runtime.secrets import Secret
from job.runtime.status import COUNTS_METRIC, StateStore, StatusListener, StatusTracker, offsets_behind_latest
from job.runtime.values import Connection

SECRET_CONNECTION = Connection(("h:9093",), "SASL_SSL", "PLAIN", "user1", Secret("pa55word"))


def status_of(store: StateStore) -> dict[str, Any]:
    status = store.read_status()
    assert status is not None
    return status


def progress_event(
    batch: int, rows: int, records: int, dead: int, latest: dict[str, int], end: dict[str, int]
) -> dict[str, Any]:
    return {
        "batchId": batch,
        "timestamp": "2026-11-27T10:00:00.000Z",
        "numInputRows": rows,
        "inputRowsPerSecond": 100.04,
        "processedRowsPerSecond": "NaN",
        "batchDuration": 812,
        "observedMetrics": {"deployment_counts": {"records": records, "dead_lettered": dead}},
        "sources": [{"latestOffset": json.dumps({"in": latest}), "endOffset": json.dumps({"in": end})}],
    }


def test_lag_is_the_sum_over_partitions_of_latest_minus_reached() -> None:
    sources = [{"latestOffset": '{"t":{"0":100,"1":50}}', "endOffset": '{"t":{"0":90,"1":50}}'}]
    assert offsets_behind_latest(sources) == 10
    assert offsets_behind_latest([{"latestOffset": '{"t":{"0":7}}', "endOffset": "{}"}]) == 7
    assert offsets_behind_latest([{"latestOffset": {"t": {"0": 9}}, "endOffset": {"t": {"0": 4}}}]) == 5
    assert offsets_behind_latest([{"latestOffset": None, "endOffset": None}]) is None


def test_tracker_folds_progress_and_carries_totals_over_a_restart(tmp_path: Path) -> None:
    store = StateStore(str(tmp_path / "state"))
    tracker = StatusTracker(store, "dep", scrub=lambda t: t)
    tracker.set_state("INITIALIZING")
    assert status_of(store)["state"] == "INITIALIZING"
    tracker.started("qid", "rid")
    tracker.progress(progress_event(0, 10, 10, 3, {"0": 20}, {"0": 10}))
    tracker.progress(progress_event(1, 5, 5, 0, {"0": 20}, {"0": 15}))
    status = status_of(store)
    assert status["state"] == "RUNNING"
    assert (status["query_id"], status["run_id"]) == ("qid", "rid")
    assert status["progress"] == {
        "batch_id": 1,
        "timestamp": "2026-11-27T10:00:00.000Z",
        "input_rows": 5,
        "input_rows_per_second": 100.0,
        "processed_rows_per_second": 0.0,
        "batch_duration_ms": 812,
        "scored": 5,
        "dead_lettered": 0,
        "offsets_behind_latest": 5,
    }
    assert status["totals"] == {"records_in": 15, "records_scored": 12, "records_dead_lettered": 3}
    tracker.set_state("STOPPED")

    again = StatusTracker(store, "dep", scrub=lambda t: t)
    again.progress(progress_event(2, 4, 4, 1, {"0": 24}, {"0": 24}))
    assert status_of(store)["totals"] == {"records_in": 19, "records_scored": 15, "records_dead_lettered": 4}


def test_failure_reason_is_scrubbed_of_every_form_of_the_secret(tmp_path: Path) -> None:
    store = StateStore(str(tmp_path))
    tracker = StatusTracker(store, "dep", scrub=connection_scrubber([SECRET_CONNECTION]))
    jaas = 'org.apache.kafka.common.security.plain.PlainLoginModule required username="user1" password="pa55word";'
    tracker.terminated(f"Kafka said: bad config {jaas} / pa55word / cGE1NXdvcmQ=")
    text = (tmp_path / "status.json").read_text()
    assert "pa55word" not in text and "cGE1NXdvcmQ=" not in text and "PlainLoginModule" not in text
    assert status_of(store)["reason"] == "Kafka said: bad config ***** / ***** / *****"
    assert status_of(store)["state"] == "FAILED"


def test_status_writes_leave_no_temporary_files(tmp_path: Path) -> None:
    store = StateStore(str(tmp_path))
    for i in range(20):
        store.write_status({"n": i})
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]
    assert store.read_status() == {"n": 19}
    store.request_stop()
    assert store.stop_requested()
    store.clear_stop()
    assert not store.stop_requested()


def test_a_batch_folded_twice_counts_once(tmp_path: Path) -> None:
    # The run loop folds the last batch when it stops; Spark's listener event for that batch may come after.
    store = StateStore(str(tmp_path))
    tracker = StatusTracker(store, "dep", scrub=lambda t: t)
    tracker.progress(progress_event(0, 10, 10, 1, {"0": 10}, {"0": 10}))
    tracker.progress(progress_event(0, 10, 10, 1, {"0": 10}, {"0": 10}))
    tracker.progress(progress_event(1, 0, 0, 0, {"0": 10}, {"0": 10}))  # a trigger without data: no count
    tracker.progress(progress_event(2, 4, 4, 0, {"0": 14}, {"0": 14}))
    assert status_of(store)["totals"] == {"records_in": 14, "records_scored": 13, "records_dead_lettered": 1}


def test_heartbeat_bound_and_stop_marker_time_are_in_the_state_folder(tmp_path: Path) -> None:
    store = StateStore(str(tmp_path))
    tracker = StatusTracker(store, "dep", scrub=lambda t: t, stale_after_s=45.0)
    tracker.beat()
    status = status_of(store)
    assert status["stale_after_s"] == 45.0 and status["heartbeat_at"] == status["updated_at"]
    assert store.stop_requested_at() is None
    store.request_stop()
    written = (tmp_path / "stop-requested").read_text()
    assert store.stop_requested_at() == datetime.fromisoformat(written.strip().replace("Z", "+00:00")).timestamp()
    (tmp_path / "stop-requested").write_text("not a time\n")
    assert store.stop_requested_at() == 0.0


def test_the_listener_records_the_start_and_every_batch_of_a_real_query(spark: SparkSession, tmp_path: Path) -> None:
    # Through the JSON shim (StatusListener._jlistener): Spark's own events, two micro-batches, the totals from
    # the observed metrics; a failure is left to the run loop, so the state stays as the listener found it.
    source = tmp_path / "in"
    for n, values in ((1, ["a", "b", "c"]), (2, ["d", "fail"])):
        spark.createDataFrame([(v,) for v in values], "value string").coalesce(1).write.parquet(str(source / f"b{n}"))
    tracker = StatusTracker(StateStore(str(tmp_path / "state")), "dep", scrub=lambda t: t)
    listener = StatusListener(tracker, "listened")
    spark.streams.addListener(listener)
    stream = (
        spark.readStream.schema("value string")
        .option("recursiveFileLookup", "true")
        .option("maxFilesPerTrigger", 1)
        .parquet(str(source))
    )
    observed = stream.observe(
        COUNTS_METRIC,
        F.count(F.lit(1)).alias("records"),
        F.sum((F.col("value") == "a").cast("int")).alias("dead_lettered"),
    )
    query = (
        observed.writeStream.queryName("listened")
        .format("noop")
        .option("checkpointLocation", str(tmp_path / "cp"))
        .start()
    )
    try:
        query.processAllAvailable()
        # Progress events reach the listener asynchronously, after the batch ended.
        deadline = time.monotonic() + 60
        while (tracker.status.get("progress") or {}).get("batch_id") != 1 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        query.stop()
        spark.streams.removeListener(listener)
    status = StateStore(str(tmp_path / "state")).read_status()
    assert status is not None
    assert (status["query_id"], status["run_id"]) == (str(query.id), str(query.runId))
    assert status["progress"]["batch_id"] == 1
    assert status["totals"] == {"records_in": 5, "records_scored": 4, "records_dead_lettered": 1}
