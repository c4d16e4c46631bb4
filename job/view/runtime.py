"""The view's only imports from the deployment runtime, kept in one place so they can be repointed in one edit."""

from __future__ import annotations

from job.runtime.connection import connection_scrubber as scrubber
from job.runtime.connection import kafka_python_config
from job.runtime.control import process_gone
from job.runtime.spec import load_spec
from job.runtime.status import FAILED, INITIALIZING, RUNNING, STOPPED, StateStore
from job.runtime.values import Connection, DeploymentSpec, SpecError, Trigger

__all__ = [
    "FAILED",
    "INITIALIZING",
    "RUNNING",
    "STOPPED",
    "Connection",
    "DeploymentSpec",
    "SpecError",
    "StateStore",
    "Trigger",
    "kafka_python_config",
    "load_spec",
    "process_gone",
    "scrubber",
]
