"""Kafka plumbing for the benchmarks: tweets, topics, end offsets, filling a backlog, reading results."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from job.tools.deps import PROJECT_ROOT

logger = logging.getLogger(__name__)

TWEETS_DIR = PROJECT_ROOT.parent / "shared" / "data" / "sentiment140-100k"
TWEET_FILES = ("positive.txt", "negative.txt")
# Texts that make tokenizing and hashing differences show: Unicode case mapping, emoji, runs of whitespace.
TRICKY_TEXTS = (
    "I LOVE this new phone 😀😀, best purchase EVER!",
    "  Worst\tcustomer service\u00a0I have ever had.  Never   again 👎 ",
    "ΟΔΟΣ ΣΟΦΟΣ İstanbul STRASSE straße ÀÉÎÕÜ ça va",
    "日本語のテキスト 中文 한국어 @user http://t.co/xyz #tag :)",
)
_WORDS = ("love", "hate", "great", "awful", "happy", "sad", "day", "work", "phone", "friends", "tired", "fun")


def load_tweets(directory: Path = TWEETS_DIR, limit: int | None = None) -> tuple[list[str], str]:
    """Non-blank tweets from the shared data set (the job would dead-letter blank ones), and their source.

    Falls back to generated tweets when the data set is missing, and says so in the source string.
    """
    texts: list[str] = []
    files = [directory / name for name in TWEET_FILES]
    if all(f.is_file() for f in files):
        for path in files:
            with path.open(encoding="utf-8", errors="replace") as handle:
                texts += [line.rstrip("\n") for line in handle if line.strip()]
        source = f"{directory} ({len(texts)} non-blank tweets)"
    else:
        texts = generated_tweets(100_000)
        source = f"generated ({len(texts)} tweets; {directory} not found)"
    return (texts[:limit] if limit else texts), source


def generated_tweets(n: int) -> list[str]:
    """Deterministic tweet-like texts: 6 to 20 words, some emoji."""
    out = []
    for i in range(n):
        words = [_WORDS[(i * 7 + j * 3) % len(_WORDS)] for j in range(6 + i % 15)]
        out.append(" ".join(words) + (" 😀" if i % 5 == 0 else ""))
    return out


def unique_topic(role: str) -> str:
    return f"bench-{role}-{uuid.uuid4().hex[:10]}"


@dataclass(frozen=True)
class Topics:
    """The three topics of one deployment under test."""

    source: str
    target: str
    dead_letter: str


def new_topics(broker: object, partitions: int, prefix: str = "") -> Topics:
    topics = Topics(unique_topic(f"{prefix}in"), unique_topic(f"{prefix}out"), unique_topic(f"{prefix}dlq"))
    for name in (topics.source, topics.target, topics.dead_letter):
        broker.create_topic(name, partitions=partitions)  # type: ignore[attr-defined]
    return topics


def delete_topics(bootstrap: str, names: Iterable[str]) -> None:
    """Free the disk of finished runs (a 1M-record output topic is a few hundred MB)."""
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.delete_topics(list(names), timeout_ms=30_000)
    except Exception as exc:  # a leftover topic only costs disk in a run dir that is removed at the end
        logger.warning("could not delete topics %s: %s", list(names), exc)
    finally:
        admin.close()


class OffsetWatcher:
    """Sum of a topic's end offsets (= records written, for a fresh non-compacted topic), polled cheaply."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        from kafka import KafkaConsumer, TopicPartition

        self._consumer = KafkaConsumer(bootstrap_servers=bootstrap, request_timeout_ms=30_000)
        deadline = time.monotonic() + 30
        partitions = self._consumer.partitions_for_topic(topic)
        while not partitions and time.monotonic() < deadline:
            time.sleep(0.1)
            partitions = self._consumer.partitions_for_topic(topic)
        if not partitions:
            raise RuntimeError(f"topic {topic} has no partitions visible")
        self._partitions = [TopicPartition(topic, p) for p in sorted(partitions)]

    def total(self) -> int:
        return sum(self._consumer.end_offsets(self._partitions).values())

    def close(self) -> None:
        self._consumer.close()

    def __enter__(self) -> OffsetWatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_to_end(bootstrap: str, topic: str, timeout_s: float = 120) -> list[Any]:
    """Every record of a topic a finished writer left, up to its end offsets at the call."""
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, check_crcs=False)
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        end = {tp: offset for tp, offset in consumer.end_offsets(partitions).items() if offset > 0}
        records: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while end and time.monotonic() < deadline:
            for tp, batch in consumer.poll(timeout_ms=500).items():
                records += batch
                if batch and batch[-1].offset + 1 >= end.get(tp, 0):
                    end.pop(tp, None)
        if end:
            raise TimeoutError(f"{topic}: not read to its end offsets within {timeout_s:.0f} s")
        return records
    finally:
        consumer.close()


