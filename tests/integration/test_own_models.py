"""Models someone else trained (issue 14): each pipeline shape is fitted here on a few dozen rows, published with
`job model publish`, served by the real Kafka query, and its records must equal a static transform of the rows."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from pyspark.ml import PipelineModel
from pyspark.ml.functions import vector_to_array
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from job.runtime import main
from job.runtime.model import LoadedModel
from job.runtime.publish import load_serving_model
from job.runtime.query import start_query
from job.tools import specs
from job.tools.processes import launch_job, stop_job
from tests import pipelines
from tests.integration.kafka_utils import Record, create_topics, produce, read_all, unique_topics
from tests.paths import PROJECT_ROOT, WML_DOCUMENT

# Texts the models were not trained on, mixing their words, so the predictions are not all memorised.
TEXTS = [
    "love this great morning",
    "hate this awful morning",
    "so happy with the game",
    "so sad about the game",
    "the meeting is at five",
    "what a wonderful week",
    "what a horrible week",
    "the report is on the desk",
    "great love happy",
    "bad hate sad",
    "thank you for the lovely party",
    "angry about the terrible mess",
    "the train leaves at noon today",
    "best win ever",
    "worst loss ever",
]


def publish(location: str, *flags: str) -> None:
    """`job model publish LOCATION FLAGS...`, as a person runs it (in this process, on the test's session)."""
    assert main.cli(["model", "publish", location, *flags]) == 0


def serve(
    spark: SparkSession,
    bootstrap: str,
    tmp_path: Path,
    location: str,
    messages: Sequence[dict[str, Any] | bytes],
    scored: int,
    dead_lettered: int = 0,
) -> tuple[LoadedModel, list[Record], list[Record]]:
    """Run the deployment's query on the messages, as `run` does (the model through its full check)."""
    topics = unique_topics("in", "out", "dlq")
    create_topics(bootstrap, topics.values(), partitions=2)
    produce(bootstrap, topics["in"], [(None, m if isinstance(m, bytes) else json.dumps(m).encode()) for m in messages])
    options = {"starting_offsets": "earliest", "trigger": {"processing_time": "200 milliseconds"}}
    spec = specs.build_spec(
        specs.spec_document("own-model", topics, tmp_path / "checkpoint", bootstrap, model=location, options=options)
    )
    model = load_serving_model(spark, spec.model_location, spec.options)
    query = start_query(spark, spec, model)
    try:
        out = read_all(bootstrap, topics["out"], expected=scored, timeout_s=120)
        dead = read_all(bootstrap, topics["dlq"], expected=dead_lettered or None, timeout_s=60 if dead_lettered else 5)
        assert query.exception() is None
    finally:
        query.stop()
    return model, out, dead


def static_scores(
    spark: SparkSession, pipeline: PipelineModel, rows: Sequence[dict[str, Any]], schema: str, labels: Sequence[str]
) -> dict[Any, dict[str, Any]]:
    """What `pipeline.transform` says about the same rows: prediction, its label, its probability, by id."""
    scored = pipeline.transform(spark.createDataFrame([tuple(r.values()) for r in rows], schema))
    has_own_label = "predictedLabel" in scored.columns
    out = scored.select(
        "id",
        "prediction",
        (F.col("predictedLabel") if has_own_label else F.lit(None)).alias("own"),
        vector_to_array(F.col("probability")).alias("p"),
    )
    return {
        r.id: {
            "prediction": r.prediction,
            "predictedLabel": r.own if has_own_label else labels[int(r.prediction)],
            "probability": r.p[int(r.prediction)],
        }
        for r in out.collect()
    }


def assert_records_match(
    out: Sequence[Record],
    rows: Sequence[dict[str, Any]],
    expected: dict[Any, dict[str, Any]],
    name: str,
    version: str,
) -> None:
    """One record per row, keyed by its id, carrying its fields, and the static transform's scores."""
    by_id = {r.json()["id"]: r for r in out}
    assert sorted(by_id, key=str) == sorted((r["id"] for r in rows), key=str)
    assert len(out) == len(rows)
    for row in rows:
        record = by_id[row["id"]]
        value = record.json()
        assert record.key == str(row["id"]).encode()
        assert {k: value[k] for k in row} == row  # every input field, as sent
        want = expected[row["id"]]
        assert value["prediction"] == want["prediction"]
        assert value["predictedLabel"] == want["predictedLabel"]
        assert value["probability"] == pytest.approx(want["probability"], abs=1e-12)
        assert (value["modelName"], value["modelVersion"]) == (name, version)
        assert list(value)[: len(row) + 3] == [*row, "prediction", "predictedLabel", "probability"]


def test_tokenizer_hashing_lr_with_flags(spark: SparkSession, kafka_bootstrap: str, tmp_path: Path) -> None:
    pipeline = pipelines.hashing_lr(spark)
    location = str(tmp_path / "tokens")
    pipeline.write().save(location)
    publish(location, "--name", "Tokens", "--labels", "NEGATIVE,POSITIVE")

    rows = [{"id": i, "text": text} for i, text in enumerate(TEXTS * 2)]
    model, out, dead = serve(spark, kafka_bootstrap, tmp_path, location, rows, scored=len(rows))
    expected = static_scores(spark, pipeline, rows, "id int, text string", ("NEGATIVE", "POSITIVE"))
    assert_records_match(out, rows, expected, "Tokens", model.version)
    assert dead == []
    assert {e["predictedLabel"] for e in expected.values()} == {"NEGATIVE", "POSITIVE"}


def test_string_indexer_and_index_to_string_with_the_wml_document(
    spark: SparkSession, kafka_bootstrap: str, tmp_path: Path
) -> None:
    pipeline = pipelines.indexed_labels(spark)
    location = str(tmp_path / "indexed")
    pipeline.write().save(location)
    publish(location, "--metadata", str(WML_DOCUMENT))

    rows = [{"id": i, "text": text} for i, text in enumerate(TEXTS * 2)]
    # The message carries no `sentiment`: the pipeline's StringIndexer on it is skipped, as at WML.
    model, out, _ = serve(spark, kafka_bootstrap, tmp_path, location, rows, scored=len(rows))
    assert model.predicted_label_column == "predictedLabel"
    labels = tuple(pipeline.stages[0].labels)  # type: ignore[attr-defined]
    expected = static_scores(spark, pipeline, rows, "id int, text string", labels)
    assert_records_match(out, rows, expected, "Sentiment Prediction", model.version)
    assert {e["predictedLabel"] for e in expected.values()} == {"NEGATIVE", "POSITIVE"}


def test_ngram_count_vectorizer_idf_with_long_ids(spark: SparkSession, kafka_bootstrap: str, tmp_path: Path) -> None:
    pipeline = pipelines.ngram_idf(spark)
    location = str(tmp_path / "bigrams")
    pipeline.write().save(location)
    publish(location, "--labels", "NEGATIVE,POSITIVE", "--input", "id:long", "--input", "text:string")

    rows = [{"id": 2**40 + i, "text": text} for i, text in enumerate(TEXTS * 2)]
    # A text with no bigram of the vocabulary has an all-zero TF-IDF vector: NO_FEATURES (issue 11), found here
    # by the model's own stages, as the job finds it.
    vectors = pipeline.transform(spark.createDataFrame([tuple(r.values()) for r in rows], "id long, text string"))
    empty = {r.id for r in vectors.select("id", "features").collect() if r.features.numNonzeros() == 0}
    assert 0 < len(empty) < len(rows)
    kept = [r for r in rows if r["id"] not in empty]
    model, out, dead = serve(
        spark, kafka_bootstrap, tmp_path, location, rows, scored=len(kept), dead_lettered=len(rows) - len(kept)
    )
    assert model.input_fields == (("id", "long"), ("text", "string"))
    expected = static_scores(spark, pipeline, kept, "id long, text string", ("NEGATIVE", "POSITIVE"))
    assert_records_match(out, kept, expected, "bigrams", model.version)
    assert {e["predictedLabel"] for e in expected.values()} == {"NEGATIVE", "POSITIVE"}
    assert sorted((json.loads(d.json()["value"])["id"], d.json()["errorCode"]) for d in dead) == sorted(
        (i, "NO_FEATURES") for i in empty
    )


def test_three_classes_with_multinomial_lr(spark: SparkSession, kafka_bootstrap: str, tmp_path: Path) -> None:
    pipeline = pipelines.three_class(spark)
    location = str(tmp_path / "three")
    pipeline.write().save(location)
    publish(location, "--name", "Three", "--labels", ",".join(pipelines.THREE_CLASS_LABELS))

    rows = [{"id": i, "text": text} for i, text in enumerate(TEXTS * 2)]
    model, out, _ = serve(spark, kafka_bootstrap, tmp_path, location, rows, scored=len(rows))
    expected = static_scores(spark, pipeline, rows, "id int, text string", pipelines.THREE_CLASS_LABELS)
    assert_records_match(out, rows, expected, "Three", model.version)
    assert {e["predictedLabel"] for e in expected.values()} == set(pipelines.THREE_CLASS_LABELS)


def test_an_extra_numeric_field_from_the_message(spark: SparkSession, kafka_bootstrap: str, tmp_path: Path) -> None:
    pipeline = pipelines.with_stars(spark)
    location = str(tmp_path / "stars")
    pipeline.write().save(location)
    publish(location, "--name", "Stars")

    # Stars as JSON decimals and as integers; the record carries them as the number sent.
    stars: list[float] = [4.5, 1, 2.5, 5]
    rows: list[dict[str, Any]] = [{"id": i, "text": text, "stars": stars[i % 4]} for i, text in enumerate(TEXTS * 2)]
    bad = [
        json.dumps({"id": 900, "text": "great", "stars": "five"}).encode(),
        json.dumps({"id": 901, "text": "great"}).encode(),
        json.dumps({"id": 902, "text": "great", "stars": None}).encode(),
    ]
    model, out, dead = serve(
        spark, kafka_bootstrap, tmp_path, location, [*rows, *bad], scored=len(rows), dead_lettered=3
    )
    assert model.input_fields == (("id", "integer"), ("text", "string"), ("stars", "double"))
    labels = tuple(pipeline.stages[0].labels)  # type: ignore[attr-defined]
    as_doubles = [{**r, "stars": float(r["stars"])} for r in rows]
    expected = static_scores(spark, pipeline, as_doubles, "id int, text string, stars double", labels)
    assert_records_match(out, as_doubles, expected, "Stars", model.version)
    assert sorted((d.json()["errorCode"], d.json()["errorReason"]) for d in dead) == [
        ("MISSING_FIELD", "field 'stars' is missing"),
        ("NULL_FIELD", "field 'stars' is null"),
        ("WRONG_TYPE", "field 'stars' must be a number, found string"),
    ]
    # The number weighs in: the same text with other stars gets another probability.
    same_text = [e["probability"] for i, e in expected.items() if TEXTS[i % len(TEXTS)] == TEXTS[0]]
    assert len(set(same_text)) == 2


@pytest.mark.slow
def test_from_save_to_a_running_deployment_as_the_readme_walks_it(
    spark: SparkSession, kafka_bootstrap: str, tmp_path: Path
) -> None:
    """The README's walk, each step as a person runs it: save, `job model publish` (its own process and local
    session), then `./spark-submit.sh run` with the published folder as model.location."""
    pipeline = pipelines.indexed_labels(spark)
    location = str(tmp_path / "sentiment-v2")
    pipeline.write().save(location)
    published = subprocess.run(
        [sys.executable, "-m", "job.cli", "model", "publish", location, "--metadata", str(WML_DOCUMENT)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert published.returncode == 0, published.stderr[-3000:]
    version = json.loads((Path(location) / "model.json").read_text(encoding="utf-8"))["version"]
    assert published.stdout.startswith(f"published 'Sentiment Prediction' version {version} at {location}\n")

    topics = unique_topics("in", "out", "dlq")
    create_topics(kafka_bootstrap, topics.values(), partitions=2)
    rows = [{"id": i, "text": text} for i, text in enumerate(TEXTS)]
    produce(kafka_bootstrap, topics["in"], [(None, json.dumps(r).encode()) for r in rows])
    options = {"starting_offsets": "earliest", "trigger": {"processing_time": "500 milliseconds"}}
    spec = specs.write_spec(
        tmp_path / "spec.yaml",
        specs.spec_document(
            "own-model-run", topics, tmp_path / "checkpoint", kafka_bootstrap, model=location, options=options
        ),
    )
    job = launch_job(["run", "--spec", str(spec)], tmp_path / "job.log")
    try:
        out = read_all(kafka_bootstrap, topics["out"], expected=len(rows), timeout_s=300)
    finally:
        stop_job(job)
    labels = tuple(pipeline.stages[0].labels)  # type: ignore[attr-defined]
    expected = static_scores(spark, pipeline, rows, "id int, text string", labels)
    assert_records_match(out, rows, expected, "Sentiment Prediction", version)
