"""The live view's health assessment (stale heartbeat, FAILED) and its --since parser."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from job.view.health import (
    FAILED_LEVEL,
    OK,
    STALE,
    STARTING,
    STOPPED_LEVEL,
    UNKNOWN,
    assess,
    health_summary,
    heartbeat_bound_s,
    interval_seconds,
)
from job.view.reader import parse_since

NOW = 1_800_000_000.0


def iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def running(heartbeat_age_s: float | None, state: str = "RUNNING") -> dict:
    return {
        "state": state,
        "reason": None,
        "updated_at": iso(NOW - 1),
        "heartbeat_at": None if heartbeat_age_s is None else iso(NOW - heartbeat_age_s),
    }


@pytest.mark.parametrize(
    ("kind", "interval", "bound"),
    [
        ("processing_time", "0 seconds", 30.0),
        ("processing_time", "1 second", 30.0),
        ("processing_time", "10 seconds", 30.0),
        ("processing_time", "11 seconds", 33.0),
        ("processing_time", "2 minutes", 360.0),
        ("processing_time", "500 milliseconds", 30.0),
        ("real_time", "5 seconds", 30.0),
        ("available_now", "", 30.0),
    ],
)
def test_the_stale_bound_is_three_triggers_and_at_least_30_s(kind: str, interval: str, bound: float) -> None:
    assert heartbeat_bound_s(kind, interval) == bound


@pytest.mark.parametrize("text", ["", "1", "second", "1 fortnight", "-1 s", "1e3 ms"])
def test_an_interval_that_the_spec_would_refuse_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a trigger interval"):
        interval_seconds(text)


def test_a_fresh_heartbeat_is_running_and_one_past_the_bound_is_stale_in_words() -> None:
    assert assess(running(29.9), 30.0, NOW).level == OK
    assert assess(running(30.0), 30.0, NOW).level == OK  # at the bound: not yet
    stale = assess(running(150), 30.0, NOW)
    assert (stale.level, stale.words) == (STALE, "RUNNING but STALE: no heartbeat for 2 min (expected within 30 s)")


def test_without_a_heartbeat_the_last_update_decides() -> None:
    doc = running(None) | {"updated_at": iso(NOW - 45)}
    assert assess(doc, 30.0, NOW).words == "RUNNING but STALE: no heartbeat for 45 s (expected within 30 s)"
    assert assess(running(None, "INITIALIZING"), 30.0, NOW).level == STARTING


def test_a_slow_start_gets_five_minutes_before_it_is_called_stale() -> None:
    starting = running(None, "INITIALIZING")
    assert assess(starting | {"updated_at": iso(NOW - 299)}, 30.0, NOW).level == STARTING
    stale = assess(starting | {"updated_at": iso(NOW - 301)}, 30.0, NOW)
    assert stale.words == "INITIALIZING but STALE: no heartbeat for 5 min (expected within 5 min)"


def test_failed_stopped_missing_and_gone() -> None:
    failed = assess({"state": "FAILED", "reason": "topic(s) x not found"}, 30.0, NOW)
    assert (failed.level, failed.words) == (FAILED_LEVEL, "FAILED: topic(s) x not found")
    assert assess({"state": "STOPPED"}, 30.0, NOW).level == STOPPED_LEVEL
    assert assess(None, 30.0, NOW).level == UNKNOWN
    gone = assess(running(1) | {"pid": 42, "host": "h"}, 30.0, NOW, process_gone=lambda _doc: True)
    assert (gone.level, gone.words) == (FAILED_LEVEL, "FAILED: process 42 on h is gone")


def test_health_summary_carries_the_status_figures() -> None:
    doc = {
        **running(2),
        "deployment": "d",
        "model": {"name": "Sentiment Prediction", "version": "abc"},
        "progress": {
            "batch_id": 7,
            "input_rows_per_second": 812.3,
            "processed_rows_per_second": 1710.2,
            "batch_duration_ms": 530,
            "offsets_behind_latest": 12,
        },
        "totals": {"records_in": 100, "records_scored": 90, "records_dead_lettered": 10},
    }
    summary = health_summary(doc, 30.0, NOW)
    assert summary["level"] == OK and summary["heartbeat_age_s"] == 2.0
    assert summary["model"] == {"name": "Sentiment Prediction", "version": "abc"}
    assert (summary["input_rows_per_second"], summary["processed_rows_per_second"]) == (812.3, 1710.2)
    assert (summary["batch_duration_ms"], summary["offsets_behind_latest"], summary["batch_id"]) == (530, 12, 7)
    assert summary["totals"] == {"records_in": 100, "records_scored": 90, "records_dead_lettered": 10}


# -- --since ---------------------------------------------------------------------------------------------------


@given(st.integers(min_value=0, max_value=10_000), st.sampled_from([("s", 1), ("m", 60), ("h", 3600), ("d", 86400)]))
def test_since_durations_count_back_from_now(amount: int, unit: tuple[str, int]) -> None:
    assert parse_since(f"{amount}{unit[0]}", NOW) == max(0, int((NOW - amount * unit[1]) * 1000))


def test_since_words_and_times() -> None:
    assert parse_since("beginning", NOW) == 0
    assert parse_since("now", NOW) == int(NOW * 1000)
    assert parse_since("1h", NOW) == int((NOW - 3600) * 1000)
    assert parse_since("2027-01-15T08:00:00Z", NOW) == int(datetime(2027, 1, 15, 8, tzinfo=UTC).timestamp() * 1000)


@given(st.text(max_size=30))
def test_since_accepts_or_refuses_clearly_never_crashes(text: str) -> None:
    try:
        value = parse_since(text, NOW)
    except ValueError as exc:
        assert "--since" in str(exc)
    else:
        assert value >= 0  # an ISO time may lie in the future, never before the epoch


@pytest.mark.parametrize("text", ["1", "h", "1 hour ago", "2027-01-15T08:00:00", "yesterday", "-1h"])
def test_since_refuses_what_it_cannot_read(text: str) -> None:
    with pytest.raises(ValueError, match="expected a duration"):
        parse_since(text, NOW)
