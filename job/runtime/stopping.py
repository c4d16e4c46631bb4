"""Stop requests from the driver's first line on: SIGTERM and Ctrl-C, the death of spark-submit.sh, the stop marker.

Ground floor of the run loop: standard library only, so `main.cli` can install the signal handlers before it does
anything else. A request only sets a flag (a signal handler must not log or wait); the run loop acts on it at the
next step of the start-up, or at the next batch boundary once the query runs.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
# spark-submit.sh exports its own pid and host, so the driver can end the job when the script is killed (kill -9
# leaves the JVM and the driver behind otherwise: the JVM ignores SIGINT and SIGTERM by the script's design).
WRAPPER_PID_ENV = "STREAM_JOB_WRAPPER_PID"
WRAPPER_HOST_ENV = "STREAM_JOB_WRAPPER_HOST"


class StopRequest:
    """Whether a stop was asked for, and by whom (the first reason wins; later ones are counted)."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason: str | None = None
        self.repeats = 0

    def request(self, reason: str) -> None:
        if self._event.is_set():
            self.repeats += 1
            return
        self.reason = reason
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout_s: float) -> bool:
        return self._event.wait(timeout_s)


def install_signal_handlers(request: StopRequest) -> dict[int, Any]:
    """SIGTERM and SIGINT ask for a graceful stop from now on; returns the handlers they replace.

    Must run in the main thread. The handler only records the request: it may run while the main thread holds a
    lock (logging's, py4j's), so it does nothing that could wait for one.
    """

    def handle(signum: int, _frame: FrameType | None) -> None:
        request.request(f"received {signal.Signals(signum).name}")

    return {sig: signal.signal(sig, handle) for sig in STOP_SIGNALS}


def restore_signal_handlers(previous: dict[int, Any]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)


def process_start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux /proc), None where that cannot be read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces; the fields after its closing parenthesis are fixed.
    return int(stat[stat.rindex(")") + 2 :].split()[19])


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2 :].split()[0] == "Z"


class ProcessWatch:
    """Tells when a process has ended: gone, a zombie, or its pid taken by a process started later."""

    def __init__(self, pid: int, start_time: Callable[[int], int | None] = process_start_time) -> None:
        self.pid = pid
        self._start_time = start_time
        self._started = start_time(pid)

    def gone(self) -> bool:
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            pass  # a process of another user holds the pid: ours is gone, unless /proc says otherwise below
        if _is_zombie(self.pid):
            return True
        return self._started is not None and self._start_time(self.pid) != self._started


def wrapper_watch(environ: dict[str, str] | None = None, host: str | None = None) -> ProcessWatch | None:
    """A watch on spark-submit.sh when it started this driver on this host (never on a cluster node, where its
    pid would name an unrelated process)."""
    env = os.environ if environ is None else environ
    pid, wrapper_host = env.get(WRAPPER_PID_ENV), env.get(WRAPPER_HOST_ENV)
    if not pid or not pid.isdigit() or wrapper_host != (host if host is not None else socket.gethostname()):
        return None
    return ProcessWatch(int(pid))
