"""The deployment's status document and stop marker, kept in its state folder, and the listener that updates them.

Schema of `status.json` (version 1), documented in the README:
  schema_version, deployment, state (INITIALIZING | RUNNING | STOPPED | FAILED), reason, updated_at,
  started_at, pid, host, query_id, run_id, model {name, version, location},
  progress {batch_id, timestamp, input_rows, input_rows_per_second, processed_rows_per_second,
            batch_duration_ms, scored, dead_lettered, offsets_behind_latest},
  heartbeat_at (written every 5 s by a thread of the driver, and on every trigger), stale_after_s (how old the
  heartbeat may be before the deployment counts as gone: `health.heartbeat_bound_s` of its trigger),
  totals {records_in, records_scored, records_dead_lettered},
  last_error,
  models (the model history, oldest first) and update (the last `job update` request and its answer): their
  entries are written by `job.runtime.update`, which says what they hold
It never holds a password, API key or JAAS line: errors pass through the deployment's scrubber first.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, ClassVar

from pyspark.sql import SparkSession
from pyspark.sql.streaming.listener import StreamingQueryListener

from job.runtime import storage
from job.runtime.health import MIN_STALE_S, parse_time

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
STATUS_FILE = "status.json"
STOP_MARKER = "stop-requested"
INITIALIZING, RUNNING, STOPPED, FAILED = "INITIALIZING", "RUNNING", "STOPPED", "FAILED"
COUNTS_METRIC = "deployment_counts"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class StateStore:
    """Files in the deployment's state folder: a local path, or any URI Spark reads (through Hadoop)."""

    def __init__(self, location: str, spark: SparkSession | None = None) -> None:
        self.location = location.rstrip("/")
        self._spark = spark
        if not storage.is_local(location) and spark is None:
            raise ValueError(f"state location {location!r} is not a local path; reading it needs a SparkSession")

    def write_text(self, name: str, text: str) -> None:
        """Atomic: readers see the old document or the new one, never half of one."""
        storage.write_text(self._spark, storage.join(self.location, name), text)

    def read_text(self, name: str) -> str | None:
        return storage.read_text(self._spark, storage.join(self.location, name))

    def exists(self, name: str) -> bool:
        return storage.exists(self._spark, storage.join(self.location, name))

    def delete(self, name: str) -> None:
        storage.delete(self._spark, storage.join(self.location, name))

    # -- the status document and the stop marker ---------------------------------------------------------

    def read_status(self) -> dict[str, Any] | None:
        text = self.read_text(STATUS_FILE)
        return json.loads(text) if text else None

    def write_status(self, status: dict[str, Any]) -> None:
        self.write_text(STATUS_FILE, json.dumps(status, indent=2, sort_keys=False) + "\n")

    def request_stop(self) -> None:
        """Write the stop marker: the time it was asked for, so a run can tell a marker meant for an earlier run."""
        self.write_text(STOP_MARKER, now_iso() + "\n")

    def stop_requested(self) -> bool:
        return self.exists(STOP_MARKER)

    def stop_requested_at(self) -> float | None:
        """When the stop marker was written (epoch seconds); None without a marker, 0.0 if its time is unreadable."""
        text = self.read_text(STOP_MARKER)
        if text is None:
            return None
        return parse_time(text.strip()) or 0.0

    def clear_stop(self) -> None:
        self.delete(STOP_MARKER)


