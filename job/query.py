"""The streaming query: Kafka source -> scoring transforms -> Kafka sink(s), plus start-up checks."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql.streaming import DataStreamWriter, StreamingQuery

from job import scoring
from job.credentials import kafka_python_config, loggable, sink_options, source_options
from job.status import COUNTS_METRIC, StatusListener, StatusTracker

if TYPE_CHECKING:
    from job.model import LoadedModel
    from job.spec import Connection, DeploymentSpec, Trigger

logger = logging.getLogger(__name__)

# Spark redacts matching conf keys and data source options in the UI, its REST API, plan strings and
# the event log. The defaults do not match `kafka.sasl.jaas.config`, which holds the password.
REDACTION_REGEX = r"(?i)secret|password|token|access[.]?key|jaas|sasl[.]jaas|credential"
OPTIONS_REDACTION_REGEX = r"(?i)url|jaas|password|secret|token|truststore[.]password|keystore|credential"


class StartupError(RuntimeError):
    """The deployment cannot start: a broker or topic is not reachable. The message names which."""


# Spark's own metrics system, in Prometheus text format at http://<driver>:<ui port>/metrics/prometheus,
# with the streaming query's metrics (input rate, processing rate, latency) under a stable namespace.
PROMETHEUS_CONF = {
    "spark.ui.prometheus.enabled": "true",
    "spark.sql.streaming.metricsEnabled": "true",
    "spark.metrics.namespace": "stream_deployment",
    "spark.metrics.conf.*.sink.prometheusServlet.class": "org.apache.spark.metrics.sink.PrometheusServlet",
    "spark.metrics.conf.*.sink.prometheusServlet.path": "/metrics/prometheus",
}


def spark_conf(prometheus: bool = False) -> dict[str, str]:
    """Session settings every run of the job needs, whatever the master."""
    return {
        **(PROMETHEUS_CONF if prometheus else {}),
        "spark.sql.session.timeZone": "UTC",
        "spark.redaction.regex": REDACTION_REGEX,
        "spark.sql.redaction.options.regex": OPTIONS_REDACTION_REGEX,
        "spark.ui.showConsoleProgress": "false",
        # The query has no shuffle; keep the setting small for the odd aggregate in status checks.
        "spark.sql.shuffle.partitions": "2",
    }


def model_input_fields(model: LoadedModel) -> list[scoring.InputField]:
    return [scoring.InputField(name, kind) for name, kind in model.metadata.input_schema]


def model_info(model: LoadedModel) -> scoring.ModelInfo:
    meta = model.metadata
    return scoring.ModelInfo(name=meta.name, version=meta.version, label_values=tuple(meta.label_values))


def deployment_transform(spec: DeploymentSpec, model: LoadedModel) -> Callable[[DataFrame], DataFrame]:
    """Kafka source rows -> Kafka sink rows for this deployment and model (see `scoring.scoring_pipeline`)."""
    return scoring.scoring_pipeline(
        fields=model_input_fields(model),
        model=model.pipeline,
        info=model_info(model),
        deployment=spec.name,
        target_topic=spec.target.topic,
        dead_letter_topic=spec.dead_letter.topic,
        max_text_length=spec.options.max_text_length,
        max_message_bytes=spec.options.max_message_bytes,
    )


def scored_stream(spark: SparkSession, spec: DeploymentSpec, model: LoadedModel) -> DataFrame:
    """The Kafka source with the scoring transforms applied: rows of (topic, key, value) for the sinks."""
    options = source_options(spec)
    logger.info("Kafka source options: %s", loggable(options))
    source = spark.readStream.format("kafka").options(**options).load()
    return source.transform(deployment_transform(spec, model))


def start_query(
    spark: SparkSession, spec: DeploymentSpec, model: LoadedModel, tracker: StatusTracker | None = None
) -> StreamingQuery:
    """Start the deployment's streaming query; it resumes from the checkpoint when there is one.

    With a tracker, a listener keeps the deployment's status document up to date.
    """
    records = scored_stream(spark, spec, model).observe(
        COUNTS_METRIC,
        F.count(F.lit(1)).alias("records"),
        F.coalesce(F.sum(F.when(F.col(scoring.TOPIC) == spec.dead_letter.topic, 1).otherwise(0)), F.lit(0)).alias(
            "dead_lettered"
        ),
    )
    if tracker is not None:
        tracker.set_model(model.metadata.name, model.metadata.version)
        spark.streams.addListener(StatusListener(tracker, spec.name))
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
    query = (
        writer.queryName(spec.name)
        .option("checkpointLocation", spec.checkpoint_location)
        .outputMode(output_mode)
        .start()
    )
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


def _two_cluster_writer(spec: DeploymentSpec, extra: Mapping[str, str]):
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
        return writer.trigger(realTime=trigger.interval)
    return writer.trigger(processingTime=trigger.interval)


def check_topics(spec: DeploymentSpec, timeout_s: float = 30.0, spark: SparkSession | None = None) -> None:
    """Fail fast, naming the broker and the cause, when a cluster or topic of the spec is not there.

    Spark's Kafka source would otherwise wait silently for a topic that does not exist. With a session the
    check uses the Java AdminClient in its JVM (job.cluster_check), which tells a wrong password, an
    untrusted certificate or a wrong host name apart within a second; without one, kafka-python.
    """
    wanted: dict[tuple[str, ...], tuple[Connection, set[str]]] = {}
    for topic in (spec.source, spec.target, spec.dead_letter):
        key = topic.connection.bootstrap_servers
        wanted.setdefault(key, (topic.connection, set()))[1].add(topic.topic)
    for connection, topics in wanted.values():
        existing = list_topics(connection, timeout_s, spark)
        missing = sorted(topics - existing)
        if missing:
            raise StartupError(
                f"topic(s) {', '.join(missing)} not found on {','.join(connection.bootstrap_servers)}; "
                "create them first (the job does not create topics)"
            )


def list_topics(connection: Connection, timeout_s: float = 30.0, spark: SparkSession | None = None) -> set[str]:
    """Topic names on a cluster with the connection's security settings: Spark's Java client, or kafka-python."""
    if spark is not None:
        from job.cluster_check import ClusterCheckError
        from job.cluster_check import list_topics as list_topics_jvm

        try:
            return list_topics_jvm(spark, connection, timeout_s)
        except ClusterCheckError as exc:
            raise StartupError(str(exc)) from None
    from kafka import KafkaConsumer
    from kafka.errors import KafkaError

    servers = ",".join(connection.bootstrap_servers)
    timeout_ms = int(timeout_s * 1000)
    try:
        # kafka-python reports a wrong password or certificate only as a timeout: it is the fallback.
        consumer = KafkaConsumer(
            **kafka_python_config(connection),
            request_timeout_ms=timeout_ms,
            reconnect_backoff_max_ms=2000,
        )
    except ValueError as exc:
        raise StartupError(f"cannot check Kafka at {servers}: {exc}") from None
    except KafkaError as exc:
        raise StartupError(f"cannot connect to Kafka at {servers}: {type(exc).__name__}: {_safe(exc)}") from None
    try:
        return set(consumer.topics())
    except KafkaError as exc:
        raise StartupError(f"cannot list topics on {servers}: {type(exc).__name__}: {_safe(exc)}") from None
    finally:
        consumer.close()


def _safe(exc: BaseException) -> str:
    # kafka-python error texts name brokers and causes, never the SASL password; keep them short.
    return str(exc).splitlines()[0][:300] if str(exc) else "no detail"
