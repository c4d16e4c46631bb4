"""Load a deployable model (a Spark PipelineModel plus our model.json) and check that the two agree."""

from __future__ import annotations

import importlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyspark
from pyspark.ml import PipelineModel
from pyspark.ml.wrapper import JavaWrapper
from pyspark.sql import Column, SparkSession
from pyspark.sql import functions as F

from job.runtime import storage
from job.runtime.stages import PipelineError, PipelineFacts, inspect_pipeline

logger = logging.getLogger(__name__)

METADATA_FILE = "model.json"
# What PipelineModel.save writes in its metadata/ folder; a single saved estimator names its own class.
PIPELINE_MODEL_CLASS = "org.apache.spark.ml.PipelineModel"
# Types a model input field may have: the ones the job knows how to parse from a JSON message.
INPUT_TYPES = ("string", "integer", "long", "double", "float", "boolean")
# The field every message must carry: it keys the output record. It may be a number or a string.
ID_FIELD = "id"
ID_TYPES = ("integer", "long", "string")
# Keys of model.json's `output_columns`: the pipeline's columns the job reads its results from.
OUTPUT_COLUMN_KEYS = ("prediction", "probability", "predicted_label", "raw_prediction")


class ModelError(Exception):
    """The model at a location cannot be used. The message names the location and the problem."""


@dataclass(frozen=True)
class ModelMetadata:
    """The fields of model.json the job relies on; `raw` keeps the whole document (evaluation and all)."""

    name: str
    version: str
    label_column: str
    label_values: tuple[str, ...]
    input_schema: tuple[tuple[str, str], ...]
    # The pipeline's output columns as written down (`output_columns`: prediction, probability, predicted_label,
    # raw_prediction); the loader checks each one given against the pipeline. Older documents may leave it out.
    output_columns: Mapping[str, str | None] = field(default_factory=dict, hash=False)
    raw: Mapping[str, Any] = field(default_factory=dict, hash=False, repr=False)

    @classmethod
    def from_json(cls, text: str, source: str) -> ModelMetadata:
        """Parse and validate a model.json document; `source` names it in error messages."""
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise ModelError(f"{source}: not valid JSON ({exc})") from None
        if not isinstance(doc, dict):
            raise ModelError(f"{source}: expected a JSON object, found {type(doc).__name__}")

        def required(key: str) -> Any:
            if key not in doc:
                raise ModelError(f"{source}: field {key!r} is missing")
            return doc[key]

        def text_field(key: str) -> str:
            value = required(key)
            if not isinstance(value, str) or not value.strip():
                raise ModelError(f"{source}: field {key!r} must be a non-empty string, found {value!r}")
            return value

        name = text_field("name")
        version = text_field("version")
        label_column = text_field("label_column")

        labels = required("label_values")
        if not isinstance(labels, list) or len(labels) < 2 or not all(isinstance(v, str) and v.strip() for v in labels):
            raise ModelError(
                f"{source}: field 'label_values' must be a list of at least two non-empty strings "
                f"(index = prediction number), found {labels!r}"
            )
        if len(set(labels)) != len(labels):
            raise ModelError(f"{source}: field 'label_values' has duplicates: {labels!r}")

        schema = required("input_schema")
        if not isinstance(schema, list) or not schema:
            raise ModelError(
                f"{source}: field 'input_schema' must be a non-empty list of {{'name', 'type'}} objects, "
                f"found {schema!r}"
            )
        fields: list[tuple[str, str]] = []
        for i, item in enumerate(schema):
            if (
                not isinstance(item, dict)
                or not isinstance(item.get("name"), str)
                or not item["name"]
                or not isinstance(item.get("type"), str)
            ):
                raise ModelError(
                    f"{source}: field 'input_schema[{i}]' must be an object with string 'name' and 'type', "
                    f"found {item!r}"
                )
            if item["type"] not in INPUT_TYPES:
                raise ModelError(
                    f"{source}: field 'input_schema[{i}]' ({item['name']!r}) has type {item['type']!r}; "
                    f"expected one of {list(INPUT_TYPES)}"
                )
            fields.append((item["name"], item["type"]))
        names = [n for n, _ in fields]
        if len(set(names)) != len(names):
            raise ModelError(f"{source}: field 'input_schema' names a column twice: {names}")
        types = dict(fields)
        if ID_FIELD not in types:
            raise ModelError(
                f"{source}: field 'input_schema' has no '{ID_FIELD}' field; every message needs one, as it keys "
                f"the output record (`job model publish` adds it as an integer)"
            )
        if types[ID_FIELD] not in ID_TYPES:
            raise ModelError(
                f"{source}: field 'input_schema' gives '{ID_FIELD}' the type {types[ID_FIELD]!r}; the record key "
                f"must be one of {list(ID_TYPES)}"
            )

        outputs = doc.get("output_columns", {})
        if not isinstance(outputs, dict) or not all(
            key in OUTPUT_COLUMN_KEYS and (value is None or (isinstance(value, str) and value))
            for key, value in outputs.items()
        ):
            raise ModelError(
                f"{source}: field 'output_columns' must be an object with keys among {list(OUTPUT_COLUMN_KEYS)} "
                f"and column names (or null) as values, found {outputs!r}"
            )

        return cls(
            name=name,
            version=version,
            label_column=label_column,
            label_values=tuple(labels),
            input_schema=tuple(fields),
            output_columns=dict(outputs),
            raw=doc,
        )

    def to_json(self) -> str:
        """The document as written to model.json: `raw` with the typed fields laid over it."""
        doc = dict(self.raw)
        doc.update(
            name=self.name,
            version=self.version,
            label_column=self.label_column,
            label_values=list(self.label_values),
            input_schema=[{"name": n, "type": t} for n, t in self.input_schema],
        )
        if self.output_columns:
            doc["output_columns"] = dict(self.output_columns)
        return json.dumps(doc, indent=2, sort_keys=False) + "\n"