class StatusTracker:
    """Owns the status document of one run: state changes, progress, totals carried over from earlier runs.

    Written from the run loop, Spark's listener thread and the heartbeat thread: every change and write holds
    one lock, so no writer saves a document another is half-way through changing.
    """

    def __init__(
        self,
        store: StateStore | None,
        deployment: str,
        scrub: Callable[[str], str],
        clock: Callable[[], float] = time.monotonic,
        log_interval_s: float = 10.0,
        stale_after_s: float = MIN_STALE_S,
    ) -> None:
        self.store = store
        self.scrub = scrub
        self._lock = threading.RLock()
        self._clock = clock
        self._log_interval_s = log_interval_s
        self._last_log = -float("inf")
        self._since_log = {"records_in": 0, "records_scored": 0, "records_dead_lettered": 0}
        self._last_batch: int | None = None  # the last batch with rows folded into the totals
        self._progress_hooks: list[Callable[[dict[str, Any], dict[str, Any]], None]] = []
        # The query's listener is added once for the tracker: a model swap starts the query again with the same one.
        self.listening = False
        self.status: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "deployment": deployment,
            "state": INITIALIZING,
            "reason": None,
            "updated_at": now_iso(),
            "started_at": now_iso(),
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "query_id": None,
            "run_id": None,
            "model": None,
            "progress": None,
            "heartbeat_at": None,
            "stale_after_s": stale_after_s,
            "totals": {"records_in": 0, "records_scored": 0, "records_dead_lettered": 0},
            "last_error": None,
            "models": [],
            "update": None,
        }
        if store is not None:
            self._carry_over(store.read_status())

    def attach(self, store: StateStore) -> None:
        """The state folder became readable (one on Hadoop needs the session): carry over what it holds."""
        with self._lock:
            self.store = store
            self._carry_over(store.read_status())

    def _carry_over(self, previous: dict[str, Any] | None) -> None:
        """What a deployment keeps over its restarts: the totals, the model history, the last update's answer."""
        previous = previous or {}
        totals = previous.get("totals") or {}
        for key in ("records_in", "records_scored", "records_dead_lettered"):
            self.status["totals"][key] = int(totals.get(key, 0))
        models = previous.get("models")
        self.status["models"] = [dict(m) for m in models if isinstance(m, dict)] if isinstance(models, list) else []
        update = previous.get("update")
        self.status["update"] = dict(update) if isinstance(update, dict) else None

    def _save(self) -> None:
        with self._lock:
            self.status["updated_at"] = now_iso()
            if self.store is None:
                return
            try:
                self.store.write_status(self.status)
            except Exception as exc:  # a status write must never take the stream down
                logger.warning("could not write the status document: %s", self.scrub(str(exc))[:300])

    def set_state(self, state: str, reason: str | None = None) -> None:
        with self._lock:
            self.status["state"] = state
            self.status["reason"] = self.scrub(reason) if reason else None
            if state == FAILED and reason:
                self.status["last_error"] = self.status["reason"]
            self._save()
        logger.info(
            "deployment %r is %s%s", self.status["deployment"], state, f": {self.status['reason']}" if reason else ""
        )

    def set_reason(self, reason: str | None) -> None:
        """A note on the current state (a stop or a model change under way), the state itself unchanged."""
        with self._lock:
            self.status["reason"] = self.scrub(reason) if reason else None
            self._save()

    def set_model(self, name: str, version: str, location: str | None = None) -> None:
        with self._lock:
            self.status["model"] = {"name": name, "version": version, "location": location}
            self._save()

    def edit(self, change: Callable[[dict[str, Any]], None]) -> None:
        """Change the document under the tracker's lock, then write it (for fields other modules own)."""
        with self._lock:
            change(self.status)
            self._save()

    def add_progress_hook(self, hook: Callable[[dict[str, Any], dict[str, Any]], None]) -> None:
        """`hook(status, progress)` runs under the lock for each new micro-batch's progress, before the write."""
        with self._lock:
            self._progress_hooks.append(hook)

    def started(self, query_id: str, run_id: str) -> None:
        with self._lock:
            self.status["query_id"], self.status["run_id"] = query_id, run_id
            if self.status["state"] == INITIALIZING:
                self.set_state(RUNNING, self.status["reason"])
            else:
                self._save()

    def beat(self) -> None:
        """The driver is alive: its heartbeat thread calls this every few seconds, whatever the query does."""
        with self._lock:
            self.status["heartbeat_at"] = now_iso()
            self._save()

    def progress(self, progress: dict[str, Any]) -> None:
        with self._lock:
            self._progress(progress)

    def _progress(self, progress: dict[str, Any]) -> None:
        """Fold one StreamingQueryProgress (as a dict, from its JSON) into the document."""
        counts = (progress.get("observedMetrics") or {}).get(COUNTS_METRIC) or {}
        rows = int(progress.get("numInputRows") or 0)
        batch = progress.get("batchId")
        if rows and isinstance(batch, int):
            # The run loop may fold the last batch itself when it stops, before Spark's listener event arrives.
            if self._last_batch is not None and batch <= self._last_batch:
                return
            self._last_batch = batch
        dead = int(counts.get("dead_lettered") or 0)
        scored = int(counts.get("records") or 0) - dead
        lag = offsets_behind_latest(progress.get("sources") or [])
        self.status["progress"] = {
            "batch_id": progress.get("batchId"),
            "timestamp": progress.get("timestamp"),
            "input_rows": rows,
            "input_rows_per_second": _rate(progress.get("inputRowsPerSecond")),
            "processed_rows_per_second": _rate(progress.get("processedRowsPerSecond")),
            "batch_duration_ms": progress.get("batchDuration"),
            "scored": scored,
            "dead_lettered": dead,
            "offsets_behind_latest": lag,
        }
        totals = self.status["totals"]
        totals["records_in"] += rows
        totals["records_scored"] += scored
        totals["records_dead_lettered"] += dead
        for key, value in (("records_in", rows), ("records_scored", scored), ("records_dead_lettered", dead)):
            self._since_log[key] += value
        if self.status["state"] == INITIALIZING:
            self.status["state"] = RUNNING
        self.status["heartbeat_at"] = now_iso()
        for hook in self._progress_hooks:
            hook(self.status, progress)
        self._save()
        self._maybe_log(progress, lag)

    def idle(self) -> None:
        """A trigger found no new data: the query is alive and its offsets are resolved."""
        with self._lock:
            if self.status["state"] == INITIALIZING:
                self.status["state"] = RUNNING
            self.status["heartbeat_at"] = now_iso()
            self._save()

    def _maybe_log(self, progress: dict[str, Any], lag: int | None) -> None:
        now = self._clock()
        if now - self._last_log < self._log_interval_s:
            return
        since = self._since_log
        logger.info(
            "progress: %d rows in, %d scored, %d dead-lettered since last report; %.1f rows/s in, "
            "%.1f rows/s processed; lag %s offsets; totals %d scored, %d dead-lettered",
            since["records_in"],
            since["records_scored"],
            since["records_dead_lettered"],
            _rate(progress.get("inputRowsPerSecond")),
            _rate(progress.get("processedRowsPerSecond")),
            "unknown" if lag is None else lag,
            self.status["totals"]["records_scored"],
            self.status["totals"]["records_dead_lettered"],
        )
        self._last_log = now
        self._since_log = dict.fromkeys(since, 0)

    def terminated(self, error: str | None) -> None:
        if error:
            self.set_state(FAILED, error.splitlines()[0][:2000])
        elif self.status["state"] != STOPPED:
            self.set_state(STOPPED)


