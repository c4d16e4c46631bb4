"""Pure DataFrame transforms: validate and parse Kafka messages, score them, and shape the output records.

Every function here returns a `DataFrame -> DataFrame` transformation with no reads, writes or actions,
so the same code runs on a static DataFrame in a unit test and on the Kafka stream in production.
One input row gives exactly one output row: a scored record or a dead-letter record, never both,
never neither. That is what makes the accounting (every input offset explained) hold by construction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pyspark.ml import PipelineModel
from pyspark.ml.functions import vector_to_array
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from job.runtime.model import label_for_prediction

# Columns of a Kafka source row.
KEY = "key"
VALUE = "value"
TOPIC = "topic"
PARTITION = "partition"
OFFSET = "offset"
TIMESTAMP = "timestamp"

# Columns we add; the leading underscore keeps them clear of anything a model stage may create.
ERROR_CODE = "_error_code"
ERROR_REASON = "_error_reason"
PREDICTION = "_prediction"
PREDICTED_LABEL = "_predicted_label"
PROBABILITY = "_probability"

ID_FIELD = "id"
TEXT_FIELD = "text"

# Stable error codes of dead-letter records (documented in the README).
TOMBSTONE = "TOMBSTONE"
OVERSIZED = "OVERSIZED"
INVALID_UTF8 = "INVALID_UTF8"
NOT_JSON = "NOT_JSON"
NOT_AN_OBJECT = "NOT_AN_OBJECT"
MISSING_FIELD = "MISSING_FIELD"
NULL_FIELD = "NULL_FIELD"
WRONG_TYPE = "WRONG_TYPE"
TEXT_TOO_LONG = "TEXT_TOO_LONG"
EMPTY_TEXT = "EMPTY_TEXT"

# Spark SQL type of a model input field -> the Variant types a JSON value of that field may have. A JSON number
# with a fraction parses as a DECIMAL(p,s) variant when it fits one (7.5 is DECIMAL(2,1)), else as a DOUBLE.
_JSON_TYPES = {
    "integer": ("TINYINT", "SMALLINT", "INT", "BIGINT"),
    "long": ("TINYINT", "SMALLINT", "INT", "BIGINT"),
    "string": ("STRING",),
    "double": ("TINYINT", "SMALLINT", "INT", "BIGINT", "DOUBLE", "FLOAT", "DECIMAL"),
    "float": ("TINYINT", "SMALLINT", "INT", "BIGINT", "DOUBLE", "FLOAT", "DECIMAL"),
    "boolean": ("BOOLEAN",),
}
_TYPE_WORDS = {"integer": "an integer", "long": "an integer", "string": "a string", "double": "a number",
               "float": "a number", "boolean": "true or false"}  # fmt: skip
# What a row that is already invalid feeds the pipeline for a field of each type (see `score`).
_FILLERS: dict[str, str | int | float | bool] = {
    "integer": 0, "long": 0, "string": "", "double": 0.0, "float": 0.0, "boolean": False,
}  # fmt: skip
# The fields of a scored record besides the model's input fields; an input field may not take one of these names.
RECORD_FIELDS = ("prediction", "predictedLabel", "probability", "modelName", "modelVersion", "scoredAt",
                 "sourceTopic", "sourcePartition", "sourceOffset")  # fmt: skip

# Intermediate columns of `parse_messages`.
_RAW_TEXT = "_raw_text"
_JSON = "_json"


def _node(field: InputField) -> str:
    return f"_node_{field.name}"


def _json_type(field: InputField) -> str:
    return f"_json_type_{field.name}"


def _typed(field: InputField) -> str:
    return f"_typed_{field.name}"


@dataclass(frozen=True)
class InputField:
    """One field of the model's input schema, parsed from each message's JSON value."""

    name: str
    type: str

    def __post_init__(self) -> None:
        if self.type not in _JSON_TYPES:
            raise ValueError(f"input field {self.name!r}: type {self.type!r} is not one of {sorted(_JSON_TYPES)}")


def _json_type_ok(field: InputField, json_type: Column) -> Column:
    allowed = _JSON_TYPES[field.type]
    exact = json_type.isin(*[t for t in allowed if t != "DECIMAL"])
    return exact | json_type.startswith("DECIMAL") if "DECIMAL" in allowed else exact


@dataclass(frozen=True)
class ModelInfo:
    """What scoring needs from the model beside the pipeline, and what the output records say about it."""

    name: str
    version: str
    # label_values[i] is the label of prediction i.
    label_values: tuple[str, ...]
    # The fields parsed from each message, in the order the record shows them (`id` among them).
    input_fields: tuple[InputField, ...]
    prediction_column: str = "prediction"
    # None for a classifier without probabilities: the record's probability is then null.
    probability_column: str | None = "probability"
    # The pipeline's own label column (IndexToString on the prediction); None: labels come from label_values.
    predicted_label_column: str | None = None
    # Values fed to the pipeline for rows already invalid, where a type's default would not do (a value a
    # StringIndexerModel knows, for an indexer that fails on unknown ones).
    fillers: tuple[tuple[str, str], ...] = ()

    def filler(self, field: InputField) -> str | int | float | bool:
        return dict(self.fillers).get(field.name, _FILLERS[field.type])


def parse_messages(
    fields: Sequence[InputField], max_text_length: int, max_message_bytes: int
) -> Callable[[DataFrame], DataFrame]:
    """Validate each Kafka value against the input schema and parse it into typed columns.

    Valid rows get the fields as columns and a null error code; invalid rows get null fields and
    an error code with a sentence. The checks run in order and the first failure wins.
    """
    names = [f.name for f in fields]
    if ID_FIELD not in names:
        raise ValueError(f"input schema must have an '{ID_FIELD}' field (it keys the output record), got {names}")
    # The length and emptiness checks are about the text to classify: the field named `text`, when there is one.
    text_field = next((f for f in fields if f.name == TEXT_FIELD and f.type == "string"), None)

    def transform(df: DataFrame) -> DataFrame:
        kafka_columns = [KEY, VALUE, TOPIC, PARTITION, OFFSET, TIMESTAMP]
        # Each step is its own select, so the parsed JSON and each field's node are computed once per row
        # and then referenced; written as one expression, Spark would inline the parse into every check.
        parsed_json = df.select(
            *kafka_columns,
            F.col(VALUE).cast("string").alias(_RAW_TEXT),
            F.try_parse_json(F.col(VALUE).cast("string")).alias(_JSON),
        )
        nodes = parsed_json.select(
            "*", *[F.try_variant_get(_JSON, f"$.{f.name}", "variant").alias(_node(f)) for f in fields]
        )
        typed = nodes.select(
            "*",
            *[F.schema_of_variant(_node(f)).alias(_json_type(f)) for f in fields],
            *[F.try_variant_get(_node(f), "$", f.type).alias(_typed(f)) for f in fields],
        )

        raw = F.col(VALUE)
        text_value = F.col(_RAW_TEXT)
        checks: list[tuple[Column, str, Column]] = [
            (raw.isNull(), TOMBSTONE, F.lit("the message has no value (a tombstone)")),
            (
                F.octet_length(raw) > max_message_bytes,
                OVERSIZED,
                F.format_string(f"the value is %d bytes, over the limit of {max_message_bytes}", F.octet_length(raw)),
            ),
            (~F.is_valid_utf8(text_value), INVALID_UTF8, F.lit("the value is not valid UTF-8")),
            (F.col(_JSON).isNull(), NOT_JSON, F.lit("the value is not valid JSON")),
            # Valid JSON that starts with '{' is an object; cheaper than asking for the variant's schema.
            (~F.ltrim(text_value).startswith("{"), NOT_AN_OBJECT, F.lit("the JSON value is not an object")),
        ]
        for field in fields:
            json_type = F.col(_json_type(field))
            checks += [
                (F.col(_node(field)).isNull(), MISSING_FIELD, F.lit(f"field '{field.name}' is missing")),
                (json_type == "VOID", NULL_FIELD, F.lit(f"field '{field.name}' is null")),
                (
                    ~_json_type_ok(field, json_type) | F.col(_typed(field)).isNull(),
                    WRONG_TYPE,
                    F.format_string(
                        f"field '{field.name}' must be {_TYPE_WORDS[field.type]}"
                        + (" from -2147483648 to 2147483647" if field.type == "integer" else "")
                        + ", found %s",
                        F.lower(json_type),
                    ),
                ),
            ]
        if text_field is not None:
            text = F.col(_typed(text_field))
            checks += [
                (
                    F.char_length(text) > max_text_length,
                    TEXT_TOO_LONG,
                    F.format_string(
                        f"field 'text' has %d characters, over the limit of {max_text_length}", F.char_length(text)
                    ),
                ),
                # An empty text has nothing to classify; scoring it would only report the model's bias.
                (F.trim(text) == "", EMPTY_TEXT, F.lit("field 'text' is empty or only whitespace")),
            ]
        code = F.lit(None).cast("string")
        reason = F.lit(None).cast("string")
        for condition, error, sentence in reversed(checks):
            code = F.when(condition, F.lit(error)).otherwise(code)
            reason = F.when(condition, sentence).otherwise(reason)
        with_errors = typed.select("*", code.alias(ERROR_CODE))
        valid = F.col(ERROR_CODE).isNull()
        return with_errors.select(
            *kafka_columns,
            *[F.when(valid, F.col(_typed(f))).alias(f.name) for f in fields],
            ERROR_CODE,
            F.when(~valid, reason).alias(ERROR_REASON),
        )

    return transform


def score(model: PipelineModel, info: ModelInfo) -> Callable[[DataFrame], DataFrame]:
    """Run the pipeline model on every row and add the prediction, its label and its probability.

    Rows already marked invalid have null fields; they are scored on fillers (an empty text, a zero, a value
    a StringIndexerModel knows) rather than split off, since splitting the stream would read each micro-batch
    from Kafka twice, and their results are discarded by `to_kafka_records`. The label is the pipeline's own
    (an IndexToString column) when it has one, else `label_values[prediction]`; the probability is the
    predicted class's. All of it runs in the JVM: no Python UDF on the hot path.
    """
    to_label = label_for_prediction(info.label_values)
    fillers = {
        f.name: F.coalesce(F.col(f.name), F.lit(info.filler(f)).cast(f.type)).alias(f.name) for f in info.input_fields
    }

    def transform(df: DataFrame) -> DataFrame:
        scored = model.transform(df.select(*[fillers.get(c, F.col(c)) for c in df.columns]))
        prediction = F.col(info.prediction_column)
        label = F.col(info.predicted_label_column) if info.predicted_label_column else to_label(prediction)
        probability = (
            F.get(vector_to_array(F.col(info.probability_column)), prediction.cast("int"))
            if info.probability_column
            else F.lit(None).cast("double")
        )
        return scored.select(
            *df.columns,
            prediction.alias(PREDICTION),
            label.alias(PREDICTED_LABEL),
            probability.alias(PROBABILITY),
        )

    return transform


def _bytes_as_text(column: Column) -> tuple[Column, Column]:
    """Original bytes for a JSON document: as text when valid UTF-8, otherwise base64."""
    as_text = column.cast("string")
    utf8 = F.is_valid_utf8(as_text)
    value = F.when(column.isNull(), F.lit(None)).when(utf8, as_text).otherwise(F.base64(column))
    encoding = F.when(column.isNull(), F.lit(None)).when(utf8, F.lit("utf-8")).otherwise(F.lit("base64"))
    return value, encoding


def to_kafka_records(
    deployment: str, info: ModelInfo, target_topic: str, dead_letter_topic: str
) -> Callable[[DataFrame], DataFrame]:
    """Shape each row as a Kafka record (topic, key, value) for the output or the dead-letter topic."""

    def transform(df: DataFrame) -> DataFrame:
        # Formatted here (the same text to_json writes) so that no per-batch timestamp literal reaches the
        # generated code; the benchmark still counts ~2 compilations per micro-batch, so it was not the only cause.
        now = F.date_format(F.current_timestamp(), "yyyy-MM-dd'T'HH:mm:ss.SSSXXX")
        # `id` first, then the model's other input fields in schema order, then what the model said.
        fields = [ID_FIELD, *[f.name for f in info.input_fields if f.name != ID_FIELD]]
        scored_value = F.to_json(
            F.struct(
                *[F.col(name).alias(name) for name in fields],
                F.col(PREDICTION).alias("prediction"),
                F.col(PREDICTED_LABEL).alias("predictedLabel"),
                F.col(PROBABILITY).alias("probability"),
                F.lit(info.name).alias("modelName"),
                F.lit(info.version).alias("modelVersion"),
                now.alias("scoredAt"),
                F.col(TOPIC).alias("sourceTopic"),
                F.col(PARTITION).alias("sourcePartition"),
                F.col(OFFSET).alias("sourceOffset"),
            ),
            # Keeps `probability: null` of a classifier without probabilities; a scored row has no other null.
            {"ignoreNullFields": "false"},
        )
        key_text, key_encoding = _bytes_as_text(F.col(KEY))
        value_text, value_encoding = _bytes_as_text(F.col(VALUE))
        dead_letter_value = F.to_json(
            F.struct(
                F.col(ERROR_CODE).alias("errorCode"),
                F.col(ERROR_REASON).alias("errorReason"),
                F.lit(deployment).alias("deployment"),
                F.col(TOPIC).alias("sourceTopic"),
                F.col(PARTITION).alias("sourcePartition"),
                F.col(OFFSET).alias("sourceOffset"),
                F.col(TIMESTAMP).alias("sourceTimestamp"),
                now.alias("rejectedAt"),
                key_text.alias("key"),
                key_encoding.alias("keyEncoding"),
                value_text.alias("value"),
                value_encoding.alias("valueEncoding"),
            ),
            {"ignoreNullFields": "false"},
        )
        rejected = F.col(ERROR_CODE).isNotNull()
        return df.select(
            F.when(rejected, F.lit(dead_letter_topic)).otherwise(F.lit(target_topic)).alias(TOPIC),
            # Scored records are keyed by id so consumers can drop the duplicates of a replayed batch;
            # dead-letter records keep the original key.
            F.when(rejected, F.col(KEY)).otherwise(F.col(ID_FIELD).cast("string").cast("binary")).alias(KEY),
            F.when(rejected, dead_letter_value).otherwise(scored_value).cast("binary").alias(VALUE),
        )

    return transform


def scoring_pipeline(
    model: PipelineModel,
    info: ModelInfo,
    deployment: str,
    target_topic: str,
    dead_letter_topic: str,
    max_text_length: int,
    max_message_bytes: int,
) -> Callable[[DataFrame], DataFrame]:
    """Kafka source rows -> Kafka sink rows: parse, score, shape."""

    def transform(df: DataFrame) -> DataFrame:
        return (
            df.transform(parse_messages(info.input_fields, max_text_length, max_message_bytes))
            .transform(score(model, info))
            .transform(to_kafka_records(deployment, info, target_topic, dead_letter_topic))
        )

    return transform
