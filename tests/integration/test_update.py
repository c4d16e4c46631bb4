"""`job update` on a running deployment (issue 14 point 3): the model changes twice and rolls back once while
messages arrive at a steady rate (until 8 s after the last change); two broken models are refused; no offset is lost or scored twice; each
model version scores exactly the offsets from where it began (a batch's start) to where the next one began."""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaProducer
from pyspark.ml import PipelineModel
from pyspark.ml.functions import vector_to_array
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from job.runtime import main
from job.runtime.status import StateStore
from job.tools import specs
from job.tools.processes import launch_job, stop_job
from tests import pipelines
from tests.integration.kafka_utils import (
    Record,
    assert_eventually,
    create_topics,
    produce,
    read_all,
    unique_topics,
    written,
)
from tests.integration.messages import MAX_MESSAGE_BYTES, MAX_TEXT_LENGTH, Message, mixed_stream
from tests.paths import PROJECT_ROOT, SHIPPED_MODEL

TOTAL = 40_000  # at most: the stream ends TAIL_S after the last change, which take some 60 s (more on a busy machine)
RATE = 220  # messages per second
TAIL_S = 8
OLD_MODEL = PROJECT_ROOT / "models" / "sentiment140-only"


def job_command(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "job.runtime.main", *args],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def version_of(location: Path) -> str:
    version: str = json.loads((location / "model.json").read_text(encoding="utf-8"))["version"]
    return version


class SteadyProducer(threading.Thread):
    """Sends the messages at a steady rate, alternating the two partitions; keeps each one's (partition, offset)."""

    def __init__(self, bootstrap: str, topic: str, messages: list[Message], rate: float) -> None:
        super().__init__(name="steady-producer", daemon=True)
        self.bootstrap, self.topic, self.messages, self.rate = bootstrap, topic, messages, rate
        self.sent: list[tuple[int, int]] = []
        self.count = 0
        self.last = len(messages)  # sends messages[:last]
        self.error: BaseException | None = None

    def end_after(self, more: int) -> None:
        """Send `more` messages after the ones sent so far, then end (the stream's tail)."""
        self.last = min(self.last, self.count + more)

    def run(self) -> None:
        producer = KafkaProducer(bootstrap_servers=self.bootstrap, acks="all", linger_ms=5)
        try:
            futures = []
            started = time.monotonic()
            for i, message in enumerate(self.messages):
                if i >= self.last:
                    break
                delay = started + i / self.rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                futures.append(producer.send(self.topic, key=message.key, value=message.value, partition=i % 2))
                self.count = i + 1
            producer.flush(timeout=60)
            self.sent = [(m.partition, m.offset) for m in (f.get(timeout=60) for f in futures)]
        except BaseException as exc:
            self.error = exc
        finally:
            producer.close()


@dataclass(frozen=True)
class Asked:
    model: Path
    code: int
    out: str
    err: str
    asked_at_ms: int
    answered_at_ms: int
    sent_before: int


def static_probabilities(spark: SparkSession, location: str, rows: list[tuple[int, str]]) -> dict[int, float]:
    """The probability of the predicted label that `PipelineModel.transform` gives each (id, text), by id."""
    scored = PipelineModel.load(location).transform(spark.createDataFrame(rows, "id int, text string"))
    out = scored.select("id", "prediction", vector_to_array(F.col("probability")).alias("p")).collect()
    return {r.id: r.p[int(r.prediction)] for r in out}


