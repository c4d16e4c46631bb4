"""The live view's health summary (the runtime's assessment plus the status figures) and its --since parser."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from job.runtime.health import OK
from job.view.health import health_summary
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
