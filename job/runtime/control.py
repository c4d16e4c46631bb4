"""Commands on a deployment through its state folder: status, stop, update and delete. They need no connection or
secret."""

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
from job.runtime.health import MIN_STALE_S, STALE, assess, heartbeat_age_s
from job.runtime.session import local_session
from job.runtime.status import FAILED, INITIALIZING, RUNNING, STOPPED, StateStore
from job.runtime.update import (
    REFUSED,
    SERVING,
    UpdateRequestError,
    answer_for,
    history_lines,
    location_problem,
    new_request,
    read_request,
    update_line,
    withdraw,
    write_request,
)
from job.runtime.values import EXIT_BAD_SPEC, EXIT_FAILED, EXIT_NO_STATUS, EXIT_OK, DeploymentLocations, SpecError


@contextmanager
def state_store(spec: DeploymentLocations) -> Iterator[StateStore]:
    """The state folder, with a small local Spark session only when it is not a local path."""
    if spec.state_location is None:
        raise SpecError("state_location", "nothing", "a state folder (status, stop, update and delete need one)")
    if storage.is_local(spec.state_location):
        yield StateStore(spec.state_location)
        return
    session = local_session("job-status", master="local[1]")
    try:
        yield StateStore(spec.state_location, session)
    finally:
        session.stop()


