"""The deployment's lifecycle through spark-submit.sh and the `job` command: run, status, stop, start again, delete."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from pyspark.sql import SparkSession

from job.tools import specs
from job.tools.processes import command_line, descendants
from tests.integration.kafka_utils import (
    Record,
    assert_eventually,
    create_topics,
    delete_topics,
    limit_producer_rate,
    produce,
    read_all,
    unique_topics,
    written,
)
from tests.integration.messages import GOOD_TEXTS, MAX_MESSAGE_BYTES, MAX_TEXT_LENGTH, mixed_stream
from tests.paths import PROJECT_ROOT


def write_spec(
    path: Path, bootstrap: str, topics: dict[str, str], options: dict[str, Any] | None = None, **extra: Any
) -> Path:
    document = specs.spec_document(
        f"lifecycle-{topics['in']}",
        topics,
        path.parent / "checkpoint",
        bootstrap,
        state=path.parent / "state",
        description="lifecycle test",
        options=options
        or {
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
            lambda: written(kafka_bootstrap, topics["out"], topics["dlq"]) >= 400 or job.proc.poll() is not None,
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
        assert stopped.stdout.startswith(f"lifecycle-{topics['in']}: STOPPED (stopped gracefully (job stop, marker")
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
            lambda: written(kafka_bootstrap, topics["out"]) >= 360 + 180 or job.proc.poll() is not None,
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
    job = Job(spec)
    try:
        assert job.wait(timeout=180) == 1, job.tail()
    finally:
        job.kill()
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


# --------------------------------------------------------------------------- stops that must stay graceful


def long_text(i: int) -> str:
    words = "the quick brown fox jumps over the lazy dog and keeps running far away from home "
    return (f"#{i} " + words * 40)[:3000]


@pytest.mark.slow
def test_job_stop_during_a_batch_longer_than_120_s_waits_for_its_commit(
    spark: SparkSession, kafka_bootstrap: str, tmp_path: Path
) -> None:
    topics = unique_topics("in", "out", "dlq")
    create_topics(kafka_bootstrap, topics.values(), partitions=1)
    client_id = f"slow-{topics['in']}"
    # The broker lets this client write 2,000 bytes/s: batch 0, 110 records of about 3.4 KB, then takes some
    # three minutes, spent waiting (no CPU is burnt to make it slow). The producer may wait that long.
    limit_producer_rate(spark, kafka_bootstrap, client_id, 2000)
    spec = write_spec(
        tmp_path / "spec.yaml",
        kafka_bootstrap,
        topics,
        options={
            "starting_offsets": "earliest",
            "trigger": {"processing_time": "500 milliseconds"},
            "max_offsets_per_trigger": 1000,
            "kafka": {"kafka.client.id": client_id, "kafka.delivery.timeout.ms": "900000"},
        },
    )
    n = 110
    produce(
        kafka_bootstrap,
        topics["in"],
        [(str(i).encode(), json.dumps({"id": i, "text": long_text(i)}).encode()) for i in range(n)],
    )

    job = Job(spec)
    try:
        assert_eventually(
            lambda: written(kafka_bootstrap, topics["out"]) > 0 or job.proc.poll() is not None,
            300,
            "batch 0 to begin writing",
            interval_s=1,
        )
        assert job.proc.poll() is None, job.tail()
        written_at_stop = written(kafka_bootstrap, topics["out"])
        stopped = job_command("stop", "--spec", str(spec), timeout=900)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        assert stopped.stdout.startswith(f"lifecycle-{topics['in']}: STOPPED (stopped gracefully (job stop, marker"), (
            stopped.stdout
        )
        assert job.wait(timeout=180) == 0, job.tail()
    finally:
        job.kill()
    assert 0 < written_at_stop < n  # the stop came while batch 0 was writing
    status = status_of(spec)
    # The batch the stop waited for really took longer than the 120 s the old stop waited before cancelling it.
    assert status["progress"]["batch_id"] == 0 and status["progress"]["batch_duration_ms"] > 120_000, status
    assert sorted(offsets(read_all(kafka_bootstrap, topics["out"]))) == [(0, i) for i in range(n)]

    # A restart repeats nothing: five new messages, and every offset has exactly one record.
    produce(
        kafka_bootstrap,
        topics["in"],
        [(str(i).encode(), json.dumps({"id": i, "text": f"short {i}"}).encode()) for i in range(n, n + 5)],
    )
    job = Job(spec)
    try:
        assert_eventually(
            lambda: written(kafka_bootstrap, topics["out"]) >= n + 5 or job.proc.poll() is not None,
            300,
            "the five new messages",
            interval_s=1,
        )
        job.proc.send_signal(signal.SIGTERM)
        assert job.wait(timeout=180) == 0, job.tail()
    finally:
        job.kill()
    assert sorted(offsets(read_all(kafka_bootstrap, topics["out"]))) == [(0, i) for i in range(n + 5)]
    assert read_all(kafka_bootstrap, topics["dlq"]) == []


@pytest.mark.parametrize("how", ["job stop", "SIGTERM", "SIGTERM before the driver exists"])
def test_a_stop_during_start_up_ends_the_job_before_it_serves(kafka_bootstrap: str, tmp_path: Path, how: str) -> None:
    topics = unique_topics("in", "out", "dlq")
    create_topics(kafka_bootstrap, topics.values(), partitions=1)
    produce(kafka_bootstrap, topics["in"], [(m.key, m.value) for m in mixed_stream(20, first_id=0)])
    # The spec names other folders: the relative --state and --checkpoint below, the caller's, must win.
    spec = write_spec(tmp_path / "spec.yaml", kafka_bootstrap, topics)
    spec.write_text(spec.read_text().replace(str(tmp_path / "state"), str(tmp_path / "unused-state")))
    relative = ["--spec", "spec.yaml", "--state", "state", "--checkpoint", "checkpoint"]
    job = Job(spec, job_args=["run", *relative], cwd=tmp_path)
    try:
        if how == "SIGTERM before the driver exists":
            # The JVM runs and has not started the Python driver yet: the script keeps the signal and delivers it
            # once the driver has written its pid (after installing its handlers).
            assert_eventually(lambda: jvm_without_driver(job.proc.pid), 120, "the JVM, before the driver", 0.02)
            job.proc.send_signal(signal.SIGTERM)
        else:
            assert_eventually(lambda: bool(job.states) or job.proc.poll() is not None, 300, "INITIALIZING")
            assert job.states == ["INITIALIZING"], job.tail()
            if how == "SIGTERM":
                job.proc.send_signal(signal.SIGTERM)
            else:
                stopped = job_command("stop", *relative, cwd=tmp_path)
                assert stopped.returncode == 0, stopped.stdout + stopped.stderr
                assert stopped.stdout.startswith(
                    f"lifecycle-{topics['in']}: STOPPED (stopped during start-up, before serving (job stop, marker written at "
                )
        assert job.wait(timeout=300) == 0, job.tail()
    finally:
        job.kill()
    reason = status_of_folder(tmp_path / "state")["reason"]
    why = "job stop, marker written at " if how == "job stop" else "received SIGTERM"
    assert reason.startswith(f"stopped during start-up, before serving ({why}"), reason
    assert job.states == ["INITIALIZING", "STOPPED"], job.tail()
    # It never served: nothing written, no batch planned, and the stop marker is gone.
    assert read_all(kafka_bootstrap, topics["out"]) + read_all(kafka_bootstrap, topics["dlq"]) == []
    assert not (tmp_path / "checkpoint" / "offsets").exists()
    assert sorted(p.name for p in (tmp_path / "state").iterdir()) == ["status.json"]
    assert not (tmp_path / "unused-state").exists()


def test_kill_9_of_the_wrapper_ends_the_whole_job(kafka_bootstrap: str, tmp_path: Path) -> None:
    topics = unique_topics("in", "out", "dlq")
    create_topics(kafka_bootstrap, topics.values(), partitions=1)
    messages = mixed_stream(20, bad_every=10, first_id=0)
    placed = produce(kafka_bootstrap, topics["in"], [(m.key, m.value) for m in messages])
    scored = sorted(where for where, m in zip(placed, messages, strict=True) if m.error_code is None)
    spec = write_spec(tmp_path / "spec.yaml", kafka_bootstrap, topics)
    job = Job(spec)
    group = job.proc.pid  # spark-submit.sh leads a session of its own: the JVM and the driver are in its group
    try:
        assert_eventually(
            lambda: written(kafka_bootstrap, topics["out"]) >= len(scored) or job.proc.poll() is not None,
            300,
            "the first 20 messages",
            interval_s=1,
        )
        assert job.proc.poll() is None, job.tail()
        os.kill(job.proc.pid, signal.SIGKILL)  # the script only, as a person or a supervisor might
        job.proc.wait(timeout=30)
        assert_eventually(lambda: not group_alive(group), 120, "the JVM and the driver to end", interval_s=1)
    finally:
        job.kill()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(group, signal.SIGKILL)
    status = status_of_folder(tmp_path / "state")
    assert (status["state"], status["reason"]) == (
        "STOPPED",
        f"stopped gracefully (spark-submit.sh (pid {group}) is gone)",
    ), job.tail()
    assert sorted(offsets(read_all(kafka_bootstrap, topics["out"]))) == scored


def jvm_without_driver(wrapper: int) -> bool:
    programs = [command_line(pid).split(" ", 1)[0] for pid in descendants(wrapper)]
    names = [Path(program).name for program in programs if program]
    return "java" in names and not any(name.startswith("python") for name in names)


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def status_of_folder(state: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((state / "status.json").read_text())
    return document


# --------------------------------------------------------------------------- the truth from any host


@pytest.mark.parametrize("host", ["this host", "driver-7.cluster.example"])
def test_a_stale_heartbeat_is_not_running_whatever_its_pid_or_host_say(tmp_path: Path, host: str) -> None:
    topics = {"in": "in", "out": "out", "dlq": "dlq"}
    spec = write_spec(tmp_path / "spec.yaml", "localhost:1", topics)
    (tmp_path / "checkpoint" / "offsets").mkdir(parents=True)
    (tmp_path / "state").mkdir()
    ten_minutes_ago = datetime.fromtimestamp(time.time() - 600, UTC).isoformat().replace("+00:00", "Z")
    document = {
        "schema_version": 1,
        "deployment": "lifecycle-in",
        "state": "RUNNING",
        "reason": None,
        "updated_at": ten_minutes_ago,
        "started_at": ten_minutes_ago,
        "pid": os.getpid(),  # alive: this test's own process
        "host": socket.gethostname() if host == "this host" else host,
        "heartbeat_at": ten_minutes_ago,
        "stale_after_s": 30.0,
    }
    (tmp_path / "state" / "status.json").write_text(json.dumps(document))

    shown = json.loads(job_command("status", "--spec", str(spec), "--json").stdout)
    driver = f"the driver (pid {os.getpid()} on {document['host']})"
    assert (shown["state"], shown["reported_state"]) == ("FAILED", "RUNNING")
    assert re.fullmatch(
        rf"no heartbeat for 60\d s \(expected within 30 s\): {re.escape(driver)} is gone or hangs; it said RUNNING",
        shown["reason"],
    ), shown["reason"]
    assert "state:       FAILED (no heartbeat for 60" in job_command("status", "--spec", str(spec)).stdout
    # `job stop` has nothing to wait for (the bounded timeout only keeps a failure of this test short).
    stopped = job_command("stop", "--spec", str(spec), "--timeout", "60")
    assert (stopped.returncode, stopped.stdout.split(" (")[0]) == (0, "lifecycle-in: not running"), stopped
    assert not (tmp_path / "state" / "stop-requested").exists()
    deleted = job_command("delete", "--spec", str(spec), "--yes", "--timeout", "60")
    assert deleted.returncode == 0, deleted.stdout + deleted.stderr
    assert not (tmp_path / "checkpoint").exists() and not (tmp_path / "state").exists()


def test_delete_without_a_state_folder_needs_to_be_told_the_job_is_not_running(tmp_path: Path) -> None:
    document = specs.spec_document("no-state", {"in": "in", "out": "out"}, tmp_path / "checkpoint")
    spec = specs.write_spec(tmp_path / "spec.yaml", document)
    (tmp_path / "checkpoint" / "offsets").mkdir(parents=True)
    refused = job_command("delete", "--spec", str(spec), "--yes")
    assert refused.returncode == 2
    assert refused.stderr.strip() == (
        f"error: without a state folder delete cannot tell whether no-state runs, nor stop it, and would remove the "
        f"checkpoint ({tmp_path / 'checkpoint'}) under a running query; stop it first, then add --not-running to "
        "confirm it is not running"
    )
    assert (tmp_path / "checkpoint" / "offsets").is_dir()
    deleted = job_command("delete", "--spec", str(spec), "--yes", "--not-running")
    assert deleted.returncode == 0, deleted.stderr
    assert not (tmp_path / "checkpoint").exists()


# --------------------------------------------------------------------------- one failure path


def test_a_query_that_fails_says_why_in_one_line_and_keeps_the_full_error_aside(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    topics = unique_topics("in", "out", "dlq")
    create_topics(kafka_bootstrap, topics.values(), partitions=1)
    spec = write_spec(
        tmp_path / "spec.yaml",
        kafka_bootstrap,
        topics,
        options={
            "starting_offsets": "earliest",
            "trigger": {"processing_time": "500 milliseconds"},
            # The producer gives up on a missing topic after seconds instead of minutes.
            "kafka": {
                "kafka.max.block.ms": "5000",
                "kafka.request.timeout.ms": "5000",
                "kafka.delivery.timeout.ms": "10000",
            },
        },
    )
    job = Job(spec)
    try:
        produce(kafka_bootstrap, topics["in"], [(b"1", json.dumps({"id": 1, "text": GOOD_TEXTS[0]}).encode())])
        assert_eventually(
            lambda: written(kafka_bootstrap, topics["out"]) > 0 or job.proc.poll() is not None, 300, "one record"
        )
        delete_topics(kafka_bootstrap, [topics["out"]])
        produce(kafka_bootstrap, topics["in"], [(b"2", json.dumps({"id": 2, "text": GOOD_TEXTS[1]}).encode())])
        assert job.wait(timeout=300) == 1, job.tail()
    finally:
        job.kill()
    status = status_of(spec)
    reason = status["reason"]
    # Which of its two timeouts the producer meets first depends on whether it still knew the topic's partition.
    assert re.fullmatch(
        rf"TimeoutException: (Topic {topics['out']} not present in metadata after 5000 ms\."
        rf"|Expiring 1 record\(s\) for {topics['out']}-0:100\d\d ms has passed since batch creation)",
        reason,
    ), reason
    assert (status["state"], status["last_error"]) == ("FAILED", reason)
    assert job.states == ["INITIALIZING", "RUNNING", "FAILED"]
    output = job.log.read_text(errors="replace")
    failure_file = tmp_path / "state" / "failure.txt"
    assert (
        f"deployment '{status['deployment']}' FAILED: {reason} (the full error, secrets masked: {failure_file})"
        in output
    )
    # No Python traceback and no plan on stderr; the full error, plan and all, is in the file it names.
    assert "Traceback (most recent call last)" not in output
    assert "=== Streaming Query ===" not in output and "Logical Plan" not in output
    kept = failure_file.read_text()
    assert "=== Streaming Query ===" in kept and reason.split(": ", 1)[1] in kept
