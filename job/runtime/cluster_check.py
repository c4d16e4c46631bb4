"""Start-up check of a Kafka cluster with the Java AdminClient Spark itself uses: reachable, TLS, SASL, topics.

It runs in the driver's JVM (through py4j) with exactly the client options the Kafka source and sink get,
so a connection that passes here is one Spark can use, and a failure comes back as Kafka's own precise
exception (SaslAuthenticationException, an SSLHandshakeException naming the certificate problem) within a
second, instead of the bare timeout kafka-python reports for every one of these causes.
"""

from __future__ import annotations

import logging
import socket
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pyspark.sql import SparkSession

from job.runtime import storage
from job.runtime.connection import connection_scrubber, kafka_client_options
from job.runtime.values import Connection, DeploymentSpec, parse_host_port

logger = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 5.0


class StartupError(RuntimeError):
    """A cluster or topic the deployment cannot use. The message names the brokers and the cause, never a secret."""


def list_topics(spark: SparkSession, connection: Connection, timeout_s: float = 30.0) -> set[str]:
    """Topic names on the cluster, or StartupError saying why the cluster cannot be used."""
    servers = ",".join(connection.bootstrap_servers)
    scrub = connection_scrubber([connection])
    probe_reachable(connection, min(PROBE_TIMEOUT_S, timeout_s))
    jvm = storage.jvm(spark)
    admin_class = jvm.org.apache.kafka.clients.admin.AdminClient
    if not callable(getattr(admin_class, "create", None)):
        raise StartupError(
            "the Kafka client classes are not on the driver's class path; run the job through spark-submit.sh, "
            "which adds the Spark Kafka connector"
        )
    props = jvm.java.util.Properties()
    for key, value in _admin_config(connection, timeout_s).items():
        props.setProperty(key, value)
    try:
        admin = admin_class.create(props)
    except Exception as exc:  # py4j's Py4JJavaError; anything else is a bug worth the same clear message
        raise StartupError(scrub(f"cannot create a Kafka client for {servers}: {_deepest(exc)}")) from None
    try:
        options = jvm.org.apache.kafka.clients.admin.ListTopicsOptions().timeoutMs(int(timeout_s * 1000))
        names = admin.listTopics(options).names().get(int(timeout_s) + 5, jvm.java.util.concurrent.TimeUnit.SECONDS)
        topics = {str(name) for name in names}
    except Exception as exc:
        raise StartupError(scrub(explain(exc, connection, timeout_s))) from None
    finally:
        admin.close(jvm.java.time.Duration.ofSeconds(5))
    logger.info("Kafka at %s: connected over %s, %d topics visible", servers, connection.security_protocol, len(topics))
    return topics


