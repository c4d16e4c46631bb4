"""The view's figures: counts per label and per error code in rings of time buckets, latest records, deduplication.

Pure Python with bounded state, so it can be tested with records in and exact figures out, and so a view left
running for weeks uses the same memory as one started a minute ago:
- a ring of buckets per width (10 s and 1 min by default): buckets older than the ring are dropped;
- the latest N scored records and latest M dead letters (a heap on time, so catching up on an hour of several
  partitions still keeps the N newest, not the N read last);
- per source partition, the source offsets already counted, kept as disjoint ranges (the job writes every input
  offset exactly once to the output or the dead-letter topic, so the ranges merge into a handful); past a cap the
  lowest ranges are forgotten, and an offset below what was forgotten is reported as `too_late` instead of guessed;
- at most `max_keys` distinct labels and error codes (a topic holding garbage cannot grow the state): the rest are
  counted under OTHER.
"""

from __future__ import annotations

import bisect
import heapq
import math
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

OTHER = "(other)"
TEXT_CHARS = 500  # a tweet is 280 characters; enough to show it whole, bounded for anything else
VALUE_CHARS = 200  # what is shown of a dead letter's original message

# What happened to one record offered to the aggregator.
COUNTED, DUPLICATE, TOO_LATE, UNREADABLE = "counted", "duplicate", "too_late", "unreadable"


class OffsetLedger:
    """The source offsets of one partition that were counted, as sorted disjoint inclusive ranges."""

    def __init__(self, max_ranges: int = 4096) -> None:
        if max_ranges < 1:
            raise ValueError("max_ranges must be at least 1")
        self._starts: list[int] = []
        self._ends: list[int] = []
        self._max_ranges = max_ranges
        # Offsets <= floor belonged to forgotten ranges or the gaps between them: no longer decidable.
        self.floor = -1

    def __len__(self) -> int:
        return len(self._starts)

    def ranges(self) -> list[tuple[int, int]]:
        return list(zip(self._starts, self._ends, strict=True))

    def add(self, offset: int) -> str:
        """COUNTED the first time an offset is seen, DUPLICATE after, TOO_LATE below the forgotten floor."""
        if offset <= self.floor:
            return TOO_LATE
        starts, ends = self._starts, self._ends
        # The usual case: the next offset after the highest range.
        if starts and offset == ends[-1] + 1:
            ends[-1] = offset
            return COUNTED
        i = bisect.bisect_right(starts, offset)  # ranges[i-1] starts at or before offset
        if i > 0 and offset <= ends[i - 1]:
            return DUPLICATE
        joins_left = i > 0 and ends[i - 1] == offset - 1
        joins_right = i < len(starts) and starts[i] == offset + 1
        if joins_left and joins_right:
            ends[i - 1] = ends[i]
            del starts[i], ends[i]
        elif joins_left:
            ends[i - 1] = offset
        elif joins_right:
            starts[i] = offset
        else:
            starts.insert(i, offset)
            ends.insert(i, offset)
            if len(starts) > self._max_ranges:
                # Forget the lowest range: the oldest offsets are the least likely to come again.
                self.floor = ends[0]
                del starts[0], ends[0]
        return COUNTED


class BucketRing:
    """Counts per key in fixed-width time buckets; only the newest `slots` buckets are kept."""

    def __init__(self, width_s: int, slots: int) -> None:
        if width_s < 1 or slots < 1:
            raise ValueError("width_s and slots must be at least 1")
        self.width_s = width_s
        self.slots = slots
        self._buckets: dict[int, dict[str, int]] = {}
        self._newest: int | None = None

    def bucket_of(self, time_s: float) -> int:
        return math.floor(time_s / self.width_s) * self.width_s

    def add(self, time_s: float, key: str) -> bool:
        """Count one record; False when it is older than the ring holds (it still counts in the totals)."""
        start = self.bucket_of(time_s)
        if self._newest is None or start > self._newest:
            self._newest = start
            self._prune(start)
        elif start <= self._newest - self.slots * self.width_s:
            return False
        counts = self._buckets.setdefault(start, {})
        counts[key] = counts.get(key, 0) + 1
        return True

    def _prune(self, end: int) -> None:
        oldest = end - (self.slots - 1) * self.width_s
        if len(self._buckets) and min(self._buckets) < oldest:
            for start in [s for s in self._buckets if s < oldest]:
                del self._buckets[start]

    def series(self, now_s: float, keys: Iterable[str]) -> dict[str, Any]:
        """The ring as columns (bucket starts, then one list of counts per key), ending at now or the newest bucket."""
        end = self.bucket_of(now_s)
        if self._newest is not None and self._newest > end:
            end = self._newest  # a producer's clock ahead of ours: still show its records
        # From now on the ring ends here, so a record older than the window shown is refused, not half-kept.
        self._newest = end
        self._prune(end)
        starts = [end - (self.slots - 1 - i) * self.width_s for i in range(self.slots)]
        columns = {key: [0] * self.slots for key in keys}
        first = starts[0]
        for start, counts in self._buckets.items():
            index = (start - first) // self.width_s
            if 0 <= index < self.slots:
                for key, count in counts.items():
                    if key in columns:
                        columns[key][index] = count
        return {"width_s": self.width_s, "start": starts, "counts": columns}


