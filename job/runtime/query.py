"""The streaming query: Kafka source -> scoring transforms -> Kafka sink(s)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming.query import StreamingQuery
from pyspark.sql.streaming.readwriter import DataStreamWriter

from job.runtime import scoring
from job.runtime.connection import loggable, sink_options, source_options
from job.runtime.model import LoadedModel, decision_threshold
from job.runtime.stages import flat_stages
from job.runtime.status import COUNTS_METRIC, StatusListener, StatusTracker
from job.runtime.values import DeploymentSpec, Trigger

logger = logging.getLogger(__name__)


def model_input_fields(model: LoadedModel) -> list[scoring.InputField]:
    return [scoring.InputField(name, kind) for name, kind in model.input_fields]


def model_info(model: LoadedModel) -> scoring.ModelInfo:
    """What the scoring transforms need to know about a loaded model beside its pipeline."""
    classifier = flat_stages(model.pipeline)[model.facts.classifier.index]
    reads_text = any(name == scoring.TEXT_FIELD for name, _ in model.input_fields)
    # NO_FEATURES looks at the classifier's input: every Spark ML classifier has a featuresCol.
    features = classifier.getOrDefault("featuresCol") if classifier.hasParam("featuresCol") else None
    return scoring.ModelInfo(
        name=model.name,
        version=model.version,
        label_values=model.label_values,
        input_fields=tuple(model_input_fields(model)),
        prediction_column=model.prediction_column,
        probability_column=model.probability_column,
        predicted_label_column=model.predicted_label_column,
        fillers=tuple(sorted(model.facts.known_values.items())),
        features_column=features if reads_text else None,
        bias=scoring.zero_features_output(classifier, features) if reads_text and features else None,
        threshold=decision_threshold(classifier),
    )


def deployment_transform(spec: DeploymentSpec, model: LoadedModel) -> Callable[[DataFrame], DataFrame]:
    """Kafka source rows -> Kafka sink rows for this deployment and model (see `scoring.scoring_pipeline`)."""
    return scoring.scoring_pipeline(
        model=model.pipeline,
        info=model_info(model),
        deployment=spec.name,
        target_topic=spec.target.topic,
        dead_letter_topic=spec.dead_letter.topic,
        max_text_length=spec.options.max_text_length,
        max_message_bytes=spec.options.max_message_bytes,
        no_features=spec.options.dead_letter_no_features,
    )


def source_stream(spark: SparkSession, spec: DeploymentSpec) -> DataFrame:
    """The deployment's Kafka source: one row per input offset (key, value, topic, partition, offset, ...)."""
    options = source_options(spec)
    logger.info("Kafka source options: %s", loggable(options))
    return spark.readStream.format("kafka").options(**options).load()


def counted(dead_letter_topic: str) -> Callable[[DataFrame], DataFrame]:
    """Count each micro-batch's records and dead letters into the query's progress (`COUNTS_METRIC`)."""

    def transform(records: DataFrame) -> DataFrame:
        is_dead_letter = F.when(F.col(scoring.TOPIC) == dead_letter_topic, 1).otherwise(0)
        return records.observe(
            COUNTS_METRIC,
            F.count(F.lit(1)).alias("records"),
            F.coalesce(F.sum(is_dead_letter), F.lit(0)).alias("dead_lettered"),
        )

    return transform


def start_query(
    spark: SparkSession,
    spec: DeploymentSpec,
    model: LoadedModel,
    tracker: StatusTracker | None = None,
    transform: Callable[[DataFrame], DataFrame] | None = None,
) -> StreamingQuery:
    """Start the deployment's streaming query; it resumes from the checkpoint when there is one.

    With a tracker, a listener keeps the deployment's status document up to date. `transform` replaces the
    deployment's scoring transform (the benchmark's variants); by default it is `deployment_transform`.
    """
    return prepare_query(spark, spec, model, tracker, transform)()


def prepare_query(
    spark: SparkSession,
    spec: DeploymentSpec,
    model: LoadedModel,
    tracker: StatusTracker | None = None,
    transform: Callable[[DataFrame], DataFrame] | None = None,
) -> Callable[[], StreamingQuery]:
    """`start_query` in two steps: the query's plan is built now (about a second for the sample model), and the
    function returned starts it. A model swap builds the new plan while the old query still scores."""
    records = (
        source_stream(spark, spec)
        .transform(transform or deployment_transform(spec, model))
        .transform(counted(spec.dead_letter.topic))
    )
    sink_extra = dict(spec.options.kafka)
    if spec.dead_letter.connection == spec.target.connection:
        # One sink: each row carries its topic, so scored and dead-letter records of a micro-batch are
        # written by the same task in one pass over the input.
        options = sink_options(spec.target.connection, sink_extra)
        logger.info("Kafka sink options: %s", loggable(options))
        writer = records.writeStream.format("kafka").options(**options)
    else:
        writer = records.writeStream.foreachBatch(_two_cluster_writer(spec, sink_extra))
    writer = _with_trigger(writer, spec.options.trigger)
    # Real-time mode refuses Append (STREAMING_REAL_TIME_MODE.OUTPUT_MODE_NOT_SUPPORTED); for this stateless
    # query Update writes exactly the same rows.
    output_mode = "update" if spec.options.trigger.kind == "real_time" else "append"
    writer = writer.queryName(spec.name).option("checkpointLocation", spec.checkpoint_location).outputMode(output_mode)

    def start() -> StreamingQuery:
        if tracker is not None:
            tracker.set_model(model.metadata.name, model.metadata.version, model.location)
            if not tracker.listening:  # one listener per tracker: a model swap starts the query again
                spark.streams.addListener(StatusListener(tracker, spec.name))
                tracker.listening = True
        query = writer.start()
        logger.info(
            "Deployment %r started: query id %s, run id %s, %s -> %s (dead letters -> %s)",
            spec.name,
            query.id,
            query.runId,
            spec.source.topic,
            spec.target.topic,
            spec.dead_letter.topic,
        )
        return query

    return start


def write_records(spec: DeploymentSpec, records: DataFrame) -> None:
    """Write shaped records (topic, key, value) once, as a batch, where the deployment's query writes them."""
    extra = dict(spec.options.kafka)
    if spec.dead_letter.connection == spec.target.connection:
        records.write.format("kafka").options(**sink_options(spec.target.connection, extra)).save()
    else:
        _two_cluster_writer(spec, extra)(records, 0)


def _two_cluster_writer(spec: DeploymentSpec, extra: Mapping[str, str]) -> Callable[[DataFrame, int], None]:
    target_options = sink_options(spec.target.connection, extra)
    dead_letter_options = sink_options(spec.dead_letter.connection, extra)

    def write(batch: DataFrame, batch_id: int) -> None:
        batch.persist()
        try:
            for topic, options in ((spec.target.topic, target_options), (spec.dead_letter.topic, dead_letter_options)):
                batch.filter(F.col(scoring.TOPIC) == topic).write.format("kafka").options(**options).save()
        finally:
            batch.unpersist()

    return write


def _with_trigger(writer: DataStreamWriter, trigger: Trigger) -> DataStreamWriter:
    if trigger.kind == "available_now":
        return writer.trigger(availableNow=True)
    if trigger.kind == "real_time":
        # pyspark's type stubs do not list real-time mode's keyword yet (Spark 4.1+).
        real_time: DataStreamWriter = writer.trigger(realTime=trigger.interval)  # type: ignore[call-overload]
        return real_time
    return writer.trigger(processingTime=trigger.interval)
