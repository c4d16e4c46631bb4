"""The streaming query against a real broker: every id comes back with the batch model's label and probability."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from pyspark.ml.functions import vector_to_array
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from job.runtime.cluster_check import StartupError, check_topics
from job.runtime.deploy import stop_at_batch_boundary
from job.runtime.model import LoadedModel, load_model
from job.runtime.query import start_query
from job.runtime.values import DeploymentSpec
from job.tools import specs
from tests.integration.kafka_utils import create_topics, produce, read_all, unique_topics
from tests.integration.messages import GOOD_TEXTS
from tests.paths import SHIPPED_MODEL


@pytest.fixture(scope="module")
def model(spark: SparkSession) -> LoadedModel:
    return load_model(spark, str(SHIPPED_MODEL))


def make_spec(bootstrap: str, topics: dict[str, str], tmp_path: Path, **options: object) -> DeploymentSpec:
    options = {"starting_offsets": "earliest", "trigger": {"processing_time": "500 milliseconds"}, **options}
    return specs.build_spec(
        specs.spec_document("it-deployment", topics, tmp_path / "checkpoint", bootstrap, options=options)
    )


def test_every_id_is_scored_like_a_batch_transform(
    spark: SparkSession, kafka_bootstrap: str, model: LoadedModel, tmp_path: Path
) -> None:
    topics = unique_topics("in", "out", "dlq")
    create_topics(kafka_bootstrap, topics.values(), partitions=2)
    n = 300
    texts = {i: f"{GOOD_TEXTS[i % len(GOOD_TEXTS)]} #{i}" for i in range(n)}
    produce(
        kafka_bootstrap, topics["in"], [(None, json.dumps({"id": i, "text": t}).encode()) for i, t in texts.items()]
    )
    spec = make_spec(kafka_bootstrap, topics, tmp_path)
    check_topics(spec, spark)
    query = start_query(spark, spec, model)
    try:
        out = read_all(kafka_bootstrap, topics["out"], expected=n, timeout_s=120)
        assert query.exception() is None
    finally:
        query.stop()
    got = {r.json()["id"]: (r.key, r.json()) for r in out}
    assert sorted(got) == list(range(n))
    assert read_all(kafka_bootstrap, topics["dlq"]) == []

    batch = model.pipeline.transform(spark.createDataFrame(list(texts.items()), "id int, text string"))
    labels = model.metadata.label_values
    expected = {
        r.id: (labels[int(r.prediction)], r.p)
        for r in batch.select("id", "prediction", vector_to_array(F.col("probability")).alias("p")).collect()
    }
    for i, (key, record) in got.items():
        label, probabilities = expected[i]
        assert key == str(i).encode()
        assert record["text"] == texts[i]
        assert record["predictedLabel"] == label
        assert record["prediction"] == float(labels.index(label))
        assert record["probability"] == pytest.approx(probabilities[labels.index(label)], abs=1e-12)
        assert (record["modelName"], record["modelVersion"]) == (model.metadata.name, model.metadata.version)
    assert {label for label, _ in expected.values()} == {"POSITIVE", "NEGATIVE"}


def test_bad_messages_go_to_the_dead_letter_topic_and_the_stream_carries_on(
    spark: SparkSession, kafka_bootstrap: str, model: LoadedModel, tmp_path: Path
) -> None:
    topics = unique_topics("in", "out", "dlq")
    create_topics(kafka_bootstrap, topics.values(), partitions=1)
    messages = [
        (b"a", json.dumps({"id": 1, "text": "what a lovely morning"}).encode()),
        (b"b", b"not json at all"),
        (b"c", json.dumps({"id": 2}).encode()),
        (b"d", None),
        (b"e", json.dumps({"id": 3, "text": "I hate mondays"}).encode()),
    ]
    produce(kafka_bootstrap, topics["in"], messages)
    query = start_query(spark, make_spec(kafka_bootstrap, topics, tmp_path), model)
    try:
        out = read_all(kafka_bootstrap, topics["out"], expected=2, timeout_s=120)
        dead = read_all(kafka_bootstrap, topics["dlq"], expected=3, timeout_s=60)
        assert query.exception() is None
        assert query.isActive
    finally:
        query.stop()
    assert sorted(r.json()["id"] for r in out) == [1, 3]
    assert [(r.key, r.json()["errorCode"], r.json()["sourceOffset"]) for r in dead] == [
        (b"b", "NOT_JSON", 1),
        (b"c", "MISSING_FIELD", 2),
        (b"d", "TOMBSTONE", 3),
    ]


def test_missing_topic_fails_fast_naming_it(spark: SparkSession, kafka_bootstrap: str, tmp_path: Path) -> None:
    topics = unique_topics("in", "out", "dlq")
    create_topics(kafka_bootstrap, [topics["in"], topics["out"]])
    with pytest.raises(StartupError) as err:
        check_topics(make_spec(kafka_bootstrap, topics, tmp_path), spark, timeout_s=20)
    assert str(err.value) == (
        f"topic(s) {topics['dlq']} not found on {kafka_bootstrap}; create them first (the job does not create topics)"
    )


def test_a_real_time_query_stops_at_its_batch_boundary_and_a_restart_repeats_nothing(
    spark: SparkSession, model: LoadedModel, kafka_bootstrap: str, tmp_path: Path
) -> None:
    # Real-time mode writes each record as it comes and commits every 5 s; a stop that cancels a batch leaves its
    # written records without a commit ("Aborted commit for partition 0"), and a restart writes them again.
    topics = unique_topics("in", "out", "dlq")
    create_topics(kafka_bootstrap, topics.values())
    spec = make_spec(kafka_bootstrap, topics, tmp_path, trigger={"real_time": "5 seconds"})
    sent = 0
    stop_sending = threading.Event()

    def send() -> None:
        nonlocal sent
        while not stop_sending.is_set():
            produce(
                kafka_bootstrap,
                topics["in"],
                [(str(sent).encode(), json.dumps({"id": sent, "text": GOOD_TEXTS[sent % 10]}).encode())],
            )
            sent += 1
            stop_sending.wait(0.1)

    sender = threading.Thread(target=send, daemon=True)
    query = start_query(spark, spec, model)
    try:
        sender.start()
        assert len(read_all(kafka_bootstrap, topics["out"], expected=5, timeout_s=180)) >= 5, query.exception()
        # The stream keeps coming: the stop lands inside a real-time batch.
        outcome = stop_at_batch_boundary(query)
        assert outcome.graceful, outcome
    finally:
        query.stop()
        stop_sending.set()
        sender.join(timeout=30)
    checkpoint = tmp_path / "checkpoint"
    committed = sorted(int(p.name) for p in (checkpoint / "commits").iterdir() if p.name.isdigit())
    assert committed == sorted(int(p.name) for p in (checkpoint / "offsets").iterdir() if p.name.isdigit())
    assert committed, "no real-time batch committed before the stop"

    query = start_query(spark, spec, model)
    try:
        read_all(kafka_bootstrap, topics["out"], expected=sent, timeout_s=180)
        outcome = stop_at_batch_boundary(query)
    finally:
        query.stop()
    offsets = sorted(r.json()["sourceOffset"] for r in read_all(kafka_bootstrap, topics["out"]))
    assert offsets == list(range(sent)), "a record was written twice or not at all"
    assert outcome.graceful