@pytest.mark.slow
def test_the_model_changes_twice_and_rolls_back_while_scoring_goes_on(
    spark: SparkSession, kafka_bootstrap: str, tmp_path: Path
) -> None:
    topics = unique_topics("in", "out", "dlq")
    create_topics(kafka_bootstrap, topics.values(), partitions=2)
    name = f"update-{topics['in']}"
    options = {
        "starting_offsets": "earliest",
        "trigger": {"processing_time": "500 milliseconds"},
        "max_text_length": MAX_TEXT_LENGTH,
        "max_message_bytes": MAX_MESSAGE_BYTES,
    }
    spec = specs.write_spec(
        tmp_path / "spec.yaml",
        specs.spec_document(
            name, topics, tmp_path / "checkpoint", kafka_bootstrap, state=tmp_path / "state", options=options
        ),
    )
    job = launch_job(["run", "--spec", str(spec)], tmp_path / "job.log")
    store = StateStore(str(tmp_path / "state"))

    def log_tail() -> str:
        return (tmp_path / "job.log").read_text(errors="replace")[-4000:]

    def status() -> dict[str, Any]:
        document = store.read_status()
        return document or {}

    try:
        # While the job starts: the third model, trained here and published, and the two it must refuse.
        trained = tmp_path / "tokens"
        pipelines.hashing_lr(spark).write().save(str(trained))
        assert main.cli(["model", "publish", str(trained), "--name", "Tokens", "--labels", "NEGATIVE,POSITIVE"]) == 0
        stars = tmp_path / "stars"
        pipelines.with_stars(spark).write().save(str(stars))
        assert main.cli(["model", "publish", str(stars), "--name", "Stars"]) == 0
        not_a_pipeline = tmp_path / "not-a-pipeline"
        not_a_pipeline.mkdir()
        (not_a_pipeline / "notes.txt").write_text("a folder, but no saved model\n")
        first, old, third = version_of(SHIPPED_MODEL), version_of(OLD_MODEL), version_of(trained)
        assert len({first, old, third}) == 3

        assert_eventually(
            lambda: status().get("state") == "RUNNING" or job.poll() is not None, 240, "the job to run", interval_s=1
        )
        assert job.poll() is None, log_tail()

        messages = mixed_stream(TOTAL, bad_every=25)
        producer = SteadyProducer(kafka_bootstrap, topics["in"], messages, RATE)
        producer.start()

        def ask(model: Path) -> Asked:
            sent_before = producer.count
            asked_at_ms = int(time.time() * 1000)
            done = job_command("update", "--spec", str(spec), "--model", str(model), "--timeout", "180")
            return Asked(
                model, done.returncode, done.stdout, done.stderr, asked_at_ms, int(time.time() * 1000), sent_before
            )

        time.sleep(8)
        to_old = ask(OLD_MODEL)
        time.sleep(4)
        broken = ask(not_a_pipeline)
        refused_status = status()
        to_third = ask(trained)
        time.sleep(4)
        other_inputs = ask(stars)
        rollback = ask(OLD_MODEL)
        changes_done = producer.count
        producer.end_after(int(RATE * TAIL_S))
        status_while_running = job_command("status", "--spec", str(spec))
        producer.join(timeout=TOTAL / RATE + 120)
        assert producer.error is None, producer.error
        messages = messages[: producer.last]
        assert len(producer.sent) == len(messages)
        good = [m for m in messages if m.error_code is None]
        out = read_all(kafka_bootstrap, topics["out"], expected=len(good), timeout_s=180)
        dead = read_all(kafka_bootstrap, topics["dlq"], expected=len(messages) - len(good), timeout_s=60)
        final = json.loads(job_command("status", "--spec", str(spec), "--json").stdout)
    finally:
        stop_job(job, store)
    assert job.returncode == 0, log_tail()

    # Each request's exit code and what it said.
    for asked in (to_old, to_third, rollback):
        assert asked.code == 0, (asked, log_tail())
    assert to_old.out.splitlines()[-1] == (
        f"{name}: SERVING Sentiment Prediction version {old} from {OLD_MODEL} (was version {first})"
    )
    assert to_third.out.splitlines()[-1] == f"{name}: SERVING Tokens version {third} from {trained} (was version {old})"
    assert rollback.out.splitlines()[-1] == (
        f"{name}: SERVING Sentiment Prediction version {old} from {OLD_MODEL} (was version {third})"
    )
    assert (broken.code, broken.err) == (
        1,
        f"error: {name} REFUSED {not_a_pipeline}: model location {not_a_pipeline}: not a saved Spark ML "
        f"PipelineModel (no readable metadata/ folder; found ['notes.txt']); it goes on serving version {old}\n",
    )
    stars_version = version_of(stars)
    assert (other_inputs.code, other_inputs.err) == (
        1,
        f"error: {name} REFUSED {stars}: it reads the input fields [id integer, text string, stars double], but "
        f"the deployment's messages are parsed with [id integer, text string] (version {third}); a model with "
        f"other input fields needs a deployment of its own; it goes on serving version {third}\n",
    )
    assert refused_status["update"]["state"] == "REFUSED"
    assert refused_status["update"]["reason"].startswith(f"model location {not_a_pipeline}: not a saved Spark ML")
    assert refused_status["state"] == "RUNNING"
    # Every change was made while the stream still ran (else this test would not show what it claims).
    assert changes_done < len(messages), f"the changes took longer than the stream ({changes_done} of {TOTAL} sent)"

    # Every input offset has exactly one record: a prediction or a dead letter.
    def coordinates(records: list[Record]) -> list[tuple[int, int]]:
        return [(r.json()["sourcePartition"], r.json()["sourceOffset"]) for r in records]

    expected = dict(zip(producer.sent, messages, strict=True))
    assert len(out) == len(good) and len(dead) == len(messages) - len(good)
    assert sorted(coordinates(out) + coordinates(dead)) == sorted(producer.sent)
    assert set(coordinates(out)) == {c for c, m in expected.items() if m.error_code is None}
    assert all(r.json()["errorCode"] == expected[c].error_code for r, c in zip(dead, coordinates(dead), strict=True))

    # The history: the versions that served, in order, where each began (a batch's start offsets), and `job status`.
    history = final["models"]
    served = [(m["version"], m["location"]) for m in history]
    assert served == [
        (first, str(SHIPPED_MODEL)),
        (old, str(OLD_MODEL)),
        (third, str(trained)),
        (old, str(OLD_MODEL)),
    ]
    assert stars_version not in {v for v, _ in served}
    # The first model began with the checkpoint: its first batch with rows is batch 0 (no start offsets), or a later
    # one that starts at offset 0 of both partitions (when Spark ran an empty batch 0 before the stream began).
    first_batch, first_at = history[0]["first_batch"], history[0]["first_offsets"]
    assert (first_batch, first_at) == (0, None) or (first_batch >= 1 and first_at == {"0": 0, "1": 0}), history[0]
    assert all(isinstance(m["first_batch"], int) and set(m["first_offsets"]) == {"0", "1"} for m in history[1:])
    lines = status_while_running.stdout.splitlines()
    listed = lines[
        lines.index("models:      (oldest first: version, name, serving since, first offsets, location)") + 1 :
    ]
    assert [line.split()[0] for line in listed] == [first, old, third, old]
    assert all(line.endswith(location) for line, (_, location) in zip(listed, served, strict=True))
    assert f"model:       Sentiment Prediction version {old} at {OLD_MODEL}" in lines

    # Per partition, the versions by offset are exactly the versions that served, each from its first offsets.
    begins = [{p: 0 for p in (0, 1)}] + [{int(p): o for p, o in m["first_offsets"].items()} for m in history[1:]]
    by_partition: dict[int, list[Record]] = defaultdict(list)
    for record in out:
        by_partition[record.json()["sourcePartition"]].append(record)
    segment_of: dict[tuple[int, int], int] = {}
    for partition, records in by_partition.items():
        records.sort(key=lambda r: r.json()["sourceOffset"])
        versions = [r.json()["modelVersion"] for r in records]
        runs = [v for i, v in enumerate(versions) if i == 0 or versions[i - 1] != v]
        assert runs == [first, old, third, old], f"partition {partition}: versions by offset {runs}"
        for record in records:
            offset = record.json()["sourceOffset"]
            segment = max(i for i, begin in enumerate(begins) if begin[partition] <= offset)
            assert record.json()["modelVersion"] == served[segment][0], (partition, offset, segment)
            segment_of[(partition, offset)] = segment

    # Each probability is what a static transform with the version the record names gives its text.
    rows_by_segment: dict[int, list[tuple[int, str]]] = defaultdict(list)
    for record in out:
        value = record.json()
        rows_by_segment[segment_of[(value["sourcePartition"], value["sourceOffset"])]].append(
            (value["id"], value["text"])
        )
    for segment, rows in rows_by_segment.items():
        want = static_probabilities(spark, served[segment][1], rows)
        got = {
            r.json()["id"]: r.json()["probability"]
            for r in out
            if segment_of[(r.json()["sourcePartition"], r.json()["sourceOffset"])] == segment
        }
        assert got.keys() == want.keys()
        assert all(got[i] == pytest.approx(want[i], abs=1e-12) for i in want), f"segment {segment}"

    # The gap in scoring at each change, from the output topic's timestamps (reported, not asserted).
    times: dict[int, list[int]] = defaultdict(list)
    for record in out:
        assert record.timestamp_ms is not None
        times[segment_of[(record.json()["sourcePartition"], record.json()["sourceOffset"])]].append(record.timestamp_ms)
    gaps = [(min(times[k]) - max(times[k - 1])) / 1000 for k in range(1, len(served))]
    from_request = [
        (min(times[k]) - asked.asked_at_ms) / 1000
        for k, asked in zip((1, 2, 3), (to_old, to_third, rollback), strict=True)
    ]
    answered = [(a.answered_at_ms - a.asked_at_ms) / 1000 for a in (to_old, to_third, rollback)]
    report = {
        "gap_last_old_to_first_new_s": gaps,
        "median_gap_s": statistics.median(gaps),
        "request_to_first_new_record_s": from_request,
        "median_request_to_first_new_record_s": statistics.median(from_request),
        "job_update_wall_s": answered,
        "refusals_wall_s": [(a.answered_at_ms - a.asked_at_ms) / 1000 for a in (broken, other_inputs)],
        "records_per_version": [len(times[k]) for k in range(len(served))],
    }
    (tmp_path / "update-gaps.json").write_text(json.dumps(report, indent=2))
    print(f"\njob update gaps: {json.dumps(report)}")


