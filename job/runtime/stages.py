"""What a fitted PipelineModel says about serving it: its input columns, its classifier, its labels.

Read from the stages' own params (inputCol, outputCol, featuresCol, predictionCol, labels, ...), so a pipeline
someone else trained can be published without hand-written metadata when it tells enough. Pure: no Spark job.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pyspark.ml import PipelineModel, Transformer
from pyspark.ml.classification import ClassificationModel
from pyspark.ml.feature import IndexToString, StringIndexerModel

# Params through which a stage reads columns, and through which it writes them.
_INPUT_PARAMS = ("inputCol", "inputCols", "featuresCol")
_OUTPUT_PARAMS = ("outputCol", "outputCols", "predictionCol", "probabilityCol", "rawPredictionCol")

# Stages whose input column, when it comes straight from the message, has a type we can tell. Others (a
# SQLTransformer, a FeatureHasher that takes any type) need the type declared.
_STRING_INPUT_STAGES = ("Tokenizer", "RegexTokenizer", "StringIndexerModel")
_NUMBER_INPUT_STAGES = ("VectorAssembler", "Imputer", "ImputerModel", "Bucketizer", "QuantileDiscretizer")


class PipelineError(ValueError):
    """The pipeline cannot serve the job; the message says which stage and why (without the location)."""


@dataclass(frozen=True)
class Stage:
    """One stage: its position, Python and Java class, and the columns it reads and writes."""

    index: int
    name: str
    java_class: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]

    def describe(self) -> str:
        return f"stage {self.index} ({self.name})"


@dataclass(frozen=True)
class PipelineFacts:
    """Everything the job takes from the pipeline itself."""

    stages: tuple[Stage, ...]
    # Columns the pipeline reads that no earlier stage writes: they must come from each message.
    input_columns: tuple[str, ...]
    # The type of an input column, where the stage reading it tells (Tokenizer: string; VectorAssembler: double).
    input_types: Mapping[str, str]
    classifier: Stage
    num_classes: int
    # The training label: the column the classifier was fitted on, and the raw column a StringIndexerModel made
    # it from (the same when there is no such indexer). Neither is read when scoring.
    classifier_label_column: str
    raw_label_column: str
    prediction_column: str
    probability_column: str | None
    # The labels, index i = prediction i, when the pipeline names them; and where they come from.
    label_values: tuple[str, ...] | None
    label_source: str | None
    # The output column of an IndexToString stage that turns the prediction into its label, if there is one.
    predicted_label_column: str | None
    # For input columns a StringIndexerModel reads: a value it knows (its first label), fed for rows that are
    # already invalid, so that an indexer with handleInvalid='error' never sees an unknown value there.
    known_values: Mapping[str, str] = field(default_factory=dict)


def _param(stage: Transformer, name: str) -> Any:
    """The value of a param (set or default), or None when the stage has no such param or it is unset."""
    if not stage.hasParam(name):
        return None
    param = stage.getParam(name)
    return stage.getOrDefault(param) if stage.isDefined(param) else None


def _columns(stage: Transformer, params: tuple[str, ...]) -> tuple[str, ...]:
    found: list[str] = []
    for name in params:
        value = _param(stage, name)
        if isinstance(value, str) and value:  # an empty column name switches an output off (probabilityCol="")
            found.append(value)
        elif isinstance(value, list | tuple):
            found.extend(str(v) for v in value if v)
    return tuple(found)


def _java_class(stage: Transformer) -> str:
    java = getattr(stage, "_java_obj", None)
    return str(java.getClass().getName()) if java is not None else f"{type(stage).__module__}.{type(stage).__name__}"


def flat_stages(pipeline: PipelineModel) -> list[Transformer]:
    """The stages in the order they run, a PipelineModel nested as a stage replaced by its own stages."""
    flat: list[Transformer] = []
    for stage in pipeline.stages:
        flat.extend(flat_stages(stage) if isinstance(stage, PipelineModel) else [stage])
    return flat


def stage_list(pipeline: PipelineModel) -> tuple[Stage, ...]:
    """The pipeline's stages (nested pipelines flattened) with the columns each reads and writes."""
    return tuple(
        Stage(
            index=i,
            name=type(stage).__name__,
            java_class=_java_class(stage),
            inputs=_columns(stage, _INPUT_PARAMS),
            outputs=_columns(stage, _OUTPUT_PARAMS),
        )
        for i, stage in enumerate(flat_stages(pipeline))
    )


def _labels_of(stage: Transformer) -> tuple[str, ...] | None:
    labels = _param(stage, "labels")
    return tuple(str(v) for v in labels) if labels else None


