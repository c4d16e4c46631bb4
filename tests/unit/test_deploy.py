"""stop_at_batch_boundary on a real streaming query: the batch in flight ends and commits, and none starts after it."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming.query import StreamingQuery

from job.runtime.deploy import stop_at_batch_boundary


def batch_ids(folder: Path) -> list[int]:
    """The batch ids a checkpoint's offsets/ or commits/ log holds."""
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit()) if folder.is_dir() else []


def query_with_a_slow_batch(
    spark: SparkSession, checkpoint: Path, slow_batch: int, events: list[tuple[str, int]]
) -> tuple[StreamingQuery, threading.Event]:
    """A rate source into foreachBatch, whose batch `slow_batch` takes 6 s."""
    slow_started = threading.Event()

    def write(_batch: DataFrame, batch_id: int) -> None:
        events.append(("start", batch_id))
        if batch_id == slow_batch:
            slow_started.set()
            time.sleep(6)
        events.append(("end", batch_id))

    query = (
        spark.readStream.format("rate")
        .option("rowsPerSecond", 5)
        .load()
        .writeStream.foreachBatch(write)
        .option("checkpointLocation", str(checkpoint))
        .trigger(processingTime="0 seconds")
        .start()
    )
    return query, slow_started


def test_a_stop_waits_for_the_batch_in_flight_and_its_commit(spark: SparkSession, tmp_path: Path) -> None:
    events: list[tuple[str, int]] = []
    query, slow_started = query_with_a_slow_batch(spark, tmp_path / "cp", 2, events)
    try:
        assert slow_started.wait(180), query.exception()
        outcome = stop_at_batch_boundary(query)
    finally:
        query.stop()
    assert outcome.graceful, outcome
    # Batch 2 was in flight when the stop came: it ran to its end, and no batch started after it.
    assert events[-2:] == [("start", 2), ("end", 2)]
    assert batch_ids(tmp_path / "cp" / "offsets") == batch_ids(tmp_path / "cp" / "commits") == [0, 1, 2]
    assert not query.isActive and query.exception() is None


def test_at_the_limit_the_batch_in_flight_is_cancelled_and_the_outcome_says_so(
    spark: SparkSession, tmp_path: Path
) -> None:
    marker = tmp_path / "slow-row-reached"

    @F.udf("long")
    def slow_at_twelve(value):  # no type hints: with them pyspark tries to read a pandas UDF type
        # In a Spark task, as a Kafka write is: cancelling the batch's job ends it.
        if value == 12:
            marker.touch()
            time.sleep(120)
        return value

    query = (
        spark.readStream.format("rate")
        .option("rowsPerSecond", 5)
        .load()
        .select(slow_at_twelve("value").alias("value"))
        .writeStream.format("noop")
        .option("checkpointLocation", str(tmp_path / "cp"))
        .trigger(processingTime="0 seconds")
        .start()
    )
    try:
        deadline = time.monotonic() + 180
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert marker.exists(), query.exception()
        slow = batch_ids(tmp_path / "cp" / "offsets")[-1]
        outcome = stop_at_batch_boundary(query, limit_s=2)
    finally:
        query.stop()
    assert not outcome.graceful
    assert outcome.words == (
        f"the stop limit of 2 s was reached during batch {slow} (processing new data), which was cancelled; a "
        "restart scores its input again and writes its records a second time"
    )
    # The slow batch was planned (its offsets logged) and never committed: a restart runs it again.
    assert batch_ids(tmp_path / "cp" / "offsets") == list(range(slow + 1))
    assert batch_ids(tmp_path / "cp" / "commits") == list(range(slow))


def test_a_stop_between_batches_ends_before_the_next_one(spark: SparkSession, tmp_path: Path) -> None:
    events: list[tuple[str, int]] = []
    query = (
        spark.readStream.format("rate")
        .option("rowsPerSecond", 5)
        .load()
        .writeStream.foreachBatch(lambda _batch, batch_id: events.append(("batch", batch_id)))
        .option("checkpointLocation", str(tmp_path / "cp"))
        .trigger(processingTime="1 hour")  # the loop waits an hour between triggers: a stop must not
        .start()
    )
    try:
        deadline = time.monotonic() + 180
        while not batch_ids(tmp_path / "cp" / "commits") and time.monotonic() < deadline:
            time.sleep(0.2)
        outcome = stop_at_batch_boundary(query, limit_s=None)
    finally:
        query.stop()
    assert outcome.graceful
    assert events == [("batch", 0)]
    assert batch_ids(tmp_path / "cp" / "offsets") == batch_ids(tmp_path / "cp" / "commits") == [0]
