"""Commands on a deployment through its state folder: status, stop and delete. They need no connection or secret."""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from job.runtime import storage
from job.runtime.session import local_session
from job.runtime.status import FAILED, INITIALIZING, RUNNING, STOPPED, StateStore
from job.runtime.values import EXIT_BAD_SPEC, EXIT_FAILED, EXIT_NO_STATUS, EXIT_OK, DeploymentLocations, SpecError


@contextmanager
def state_store(spec: DeploymentLocations) -> Iterator[StateStore]:
    """The state folder, with a small local Spark session only when it is not a local path."""
    if spec.state_location is None:
        raise SpecError("state_location", "nothing", "a state folder (status, stop and delete need one)")
    if storage.is_local(spec.state_location):
        yield StateStore(spec.state_location)
        return
    session = local_session("job-status", master="local[1]")
    try:
        yield StateStore(spec.state_location, session)
    finally:
        session.stop()


def process_gone(status: Mapping[str, Any]) -> bool:
    if status.get("host") != socket.gethostname() or not status.get("pid"):
        return False
    try:
        os.kill(int(status["pid"]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def current_status(spec: DeploymentLocations) -> dict[str, Any] | None:
    """The status document, with the state corrected when the process died without saying so."""
    with state_store(spec) as store:
        status = store.read_status()
    if status and status.get("state") in (INITIALIZING, RUNNING) and process_gone(status):
        status["state"] = FAILED
        status["reason"] = f"process {status['pid']} on {status['host']} is gone without stopping (killed?)"
    return status


def show_status(spec: DeploymentLocations, as_json: bool = False) -> int:
    try:
        status = current_status(spec)
    except SpecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_SPEC
    if status is None:
        if as_json:
            print(json.dumps({"deployment": spec.name, "state": None}))
        else:
            print(f"{spec.name}: no status (never started with state folder {spec.state_location})")
        return EXIT_NO_STATUS
    if as_json:
        print(json.dumps(status, indent=2))
        return EXIT_OK
    print("\n".join(status_lines(status)))
    return EXIT_OK


def status_lines(status: dict[str, Any]) -> list[str]:
    """The status document as `job status` shows it to a person."""
    progress = status.get("progress") or {}
    totals = status.get("totals") or {}
    model = status.get("model") or {}
    return [
        f"deployment:  {status['deployment']}",
        f"state:       {status['state']}" + (f" ({status['reason']})" if status.get("reason") else ""),
        f"model:       {model.get('name', '?')} version {model.get('version', '?')}",
        f"started at:  {status.get('started_at')} (pid {status.get('pid')} on {status.get('host')})",
        f"updated at:  {status.get('updated_at')}",
        f"last batch:  #{progress.get('batch_id', '-')}: {progress.get('input_rows', 0)} rows, "
        f"{progress.get('input_rows_per_second', 0.0)} rows/s in, "
        f"{progress.get('processed_rows_per_second', 0.0)} rows/s processed, "
        f"{progress.get('batch_duration_ms', '-')} ms",
        f"lag:         {progress.get('offsets_behind_latest', '-')} offsets behind the latest",
        f"totals:      {totals.get('records_scored', 0)} scored, {totals.get('records_dead_lettered', 0)} "
        f"dead-lettered, {totals.get('records_in', 0)} read",
        f"last error:  {status.get('last_error') or '-'}",
    ]


def stop(spec: DeploymentLocations, timeout_s: float = 180.0) -> int:
    """Ask the running deployment to stop after its batch in flight, and wait until it has."""
    status = current_status(spec)
    if status is None or status.get("state") not in (INITIALIZING, RUNNING):
        state = status.get("state") if status else "not started"
        print(f"{spec.name}: not running ({state})")
        return EXIT_OK
    with state_store(spec) as store:
        store.request_stop()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        time.sleep(0.5)
        status = current_status(spec) or {}
        if status.get("state") in (STOPPED, FAILED):
            print(f"{spec.name}: {status['state']}")
            return EXIT_OK if status["state"] == STOPPED else EXIT_FAILED
    print(f"{spec.name}: still {status.get('state')} after {timeout_s:.0f}s", file=sys.stderr)
    return EXIT_FAILED


def delete(spec: DeploymentLocations, confirmed: bool, timeout_s: float = 180.0) -> int:
    """Stop the deployment if it runs, then remove its checkpoint and state."""
    if not confirmed:
        print(
            f"error: delete removes the checkpoint ({spec.checkpoint_location}) and state ({spec.state_location}) "
            "of this deployment; add --yes to confirm",
            file=sys.stderr,
        )
        return EXIT_BAD_SPEC
    if spec.state_location is not None and stop(spec, timeout_s) != EXIT_OK:
        print("error: the deployment did not stop; nothing deleted", file=sys.stderr)
        return EXIT_FAILED
    locations = [spec.checkpoint_location, *([spec.state_location] if spec.state_location else [])]
    session = (
        None if all(storage.is_local(loc) for loc in locations) else local_session("job-delete", master="local[1]")
    )
    try:
        for location in locations:
            removed = storage.delete(session, location, recursive=True)
            print(f"{'removed' if removed else 'nothing at'} {location}")
    finally:
        if session is not None:
            session.stop()
    print(f"{spec.name}: deleted")
    return EXIT_OK