def inspect_pipeline(pipeline: PipelineModel, label_column: str | None = None) -> PipelineFacts:
    """What the pipeline tells about serving it; raises PipelineError when it cannot serve the job.

    `label_column` is the training label column named by the metadata (WML's `label_col`), if any: it is not an
    input, and it must be the classifier's label column or the column a StringIndexerModel indexed into it.
    """
    stages = stage_list(pipeline)
    transformers = flat_stages(pipeline)
    if not stages:
        raise PipelineError("the PipelineModel has no stages")
    classifiers = [i for i, s in enumerate(transformers) if isinstance(s, ClassificationModel)]
    if not classifiers:
        raise PipelineError(
            f"no classification model among the stages {[s.name for s in stages]}; the job serves a pipeline whose "
            "last model is a classifier (LogisticRegressionModel, NaiveBayesModel, "
            "RandomForestClassificationModel, ...)"
        )
    at = classifiers[-1]
    classifier_stage: Any = transformers[at]
    classifier = stages[at]
    prediction_column = str(classifier_stage.getPredictionCol())
    probability_column = _param(classifier_stage, "probabilityCol") or None
    num_classes = int(classifier_stage.numClasses)
    predicted_label_column: str | None = None
    index_labels: tuple[str, ...] | None = None
    for stage, facts in zip(transformers[at + 1 :], stages[at + 1 :], strict=True):
        if not isinstance(stage, IndexToString) or facts.inputs != (prediction_column,):
            raise PipelineError(
                f"{facts.describe()} comes after the classifier ({classifier.describe()}); only an IndexToString "
                f"that turns its '{prediction_column}' column into labels may follow it, as the job takes the "
                "classifier's prediction as the pipeline's result"
            )
        index_labels = _labels_of(stage)
        if index_labels is None:
            raise PipelineError(
                f"{facts.describe()} turns '{prediction_column}' into labels but has no labels param; at scoring "
                "time the prediction column carries no label names, so build it with labels=<the StringIndexerModel's "
                "labels>"
            )
        predicted_label_column = facts.outputs[0]

    classifier_label = str(classifier_stage.getLabelCol())
    label_indexer: tuple[int, StringIndexerModel] | None = None
    for i, stage in enumerate(transformers[:at]):
        if isinstance(stage, StringIndexerModel) and stages[i].outputs == (classifier_label,):
            label_indexer = (i, stage)
    raw_label = label_indexer[1].getInputCol() if label_indexer is not None else classifier_label
    if label_column is not None and label_column not in (raw_label, classifier_label):
        names = (
            f"'{raw_label}' (indexed into '{classifier_label}')" if raw_label != classifier_label else f"'{raw_label}'"
        )
        raise PipelineError(
            f"the metadata names the label column '{label_column}', but the classifier learnt from {names}"
        )

    label_values: tuple[str, ...] | None = None
    label_source: str | None = None
    if index_labels is not None:
        label_values, label_source = index_labels, f"the labels of the IndexToString stage ({predicted_label_column})"
    elif label_indexer is not None:
        label_values = tuple(str(v) for v in label_indexer[1].labels)
        label_source = f"the labels of the StringIndexerModel on '{raw_label}' (stage {label_indexer[0]})"
    if label_values is not None and len(label_values) != num_classes:
        raise PipelineError(
            f"{label_source} are {len(label_values)} {list(label_values)} but the classifier "
            f"({classifier.describe()}) predicts {num_classes} classes"
        )

    produced: set[str] = set()
    inputs: list[str] = []
    types: dict[str, str] = {}
    known: dict[str, str] = {}
    not_inputs = {raw_label, classifier_label}
    for stage, facts in zip(transformers, stages, strict=True):
        skips = _param(stage, "handleInvalid") == "skip"
        if label_indexer is not None and facts.index == label_indexer[0]:
            if skips:
                # Spark filters on the input column before it checks that the column exists (StringIndexer.scala,
                # filterInvalidData), so without the label in the message the transform fails.
                raise PipelineError(
                    f"{facts.describe()} indexes the label column '{raw_label}' with handleInvalid='skip', which "
                    "makes Spark read that column when scoring, and a message does not carry it; refit the indexer "
                    "with 'error' (the default) or 'keep'"
                )
            continue  # reads the training label, which a message does not carry; Spark skips it when it is absent
        if skips:
            raise PipelineError(
                f"{facts.describe()} has handleInvalid='skip': it drops the rows it cannot handle, so a message "
                "would get no record at all; refit it with 'keep' (or 'error')"
            )
        for position, column in enumerate(facts.inputs):
            if column in produced or column in not_inputs:
                continue
            if column not in inputs:
                inputs.append(column)
            if facts.name in _STRING_INPUT_STAGES:
                types.setdefault(column, "string")
            elif facts.name in _NUMBER_INPUT_STAGES:
                types.setdefault(column, "double")
            if isinstance(stage, StringIndexerModel):
                labels = stage.labelsArray[position] if len(stage.labelsArray) > position else []
                if labels:
                    known.setdefault(column, str(labels[0]))
        produced.update(facts.outputs)
    features = _param(classifier_stage, "featuresCol")
    if features in inputs:
        raise PipelineError(
            f"the classifier ({classifier.describe()}) reads the vector column '{features}', which no earlier stage "
            "writes; a message cannot carry a vector, so the pipeline must build it from the message's fields"
        )
    return PipelineFacts(
        stages=stages,
        input_columns=tuple(inputs),
        input_types=types,
        classifier=classifier,
        num_classes=num_classes,
        classifier_label_column=classifier_label,
        raw_label_column=raw_label,
        prediction_column=prediction_column,
        probability_column=str(probability_column) if probability_column else None,
        label_values=label_values,
        label_source=label_source,
        predicted_label_column=predicted_label_column,
        known_values=known,
    )
