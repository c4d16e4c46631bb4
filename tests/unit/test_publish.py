"""`job model publish` / `job model show` and the full check a deployment runs: what is written, versions that
follow the content, and every refusal with its sentence."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from pyspark.ml import PipelineModel
from pyspark.ml.classification import LogisticRegression
from pyspark.ml.feature import FeatureHasher, StringIndexer, VectorAssembler
from pyspark.sql import SparkSession

from job.runtime import main
from job.runtime.declared import Declared
from job.runtime.model import ModelError, load_model
from job.runtime.publish import (
    PublishRequest,
    describe_model,
    load_serving_model,
    publish,
    show_lines,
)
from tests.paths import SHIPPED_MODEL, WML_DOCUMENT

BINARY = ("NEGATIVE", "POSITIVE")


def saved(pipeline: PipelineModel, folder: Path) -> str:
    pipeline.write().save(str(folder))
    return str(folder)


def model_json(location: str) -> dict[str, Any]:
    return json.loads((Path(location) / "model.json").read_text(encoding="utf-8"))


def refusal(spark: SparkSession, request: PublishRequest) -> str:
    with pytest.raises(ModelError) as error:
        publish(spark, request)
    return str(error.value)


# --- what is written -------------------------------------------------------------------------------------


def test_publish_with_flags_writes_what_the_job_needs(
    spark: SparkSession, hashing_lr_model: PipelineModel, tmp_path: Path
) -> None:
    location = saved(hashing_lr_model, tmp_path / "tokens")
    published = publish(
        spark,
        PublishRequest(location, flags=Declared(name="Tokens", author="me", label_values=BINARY)),
    )

    assert published.outcome == "new"
    assert published.notes == (
        "input fields text string: read off the pipeline's stages",
        "added the field 'id' (integer): every message needs it, it keys the output record",
    )
    doc = model_json(location)
    assert re.fullmatch(r"[0-9a-f]{12}", doc.pop("version"))
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", doc.pop("created_at"))
    assert doc == {
        "name": "Tokens",
        "author": "me",
        "model_type": "sparkml-pipeline",
        "stages": [
            "org.apache.spark.ml.feature.Tokenizer",
            "org.apache.spark.ml.feature.HashingTF",
            "org.apache.spark.ml.classification.LogisticRegressionModel",
        ],
        "spark_version": "4.2.0",
        "pyspark_version": "4.2.0",
        "label_column": "label",
        "label_values": ["NEGATIVE", "POSITIVE"],
        "input_schema": [{"name": "id", "type": "integer"}, {"name": "text", "type": "string"}],
        "output_columns": {"prediction": "prediction", "probability": "probability", "predicted_label": None},
        "published": {"from": location, "metadata": None},
    }
    served = load_serving_model(spark, location)
    assert (served.name, served.version, served.label_values) == ("Tokens", published.model.version, BINARY)


def test_the_wml_document_and_the_pipelines_own_labels(
    spark: SparkSession, indexed_model: PipelineModel, tmp_path: Path
) -> None:
    location = saved(indexed_model, tmp_path / "indexed")
    published = publish(spark, PublishRequest(location, metadata_location=str(WML_DOCUMENT)))
    labels = list(indexed_model.stages[0].labels)  # type: ignore[attr-defined]

    assert published.notes == ()  # the WML schema has `id` and no label column
    doc = model_json(location)
    wml = json.loads(WML_DOCUMENT.read_text(encoding="utf-8"))
    assert doc["name"] == "Sentiment Prediction"
    assert doc["description"] == "Sentiment of a tweet from its text"
    assert doc["author"] == {"name": "Jane Doe", "email": "jane.doe@example.com"}
    assert doc["label_column"] == "sentiment"
    assert doc["label_values"] == labels
    assert doc["input_schema"] == [{"name": "id", "type": "integer"}, {"name": "text", "type": "string"}]
    assert doc["output_columns"] == {
        "prediction": "prediction",
        "probability": "probability",
        "predicted_label": "predictedLabel",
    }
    assert doc["training_schema"] == [
        {"name": "id", "type": "integer"},
        {"name": "text", "type": "string"},
        {"name": "sentiment", "type": "string"},
    ]
    assert doc["wml"]["latest_version"] == wml["entity"]["latest_version"]
    assert doc["wml"]["guid"] == wml["metadata"]["guid"]
    assert doc["published"] == {"from": location, "metadata": str(WML_DOCUMENT)}
    assert load_serving_model(spark, location).predicted_label_column == "predictedLabel"


def test_a_wml_field_of_a_type_the_job_cannot_parse_is_left_out_when_the_pipeline_does_not_read_it(
    spark: SparkSession, indexed_model: PipelineModel, tmp_path: Path
) -> None:
    wml = json.loads(WML_DOCUMENT.read_text(encoding="utf-8"))
    wml["entity"]["input_data_schema"]["fields"] += [
        {"name": "created", "type": "timestamp", "nullable": True, "metadata": {}},
        {"name": "sentiment", "type": "string", "nullable": True, "metadata": {}},
    ]
    document = tmp_path / "wml.json"
    document.write_text(json.dumps(wml), encoding="utf-8")
    published = publish(spark, PublishRequest(saved(indexed_model, tmp_path / "m"), metadata_location=str(document)))
    assert published.notes == (
        f"--metadata {document} lists the label column 'sentiment': not parsed from messages",
        f"--metadata {document} lists 'created' of type 'timestamp', which the pipeline does not read: left out",
    )
    assert published.model.input_fields == (("id", "integer"), ("text", "string"))


def test_the_shipped_model_passes_the_full_check_unchanged(spark: SparkSession) -> None:
    model = load_serving_model(spark, str(SHIPPED_MODEL))
    shipped = json.loads((SHIPPED_MODEL / "model.json").read_text(encoding="utf-8"))
    assert (model.name, model.version) == ("Sentiment Prediction", shipped["version"])
    assert len(shipped["version"]) == 12
    assert model.predicted_label_column is None


# --- versions --------------------------------------------------------------------------------------------


def test_the_version_follows_the_content(spark: SparkSession, hashing_lr_model: PipelineModel, tmp_path: Path) -> None:
    def version(folder: str, pipeline: PipelineModel = hashing_lr_model, **flags: Any) -> str:
        location = saved(pipeline, tmp_path / folder)
        declared = Declared(**{"label_values": BINARY, **flags})
        return publish(spark, PublishRequest(location, flags=declared)).model.version

    first = version("a")
    # The same fitted pipeline saved again (other part-file names, other save timestamps): the same version.
    assert version("b") == first
    # Name and description are not in it; what is scored is.
    assert version("c", name="Other name", description="other words") == first
    assert version("d", label_values=("POSITIVE", "NEGATIVE")) != first
    assert version("e", input_schema=(("id", "long"), ("text", "string"))) != first
    changed = hashing_lr_model.copy()
    changed.stages[2].setThreshold(0.7)  # type: ignore[attr-defined]
    assert version("f", changed) != first


def test_publishing_twice_writes_nothing_the_second_time(
    spark: SparkSession, hashing_lr_model: PipelineModel, tmp_path: Path
) -> None:
    location = saved(hashing_lr_model, tmp_path / "m")
    request = PublishRequest(location, flags=Declared(label_values=BINARY))
    first = publish(spark, request)
    written = (Path(location) / "model.json").read_bytes()
    again = publish(spark, request)
    assert (again.outcome, again.model.version) == ("same", first.model.version)
    assert (Path(location) / "model.json").read_bytes() == written
    described = publish(spark, PublishRequest(location, flags=Declared(label_values=BINARY, description="new words")))
    assert (described.outcome, described.model.version) == ("updated", first.model.version)
    assert model_json(location)["description"] == "new words"
    assert model_json(location)["created_at"] == json.loads(written)["created_at"]


def test_publish_into_output_copies_the_pipeline_and_gives_the_same_version(
    spark: SparkSession, hashing_lr_model: PipelineModel, tmp_path: Path
) -> None:
    source = saved(hashing_lr_model, tmp_path / "from-the-data-scientist")
    files_before = sorted(p.relative_to(source).as_posix() for p in Path(source).rglob("*"))
    output = str(tmp_path / "published")
    request = PublishRequest(source, output=output, flags=Declared(label_values=BINARY))
    published = publish(spark, request)

    assert published.model.location == output
    assert sorted(p.relative_to(source).as_posix() for p in Path(source).rglob("*")) == files_before  # untouched
    assert load_serving_model(spark, output).version == published.model.version
    in_place = publish(spark, PublishRequest(source, flags=Declared(label_values=BINARY)))
    assert in_place.model.version == published.model.version
    assert publish(spark, request).outcome == "same"


# --- refusals --------------------------------------------------------------------------------------------


def test_refuses_an_input_field_the_pipeline_needs_and_the_schema_lacks(
    spark: SparkSession, hashing_lr_model: PipelineModel, indexed_model: PipelineModel, tmp_path: Path
) -> None:
    location = saved(hashing_lr_model, tmp_path / "m")
    flags = Declared(label_values=BINARY, input_schema=(("id", "integer"), ("body", "string")))
    assert refusal(spark, PublishRequest(location, flags=flags)) == (
        f"model location {location}: the pipeline reads column 'text' (stage 0 (Tokenizer)), which --input does "
        "not have (it has ['id', 'body'])"
    )
    wml = json.loads(WML_DOCUMENT.read_text(encoding="utf-8"))
    wml["entity"]["input_data_schema"]["fields"][1]["type"] = {"type": "array", "elementType": "string"}
    document = tmp_path / "wml.json"
    document.write_text(json.dumps(wml), encoding="utf-8")
    indexed = saved(indexed_model, tmp_path / "indexed")
    assert refusal(spark, PublishRequest(indexed, metadata_location=str(document))) == (
        f"model location {indexed}: the pipeline reads 'text' (stage 1 (Tokenizer)), which --metadata {document} "
        "types as 'array'; the job parses ['string', 'integer', 'long', 'double', 'float', 'boolean'] from a "
        "message's JSON"
    )


def test_refuses_labels_that_do_not_fit_the_classifier(
    spark: SparkSession, hashing_lr_model: PipelineModel, indexed_model: PipelineModel, tmp_path: Path
) -> None:
    location = saved(hashing_lr_model, tmp_path / "m")
    assert refusal(spark, PublishRequest(location, flags=Declared(label_values=("A", "B", "C")))) == (
        f"model location {location}: --labels gives 3 labels ['A', 'B', 'C'] but the classifier (stage 2 "
        "(LogisticRegressionModel)) predicts 2 classes"
    )
    assert refusal(spark, PublishRequest(location)) == (
        f"model location {location}: the pipeline does not name its labels (no StringIndexerModel on the label "
        "column, no IndexToString with labels): give them with --labels NEGATIVE,POSITIVE (label i is prediction i)"
    )
    indexed = saved(indexed_model, tmp_path / "indexed")
    labels = tuple(indexed_model.stages[0].labels)  # type: ignore[attr-defined]
    assert refusal(spark, PublishRequest(indexed, flags=Declared(label_values=labels[::-1]))) == (
        f"model location {indexed}: --labels gives the labels {list(labels[::-1])} but the pipeline's own are "
        f"{list(labels)} (the labels of the IndexToString stage (predictedLabel)); leave them out, or give them in "
        "that order"
    )


def test_refuses_a_pipeline_without_a_predictor(
    spark: SparkSession, hashing_lr_model: PipelineModel, tmp_path: Path
) -> None:
    location = saved(PipelineModel(hashing_lr_model.stages[:2]), tmp_path / "features-only")
    assert refusal(spark, PublishRequest(location, flags=Declared(label_values=BINARY))) == (
        f"model location {location}: no classification model among the stages ['Tokenizer', 'HashingTF']; the job "
        "serves a pipeline whose last model is a classifier (LogisticRegressionModel, NaiveBayesModel, "
        "RandomForestClassificationModel, ...)"
    )


def test_refuses_a_stage_this_spark_cannot_load(
    spark: SparkSession, hashing_lr_model: PipelineModel, tmp_path: Path
) -> None:
    location = saved(hashing_lr_model, tmp_path / "m")
    [stage] = (tmp_path / "m" / "stages").glob("1_*")
    [part] = (stage / "metadata").glob("part-*")
    part.write_text(part.read_text().replace("org.apache.spark.ml.feature.HashingTF", "com.example.ml.Hasher"))
    for crc in (stage / "metadata").glob(".*.crc"):
        crc.unlink()
    assert refusal(spark, PublishRequest(location, flags=Declared(label_values=BINARY))) == (
        f"model location {location}: stage {stage.name} is a com.example.ml.Hasher, which this Spark cannot load: "
        "neither Spark 4.2.0 nor Python knows that class (a stage of another Spark version, or one whose jar and "
        "Python package are not installed)"
    )


def test_refuses_an_input_whose_type_the_pipeline_does_not_tell(spark: SparkSession, tmp_path: Path) -> None:
    train = spark.createDataFrame([("fr", 1.0), ("de", 0.0)] * 4, "country string, label double")
    hasher = FeatureHasher(inputCols=["country"], outputCol="features", numFeatures=16)
    pipeline = PipelineModel([hasher, LogisticRegression(maxIter=5).fit(hasher.transform(train))])
    location = saved(pipeline, tmp_path / "hasher")
    assert refusal(spark, PublishRequest(location, flags=Declared(label_values=BINARY))) == (
        f"model location {location}: cannot tell the type of the input column 'country' (stage 0 (FeatureHasher) "
        "reads it); give the input fields with --input NAME:TYPE or a --metadata document"
    )
    flags = Declared(label_values=BINARY, input_schema=(("id", "integer"), ("country", "string")))
    assert publish(spark, PublishRequest(location, flags=flags)).model.input_fields == (
        ("id", "integer"),
        ("country", "string"),
    )


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        (
            (("id", "integer"), ("text", "string"), ("timestamp", "long")),
            "input field 'timestamp' clashes with the job's own columns (the Kafka source's ['key', 'value', "
            "'topic', 'partition', 'offset', 'timestamp'] and names starting with '_'); rename the column in the "
            "pipeline",
        ),
        (
            (("id", "integer"), ("text", "string"), ("probability", "double")),
            "input field 'probability' clashes with a field of the output record (['prediction', 'predictedLabel', "
            "'probability', 'modelName', 'modelVersion', 'scoredAt', 'sourceTopic', 'sourcePartition', "
            "'sourceOffset'])",
        ),
        (
            (("id", "double"), ("text", "string")),
            "field 'input_schema' gives 'id' the type 'double'; the record key must be one of ['integer', 'long', "
            "'string']",
        ),
    ],
)
def test_refuses_input_fields_the_job_cannot_carry(
    spark: SparkSession, hashing_lr_model: PipelineModel, tmp_path: Path, schema: Any, message: str
) -> None:
    location = saved(hashing_lr_model, tmp_path / "m")
    got = refusal(spark, PublishRequest(location, flags=Declared(label_values=BINARY, input_schema=schema)))
    assert got == f"model location {location}: {message}"


def test_refuses_a_pipeline_that_fails_on_a_generated_message(
    spark: SparkSession, hashing_lr_model: PipelineModel, tmp_path: Path
) -> None:
    location = saved(hashing_lr_model, tmp_path / "m")
    flags = Declared(label_values=BINARY, input_schema=(("id", "integer"), ("text", "integer")))
    got = refusal(spark, PublishRequest(location, flags=flags))
    assert got.startswith(f"model location {location}: scoring a generated message {{'id': 1, 'text': 1}} failed: "), (
        got
    )
    assert "Input type must be string type but got int" in got, got


def test_refuses_replacing_another_version_unless_asked(
    spark: SparkSession, hashing_lr_model: PipelineModel, tmp_path: Path
) -> None:
    location = saved(hashing_lr_model, tmp_path / "m")
    first = publish(spark, PublishRequest(location, flags=Declared(label_values=BINARY)))
    other = Declared(label_values=("POSITIVE", "NEGATIVE"))
    got = refusal(spark, PublishRequest(location, flags=other))
    assert re.fullmatch(
        rf"model location {location}: its model\.json describes version {first.model.version} \('m'\); "
        r"publishing gives version [0-9a-f]{12}; pass --overwrite to replace it",
        got,
    ), got
    assert model_json(location)["label_values"] == list(BINARY)  # nothing written
    replaced = publish(spark, PublishRequest(location, flags=other, overwrite=True))
    assert replaced.outcome == f"replaced {first.model.version}"
    assert load_model(spark, location).label_values == ("POSITIVE", "NEGATIVE")


def test_refuses_outputs_it_must_not_touch(
    spark: SparkSession, hashing_lr_model: PipelineModel, tmp_path: Path
) -> None:
    location = saved(hashing_lr_model, tmp_path / "m")
    flags = Declared(label_values=BINARY)
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    assert refusal(spark, PublishRequest(location, output=str(busy), flags=flags)) == (
        f"output {busy} already exists; pass --overwrite to replace it"
    )
    assert refusal(spark, PublishRequest(location, output=str(busy), flags=flags, overwrite=True)) == (
        f"output {busy} holds ['notes.txt'], which a model folder does not; not replacing it"
    )
    assert refusal(spark, PublishRequest(location, output=location + "/", flags=flags)) == (
        f"--output {location}/ is the pipeline's own location; leave --output out to publish in place"
    )
    missing = tmp_path / "no-such.json"
    assert refusal(spark, PublishRequest(location, metadata_location=str(missing), flags=flags)) == (
        f"--metadata {missing}: no such file"
    )
    assert (busy / "notes.txt").read_text() == "mine"


# --- the filler of a categorical input --------------------------------------------------------------------


def test_an_indexed_input_that_fails_on_unknown_values_still_passes_the_check(
    spark: SparkSession, tmp_path: Path
) -> None:
    # handleInvalid='error' (the default): an invalid message scored on an empty string would fail the batch.
    train = spark.createDataFrame([("fr", 1.0), ("de", 0.0), ("fr", 1.0), ("uk", 0.0)], "country string, label double")
    indexer = StringIndexer(inputCol="country", outputCol="country_ix").fit(train)
    assembler = VectorAssembler(inputCols=["country_ix"], outputCol="features")
    pipeline = PipelineModel([indexer, assembler])
    model = PipelineModel([indexer, assembler, LogisticRegression(maxIter=5).fit(pipeline.transform(train))])
    location = saved(model, tmp_path / "country")
    published = publish(spark, PublishRequest(location, flags=Declared(label_values=BINARY)))
    assert published.model.input_fields == (("id", "integer"), ("country", "string"))
    assert dict(published.model.facts.known_values) == {"country": "fr"}


# --- show and the command line ---------------------------------------------------------------------------


def test_show_says_what_a_deployment_would_use(
    spark: SparkSession, indexed_model: PipelineModel, tmp_path: Path
) -> None:
    location = saved(indexed_model, tmp_path / "indexed")
    model = publish(spark, PublishRequest(location, metadata_location=str(WML_DOCUMENT))).model
    first, second = indexed_model.stages[0].labels  # type: ignore[attr-defined]
    assert show_lines(model) == [
        f"Sentiment Prediction, version {model.version}",
        f"  location        {location}",
        f"  labels          0 {first}, 1 {second}",
        "  predictedLabel  the pipeline's column 'predictedLabel' (IndexToString)",
        "  probability     probability[prediction]",
        "  input fields    id integer (the record key), text string  (parsed from each message's JSON)",
        "  description     Sentiment of a tweet from its text",
        '  author          {"name": "Jane Doe", "email": "jane.doe@example.com"}',
        f"  created at      {model.metadata.raw['created_at']}",
        "  stages",
        "    0 StringIndexerModel (sentiment -> label)",
        "    1 Tokenizer (text -> words)",
        "    2 HashingTF (words -> features)",
        "    3 LogisticRegressionModel (features -> prediction, probability, rawPrediction; 2 classes)",
        "    4 IndexToString (prediction -> predictedLabel)",
    ]
    described = describe_model(model)
    assert described["predicted_label"] == {"from": "pipeline", "column": "predictedLabel"}
    assert described["input_schema"] == [{"name": "id", "type": "integer"}, {"name": "text", "type": "string"}]
    assert [s["class"] for s in described["stages"]][-1] == "org.apache.spark.ml.feature.IndexToString"


def test_the_commands_publish_show_and_refuse(
    spark: SparkSession, three_class_model: PipelineModel, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = saved(three_class_model, tmp_path / "three")
    output = str(tmp_path / "published")
    argv = ["model", "publish", source, "--output", output, "--name", "Three", "--labels", "NEGATIVE,NEUTRAL,POSITIVE"]
    assert main.cli(argv) == 0
    printed = capsys.readouterr().out
    version = load_model(spark, output).version
    assert printed.startswith(f"published 'Three' version {version} at {output}\n")
    assert "  labels          0 NEGATIVE, 1 NEUTRAL, 2 POSITIVE\n" in printed
    assert f"Deploy it with `model: {{location: {output}}}` in the spec (or --model {output})." in printed

    assert main.cli(["model", "show", output, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["name"], shown["version"], shown["labels"]) == ("Three", version, list(THREE))
    assert shown["num_classes"] == 3

    assert main.cli(["model", "publish", source, "--labels", "A,B"]) == 1
    assert capsys.readouterr().err == (
        f"error: model location {source}: --labels gives 2 labels ['A', 'B'] but the classifier (stage 2 "
        "(LogisticRegressionModel)) predicts 3 classes\n"
    )
    assert main.cli(["model", "publish", source, "--input", "text"]) == 1
    assert capsys.readouterr().err == (
        "error: --input 'text': expected NAME:TYPE with TYPE one of ['string', 'integer', 'long', 'double', "
        "'float', 'boolean']\n"
    )
    shutil.rmtree(Path(output) / "stages")
    assert main.cli(["model", "show", output]) == 1
    assert capsys.readouterr().err.startswith(f"error: model location {output}: ")
    assert spark.range(1).count() == 1  # the command used the running session and left it running


THREE = ("NEGATIVE", "NEUTRAL", "POSITIVE")
