"""Pure DataFrame transforms: validate and parse Kafka messages, score them, and shape the output records.

Every function here returns a `DataFrame -> DataFrame` transformation with no reads, writes or actions,
so the same code runs on a static DataFrame in a unit test and on the Kafka stream in production.
One input row gives exactly one output row: a scored record or a dead-letter record, never both,
never neither. That is what makes the accounting (every input offset explained) hold by construction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pyspark.ml import PipelineModel
from pyspark.ml.functions import vector_to_array
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from job.runtime import strict_json
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
THRESHOLD = "_threshold"

ID_FIELD = "id"
TEXT_FIELD = "text"

# Stable error codes of dead-letter records (documented in the README).
TOMBSTONE = "TOMBSTONE"
OVERSIZED = "OVERSIZED"
INVALID_UTF8 = "INVALID_UTF8"
BYTE_ORDER_MARK = "BYTE_ORDER_MARK"
TOO_DEEP = "TOO_DEEP"
NOT_JSON = "NOT_JSON"
LONE_SURROGATE = "LONE_SURROGATE"
DUPLICATE_KEY = "DUPLICATE_KEY"
NOT_AN_OBJECT = "NOT_AN_OBJECT"
MISSING_FIELD = "MISSING_FIELD"
NULL_FIELD = "NULL_FIELD"
WRONG_TYPE = "WRONG_TYPE"
TEXT_TOO_LONG = "TEXT_TOO_LONG"
EMPTY_TEXT = "EMPTY_TEXT"
NO_FEATURES = "NO_FEATURES"

STRICT_VARIANT_CONF = strict_json.STRICT_VARIANT_CONF

# "Empty or only whitespace" for EMPTY_TEXT: the Unicode White_Space property (Java's `\s` under (?U):
# tab to CR, space, U+0085, NBSP, U+1680, U+2000-U+200A, U+2028, U+2029, U+202F, U+205F, U+3000) and NUL.
_ONLY_WHITESPACE = r"(?U)^[\s\x00]*+\z"

# A dead-letter record keeps at most this many bytes of the original key and of the original value (and
# uses at most this many bytes of the original key as its own record key). JSON escaping can make a
# kept byte six bytes (a control character as \u0001), so a dead-letter record stays under
# 2 x 6 x 65,536 + 65,536 + 4,096 = 856,064 bytes: below the 1 MiB Kafka accepts by default.
DEAD_LETTER_KEEP_BYTES = 65_536
# Record key + value of a dead letter, at most; plus the length of the deployment's name.
DEAD_LETTER_MAX_RECORD_BYTES = 2 * 6 * DEAD_LETTER_KEEP_BYTES + DEAD_LETTER_KEEP_BYTES + 4_096

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
_UTF8 = "_utf8"
_JSON = "_json"
_FLAT = "_flat"
_HAPPY = "_happy"
_VERDICT = "_verdict"
_LONE = "_lone"
_FEATURELESS = "_featureless"
_PROBABILITY = "_probability_of_label"


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
    # The classifier's features column, for NO_FEATURES; None when the model reads no `text` field.
    features_column: str | None = None
    # For a binary classifier, the probability of label index 1 above which it predicts index 1
    # (`model.decision_threshold`); None for more classes. Each scored record carries it.
    threshold: float | None = None
    # (prediction, probability of it) of the classifier for an all-zero feature vector (`zero_features_output`):
    # a row scored otherwise has a feature, so only rows scored exactly so are looked at for NO_FEATURES.
    bias: tuple[float, float] | None = None

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
        require_strict_variant_conf(df.sparkSession)
        kafka_columns = [KEY, VALUE, TOPIC, PARTITION, OFFSET, TIMESTAMP]
        raw = F.col(VALUE)
        text = F.col(_RAW_TEXT)
        utf8 = F.col(_UTF8)
        json = F.col(_JSON)
        # Each step is its own select, so the parsed JSON and each field's node are computed once per row and
        # then referenced; written as one expression, Spark would inline them into every check. An oversized
        # value is not even read as text: none of the later work is done for it.
        sized = df.select(
            *kafka_columns, F.when(F.octet_length(raw) <= max_message_bytes, raw.cast("string")).alias(_RAW_TEXT)
        )
        checked = sized.select("*", F.is_valid_utf8(text).alias(_UTF8))
        parsed = checked.select(
            "*",
            F.when(utf8, F.try_parse_json(text)).alias(_JSON),
            F.when(utf8, strict_json.flat_object(text)).alias(_FLAT),
            F.when(utf8, strict_json.has_lone_surrogate(text)).alias(_LONE),
        )
        nodes = parsed.select(
            "*", *[F.try_variant_get(_JSON, f"$.{f.name}", "variant").alias(_node(f)) for f in fields]
        )
        typed = nodes.select(
            "*",
            *[F.schema_of_variant(_node(f)).alias(_json_type(f)) for f in fields],
            *[F.try_variant_get(_node(f), "$", f.type).alias(_typed(f)) for f in fields],
        )

        def field_ok(field: InputField) -> Column:
            return _json_type_ok(field, F.col(_json_type(field))) & F.col(_typed(field)).isNotNull()

        # The hot path: a flat object (its own two brackets only, JSON whitespace around them) that parsed, with
        # good fields, passes every check below; these few cheap tests say so without the rest.
        happy = utf8 & json.isNotNull() & F.col(_FLAT) & ~F.col(_LONE)
        for field in fields:
            happy = happy & field_ok(field)
        if text_field is not None:
            value = F.col(_typed(text_field))
            happy = happy & (F.char_length(value) <= max_text_length) & ~empty_text(value)
        screened = typed.select("*", F.coalesce(happy, F.lit(False)).alias(_HAPPY))

        def classify(shape: Column) -> Column:
            """struct(code, reason) of the first failing check, for a row off the hot path (null: none fails)."""
            first, last = strict_json.first_char(text), strict_json.last_char(text)
            # Well formed, duplicate keys and lone surrogates aside: the Variant parser took it, or it refused
            # it and a lenient parse of the same text, held to strict quoting, takes it.
            well_formed = json.isNotNull() | (~shape["quotes"] & strict_json.lenient_parse_ok(text))
            ends_right = strict_json.ends_after_first_value(text, first, last, shape)
            checks: list[tuple[Column, str, Column]] = [
                (raw.isNull(), TOMBSTONE, F.lit("the message has no value (a tombstone)")),
                (
                    F.octet_length(raw) > max_message_bytes,
                    OVERSIZED,
                    F.format_string(
                        f"the value is %d bytes, over the limit of {max_message_bytes}", F.octet_length(raw)
                    ),
                ),
                (~utf8, INVALID_UTF8, F.lit("the value is not valid UTF-8")),
                (
                    strict_json.starts_with_bom(text),
                    BYTE_ORDER_MARK,
                    F.lit("the value starts with a byte order mark (U+FEFF), which JSON does not allow"),
                ),
                (
                    shape["depth"] > strict_json.MAX_DEPTH,
                    TOO_DEEP,
                    F.format_string(
                        "the value nests arrays and objects %d deep, over the parser's limit of "
                        f"{strict_json.MAX_DEPTH}",
                        shape["depth"],
                    ),
                ),
                (~well_formed, NOT_JSON, F.lit("the value is not valid JSON")),
                (
                    ~ends_right,
                    NOT_JSON,
                    F.lit("the value is not valid JSON: more than whitespace follows the first value"),
                ),
                (
                    F.col(_LONE),
                    LONE_SURROGATE,
                    F.lit("the value has a \\u escape of half a surrogate pair without the other half"),
                ),
                # Well formed, no lone surrogate, and still refused by the Variant parser: a key twice in an object.
                (json.isNull(), DUPLICATE_KEY, F.lit("a JSON object in the value has the same key twice")),
                (first != "{", NOT_AN_OBJECT, F.lit("the JSON value is not an object")),
            ]
            for field in fields:
                json_type = F.col(_json_type(field))
                checks += [
                    (F.col(_node(field)).isNull(), MISSING_FIELD, F.lit(f"field '{field.name}' is missing")),
                    (json_type == "VOID", NULL_FIELD, F.lit(f"field '{field.name}' is null")),
                    (
                        ~field_ok(field),
                        WRONG_TYPE,
                        F.format_string(
                            f"field '{field.name}' must be {_TYPE_WORDS[field.type]}"
                            + (" from -2147483648 to 2147483647" if field.type == "integer" else "")
                            + ", found %s",
                            # "object" and "array", not their whole schema: the reason stays short.
                            F.regexp_replace(F.lower(json_type), "<.*", ""),
                        ),
                    ),
                ]
            if text_field is not None:
                value = F.col(_typed(text_field))
                checks += [
                    (
                        F.char_length(value) > max_text_length,
                        TEXT_TOO_LONG,
                        F.format_string(
                            f"field 'text' has %d characters, over the limit of {max_text_length}",
                            F.char_length(value),
                        ),
                    ),
                    # An empty text has nothing to classify; scoring it would only report the model's bias.
                    (empty_text(value), EMPTY_TEXT, F.lit("field 'text' is empty or only whitespace")),
                ]
            # The first failing check by its index: each condition is written (and evaluated) once.
            failed = F.lit(None).cast("int")
            for index in reversed(range(len(checks))):
                failed = F.when(checks[index][0], F.lit(index)).otherwise(failed)
            codes = F.array(*[F.lit(error) for _, error, _ in checks])

            def verdict(index_column: Column) -> Column:
                reason = F.lit(None).cast("string")
                for index in reversed(range(len(checks))):
                    reason = F.when(index_column == index, checks[index][2]).otherwise(reason)
                return F.struct(F.get(codes, index_column).alias("code"), reason.alias("reason"))

            return F.transform(F.array(failed), verdict)[0]

        # The cold path, for the other rows only. `transform` over a one-element array binds the skeleton's
        # shape (and then the failing check) to a name, so each is computed once; and a higher-order function
        # runs outside whole-stage code generation, which keeps the hot path's generated methods small enough
        # for the JIT (HotSpot does not compile a method over 8,000 bytes of bytecode, and runs it interpreted).
        classified = screened.select(
            "*",
            F.when(
                ~F.col(_HAPPY), F.transform(F.array(strict_json.shape(strict_json.skeleton(text))), classify)[0]
            ).alias(_VERDICT),
        )
        code = F.col(_VERDICT)["code"]
        valid = code.isNull()
        return classified.select(
            *kafka_columns,
            *[F.when(valid, F.col(_typed(f))).alias(f.name) for f in fields],
            code.alias(ERROR_CODE),
            F.col(_VERDICT)["reason"].alias(ERROR_REASON),
        )

    return transform


def empty_text(text: Column) -> Column:
    """EMPTY_TEXT: only whitespace (Unicode White_Space) and NUL, or nothing."""
    # A text that starts with a printable ASCII character is not empty: most do, and skip the regex.
    return F.when(F.substring(text, 1, 1).between("!", "~"), F.lit(False)).otherwise(text.rlike(_ONLY_WHITESPACE))


def require_strict_variant_conf(spark: SparkSession) -> None:
    """Refuse a session in which `try_parse_json` accepts duplicate keys: DUPLICATE_KEY could not be told then.

    The other pinned setting (Unicode validation) needs no check: lone surrogates are found in the text.
    """
    key = "spark.sql.variant.allowDuplicateKeys"
    found = str(spark.conf.get(key, "false")).lower()
    if found != STRICT_VARIANT_CONF[key]:
        raise ValueError(
            f"Spark setting {key} is {found}; the job needs {STRICT_VARIANT_CONF[key]} (job.runtime.session.spark_conf "
            "sets it): with it, a value with a duplicate key would be scored instead of dead-lettered as DUPLICATE_KEY"
        )


def has_a_feature(features: Column) -> Column:
    """Whether a feature vector (an ML Vector column) has an entry other than zero, in the JVM.

    A Vector cast to text is `(size,[indices],[values])` when sparse and `[values]` when dense; the values
    are the last bracketed list, written by Java's Double.toString. Zero is `0.0` or `-0.0`; any other value
    has a digit 1-9 in its mantissa, or is NaN or (-)Infinity. For a tweet it is a dozen entries, against
    vector_to_array's 262,144 doubles.
    """
    return F.substring_index(features.cast("string"), "[", -1).rlike("[1-9NI]")


def score(model: PipelineModel, info: ModelInfo, no_features: bool = True) -> Callable[[DataFrame], DataFrame]:
    """Run the pipeline model on every row and add the prediction, its label, its probability and the threshold.

    Rows already marked invalid have null fields; they are scored on fillers (an empty text, a zero, a value
    a StringIndexerModel knows) rather than split off, since splitting the stream would read each micro-batch
    from Kafka twice, and their results are discarded by `to_kafka_records`. The label is the pipeline's own
    (an IndexToString column) when it has one, else `label_values[prediction]`; the probability is the
    predicted class's. With `no_features`, a valid row whose feature vector (the classifier's featuresCol, as
    the model's own stages compute it from the text) has no entry other than zero becomes NO_FEATURES: its
    prediction would only be the model's bias. All of it runs in the JVM: no Python UDF on the hot path.
    """
    features_col = info.features_column if no_features else None
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
        code, reason = F.col(ERROR_CODE), F.col(ERROR_REASON)
        if features_col is not None:
            # A vector with no non-zero entry gets the bias's prediction and probability, bit for bit; only a row
            # that does (almost never a text with features) has its vector looked at, as text.
            same_as_bias = F.lit(True)
            if info.bias is not None:
                same_as_bias = (prediction == info.bias[0]) & (F.col(_PROBABILITY) == info.bias[1])
            # Its own projection: code and reason both read it, and inside their conditions Spark would compute
            # it twice (subexpression elimination leaves conditional branches alone).
            scored = scored.select("*", probability.alias(_PROBABILITY)).select(
                "*", (code.isNull() & same_as_bias & ~has_a_feature(F.col(features_col))).alias(_FEATURELESS)
            )
            probability = F.col(_PROBABILITY)
            featureless = F.col(_FEATURELESS)
            code = F.when(featureless, F.lit(NO_FEATURES)).otherwise(code)
            reason = F.when(
                featureless,
                F.lit(
                    "the model finds no feature in field 'text': its prediction would be the model's bias, "
                    "not a reading of the text"
                ),
            ).otherwise(reason)
        return scored.select(
            *[c for c in df.columns if c not in (ERROR_CODE, ERROR_REASON)],
            code.alias(ERROR_CODE),
            reason.alias(ERROR_REASON),
            prediction.alias(PREDICTION),
            label.alias(PREDICTED_LABEL),
            probability.alias(PROBABILITY),
            F.lit(info.threshold).cast("double").alias(THRESHOLD),
        )

    return transform


def _kept_bytes(column: Column, limit: int) -> dict[str, Column]:
    """The original bytes for a dead letter: all of them up to `limit`, else the first `limit`; length, digest.

    Whole originals that are valid UTF-8 are kept as text, everything else (a cut prefix included, which may
    end inside a character) as base64. Kept small on purpose: this code runs inside the query's generated
    code, and HotSpot does not compile a generated method over 8,000 bytes of bytecode (it then runs
    interpreted, several times slower), so the whole record shaping must stay well below that.
    """
    truncated = F.octet_length(column) > limit
    text = F.when(~truncated, F.try_validate_utf8(column.cast("string")))
    # Spark's base64 breaks lines every 76 characters when spark.sql.chunkBase64String.enabled (the
    # default): a MIME habit, not base64 as JSON consumers decode it, so the line breaks go.
    encoded = F.regexp_replace(F.base64(F.substring(column, 1, limit)), r"[\r\n]", "")
    return {
        "": F.coalesce(text, encoded),
        "Encoding": F.when(column.isNotNull(), F.when(text.isNotNull(), F.lit("utf-8")).otherwise(F.lit("base64"))),
        "Bytes": F.octet_length(column),
        "Truncated": truncated,
        "Sha256": F.sha2(column, 256),
    }


def dead_letter_key(key: Column, limit: int = DEAD_LETTER_KEEP_BYTES) -> Column:
    """The record key of a dead letter: the original key, or its first `limit` bytes."""
    return F.when(F.octet_length(key) > limit, F.substring(key, 1, limit)).otherwise(key)


def to_kafka_records(
    deployment: str, info: ModelInfo, target_topic: str, dead_letter_topic: str
) -> Callable[[DataFrame], DataFrame]:
    """Shape each row as a Kafka record (topic, key, value) for the output or the dead-letter topic."""

    def transform(df: DataFrame) -> DataFrame:
        # now(), not current_timestamp(): in a stream, MicroBatchExecution swaps current_timestamp() for the
        # batch's timestamp only after the optimizer ran (IncrementalExecution.optimizedPlan), so date_format
        # is not folded and the timestamp is written into the generated Java as a long literal: new source,
        # two Janino compilations (driver and executor class loaders) every micro-batch. now() is left to the
        # optimizer's ComputeCurrentTime (the time the batch is planned), date_format folds to a string
        # literal, and generated code references string literals instead of inlining them.
        now = F.date_format(F.now(), "yyyy-MM-dd'T'HH:mm:ss.SSSXXX")
        # `id` first, then the model's other input fields in schema order, then what the model said.
        fields = [ID_FIELD, *[f.name for f in info.input_fields if f.name != ID_FIELD]]
        scored_value = F.to_json(
            F.struct(
                *[F.col(name).alias(name) for name in fields],
                F.col(PREDICTION).alias("prediction"),
                F.col(PREDICTED_LABEL).alias("predictedLabel"),
                F.col(PROBABILITY).alias("probability"),
                F.col(THRESHOLD).alias("threshold"),
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
        key = _kept_bytes(F.col(KEY), DEAD_LETTER_KEEP_BYTES)
        value = _kept_bytes(F.col(VALUE), DEAD_LETTER_KEEP_BYTES)
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
                *[column.alias(f"key{suffix}") for suffix, column in key.items()],
                *[column.alias(f"value{suffix}") for suffix, column in value.items()],
            ),
            {"ignoreNullFields": "false"},
        )
        rejected = F.col(ERROR_CODE).isNotNull()
        return df.select(
            F.when(rejected, F.lit(dead_letter_topic)).otherwise(F.lit(target_topic)).alias(TOPIC),
            # Scored records are keyed by id so consumers can drop the duplicates of a replayed batch;
            # dead-letter records keep the original key, bounded like the copy in their value.
            F.when(rejected, dead_letter_key(F.col(KEY)))
            .otherwise(F.col(ID_FIELD).cast("string").cast("binary"))
            .alias(KEY),
            F.when(rejected, dead_letter_value).otherwise(scored_value).cast("binary").alias(VALUE),
        )

    return transform


def rejected(info: ModelInfo, code: str, reason: str | Column) -> Callable[[DataFrame], DataFrame]:
    """Kafka source rows -> rows for `to_kafka_records` that all become dead letters with this code and reason.

    For records the query itself never sees (see job.runtime.skip), so their dead letters have the same format.
    """

    def transform(df: DataFrame) -> DataFrame:
        return df.select(
            KEY,
            VALUE,
            TOPIC,
            PARTITION,
            OFFSET,
            TIMESTAMP,
            *[F.lit(None).cast(f.type).alias(f.name) for f in info.input_fields],
            F.lit(code).alias(ERROR_CODE),
            (F.lit(reason) if isinstance(reason, str) else reason).alias(ERROR_REASON),
            F.lit(None).cast("double").alias(PREDICTION),
            F.lit(None).cast("string").alias(PREDICTED_LABEL),
            F.lit(None).cast("double").alias(PROBABILITY),
            F.lit(None).cast("double").alias(THRESHOLD),
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
    no_features: bool = True,
) -> Callable[[DataFrame], DataFrame]:
    """Kafka source rows -> Kafka sink rows: parse, score, shape."""

    def transform(df: DataFrame) -> DataFrame:
        return (
            df.transform(parse_messages(info.input_fields, max_text_length, max_message_bytes))
            .transform(score(model, info, no_features))
            .transform(to_kafka_records(deployment, info, target_topic, dead_letter_topic))
        )

    return transform


def zero_features_output(stage: Any, features_col: str) -> tuple[float, float] | None:
    """(prediction, probability of it) of a classifier for an all-zero feature vector, or None.

    Run once on the driver when the query is built (a one-row DataFrame), not per row or batch. None when the
    stage does not say its vector size, has no probabilities, or answers NaN: then every row's vector is
    looked at.
    """
    from pyspark.ml.functions import array_to_vector

    spark = SparkSession.getActiveSession()
    size = getattr(stage, "numFeatures", None)
    if spark is None or not isinstance(size, int) or size <= 0 or not stage.hasParam("probabilityCol"):
        return None
    # From literals in the JVM: spark.createDataFrame of Python rows would go through a Python RDD and start
    # Python workers on a cluster's executors (the query itself needs none). A zero vector's margin is the
    # intercept, dense or sparse.
    zero = spark.range(1).select(array_to_vector(F.array_repeat(F.lit(0.0), size)).alias(features_col))
    prediction_col = stage.getOrDefault("predictionCol")
    rows = (
        stage.transform(zero)
        .select(
            F.col(prediction_col).alias("prediction"),
            F.get(
                vector_to_array(F.col(stage.getOrDefault("probabilityCol"))), F.col(prediction_col).cast("int")
            ).alias("probability"),
        )
        .collect()
    )
    if not rows or rows[0].prediction is None or rows[0].probability is None:
        return None
    prediction, probability = float(rows[0].prediction), float(rows[0].probability)
    if prediction != prediction or probability != probability:  # NaN equals nothing, not even itself
        return None
    return prediction, probability
