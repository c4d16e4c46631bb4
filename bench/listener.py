"""The deployment's status listener, timed: how long its handler takes per progress event."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from job.runtime.status import StateStore, StatusListener, StatusTracker


class TimedStatusListener(StatusListener):
    """StatusListener that notes the time its handler spends on each progress event (Spark's listener thread,
    asynchronous to the batches: not part of a batch's `durationMs`)."""

    def __init__(self, tracker: StatusTracker, query_name: str) -> None:
        super().__init__(tracker, query_name)
        self.handler_ms: list[float] = []

    def progress_json(self, document: str) -> None:
        start = time.perf_counter()
        super().progress_json(document)
        self.handler_ms.append((time.perf_counter() - start) * 1000)

    def summary(self) -> dict[str, Any]:
        if not self.handler_ms:
            return {"events": 0}
        values = np.array(self.handler_ms)
        return {
            "events": len(values),
            "median_ms": round(float(np.median(values)), 2),
            "p99_ms": round(float(np.percentile(values, 99)), 2),
        }


def timed_status_listener(spark: Any, spec: Any, state_dir: Path) -> tuple[StatusTracker, TimedStatusListener]:
    """A tracker writing the status document into `state_dir`, and its timed listener, added to the session.

    Pass the tracker to `start_query`: it is marked as listening, so the query adds no second listener.
    """
    state_dir.mkdir(parents=True, exist_ok=True)
    tracker = StatusTracker(StateStore(str(state_dir)), spec.name, scrub=lambda text: text)
    listener = TimedStatusListener(tracker, spec.name)
    spark.streams.addListener(listener)
    tracker.listening = True
    return tracker, listener
