"""The job on a real Spark standalone cluster: same spec, executors in their own JVMs, tasks per topic partition."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession

from job.runtime.model import load_model
from job.tools import specs
from job.tools.processes import child_processes, free_port, stop_job
from job.tools.standalone import StandaloneCluster, executor_pids, get_json
from tests.integration.kafka_utils import assert_eventually, create_topics, produce, read_all, unique_topics, written
from tests.integration.messages import MAX_MESSAGE_BYTES, MAX_TEXT_LENGTH, Message, mixed_stream
from tests.paths import SHIPPED_MODEL

pytestmark = pytest.mark.slow

PARTITIONS = 4
MESSAGES = 400  # 100 per partition
# Two micro-batches of 50 offsets per partition each: the whole backlog is in the topic before the job
# starts, so every batch reads all four partitions and the task counts are exact.
MAX_OFFSETS_PER_TRIGGER = 200


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandaloneCluster]:
    """One master and one worker (2 cores, 2g) from the pinned pyspark; stopped even when a test fails."""
    cluster = StandaloneCluster(tmp_path_factory.mktemp("spark-cluster"), workers=1, worker_cores=2, worker_memory="2g")
    try:
        cluster.start(timeout_s=180)
        yield cluster
    finally:
        cluster.stop()


def write_spec(path: Path, bootstrap: str, topics: dict[str, str], min_partitions: int | None) -> tuple[Path, str]:
    options: dict[str, Any] = {
        "starting_offsets": "earliest",
        "trigger": {"processing_time": "500 milliseconds"},
        "max_offsets_per_trigger": MAX_OFFSETS_PER_TRIGGER,
        "max_text_length": MAX_TEXT_LENGTH,
        "max_message_bytes": MAX_MESSAGE_BYTES,
    }
    if min_partitions is not None:
        options["min_partitions"] = min_partitions
    name = f"cluster-{topics['in']}"
    # Absolute paths: the executors run in the worker's folders, the driver in the project's.
    document = specs.spec_document(name, topics, path.parent / "checkpoint", bootstrap, state=path.parent / "state",
                             options=options)  # fmt: skip
    return specs.write_spec(path, document), name


def expected_scores(spark: SparkSession, messages: list[Message]) -> dict[int, tuple[str, float, str, float]]:
    """id -> (text, prediction, label, probability of the prediction) from a batch transform of the shipped model."""
    model = load_model(spark, str(SHIPPED_MODEL))
    last = model.pipeline.stages[-1]
    texts = {m.id: json.loads(m.value)["text"] for m in messages if m.value is not None}
    frame = spark.createDataFrame(sorted(texts.items()), "id int, text string")
    rows = model.pipeline.transform(frame).collect()
    out = {}
    for row in rows:
        prediction = row[last.getOrDefault("predictionCol")]
        probability = row[last.getOrDefault("probabilityCol")][int(prediction)]
        out[row.id] = (texts[row.id], prediction, model.metadata.label_values[int(prediction)], float(probability))
    return out


def batch_stages(driver_api: str, run_id: str) -> dict[int, dict[str, Any]]:
    """The streaming query's stages by micro-batch id, from the driver's REST API (job description)."""
    found: dict[int, dict[str, Any]] = {}
    for stage in get_json(f"{driver_api}/stages") or []:
        description = stage.get("description") or ""
        match = re.search(r"^batch = (\d+)$", description, re.MULTILINE)
        if f"runId = {run_id}" in description and match:
            assert int(match.group(1)) not in found, f"two stages for batch {match.group(1)}: {description!r}"
            found[int(match.group(1))] = stage
    return found


@pytest.mark.parametrize(("min_partitions", "tasks_per_batch"), [(None, PARTITIONS), (8, 8)])
def test_the_job_scores_every_message_on_the_cluster_executors_with_tasks_per_topic_partition(
    cluster: StandaloneCluster,
    kafka_bootstrap: str,
    spark: SparkSession,
    tmp_path: Path,
    min_partitions: int | None,
    tasks_per_batch: int,
) -> None:
    topics = unique_topics("in", "out", "dlq")
    create_topics(kafka_bootstrap, topics.values(), partitions=PARTITIONS)
    messages = mixed_stream(MESSAGES, bad_every=10)
    positions = produce(
        kafka_bootstrap, topics["in"], [(m.key, m.value, i % PARTITIONS) for i, m in enumerate(messages)]
    )
    assert sorted(p for p, _ in positions) == sorted(list(range(PARTITIONS)) * (MESSAGES // PARTITIONS))
    at = dict(zip(positions, messages, strict=True))
    good = {pos: m for pos, m in at.items() if m.error_code is None}
    bad = {pos: m for pos, m in at.items() if m.error_code is not None}
    assert (len(good), len(bad)) == (360, 40)
    expected = expected_scores(spark, list(good.values()))

    spec, name = write_spec(tmp_path / "spec.yaml", kafka_bootstrap, topics, min_partitions)
    log = tmp_path / "job.log"
    ui_port = free_port()
    job = cluster.submit(spec, log, cores_max=2, executor_cores=1, conf={"spark.ui.port": str(ui_port)})
    try:
        app_id = cluster.wait_for_app(f"stream-deployment: {name}", timeout_s=180, proc=job)
        assert_eventually(
            lambda: written(kafka_bootstrap, topics["out"], topics["dlq"]) >= MESSAGES or job.poll() is not None,
            300,
            f"the {MESSAGES} messages to be handled on the cluster",
            interval_s=1,
        )
        assert job.poll() is None, log.read_text(errors="replace")[-4000:]
        status_file = tmp_path / "state" / "status.json"
        assert_eventually(
            lambda: json.loads(status_file.read_text())["totals"]["records_in"] >= MESSAGES, 30, "totals to catch up"
        )
        status = json.loads(status_file.read_text())

        # What ran where, read while the application is alive.
        driver_api = f"http://127.0.0.1:{ui_port}/api/v1/applications/{app_id}"
        master_app = next(a for a in (cluster.state() or {}).get("activeapps", []) if a["id"] == app_id)
        executors = get_json(f"{driver_api}/allexecutors") or []
        stages = batch_stages(driver_api, status["run_id"])
        task_executors = {
            batch: sorted(
                {
                    t["executorId"]
                    for t in get_json(f"{driver_api}/stages/{s['stageId']}/{s['attemptId']}/taskList?length=1000")
                }
            )
            for batch, s in stages.items()
        }
        jvms = executor_pids(app_id)
        python_children = {pid: child_processes(pid) for pid in jvms}
    finally:
        stop_job(job)
    assert job.returncode == 0, log.read_text(errors="replace")[-4000:]

    # The application ran on the cluster: the master granted it 2 cores on 2 executors of 1 core each.
    assert (master_app["name"], master_app["state"], master_app["cores"]) == (
        f"stream-deployment: {name}",
        "RUNNING",
        2,
    )
    assert sorted((e["id"], e["totalCores"], e["isActive"]) for e in executors) == [
        ("0", 1, True),
        ("1", 1, True),
        ("driver", 0, True),
    ]
    # One Spark task per topic partition in each micro-batch (or min_partitions of them), spread over both
    # executors; the driver runs none.
    assert {batch: s["numTasks"] for batch, s in stages.items()} == {0: tasks_per_batch, 1: tasks_per_batch}
    assert {batch: s["status"] for batch, s in stages.items()} == {0: "COMPLETE", 1: "COMPLETE"}
    assert task_executors == {0: ["0", "1"], 1: ["0", "1"]}
    # Scoring is JVM-only: the executors started no Python worker (a Python UDF would show up here as
    # `python -m pyspark.daemon` under the executor's JVM).
    assert len(jvms) == 2
    assert python_children == {pid: {} for pid in jvms}
    # The model was loaded once for the query, not once per micro-batch.
    assert log.read_text(errors="replace").count("job.runtime.model: loaded model 'Sentiment Prediction'") == 1
    assert status["totals"] == {"records_in": 400, "records_scored": 360, "records_dead_lettered": 40}

    # Every message exactly once, scored exactly as the model scores it in a batch transform.
    out, dead = read_all(kafka_bootstrap, topics["out"]), read_all(kafka_bootstrap, topics["dlq"])
    scored = {(r.json()["sourcePartition"], r.json()["sourceOffset"]): r for r in out}
    assert len(out) == len(scored) == 360
    assert sorted(scored) == sorted(good)
    for pos, record in scored.items():
        message, value = good[pos], record.json()
        assert message.id is not None
        text, prediction, label, probability = expected[message.id]
        assert record.key == str(message.id).encode()
        assert (value["id"], value["text"], value["sourceTopic"]) == (message.id, text, topics["in"])
        assert (value["prediction"], value["predictedLabel"]) == (prediction, label)
        assert value["probability"] == pytest.approx(probability, abs=1e-12)
    rejected = {(r.json()["sourcePartition"], r.json()["sourceOffset"]): r.json()["errorCode"] for r in dead}
    assert len(dead) == len(rejected) == 40
    assert rejected == {pos: m.error_code for pos, m in bad.items()}
