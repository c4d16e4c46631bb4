"""`job status` from any host: a gone process or a stale heartbeat is FAILED whatever the document still says."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import Any

from job.runtime.control import judged

NOW = 1_800_000_000.0


def iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def document(
    state: str, beat_age_s: float | None, host: str = "driver-7.cluster.example", **extra: Any
) -> dict[str, Any]:
    return {
        "state": state,
        "reason": None,
        "pid": os.getpid(),
        "host": host,
        "updated_at": iso(NOW - 1),
        "heartbeat_at": None if beat_age_s is None else iso(NOW - beat_age_s),
        "stale_after_s": 30.0,
        **extra,
    }


def test_a_fresh_heartbeat_keeps_the_state() -> None:
    status = judged(document("RUNNING", 29), NOW)
    assert status is not None and (status["state"], status["reason"]) == ("RUNNING", None)


def test_a_stale_heartbeat_is_failed_whatever_pid_and_host_say() -> None:
    status = judged(document("RUNNING", 95), NOW)
    assert status is not None
    assert (status["state"], status["reported_state"], status["reason"]) == (
        "FAILED",
        "RUNNING",
        "no heartbeat for 95 s (expected within 30 s): the driver (pid "
        f"{os.getpid()} on driver-7.cluster.example) is gone or hangs; it said RUNNING",
    )


def test_the_bound_comes_from_the_document() -> None:
    status = judged(document("RUNNING", 95, stale_after_s=360.0), NOW)  # a 2-minute trigger's bound
    assert status is not None and status["state"] == "RUNNING"


def test_a_start_without_any_heartbeat_gets_its_grace_and_final_states_stay() -> None:
    starting = judged(document("INITIALIZING", None), NOW)
    assert starting is not None and starting["state"] == "INITIALIZING"
    for state in ("STOPPED", "FAILED"):
        kept = judged(document(state, 10_000), NOW)
        assert kept is not None and kept["state"] == state and "reported_state" not in kept
    assert judged(None, NOW) is None
