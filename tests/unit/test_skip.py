"""The skip command's checkpoint reading and offset arithmetic, on Spark's own checkpoint file formats."""

from __future__ import annotations

import json
from pathlib import Path

from pyspark.sql import SparkSession

from job.runtime.skip import Batch, batch_in_flight, ranges_left

TOPIC = "tweets"


def offset_log(batch_timestamp_ms: int, offsets: dict[int, int]) -> str:
    # As Spark 4.2 writes offsets/N: a version, the batch metadata, then one line per source.
    metadata = {
        "batchWatermarkMs": 0,
        "batchTimestampMs": batch_timestamp_ms,
        "conf": {"spark.sql.shuffle.partitions": "2"},
    }
    return f"v1\n{json.dumps(metadata)}\n{json.dumps({TOPIC: {str(p): o for p, o in offsets.items()}})}"


def write_checkpoint(root: Path, offsets: list[str], commits: int, initial: dict[int, int]) -> None:
    for folder in ("offsets", "commits", "sources/0"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    # sources/0/0 as KafkaSourceInitialOffsetWriter writes it: a 0 byte first, for old readers.
    (root / "sources" / "0" / "0").write_bytes(
        b"\x00v1\n" + json.dumps({TOPIC: {str(p): o for p, o in initial.items()}}).encode()
    )
    for batch_id, text in enumerate(offsets):
        (root / "offsets" / str(batch_id)).write_text(text)
    for batch_id in range(commits):
        (root / "commits" / str(batch_id)).write_text('v1\n{"nextBatchWatermarkMs":0}')


def test_the_batch_in_flight_runs_from_the_previous_end_to_its_own(spark: SparkSession, tmp_path: Path) -> None:
    write_checkpoint(
        tmp_path,
        [offset_log(1000, {0: 15, 1: 15}), offset_log(2000, {0: 30, 1: 27, 2: 4})],
        commits=1,
        initial={0: 0, 1: 0},
    )
    assert batch_in_flight(spark, str(tmp_path), TOPIC) == Batch(1, {0: 15, 1: 15}, {0: 30, 1: 27, 2: 4}, 2000, False)


def test_the_first_batch_starts_at_the_initial_offsets(spark: SparkSession, tmp_path: Path) -> None:
    write_checkpoint(tmp_path, [offset_log(1000, {0: 15})], commits=0, initial={0: 3})
    assert batch_in_flight(spark, str(tmp_path), TOPIC) == Batch(0, {0: 3}, {0: 15}, 1000, False)
    write_checkpoint(tmp_path, [offset_log(1000, {0: 15})], commits=1, initial={0: 3})
    assert batch_in_flight(spark, str(tmp_path), TOPIC) == Batch(0, {0: 3}, {0: 15}, 1000, True)
    assert batch_in_flight(spark, str(tmp_path / "never-ran"), TOPIC) is None


def test_what_is_left_of_a_batch_is_neither_written_nor_skipped() -> None:
    batch = Batch(4, {0: 10, 1: 5, 2: 7}, {0: 20, 1: 8, 2: 7}, 0, False)
    written = {(0, 10), (0, 11), (0, 15), (1, 5), (1, 7)}
    assert ranges_left(batch, written, [(0, 13)]) == [(0, 12, 13), (0, 14, 15), (0, 16, 20), (1, 6, 7)]
    assert ranges_left(batch, set(), []) == [(0, 10, 20), (1, 5, 8)]
    assert batch.holds(0, 10) and batch.holds(0, 19) and not batch.holds(0, 20) and not batch.holds(2, 7)
