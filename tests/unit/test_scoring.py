"""Scoring transforms on static DataFrames: exact parsed rows, dead-letter reasons, labels and probabilities."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import re
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from chispa import assert_approx_df_equality, assert_df_equality
from pyspark.ml import PipelineModel
from pyspark.ml.functions import vector_to_array
from pyspark.ml.linalg import Vectors
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from job.runtime import scoring, storage
from job.runtime.model import decision_threshold
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


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


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
        scoring.scoring_pipeline(tiny_pipeline, info_of(tiny_pipeline), "dep-1", "scored", "scored.dlq", 100, 1000)
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
        "threshold": 0.5,
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
            "keyBytes": 2,
            "keyTruncated": False,
            "keySha256": sha256(bytes([0x80, 0x81])),
            "value": base64.b64encode(b"\xff\xfe bad").decode(),
            "valueEncoding": "base64",
            "valueBytes": 6,
            "valueTruncated": False,
            "valueSha256": sha256(b"\xff\xfe bad"),
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
            "keyBytes": 4,
            "keyTruncated": False,
            "keySha256": sha256(b"gone"),
            "value": None,
            "valueEncoding": None,
            "valueBytes": None,
            "valueTruncated": None,
            "valueSha256": None,
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
            "keyBytes": None,
            "keyTruncated": None,
            "keySha256": None,
            "value": '{"id": 8, "text": ""}',
            "valueEncoding": "utf-8",
            "valueBytes": 21,
            "valueTruncated": False,
            "valueSha256": sha256(b'{"id": 8, "text": ""}'),
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
    assert list(value)[:8] == [
        "id", "stars", "verified", "prediction", "predictedLabel", "probability", "threshold", "modelName"
    ]  # fmt: skip
    assert {k: value[k] for k in list(value)[:7]} == {
        "id": "a-1",
        "stars": 1.5,
        "verified": True,
        "prediction": 1.0,
        "predictedLabel": "HIGH",
        "probability": None,
        "threshold": None,
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


GOOD = b'{"id": 1, "text": "i love it"}'
TRAILING = "the value is not valid JSON: more than whitespace follows the first value"
NOT_JSON = "the value is not valid JSON"
LONE = "the value has a \\u escape of half a surrogate pair without the other half"
DUPLICATE = "a JSON object in the value has the same key twice"
EMPTY = "field 'text' is empty or only whitespace"


def parse_rows(spark: SparkSession, values: Sequence[bytes | None]) -> list[tuple[object, ...]]:
    parsed = kafka_rows(spark, values).transform(scoring.parse_messages(FIELDS, 4000, 200_000))
    rows = parsed.select("offset", "id", "text", scoring.ERROR_CODE, scoring.ERROR_REASON).orderBy("offset").collect()
    return [(r.id, r.text, r[scoring.ERROR_CODE], r[scoring.ERROR_REASON]) for r in rows]


def nested(depth: int) -> bytes:
    # `depth` levels in all: the object itself and depth - 1 arrays inside it.
    return b'{"id": 1, "text": "x", "a": ' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"


def test_strict_json_what_follows_the_object_and_what_comes_before_it(spark: SparkSession) -> None:
    values = [
        GOOD + b" xyz",
        GOOD + b"]]]",
        GOOD + b'{"id": 2, "text": "a second tweet"}',  # two objects: never one prediction and a lost one
        GOOD + b", 5",
        GOOD + b"//",
        GOOD + b"\x0c",  # form feed: whitespace to Python's str.strip, not to JSON
        GOOD + " \u00a0".encode(),
        GOOD + b" \r\n\t ",
        b"\n" + GOOD,
        b"\t" + GOOD,
        b"\r\n" + GOOD,
        b"\x0b" + GOOD,
        "\u3000".encode() + GOOD,
        b"[1] 2",
        b'"a" "b"',
        b"1 2",
        b"[1]  \n",
    ]
    assert parse_rows(spark, values) == [
        (None, None, "NOT_JSON", TRAILING),
        (None, None, "NOT_JSON", TRAILING),
        (None, None, "NOT_JSON", TRAILING),
        (None, None, "NOT_JSON", TRAILING),
        (None, None, "NOT_JSON", TRAILING),
        (None, None, "NOT_JSON", TRAILING),
        (None, None, "NOT_JSON", TRAILING),
        (1, "i love it", None, None),
        (1, "i love it", None, None),
        (1, "i love it", None, None),
        (1, "i love it", None, None),
        (None, None, "NOT_JSON", NOT_JSON),
        (None, None, "NOT_JSON", NOT_JSON),
        (None, None, "NOT_JSON", TRAILING),
        (None, None, "NOT_JSON", TRAILING),
        (None, None, "NOT_JSON", TRAILING),
        (None, None, "NOT_AN_OBJECT", "the JSON value is not an object"),
    ]


def test_bom_duplicate_keys_depth_surrogates_and_the_parser_limits_each_get_their_code(spark: SparkSession) -> None:
    values = [
        b"\xef\xbb\xbf" + GOOD,
        b" \xef\xbb\xbf" + GOOD,  # not at the start: just not JSON
        b'{"id": 1, "id": 2, "text": "x"}',
        b'{"id": 1, "text": "x", "user": {"name": "a", "name": "b"}}',
        b'{"id": 1, "text": "x", "list": [{"k": 1}, {"k": 2}]}',  # the same key in two objects is fine
        nested(1000),
        nested(1001),
        b"[" * 5000,
        b'{"id": 1, "text": "\\ud800"}',
        b'{"id": 1, "text": "\\udc00\\ud800"}',
        b'{"id": 1, "text": "a\\ud800\\\\\\udc00"}',  # high, an escaped backslash, low: two lone halves
        b'{"id": 1, "text": "\\ud83d\\ude00"}',
        b'{"id": 1, "text": "\\\\ud800"}',  # an escaped backslash, then the letters "ud800"
        b'{"\\ud800": 1, "id": 1, "text": "x"}',
        b'{"id": 1, "text": "\\ud800", "id": 2}',  # both: the surrogate check comes first
        b'{"id": 1, "text": "x", "n": ' + b"7" * 1000 + b"}",
        b'{"id": 1, "text": "x", "n": ' + b"7" * 1001 + b"}",
        b'{"id": 1, "text": "x", "' + b"k" * 50_000 + b'": 1}',
        b'{"id": 1, "text": "x", "' + b"k" * 50_001 + b'": 1}',
        b'{"id": 1, "text": "x", "n": NaN}',
        b"{'id': 1, 'text': 'x'}",
        b'{"id": 1, "text": "a\x01b"}',
    ]
    assert parse_rows(spark, values) == [
        (None, None, "BYTE_ORDER_MARK", "the value starts with a byte order mark (U+FEFF), which JSON does not allow"),
        (None, None, "NOT_JSON", NOT_JSON),
        (None, None, "DUPLICATE_KEY", DUPLICATE),
        (None, None, "DUPLICATE_KEY", DUPLICATE),
        (1, "x", None, None),
        (1, "x", None, None),
        (None, None, "TOO_DEEP", "the value nests arrays and objects 1001 deep, over the parser's limit of 1000"),
        (None, None, "TOO_DEEP", "the value nests arrays and objects 5000 deep, over the parser's limit of 1000"),
        (None, None, "LONE_SURROGATE", LONE),
        (None, None, "LONE_SURROGATE", LONE),
        (None, None, "LONE_SURROGATE", LONE),
        (1, "😀", None, None),
        (1, "\\ud800", None, None),
        (None, None, "LONE_SURROGATE", LONE),
        (None, None, "LONE_SURROGATE", LONE),
        (1, "x", None, None),
        (None, None, "NOT_JSON", NOT_JSON),
        (1, "x", None, None),
        (None, None, "NOT_JSON", NOT_JSON),
        (None, None, "NOT_JSON", NOT_JSON),
        (None, None, "NOT_JSON", NOT_JSON),
        (None, None, "NOT_JSON", NOT_JSON),
    ]


@pytest.mark.parametrize("unicode_validation", ["true", "false"])
def test_codes_do_not_depend_on_the_unicode_validation_setting(spark: SparkSession, unicode_validation: str) -> None:
    key = "spark.sql.variant.validateUnicodeInJsonParsing"
    values = [b'{"id": 1, "text": "\\ud800"}', b'{"id": 1, "text": "\\ud83d\\ude00"}']
    spark.conf.set(key, unicode_validation)
    try:
        rows = [row[:3] for row in parse_rows(spark, values)]
    finally:
        spark.conf.set(key, "true")
    assert rows == [(None, None, "LONE_SURROGATE"), (1, "😀", None)]


def test_a_session_that_accepts_duplicate_keys_is_refused(spark: SparkSession) -> None:
    key = "spark.sql.variant.allowDuplicateKeys"
    spark.conf.set(key, "true")
    try:
        with pytest.raises(ValueError) as err:
            kafka_rows(spark, [GOOD]).transform(scoring.parse_messages(FIELDS, 100, 1000))
    finally:
        spark.conf.set(key, "false")
    assert str(err.value) == (
        "Spark setting spark.sql.variant.allowDuplicateKeys is true; the job needs false (job.runtime.session.spark_conf "
        "sets it): with it, a value with a duplicate key would be scored instead of dead-lettered as DUPLICATE_KEY"
    )


def test_empty_text_is_unicode_whitespace_or_nul(spark: SparkSession) -> None:
    texts = [
        "\t\t",
        "\n",
        "\u00a0",
        "\u3000",
        "\u0000",
        " \u2028\u2029\u205f\u1680\u0085 ",
        "\x0b\x0c",
        "\x1c",
        "\u200b",
        "a",
    ]
    rows = parse_rows(spark, [msg({"id": i, "text": t}) for i, t in enumerate(texts)])
    assert rows == [
        *[(None, None, "EMPTY_TEXT", EMPTY)] * 7,
        # Python's str.isspace() says yes to U+001C, Unicode's White_Space does not; nor to the zero-width space.
        (7, "\x1c", None, None),
        (8, "\u200b", None, None),
        (9, "a", None, None),
    ]


NO_FEATURE_REASON = (
    "the model finds no feature in field 'text': its prediction would be the model's bias, not a reading of the text"
)


def info_of(model: PipelineModel) -> ModelInfo:
    """INFO with what the job takes from a text model whose last stage is the classifier."""
    last = model.stages[-1]
    features = last.getOrDefault("featuresCol")
    return dataclasses.replace(
        INFO,
        features_column=features,
        threshold=decision_threshold(last),
        bias=scoring.zero_features_output(last, features),
    )


def pipeline_of(model: PipelineModel, **options: Any) -> Callable[[DataFrame], DataFrame]:
    settings: dict[str, Any] = {"max_text_length": 4000, "max_message_bytes": 200_000, **options}
    return scoring.scoring_pipeline(model, info_of(model), "d", "o", "o.dlq", **settings)


def score_rows(spark: SparkSession, model: PipelineModel, texts: list[str], no_features: bool = True) -> list[tuple]:
    df = kafka_rows(spark, [msg({"id": i, "text": t}) for i, t in enumerate(texts)])
    scored = df.transform(scoring.parse_messages(FIELDS, 4000, 200_000)).transform(
        scoring.score(model, info_of(model), no_features)
    )
    rows = scored.orderBy("offset").collect()
    return [(r[scoring.ERROR_CODE], r[scoring.ERROR_REASON], r[scoring.PREDICTED_LABEL]) for r in rows]


def test_no_features_with_the_shipped_model(spark: SparkSession) -> None:
    from job.runtime.model import load_model
    from tests.paths import SHIPPED_MODEL

    model = load_model(spark, str(SHIPPED_MODEL)).pipeline
    texts = ["😀😀", "こんにちは", "... --", "i love it"]
    assert [row[:2] for row in score_rows(spark, model, texts)] == [
        *[("NO_FEATURES", NO_FEATURE_REASON)] * 3,
        (None, None),
    ]
    # Switched off, the three are scored, and all alike: the model's bias, whatever the text.
    records = (
        kafka_rows(spark, [msg({"id": i, "text": t}) for i, t in enumerate(texts)])
        .transform(pipeline_of(model, no_features=False))
        .collect()
    )
    scored = [json.loads(r.value) for r in records]
    assert [r.topic for r in records] == ["o"] * 4
    assert len({(s["predictedLabel"], s["probability"]) for s in scored[:3]}) == 1


def test_no_features_follows_the_last_stage_features_sparse_zeros_and_dense(spark: SparkSession) -> None:
    from pyspark.ml import Pipeline
    from pyspark.ml.classification import LogisticRegression
    from pyspark.ml.feature import IDF, HashingTF, Tokenizer, Word2Vec

    train = spark.createDataFrame(
        [("the good day", 1.0), ("the great fun", 1.0), ("the bad day", 0.0), ("the awful mess", 0.0)],
        "text string, label double",
    )
    # IDF gives "the" (in every document) weight 0: its vector has an entry, and it is 0.0.
    tfidf = Pipeline(
        stages=[
            Tokenizer(inputCol="text", outputCol="words"),
            HashingTF(inputCol="words", outputCol="tf", numFeatures=64),
            IDF(inputCol="tf", outputCol="tfidf"),
            LogisticRegression(featuresCol="tfidf", maxIter=10),
        ]
    ).fit(train)
    assert [row[0] for row in score_rows(spark, tfidf, ["the", "the the", "the good"])] == [
        "NO_FEATURES",
        "NO_FEATURES",
        None,
    ]
    # Word2Vec averages the known words into a dense vector: all zeros when no word is known.
    w2v = Pipeline(
        stages=[
            Tokenizer(inputCol="text", outputCol="words"),
            Word2Vec(inputCol="words", outputCol="w2v", vectorSize=3, minCount=1, seed=7),
            LogisticRegression(featuresCol="w2v", maxIter=10),
        ]
    ).fit(train)
    assert [row[0] for row in score_rows(spark, w2v, ["unknown words", "good day"])] == ["NO_FEATURES", None]


def test_decision_threshold_of_binary_and_multiclass_models(spark: SparkSession, tiny_pipeline: PipelineModel) -> None:
    from pyspark.ml.classification import LogisticRegression

    lr: Any = tiny_pipeline.stages[-1]
    assert decision_threshold(lr) == 0.5
    assert decision_threshold(lr.copy({lr.threshold: 0.9})) == 0.9
    assert decision_threshold(lr.copy({lr.thresholds: [0.25, 0.75]})) == 0.75
    three = spark.createDataFrame(
        [(Vectors.dense([1.0, 0.0]), 0.0), (Vectors.dense([0.0, 1.0]), 1.0), (Vectors.dense([1.0, 1.0]), 2.0)],
        ["features", "label"],
    )
    assert decision_threshold(LogisticRegression(maxIter=5).fit(three)) is None
    # LinearSVC's threshold is on its raw margin: no probability threshold to report.
    from pyspark.ml.classification import LinearSVC

    two = three.where("label < 2")
    assert decision_threshold(LinearSVC(maxIter=5).fit(two)) is None


def test_records_carry_the_threshold_and_the_probability_of_the_label_it_decided(
    spark: SparkSession, tiny_pipeline: PipelineModel
) -> None:
    text = "i love this great day"
    p1 = tiny_pipeline.transform(spark.createDataFrame([(text,)], "text string")).collect()[0].probability[1]
    assert p1 > 0.5
    lr: Any = tiny_pipeline.stages[-1]
    threshold = (p1 + 1.0) / 2  # above p1: the text is NEGATIVE although P(POSITIVE) > 0.5
    strict = PipelineModel([*tiny_pipeline.stages[:-1], lr.copy({lr.threshold: threshold})])
    record = json.loads(
        kafka_rows(spark, [msg({"id": 1, "text": text})])
        .transform(pipeline_of(strict, max_text_length=100, max_message_bytes=1000))
        .collect()[0]
        .value
    )
    assert (record["predictedLabel"], record["threshold"]) == ("NEGATIVE", threshold)
    assert record["probability"] == pytest.approx(1 - p1, abs=1e-12)
    assert record["probability"] < 0.5


def dead_letters(spark: SparkSession, pipeline: PipelineModel, rows: list[tuple]) -> list[tuple[Any, Any]]:
    df = spark.createDataFrame([(*row, "tweets", 0, i, T0) for i, row in enumerate(rows)], KAFKA_SCHEMA)
    records = df.transform(pipeline_of(pipeline, max_text_length=100, max_message_bytes=1000)).collect()
    return [(r.key, r.value) for r in sorted(records, key=lambda r: json.loads(r.value)["sourceOffset"])]


def test_dead_letters_are_bounded_prefix_length_and_digest(spark: SparkSession, tiny_pipeline: PipelineModel) -> None:
    keep = scoring.DEAD_LETTER_KEEP_BYTES
    big_key = b"k" * 600_000
    control = b"\x01" * 200_000
    not_utf8 = b"\xff" * 800_000
    euros = "€" * 30_000  # 90,000 bytes; the 65,536th byte is inside a euro sign
    worst_bytes = b"\x01" * 600_000
    rows = [
        (big_key, None),
        (b"c", control),
        (b"u", not_utf8),
        (b"e", euros.encode()),
        (worst_bytes, worst_bytes),
        (b"t" * 700_000, msg({"id": 5, "text": "i love it"})),  # a valid tweet: keyed by its id
    ]
    out = dead_letters(spark, tiny_pipeline, rows)
    docs = [json.loads(value) for _, value in out]
    assert [d.get("errorCode") for d in docs] == ["TOMBSTONE", "OVERSIZED", "OVERSIZED", "OVERSIZED", "OVERSIZED", None]
    assert [key for key, _ in out] == [
        big_key[:keep],
        b"c",
        b"u",
        b"e",
        b"\x01" * keep,
        b"5",
    ]
    summary = [
        {f: d[f"{part}{f}"] for f in ("Encoding", "Bytes", "Truncated", "Sha256")} | {"kept": d[part]}
        for d in docs[:5]
        for part in ("key", "value")
    ]

    def cut(data: bytes) -> str:
        return base64.b64encode(data[:keep]).decode()

    # A cut original is its prefix in base64 (the cut may fall inside a character), a whole one text when it is
    # valid UTF-8.
    assert summary == [
        {"Encoding": "base64", "Bytes": 600_000, "Truncated": True, "Sha256": sha256(big_key), "kept": cut(big_key)},
        {"Encoding": None, "Bytes": None, "Truncated": None, "Sha256": None, "kept": None},
        {"Encoding": "utf-8", "Bytes": 1, "Truncated": False, "Sha256": sha256(b"c"), "kept": "c"},
        {"Encoding": "base64", "Bytes": 200_000, "Truncated": True, "Sha256": sha256(control), "kept": cut(control)},
        {"Encoding": "utf-8", "Bytes": 1, "Truncated": False, "Sha256": sha256(b"u"), "kept": "u"},
        {"Encoding": "base64", "Bytes": 800_000, "Truncated": True, "Sha256": sha256(not_utf8), "kept": cut(not_utf8)},
        {"Encoding": "utf-8", "Bytes": 1, "Truncated": False, "Sha256": sha256(b"e"), "kept": "e"},
        {
            "Encoding": "base64",
            "Bytes": 90_000,
            "Truncated": True,
            "Sha256": sha256(euros.encode()),
            "kept": cut(euros.encode()),
        },
        *[
            {
                "Encoding": "base64",
                "Bytes": 600_000,
                "Truncated": True,
                "Sha256": sha256(worst_bytes),
                "kept": cut(worst_bytes),
            }
        ]
        * 2,
    ]
    # Kept whole: text when valid UTF-8, control characters and all (JSON-escaped to six bytes each): the worst case.
    whole = dead_letters(spark, tiny_pipeline, [(b"\x01" * keep, b"\x01" * keep)])
    assert json.loads(whole[0][1])["key"] == "\x01" * keep and json.loads(whole[0][1])["valueTruncated"] is False
    worst = len(whole[0][0]) + len(whole[0][1])
    assert 12 * keep < worst <= scoring.DEAD_LETTER_MAX_RECORD_BYTES + len("d")


def _compilations(spark: SparkSession) -> int:
    metrics = storage.jvm(spark).org.apache.spark.metrics.source.CodegenMetrics
    return int(metrics.METRIC_COMPILATION_TIME().getCount())


def test_a_stream_compiles_no_code_after_its_first_micro_batch(
    spark: SparkSession, tiny_pipeline: PipelineModel, tmp_path: Path
) -> None:
    # Every micro-batch plans the query again; any per-batch value written into the generated Java (the
    # batch timestamp did that through current_timestamp()) makes new source, which Janino compiles again,
    # twice in local mode (the driver's and the task's class loaders are both in the code cache's key). Count
    # the compilations of a second batch, which must all be cache hits.
    source = tmp_path / "in"
    source.mkdir()

    def add_file(n: int, offset: int) -> None:
        rows = [(b"k", msg({"id": offset, "text": f"i love this great day {n}"}), "tweets", 0, offset, T0)]
        spark.createDataFrame(rows, KAFKA_SCHEMA).write.parquet(str(source / f"batch-{n}"))

    add_file(1, 0)
    stream = spark.readStream.schema(KAFKA_SCHEMA).option("recursiveFileLookup", "true").parquet(str(source))
    records = stream.transform(
        scoring.scoring_pipeline(tiny_pipeline, info_of(tiny_pipeline), "dep-1", "scored", "scored.dlq", 100, 1000)
    )
    seen: list[list[bytes]] = []
    query = (
        records.writeStream.foreachBatch(lambda df, _id: seen.append([bytes(r.value) for r in df.collect()]))
        .option("checkpointLocation", str(tmp_path / "cp"))
        .start()
    )
    try:
        query.processAllAvailable()
        before = _compilations(spark)
        add_file(2, 1)
        query.processAllAvailable()
        after = _compilations(spark)
        assert query.exception() is None
    finally:
        query.stop()
    assert [[json.loads(v)["id"] for v in batch] for batch in seen] == [[0], [1]]
    assert after - before == 0


def test_the_generated_code_stays_small_enough_for_the_jit(spark: SparkSession, tiny_pipeline: PipelineModel) -> None:
    # HotSpot does not compile a method of more than 8,000 bytes of bytecode (HugeMethodLimit): it runs
    # interpreted. Spark generates one method per whole-stage-code subtree; over the limit, every message
    # paid for it (measured: 1.6x the CPU per message). The strict checks live off the hot path for this.
    records = kafka_rows(spark, [msg({"id": 1, "text": "x"})]).transform(
        pipeline_of(tiny_pipeline, max_text_length=100, max_message_bytes=1000)
    )
    debug = getattr(getattr(storage.jvm(spark).org.apache.spark.sql.execution.debug, "package$"), "MODULE$")
    generated = debug.codegenString(records._jdf.queryExecution().executedPlan())
    sizes = [int(size) for size in re.findall(r"maxMethodCodeSize:(\d+)", generated)]
    assert sizes, generated[:2000]
    assert max(sizes) < 6_000  # headroom under 8,000
