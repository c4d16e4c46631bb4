"""The runtime's health judgement: a stale heartbeat, a gone process, FAILED and STOPPED, from the status document."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from job.runtime.health import (
    FAILED_LEVEL,
    OK,
    STALE,
    STARTING,
    STOPPED_LEVEL,
    UNKNOWN,
    assess,
    heartbeat_bound_s,
    interval_seconds,
)

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


def test_a_start_that_beats_is_judged_by_the_normal_bound() -> None:
    # The job beats from its first steps once the state folder is known: a start-up that stopped beating is stale
    # after the ordinary bound, not after the five minutes a document without any heartbeat gets.
    starting = running(31, "INITIALIZING")
    stale = assess(starting, 30.0, NOW)
    assert (stale.level, stale.words) == (STALE, "INITIALIZING but STALE: no heartbeat for 31 s (expected within 30 s)")
    assert assess(running(29, "INITIALIZING"), 30.0, NOW).level == STARTING