@pytest.mark.slow
def test_a_restart_after_a_crash_serves_the_model_that_was_serving(kafka_bootstrap: str, tmp_path: Path) -> None:
    topics = unique_topics("in", "out", "dlq")
    create_topics(kafka_bootstrap, topics.values(), partitions=2)
    options = {"starting_offsets": "earliest", "trigger": {"processing_time": "500 milliseconds"}}
    spec = specs.write_spec(
        tmp_path / "spec.yaml",
        specs.spec_document(
            f"restart-{topics['in']}",
            topics,
            tmp_path / "checkpoint",
            kafka_bootstrap,
            state=tmp_path / "state",
            options=options,
        ),
    )
    store = StateStore(str(tmp_path / "state"))
    first, old = version_of(SHIPPED_MODEL), version_of(OLD_MODEL)

    def status() -> dict[str, Any]:
        return store.read_status() or {}

    def send(ids: range) -> None:
        produce(
            kafka_bootstrap,
            topics["in"],
            [(None, json.dumps({"id": i, "text": f"great day #{i}"}).encode()) for i in ids],
        )

    def versions() -> dict[int, list[str]]:
        found: dict[int, list[str]] = defaultdict(list)
        for record in read_all(kafka_bootstrap, topics["out"]):
            found[record.json()["id"]].append(record.json()["modelVersion"])
        return found

    job = launch_job(["run", "--spec", str(spec)], tmp_path / "job.log")
    try:
        assert_eventually(lambda: status().get("state") == "RUNNING" or job.poll() is not None, 240, "the job to run")
        send(range(0, 200))
        assert_eventually(lambda: len(versions()) == 200, 120, "the first 200 scored")
        moved = job_command("update", "--spec", str(spec), "--model", str(OLD_MODEL), "--timeout", "180")
        assert moved.returncode == 0, moved.stderr
        send(range(200, 400))
        assert_eventually(lambda: len(versions()) == 400, 120, "the next 200 scored")
    finally:
        os.killpg(job.pid, signal.SIGKILL)  # a crash: the script, the JVM and the driver at once
        job.wait(timeout=60)
    job = launch_job(["run", "--spec", str(spec)], tmp_path / "job-again.log")
    try:
        assert_eventually(lambda: status().get("state") == "RUNNING" or job.poll() is not None, 240, "the restart")
        send(range(400, 600))
        assert_eventually(lambda: len(versions()) == 600, 120, "the last 200 scored")
        again = status()
    finally:
        stop_job(job, store)
    log = (tmp_path / "job-again.log").read_text(errors="replace")
    assert (
        f"serving the model at {OLD_MODEL}, the last one the model history in the state folder "
        f"({tmp_path / 'state'}) names, instead of the spec's model.location {SHIPPED_MODEL}; `job update` changes it"
    ) in log
    assert again["model"] == {"name": "Sentiment Prediction", "version": old, "location": str(OLD_MODEL)}
    assert [(m["version"], m["location"]) for m in again["models"]] == [
        (first, str(SHIPPED_MODEL)),
        (old, str(OLD_MODEL)),
    ]
    scored = versions()
    assert sorted(scored) == list(range(600))
    assert {v for i in range(200, 600) for v in scored[i]} == {old}  # a replayed batch too
    assert {v for i in range(0, 200) for v in scored[i]} == {first}


