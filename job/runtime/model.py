"""Load a deployable model (a Spark PipelineModel plus our model.json) and check it fits the job."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pyspark.ml import PipelineModel
from pyspark.sql import Column, SparkSession
from pyspark.sql import functions as F

from job.runtime import storage

logger = logging.getLogger(__name__)

METADATA_FILE = "model.json"
# What PipelineModel.save writes in its metadata/ folder; a single saved estimator names its own class.
PIPELINE_MODEL_CLASS = "org.apache.spark.ml.PipelineModel"
# Types a model input field may have: the ones the job knows how to parse from a JSON message.
INPUT_TYPES = ("integer", "long", "string", "double", "boolean")


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

        return cls(
            name=name,
            version=version,
            label_column=label_column,
            label_values=tuple(labels),
            input_schema=tuple(fields),
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
        return json.dumps(doc, indent=2, sort_keys=False) + "\n"


@dataclass(frozen=True)
class LoadedModel:
    """A PipelineModel ready to score, with its metadata and where it came from."""

    pipeline: PipelineModel
    metadata: ModelMetadata
    location: str

    def input_columns(self) -> tuple[str, ...]:
        """The columns the pipeline's first stage reads (the Tokenizer's inputCol)."""
        return pipeline_input_columns(self.pipeline)


def pipeline_input_columns(pipeline: PipelineModel) -> tuple[str, ...]:
    """Columns read by the first stage: `inputCol`, or `inputCols` for multi-column stages."""
    if not pipeline.stages:
        return ()
    first = pipeline.stages[0]
    for param, many in (("inputCol", False), ("inputCols", True)):
        if first.hasParam(param) and first.isDefined(first.getParam(param)):
            value = first.getOrDefault(param)
            return tuple(value) if many else (value,)
    return ()


def label_for_prediction(label_values: Sequence[str]) -> Callable[[Column], Column]:
    """Map a prediction column (0.0, 1.0, ...) to its label string, in the JVM.

    `label_values[i]` is the label of prediction i. A prediction outside the list gives null rather
    than failing the query: `F.get` is 0-based and, unlike `element_at` under ANSI mode, does not throw.
    """
    labels = F.array(*[F.lit(v) for v in label_values])

    def to_label(prediction: Column) -> Column:
        return F.get(labels, prediction.cast("int"))

    return to_label


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


def load_model(spark: SparkSession, location: str, available_columns: Sequence[str]) -> LoadedModel:
    """Load and check the model at `location` (any URI Spark reads).

    `available_columns` are the columns the job's input provides; the model must read only those.
    Raises ModelError naming the location and the problem.
    """
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

    metadata_uri = storage.join(location, METADATA_FILE)
    metadata_text = storage.read_text(spark, metadata_uri)
    if metadata_text is None:
        raise ModelError(
            f"model location {location}: no {METADATA_FILE} (name, version, label_values, input_schema); "
            "job.training.train writes it beside metadata/ and stages/"
        )
    metadata = ModelMetadata.from_json(metadata_text, source=metadata_uri)

    try:
        pipeline = PipelineModel.load(location)
    except Exception as exc:
        first_line = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ModelError(f"model location {location}: PipelineModel.load failed: {first_line}") from exc
    model = LoadedModel(pipeline=pipeline, metadata=metadata, location=location)

    if not pipeline.stages:
        raise ModelError(f"model location {location}: the PipelineModel has no stages")
    inputs = model.input_columns()
    if not inputs:
        raise ModelError(
            f"model location {location}: the first stage {type(pipeline.stages[0]).__name__} "
            "declares no inputCol, so the job cannot tell which column to feed it"
        )
    declared = [n for n, _ in metadata.input_schema]
    for column in inputs:
        if column not in declared:
            raise ModelError(
                f"model location {location}: the pipeline reads column {column!r}, which the input_schema "
                f"of {METADATA_FILE} does not declare (it declares {declared})"
            )
        if column not in available_columns:
            raise ModelError(
                f"model location {location}: the pipeline reads column {column!r}, which the job's input "
                f"does not provide (the spec parses {list(available_columns)})"
            )

    classifier = pipeline.stages[-1]
    if not hasattr(classifier, "numClasses"):
        raise ModelError(
            f"model location {location}: the last stage is {type(classifier).__name__}, "
            "not a classification model with numClasses"
        )
    num_classes = int(classifier.numClasses)
    if num_classes != len(metadata.label_values):
        raise ModelError(
            f"model location {location}: {METADATA_FILE} lists {len(metadata.label_values)} label_values "
            f"{list(metadata.label_values)} but the classifier predicts {num_classes} classes"
        )

    logger.info(
        "loaded model %r version %s from %s (stages %s, labels %s)",
        metadata.name,
        metadata.version,
        location,
        [type(s).__name__ for s in pipeline.stages],
        list(metadata.label_values),
    )
    return LoadedModel(pipeline=with_dense_coefficients(spark, pipeline), metadata=metadata, location=location)


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