@dataclass(frozen=True)
class LoadedModel:
    """A PipelineModel ready to score, checked against its metadata: everything the query needs, no global state.

    Built only by `load_model`, so holding one means the metadata and the pipeline agree (input columns,
    labels, output columns). `facts` is what the pipeline itself says (see `job.runtime.stages`).
    """

    pipeline: PipelineModel
    metadata: ModelMetadata
    location: str
    facts: PipelineFacts

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def version(self) -> str:
        return self.metadata.version

    @property
    def input_fields(self) -> tuple[tuple[str, str], ...]:
        """(name, type) of each field parsed from a message's JSON: the metadata's input schema, `id` included."""
        return self.metadata.input_schema

    @property
    def label_values(self) -> tuple[str, ...]:
        """Label i is the label of prediction i."""
        return self.metadata.label_values

    @property
    def prediction_column(self) -> str:
        return self.facts.prediction_column

    @property
    def probability_column(self) -> str | None:
        """The classifier's probability vector column; None for a classifier without probabilities (LinearSVC)."""
        return self.facts.probability_column

    @property
    def predicted_label_column(self) -> str | None:
        """The pipeline's own label column (an IndexToString on the prediction), or None: the job maps numbers."""
        return self.facts.predicted_label_column

    def input_columns(self) -> tuple[str, ...]:
        """The columns the pipeline reads from the message (no earlier stage writes them)."""
        return self.facts.input_columns


def label_for_prediction(label_values: Sequence[str]) -> Callable[[Column], Column]:
    """Map a prediction column (0.0, 1.0, ...) to its label string, in the JVM.

    `label_values[i]` is the label of prediction i. A prediction outside the list gives null rather
    than failing the query: `F.get` is 0-based and, unlike `element_at` under ANSI mode, does not throw.
    """
    labels = F.array(*[F.lit(v) for v in label_values])

    def to_label(prediction: Column) -> Column:
        return F.get(labels, prediction.cast("int"))

    return to_label


def decision_threshold(classifier: Any) -> float | None:
    """For a binary classifier, the probability of label index 1 above which it predicts index 1; else None.

    Spark's probabilistic classifiers predict argmax(p_i / t_i) with `thresholds` [t0, t1], i.e. index 1
    when p1 > t1 / (t0 + t1); LogisticRegression's `threshold` t means p1 > t; with neither, argmax: 0.5.
    So with a threshold other than 0.5, the probability of the predicted label can be under 0.5.
    Multi-class models decide by argmax(p_i / t_i) with no single threshold: None. So does a classifier
    without probabilities (LinearSVC's `threshold` is on its raw margin, not on a probability).
    """
    if int(getattr(classifier, "numClasses", 2)) != 2 or not classifier.hasParam("probabilityCol"):
        return None

    def set_value(name: str) -> Any:
        if classifier.hasParam(name) and classifier.isSet(classifier.getParam(name)):
            return classifier.getOrDefault(name)
        return None

    thresholds = set_value("thresholds")
    if thresholds is not None:
        low, high = (float(t) for t in thresholds)
        return high / (low + high)
    if classifier.hasParam("threshold"):
        return float(classifier.getOrDefault("threshold"))
    return 0.5


