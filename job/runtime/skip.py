"""`skip`: move a failed deployment past records Spark's Kafka source cannot read, recording them as dead letters.

Spark's Kafka source turns every record it reads into a row with a TimestampType column, whatever the query
selects (KafkaRecordToRowConverter builds the whole row; the source offers no column pruning and refuses
consumer interceptors). A record whose timestamp overflows microseconds (a producer may send
`timestamp_ms=-9223372036854776`; Kafka accepts it) therefore fails the micro-batch, and the query, on every
start. Nothing in the query can step around it, so this command does, outside the query:

1. From the checkpoint, the micro-batch in flight: offsets/N (its planned end) has no commits/N. Its start is
   offsets/N-1, or for the first batch the initial offsets in sources/0/0.
2. What the failed attempts already wrote: records in the output and dead-letter topics, from a minute
   before batch N was planned, whose sourceTopic/sourcePartition/sourceOffset fall in batch N.
3. Every other offset of batch N except the unreadable ones is read (a Kafka batch read of exactly those
   ranges), scored and written as the query would; each unreadable record, read with the Kafka consumer
   itself, becomes an UNREADABLE_TIMESTAMP dead letter.
4. commits/N is written, so the next start begins at batch N's end: nothing of batch N is read again.

Run again after a crash half-way, it finds what it wrote in step 2 and writes only the rest, so every offset
still gets exactly one record.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from job.runtime import scoring, storage
from job.runtime.connection import kafka_client_options
from job.runtime.failures import unreadable_record
from job.runtime.status import StateStore, now_iso
from job.runtime.values import EXIT_FAILED, EXIT_OK

if TYPE_CHECKING:
    from job.runtime.model import LoadedModel
    from job.runtime.values import Connection, DeploymentSpec

logger = logging.getLogger(__name__)

UNREADABLE_TIMESTAMP = "UNREADABLE_TIMESTAMP"
# How long before batch N was planned the search for its records starts: room for the clock difference
# between the driver (which stamps the batch) and the executors' producers (which stamp the records).
CLOCK_MARGIN_MS = 60_000
KAFKA_SCHEMA = "key binary, value binary, topic string, partition int, offset long, timestamp timestamp"


class SkipError(RuntimeError):
    """The skip cannot be done as asked; the message says why and what to do instead."""


@dataclass(frozen=True)
class Batch:
    """A micro-batch of the checkpoint: offsets [start, end) per partition of the input topic."""

    batch_id: int
    start: dict[int, int]
    end: dict[int, int]
    planned_at_ms: int
    committed: bool

    def holds(self, partition: int, offset: int) -> bool:
        return self.start.get(partition, self.end.get(partition, 0)) <= offset < self.end.get(partition, 0)


@dataclass(frozen=True)
class SkipResult:
    batch_id: int
    already_written: int
    scored: int
    dead_lettered: int
    skipped: tuple[tuple[int, int], ...]


# -- the checkpoint, through Hadoop (any URI Spark checkpoints to; checksums kept as Spark keeps them) ------------


def _path(spark: SparkSession, uri: str) -> tuple[Any, Any]:
    path = storage.jvm(spark).org.apache.hadoop.fs.Path(uri)
    return path.getFileSystem(spark.sparkContext._jsc.hadoopConfiguration()), path


def _read(spark: SparkSession, uri: str) -> str | None:
    fs, path = _path(spark, uri)
    if not fs.exists(path):
        return None
    stream = fs.open(path)
    try:
        return str(storage.jvm(spark).org.apache.commons.io.IOUtils.toString(stream, "UTF-8"))
    finally:
        stream.close()


def _batch_ids(spark: SparkSession, folder: str) -> list[int]:
    fs, path = _path(spark, folder)
    if not fs.exists(path):
        return []
    names = [str(status.getPath().getName()) for status in fs.listStatus(path)]
    return sorted(int(name) for name in names if name.isdigit())


def _write_new(spark: SparkSession, uri: str, text: str) -> None:
    """Write a file that must not exist yet, atomically (a temporary file renamed), as Spark's own logs do."""
    fs, path = _path(spark, uri)
    if fs.exists(path):
        raise SkipError(f"{uri} exists already: another process wrote it; nothing was changed")
    temporary = storage.jvm(spark).org.apache.hadoop.fs.Path(f"{uri}.skip.tmp")
    stream = fs.create(temporary, True)
    try:
        stream.write(bytearray(text.encode("utf-8")))
    finally:
        stream.close()
    if not fs.rename(temporary, path):
        raise SkipError(f"could not rename {temporary} to {uri}")