def read_json_records(bootstrap: str, topic: str) -> dict[int, dict]:
    """A finished writer's JSON records by their id (the first record of an id wins)."""
    found: dict[int, dict] = {}
    for record in read_to_end(bootstrap, topic):
        value = json.loads(record.value)
        found.setdefault(value["id"], value)
    return found


def read_dead_letters(bootstrap: str, topic: str) -> dict[int, str]:
    """A finished job's dead letters: the error code by the id of the original message (when it had one)."""
    codes: dict[int, str] = {}
    for record in read_to_end(bootstrap, topic):
        letter = json.loads(record.value)
        try:
            original = json.loads(letter["value"])
        except (TypeError, ValueError):
            continue
        if isinstance(original, dict) and type(original.get("id")) is int:
            codes.setdefault(original["id"], letter["errorCode"])
    return codes


def tweets_frame(spark: SparkSession, texts: Sequence[str], rows: int, partitions: int) -> DataFrame:
    """(id int, text string) rows 0..rows-1, text = texts[id % len(texts)], spread over `partitions`."""
    table = spark.createDataFrame(list(enumerate(texts)), "idx long, text string")
    return (
        spark.range(0, rows, 1, numPartitions=partitions)
        .join(F.broadcast(table), F.col("id") % len(texts) == F.col("idx"))
        .select(F.col("id").cast("int").alias("id"), "text")
    )


def fill_topic(
    spark: SparkSession, bootstrap: str, topic: str, texts: Sequence[str], rows: int, partitions: int
) -> dict[str, float]:
    """Write `rows` JSON tweets {"id", "text"} with a Spark batch write, id % partitions -> partition.

    Faster than kafka-python, whose producer does its per-record work in Python (compare
    `kafka_python_produce_rate`); timed here and reported apart from the figures.
    """
    frame = tweets_frame(spark, texts, rows, partitions).select(
        (F.col("id") % partitions).cast("int").alias("partition"),
        F.to_json(F.struct("id", "text")).alias("value"),
    )
    started = time.perf_counter()
    (
        frame.write.format("kafka")
        .option("kafka.bootstrap.servers", bootstrap)
        .option("topic", topic)
        .option("kafka.linger.ms", "20")
        .option("kafka.batch.size", str(1024 * 1024))
        .option("kafka.acks", "all")
        .save()
    )
    seconds = time.perf_counter() - started
    return {"messages": rows, "seconds": round(seconds, 3), "messages_per_s": round(rows / seconds, 1)}


def kafka_python_produce_rate(broker: object, texts: Sequence[str], messages: int, partitions: int) -> float:
    """Messages per second kafka-python's producer sends (batched, linger 20 ms), into a scratch topic."""
    from kafka import KafkaProducer

    topic = unique_topic("produce-rate")
    broker.create_topic(topic, partitions=partitions)  # type: ignore[attr-defined]
    bootstrap = broker.bootstrap_servers  # type: ignore[attr-defined]
    values = [json.dumps({"id": i, "text": texts[i % len(texts)]}).encode() for i in range(messages)]
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20, batch_size=1024 * 1024)
    try:
        started = time.perf_counter()
        for i, value in enumerate(values):
            producer.send(topic, value, partition=i % partitions)
        producer.flush()
        seconds = time.perf_counter() - started
    finally:
        producer.close()
    delete_topics(bootstrap, [topic])
    return round(messages / seconds, 1)