def _saved_class(spark: SparkSession, location: str) -> str | None:
    """The class name Spark ML recorded in `<location>/metadata`, or None when there is none."""
    metadata_dir = storage.join(location, "metadata")
    if not storage.is_directory(spark, metadata_dir):
        return None
    for name in storage.list_names(spark, metadata_dir):
        if not name.startswith("part-"):
            continue
        for line in (storage.read_text(spark, storage.join(metadata_dir, name)) or "").splitlines():
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if isinstance(doc, dict) and isinstance(doc.get("class"), str):
                return str(doc["class"])
    return None


def error_summary(exc: BaseException) -> str:
    """One line saying what went wrong in Spark: the Java exception for a py4j error, else the message's first line."""
    java = getattr(exc, "java_exception", None)
    text = str(java.toString()) if java is not None else str(exc)
    return (text.strip().splitlines() or [type(exc).__name__])[0]


def _jvm_has_class(spark: SparkSession, name: str) -> bool:
    java_lang = storage.jvm(spark).java.lang
    try:
        java_lang.Class.forName(name, False, java_lang.Thread.currentThread().getContextClassLoader())
    except Exception:
        return False
    return True


def _python_class(java_class: str) -> type | None:
    """The Python class pyspark loads a saved stage with: org.apache.spark.X is pyspark.X (JavaParams._from_java)."""
    module, _, name = java_class.replace("org.apache.spark", "pyspark").rpartition(".")
    try:
        found = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return None
    return found if isinstance(found, type) else None


def _stage_load_problem(spark: SparkSession, java_class: str) -> str | None:
    """Why this Spark cannot load a saved stage of this class, or None when it can."""
    python = _python_class(java_class)
    if python is not None and not issubclass(python, JavaWrapper):
        return None  # a stage written in Python, loaded by Python alone
    python_name = java_class.replace("org.apache.spark", "pyspark")
    on_jvm = _jvm_has_class(spark, java_class)
    if python is None and on_jvm:
        return f"pyspark {pyspark.__version__} has no Python class {python_name} to load it with"
    if python is None:
        return (
            f"neither Spark {spark.version} nor Python knows that class (a stage of another Spark version, or one "
            "whose jar and Python package are not installed)"
        )
    if not on_jvm:
        return "the JVM has no such class: add the jar that holds it (spark-submit --jars)"
    return None


def _unloadable_stage(spark: SparkSession, location: str) -> str | None:
    """The first saved stage this Spark cannot load, described, or None if none is found."""
    stages_dir = storage.join(location, "stages")
    if not storage.is_directory(spark, stages_dir):
        return None
    folders = storage.list_names(spark, stages_dir)
    for folder in sorted(folders, key=lambda n: (int(n.split("_", 1)[0]) if n.split("_", 1)[0].isdigit() else 0, n)):
        java_class = _saved_class(spark, storage.join(stages_dir, folder))
        if java_class is None:
            return f"stage {folder} has no readable metadata/"
        problem = _stage_load_problem(spark, java_class)
        if problem is not None:
            return f"stage {folder} is a {java_class}, which this Spark cannot load: {problem}"
    return None


def load_pipeline(spark: SparkSession, location: str) -> PipelineModel:
    """PipelineModel.load, with a refusal that names the stage this Spark cannot load, when it is one."""
    try:
        return PipelineModel.load(location)
    except Exception as exc:
        stage = _unloadable_stage(spark, location)
        if stage is not None:
            raise ModelError(f"model location {location}: {stage}") from exc
        raise ModelError(f"model location {location}: PipelineModel.load failed: {error_summary(exc)}") from exc


def check_saved_pipeline(spark: SparkSession, location: str) -> None:
    """Refuse a location that does not hold a saved PipelineModel, naming what is there instead."""
    if not storage.exists(spark, location):
        raise ModelError(f"model location {location}: no such folder")
    if not storage.is_directory(spark, location):
        raise ModelError(f"model location {location}: is a file, expected a folder holding a saved PipelineModel")
    saved_class = _saved_class(spark, location)
    if saved_class is None:
        raise ModelError(
            f"model location {location}: not a saved Spark ML PipelineModel (no readable metadata/ folder; "
            f"found {storage.list_names(spark, location)})"
        )
    if saved_class != PIPELINE_MODEL_CLASS:
        raise ModelError(
            f"model location {location}: holds a saved {saved_class}, not a PipelineModel ({PIPELINE_MODEL_CLASS}); "
            "save the fitted Pipeline (Tokenizer -> HashingTF -> LogisticRegression), not a single stage"
        )


def inspect(location: str, pipeline: PipelineModel, label_column: str | None) -> PipelineFacts:
    """`stages.inspect_pipeline`, its refusal prefixed with the location."""
    try:
        return inspect_pipeline(pipeline, label_column)
    except PipelineError as exc:
        raise ModelError(f"model location {location}: {exc}") from None