@dataclass(frozen=True)
class RingSpec:
    name: str
    width_s: int
    slots: int


# 10 s buckets over one hour (the default --since), minutes over six hours.
DEFAULT_RINGS = (RingSpec("10s", 10, 360), RingSpec("1m", 60, 360))


class Aggregator:
    """Everything the page and /api/summary show about the topics. Thread-safe: readers add, the server reads."""

    def __init__(
        self,
        rings: Iterable[RingSpec] = DEFAULT_RINGS,
        latest: int = 50,
        latest_dead_letters: int = 10,
        max_ranges: int = 4096,
        max_keys: int = 32,
        max_partitions: int = 4096,
    ) -> None:
        self._lock = threading.Lock()
        self._ring_specs = tuple(rings)
        self._label_rings = {r.name: BucketRing(r.width_s, r.slots) for r in self._ring_specs}
        self._code_rings = {r.name: BucketRing(r.width_s, r.slots) for r in self._ring_specs}
        self._latest_n = latest
        self._latest_dead_n = latest_dead_letters
        self._latest: list[tuple[int, str, int, int, dict[str, Any]]] = []  # min-heap on (time, topic, part, offset)
        self._latest_dead: list[tuple[int, str, int, int, dict[str, Any]]] = []
        self._ledgers: dict[tuple[str, int], OffsetLedger] = {}
        self._max_ranges = max_ranges
        self._max_keys = max_keys
        self._max_partitions = max_partitions
        self.by_label: dict[str, int] = {}
        self.by_code: dict[str, int] = {}
        self.outcomes = {COUNTED: 0, DUPLICATE: 0, TOO_LATE: 0, UNREADABLE: 0}
        self.outside_window = 0  # counted in the totals, but older than the longest ring

    # -- adding records -------------------------------------------------------------------------------

    def add_prediction(self, doc: Any, timestamp_ms: int) -> str:
        with self._lock:
            return self._add(doc, timestamp_ms, dead=False)

    def add_dead_letter(self, doc: Any, timestamp_ms: int) -> str:
        with self._lock:
            return self._add(doc, timestamp_ms, dead=True)

    def add_unreadable(self, count: int = 1) -> None:
        """A record that is not JSON at all: counted so the page can say the topic holds something else."""
        with self._lock:
            self.outcomes[UNREADABLE] += count

    def add_many(self, items: Iterable[tuple[bool, Any, int]]) -> None:
        """(is_dead_letter, parsed document or None, timestamp ms) for each record of a poll, under one lock."""
        with self._lock:
            for dead, doc, timestamp_ms in items:
                if doc is None:
                    self.outcomes[UNREADABLE] += 1
                else:
                    self._add(doc, timestamp_ms, dead)

    def _add(self, doc: Any, timestamp_ms: int, dead: bool) -> str:
        where = _source(doc)
        key = _key(doc, "errorCode" if dead else "predictedLabel")
        if where is None or key is None:
            self.outcomes[UNREADABLE] += 1
            return UNREADABLE
        topic, partition, offset = where
        ledger = self._ledgers.get((topic, partition))
        if ledger is None:
            if len(self._ledgers) >= self._max_partitions:
                self.outcomes[UNREADABLE] += 1  # more source partitions than any real topic has: not our job's output
                return UNREADABLE
            ledger = self._ledgers[(topic, partition)] = OffsetLedger(self._max_ranges)
        outcome = ledger.add(offset)
        self.outcomes[outcome] += 1
        if outcome != COUNTED:
            return outcome
        totals = self.by_code if dead else self.by_label
        if key not in totals and len(totals) >= self._max_keys:
            key = OTHER
        totals[key] = totals.get(key, 0) + 1
        time_s = timestamp_ms / 1000.0
        rings = self._code_rings if dead else self._label_rings
        kept = [ring.add(time_s, key) for ring in rings.values()]
        if not any(kept):
            self.outside_window += 1
        entry = (timestamp_ms, topic, partition, offset, _shown(doc, key, timestamp_ms, dead))
        heap, limit = (self._latest_dead, self._latest_dead_n) if dead else (self._latest, self._latest_n)
        if len(heap) < limit:
            heapq.heappush(heap, entry)
        elif limit and entry[:4] > heap[0][:4]:
            heapq.heapreplace(heap, entry)
        return COUNTED

    # -- reading ---------------------------------------------------------------------------------------

    def snapshot(self, now_s: float) -> dict[str, Any]:
        """The figures as plain JSON-ready data (documented in the README under /api/summary)."""
        with self._lock:
            labels = sorted(self.by_label)
            codes = sorted(self.by_code)
            series = {}
            for spec in self._ring_specs:
                label_series = self._label_rings[spec.name].series(now_s, labels)
                code_series = self._code_rings[spec.name].series(now_s, codes)
                series[spec.name] = {
                    "width_s": spec.width_s,
                    "start": label_series["start"],
                    "by_label": label_series["counts"],
                    "by_code": code_series["counts"],
                }
            return {
                "labels": labels,
                "codes": codes,
                "totals": {
                    "scored": sum(self.by_label.values()),
                    "by_label": {label: self.by_label[label] for label in labels},
                    "dead_lettered": sum(self.by_code.values()),
                    "by_code": {code: self.by_code[code] for code in codes},
                },
                "records": {**self.outcomes, "outside_window": self.outside_window},
                "series": series,
                "latest": [entry[4] for entry in sorted(self._latest, key=lambda e: e[:4], reverse=True)],
                "latest_dead_letters": [
                    entry[4] for entry in sorted(self._latest_dead, key=lambda e: e[:4], reverse=True)
                ],
            }


