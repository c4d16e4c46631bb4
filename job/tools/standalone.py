"""A Spark standalone cluster (a master and its workers) from the pinned pyspark, for cluster tests and benchmarks.

    cluster = StandaloneCluster(run_dir)            # one worker, 2 cores, 2g, on 127.0.0.1, free ports
    cluster.start()                                  # returns once every worker is registered with the master
    proc = cluster.submit(spec_path, log_path, cores_max=2, executor_cores=1)   # ./spark-submit.sh ... run
    ...
    stop_job(proc); cluster.stop()                   # job.tools.processes.stop_job

Each daemon runs `$SPARK_HOME/bin/spark-class` (which execs the JVM) in its own process group, so `stop`
also takes down the executors a worker launched, even when the worker itself no longer answers.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from job.tools import deps
from job.tools.processes import free_port, launch_job, processes, stop_group

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"
EXECUTOR_CLASS = "org.apache.spark.executor.CoarseGrainedExecutorBackend"
# Heap of the master and worker daemons themselves (Spark's default is 1g each); executors get their own.
DAEMON_MEMORY = "512m"
LOG_TAIL_LINES = 20


class ClusterError(RuntimeError):
    """The cluster did not come up (or a daemon died); the message carries the end of its log."""


class StandaloneCluster:
    """One master and `workers` workers on 127.0.0.1, ports chosen free at start, files under `run_dir`."""

    def __init__(
        self, run_dir: Path, workers: int = 1, worker_cores: int = 2, worker_memory: str = "2g", host: str = HOST
    ) -> None:
        self.run_dir = Path(run_dir)
        self.workers = workers
        self.worker_cores = worker_cores
        self.worker_memory = worker_memory
        self.host = host
        self.port = 0
        self.webui_port = 0
        self._procs: list[tuple[str, subprocess.Popen[bytes]]] = []

    # -- addresses ---------------------------------------------------------------------------------------
    @property
    def master_url(self) -> str:
        return f"spark://{self.host}:{self.port}"

    @property
    def master_ui(self) -> str:
        return f"http://{self.host}:{self.webui_port}"

    @property
    def log_dir(self) -> Path:
        return self.run_dir / "logs"

    # -- lifecycle ---------------------------------------------------------------------------------------
    def start(self, timeout_s: float = 120) -> str:
        """Start the master, then the workers; return the master URL once all workers are ALIVE."""
        if self._procs:
            raise ClusterError(f"the cluster in {self.run_dir} is already started ({self.master_url})")
        self.port, self.webui_port = free_port(), free_port()
        deadline = time.monotonic() + timeout_s
        try:
            self._launch("master", MASTER_CLASS, "--host", self.host, "--port", str(self.port),
                         "--webui-port", str(self.webui_port))  # fmt: skip
            self._wait(lambda state: state is not None, deadline, "the master's web UI to answer")
            for n in range(self.workers):
                work_dir = self.run_dir / f"worker-{n}"
                work_dir.mkdir(parents=True, exist_ok=True)
                self._launch(f"worker-{n}", WORKER_CLASS, self.master_url, "--host", self.host,
                             "--cores", str(self.worker_cores), "--memory", self.worker_memory,
                             "--webui-port", str(free_port()), "--work-dir", str(work_dir))  # fmt: skip
            self._wait(
                lambda state: state is not None and len(alive_workers(state)) >= self.workers,
                deadline,
                f"{self.workers} worker(s) to register with {self.master_url}",
            )
        except BaseException:
            self.stop()
            raise
        logger.info(
            "Spark standalone cluster up: %s (UI %s), %d worker(s) x %d cores, %s",
            self.master_url,
            self.master_ui,
            self.workers,
            self.worker_cores,
            self.worker_memory,
        )
        return self.master_url

    def stop(self, timeout_s: float = 30) -> None:
        """SIGTERM to each daemon's process group (workers first, so they stop their executors), then SIGKILL."""
        for name, proc in reversed(self._procs):
            stop_group(proc, timeout_s, name=f"Spark {name}")
        self._procs = []

    def __enter__(self) -> StandaloneCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what the master knows ---------------------------------------------------------------------------
    def state(self) -> dict[str, Any] | None:
        """The master's JSON document (workers, active and completed applications), None if it does not answer."""
        return get_json(f"{self.master_ui}/json/")

    def wait_for_app(self, name: str, timeout_s: float = 120, proc: subprocess.Popen[bytes] | None = None) -> str:
        """The id of the application called `name` once the master lists it as running."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for app in (self.state() or {}).get("activeapps", []):
                if app.get("name") == name:
                    return str(app["id"])
            if proc is not None and proc.poll() is not None:
                raise ClusterError(f"the job exited with code {proc.returncode} before {name!r} reached the master")
            time.sleep(0.25)
        raise ClusterError(f"no application {name!r} on {self.master_url} after {timeout_s:g} s")

    # -- running the job on it ---------------------------------------------------------------------------
    def submit_args(
        self,
        cores_max: int,
        executor_cores: int = 1,
        executor_memory: str = "1g",
        driver_memory: str = "1g",
        conf: Mapping[str, str] | None = None,
    ) -> list[str]:
        """spark-submit options that run the driver here (client mode) and its executors on this cluster."""
        settings = {
            "spark.executor.cores": str(executor_cores),
            "spark.cores.max": str(cores_max),
            # Start the query only once every executor asked for has registered, so that the first
            # micro-batch is already spread over all of them (on a busy machine that can take a while).
            "spark.scheduler.minRegisteredResourcesRatio": "1.0",
            "spark.scheduler.maxRegisteredResourcesWaitingTime": "120s",
            "spark.driver.host": self.host,
            **(conf or {}),
        }
        args = ["--master", self.master_url, "--deploy-mode", "client"]
        args += ["--driver-memory", driver_memory, "--executor-memory", executor_memory]
        for key, value in settings.items():
            args += ["--conf", f"{key}={value}"]
        return args

    def submit(
        self,
        spec: Path,
        log_path: Path,
        cores_max: int,
        executor_cores: int = 1,
        executor_memory: str = "1g",
        driver_memory: str = "1g",
        conf: Mapping[str, str] | None = None,
        job_args: Sequence[str] = (),
    ) -> subprocess.Popen[bytes]:
        """Start `./spark-submit.sh <options> run --spec SPEC` against this cluster, in its own session."""
        return launch_job(
            ["run", "--spec", str(spec), *job_args],
            log_path,
            submit_args=self.submit_args(cores_max, executor_cores, executor_memory, driver_memory, conf),
            env={"SPARK_LOCAL_IP": self.host},
        )

    # -- internals ---------------------------------------------------------------------------------------
    def _environment(self) -> dict[str, str]:
        conf_dir = self.run_dir / "conf"  # empty: no spark-defaults.conf or spark-env.sh from elsewhere
        conf_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        return {
            **os.environ,
            "SPARK_HOME": str(deps.spark_home()),
            "SPARK_CONF_DIR": str(conf_dir),
            "SPARK_LOCAL_IP": self.host,
            "SPARK_LOG_DIR": str(self.log_dir),
            "SPARK_WORKER_DIR": str(self.run_dir / "worker-0"),
            "SPARK_DAEMON_MEMORY": DAEMON_MEMORY,
        }

    def _launch(self, name: str, main_class: str, *args: str) -> None:
        command = [str(deps.spark_home() / "bin" / "spark-class"), main_class, *args]
        env = self._environment()
        with (self.log_dir / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen(
                command,
                cwd=self.run_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: the executors a worker starts join it
            )
        self._procs.append((name, proc))

    def _wait(self, ready: Any, deadline: float, what: str) -> None:
        while True:
            for name, proc in self._procs:
                if proc.poll() is not None:
                    raise ClusterError(
                        f"the Spark {name} exited with code {proc.returncode} while waiting for {what}.\n"
                        f"{self._log_tail(name)}"
                    )
            if ready(self.state()):
                return
            if time.monotonic() >= deadline:
                raise ClusterError(f"timed out waiting for {what}.\n{self._log_tail(self._procs[-1][0])}")
            time.sleep(0.25)

    def _log_tail(self, name: str) -> str:
        path = self.log_dir / f"{name}.log"
        try:
            lines = path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
        except FileNotFoundError:
            return f"No log file at {path}."
        return f"Last lines of {path}:\n" + "\n".join(f"  {line}" for line in lines)


def alive_workers(state: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [w for w in state.get("workers", []) if w.get("state") == "ALIVE"]


def get_json(url: str, timeout_s: float = 30) -> Any:
    """A JSON document over HTTP, or None when nothing answers (yet) or the answer is not JSON."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return json.loads(response.read().decode("utf-8"))
    except (OSError, ValueError, urllib.error.URLError):
        return None


def executor_pids(app_id: str) -> list[int]:
    """Pids of the executor JVMs of one application running on this machine."""
    return sorted(pid for pid, cmd in processes().items() if EXECUTOR_CLASS in cmd and f" {app_id} " in f"{cmd} ")
