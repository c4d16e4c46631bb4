"""The view's only imports from the deployment runtime, kept in one place so they can be repointed in one edit."""

from __future__ import annotations

from job.runtime.connection import connection_scrubber as scrubber
from job.runtime.connection import kafka_python_config
from job.runtime.control import process_gone
from job.runtime.health import (
    FAILED_LEVEL,
    OK,
    STALE,
    STARTING,
    STOPPED_LEVEL,
    UNKNOWN,
    Health,
    assess,
    heartbeat_bound_s,
    interval_seconds,
    parse_time,
)
from job.runtime.spec import load_spec
from job.runtime.status import FAILED, INITIALIZING, RUNNING, STOPPED, StateStore
from job.runtime.values import Connection, DeploymentSpec, SpecError, Trigger

__all__ = [
    "FAILED",
    "FAILED_LEVEL",
    "INITIALIZING",
    "OK",
    "RUNNING",
    "STALE",
    "STARTING",
    "STOPPED",
    "STOPPED_LEVEL",
    "UNKNOWN",
    "Connection",
    "DeploymentSpec",
    "Health",
    "SpecError",
    "StateStore",
    "Trigger",
    "assess",
    "heartbeat_bound_s",
    "interval_seconds",
    "kafka_python_config",
    "load_spec",
    "parse_time",
    "process_gone",
    "scrubber",
]