def check_agreement(location: str, metadata: ModelMetadata, facts: PipelineFacts) -> None:
    """Refuse metadata that does not describe the pipeline: each sentence names both sides."""
    where = f"model location {location}: {METADATA_FILE}"
    declared = [n for n, _ in metadata.input_schema]
    for column in facts.input_columns:
        if column not in declared:
            reader = next(s for s in facts.stages if column in s.inputs)
            raise ModelError(
                f"model location {location}: the pipeline reads column {column!r} ({reader.describe()}), which the "
                f"input_schema of {METADATA_FILE} does not declare (it declares {declared})"
            )
    if len(metadata.label_values) != facts.num_classes:
        raise ModelError(
            f"{where} lists {len(metadata.label_values)} label_values {list(metadata.label_values)} "
            f"but the classifier predicts {facts.num_classes} classes"
        )
    if facts.label_values is not None and facts.label_values != metadata.label_values:
        raise ModelError(
            f"{where} lists label_values {list(metadata.label_values)} but the pipeline's own labels "
            f"({facts.label_source}) are {list(facts.label_values)}"
        )
    actual = {
        "prediction": facts.prediction_column,
        "probability": facts.probability_column,
        "predicted_label": facts.predicted_label_column,
    }
    for key, value in actual.items():
        if key in metadata.output_columns and metadata.output_columns[key] != value:
            raise ModelError(
                f"{where} gives output_columns.{key} {metadata.output_columns[key]!r} but the pipeline's is {value!r}"
            )


def load_model(spark: SparkSession, location: str, dense_coefficients: bool = True) -> LoadedModel:
    """Load the model at `location` (any URI Spark reads) and check that its model.json describes the pipeline.

    `dense_coefficients` trades a per-batch cost for a per-row one (see `with_dense_coefficients`): dense is
    faster per row, but its coefficients (2 MiB for the sample model, 94 KB as saved) are serialized into every
    micro-batch's tasks. Raises ModelError naming the location and the problem. The check of the scoring
    itself, on a generated message, is `job.runtime.publish.load_serving_model`, which the deployment uses.
    """
    check_saved_pipeline(spark, location)
    metadata_uri = storage.join(location, METADATA_FILE)
    metadata_text = storage.read_text(spark, metadata_uri)
    if metadata_text is None:
        raise ModelError(
            f"model location {location}: no {METADATA_FILE} (name, version, label_values, input_schema); "
            "`job model publish` (or job.training.train) writes it beside metadata/ and stages/"
        )
    metadata = ModelMetadata.from_json(metadata_text, source=metadata_uri)
    pipeline = load_pipeline(spark, location)
    facts = inspect(location, pipeline, metadata.label_column)
    check_agreement(location, metadata, facts)
    logger.info(
        "loaded model %r version %s from %s (stages %s, labels %s)",
        metadata.name,
        metadata.version,
        location,
        [s.name for s in facts.stages],
        list(metadata.label_values),
    )
    if dense_coefficients:
        pipeline = with_dense_coefficients(spark, pipeline)
    return LoadedModel(pipeline=pipeline, metadata=metadata, location=location, facts=facts)


def with_dense_coefficients(spark: SparkSession, pipeline: PipelineModel) -> PipelineModel:
    """The same pipeline with each LogisticRegressionModel's coefficients stored dense.

    A saved model with L1 regularisation keeps its coefficients sparse, and Spark's margin for a sparse
    row against sparse coefficients walks every non-zero weight up to the row's largest index: thousands
    of steps for a dozen words. Against dense coefficients it is one multiply-add per word, summed in the
    same order, so predictions and probabilities stay bit-identical (tests/unit/test_model.py checks).
    The cost is numFeatures doubles (2 MiB for 2^18), once per query.
    """
    from pyspark.ml.classification import LogisticRegressionModel

    stages = []
    for stage in pipeline.stages:
        if isinstance(stage, LogisticRegressionModel):
            java: Any = stage._java_obj
            matrix = java.coefficientMatrix()
            dense = storage.jvm(spark).org.apache.spark.ml.classification.LogisticRegressionModel(
                java.uid(), matrix.toDense(), java.interceptVector(), java.numClasses(), matrix.numRows() > 1
            )
            # copy(extra) keeps the new coefficients and takes every param (threshold, columns) from the original.
            stage = LogisticRegressionModel(dense.copy(java.extractParamMap()))
            stage._transfer_params_from_java()  # so the Python side reports the same params
        stages.append(stage)
    return PipelineModel(stages)
