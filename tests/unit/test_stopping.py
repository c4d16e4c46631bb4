"""Stop requests: signals from the first line on, the wrapper's death (gone, zombie, pid reused), first reason wins."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from job.runtime.stopping import (
    WRAPPER_HOST_ENV,
    WRAPPER_PID_ENV,
    ProcessWatch,
    StopRequest,
    install_signal_handlers,
    restore_signal_handlers,
    wrapper_watch,
)


def test_the_first_reason_wins_and_later_requests_are_counted() -> None:
    stop = StopRequest()
    assert not stop.is_set() and stop.reason is None
    stop.request("received SIGTERM")
    stop.request("job stop")
    assert (stop.is_set(), stop.reason, stop.repeats) == (True, "received SIGTERM", 1)


def test_sigterm_and_sigint_only_set_the_request() -> None:
    stop = StopRequest()
    previous = install_signal_handlers(stop)
    try:
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGINT)  # no KeyboardInterrupt: the run loop decides what to do
    finally:
        restore_signal_handlers(previous)
    assert (stop.reason, stop.repeats) == ("received SIGTERM", 1)
    assert signal.getsignal(signal.SIGTERM) == previous[signal.SIGTERM]


def test_a_process_is_gone_when_it_exits_even_before_it_is_reaped() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    watch = ProcessWatch(child.pid)
    assert not watch.gone()
    assert child.stdin is not None
    child.stdin.close()
    os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped: a zombie, as after kill -9
    assert watch.gone()
    child.wait()
    assert watch.gone()


def test_a_pid_taken_by_a_process_started_later_is_not_the_wrapper() -> None:
    starts = iter([100, 100, 250])
    watch = ProcessWatch(os.getpid(), start_time=lambda _pid: next(starts))
    assert not watch.gone()
    assert watch.gone()


def test_the_wrapper_is_watched_only_on_its_own_host() -> None:
    env = {WRAPPER_PID_ENV: str(os.getpid()), WRAPPER_HOST_ENV: "here"}
    watch = wrapper_watch(env, host="here")
    assert watch is not None and watch.pid == os.getpid()
    # A driver on a cluster node must not take an unrelated local pid for the script that launched it.
    assert wrapper_watch(env, host="node-7") is None
    assert wrapper_watch({}, host="here") is None
    assert wrapper_watch({WRAPPER_PID_ENV: "12ab", WRAPPER_HOST_ENV: "here"}, host="here") is None
