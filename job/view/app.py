"""One live view of one deployment: the readers, the aggregator and the status, put together into /api/summary."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from job.view.aggregate import Aggregator
from job.view.health import health_summary
from job.view.reader import StatusReader, TopicReader
from job.view.runtime import Connection, DeploymentSpec, heartbeat_bound_s, process_gone, scrubber

SCHEMA_VERSION = 1


def iso(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class LiveView:
    """Reads a deployment's output and dead-letter topics and its status document, and summarises them."""

    def __init__(
        self,
        spec: DeploymentSpec,
        since_ms: int,
        latest: int = 50,
        latest_dead_letters: int = 10,
        status_interval_s: float = 1.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.spec = spec
        self.since_ms = since_ms
        self._clock = clock
        connections = [spec.source.connection, spec.target.connection, spec.dead_letter.connection]
        self.scrub = scrubber(connections)
        self.aggregator = Aggregator(latest=latest, latest_dead_letters=latest_dead_letters)
        # One consumer per cluster: the dead-letter topic may live on a cluster of its own.
        by_cluster: dict[Connection, dict[str, bool]] = {}
        by_cluster.setdefault(spec.target.connection, {})[spec.target.topic] = False
        by_cluster.setdefault(spec.dead_letter.connection, {})[spec.dead_letter.topic] = True
        self.readers = [
            TopicReader(connection, topics, self.aggregator, since_ms, self.scrub)
            for connection, topics in by_cluster.items()
        ]
        self.status_reader = StatusReader(spec.state_location, self.scrub, status_interval_s)
        trigger = spec.options.trigger
        self.stale_after_s = heartbeat_bound_s(trigger.kind, trigger.interval)

    def start(self) -> None:
        for reader in self.readers:
            reader.start()
        self.status_reader.start()

    def stop(self) -> None:
        for reader in self.readers:
            reader.stop()
        self.status_reader.stop()
        for thread in [*self.readers, self.status_reader]:
            if thread.is_alive():
                thread.join(timeout=10)

    def summary(self) -> dict[str, Any]:
        """The /api/summary document (README: 'The live view')."""
        now = self._clock()
        status, status_error = self.status_reader.latest()
        document = {
            "schema_version": SCHEMA_VERSION,
            "generated_at": iso(now),
            "deployment": self.spec.name,
            "topics": {"output": self.spec.target.topic, "dead_letter": self.spec.dead_letter.topic},
            "since": iso(self.since_ms / 1000),
            "readers": [reader.info() for reader in self.readers],
            **self.aggregator.snapshot(now),
            "health": health_summary(status, self.stale_after_s, now, process_gone, status_error),
        }
        # The job scrubs what it writes; this is the second lock on the door, for texts read off the topics too.
        return _scrubbed(document, self.scrub)


def _scrubbed(value: Any, scrub: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {key: _scrubbed(item, scrub) for key, item in value.items()}
    if isinstance(value, list):
        # Series columns are long lists of numbers: nothing to scrub there.
        if value and not isinstance(value[0], str | dict | list):
            return value
        return [_scrubbed(item, scrub) for item in value]
    return value