def probe_reachable(connection: Connection, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """A TCP connect to every bootstrap server (in parallel); fail at once when none accepts.

    The AdminClient would retry an address that refuses connections until its timeout and then only say
    "Timed out waiting for a node assignment"; the socket error says what is wrong right away.
    """

    def connect(server: str) -> str | None:
        address = parse_host_port(server)
        if address is None:
            return f"{server}: not host:port"
        try:
            with socket.create_connection(address, timeout=timeout_s):
                return None
        except socket.gaierror:
            return f"{server}: unknown host"
        except TimeoutError:
            return f"{server}: no answer within {timeout_s:g} s"
        except OSError as exc:
            return f"{server}: {(exc.strerror or type(exc).__name__).lower()}"

    with ThreadPoolExecutor(max_workers=min(8, len(connection.bootstrap_servers))) as pool:
        errors = list(pool.map(connect, connection.bootstrap_servers))
    if all(errors):
        raise StartupError(
            f"cannot reach Kafka at {','.join(connection.bootstrap_servers)}: {'; '.join(e for e in errors if e)}"
        )


def explain(exc: BaseException, connection: Connection, timeout_s: float) -> str:
    """One line naming the brokers and the cause, from Kafka's exception chain."""
    servers = ",".join(connection.bootstrap_servers)
    chain = _chain(exc)
    names = [name for name, _ in chain]

    def message_of(*suffixes: str) -> str:
        found = [msg for name, msg in chain if name.endswith(suffixes) and msg]
        return found[-1] if found else ""

    if any(name.endswith("SaslAuthenticationException") for name in names):
        hint = "check the user and password (Event Streams: user 'token' and an API key as the password)"
        return (
            f"SASL authentication to Kafka at {servers} failed ({connection.sasl_mechanism}): "
            f"{message_of('SaslAuthenticationException')}; {hint}"
        )
    if any(name.endswith("SslAuthenticationException") for name in names):
        detail = message_of("SSLHandshakeException", "CertificateException", "SslAuthenticationException")
        if "PKIX path building failed" in detail or "certification path" in detail:
            if connection.ssl_ca_location:
                trusted = f"the CA in ssl_ca_location {connection.ssl_ca_location}"
            elif connection.ssl_truststore_location:
                trusted = f"a CA in ssl_truststore_location {connection.ssl_truststore_location}"
            else:
                trusted = "a CA the JVM trusts by default (a private broker needs ssl_ca_location)"
            cause = f"the broker's certificate is not signed by {trusted}"
        elif "subject alternative" in detail or "No name matching" in detail:
            cause = f"the broker's certificate does not match the host name it was reached by ({detail})"
        else:
            cause = f"TLS handshake failed ({detail or 'no detail'})"
        return f"TLS connection to Kafka at {servers} failed: {cause}"
    if any(name.endswith("TimeoutException") for name in names):
        return (
            f"no answer from Kafka at {servers} within {timeout_s:g} s: the port accepts connections, but no "
            f"{connection.security_protocol} listener answered (wrong port or security_protocol?)"
        )
    return f"cannot list the topics of Kafka at {servers}: {_deepest(exc)}"


def _admin_config(connection: Connection, timeout_s: float) -> dict[str, str]:
    config = {key.removeprefix("kafka."): value for key, value in kafka_client_options(connection).items()}
    timeout_ms = str(int(timeout_s * 1000))
    config.update(
        {
            "client.id": "stream-deployment-startup-check",
            "request.timeout.ms": timeout_ms,
            "default.api.timeout.ms": timeout_ms,
            # One failed attempt is enough to know; the deadline above bounds the whole call anyway.
            "reconnect.backoff.max.ms": "1000",
        }
    )
    return config


def _chain(exc: BaseException) -> list[tuple[str, str]]:
    """(Java class name, message) from the outermost exception to its root cause."""
    java = getattr(exc, "java_exception", None)
    if java is None:
        return [(type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")]
    chain: list[tuple[str, str]] = []
    seen = 0
    while java is not None and seen < 20:
        chain.append((str(java.getClass().getName()), str(java.getMessage() or "")))
        java, seen = java.getCause(), seen + 1
    return chain


def _deepest(exc: Any) -> str:
    chain = _chain(exc)
    name, message = next(((n, m) for n, m in reversed(chain) if m), chain[-1])
    return f"{name.rsplit('.', 1)[-1]}: {message.splitlines()[0] if message else 'no detail'}"


def check_topics(spec: DeploymentSpec, spark: SparkSession, timeout_s: float = 30.0) -> None:
    """Fail fast, naming the broker and the cause, when a cluster or topic of the spec is not there.

    Spark's Kafka source would otherwise wait silently for a topic that does not exist.
    """
    wanted: dict[tuple[str, ...], tuple[Connection, set[str]]] = {}
    for topic in (spec.source, spec.target, spec.dead_letter):
        key = topic.connection.bootstrap_servers
        wanted.setdefault(key, (topic.connection, set()))[1].add(topic.topic)
    for connection, topics in wanted.values():
        missing = sorted(topics - list_topics(spark, connection, timeout_s))
        if missing:
            raise StartupError(
                f"topic(s) {', '.join(missing)} not found on {','.join(connection.bootstrap_servers)}; "
                "create them first (the job does not create topics)"
            )
