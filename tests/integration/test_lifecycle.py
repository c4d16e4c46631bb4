"""The deployment's lifecycle through spark-submit.sh and the `job` command: run, status, stop, start again, delete."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from job.tools import specs
from tests.integration.kafka_utils import Record, assert_eventually, create_topics, produce, read_all, unique_topics
from tests.integration.messages import MAX_MESSAGE_BYTES, MAX_TEXT_LENGTH, mixed_stream
from tests.paths import PROJECT_ROOT


def write_spec(path: Path, bootstrap: str, topics: dict[str, str], **extra: Any) -> Path:
    document = specs.spec_document(
        f"lifecycle-{topics['in']}",
        topics,
        path.parent / "checkpoint",
        bootstrap,
        state=path.parent / "state",
        description="lifecycle test",
        options={
            "starting_offsets": "earliest",
            "trigger": {"processing_time": "500 milliseconds"},
            "max_text_length": MAX_TEXT_LENGTH,
            "max_message_bytes": MAX_MESSAGE_BYTES,
        },
        **extra,
    )
    return specs.write_spec(path, document)


def job_command(*args: str, cwd: Path = PROJECT_ROOT, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "job.runtime.main", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def status_of(spec: Path) -> dict[str, Any]:
    result = job_command("status", "--spec", str(spec), "--json")
    return json.loads(result.stdout)


class Job:
    """spark-submit.sh in local mode as a subprocess, with the states its status file went through.

    `job_args` replace `run --spec SPEC` (relative paths in them are relative to `cwd`).
    """

    def __init__(self, spec: Path, job_args: list[str] | None = None, cwd: Path = PROJECT_ROOT) -> None:
        self.spec = spec
        self.log = spec.parent / "job.log"
        self.states: list[str] = []
        self._status_file = spec.parent / "state" / "status.json"
        self._previous_start = self._read().get("started_at")  # a document left by an earlier run
        self.proc = subprocess.Popen(
            [
                str(PROJECT_ROOT / "spark-submit.sh"),
                "--master",
                "local[2]",
                *(job_args or ["run", "--spec", str(spec)]),
            ],
            cwd=cwd,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._watcher = threading.Thread(target=self._watch, daemon=True)
        self._watcher.start()

    def _watch(self) -> None:
        while True:
            exited = self.proc.poll() is not None  # the final state is written before the process exits
            doc = self._read()
            state = doc.get("state") if doc.get("started_at") != self._previous_start else None
            if state and (not self.states or self.states[-1] != state):
                self.states.append(state)
            if exited:
                return
            time.sleep(0.05)

    def _read(self) -> dict[str, Any]:
        try:
            return json.loads(self._status_file.read_text())
        except (OSError, ValueError):
            return {}

    def wait(self, timeout: float = 120) -> int:
        code = self.proc.wait(timeout=timeout)
        self._watcher.join(timeout=5)
        return code

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)


def offsets(records: list[Record]) -> list[tuple[int, int]]:
    return [(r.json()["sourcePartition"], r.json()["sourceOffset"]) for r in records]


def test_run_status_stop_restart_sigterm_and_delete(kafka_bootstrap: str, tmp_path: Path) -> None:
    topics = unique_topics("in", "out", "dlq")
    create_topics(kafka_bootstrap, topics.values(), partitions=2)
    spec = write_spec(tmp_path / "spec.yaml", kafka_bootstrap, topics)
    first = mixed_stream(400, bad_every=10, first_id=0)
    produce(kafka_bootstrap, topics["in"], [(m.key, m.value) for m in first])

    job = Job(spec)
    try:
        assert_eventually(
            lambda: (
                len(read_all(kafka_bootstrap, topics["out"])) + len(read_all(kafka_bootstrap, topics["dlq"])) >= 400
                or job.proc.poll() is not None
            ),
            240,
            "the first 400 messages to be handled",
            interval_s=1,
        )
        assert job.proc.poll() is None, job.tail()
        # The listener updates the status after the batch; give it a moment to record the last one.
        assert_eventually(lambda: status_of(spec)["totals"]["records_in"] >= 400, 30, "totals to catch up")
        status = status_of(spec)
        assert status["state"] == "RUNNING"
        assert status["model"]["name"] == "Sentiment Prediction"
        out, dead = read_all(kafka_bootstrap, topics["out"]), read_all(kafka_bootstrap, topics["dlq"])
        assert (len(out), len(dead)) == (360, 40)
        assert status["totals"] == {"records_in": 400, "records_scored": 360, "records_dead_lettered": 40}
        assert status["progress"]["offsets_behind_latest"] == 0
        human = job_command("status", "--spec", str(spec)).stdout
        assert "state:       RUNNING" in human and "360 scored, 40 dead-lettered, 400 read" in human

        stopped = job_command("stop", "--spec", str(spec))
        assert stopped.returncode == 0, stopped.stderr
        assert stopped.stdout.strip().endswith("STOPPED")
        assert job.wait() == 0, job.tail()
    finally:
        job.kill()
    assert job.states == ["INITIALIZING", "RUNNING", "STOPPED"]

    # Starting again resumes from the checkpoint: only the new messages are scored.
    second = mixed_stream(200, bad_every=10, first_id=10_000, seed=8)
    produce(kafka_bootstrap, topics["in"], [(m.key, m.value) for m in second])
    job = Job(spec)
    try:
        assert_eventually(
            lambda: len(read_all(kafka_bootstrap, topics["out"])) >= 360 + 180 or job.proc.poll() is not None,
            240,
            "the next 200 messages",
            interval_s=1,
        )
        assert_eventually(lambda: status_of(spec)["totals"]["records_in"] >= 600, 30, "totals to catch up")
        job.proc.send_signal(signal.SIGTERM)
        assert job.wait() == 0, job.tail()
    finally:
        job.kill()
    assert job.states[-1] == "STOPPED"
    out, dead = read_all(kafka_bootstrap, topics["out"]), read_all(kafka_bootstrap, topics["dlq"])
    assert len(offsets(out)) == len(set(offsets(out))) == 540, "a message was scored twice after the restart"
    assert len(offsets(dead)) == len(set(offsets(dead))) == 60
    assert status_of(spec)["totals"] == {"records_in": 600, "records_scored": 540, "records_dead_lettered": 60}

    refused = job_command("delete", "--spec", str(spec))
    assert refused.returncode == 2 and "--yes" in refused.stderr
    assert (tmp_path / "checkpoint").is_dir()
    deleted = job_command("delete", "--spec", str(spec), "--yes")
    assert deleted.returncode == 0, deleted.stderr
    assert not (tmp_path / "checkpoint").exists() and not (tmp_path / "state").exists()
    assert job_command("status", "--spec", str(spec)).returncode == 3


def test_a_job_that_cannot_start_shows_failed_with_its_reason(kafka_bootstrap: str, tmp_path: Path) -> None:
    topics = unique_topics("in", "out", "dlq")
    create_topics(kafka_bootstrap, [topics["in"], topics["out"]])  # no dead-letter topic
    spec = write_spec(tmp_path / "spec.yaml", kafka_bootstrap, topics)
    started = time.monotonic()
    job = Job(spec)
    try:
        assert job.wait(timeout=120) == 1, job.tail()
    finally:
        job.kill()
    assert time.monotonic() - started < 60
    status = status_of(spec)
    assert status["state"] == "FAILED"
    assert status["reason"] == (
        f"topic(s) {topics['dlq']} not found on {kafka_bootstrap}; create them first (the job does not create topics)"
    )
    assert job.states == ["INITIALIZING", "FAILED"]


def test_validate_prints_the_resolved_deployment_and_fails_on_a_bad_model(kafka_bootstrap: str, tmp_path: Path) -> None:
    topics = unique_topics("in", "out", "dlq")
    spec = write_spec(tmp_path / "spec.yaml", kafka_bootstrap, topics)
    ok = subprocess.run(
        [str(PROJECT_ROOT / "spark-submit.sh"), "validate", "--spec", str(spec)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ok.returncode == 0, ok.stderr[-3000:]
    # spark-submit prints Ivy's ':: loading settings ::' line first; the deployment starts at 'name:'.
    document = ok.stdout[ok.stdout.index("name: ") :].split("\nmodel: ")[0]
    shown = yaml.safe_load(document)
    assert shown["input"] == {
        "topic": topics["in"],
        "connection": {"bootstrap_servers": [kafka_bootstrap], "security_protocol": "PLAINTEXT"},
    }
    assert shown["dead_letter"]["topic"] == topics["dlq"]
    assert "\nspec OK\n" in ok.stdout
    bad = subprocess.run(
        [str(PROJECT_ROOT / "spark-submit.sh"), "validate", "--spec", str(spec), "--model", str(tmp_path / "nope")],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 1
    # spark-submit merges the Python driver's stderr into its stdout.
    assert f"error: model location {tmp_path / 'nope'}" in bad.stdout + bad.stderr


def test_prometheus_endpoint_shows_the_query_rates(kafka_bootstrap: str, tmp_path: Path) -> None:
    import urllib.request

    from job.tools.processes import free_port

    topics = unique_topics("in", "out", "dlq")
    create_topics(kafka_bootstrap, topics.values(), partitions=1)
    spec = write_spec(tmp_path / "spec.yaml", kafka_bootstrap, topics, spark={"prometheus": True})
    produce(kafka_bootstrap, topics["in"], [(m.key, m.value) for m in mixed_stream(50, first_id=0)])
    port = free_port()
    job = subprocess.Popen(
        [
            str(PROJECT_ROOT / "spark-submit.sh"),
            "--master",
            "local[2]",
            "--conf",
            f"spark.ui.port={port}",
            "run",
            "--spec",
            str(spec),
        ],
        cwd=PROJECT_ROOT,
        stdout=(tmp_path / "job.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    name = f"lifecycle-{topics['in']}".replace("-", "_")
    scraped: dict[str, str] = {}

    def scrape() -> bool:
        try:
            with urllib.request.urlopen(f"http://localhost:{port}/metrics/prometheus", timeout=5) as response:
                text = response.read().decode()
        except OSError:
            return False
        rates = [
            line for line in text.splitlines() if name in line and ("inputRate" in line or "processingRate" in line)
        ]
        scraped["text"] = "\n".join(rates)
        return any("inputRate" in r for r in rates) and any("processingRate" in r for r in rates)

    try:
        assert_eventually(scrape, 180, "the query's rate metrics on /metrics/prometheus", interval_s=2)
    finally:
        os.killpg(job.pid, signal.SIGTERM)
        job.wait(timeout=120)
    lines = scraped["text"].splitlines()
    assert any(line.startswith("metrics_stream_deployment_driver_spark_streaming_") for line in lines), lines
    assert job.returncode == 0
