"""Processes and ports on this machine: launching and stopping the job, free ports, Linux's /proc (CPU, memory).

One place for what the demo, the tests, the standalone cluster, the local broker and the benchmark all need.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from job.tools.deps import PROJECT_ROOT

logger = logging.getLogger(__name__)

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def free_port() -> int:
    """A TCP port on localhost that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Same option the JVM sets, so a port left in TIME_WAIT by our own broker counts as free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process (its threads included), 0.0 if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return 0.0
    # The command name (field 2) may contain spaces; the fields after its closing parenthesis are fixed.
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def rss_bytes(pid: int) -> int:
    """Resident set size of a live process, 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/statm").read_text().split()
    except (FileNotFoundError, ProcessLookupError):
        return 0
    return int(fields[1]) * PAGE_SIZE


def child_pids(pid: int) -> list[int]:
    """Direct children of a process (all threads' children)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return found


def descendants(pid: int) -> list[int]:
    """The process and every process below it."""
    result = [pid]
    queue = [pid]
    while queue:
        for child in child_pids(queue.pop()):
            result.append(child)
            queue.append(child)
    return result


def command_line(pid: int) -> str:
    """A process's command line with spaces between the arguments, "" if it is gone."""
    proc_file = Path(f"/proc/{pid}/cmdline")
    if not Path("/proc/self").is_dir():  # not Linux: ask ps
        found = subprocess.run(["ps", "-p", str(pid), "-o", "command="], capture_output=True, text=True, check=False)
        return found.stdout.strip()
    try:
        return proc_file.read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def child_processes(pid: int) -> dict[int, str]:
    """The processes whose parent is `pid`, with their command lines."""
    return {child: command_line(child) for child in child_pids(pid)}


def processes() -> dict[int, str]:
    """Every process on this machine with a command line (kernel threads have none)."""
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            cmd = command_line(int(entry.name))
            if cmd:
                found[int(entry.name)] = cmd
    return found


def process_alive(pid: int) -> bool:
    """Whether a process runs; our own exited child is reaped first, since a zombie would look alive."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class Usage:
    """CPU seconds used and the peak of the summed RSS of a group of processes during a measurement."""

    cpu_s: float = 0.0
    peak_rss_bytes: int = 0
    samples: int = 0
    per_process_cpu_s: dict[int, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, float | int]:
        return {"cpu_s": round(self.cpu_s, 3), "peak_rss_mb": round(self.peak_rss_bytes / 2**20, 1)}


class Monitor:
    """Samples the RSS of a group of processes in a thread and takes their CPU time at start and stop.

    `pids` is called at each sample, so processes that appear during the measurement (a worker, a
    Python child of the JVM) are included from when they are first seen. CPU time of a process that
    exits before `stop` is lost unless the caller adds it (e.g. from `os.wait4`).
    """

    def __init__(self, pids: Callable[[], Iterable[int]], interval_s: float = 0.05) -> None:
        self._pids = pids
        self._interval_s = interval_s
        self._start_cpu: dict[int, float] = {}
        self._last_cpu: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.usage = Usage()

    def _sample(self) -> None:
        total = 0
        for pid in self._pids():
            if pid not in self._start_cpu:
                # First seen now: count from here (a new process) or from its current total (a running one).
                self._start_cpu[pid] = cpu_seconds(pid) if self._thread is None else 0.0
            cpu = cpu_seconds(pid)
            if cpu:
                self._last_cpu[pid] = cpu
            total += rss_bytes(pid)
        self.usage.peak_rss_bytes = max(self.usage.peak_rss_bytes, total)
        self.usage.samples += 1

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self._sample()

    def start(self) -> Monitor:
        self._sample()
        self._thread = threading.Thread(target=self._run, name="bench-monitor", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> Usage:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()
        per_process = {pid: self._last_cpu.get(pid, start) - start for pid, start in self._start_cpu.items()}
        self.usage.per_process_cpu_s = {pid: round(cpu, 3) for pid, cpu in per_process.items()}
        self.usage.cpu_s = sum(per_process.values())
        return self.usage

    def __enter__(self) -> Monitor:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def has_exited(pid: int) -> bool:
    """True once a child has exited, without reaping it (so `wait_with_rusage` can still read its usage)."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:
        return True


def wait_with_rusage(pid: int) -> tuple[int, float, int]:
    """Reap a child: (exit code, CPU seconds, peak RSS bytes) from the kernel's accounting of it."""
    _, status, usage = os.wait4(pid, 0)
    return os.waitstatus_to_exitcode(status), usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024


def sample_until(condition: Callable[[], bool], timeout_s: float, interval_s: float = 0.02) -> float | None:
    """Poll until condition() is true; the monotonic time it became true, or None on timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        if condition():
            return time.monotonic()
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval_s)


# -- the job as a person runs it ----------------------------------------------------------------------------


class StopMarker(Protocol):
    """What `stop_job` needs of a state folder (job.runtime.status.StateStore)."""

    def request_stop(self) -> None: ...


def launch_job(
    job_args: Sequence[str],
    log_path: Path,
    submit_args: Sequence[str] = ("--master", "local[2]"),
    env: Mapping[str, str] | None = None,
    cwd: Path = PROJECT_ROOT,
) -> subprocess.Popen[bytes]:
    """`./spark-submit.sh SUBMIT_ARGS JOB_ARGS`, its output into `log_path`, in a session of its own so that
    `stop_job` can end the script, the JVM and the Python driver together."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        return subprocess.Popen(
            [str(PROJECT_ROOT / "spark-submit.sh"), *submit_args, *job_args],
            cwd=cwd,
            env=None if env is None else {**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop_job(proc: subprocess.Popen[bytes], store: StopMarker | None = None, timeout_s: float = 60) -> int | None:
    """Stop a job started by `launch_job` gracefully, then by force.

    The stop marker in its state folder when there is one (as `job stop` does), else SIGTERM to
    spark-submit.sh (as Ctrl-C does); then SIGTERM and SIGKILL to whatever is left of its process group.
    """
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            if store is not None:
                store.request_stop()
            else:
                proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            logger.warning(
                "the job (pid %d) did not stop within %.0f s; killing its process group", proc.pid, timeout_s
            )
    stop_group(proc, timeout_s=20)
    return proc.returncode


def stop_group(proc: subprocess.Popen[bytes], timeout_s: float = 30, name: str = "job") -> None:
    """SIGTERM, then SIGKILL, to the process group `proc` leads (started with start_new_session=True)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            logger.warning("the %s (pid %d) did not stop on %s", name, proc.pid, sig.name)
            continue
        break
    # Whatever the leader left behind in its group (executors of a killed worker, the driver's JVM).
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
