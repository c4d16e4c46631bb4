"""SparkSessions, one builder per purpose: the deployment's own, and a small local one for tools and tests."""

from __future__ import annotations

from collections.abc import Mapping

from pyspark.sql import SparkSession

from job.runtime import strict_json
from job.runtime.values import DeploymentSpec

# Spark redacts matching conf keys and data source options in the UI, its REST API, plan strings and
# the event log. The defaults do not match `kafka.sasl.jaas.config`, which holds the password. The options' pattern
# also covers every name `secrets.is_secret_option` calls secret (`kafka.ssl.keystore.key`, a PEM private key).
REDACTION_REGEX = r"(?i)secret|password|token|access[.]?key|jaas|sasl[.]jaas|credential"
OPTIONS_REDACTION_REGEX = r"(?i)url|jaas|password|secret|token|key|credential"

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
    """Session settings every run of the job's query needs, whatever the master."""
    return {
        **(PROMETHEUS_CONF if prometheus else {}),
        "spark.sql.session.timeZone": "UTC",
        "spark.redaction.regex": REDACTION_REGEX,
        "spark.sql.redaction.options.regex": OPTIONS_REDACTION_REGEX,
        "spark.ui.showConsoleProgress": "false",
        # The query has no shuffle; keep the setting small for the odd aggregate in status checks.
        "spark.sql.shuffle.partitions": "2",
        # What try_parse_json accepts must not depend on the cluster's defaults (duplicate keys, lone surrogates).
        **strict_json.STRICT_VARIANT_CONF,
    }


def deployment_session(spec: DeploymentSpec, app_name: str | None = None) -> SparkSession:
    """The session of `run` and `validate`: the master and resources come from spark-submit."""
    builder = SparkSession.builder.appName(app_name or f"stream-deployment: {spec.name}")
    for key, value in spark_conf(prometheus=spec.prometheus).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(spec.spark_log_level)
    return spark


def local_session(
    app_name: str,
    master: str = "local[2]",
    conf: Mapping[str, str] | None = None,
    log_level: str = "WARN",
) -> SparkSession:
    """A local session with the job's settings and the UI off: for the state folder on Hadoop storage,
    training, the tests and the benchmark. `conf` adds to or overrides the settings (memory, jars)."""
    builder = SparkSession.builder.master(master).appName(app_name).config("spark.ui.enabled", "false")
    for key, value in {**spark_conf(), **(conf or {})}.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(log_level)
    return spark
