"""Kafka client options built from a connection: for Spark's Kafka source and sink, and for kafka-python."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from job.runtime.secrets import REDACTED, escaped_forms, is_secret_option, jaas_quote, scrubber, secret_forms
from job.runtime.values import Connection, DeploymentSpec

TLS_PROTOCOLS = "TLSv1.2,TLSv1.3"

_LOGIN_MODULES = {
    "PLAIN": "org.apache.kafka.common.security.plain.PlainLoginModule",
    "SCRAM-SHA-256": "org.apache.kafka.common.security.scram.ScramLoginModule",
    "SCRAM-SHA-512": "org.apache.kafka.common.security.scram.ScramLoginModule",
}

# Options whose values may be shown in logs and in `validate`; every other value is masked.
# An allow-list, not a deny-list: a new option is hidden until someone decides it is safe. A name that says it holds
# a secret (`secrets.is_secret_option`) is masked even if someone adds it here.
LOGGABLE_OPTIONS = frozenset(
    {
        "kafka.bootstrap.servers",
        "kafka.security.protocol",
        "kafka.sasl.mechanism",
        "kafka.ssl.endpoint.identification.algorithm",
        "kafka.ssl.enabled.protocols",
        "kafka.ssl.protocol",
        "kafka.ssl.truststore.type",
        "kafka.ssl.truststore.location",
        "kafka.request.timeout.ms",
        "kafka.default.api.timeout.ms",
        "kafka.max.block.ms",
        "kafka.delivery.timeout.ms",
        "kafka.metadata.max.age.ms",
        "kafka.linger.ms",
        "kafka.batch.size",
        "kafka.compression.type",
        "kafka.max.request.size",
        "kafka.fetch.max.bytes",
        "kafka.max.partition.fetch.bytes",
        "kafka.session.timeout.ms",
        "kafka.acks",
        "kafka.client.id",
        "subscribe",
        "topic",
        "startingOffsets",
        "maxOffsetsPerTrigger",
        "minPartitions",
        "failOnDataLoss",
        "includeHeaders",
    }
)


def jaas_config(mechanism: str, user: str, password: str) -> str:
    """The `sasl.jaas.config` line, with quotes and backslashes escaped as JAAS requires."""
    return f"{_LOGIN_MODULES[mechanism]} required username={jaas_quote(user)} password={jaas_quote(password)};"


def kafka_client_options(connection: Connection) -> dict[str, str]:
    """Spark `kafka.*` options for one connection: bootstrap servers plus its security settings."""
    options = {
        "kafka.bootstrap.servers": ",".join(connection.bootstrap_servers),
        "kafka.security.protocol": connection.security_protocol,
    }
    if connection.security_protocol.startswith("SASL_"):
        assert connection.sasl_mechanism and connection.user and connection.password
        options["kafka.sasl.mechanism"] = connection.sasl_mechanism
        options["kafka.sasl.jaas.config"] = jaas_config(
            connection.sasl_mechanism, connection.user, connection.password.reveal()
        )
    if connection.security_protocol.endswith("SSL"):
        # As IBM documents for Message Hub / Event Streams: TLS 1.2 or newer, and the broker's
        # certificate must match its host name.
        options["kafka.ssl.protocol"] = "TLSv1.3"
        options["kafka.ssl.enabled.protocols"] = TLS_PROTOCOLS
        options["kafka.ssl.endpoint.identification.algorithm"] = "https"
        if connection.ssl_ca_location:
            options["kafka.ssl.truststore.type"] = "PEM"
            options["kafka.ssl.truststore.location"] = connection.ssl_ca_location
        elif connection.ssl_truststore_location:
            # No type: Kafka's default (JKS) reads JKS and PKCS12 truststores alike on Java 9+.
            options["kafka.ssl.truststore.location"] = connection.ssl_truststore_location
            if connection.ssl_truststore_password is not None:
                options["kafka.ssl.truststore.password"] = connection.ssl_truststore_password.reveal()
    return options


def source_options(spec: DeploymentSpec) -> dict[str, str]:
    """Options for `spark.readStream.format('kafka')`."""
    opts = spec.options
    options = {
        **kafka_client_options(spec.source.connection),
        "subscribe": spec.source.topic,
        "startingOffsets": opts.starting_offsets,
        "failOnDataLoss": "true" if opts.fail_on_data_loss else "false",
        **opts.kafka,
    }
    if opts.trigger.kind != "real_time":
        # Spark: "maxOffsetsPerTrigger is not compatible with real time mode".
        options["maxOffsetsPerTrigger"] = str(opts.max_offsets_per_trigger)
    if opts.min_partitions is not None:
        options["minPartitions"] = str(opts.min_partitions)
    return options


def sink_options(connection: Connection, extra: Mapping[str, str]) -> dict[str, str]:
    """Options for a Kafka sink; the topic travels in each row's `topic` column."""
    return {**kafka_client_options(connection), **extra}


def kafka_python_config(connection: Connection) -> dict[str, Any]:
    """The same connection for kafka-python (start-up checks, demo and test clients)."""
    config: dict[str, Any] = {
        "bootstrap_servers": list(connection.bootstrap_servers),
        "security_protocol": connection.security_protocol,
    }
    if connection.security_protocol.startswith("SASL_"):
        assert connection.password is not None
        config["sasl_mechanism"] = connection.sasl_mechanism
        config["sasl_plain_username"] = connection.user
        config["sasl_plain_password"] = connection.password.reveal()
    if connection.security_protocol.endswith("SSL"):
        if connection.ssl_truststore_location:
            raise ValueError(
                f"kafka-python cannot read the JKS/PKCS12 truststore {connection.ssl_truststore_location!r}; "
                "give the CA certificate as PEM (ssl_ca_location) instead"
            )
        config["ssl_check_hostname"] = True
        if connection.ssl_ca_location:
            config["ssl_cafile"] = connection.ssl_ca_location
    return config


def loggable(options: Mapping[str, str]) -> dict[str, str]:
    """Options as they may appear in a log line or on screen: only allow-listed values are shown."""
    return {key: (value if _shown(key) else REDACTED) for key, value in sorted(options.items())}


def _shown(key: str) -> bool:
    return key in LOGGABLE_OPTIONS and not is_secret_option(key)


def secret_values(connections: Iterable[Connection]) -> list[str]:
    """Every form in which a connection's secrets could leak: each value's forms and the whole JAAS line."""
    found: list[str] = []
    for connection in connections:
        if connection.ssl_truststore_password is not None:
            found += secret_forms(connection.ssl_truststore_password.reveal())
        if connection.password is None:
            continue
        password = connection.password.reveal()
        found += secret_forms(password)
        if connection.sasl_mechanism and connection.user:
            found += escaped_forms(jaas_config(connection.sasl_mechanism, connection.user, password))
    return found


def option_secret_values(options: Mapping[str, str]) -> list[str]:
    """Every form of the values of Kafka options whose names say they hold secrets (`kafka.ssl.key.password`,
    `kafka.ssl.keystore.key`, a PEM private key, line by line)."""
    return [form for key, value in options.items() if is_secret_option(key) for form in secret_forms(value)]


def connection_scrubber(connections: Iterable[Connection]) -> Callable[[str], str]:
    """A function that masks every secret of these connections in a text (error messages, status)."""
    return scrubber(secret_values(connections))


def deployment_scrubber(spec: DeploymentSpec) -> Callable[[str], str]:
    """A function that masks every secret of the deployment: its connections' and its secret Kafka options'."""
    return scrubber([*secret_values(spec.connections()), *option_secret_values(spec.options.kafka)])
