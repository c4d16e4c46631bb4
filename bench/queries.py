"""The job's streaming query under test: as shipped (`job.query.start_query`) or a variant of it.

The variants differ from `start_query` in named ways only: no model (parse and write only, the I/O
ceiling), another output mode, Kafka source options left out, or no `.observe(...)`. Everything else
(parsing, scoring, shaping of the output records, the single Kafka sink) is the job's own code.
"""

from __future__ import annotations

import dataclasses
import logging
import types
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from pyspark.ml import PipelineModel
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import StreamingQuery

from job import scoring
from job.credentials import sink_options, source_options
from job.query import deployment_transform, model_info, model_input_fields, scored_stream
from job.spec import DeploymentSpec, parse_spec
from job.status import COUNTS_METRIC

if TYPE_CHECKING:
    from bench.kafka_io import Topics

logger = logging.getLogger(__name__)


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
    """A deployment spec built in memory, as the integration tests do."""
    connection = {"bootstrap_servers": [bootstrap]}
    options: dict[str, Any] = {"starting_offsets": starting_offsets, "trigger": trigger}
    if max_offsets_per_trigger is not None:
        options["max_offsets_per_trigger"] = max_offsets_per_trigger
    return parse_spec(
        {
            "name": name,
            "type": "stream",
            "input": {"connection": connection, "source": {"topic": topics.source}},
            "output": {"connection": connection, "target": {"topic": topics.target}},
            "dead_letter": {"topic": topics.dead_letter},
            "model": {"location": model_location},
            "checkpoint_location": checkpoint,
            "options": options,
        }
    )


def with_pipeline(model: Any, pipeline: PipelineModel) -> Any:
    """The same loaded model (metadata and all) with another PipelineModel."""
    if dataclasses.is_dataclass(model) and not isinstance(model, type):
        return dataclasses.replace(model, pipeline=pipeline)
    return types.SimpleNamespace(pipeline=pipeline, metadata=model.metadata)


def constant_scores(info: scoring.ModelInfo) -> Callable[[DataFrame], DataFrame]:
    """Stands in for `scoring.score`: the same columns, constant values, no model."""

    def transform(df: DataFrame) -> DataFrame:
        return df.select(
            *df.columns,
            F.lit(0.0).alias(scoring.PREDICTION),
            F.lit(info.label_values[0]).alias(scoring.PREDICTED_LABEL),
            F.lit(0.5).alias(scoring.PROBABILITY),
        )

    return transform


def _source(spark: SparkSession, spec: DeploymentSpec, without: Sequence[str]) -> DataFrame:
    options = {k: v for k, v in source_options(spec).items() if k not in without}
    return spark.readStream.format("kafka").options(**options).load()


def variant_stream(spark: SparkSession, spec: DeploymentSpec, model: Any, without: Sequence[str] = ()) -> DataFrame:
    """`scored_stream` with some Kafka source options left out."""
    return _source(spark, spec, without).transform(deployment_transform(spec, model))


def unscored_stream(spark: SparkSession, spec: DeploymentSpec, model: Any) -> DataFrame:
    """`scored_stream` without the model: parse, constant scores, shape the records."""
    info = model_info(model)
    source = _source(spark, spec, ())
    return (
        source.transform(
            scoring.parse_messages(
                model_input_fields(model), spec.options.max_text_length, spec.options.max_message_bytes
            )
        )
        .transform(constant_scores(info))
        .transform(scoring.to_kafka_records(spec.name, info, spec.target.topic, spec.dead_letter.topic))
    )


def start_variant(
    spark: SparkSession,
    spec: DeploymentSpec,
    model: Any,
    *,
    score: bool = True,
    output_mode: str = "append",
    observe: bool = True,
    without_source_options: Sequence[str] = (),
) -> StreamingQuery:
    """`start_query`'s one-sink path with the variant's changes; the spec's source, target and trigger."""
    if not score:
        records = unscored_stream(spark, spec, model)
    elif without_source_options:
        records = variant_stream(spark, spec, model, without_source_options)
    else:
        records = scored_stream(spark, spec, model)
    if observe:
        # The same metrics as start_query, so the variant costs what the job costs.
        records = records.observe(
            COUNTS_METRIC,
            F.count(F.lit(1)).alias("records"),
            F.coalesce(F.sum(F.when(F.col(scoring.TOPIC) == spec.dead_letter.topic, 1).otherwise(0)), F.lit(0)).alias(
                "dead_lettered"
            ),
        )
    writer = records.writeStream.format("kafka").options(**sink_options(spec.target.connection, spec.options.kafka))
    trigger = spec.options.trigger
    if trigger.kind == "available_now":
        writer = writer.trigger(availableNow=True)
    elif trigger.kind == "real_time":
        writer = writer.trigger(realTime=trigger.interval)
    else:
        writer = writer.trigger(processingTime=trigger.interval)
    return (
        writer.queryName(spec.name)
        .option("checkpointLocation", spec.checkpoint_location)
        .outputMode(output_mode)
        .start()
    )