def _offsets(text: str, topic: str, where: str) -> dict[int, int]:
    """The input topic's offsets from a Spark offset-log file: a version line, metadata, one line per source."""
    for line in reversed(text.lstrip("\x00").splitlines()):
        line = line.strip()
        if line.startswith("{"):
            offsets = json.loads(line)
            if topic in offsets:
                return {int(partition): int(offset) for partition, offset in offsets[topic].items()}
            if "batchTimestampMs" not in offsets:
                break
    raise SkipError(f"{where} holds no offsets of topic {topic}: is this the deployment's checkpoint?")


def batch_in_flight(spark: SparkSession, checkpoint: str, topic: str) -> Batch | None:
    """The checkpoint's latest micro-batch (committed or not), or None when no batch was ever planned."""
    base = checkpoint.rstrip("/")
    planned = _batch_ids(spark, f"{base}/offsets")
    if not planned:
        return None
    batch_id = planned[-1]
    end_uri = f"{base}/offsets/{batch_id}"
    end_text = _read(spark, end_uri) or ""
    metadata = json.loads(end_text.splitlines()[1]) if len(end_text.splitlines()) > 1 else {}
    # The first batch starts at the source's initial offsets; any other where the batch before it ended.
    start_uri = f"{base}/offsets/{batch_id - 1}" if batch_id > 0 else f"{base}/sources/0/0"
    start_text = _read(spark, start_uri)
    if start_text is None:
        raise SkipError(f"the checkpoint has offsets/{batch_id} but no {start_uri} to say where that batch starts")
    return Batch(
        batch_id=batch_id,
        start=_offsets(start_text, topic, start_uri),
        end=_offsets(end_text, topic, end_uri),
        planned_at_ms=int(metadata.get("batchTimestampMs", 0)),
        committed=batch_id in _batch_ids(spark, f"{base}/commits"),
    )


def _commit(spark: SparkSession, checkpoint: str, batch_id: int) -> None:
    # The commit log's format (CommitLog in Spark): a version line, then CommitMetadata as JSON. This query has
    # no state and no watermark, so the watermark is 0, as Spark writes it for such a query.
    _write_new(spark, f"{checkpoint.rstrip('/')}/commits/{batch_id}", 'v1\n{"nextBatchWatermarkMs":0}')


# -- Kafka -------------------------------------------------------------------------------------------------------


def _read_options(connection: Connection, extra: dict[str, str]) -> dict[str, str]:
    return {**kafka_client_options(connection), **extra}


def written_offsets(spark: SparkSession, spec: DeploymentSpec, batch: Batch) -> set[tuple[int, int]]:
    """(partition, offset) of batch N that already have a record in the output or the dead-letter topic."""
    since = max(0, batch.planned_at_ms - CLOCK_MARGIN_MS)
    schema = "sourceTopic string, sourcePartition int, sourceOffset long"
    found: set[tuple[int, int]] = set()
    for topic in (spec.target, spec.dead_letter):
        records = (
            spark.read.format("kafka")
            .options(**_read_options(topic.connection, dict(spec.options.kafka)))
            .option("subscribe", topic.topic)
            .option("startingTimestamp", str(since))
            .option("startingOffsetsByTimestampStrategy", "latest")
            .option("failOnDataLoss", "false")
            .load()
        )
        source = records.select(F.from_json(F.col("value").cast("string"), schema).alias("s")).select("s.*")
        rows = source.filter(F.col("sourceTopic") == spec.source.topic).distinct().collect()
        found |= {(r.sourcePartition, r.sourceOffset) for r in rows if batch.holds(r.sourcePartition, r.sourceOffset)}
    return found


def ranges_left(
    batch: Batch, done: set[tuple[int, int]], skipped: Iterable[tuple[int, int]]
) -> list[tuple[int, int, int]]:
    """(partition, start, end) ranges of batch N still to process: neither written nor skipped."""
    taken = done | set(skipped)
    ranges: list[tuple[int, int, int]] = []
    for partition, end in sorted(batch.end.items()):
        start = batch.start.get(partition, end)
        run_start = None
        for offset in range(start, end + 1):
            free = offset < end and (partition, offset) not in taken
            if free and run_start is None:
                run_start = offset
            elif not free and run_start is not None:
                ranges.append((partition, run_start, offset))
                run_start = None
    return ranges


def read_ranges(spark: SparkSession, spec: DeploymentSpec, ranges: Sequence[tuple[int, int, int]]) -> DataFrame | None:
    """The input records in these offset ranges, as the streaming source gives them (one batch read per round)."""
    topic = spec.source.topic
    rounds: list[dict[int, tuple[int, int]]] = []
    for partition, start, end in ranges:
        for round_ in rounds:
            if partition not in round_:
                round_[partition] = (start, end)
                break
        else:
            rounds.append({partition: (start, end)})
    frames = []
    for round_ in rounds:
        frames.append(
            spark.read.format("kafka")
            .options(**_read_options(spec.source.connection, dict(spec.options.kafka)))
            .option("assign", json.dumps({topic: sorted(round_)}))
            .option("startingOffsets", json.dumps({topic: {str(p): s for p, (s, _) in round_.items()}}))
            .option("endingOffsets", json.dumps({topic: {str(p): e for p, (_, e) in round_.items()}}))
            .option("failOnDataLoss", "true" if spec.options.fail_on_data_loss else "false")
            .load()
            .select(scoring.KEY, scoring.VALUE, scoring.TOPIC, scoring.PARTITION, scoring.OFFSET, scoring.TIMESTAMP)
        )
    if not frames:
        return None
    result = frames[0]
    for frame in frames[1:]:
        result = result.unionByName(frame)
    return result


