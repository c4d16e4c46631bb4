"""Helpers for tests against a real broker: fresh topics, acknowledged sends, polling with a deadline."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import KafkaAdminClient, NewTopic


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int | None = None  # the record's Kafka timestamp (CreateTime: when its producer sent it)

    def json(self) -> Any:
        assert self.value is not None
        return json.loads(self.value)


def unique_topics(*roles: str) -> dict[str, str]:
    """Topic names no other test uses: `{role: f'{role}-<uuid>'}`."""
    tag = uuid.uuid4().hex[:10]
    return {role: f"{role}-{tag}" for role in roles}


def create_topics(bootstrap: str, names: Iterable[str], partitions: int = 1, timeout_s: float = 30) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000))
    try:
        admin.create_topics(
            [NewTopic(name, num_partitions=partitions, replication_factor=1) for name in names],
            timeout_ms=int(timeout_s * 1000),
        )
    finally:
        admin.close()
    wanted = set(names)
    assert_eventually(lambda: wanted <= _leaders_known(bootstrap, wanted), timeout_s, f"topics {sorted(wanted)} ready")


def _leaders_known(bootstrap: str, names: set[str]) -> set[str]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        return {n for n in names if consumer.partitions_for_topic(n)}
    finally:
        consumer.close()


def produce(
    bootstrap: str,
    topic: str,
    messages: Iterable[tuple[bytes | None, bytes | None] | tuple[bytes | None, bytes | None, int]],
    timeout_s: float = 60,
) -> list[tuple[int, int]]:
    """Send (key, value[, partition]) messages and wait for every acknowledgement; returns (partition, offset)."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_request_size=2_000_000)
    try:
        futures = []
        for message in messages:
            key, value, *partition = message
            futures.append(producer.send(topic, key=key, value=value, partition=partition[0] if partition else None))
        producer.flush(timeout=timeout_s)
        metas = [f.get(timeout=timeout_s) for f in futures]
        return [(m.partition, m.offset) for m in metas]
    finally:
        producer.close()


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        return {tp.partition: offset for tp, offset in consumer.end_offsets(partitions).items()}
    finally:
        consumer.close()


def written(bootstrap: str, *topics: str) -> int:
    """How many records the topics hold, from their end offsets: it returns at once even while a job keeps writing,
    where `read_all` (which stops at the first empty poll) can read on until the writer pauses. The job's producer is
    not transactional and no test topic is compacted, so end offsets count records exactly."""
    return sum(sum(end_offsets(bootstrap, topic).values()) for topic in topics)


def read_all(bootstrap: str, topic: str, expected: int | None = None, timeout_s: float = 90) -> list[Record]:
    """Read the topic from the start. With `expected`, poll until that many records arrived (or time out)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        records: list[Record] = []
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            batch = consumer.poll(timeout_ms=500)
            for items in batch.values():
                records += [Record(r.topic, r.partition, r.offset, r.key, r.value, r.timestamp) for r in items]
            if expected is None and not batch:
                break
            if expected is not None and len(records) >= expected:
                break
        return records
    finally:
        consumer.close()


def assert_eventually(condition: Callable[[], bool], timeout_s: float, what: str, interval_s: float = 0.5) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}")


def limit_producer_rate(spark: Any, bootstrap: str, client_id: str, bytes_per_s: float) -> None:
    """Let producers with this client id write at most `bytes_per_s` to the broker (a Kafka client quota).

    The broker delays its answers to such a producer, so a batch of the job can be made to take minutes while
    the machine does next to nothing. kafka-python has no quota API; Kafka's Java AdminClient, in the test
    session's JVM, has.
    """
    jvm = spark.sparkContext._jvm
    admin_api = jvm.org.apache.kafka.clients.admin
    quota = jvm.org.apache.kafka.common.quota
    props = jvm.java.util.Properties()
    props.setProperty("bootstrap.servers", bootstrap)
    admin = admin_api.AdminClient.create(props)
    try:
        names = jvm.java.util.HashMap()
        names.put("client-id", client_id)
        operations = jvm.java.util.ArrayList()
        operations.add(quota.ClientQuotaAlteration.Op("producer_byte_rate", float(bytes_per_s)))
        alterations = jvm.java.util.ArrayList()
        alterations.add(quota.ClientQuotaAlteration(quota.ClientQuotaEntity(names), operations))
        admin.alterClientQuotas(alterations).all().get()
    finally:
        admin.close()


def delete_topics(bootstrap: str, names: Iterable[str], timeout_s: float = 30) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000))
    try:
        admin.delete_topics(list(names), timeout_ms=int(timeout_s * 1000))
    finally:
        admin.close()
