"""The job's streaming query under test: as shipped (`job.runtime.query.start_query`) or without the model.

The variant without the model (parse and write only: the I/O ceiling) replaces only the scoring step; the
parsing, the shaping of the output records, the counting and the single Kafka sink are the job's own code.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pyspark.ml import PipelineModel
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from job.runtime import scoring
from job.runtime.model import LoadedModel
from job.runtime.query import model_info, model_input_fields
from job.runtime.values import DeploymentSpec
from job.tools.specs import build_spec, spec_document

if TYPE_CHECKING:
    from bench.kafka_io import Topics


def make_spec(
    name: str,
    bootstrap: str,
    topics: Topics,
    model_location: str,
    checkpoint: str,
    trigger: Any,
    starting_offsets: str = "earliest",
    max_offsets_per_trigger: int | None = None,
) -> DeploymentSpec:
    """A deployment spec for the benchmark's topics, built like the tests build theirs."""
    options: dict[str, Any] = {"starting_offsets": starting_offsets, "trigger": trigger}
    if max_offsets_per_trigger is not None:
        options["max_offsets_per_trigger"] = max_offsets_per_trigger
    roles = {"in": topics.source, "out": topics.target, "dlq": topics.dead_letter}
    return build_spec(spec_document(name, roles, checkpoint, bootstrap, model=model_location, options=options))


def with_pipeline(model: LoadedModel, pipeline: PipelineModel) -> LoadedModel:
    """The same loaded model (metadata and all) with another PipelineModel."""
    return dataclasses.replace(model, pipeline=pipeline)


def constant_scores(info: scoring.ModelInfo) -> Callable[[DataFrame], DataFrame]:
    """Stands in for `scoring.score`: the same columns, constant values, no model."""

    def transform(df: DataFrame) -> DataFrame:
        return df.select(
            *df.columns,
            F.lit(0.0).alias(scoring.PREDICTION),
            F.lit(info.label_values[0]).alias(scoring.PREDICTED_LABEL),
            F.lit(0.5).alias(scoring.PROBABILITY),
            F.lit(0.5).alias(scoring.THRESHOLD),
        )

    return transform


def unscored(spec: DeploymentSpec, model: LoadedModel) -> Callable[[DataFrame], DataFrame]:
    """The deployment's transform without the model: parse, constant scores, shape the records."""
    info = model_info(model)
    options = spec.options

    def transform(source: DataFrame) -> DataFrame:
        return (
            source.transform(
                scoring.parse_messages(model_input_fields(model), options.max_text_length, options.max_message_bytes)
            )
            .transform(constant_scores(info))
            .transform(scoring.to_kafka_records(spec.name, info, spec.target.topic, spec.dead_letter.topic))
        )

    return transform