def _consumer(spark: SparkSession, spec: DeploymentSpec) -> Any:
    """Kafka's own consumer in the driver's JVM, with the deployment's source connection (records as bytes)."""
    jvm = storage.jvm(spark)
    props = jvm.java.util.Properties()
    options = _read_options(spec.source.connection, dict(spec.options.kafka))
    for key, value in {
        **{k.removeprefix("kafka."): v for k, v in options.items()},
        "key.deserializer": "org.apache.kafka.common.serialization.ByteArrayDeserializer",
        "value.deserializer": "org.apache.kafka.common.serialization.ByteArrayDeserializer",
        "enable.auto.commit": "false",
        "client.id": "stream-deployment-skip",
        "max.poll.records": "1",
    }.items():
        props.setProperty(key, value)
    return jvm.org.apache.kafka.clients.consumer.KafkaConsumer(props)


def earliest_offsets(spark: SparkSession, spec: DeploymentSpec, partitions: Iterable[int]) -> dict[int, int]:
    """The first offset still in each partition: where Spark starts a partition the batch before did not have."""
    jvm = storage.jvm(spark)
    wanted = [jvm.org.apache.kafka.common.TopicPartition(spec.source.topic, p) for p in partitions]
    if not wanted:
        return {}
    consumer = _consumer(spark, spec)
    try:
        found = consumer.beginningOffsets(jvm.java.util.ArrayList(wanted))
        return {int(tp.partition()): int(found.get(tp)) for tp in wanted}
    finally:
        consumer.close()


def read_raw_record(spark: SparkSession, spec: DeploymentSpec, partition: int, offset: int) -> tuple[Any, Any, int]:
    """Key, value and timestamp (ms) of one input record, read with Kafka's own consumer (no Spark row)."""
    jvm = storage.jvm(spark)
    consumer = _consumer(spark, spec)
    try:
        tp = jvm.org.apache.kafka.common.TopicPartition(spec.source.topic, partition)
        consumer.assign(jvm.java.util.Collections.singletonList(tp))
        consumer.seek(tp, offset)
        for _ in range(30):
            for record in consumer.poll(jvm.java.time.Duration.ofSeconds(1)).records(tp):
                if record.offset() != offset:
                    raise SkipError(f"offset {offset} of partition {partition} is gone from {spec.source.topic}")
                return record.key(), record.value(), int(record.timestamp())
        raise SkipError(f"no record at offset {offset} of partition {partition} of {spec.source.topic} within 30 s")
    finally:
        consumer.close()


# -- the command -------------------------------------------------------------------------------------------------