def offsets_behind_latest(sources: list[dict[str, Any]]) -> int | None:
    """Sum over partitions of (latest offset on the broker - offset the query has reached)."""
    total = 0
    for source in sources:
        # The progress JSON holds Kafka offsets as nested objects; other renderings give JSON strings.
        try:
            latest, end = (_as_offsets(source.get(key)) for key in ("latestOffset", "endOffset"))
        except (TypeError, ValueError):
            return None
        if not isinstance(latest, dict) or not isinstance(end, dict):
            return None
        for topic, partitions in latest.items():
            reached = end.get(topic, {})
            for partition, offset in partitions.items():
                total += max(0, int(offset) - int(reached.get(partition, 0)))
    return total


def _as_offsets(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def _rate(value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 0.0
    return 0.0 if number != number else round(number, 1)  # NaN before the first batch


class StatusListener(StreamingQueryListener):
    """Feeds the tracker from Spark's query events (runs on the driver, on Spark's listener thread)."""

    def __init__(self, tracker: StatusTracker, query_name: str) -> None:
        self.tracker = tracker
        self.query_name = query_name
        self._java_listener: Any = None

    @property
    def _jlistener(self) -> Any:
        # pyspark's own wrapper turns every event into Python objects field by field (StreamingQueryProgress.
        # fromJObject: some fifty py4j round trips per micro-batch; measured at 100 msgs/s, 107 ms of CPU on
        # Spark's listener thread and 38 ms in Python per batch, against 7 ms and 3.4 ms this way, the same as no
        # listener). This shim asks the JVM for the one JSON document the tracker reads: two round trips.
        if self._java_listener is None:
            from pyspark import SparkContext

            jvm = SparkContext._jvm
            if jvm is None:
                raise RuntimeError("no SparkContext: start the session before adding the listener")
            self._java_listener = jvm.PythonStreamingQueryListenerWrapper(_JsonEvents(self))
        return self._java_listener

    def onQueryStarted(self, event: Any) -> None:  # noqa: N802
        if event.name == self.query_name:
            self.tracker.started(str(event.id), str(event.runId))

    def onQueryProgress(self, event: Any) -> None:  # noqa: N802
        if event.progress.name == self.query_name:
            self.tracker.progress(json.loads(event.progress.json))

    def onQueryIdle(self, event: Any) -> None:  # noqa: N802
        if str(event.id) == self.tracker.status.get("query_id"):
            self.tracker.idle()

    def onQueryTerminated(self, event: Any) -> None:  # noqa: N802
        # The run loop records how the query ended (STOPPED, or FAILED with a short reason): it sees every ending,
        # and a write from here could land after its own and replace the short reason with Spark's long one.
        return

    def progress_json(self, document: str) -> None:
        """One micro-batch's progress as Spark's JSON (StreamingQueryProgress.json)."""
        progress = json.loads(document)
        if progress.get("name") == self.query_name:
            self.tracker.progress(progress)


class _JsonEvents:
    """The Java StreamingQueryListener interface pyspark's wrapper calls, with as few py4j calls per event as
    possible: the events stay Java objects, and a progress event is read as its one JSON document."""

    def __init__(self, listener: StatusListener) -> None:
        self.listener = listener

    def onQueryStarted(self, jevent: Any) -> None:  # noqa: N802
        if jevent.name() == self.listener.query_name:
            self.listener.tracker.started(jevent.id().toString(), jevent.runId().toString())

    def onQueryProgress(self, jevent: Any) -> None:  # noqa: N802
        self.listener.progress_json(jevent.progress().json())

    def onQueryIdle(self, jevent: Any) -> None:  # noqa: N802
        if jevent.id().toString() == self.listener.tracker.status.get("query_id"):
            self.listener.tracker.idle()

    def onQueryTerminated(self, jevent: Any) -> None:  # noqa: N802
        return  # as StatusListener.onQueryTerminated: the run loop records the ending

    class Java:
        implements: ClassVar[list[str]] = ["org.apache.spark.sql.streaming.PythonStreamingQueryListener"]