@pytest.mark.slow
def test_watch_mode_follows_the_pointer_file(kafka_bootstrap: str, tmp_path: Path) -> None:
    topics = unique_topics("in", "out", "dlq")
    create_topics(kafka_bootstrap, topics.values(), partitions=2)
    pointer = tmp_path / "serving-model"
    pointer.write_text(f"{SHIPPED_MODEL}\n")
    document = specs.spec_document(
        f"watch-{topics['in']}",
        topics,
        tmp_path / "checkpoint",
        kafka_bootstrap,
        state=tmp_path / "state",
        options={"starting_offsets": "earliest", "trigger": {"processing_time": "500 milliseconds"}},
    )
    document["model"]["watch"] = str(pointer)
    spec = specs.write_spec(tmp_path / "spec.yaml", document)
    store = StateStore(str(tmp_path / "state"))
    first, old = version_of(SHIPPED_MODEL), version_of(OLD_MODEL)

    def status() -> dict[str, Any]:
        return store.read_status() or {}

    def send(ids: range) -> None:
        produce(
            kafka_bootstrap,
            topics["in"],
            [(None, json.dumps({"id": i, "text": f"nice one #{i}"}).encode()) for i in ids],
        )

    job = launch_job(["run", "--spec", str(spec)], tmp_path / "job.log")
    try:
        assert_eventually(lambda: status().get("state") == "RUNNING" or job.poll() is not None, 240, "the job to run")
        send(range(0, 100))
        assert_eventually(lambda: written(kafka_bootstrap, topics["out"]) == 100, 120, "the first 100 scored")
        pointer.write_text(f"{OLD_MODEL}\n")
        assert_eventually(lambda: (status().get("model") or {}).get("version") == old, 120, "the pointer's model")
        send(range(100, 200))
        assert_eventually(lambda: written(kafka_bootstrap, topics["out"]) == 200, 120, "the next 100 scored")
        pointer.write_text(str(tmp_path / "no-model-here"))
        assert_eventually(lambda: (status().get("update") or {}).get("state") == "REFUSED", 120, "the refusal")
        final = status()
    finally:
        stop_job(job, store)
    assert job.returncode == 0
    assert final["update"]["id"].startswith("watch-")
    assert final["update"]["reason"] == f"model location {tmp_path / 'no-model-here'}: no such folder"
    assert [(m["version"], m["location"]) for m in final["models"]] == [
        (first, str(SHIPPED_MODEL)),
        (old, str(OLD_MODEL)),
    ]
    by_id = {r.json()["id"]: r.json()["modelVersion"] for r in read_all(kafka_bootstrap, topics["out"])}
    assert sorted(by_id) == list(range(200))
    assert {by_id[i] for i in range(100)} == {first} and {by_id[i] for i in range(100, 200)} == {old}
