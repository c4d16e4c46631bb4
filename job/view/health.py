"""The deployment's health as the live view shows it: the runtime's assessment plus the status document's figures.

The judgement itself (stale heartbeat, gone process) is the runtime's (`job.runtime.health`), so `job status` and
this page never disagree.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from job.view.runtime import assess, parse_time


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