def _source(doc: Any) -> tuple[str, int, int] | None:
    if not isinstance(doc, Mapping):
        return None
    topic, partition, offset = doc.get("sourceTopic"), doc.get("sourcePartition"), doc.get("sourceOffset")
    if not isinstance(topic, str) or not isinstance(partition, int) or not isinstance(offset, int):
        return None
    if not _is_int(partition) or not _is_int(offset):
        return None
    return topic, partition, offset


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _key(doc: Any, field: str) -> str | None:
    value = doc.get(field) if isinstance(doc, Mapping) else None
    return value[:64] if isinstance(value, str) and value else None


def _text(value: Any, limit: int) -> str | None:
    if value is None:
        return None
    text = value if isinstance(value, str) else str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _shown(doc: Mapping[str, Any], key: str, timestamp_ms: int, dead: bool) -> dict[str, Any]:
    """The few fields the page shows of one record, bounded in size."""
    source = f"{doc['sourceTopic']}/{doc['sourcePartition']}/{doc['sourceOffset']}"
    if dead:
        return {
            "code": key,
            "reason": _text(doc.get("errorReason"), VALUE_CHARS),
            "value": _text(doc.get("value"), VALUE_CHARS),
            "value_encoding": _text(doc.get("valueEncoding"), 16),
            "rejected_at": _text(doc.get("rejectedAt"), 40),
            "timestamp_ms": timestamp_ms,
            "source": source,
        }
    record_id = doc.get("id")
    return {
        "id": record_id if isinstance(record_id, int) and not isinstance(record_id, bool) else None,
        "text": _text(doc.get("text"), TEXT_CHARS),
        "label": key,
        "probability": _number(doc.get("probability")),
        "model_version": _text(doc.get("modelVersion"), 80),
        "scored_at": _text(doc.get("scoredAt"), 40),
        "timestamp_ms": timestamp_ms,
        "source": source,
    }