def skip_records(
    spark: SparkSession, spec: DeploymentSpec, model: LoadedModel, records: Sequence[tuple[int, int]]
) -> SkipResult:
    """Finish the failed micro-batch without these (partition, offset) records, which become dead letters."""
    from job.runtime.query import deployment_transform, model_info, write_records

    batch = batch_in_flight(spark, spec.checkpoint_location, spec.source.topic)
    if batch is None:
        raise SkipError(f"the checkpoint {spec.checkpoint_location} has no micro-batch: the deployment never ran one")
    new_partitions = [p for p in batch.end if p not in batch.start]
    if new_partitions:
        # Spark starts a partition the previous batch did not know at its earliest offset; so does this.
        batch = Batch(
            batch.batch_id,
            {**batch.start, **earliest_offsets(spark, spec, new_partitions)},
            batch.end,
            batch.planned_at_ms,
            batch.committed,
        )
    described = ", ".join(
        f"partition {p} offsets {batch.start.get(p, e)}..{e - 1}" for p, e in sorted(batch.end.items())
    )
    for partition, offset in records:
        if batch.committed and offset < batch.end.get(partition, 0):
            raise SkipError(
                f"offset {offset} of partition {partition} is behind the deployment already (batch {batch.batch_id} "
                "is committed): nothing to skip; start the deployment"
            )
        if batch.committed or not batch.holds(partition, offset):
            raise SkipError(
                f"offset {offset} of partition {partition} is not in the micro-batch the deployment stopped in "
                f"(batch {batch.batch_id}: {described}); the status reason names the record to skip"
            )
    done = written_offsets(spark, spec, batch)
    left = ranges_left(batch, done, records)
    info = model_info(model)
    scored = dead_lettered = 0
    frame = read_ranges(spark, spec, left)
    if frame is not None:
        shaped = frame.transform(deployment_transform(spec, model)).persist()
        try:
            try:
                counts = {r[scoring.TOPIC]: r["count"] for r in shaped.groupBy(scoring.TOPIC).count().collect()}
            except Exception as exc:  # py4j's error for a failed Spark job: another unreadable record?
                other = unreadable_record(str(exc))
                if other is None:
                    raise
                raise SkipError(
                    f"offset {other.offset} of partition {other.partition} of the same batch cannot be read either "
                    f"(timestamp {other.timestamp_ms} ms); skip them together: "
                    + " ".join(f"--partition {p} --offset {o}" for p, o in [*records, (other.partition, other.offset)])
                    + "; nothing was written"
                ) from None
            write_records(spec, shaped)
        finally:
            shaped.unpersist()
        scored, dead_lettered = counts.get(spec.target.topic, 0), counts.get(spec.dead_letter.topic, 0)
    unwritten = [(p, o) for p, o in records if (p, o) not in done]
    if unwritten:
        rows = []
        for partition, offset in unwritten:
            key, value, timestamp_ms = read_raw_record(spark, spec, partition, offset)
            rows.append((key, value, spec.source.topic, partition, offset, None, timestamp_ms))
        raw = spark.createDataFrame(rows, f"{KAFKA_SCHEMA}, raw_timestamp long")
        reason = F.format_string(
            "Spark's Kafka source cannot read this record: its timestamp %d ms overflows Spark's timestamps; "
            "dead-lettered by the skip command",
            F.col("raw_timestamp"),
        )
        dead = raw.transform(scoring.rejected(info, UNREADABLE_TIMESTAMP, reason))
        write_records(
            spec, dead.transform(scoring.to_kafka_records(spec.name, info, spec.target.topic, spec.dead_letter.topic))
        )
        dead_lettered += len(unwritten)
    _commit(spark, spec.checkpoint_location, batch.batch_id)
    return SkipResult(batch.batch_id, len(done), scored, dead_lettered, tuple(records))


def record_in_status(store: StateStore | None, result: SkipResult) -> None:
    """Count what the skip wrote in the status totals and say what was done, so `job status` tells the story."""
    if store is None:
        return
    status = store.read_status()
    if status is None:
        return
    totals = status.setdefault("totals", {})
    written = result.scored + result.dead_lettered
    totals["records_in"] = int(totals.get("records_in", 0)) + written
    totals["records_scored"] = int(totals.get("records_scored", 0)) + result.scored
    totals["records_dead_lettered"] = int(totals.get("records_dead_lettered", 0)) + result.dead_lettered
    skipped = ", ".join(f"offset {o} of partition {p}" for p, o in result.skipped)
    status["state"] = "STOPPED"
    status["reason"] = f"skipped {skipped} as dead letters (batch {result.batch_id} finished by `skip`); start it again"
    status["updated_at"] = now_iso()
    store.write_status(status)


def skip_command(spec: DeploymentSpec, records: list[tuple[int, int]]) -> int:
    """`skip`: refused while the deployment runs (the checkpoint is its to change then) and in real-time mode."""
    from job.runtime.control import current_status
    from job.runtime.model import ModelError
    from job.runtime.publish import load_serving_model
    from job.runtime.session import deployment_session
    from job.runtime.status import INITIALIZING, RUNNING
    from job.runtime.storage import is_local

    if spec.options.trigger.kind == "real_time":
        print("error: skip works on micro-batch checkpoints; this deployment runs in real-time mode", file=sys.stderr)
        return EXIT_FAILED
    status = current_status(spec.locations()) if spec.state_location else None
    if status and status.get("state") in (INITIALIZING, RUNNING):
        print(f"error: {spec.name} is {status['state']}; stop it first (job stop --spec ...)", file=sys.stderr)
        return EXIT_FAILED
    spark = deployment_session(spec, app_name=f"skip: {spec.name}")
    try:
        model = load_serving_model(spark, spec.model_location, spec.options)
        result = skip_records(spark, spec, model, records)
        if spec.state_location is not None:
            local = is_local(spec.state_location)
            record_in_status(StateStore(spec.state_location, None if local else spark), result)
    except (ModelError, SkipError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        spark.stop()
    skipped = ", ".join(f"offset {o} of partition {p}" for p, o in result.skipped)
    print(
        f"{spec.name}: batch {result.batch_id} finished without {skipped} (dead-lettered as UNREADABLE_TIMESTAMP); "
        f"{result.already_written} records of it were written before the failure, {result.scored} scored and "
        f"{result.dead_lettered} dead-lettered now. Start the deployment again: ./spark-submit.sh run --spec ..."
    )
    return EXIT_OK
