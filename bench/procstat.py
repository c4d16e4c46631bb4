"""CPU time and resident memory of processes, read from Linux's /proc (no extra dependency)."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


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


def children(pid: int) -> list[int]:
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
        for child in children(queue.pop()):
            result.append(child)
            queue.append(child)
    return result


def command_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except (FileNotFoundError, ProcessLookupError):
        return ""


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
