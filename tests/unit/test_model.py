"""Model loading: save/reload round trip, model.json, label mapping, the shipped model and every refusal."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from chispa import assert_approx_df_equality, assert_column_equality, assert_df_equality
from pyspark.ml import PipelineModel
from pyspark.ml.functions import vector_to_array
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from job.runtime import storage
from job.runtime.model import (
    LoadedModel,
    ModelError,
    ModelMetadata,
    label_for_prediction,
    load_model,
)
from job.tools.demo import DEMO_TWEETS
from tests.paths import SHIPPED_MODEL
from tests.pipelines import classifier

INPUT = [(1, "love this great day"), (2, "hate this sad day"), (3, "so happy"), (4, "awful and boring")]


def metadata_doc(**overrides: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": "Sentiment Prediction",
        "description": "tiny test model",
        "author": "tests",
        "version": "0123456789ab",
        "created_at": "2026-11-27T10:00:00Z",
        "model_type": "sparkml-pipeline",
        "label_column": "label",
        "label_values": ["NEGATIVE", "POSITIVE"],
        "input_schema": [{"name": "id", "type": "integer"}, {"name": "text", "type": "string"}],
        "evaluation": {"accuracy": 1.0},
    }
    doc.update(overrides)
    return doc


@pytest.fixture
def input_df(spark: SparkSession) -> DataFrame:
    return spark.createDataFrame(INPUT, "id int, text string")


def save_model(model: PipelineModel, folder: Path, doc: dict[str, Any] | None = None) -> str:
    model.write().save(str(folder))
    if doc is not None:
        (folder / "model.json").write_text(json.dumps(doc), encoding="utf-8")
    return str(folder)


def scores(model: PipelineModel, df: DataFrame) -> DataFrame:
    return model.transform(df).select("id", "prediction", vector_to_array(F.col("probability")).alias("probability"))


# --- save / reload -------------------------------------------------------------------------------------


def test_saved_pipeline_reloads_with_identical_scores(
    spark: SparkSession, tiny_pipeline: PipelineModel, input_df: DataFrame, tmp_path: Path
) -> None:
    location = save_model(tiny_pipeline, tmp_path / "m")
    reloaded = PipelineModel.load(location)

    before, after = scores(tiny_pipeline, input_df), scores(reloaded, input_df)
    assert_df_equality(before.select("id", "prediction"), after.select("id", "prediction"))
    assert_approx_df_equality(before, after, precision=1e-12)
    # The tiny model does learn: the unambiguous inputs get the expected classes.
    assert [r.prediction for r in before.orderBy("id").collect()] == [1.0, 0.0, 1.0, 0.0]


def test_load_model_returns_pipeline_metadata_and_location(
    spark: SparkSession, tiny_pipeline: PipelineModel, input_df: DataFrame, tmp_path: Path
) -> None:
    location = save_model(tiny_pipeline, tmp_path / "m", metadata_doc())

    model = load_model(spark, location)

    assert isinstance(model, LoadedModel)
    assert model.location == location
    assert model.input_columns() == ("text",)
    assert model.metadata == ModelMetadata.from_json(json.dumps(metadata_doc()), source="expected")
    assert_approx_df_equality(scores(model.pipeline, input_df), scores(tiny_pipeline, input_df), precision=1e-12)


def test_load_model_accepts_a_file_uri_as_given(
    spark: SparkSession, tiny_pipeline: PipelineModel, tmp_path: Path
) -> None:
    location = tmp_path.joinpath("m").as_uri()  # file:///...
    save_model(tiny_pipeline, tmp_path / "m", metadata_doc())

    model = load_model(spark, location)

    assert model.location == location
    assert model.metadata.version == "0123456789ab"


# --- model.json ----------------------------------------------------------------------------------------


def test_metadata_round_trip_through_a_file(spark: SparkSession, tmp_path: Path) -> None:
    original = ModelMetadata.from_json(json.dumps(metadata_doc()), source="test")
    uri = str(tmp_path / "model.json")

    storage.write_text(spark, uri, original.to_json())
    again = ModelMetadata.from_json(storage.read_text(spark, uri) or "", source=uri)

    assert again == original
    assert again.name == "Sentiment Prediction"
    assert again.version == "0123456789ab"
    assert again.label_column == "label"
    assert again.label_values == ("NEGATIVE", "POSITIVE")
    assert again.input_schema == (("id", "integer"), ("text", "string"))
    assert again.raw["evaluation"] == {"accuracy": 1.0}
    # Written without a hidden checksum file, so a hand edit does not break the next read.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object, found list"),
        (json.dumps({k: v for k, v in metadata_doc().items() if k != "version"}), "field 'version' is missing"),
        (json.dumps(metadata_doc(name="")), "field 'name' must be a non-empty string"),
        (json.dumps(metadata_doc(label_values=["ONLY"])), "field 'label_values' must be a list of at least two"),
        (json.dumps(metadata_doc(label_values=["A", 1])), "field 'label_values' must be a list of at least two"),
        (json.dumps(metadata_doc(label_values=["A", "A"])), "field 'label_values' has duplicates"),
        (json.dumps(metadata_doc(input_schema=[])), "field 'input_schema' must be a non-empty list"),
        (json.dumps(metadata_doc(input_schema=[{"name": "text"}])), "field 'input_schema[0]' must be an object"),
        (
            json.dumps(metadata_doc(input_schema=[{"name": "text", "type": "varchar"}])),
            "field 'input_schema[0]' ('text') has type 'varchar'; expected one of",
        ),
        (
            json.dumps(metadata_doc(input_schema=[{"name": "a", "type": "string"}, {"name": "a", "type": "long"}])),
            "field 'input_schema' names a column twice",
        ),
        (
            json.dumps(metadata_doc(input_schema=[{"name": "text", "type": "string"}])),
            "field 'input_schema' has no 'id' field; every message needs one, as it keys the output record",
        ),
        (
            json.dumps(
                metadata_doc(input_schema=[{"name": "id", "type": "double"}, {"name": "text", "type": "string"}])
            ),
            "field 'input_schema' gives 'id' the type 'double'; the record key must be one of ['integer', 'long', 'string']",
        ),
        (
            json.dumps(metadata_doc(output_columns={"prediction": 3})),
            "field 'output_columns' must be an object with keys among ['prediction', 'probability', 'predicted_label', 'raw_prediction']",
        ),
        (
            json.dumps(metadata_doc(output_columns={"score": "prediction"})),
            "field 'output_columns' must be an object with keys among",
        ),
    ],
)
def test_metadata_refuses_bad_documents_naming_the_field(text: str, message: str) -> None:
    with pytest.raises(ModelError) as error:
        ModelMetadata.from_json(text, source="s3a://bucket/m/model.json")
    assert str(error.value).startswith("s3a://bucket/m/model.json: ")
    assert message in str(error.value)


# --- label mapping -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("label_values", "expected"),
    [
        (["NEGATIVE", "POSITIVE"], ["NEGATIVE", "POSITIVE", "POSITIVE", None]),
        (["POSITIVE", "NEGATIVE"], ["POSITIVE", "NEGATIVE", "NEGATIVE", None]),
    ],
)
def test_label_for_prediction_maps_index_to_label(
    spark: SparkSession, label_values: list[str], expected: list[str | None]
) -> None:
    # The last row is out of range: null rather than a failed query.
    df = spark.createDataFrame(
        list(zip([0.0, 1.0, 1.0, 2.0], expected, strict=True)), "prediction double, expected string"
    )
    out = df.withColumn("label", label_for_prediction(label_values)(F.col("prediction")))
    assert_column_equality(out, "label", "expected")


# --- the committed model -------------------------------------------------------------------------------

SMOKE = [
    (1, "I love this, what a wonderful day!", "POSITIVE"),
    (2, "This is terrible, I hate it and feel awful", "NEGATIVE"),
    (3, "Had an amazing time with my best friends tonight, so happy", "POSITIVE"),
    (4, "I'm so sad and tired, worst day ever", "NEGATIVE"),
    (5, "Thank you so much, you are the best!", "POSITIVE"),
    (6, "My phone broke and I missed the bus. Ugh, I hate Mondays", "NEGATIVE"),
    (7, "@user thanks for the great advice, really appreciate it", "POSITIVE"),
    (8, "I miss you so much, feeling lonely and sick", "NEGATIVE"),
]


def test_shipped_model_loads_and_labels_clear_tweets(spark: SparkSession) -> None:
    model = load_model(spark, str(SHIPPED_MODEL))

    assert model.metadata.name == "Sentiment Prediction"
    assert model.metadata.label_values == ("NEGATIVE", "POSITIVE")
    assert model.input_columns() == ("text",)
    assert [type(s).__name__ for s in model.pipeline.stages] == [
        "RegexTokenizer",
        "HashingTF",
        "LogisticRegressionModel",
    ]
    df = spark.createDataFrame(SMOKE, "id int, text string, expected string")
    scored = model.pipeline.transform(df.select("id", "text")).join(df.select("id", "expected"), "id")
    p_label = F.get(vector_to_array(F.col("probability")), F.col("prediction").cast("int"))
    out = scored.select(
        "id",
        "expected",
        label_for_prediction(model.metadata.label_values)(F.col("prediction")).alias("label"),
        (p_label > 0.8).alias("confident"),
    ).orderBy("id")
    assert_column_equality(out, "label", "expected")
    assert [r.confident for r in out.collect()] == [True] * len(SMOKE)


# The demo's tweets as job/tools/demo.py sends them: twelve plainly positive, then twelve plainly negative.
DEMO_EXPECTED = ["POSITIVE"] * 12 + ["NEGATIVE"] * 12


def test_shipped_model_labels_every_demo_tweet_right(spark: SparkSession) -> None:
    assert len(DEMO_TWEETS) == len(DEMO_EXPECTED)
    model = load_model(spark, str(SHIPPED_MODEL))
    df = spark.createDataFrame(
        [(i, text, expected) for i, (text, expected) in enumerate(zip(DEMO_TWEETS, DEMO_EXPECTED, strict=True))],
        "id int, text string, expected string",
    )

    scored = model.pipeline.transform(df)

    out = scored.select(
        "id", "expected", label_for_prediction(model.metadata.label_values)(F.col("prediction")).alias("label")
    ).orderBy("id")
    assert_column_equality(out, "label", "expected")


# --- refusals ------------------------------------------------------------------------------------------


def test_refuses_missing_folder(spark: SparkSession, tmp_path: Path) -> None:
    location = str(tmp_path / "no-such-model")
    with pytest.raises(ModelError, match=r"model location .*no-such-model: no such folder"):
        load_model(spark, location)


def test_refuses_a_file(spark: SparkSession, tmp_path: Path) -> None:
    path = tmp_path / "model.zip"
    path.write_bytes(b"PK")
    with pytest.raises(ModelError, match=r"model\.zip: is a file, expected a folder"):
        load_model(spark, str(path))


def test_refuses_folder_that_is_not_a_spark_model(spark: SparkSession, tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "model.pkl").write_bytes(b"\x80\x04")
    (folder / "model.json").write_text(json.dumps(metadata_doc()), encoding="utf-8")
    with pytest.raises(ModelError) as error:
        load_model(spark, str(folder))
    assert str(error.value) == (
        f"model location {folder}: not a saved Spark ML PipelineModel (no readable metadata/ folder; "
        "found ['model.json', 'model.pkl'])"
    )


def test_refuses_a_single_saved_logistic_regression_model(
    spark: SparkSession, tiny_pipeline: PipelineModel, tmp_path: Path
) -> None:
    folder = tmp_path / "lr"
    classifier(tiny_pipeline).write().save(str(folder))
    (folder / "model.json").write_text(json.dumps(metadata_doc()), encoding="utf-8")
    with pytest.raises(ModelError) as error:
        load_model(spark, str(folder))
    assert (
        f"model location {folder}: holds a saved org.apache.spark.ml.classification.LogisticRegressionModel, "
        "not a PipelineModel (org.apache.spark.ml.PipelineModel)"
    ) in str(error.value)


def test_refuses_pipeline_without_model_json(spark: SparkSession, tiny_pipeline: PipelineModel, tmp_path: Path) -> None:
    location = save_model(tiny_pipeline, tmp_path / "m")
    with pytest.raises(ModelError, match=rf"model location {location}: no model\.json"):
        load_model(spark, location)


def test_refuses_invalid_model_json_naming_the_file(
    spark: SparkSession, tiny_pipeline: PipelineModel, tmp_path: Path
) -> None:
    doc = metadata_doc()
    del doc["label_values"]
    location = save_model(tiny_pipeline, tmp_path / "m", doc)
    with pytest.raises(ModelError) as error:
        load_model(spark, location)
    assert str(error.value) == f"{location}/model.json: field 'label_values' is missing"


def test_refuses_model_json_not_declaring_the_pipeline_input(
    spark: SparkSession, tiny_pipeline: PipelineModel, tmp_path: Path
) -> None:
    doc = metadata_doc(input_schema=[{"name": "id", "type": "integer"}, {"name": "body", "type": "string"}])
    location = save_model(tiny_pipeline, tmp_path / "m", doc)
    with pytest.raises(ModelError) as error:
        load_model(spark, location)
    assert str(error.value) == (
        f"model location {location}: the pipeline reads column 'text' (stage 0 (Tokenizer)), which the "
        "input_schema of model.json does not declare (it declares ['id', 'body'])"
    )


def test_refuses_label_values_not_matching_the_classes(
    spark: SparkSession, tiny_pipeline: PipelineModel, tmp_path: Path
) -> None:
    location = save_model(tiny_pipeline, tmp_path / "m", metadata_doc(label_values=["NEG", "NEUTRAL", "POS"]))
    with pytest.raises(ModelError) as error:
        load_model(spark, location)
    assert str(error.value) == (
        f"model location {location}: model.json lists 3 label_values ['NEG', 'NEUTRAL', 'POS'] "
        "but the classifier predicts 2 classes"
    )


def test_loaded_model_has_dense_coefficients_and_bit_identical_scores(spark: SparkSession) -> None:
    from tests.integration.messages import GOOD_TEXTS

    loaded = load_model(spark, str(SHIPPED_MODEL))
    as_saved = PipelineModel.load(str(SHIPPED_MODEL))
    assert classifier(loaded.pipeline).coefficients.toArray().tolist() == (
        classifier(as_saved).coefficients.toArray().tolist()
    )
    assert type(classifier(loaded.pipeline).coefficients).__name__ == "DenseVector"
    assert type(classifier(as_saved).coefficients).__name__ == "SparseVector"
    texts = [*GOOD_TEXTS, "", "🎉🎉 émoji ünïcode", "a " * 300, "NOT not n't can't won't !!! ???"]
    df = spark.createDataFrame([(i, t) for i, t in enumerate(texts)], "id int, text string")

    def scores(pipeline: PipelineModel) -> list[tuple[Any, ...]]:
        out = pipeline.transform(df).select("id", "prediction", vector_to_array(F.col("probability")).alias("p"))
        return [(r.id, r.prediction, r.p) for r in out.orderBy("id").collect()]

    assert scores(loaded.pipeline) == scores(as_saved)  # exact equality, not approximate
    assert classifier(loaded.pipeline).getThreshold() == classifier(as_saved).getThreshold()


# --- model.json against the pipeline (issue 14) ----------------------------------------------------------


def indexed_doc(indexed_model: PipelineModel, **overrides: Any) -> dict[str, Any]:
    labels = list(indexed_model.stages[0].labels)  # type: ignore[attr-defined]
    return metadata_doc(**{"label_column": "sentiment", "label_values": labels, **overrides})


def test_a_pipeline_with_its_own_labels_loads_with_them(
    spark: SparkSession, indexed_model: PipelineModel, tmp_path: Path
) -> None:
    doc = indexed_doc(indexed_model, output_columns={"prediction": "prediction", "predicted_label": "predictedLabel"})
    model = load_model(spark, save_model(indexed_model, tmp_path / "m", doc))
    assert model.label_values == tuple(doc["label_values"])
    assert model.predicted_label_column == "predictedLabel"
    assert (model.prediction_column, model.probability_column) == ("prediction", "probability")
    assert model.input_fields == (("id", "integer"), ("text", "string"))
    assert (model.name, model.version) == ("Sentiment Prediction", "0123456789ab")


def test_refuses_label_values_other_than_the_pipelines_own(
    spark: SparkSession, indexed_model: PipelineModel, tmp_path: Path
) -> None:
    labels = list(indexed_model.stages[0].labels)  # type: ignore[attr-defined]
    location = save_model(indexed_model, tmp_path / "m", indexed_doc(indexed_model, label_values=labels[::-1]))
    with pytest.raises(ModelError) as error:
        load_model(spark, location)
    assert str(error.value) == (
        f"model location {location}: model.json lists label_values {labels[::-1]} but the pipeline's own labels "
        f"(the labels of the IndexToString stage (predictedLabel)) are {labels}"
    )


def test_refuses_output_columns_other_than_the_pipelines(
    spark: SparkSession, indexed_model: PipelineModel, tmp_path: Path
) -> None:
    doc = indexed_doc(indexed_model, output_columns={"predicted_label": "label_text"})
    location = save_model(indexed_model, tmp_path / "m", doc)
    with pytest.raises(ModelError) as error:
        load_model(spark, location)
    assert str(error.value) == (
        f"model location {location}: model.json gives output_columns.predicted_label 'label_text' but the "
        "pipeline's is 'predictedLabel'"
    )


def test_refuses_a_label_column_the_classifier_did_not_learn_from(
    spark: SparkSession, indexed_model: PipelineModel, tmp_path: Path
) -> None:
    location = save_model(indexed_model, tmp_path / "m", indexed_doc(indexed_model, label_column="mood"))
    with pytest.raises(ModelError) as error:
        load_model(spark, location)
    assert str(error.value) == (
        f"model location {location}: the metadata names the label column 'mood', but the classifier learnt from "
        "'sentiment' (indexed into 'label')"
    )


def _rename_stage_class(location: Path, stage_prefix: str, java_class: str) -> str:
    [stage] = [p for p in (location / "stages").iterdir() if p.name.startswith(stage_prefix)]
    [part] = [p for p in (stage / "metadata").iterdir() if p.name.startswith("part-")]
    doc = json.loads(part.read_text(encoding="utf-8"))
    doc["class"] = java_class
    part.write_text(json.dumps(doc) + "\n", encoding="utf-8")
    for crc in (stage / "metadata").glob(".*.crc"):
        crc.unlink()  # Hadoop would otherwise refuse the edited file as corrupt
    return stage.name


@pytest.mark.parametrize(
    ("java_class", "reason"),
    [
        (
            "org.apache.spark.ml.feature.SentencePieceTokenizer",
            "neither Spark 4.2.0 nor Python knows that class (a stage of another Spark version, or one whose jar "
            "and Python package are not installed)",
        ),
        ("pyspark.ml.feature.Tokenizer", "the JVM has no such class: add the jar that holds it (spark-submit --jars)"),
    ],
)
def test_refuses_a_stage_this_spark_cannot_load_naming_it(
    spark: SparkSession, tiny_pipeline: PipelineModel, tmp_path: Path, java_class: str, reason: str
) -> None:
    location = save_model(tiny_pipeline, tmp_path / "m", metadata_doc())
    folder = _rename_stage_class(tmp_path / "m", "0_", java_class)
    with pytest.raises(ModelError) as error:
        load_model(spark, location)
    assert str(error.value) == (
        f"model location {location}: stage {folder} is a {java_class}, which this Spark cannot load: {reason}"
    )
