"""Scoring transforms on static DataFrames: exact parsed rows, dead-letter reasons, labels and probabilities."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from datetime import datetime

import pytest
from chispa import assert_approx_df_equality, assert_df_equality
from pyspark.ml import PipelineModel
from pyspark.ml.functions import vector_to_array
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from job.runtime import scoring
from job.runtime.scoring import InputField, ModelInfo
from tests.pipelines import classifier

FIELDS = [InputField("id", "integer"), InputField("text", "string")]
INFO = ModelInfo(
    name="Sentiment Prediction", version="abc123", label_values=("NEGATIVE", "POSITIVE"), input_fields=tuple(FIELDS)
)
KAFKA_SCHEMA = "key binary, value binary, topic string, partition int, offset long, timestamp timestamp"
T0 = datetime(2026, 11, 27, 10, 0, 0)


def kafka_rows(spark: SparkSession, values: Sequence[bytes | None], key: bytes | None = b"k") -> DataFrame:
    rows = [(key, v, "tweets", 0, offset, T0) for offset, v in enumerate(values)]
    return spark.createDataFrame(rows, KAFKA_SCHEMA)


def msg(obj: object) -> bytes:
    return json.dumps(obj).encode()


def test_parse_gives_typed_fields_for_good_messages_and_a_reason_for_each_bad_kind(spark: SparkSession) -> None:
    values: list[bytes | None] = [
        msg({"id": 1, "text": "I love it"}),
        msg({"id": 2, "text": "ok", "lang": "en"}),  # extra fields are ignored
        None,
        b"x" * 101,
        b'{"id": 3, "text": "caf\xe9"}',
        b"{not json",
        b"[1, 2]",
        b'"just a string"',
        msg({"text": "no id"}),
        msg({"id": 4}),
        msg({"id": None, "text": "x"}),
        msg({"id": 5, "text": None}),
        msg({"id": "6", "text": "x"}),
        msg({"id": 7.5, "text": "x"}),
        msg({"id": 2**40, "text": "x"}),
        msg({"id": 8, "text": 42}),
        msg({"id": 9, "text": "y" * 21}),
        msg({"id": 10, "text": "   "}),
        msg({"id": 11, "text": ""}),
    ]
    parsed = kafka_rows(spark, values).transform(
        scoring.parse_messages(FIELDS, max_text_length=20, max_message_bytes=100)
    )
    actual = parsed.select("offset", "id", "text", scoring.ERROR_CODE, scoring.ERROR_REASON)
    expected = spark.createDataFrame(
        [
            (0, 1, "I love it", None, None),
            (1, 2, "ok", None, None),
            (2, None, None, "TOMBSTONE", "the message has no value (a tombstone)"),
            (3, None, None, "OVERSIZED", "the value is 101 bytes, over the limit of 100"),
            (4, None, None, "INVALID_UTF8", "the value is not valid UTF-8"),
            (5, None, None, "NOT_JSON", "the value is not valid JSON"),
            (6, None, None, "NOT_AN_OBJECT", "the JSON value is not an object"),
            (7, None, None, "NOT_AN_OBJECT", "the JSON value is not an object"),
            (8, None, None, "MISSING_FIELD", "field 'id' is missing"),
            (9, None, None, "MISSING_FIELD", "field 'text' is missing"),
            (10, None, None, "NULL_FIELD", "field 'id' is null"),
            (11, None, None, "NULL_FIELD", "field 'text' is null"),
            (12, None, None, "WRONG_TYPE", "field 'id' must be an integer from -2147483648 to 2147483647, found string"),
            (13, None, None, "WRONG_TYPE", "field 'id' must be an integer from -2147483648 to 2147483647, found decimal(2,1)"),
            (14, None, None, "WRONG_TYPE", "field 'id' must be an integer from -2147483648 to 2147483647, found bigint"),
            (15, None, None, "WRONG_TYPE", "field 'text' must be a string, found bigint"),
            (16, None, None, "TEXT_TOO_LONG", "field 'text' has 21 characters, over the limit of 20"),
            (17, None, None, "EMPTY_TEXT", "field 'text' is empty or only whitespace"),
            (18, None, None, "EMPTY_TEXT", "field 'text' is empty or only whitespace"),
        ],
        f"offset long, id int, text string, {scoring.ERROR_CODE} string, {scoring.ERROR_REASON} string",
    )  # fmt: skip
    assert_df_equality(actual, expected, ignore_nullable=True)


def test_score_matches_a_direct_model_transform(spark: SparkSession, tiny_pipeline: PipelineModel) -> None:
    texts = ["i love this great day", "i hate this awful day", "happy happy", "sad and bad"]
    values = [msg({"id": i, "text": t}) for i, t in enumerate(texts)]
    scored = (
        kafka_rows(spark, values)
        .transform(scoring.parse_messages(FIELDS, 100, 1000))
        .transform(scoring.score(tiny_pipeline, INFO))
        .select("id", scoring.PREDICTION, scoring.PREDICTED_LABEL, scoring.PROBABILITY)
    )
    direct = tiny_pipeline.transform(spark.createDataFrame(list(enumerate(texts)), "id int, text string"))
    labels = F.array(F.lit("NEGATIVE"), F.lit("POSITIVE"))
    expected = direct.select(
        "id",
        F.col("prediction").alias(scoring.PREDICTION),
        F.element_at(labels, F.col("prediction").cast("int") + 1).alias(scoring.PREDICTED_LABEL),
        F.element_at(vector_to_array(F.col("probability")), F.col("prediction").cast("int") + 1).alias(
            scoring.PROBABILITY
        ),
    )
    assert_approx_df_equality(scored, expected, precision=1e-12, ignore_nullable=True)
    # The tiny model is not a toy in one respect: it must get these four right.
    assert [r[scoring.PREDICTED_LABEL] for r in scored.orderBy("id").collect()] == [
        "POSITIVE",
        "NEGATIVE",
        "POSITIVE",
        "NEGATIVE",
    ]


def test_probability_is_the_predicted_labels_own_even_below_one_half(
    spark: SparkSession, tiny_pipeline: PipelineModel
) -> None:
    # With a threshold above a clearly positive text's probability, the text is predicted NEGATIVE; its record
    # carries the probability of NEGATIVE (below 0.5), not the larger probability of the label not predicted.
    [direct] = tiny_pipeline.transform(spark.createDataFrame([("happy happy",)], "text string")).collect()
    positive = float(direct.probability[1])
    assert positive > 0.5
    cautious = tiny_pipeline.copy()
    classifier(cautious).setThreshold((1 + positive) / 2)
    [row] = (
        kafka_rows(spark, [msg({"id": 1, "text": "happy happy"})])
        .transform(scoring.parse_messages(FIELDS, 100, 1000))
        .transform(scoring.score(cautious, INFO))
        .collect()
    )
    assert row[scoring.PREDICTED_LABEL] == "NEGATIVE"
    assert row[scoring.PROBABILITY] == pytest.approx(1 - positive, abs=1e-12)


def test_label_mapping_follows_the_model_metadata(spark: SparkSession, tiny_pipeline: PipelineModel) -> None:
    flipped = ModelInfo("m", "v", ("POSITIVE", "NEGATIVE"), tuple(FIELDS))  # a model whose index 0 means POSITIVE
    df = kafka_rows(spark, [msg({"id": 1, "text": "i love this great day"})]).transform(
        scoring.parse_messages(FIELDS, 100, 1000)
    )
    [row] = df.transform(scoring.score(tiny_pipeline, flipped)).collect()
    assert (row[scoring.PREDICTION], row[scoring.PREDICTED_LABEL]) == (1.0, "NEGATIVE")


def test_kafka_records_for_good_and_bad_messages_in_one_batch(
    spark: SparkSession, tiny_pipeline: PipelineModel
) -> None:
    values = [msg({"id": 7, "text": "i love this great day"}), b"\xff\xfe bad", None, msg({"id": 8, "text": ""})]
    rows = [
        (b"k7", values[0], "tweets", 1, 40, T0),
        (bytes([0x80, 0x81]), values[1], "tweets", 1, 41, T0),
        (b"gone", values[2], "tweets", 0, 42, T0),
        (None, values[3], "tweets", 0, 43, T0),
    ]
    df = spark.createDataFrame(rows, KAFKA_SCHEMA)
    records = df.transform(
        scoring.scoring_pipeline(tiny_pipeline, INFO, "dep-1", "scored", "scored.dlq", 100, 1000)
    ).collect()
    assert [(r.topic, r.key) for r in records] == [
        ("scored", bytearray(b"7")),
        ("scored.dlq", bytearray([0x80, 0x81])),
        ("scored.dlq", bytearray(b"gone")),
        ("scored.dlq", None),
    ]
    scored = json.loads(records[0].value)
    scored_at = scored.pop("scoredAt")
    probability = scored.pop("probability")
    assert scored == {
        "id": 7,
        "text": "i love this great day",
        "prediction": 1.0,
        "predictedLabel": "POSITIVE",
        "modelName": "Sentiment Prediction",
        "modelVersion": "abc123",
        "sourceTopic": "tweets",
        "sourcePartition": 1,
        "sourceOffset": 40,
    }
    [direct] = tiny_pipeline.transform(spark.createDataFrame([("i love this great day",)], "text string")).collect()
    assert probability == pytest.approx(direct.probability[1], abs=1e-12)
    assert datetime.fromisoformat(scored_at).tzinfo is not None

    dead = [json.loads(r.value) for r in records[1:]]
    for d in dead:
        assert datetime.fromisoformat(d.pop("rejectedAt")).tzinfo is not None
    assert dead == [
        {
            "errorCode": "INVALID_UTF8",
            "errorReason": "the value is not valid UTF-8",
            "deployment": "dep-1",
            "sourceTopic": "tweets",
            "sourcePartition": 1,
            "sourceOffset": 41,
            "sourceTimestamp": "2026-11-27T10:00:00.000Z",
            "key": base64.b64encode(bytes([0x80, 0x81])).decode(),
            "keyEncoding": "base64",
            "value": base64.b64encode(b"\xff\xfe bad").decode(),
            "valueEncoding": "base64",
        },
        {
            "errorCode": "TOMBSTONE",
            "errorReason": "the message has no value (a tombstone)",
            "deployment": "dep-1",
            "sourceTopic": "tweets",
            "sourcePartition": 0,
            "sourceOffset": 42,
            "sourceTimestamp": "2026-11-27T10:00:00.000Z",
            "key": "gone",
            "keyEncoding": "utf-8",
            "value": None,
            "valueEncoding": None,
        },
        {
            "errorCode": "EMPTY_TEXT",
            "errorReason": "field 'text' is empty or only whitespace",
            "deployment": "dep-1",
            "sourceTopic": "tweets",
            "sourcePartition": 0,
            "sourceOffset": 43,
            "sourceTimestamp": "2026-11-27T10:00:00.000Z",
            "key": None,
            "keyEncoding": None,
            "value": '{"id": 8, "text": ""}',
            "valueEncoding": "utf-8",
        },
    ]


def test_the_transforms_add_no_python_udf(spark: SparkSession, tiny_pipeline: PipelineModel) -> None:
    df = kafka_rows(spark, [msg({"id": 1, "text": "x"})]).transform(
        scoring.scoring_pipeline(tiny_pipeline, INFO, "d", "o", "o.dlq", 100, 1000)
    )
    plan = df._jdf.queryExecution().executedPlan().toString()
    assert "BatchEvalPython" not in plan and "ArrowEvalPython" not in plan


def test_the_json_value_is_parsed_once_per_row(spark: SparkSession) -> None:
    # Written as one expression, Spark inlined the parse into each of the dozen checks (measured ~10x slower).
    parsed = kafka_rows(spark, [msg({"id": 1, "text": "x"})]).transform(scoring.parse_messages(FIELDS, 100, 1000))
    plan = parsed._jdf.queryExecution().optimizedPlan().toString()
    assert plan.count("VariantExpressionEvalUtils.parseJson(") == 1, plan


# --- any model's input fields and labels (issue 14) ------------------------------------------------------


def test_parse_takes_each_type_a_model_input_may_have(spark: SparkSession) -> None:
    fields = [
        InputField("id", "long"),
        InputField("stars", "double"),
        InputField("ratio", "float"),
        InputField("verified", "boolean"),
        InputField("note", "string"),
    ]
    values: list[bytes | None] = [
        msg({"id": 2**40, "stars": 4.5, "ratio": 0.25, "verified": True, "note": ""}),  # no `text`: no text checks
        msg({"id": 1, "stars": 4, "ratio": 1, "verified": False, "note": "x"}),  # integers are numbers
        b'{"id": 2, "stars": 1e300, "ratio": 0.5, "verified": true, "note": "y"}',  # beyond decimal: a double
        msg({"id": 3, "stars": "4.5", "ratio": 0.5, "verified": True, "note": "x"}),
        msg({"id": 4, "stars": 4.5, "ratio": 0.5, "verified": "yes", "note": "x"}),
        msg({"id": 5.5, "stars": 4.5, "ratio": 0.5, "verified": True, "note": "x"}),
        msg({"id": 6, "stars": 4.5, "ratio": 0.5, "verified": True}),
    ]
    parsed = kafka_rows(spark, values).transform(scoring.parse_messages(fields, 5, 1000))
    actual = parsed.select(
        "offset", "id", "stars", "ratio", "verified", "note", scoring.ERROR_CODE, scoring.ERROR_REASON
    )
    expected = spark.createDataFrame(
        [
            (0, 2**40, 4.5, 0.25, True, "", None, None),
            (1, 1, 4.0, 1.0, False, "x", None, None),
            (2, 2, 1e300, 0.5, True, "y", None, None),
            (3, None, None, None, None, None, "WRONG_TYPE", "field 'stars' must be a number, found string"),
            (4, None, None, None, None, None, "WRONG_TYPE", "field 'verified' must be true or false, found string"),
            (5, None, None, None, None, None, "WRONG_TYPE", "field 'id' must be an integer, found decimal(2,1)"),
            (6, None, None, None, None, None, "MISSING_FIELD", "field 'note' is missing"),
        ],
        f"offset long, id long, stars double, ratio float, verified boolean, note string, {scoring.ERROR_CODE} string, "
        f"{scoring.ERROR_REASON} string",
    )
    assert_df_equality(actual, expected, ignore_nullable=True)


def info_for(fields: Sequence[InputField], labels: Sequence[str], **kwargs: object) -> ModelInfo:
    return ModelInfo("m", "v1", tuple(labels), tuple(fields), **kwargs)  # type: ignore[arg-type]


def test_the_pipelines_own_label_column_is_used_as_it_is(spark: SparkSession, indexed_model: PipelineModel) -> None:
    labels = tuple(indexed_model.stages[0].labels)  # type: ignore[attr-defined]
    # Labels given in the wrong order on purpose: the record must carry the pipeline's own column.
    info = info_for(FIELDS, labels[::-1], predicted_label_column="predictedLabel")
    texts = ["i love this great day", "i hate this awful day"]
    rows = (
        kafka_rows(spark, [msg({"id": i, "text": t}) for i, t in enumerate(texts)])
        .transform(scoring.parse_messages(FIELDS, 100, 1000))
        .transform(scoring.score(indexed_model, info))
        .orderBy("id")
        .collect()
    )
    direct = indexed_model.transform(spark.createDataFrame(list(enumerate(texts)), "id int, text string"))
    expected = [(r.prediction, r.predictedLabel) for r in direct.orderBy("id").collect()]
    assert [(r[scoring.PREDICTION], r[scoring.PREDICTED_LABEL]) for r in rows] == expected
    assert [label for _, label in expected] == ["POSITIVE", "NEGATIVE"]


def test_records_carry_every_input_field_and_a_null_probability_without_one(spark: SparkSession) -> None:
    from pyspark.ml.classification import LinearSVC
    from pyspark.ml.feature import VectorAssembler

    train = spark.createDataFrame([(1.0, 1.0), (2.0, 1.0), (-1.0, 0.0), (-2.0, 0.0)], "stars double, label double")
    assembler = VectorAssembler(inputCols=["stars"], outputCol="features")
    svm = PipelineModel([assembler, LinearSVC(maxIter=10).fit(assembler.transform(train))])
    fields = [InputField("stars", "double"), InputField("id", "string"), InputField("verified", "boolean")]
    info = info_for(fields, ("LOW", "HIGH"), probability_column=None)
    [record] = (
        kafka_rows(spark, [msg({"verified": True, "id": "a-1", "stars": 1.5})])
        .transform(scoring.scoring_pipeline(svm, info, "d", "out", "out.dlq", 100, 1000))
        .collect()
    )
    assert record.key == bytearray(b"a-1")
    value = json.loads(record.value)
    # `id` first, then the other fields in the model's order, then what the model said.
    assert list(value)[:7] == ["id", "stars", "verified", "prediction", "predictedLabel", "probability", "modelName"]
    assert {k: value[k] for k in list(value)[:6]} == {
        "id": "a-1",
        "stars": 1.5,
        "verified": True,
        "prediction": 1.0,
        "predictedLabel": "HIGH",
        "probability": None,
    }


def test_invalid_rows_are_scored_on_a_value_the_indexer_knows(spark: SparkSession) -> None:
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.feature import StringIndexer, VectorAssembler

    train = spark.createDataFrame([("fr", 1.0), ("de", 0.0), ("fr", 1.0)], "country string, label double")
    indexer = StringIndexer(inputCol="country", outputCol="ix").fit(train)  # handleInvalid='error'
    assembler = VectorAssembler(inputCols=["ix"], outputCol="features")
    lr = LogisticRegression(maxIter=5).fit(assembler.transform(indexer.transform(train)))
    pipeline = PipelineModel([indexer, assembler, lr])
    fields = [InputField("id", "integer"), InputField("country", "string")]
    batch = kafka_rows(spark, [msg({"id": 1, "country": "de"}), b"not json"])
    knows = info_for(fields, ("A", "B"), fillers=(("country", "fr"),))
    records = batch.transform(scoring.scoring_pipeline(pipeline, knows, "d", "out", "out.dlq", 100, 1000)).collect()
    assert [r.topic for r in records] == ["out", "out.dlq"]
    # The same batch fed an empty string for the invalid row fails: the filler is what keeps the stream going.
    blind = info_for(fields, ("A", "B"))
    with pytest.raises(Exception, match="Unseen label"):
        batch.transform(scoring.scoring_pipeline(pipeline, blind, "d", "out", "out.dlq", 100, 1000)).collect()
