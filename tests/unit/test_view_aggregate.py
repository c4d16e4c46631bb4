"""The live view's aggregation: records in, exact buckets, totals, latest lists and deduplication out."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from job.view.aggregate import (
    COUNTED,
    DUPLICATE,
    OTHER,
    TOO_LATE,
    UNREADABLE,
    Aggregator,
    BucketRing,
    OffsetLedger,
    RingSpec,
)

T0 = 1_800_000_000  # a round epoch second (divisible by 60)


def prediction(offset: int, label: str, partition: int = 0, topic: str = "tweets", **extra: Any) -> dict[str, Any]:
    return {
        "id": offset,
        "text": f"tweet {offset}",
        "prediction": 1.0 if label == "POSITIVE" else 0.0,
        "predictedLabel": label,
        "probability": 0.8,
        "modelName": "Sentiment Prediction",
        "modelVersion": "v7",
        "scoredAt": "2027-01-15T08:00:00.000Z",
        "sourceTopic": topic,
        "sourcePartition": partition,
        "sourceOffset": offset,
        **extra,
    }


def dead_letter(offset: int, code: str, partition: int = 0, topic: str = "tweets") -> dict[str, Any]:
    return {
        "errorCode": code,
        "errorReason": f"reason for {code}",
        "deployment": "d",
        "sourceTopic": topic,
        "sourcePartition": partition,
        "sourceOffset": offset,
        "sourceTimestamp": "2027-01-15T08:00:00.000Z",
        "rejectedAt": "2027-01-15T08:00:01.000Z",
        "key": None,
        "keyEncoding": None,
        "value": "{oops",
        "valueEncoding": "utf-8",
    }


def small() -> Aggregator:
    return Aggregator(rings=[RingSpec("10s", 10, 6), RingSpec("1m", 60, 3)], latest=3, latest_dead_letters=2)


def ms(seconds: float) -> int:
    return int((T0 + seconds) * 1000)


def test_records_land_in_exact_buckets_of_both_widths() -> None:
    agg = small()
    agg.add_prediction(prediction(0, "POSITIVE"), ms(0))
    agg.add_prediction(prediction(1, "POSITIVE"), ms(9.999))
    agg.add_prediction(prediction(2, "NEGATIVE"), ms(10))
    agg.add_prediction(prediction(3, "POSITIVE"), ms(59))
    agg.add_prediction(prediction(4, "NEGATIVE"), ms(60))
    agg.add_dead_letter(dead_letter(5, "NOT_JSON"), ms(25))
    agg.add_dead_letter(dead_letter(6, "EMPTY_TEXT"), ms(61))
    snap = agg.snapshot(now_s=T0 + 65)
    ten = snap["series"]["10s"]
    assert ten["width_s"] == 10
    assert ten["start"] == [T0 + 10, T0 + 20, T0 + 30, T0 + 40, T0 + 50, T0 + 60]  # 6 slots ending at now's bucket
    assert ten["by_label"] == {"NEGATIVE": [1, 0, 0, 0, 0, 1], "POSITIVE": [0, 0, 0, 0, 1, 0]}
    assert ten["by_code"] == {"EMPTY_TEXT": [0, 0, 0, 0, 0, 1], "NOT_JSON": [0, 1, 0, 0, 0, 0]}
    minute = snap["series"]["1m"]
    assert minute["start"] == [T0 - 60, T0, T0 + 60]
    assert minute["by_label"] == {"NEGATIVE": [0, 1, 1], "POSITIVE": [0, 3, 0]}
    assert minute["by_code"] == {"EMPTY_TEXT": [0, 0, 1], "NOT_JSON": [0, 1, 0]}
    # The first two records fell out of the 10 s ring but stay in the totals.
    assert snap["totals"] == {
        "scored": 5,
        "by_label": {"NEGATIVE": 2, "POSITIVE": 3},
        "dead_lettered": 2,
        "by_code": {"EMPTY_TEXT": 1, "NOT_JSON": 1},
    }
    assert snap["labels"] == ["NEGATIVE", "POSITIVE"] and snap["codes"] == ["EMPTY_TEXT", "NOT_JSON"]
    assert snap["records"] == {COUNTED: 7, DUPLICATE: 0, TOO_LATE: 0, UNREADABLE: 0, "outside_window": 0}


def test_the_same_source_offset_is_counted_once_whatever_topic_or_order_it_comes_back_in() -> None:
    agg = small()
    assert agg.add_prediction(prediction(10, "POSITIVE"), ms(1)) == COUNTED
    # A replayed micro-batch after a crash: same source offset, later timestamp, maybe another label.
    assert agg.add_prediction(prediction(10, "NEGATIVE"), ms(30)) == DUPLICATE
    # An offset is either scored or dead-lettered: a dead letter for an offset already scored is not counted again.
    assert agg.add_dead_letter(dead_letter(10, "NOT_JSON"), ms(31)) == DUPLICATE
    # Same offset number on another partition or another input topic is another message.
    assert agg.add_prediction(prediction(10, "NEGATIVE", partition=1), ms(2)) == COUNTED
    assert agg.add_prediction(prediction(10, "NEGATIVE", topic="other"), ms(3)) == COUNTED
    snap = agg.snapshot(now_s=T0 + 35)
    assert snap["totals"]["by_label"] == {"NEGATIVE": 2, "POSITIVE": 1}
    assert snap["totals"]["dead_lettered"] == 0
    assert snap["series"]["10s"]["start"][2] == T0
    assert snap["series"]["10s"]["by_label"] == {"NEGATIVE": [0, 0, 2, 0, 0, 0], "POSITIVE": [0, 0, 1, 0, 0, 0]}
    assert snap["records"][DUPLICATE] == 2


def test_late_records_fill_their_own_bucket_not_the_newest() -> None:
    agg = small()
    agg.add_prediction(prediction(5, "POSITIVE"), ms(45))
    agg.add_prediction(prediction(3, "NEGATIVE"), ms(12))  # arrives after, belongs 30 s earlier
    agg.add_prediction(prediction(4, "NEGATIVE"), ms(15))
    snap = agg.snapshot(now_s=T0 + 45)
    assert snap["series"]["10s"]["start"][0] == T0 - 10
    assert snap["series"]["10s"]["by_label"] == {"NEGATIVE": [0, 0, 2, 0, 0, 0], "POSITIVE": [0, 0, 0, 0, 0, 1]}


def test_a_record_older_than_every_ring_counts_in_the_totals_only() -> None:
    agg = small()
    agg.add_prediction(prediction(1, "POSITIVE"), ms(600))
    assert agg.add_prediction(prediction(0, "NEGATIVE"), ms(0)) == COUNTED
    snap = agg.snapshot(now_s=T0 + 600)
    assert snap["totals"]["by_label"] == {"NEGATIVE": 1, "POSITIVE": 1}
    assert snap["series"]["1m"]["by_label"]["NEGATIVE"] == [0, 0, 0]
    assert snap["series"]["10s"]["by_label"]["NEGATIVE"] == [0] * 6
    assert snap["records"]["outside_window"] == 1


def test_the_window_moves_with_the_clock_and_old_buckets_are_dropped() -> None:
    agg = small()
    agg.add_prediction(prediction(0, "POSITIVE"), ms(0))
    assert agg.snapshot(now_s=T0 + 50)["series"]["10s"]["by_label"]["POSITIVE"] == [1, 0, 0, 0, 0, 0]
    later = agg.snapshot(now_s=T0 + 60)["series"]["10s"]
    assert later["start"][0] == T0 + 10 and later["by_label"]["POSITIVE"] == [0] * 6
    # The bucket is gone from memory, not merely hidden: a record for it now is outside the window.
    agg.add_prediction(prediction(1, "POSITIVE"), ms(1))
    assert agg.snapshot(now_s=T0 + 60)["series"]["10s"]["by_label"]["POSITIVE"] == [0] * 6
    assert len(agg._label_rings["10s"]._buckets) == 0


def test_a_clock_ahead_of_ours_still_shows_its_records() -> None:
    agg = small()
    agg.add_prediction(prediction(0, "POSITIVE"), ms(100))
    ten = agg.snapshot(now_s=T0)["series"]["10s"]
    assert ten["start"][-1] == T0 + 100 and ten["by_label"]["POSITIVE"][-1] == 1


def test_latest_records_are_the_newest_by_time_newest_first_whatever_the_arrival_order() -> None:
    agg = small()  # keeps 3
    for offset, second in [(0, 5), (1, 50), (2, 1), (3, 40), (4, 45), (5, 2)]:
        agg.add_prediction(prediction(offset, "POSITIVE"), ms(second))
    latest = agg.snapshot(now_s=T0 + 60)["latest"]
    assert [r["id"] for r in latest] == [1, 4, 3]
    assert latest[0] == {
        "id": 1,
        "text": "tweet 1",
        "label": "POSITIVE",
        "probability": 0.8,
        "model_version": "v7",
        "scored_at": "2027-01-15T08:00:00.000Z",
        "timestamp_ms": ms(50),
        "source": "tweets/0/1",
    }


def test_latest_dead_letters_keep_code_reason_and_a_bounded_value() -> None:
    agg = small()  # keeps 2
    agg.add_dead_letter(dead_letter(0, "NOT_JSON"), ms(1))
    agg.add_dead_letter({**dead_letter(1, "OVERSIZED"), "value": "x" * 10_000}, ms(3))
    agg.add_dead_letter(dead_letter(2, "TOMBSTONE") | {"value": None, "valueEncoding": None}, ms(2))
    latest = agg.snapshot(now_s=T0 + 10)["latest_dead_letters"]
    assert [(d["code"], d["reason"]) for d in latest] == [
        ("OVERSIZED", "reason for OVERSIZED"),
        ("TOMBSTONE", "reason for TOMBSTONE"),
    ]
    assert latest[0]["value"] == "x" * 199 + "…"
    assert latest[1]["value"] is None and latest[1]["source"] == "tweets/0/2"


@pytest.mark.parametrize(
    "doc",
    [
        None,
        [],
        "text",
        {"predictedLabel": "POSITIVE"},  # no source
        prediction(1, "POSITIVE") | {"sourceOffset": "1"},
        prediction(1, "POSITIVE") | {"sourceOffset": -1},
        prediction(1, "POSITIVE") | {"sourcePartition": True},
        prediction(1, "POSITIVE") | {"predictedLabel": ""},
        prediction(1, "POSITIVE") | {"predictedLabel": 1},
    ],
)
def test_records_not_in_the_jobs_format_are_counted_as_unreadable_not_guessed(doc: Any) -> None:
    agg = small()
    assert agg.add_prediction(doc, ms(0)) == UNREADABLE
    snap = agg.snapshot(now_s=T0)
    assert snap["totals"]["scored"] == 0 and snap["records"][UNREADABLE] == 1 and snap["latest"] == []


def test_add_many_folds_a_poll_and_counts_non_json_values() -> None:
    agg = small()
    agg.add_many(
        [(False, prediction(0, "POSITIVE"), ms(0)), (True, dead_letter(1, "NOT_JSON"), ms(0)), (False, None, ms(0))]
    )
    snap = agg.snapshot(now_s=T0)
    assert (snap["totals"]["scored"], snap["totals"]["dead_lettered"], snap["records"][UNREADABLE]) == (1, 1, 1)


def test_distinct_labels_and_codes_are_bounded() -> None:
    agg = Aggregator(rings=[RingSpec("10s", 10, 2)], max_keys=3)
    for offset in range(10):
        agg.add_prediction(prediction(offset, f"L{offset}"), ms(0))
    snap = agg.snapshot(now_s=T0)
    assert snap["totals"]["by_label"] == {"L0": 1, "L1": 1, "L2": 1, OTHER: 7}


def test_long_texts_are_cut_for_display() -> None:
    agg = small()
    agg.add_prediction(prediction(0, "POSITIVE", text="é" * 4000), ms(0))
    assert agg.snapshot(now_s=T0)["latest"][0]["text"] == "é" * 499 + "…"


# -- the offset ledger ----------------------------------------------------------------------------------------


def test_the_ledger_merges_contiguous_offsets_into_one_range() -> None:
    ledger = OffsetLedger()
    for offset in [5, 7, 6, 9, 3, 4, 8]:
        assert ledger.add(offset) == COUNTED
    assert ledger.ranges() == [(3, 9)]
    assert [ledger.add(o) for o in (3, 6, 9)] == [DUPLICATE] * 3
    assert ledger.add(10) == COUNTED and ledger.ranges() == [(3, 10)]


def test_the_ledger_is_bounded_and_says_too_late_below_what_it_forgot() -> None:
    ledger = OffsetLedger(max_ranges=3)
    for offset in (0, 2, 4, 6):  # four separate ranges: the lowest, (0, 0), is forgotten
        ledger.add(offset)
    assert ledger.ranges() == [(2, 2), (4, 4), (6, 6)] and ledger.floor == 0
    assert ledger.add(0) == TOO_LATE  # a duplicate or not: no longer known, so not counted and said so
    assert ledger.add(1) == COUNTED  # above the floor: still decided exactly
    assert ledger.ranges() == [(1, 2), (4, 4), (6, 6)]
    assert ledger.add(2) == DUPLICATE


def test_the_ledger_stays_small_for_the_jobs_real_pattern() -> None:
    """The job spreads one source partition's offsets over the output partitions (by key) and the dead-letter topic;
    each of those streams is in source-offset order, and the reader fetches them in step, a chunk of each at a time
    (max_partition_fetch_bytes). 100,000 offsets must all count, exactly once, in a few hundred ranges at most."""
    ledger = OffsetLedger(max_ranges=4096)
    rng = random.Random(3)
    streams: list[list[int]] = [[], [], [], []]
    for offset in range(100_000):
        streams[rng.randrange(4)].append(offset)
    chunk = 190  # about 64 KiB of output records
    biggest = 0
    for start in range(0, max(map(len, streams)), chunk):
        for stream in rng.sample(streams, 4):
            for offset in stream[start : start + chunk]:
                assert ledger.add(offset) == COUNTED
            biggest = max(biggest, len(ledger))
    assert ledger.ranges() == [(0, 99_999)]
    assert ledger.floor == -1 and biggest <= 4 * chunk


def test_starting_mid_stream_leaves_a_few_permanent_gaps_and_still_counts_exactly() -> None:
    """--since cuts each output stream at a slightly different source offset: the gaps below never fill."""
    ledger = OffsetLedger(max_ranges=4096)
    rng = random.Random(5)
    streams: list[list[int]] = [[], [], []]
    for offset in range(10_000):
        streams[rng.randrange(3)].append(offset)
    cuts = [5_000, 5_030, 5_100]
    expected = set()
    for stream, cut in zip(streams, cuts, strict=True):
        expected |= {o for o in stream if o >= cut}
    for stream, cut in zip(streams, cuts, strict=True):
        for offset in (o for o in stream if o >= cut):
            assert ledger.add(offset) == COUNTED
    assert {o for a, b in ledger.ranges() for o in range(a, b + 1)} == expected
    assert len(ledger) < 100


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=300), max_size=400), st.integers(min_value=1, max_value=20))
def test_the_ledger_agrees_with_a_set_until_it_forgets(offsets: list[int], max_ranges: int) -> None:
    ledger = OffsetLedger(max_ranges=max_ranges)
    seen: set[int] = set()
    for offset in offsets:
        outcome = ledger.add(offset)
        if offset <= ledger.floor and outcome == TOO_LATE:
            continue
        assert outcome == (DUPLICATE if offset in seen else COUNTED)
        seen.add(offset)
        assert len(ledger) <= max_ranges
        ranges = ledger.ranges()
        assert all(a <= b for a, b in ranges)
        assert all(ranges[i][1] + 1 < ranges[i + 1][0] for i in range(len(ranges) - 1)), "ranges must be merged"
        assert {o for o in seen if o > ledger.floor} == {o for a, b in ranges for o in range(a, b + 1)}


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 2), st.integers(0, 50), st.sampled_from(["A", "B", "C"]), st.integers(0, 400)),
        max_size=200,
    )
)
def test_totals_and_buckets_count_each_source_offset_once(records: list[tuple[int, int, str, int]]) -> None:
    agg = Aggregator(rings=[RingSpec("10s", 10, 50), RingSpec("1m", 60, 10)])
    first: dict[tuple[int, int], tuple[str, int]] = {}
    for partition, offset, label, second in records:
        agg.add_prediction(prediction(offset, label, partition=partition), ms(second))
        first.setdefault((partition, offset), (label, second))
    snap = agg.snapshot(now_s=T0 + 400)
    expected: dict[str, int] = {}
    for label, _ in first.values():
        expected[label] = expected.get(label, 0) + 1
    assert snap["totals"]["by_label"] == dict(sorted(expected.items()))
    for name in ("10s", "1m"):
        assert {k: sum(v) for k, v in snap["series"][name]["by_label"].items()} == dict(sorted(expected.items()))
    assert snap["records"][DUPLICATE] == len(records) - len(first)


def test_bucket_ring_refuses_bad_sizes() -> None:
    with pytest.raises(ValueError):
        BucketRing(0, 5)
    with pytest.raises(ValueError):
        OffsetLedger(0)
