"""The deployment's health from its status document: state, rates, lag, totals, and whether its heartbeat is stale.

`heartbeat_bound_s` and `assess` take plain values (the status document as a dict, the trigger, a clock), so
`job status` can share them: a RUNNING document whose heartbeat is older than the bound means the driver hangs or
lost its state folder, whatever the document still says.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

MIN_STALE_S = 30.0
# A starting driver writes no heartbeat until its first trigger, and start-up takes 20 s on a quiet machine, minutes
# on a loaded one (fetching the model, the first query plan): only a start-up longer than this is called stale.
STARTUP_GRACE_S = 300.0
STALE_TRIGGERS = 3

# Levels, each shown with a word, a symbol and a colour on the page (never colour alone).
OK, STARTING, STALE, FAILED_LEVEL, STOPPED_LEVEL, UNKNOWN = "ok", "starting", "stale", "failed", "stopped", "unknown"

_UNITS = {
    "millisecond": 0.001,
    "milliseconds": 0.001,
    "ms": 0.001,
    "second": 1.0,
    "seconds": 1.0,
    "s": 1.0,
    "minute": 60.0,
    "minutes": 60.0,
    "min": 60.0,
}
_INTERVAL = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-z]+)\s*")


def interval_seconds(text: str) -> float:
    """'1 second', '500 milliseconds', '2 min' -> seconds (the forms the spec accepts for a trigger)."""
    match = _INTERVAL.fullmatch(text.lower())
    if not match or match.group(2) not in _UNITS:
        raise ValueError(f"not a trigger interval: {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def heartbeat_bound_s(trigger_kind: str, trigger_interval: str) -> float:
    """How old a RUNNING deployment's heartbeat may be before it counts as stale: max(30 s, 3 triggers).

    The job beats on every trigger, with data or idle; a micro-batch trigger of 0 s still fires at least every
    few hundred ms. 30 s leaves room for a slow batch and for shared storage's clock and listing delays.
    """
    if trigger_kind in ("processing_time", "real_time") and trigger_interval:
        return max(MIN_STALE_S, STALE_TRIGGERS * interval_seconds(trigger_interval))
    return MIN_STALE_S


def parse_time(text: Any) -> float | None:
    """An ISO-8601 time from the status document as epoch seconds, None if absent or unreadable."""
    if not isinstance(text, str) or not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


@dataclass(frozen=True)
class Health:
    level: str
    words: str


def assess(
    status: Mapping[str, Any] | None,
    stale_after_s: float,
    now_s: float,
    process_gone: Callable[[Mapping[str, Any]], bool] = lambda _status: False,
) -> Health:
    """One level and a sentence a person can read, from the status document as it is now."""
    if status is None:
        return Health(UNKNOWN, "no status document yet (never started, or no state folder)")
    state = status.get("state")
    reason = status.get("reason")
    if state == "FAILED":
        return Health(FAILED_LEVEL, f"FAILED: {reason}" if reason else "FAILED")
    if state == "STOPPED":
        return Health(STOPPED_LEVEL, "STOPPED")
    if state in ("RUNNING", "INITIALIZING"):
        if process_gone(status):
            return Health(FAILED_LEVEL, f"FAILED: process {status.get('pid')} on {status.get('host')} is gone")
        beat = parse_time(status.get("heartbeat_at")) or parse_time(status.get("updated_at"))
        age = None if beat is None else now_s - beat
        bound = max(stale_after_s, STARTUP_GRACE_S) if state == "INITIALIZING" else stale_after_s
        if age is not None and age > bound:
            return Health(STALE, f"{state} but STALE: no heartbeat for {_age(age)} (expected within {_age(bound)})")
        if state == "INITIALIZING":
            return Health(STARTING, "INITIALIZING")
        return Health(OK, "RUNNING")
    return Health(UNKNOWN, f"unknown state {state!r}")


def _age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def health_summary(
    status: Mapping[str, Any] | None,
    stale_after_s: float,
    now_s: float,
    process_gone: Callable[[Mapping[str, Any]], bool] = lambda _status: False,
    error: str | None = None,
) -> dict[str, Any]:
    """The `health` part of /api/summary: the assessment and the figures of the status document."""
    health = assess(status, stale_after_s, now_s, process_gone)
    doc = status or {}
    progress = doc.get("progress") or {}
    totals = doc.get("totals") or {}
    model = doc.get("model") or {}
    beat = parse_time(doc.get("heartbeat_at"))
    return {
        "level": health.level,
        "words": health.words,
        "deployment": doc.get("deployment"),
        "state": doc.get("state"),
        "reason": doc.get("reason"),
        "model": {"name": model.get("name"), "version": model.get("version")},
        "started_at": doc.get("started_at"),
        "updated_at": doc.get("updated_at"),
        "heartbeat_at": doc.get("heartbeat_at"),
        "heartbeat_age_s": None if beat is None else round(now_s - beat, 1),
        "stale_after_s": stale_after_s,
        "batch_id": progress.get("batch_id"),
        "input_rows_per_second": progress.get("input_rows_per_second"),
        "processed_rows_per_second": progress.get("processed_rows_per_second"),
        "batch_duration_ms": progress.get("batch_duration_ms"),
        "offsets_behind_latest": progress.get("offsets_behind_latest"),
        "totals": {
            "records_in": totals.get("records_in"),
            "records_scored": totals.get("records_scored"),
            "records_dead_lettered": totals.get("records_dead_lettered"),
        },
        "last_error": doc.get("last_error"),
        "error": error,
    }
