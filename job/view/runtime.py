"""The view's only imports from the deployment runtime, kept in one place so they can be repointed in one edit."""

from __future__ import annotations

from job.credentials import kafka_python_config, scrubber
from job.main import _process_gone as process_gone
from job.spec import Connection, DeploymentSpec, SpecError, Trigger, load_spec
from job.status import FAILED, INITIALIZING, RUNNING, STOPPED, StateStore

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
