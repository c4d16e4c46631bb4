"""Start-up check of a Kafka cluster with the Java AdminClient Spark itself uses: reachable, TLS, SASL, topics.

It runs in the driver's JVM (through py4j) with exactly the client options the Kafka source and sink get,
so a connection that passes here is one Spark can use, and a failure comes back as Kafka's own precise
exception (SaslAuthenticationException, an SSLHandshakeException naming the certificate problem) within a
second, instead of the bare timeout kafka-python reports for every one of these causes.

Every distinct connection of the spec (input, output, dead letter: the same brokers with other credentials count
as another connection) is checked with its own credentials, for the topics it needs: the input's readable, the
output's and dead letter's writable. Topics are told apart by the cluster's id, not by how its address is spelled.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from pyspark.sql import SparkSession

from job.runtime import storage
from job.runtime.connection import connection_scrubber, kafka_client_options
from job.runtime.failures import deepest_cause, java_chain
from job.runtime.values import Connection, DeploymentSpec, parse_host_port

logger = logging.getLogger(__name__)

PROBE_TIMEOUT_S = 5.0


READ, WRITE = "READ", "WRITE"


class StartupError(RuntimeError):
    """A cluster or topic the deployment cannot use. The message names the brokers and the cause, never a secret."""


@dataclass(frozen=True)
class ClusterView:
    """What one connection sees of its cluster: the cluster's id, the topic names, and for each topic asked about
    the operations the broker says this client may do on it (None when the broker does not say)."""

    cluster_id: str
    topics: frozenset[str]
    operations: dict[str, frozenset[str] | None]


def list_topics(spark: SparkSession, connection: Connection, timeout_s: float = 30.0) -> set[str]:
    """Topic names on the cluster, or StartupError saying why the cluster cannot be used."""
    return set(inspect_cluster(spark, connection, (), timeout_s).topics)


def inspect_cluster(
    spark: SparkSession, connection: Connection, wanted: Sequence[str], timeout_s: float = 30.0
) -> ClusterView:
    """Authenticate with the connection's own credentials and read the cluster's id, its topic names and what this
    client may do on each wanted topic that exists; StartupError saying why the cluster cannot be used."""
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
        raise StartupError(scrub(f"cannot create a Kafka client for {servers}: {_creation_cause(exc)}")) from None
    admin_api = jvm.org.apache.kafka.clients.admin
    seconds = jvm.java.util.concurrent.TimeUnit.SECONDS
    deadline_s = int(timeout_s) + 5
    try:
        options = admin_api.ListTopicsOptions().timeoutMs(int(timeout_s * 1000))
        names = admin.listTopics(options).names().get(deadline_s, seconds)
        topics = frozenset(str(name) for name in names)
        cluster_options = admin_api.DescribeClusterOptions().timeoutMs(int(timeout_s * 1000))
        cluster_id = str(admin.describeCluster(cluster_options).clusterId().get(deadline_s, seconds))
        present = [topic for topic in dict.fromkeys(wanted) if topic in topics]
        operations: dict[str, frozenset[str] | None] = {}
        if present:
            # Metadata only: nothing is read or written. Without an authorizer the broker lists every operation.
            describe = admin_api.DescribeTopicsOptions().includeAuthorizedOperations(True)
            described = (
                admin.describeTopics(_java_list(jvm, present), describe).allTopicNames().get(deadline_s, seconds)
            )
            for topic in present:
                allowed = described.get(topic).authorizedOperations()
                operations[topic] = None if allowed is None else frozenset(str(op) for op in allowed)
    except Exception as exc:
        raise StartupError(scrub(explain(exc, connection, timeout_s))) from None
    finally:
        admin.close(jvm.java.time.Duration.ofSeconds(5))
    logger.info(
        "Kafka at %s: connected over %s to cluster %s, %d topics visible",
        servers,
        connection.security_protocol,
        cluster_id,
        len(topics),
    )
    return ClusterView(cluster_id, topics, operations)


def _java_list(jvm: Any, items: Sequence[str]) -> Any:
    java_list = jvm.java.util.ArrayList()
    for item in items:
        java_list.add(item)
    return java_list


def _creation_cause(exc: BaseException) -> str:
    cause = deepest_cause(exc)
    if "JAAS config" in cause:
        # Kafka's JAAS parser quotes the text it could not parse, which is part of the user or password.
        return "its SASL JAAS configuration cannot be parsed (a user or password Kafka's JAAS parser cannot take)"
    return cause


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
    chain = java_chain(exc)
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
    return f"cannot list the topics of Kafka at {servers}: {deepest_cause(exc)}"


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


def check_topics(spec: DeploymentSpec, spark: SparkSession, timeout_s: float = 30.0) -> None:
    """Fail fast, naming the connection, the brokers and the cause, when the deployment cannot use its topics.

    Each distinct connection authenticates with its own credentials (in parallel) and is checked for the topics it
    needs: the input readable, the output and dead letter writable. Then the three topics must be three: the
    cluster's id, not the spelling of its address, says which topics are one (a job reading what it writes would
    loop for ever). Spark's Kafka source would otherwise wait silently for a topic that does not exist, and its
    sink fail at the first write.
    """
    needs = (
        ("input", spec.source.connection, spec.source.topic, READ),
        ("output", spec.target.connection, spec.target.topic, WRITE),
        ("dead letter", spec.dead_letter.connection, spec.dead_letter.topic, WRITE),
    )
    by_connection: dict[Connection, list[tuple[str, str, str]]] = {}
    for role, connection, topic, operation in needs:
        by_connection.setdefault(connection, []).append((role, topic, operation))
    several = len(by_connection) > 1

    def label(connection: Connection) -> str:
        roles = list(dict.fromkeys(role for role, _, _ in by_connection[connection]))
        return f"{' and '.join(roles)} connection: " if several else ""

    def inspect(connection: Connection) -> ClusterView | StartupError:
        wanted = [topic for _, topic, _ in by_connection[connection]]
        try:
            return inspect_cluster(spark, connection, wanted, timeout_s)
        except StartupError as exc:
            return StartupError(f"{label(connection)}{exc}")

    connections = list(by_connection)
    with ThreadPoolExecutor(max_workers=len(connections), thread_name_prefix="startup-check") as pool:
        results = dict(zip(connections, pool.map(inspect, connections), strict=True))
    failures = [str(result) for result in results.values() if isinstance(result, StartupError)]
    if failures:
        raise StartupError("; ".join(failures))
    views = {connection: result for connection, result in results.items() if isinstance(result, ClusterView)}

    identity = {role: (views[connection].cluster_id, topic) for role, connection, topic, _ in needs}
    addresses = {role: ",".join(connection.bootstrap_servers) for role, connection, _, _ in needs}
    for first, second in (("input", "output"), ("input", "dead letter"), ("output", "dead letter")):
        if identity[first] == identity[second]:
            cluster_id, topic = identity[first]
            where = (
                f"on {addresses[first]}"
                if addresses[first] == addresses[second]
                else f"({addresses[first]} and {addresses[second]} reach the same cluster)"
            )
            raise StartupError(
                f"the {first} topic {topic} and the {second} topic {topic} are one topic of Kafka cluster "
                f"{cluster_id} {where}; the job would "
                + ("read what it writes, for ever" if first == "input" else "mix dead letters into its output")
                + ": give them different topics"
            )

    for connection, uses in by_connection.items():
        missing = sorted({topic for _, topic, _ in uses} - views[connection].topics)
        if missing:
            raise StartupError(
                f"{label(connection)}topic(s) {', '.join(missing)} not found on "
                f"{','.join(connection.bootstrap_servers)}; create them first (the job does not create topics)"
            )
    for connection, uses in by_connection.items():
        for role, topic, operation in uses:
            allowed = views[connection].operations.get(topic)
            if allowed is None:
                logger.info("Kafka did not say what the %s connection may do on topic %s; not checked", role, topic)
            elif operation not in allowed and "ALL" not in allowed:
                verb = "read" if operation == READ else "write to"
                granted = ", ".join(sorted(allowed)) or "nothing"
                raise StartupError(
                    f"{label(connection)}the {role} credentials may not {verb} topic {topic} on "
                    f"{','.join(connection.bootstrap_servers)} (the broker allows {granted}); "
                    f"grant {operation} on the topic to the user"
                )
