"""Whether a deployment is alive, from its status document alone: the heartbeat's age against a bound from the trigger.

Pure functions of plain values (the status document as a dict, the trigger, a clock), so `job status`, `job stop`,
`job delete` and the live view all judge a deployment the same way, from any host: a RUNNING document whose
heartbeat is older than the bound means the driver is gone or hangs, whatever its pid or host still say.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

MIN_STALE_S = 30.0
# The job beats from a thread of its own every HEARTBEAT_INTERVAL_S, from the moment its state folder is known,
# whatever its micro-batches do; the bound leaves room for several missed beats and for shared storage's delays.
HEARTBEAT_INTERVAL_S = 5.0
# A status document without any heartbeat (written before the state folder could be reached, or by an older
# version of the job) gets this long to start: start-up took 2 min on a loaded machine (the model, the first plan).
STARTUP_GRACE_S = 300.0
STALE_TRIGGERS = 3

# Levels, each shown with a word, a symbol and a colour by the live view (never colour alone).
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

    The job beats every 5 s from a thread of its own, so a micro-batch that runs for minutes is not stale;
    the trigger term keeps a long interval (say 2 minutes) from being judged by a bound shorter than itself.
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
        age = heartbeat_age_s(status, now_s)
        never_beat = status.get("heartbeat_at") is None
        bound = max(stale_after_s, STARTUP_GRACE_S) if state == "INITIALIZING" and never_beat else stale_after_s
        if age is not None and age > bound:
            return Health(STALE, f"{state} but STALE: no heartbeat for {_age(age)} (expected within {_age(bound)})")
        if state == "INITIALIZING":
            return Health(STARTING, "INITIALIZING")
        return Health(OK, "RUNNING")
    return Health(UNKNOWN, f"unknown state {state!r}")


def heartbeat_age_s(status: Mapping[str, Any], now_s: float) -> float | None:
    """Seconds since the last heartbeat (or, without one, since the document was last written)."""
    beat = parse_time(status.get("heartbeat_at")) or parse_time(status.get("updated_at"))
    return None if beat is None else now_s - beat


def _age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