def process_gone(status: Mapping[str, Any]) -> bool:
    """The document's driver ran on this host and its pid is free: it died without saying so. (From another host,
    or with the pid taken by another process, only the heartbeat's age can tell: see `current_status`.)"""
    if status.get("host") != socket.gethostname() or not status.get("pid"):
        return False
    try:
        os.kill(int(status["pid"]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def current_status(spec: DeploymentLocations, now_s: float | None = None) -> dict[str, Any] | None:
    """The status document, with the state corrected when the driver died without saying so.

    A driver on this host whose pid is free is gone. Otherwise the heartbeat decides, from any host: older than
    the document's `stale_after_s` (derived from the trigger, `health.heartbeat_bound_s`), the deployment is not
    running, whatever its pid or host say (a driver on a cluster node, a pid taken by another process).
    """
    with state_store(spec) as store:
        status = store.read_status()
    return judged(status, time.time() if now_s is None else now_s)


def judged(status: dict[str, Any] | None, now_s: float) -> dict[str, Any] | None:
    """The status document as `job status` shows it: an INITIALIZING or RUNNING one that is gone or stale is FAILED."""
    if not status or status.get("state") not in (INITIALIZING, RUNNING):
        return status
    driver = f"the driver (pid {status.get('pid')} on {status.get('host')})"
    if process_gone(status):
        status["state"] = FAILED
        status["reason"] = f"process {status['pid']} on {status['host']} is gone without stopping (killed?)"
        return status
    bound = float(status.get("stale_after_s") or MIN_STALE_S)
    health = assess(status, bound, now_s)
    if health.level == STALE:
        age = heartbeat_age_s(status, now_s) or 0.0
        status["reported_state"] = status["state"]
        status["state"] = FAILED
        status["reason"] = (
            f"no heartbeat for {age:.0f} s (expected within {bound:.0f} s): {driver} is gone or hangs; it said "
            f"{status['reported_state']}"
        )
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
    where = f" at {model['location']}" if model.get("location") else ""
    update = update_line(status)
    history = history_lines(status)
    return [
        f"deployment:  {status['deployment']}",
        f"state:       {status['state']}" + (f" ({status['reason']})" if status.get("reason") else ""),
        f"model:       {model.get('name', '?')} version {model.get('version', '?')}{where}",
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
        *([f"last update: {update}"] if update else []),
        *(["models:      (oldest first: version, name, serving since, first offsets, location)"] if history else []),
        *(f"  {line}" for line in history),
    ]


def stop(spec: DeploymentLocations, timeout_s: float | None = None) -> int:
    """Ask the running deployment to stop after its batch in flight, and wait until it has.

    Without a timeout it waits as long as the deployment's heartbeat is fresh: the batch in flight is finished
    first, however long it takes, and a driver that dies meanwhile shows as FAILED (stale) instead.
    """
    status = current_status(spec)
    if status is None or status.get("state") not in (INITIALIZING, RUNNING):
        state = status.get("state") if status else "not started"
        reason = f": {status['reason']}" if status and status.get("reason") and state == FAILED else ""
        print(f"{spec.name}: not running ({state}{reason})")
        return EXIT_OK
    with state_store(spec) as store:
        store.request_stop()
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while deadline is None or time.monotonic() < deadline:
        time.sleep(0.5)
        status = current_status(spec) or {}
        if status.get("state") in (STOPPED, FAILED):
            reason = f" ({status['reason']})" if status.get("reason") else ""
            print(f"{spec.name}: {status['state']}{reason}")
            return EXIT_OK if status["state"] == STOPPED else EXIT_FAILED
    print(f"{spec.name}: still {status.get('state')} after {timeout_s:.0f}s", file=sys.stderr)
    return EXIT_FAILED


def update(spec: DeploymentLocations, model: str, timeout_s: float | None = None, poll_s: float = 0.5) -> int:
    """Ask the running deployment to serve the model at `model`, and wait for its answer.

    The deployment checks the model fully while the current one scores, then swaps at a batch boundary (SERVING) or
    says why not (REFUSED). Without a timeout this waits as long as the deployment's heartbeat is fresh, as `stop`
    does. Exit 0 once the model serves; 1 when it was refused, or the deployment is not running or stopped meanwhile,
    or the timeout came first; 2 without a state folder or for a location that would carry a secret.
    """
    if spec.state_location is None:
        print(
            f"error: {spec.name} has no state folder (state_location): job update asks the running deployment through "
            "it, as job stop does, and cannot reach a deployment without one",
            file=sys.stderr,
        )
        return EXIT_BAD_SPEC
    problem = location_problem(model)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return EXIT_BAD_SPEC
    with state_store(spec) as store:
        status = judged(store.read_status(), time.time())
        if status is None or status.get("state") not in (INITIALIZING, RUNNING):
            state = status.get("state") if status else "not started"
            reason = f": {status['reason']}" if status and status.get("reason") else ""
            print(f"error: {spec.name} is not running ({state}{reason}); nothing to update", file=sys.stderr)
            return EXIT_FAILED
        try:
            pending = read_request(store)
        except UpdateRequestError:
            pending = None  # not a request: the deployment removes it; ours replaces it
        if pending is not None:
            print(
                f"error: another update is pending (request {pending.id} for {pending.model}, asked at "
                f"{pending.requested_at}); wait for its answer in job status, then ask again",
                file=sys.stderr,
            )
            return EXIT_FAILED
        request = new_request(model)
        write_request(store, request)
        serving = status.get("model") or {}
        print(
            f"{spec.name}: asked to serve {model} (request {request.id}); version {serving.get('version', '?')} "
            "scores while the deployment checks it"
        )
        return _await_answer(spec, store, request.id, model, timeout_s, poll_s)


def _await_answer(
    spec: DeploymentLocations, store: StateStore, request_id: str, model: str, timeout_s: float | None, poll_s: float
) -> int:
    """Wait for the deployment's answer to this request, for as long as it runs (or until `timeout_s`)."""
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while deadline is None or time.monotonic() < deadline:
        time.sleep(poll_s)
        status = judged(store.read_status(), time.time()) or {}
        answer = answer_for(status, request_id)
        if answer is not None and answer.get("state") == SERVING:
            was = f" (was version {answer['previous_version']})" if answer.get("previous_version") else ""
            note = f"; {answer['reason']}" if answer.get("reason") else ""
            print(f"{spec.name}: SERVING {answer.get('name')} version {answer.get('version')} from {model}{was}{note}")
            return EXIT_OK
        if answer is not None and answer.get("state") == REFUSED:
            serving = status.get("model") or {}
            print(
                f"error: {spec.name} REFUSED {model}: {answer.get('reason')}; it goes on serving version "
                f"{serving.get('version', '?')}",
                file=sys.stderr,
            )
            return EXIT_FAILED
        if status.get("state") not in (INITIALIZING, RUNNING):
            withdraw(store, request_id)
            reason = f": {status['reason']}" if status.get("reason") else ""
            print(
                f"error: {spec.name} is no longer running ({status.get('state')}{reason}); the model was not changed",
                file=sys.stderr,
            )
            return EXIT_FAILED
    if withdraw(store, request_id):
        words = "the deployment had not picked it up; the request is withdrawn"
    else:
        words = "the deployment is checking it and may still change the model: see job status"
    print(f"error: no answer from {spec.name} within {timeout_s:g} s; {words}", file=sys.stderr)
    return EXIT_FAILED


def delete(
    spec: DeploymentLocations, confirmed: bool, not_running: bool = False, timeout_s: float | None = None
) -> int:
    """Stop the deployment if it runs, then remove its checkpoint and state."""
    if not confirmed:
        print(
            f"error: delete removes the checkpoint ({spec.checkpoint_location}) and state ({spec.state_location}) "
            "of this deployment; add --yes to confirm",
            file=sys.stderr,
        )
        return EXIT_BAD_SPEC
    if spec.state_location is None and not not_running:
        print(
            f"error: without a state folder delete cannot tell whether {spec.name} runs, nor stop it, and would "
            f"remove the checkpoint ({spec.checkpoint_location}) under a running query; stop it first, then add "
            "--not-running to confirm it is not running",
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
