"""What the view reads: the output and dead-letter topics (its own consumer, no group) and the status document."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from job.view.aggregate import Aggregator
from job.view.runtime import Connection, StateStore, kafka_python_config

logger = logging.getLogger(__name__)

_SINCE = re.compile(r"(\d+(?:\.\d+)?)\s*(s|sec|m|min|h|d)")
_SINCE_UNITS = {"s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


def parse_since(text: str, now_s: float) -> int:
    """Where reading starts, as epoch milliseconds: '1h', '30m', '90s', '2d', 'beginning', 'now' or an ISO time."""
    value = text.strip().lower()
    if value in ("beginning", "earliest"):
        return 0
    if value in ("now", "latest"):
        return int(now_s * 1000)
    match = _SINCE.fullmatch(value)
    if match:
        return max(0, int((now_s - float(match.group(1)) * _SINCE_UNITS[match.group(2)]) * 1000))
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise ValueError(
            f"--since {text!r}: expected a duration such as 1h, 30m, 90s or 2d, 'beginning', 'now', "
            "or an ISO-8601 time with its time zone (2026-11-27T10:00:00Z)"
        )
    return max(0, int(moment.timestamp() * 1000))


class TopicReader(threading.Thread):
    """One consumer for the topics of one Kafka cluster, assigned every partition, never in a consumer group.

    Without a group it joins no group, commits nothing and cannot take partitions from anyone; it starts at the
    first record at or after `since_ms` in each partition (a partition that appears later is read from there
    too) and folds every record into the aggregator.
    """

    def __init__(
        self,
        connection: Connection,
        topics: Mapping[str, bool],
        aggregator: Aggregator,
        since_ms: int,
        scrub: Callable[[str], str],
        rescan_s: float = 10.0,
    ) -> None:
        super().__init__(name=f"view-reader-{'+'.join(topics)}", daemon=True)
        self._connection = connection
        self._dead = dict(topics)  # topic -> is it a dead-letter topic
        self._aggregator = aggregator
        self._since_ms = since_ms
        self._scrub = scrub
        self._rescan_s = rescan_s
        self._stop_event = threading.Event()
        self._lock = threading.Lock()
        self._assigned: set[Any] = set()
        self.state = "connecting"
        self.error: str | None = None
        self.missing_topics: list[str] = []
        self.records_read = 0

    def stop(self) -> None:
        self._stop_event.set()

    def info(self) -> dict[str, Any]:
        with self._lock:
            return {
                "topics": sorted(self._dead),
                "state": self.state,
                "error": self.error,
                "missing_topics": list(self.missing_topics),
                "partitions": len(self._assigned),
                "records_read": self.records_read,
            }

    def _consumer(self) -> Any:
        from kafka import KafkaConsumer

        extra: dict[str, Any] = {}
        if "bootstrap_timeout_ms" in KafkaConsumer.DEFAULT_CONFIG:  # kafka-python 3: say "cannot reach" within 10 s
            extra["bootstrap_timeout_ms"] = 10_000
        return KafkaConsumer(
            **kafka_python_config(self._connection),
            **extra,
            reconnect_backoff_max_ms=5_000,
            client_id="job-view",
            group_id=None,
            enable_auto_commit=False,
            # kafka-python checks CRC32C in pure Python unless the optional `crc32c` package is present: that alone
            # would cost more CPU than all the rest of the view at 1,000 records/s. TCP and the broker check the
            # bytes already; a display tool can skip it.
            check_crcs=False,
            # The broker answers a fetch when 128 KiB are ready or 500 ms have passed: a few fetches a second
            # instead of one per producer batch (each costs kafka-python a millisecond or so of Python), and the
            # page is updated once a second anyway.
            fetch_min_bytes=128 * 1024,
            fetch_max_wait_ms=500,
            # Small per-partition fetches keep the partitions in step while catching up on an hour: the job spreads
            # one input partition's offsets over all output partitions, and the deduplication ledger stays small
            # when they are read side by side (aggregate.OffsetLedger).
            max_partition_fetch_bytes=128 * 1024,
            # Metadata at most 10 s old, so partitions added to a topic are picked up within about 10 s.
            metadata_max_age_ms=10_000,
        )

    def run(self) -> None:
        consumer = None
        backoff = 1.0
        next_scan = 0.0
        while not self._stop_event.is_set():
            try:
                if consumer is None:
                    consumer = self._consumer()
                    self._assigned = set()
                    next_scan = 0.0
                if time.monotonic() >= next_scan:
                    self._follow_partitions(consumer)
                    next_scan = time.monotonic() + self._rescan_s
                if not self._assigned:
                    self._stop_event.wait(1.0)
                    continue
                batch = consumer.poll(timeout_ms=500, max_records=10_000)
                self._fold(batch)
                backoff = 1.0
            except Exception as exc:  # the broker away, a bad password: say so on the page and try again
                message = self._scrub(f"{type(exc).__name__}: {exc}")[:300]
                with self._lock:
                    self.state, self.error = "error", message
                logger.warning("view: reading %s failed: %s", sorted(self._dead), message)
                if consumer is not None:
                    _close(consumer)
                    consumer = None
                self._stop_event.wait(backoff)
                backoff = min(backoff * 2, 30.0)
        if consumer is not None:
            _close(consumer)

    def _follow_partitions(self, consumer: Any) -> None:
        from kafka import TopicPartition

        wanted: set[Any] = set()
        missing = []
        for topic in sorted(self._dead):
            partitions = consumer.partitions_for_topic(topic)
            if not partitions:
                missing.append(topic)
                continue
            wanted |= {TopicPartition(topic, p) for p in partitions}
        new = wanted - self._assigned
        if new:
            consumer.assign(sorted(wanted))
            found = consumer.offsets_for_times(dict.fromkeys(new, self._since_ms))
            for partition in sorted(new):
                at = found.get(partition)
                if at is None:
                    consumer.seek_to_end(partition)  # nothing since then: read what comes next
                else:
                    consumer.seek(partition, at.offset)
        with self._lock:
            self._assigned = wanted
            self.missing_topics = missing
            self.state = "reading" if wanted else "waiting for topics"
            self.error = f"topic(s) not found: {', '.join(missing)}" if missing else None

    def _fold(self, batch: Mapping[Any, list[Any]]) -> None:
        items = []
        now_ms = int(time.time() * 1000)
        for partition, records in batch.items():
            dead = self._dead[partition.topic]
            for record in records:
                try:
                    doc = json.loads(record.value) if record.value is not None else None
                except ValueError:  # includes bytes that are not UTF-8
                    doc = None
                stamp = record.timestamp if record.timestamp is not None and record.timestamp >= 0 else now_ms
                items.append((dead, doc, stamp))
        if items:
            self._aggregator.add_many(items)
            with self._lock:
                self.records_read += len(items)


def _close(consumer: Any) -> None:
    try:
        consumer.close(autocommit=False)
    except Exception:  # closing a consumer whose broker is gone must not end the thread
        logger.debug("view: closing the consumer failed", exc_info=True)


class StatusReader(threading.Thread):
    """Reads the status document from the state folder every `interval_s`; keeps the latest one."""

    def __init__(self, location: str | None, scrub: Callable[[str], str], interval_s: float = 1.0) -> None:
        super().__init__(name="view-status", daemon=True)
        self._location = location
        self._scrub = scrub
        self._interval_s = interval_s
        self._stop_event = threading.Event()
        self._lock = threading.Lock()
        self._status: dict[str, Any] | None = None
        self._error: str | None = None if location else "the spec has no state_location: no status to show"
        self._session: Any = None

    def stop(self) -> None:
        self._stop_event.set()

    def latest(self) -> tuple[dict[str, Any] | None, str | None]:
        with self._lock:
            return self._status, self._error

    def _store(self) -> StateStore:
        assert self._location is not None
        from urllib.parse import urlparse

        if urlparse(self._location).scheme in ("", "file"):
            return StateStore(self._location)
        # hdfs://, s3a://, …: read through Hadoop, which needs a JVM. A one-thread local session, started once,
        # on the first read (the view of a local deployment never pays for it).
        from pyspark.sql import SparkSession

        self._session = (
            SparkSession.builder.master("local[1]")
            .appName("job-view-status")
            .config("spark.ui.enabled", "false")
            .getOrCreate()
        )
        return StateStore(self._location, self._session)

    def run(self) -> None:
        if self._location is None:
            return
        store = None
        while not self._stop_event.is_set():
            try:
                store = store or self._store()
                status = store.read_status()
                with self._lock:
                    self._status, self._error = status, None
            except Exception as exc:  # a half-written file on odd storage, a network blip: keep the last one
                with self._lock:
                    self._error = self._scrub(f"cannot read the status document: {type(exc).__name__}: {exc}")[:300]
            self._stop_event.wait(self._interval_s)
        if self._session is not None:
            self._session.stop()
