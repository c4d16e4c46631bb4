"""The local Kafka broker tooling against real brokers: round trips, idempotent start, restart with data, clear failures."""

from __future__ import annotations

import logging
import os
import socket
import ssl
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError

from job.tools import broker as broker_module
from job.tools.broker import KAFKA_VERSION, BrokerConfig, BrokerError, LocalBroker, fetch_kafka, lib_is_complete
from job.tools.processes import free_port, port_is_free, process_alive

pytestmark = pytest.mark.integration

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# Quotes and a backslash prove the JAAS/properties escaping end to end.
ALICE_PASSWORD = 'alice "secret" \\ pw'
BOB_PASSWORD = "bob-secret-pw"
USERS = {"alice": ALICE_PASSWORD, "bob": BOB_PASSWORD}


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    """One broker with every listener for the whole module; tests use fresh topics on it."""
    config = BrokerConfig(
        run_dir=tmp_path_factory.mktemp("broker"),
        port=free_port(),
        controller_port=free_port(),
        sasl_plaintext_port=free_port(),
        sasl_ssl_port=free_port(),
        users=USERS,
    )
    local = LocalBroker(config)
    local.start(timeout_s=120)
    try:
        yield local
    finally:
        local.stop()


def fresh_topic(broker: LocalBroker, partitions: int = 1) -> str:
    name = f"broker-test-{uuid.uuid4().hex[:10]}"
    broker.create_topic(name, partitions=partitions)
    return name


def sasl_ssl_client(broker: LocalBroker, user: str, password: str, cafile: Path | None = None) -> dict[str, Any]:
    return {
        "bootstrap_servers": broker.bootstrap_servers_for("SASL_SSL"),
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "PLAIN",
        "sasl_plain_username": user,
        "sasl_plain_password": password,
        "ssl_cafile": str(cafile or broker.ca_pem_path),
    }


def produce(topic: str, key: bytes, value: bytes, **client: Any) -> int:
    """Send one message, wait for the acknowledgement, return its offset."""
    producer = KafkaProducer(acks="all", **client)
    try:
        return producer.send(topic, key=key, value=value).get(timeout=30).offset
    finally:
        producer.close()


def consume(topic: str, expected: int, timeout_s: float = 30, **client: Any) -> list[tuple[bytes | None, bytes | None]]:
    """(key, value) of partition 0 from the beginning, polling until `expected` arrived or the timeout."""
    consumer = KafkaConsumer(enable_auto_commit=False, **client)
    try:
        partition = TopicPartition(topic, 0)
        consumer.assign([partition])
        consumer.seek_to_beginning(partition)
        records: list[tuple[bytes | None, bytes | None]] = []
        deadline = time.monotonic() + timeout_s
        while len(records) < expected and time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=500).values():
                records += [(r.key, r.value) for r in batch]
        return records
    finally:
        consumer.close()


def test_plaintext_round_trip(broker: LocalBroker) -> None:
    topic = fresh_topic(broker)

    offset = produce(topic, b"k1", b"hello over plaintext", bootstrap_servers=broker.bootstrap_servers)

    assert offset == 0
    assert consume(topic, 1, bootstrap_servers=broker.bootstrap_servers) == [(b"k1", b"hello over plaintext")]


def test_create_topic_makes_the_partitions_and_accepts_a_repeat(broker: LocalBroker) -> None:
    topic = fresh_topic(broker, partitions=3)
    broker.create_topic(topic, partitions=3)

    consumer = KafkaConsumer(bootstrap_servers=broker.bootstrap_servers)
    try:
        assert consumer.partitions_for_topic(topic) == {0, 1, 2}
    finally:
        consumer.close()
    with pytest.raises(BrokerError, match=rf"{topic}.* already exists with 3 partitions, not 2"):
        broker.create_topic(topic, partitions=2)


def test_start_is_idempotent(broker: LocalBroker) -> None:
    pid = broker.pid_path.read_text().strip()

    assert broker.start() == broker.bootstrap_servers
    # A second handle on the same run dir (another process, a CLI call) sees the same broker.
    assert LocalBroker(broker.config).start() == broker.bootstrap_servers

    assert broker.pid_path.read_text().strip() == pid
    assert broker.is_running()


def test_start_with_other_settings_while_running_is_refused(broker: LocalBroker) -> None:
    other = LocalBroker(BrokerConfig(run_dir=broker.run_dir, port=free_port(), controller_port=free_port()))

    with pytest.raises(BrokerError, match=r"already running \(pid \d+\) with other settings.*stop it first"):
        other.start()
    assert broker.is_running()


def test_restart_keeps_messages_and_cluster(broker: LocalBroker) -> None:
    topic = fresh_topic(broker)
    meta = (broker.run_dir / "data" / "meta.properties").read_text()
    produce(topic, b"k1", b"before restart", bootstrap_servers=broker.bootstrap_servers)

    broker.stop()
    assert not broker.is_running()
    assert not broker.pid_path.exists()
    assert port_is_free(broker.config.port)
    broker.start(timeout_s=120)

    offset = produce(topic, b"k2", b"after restart", bootstrap_servers=broker.bootstrap_servers)
    assert offset == 1
    assert consume(topic, 2, bootstrap_servers=broker.bootstrap_servers) == [
        (b"k1", b"before restart"),
        (b"k2", b"after restart"),
    ]
    assert (broker.run_dir / "data" / "meta.properties").read_text() == meta


def test_sasl_ssl_round_trip(broker: LocalBroker) -> None:
    topic = fresh_topic(broker)
    client = sasl_ssl_client(broker, "alice", ALICE_PASSWORD)

    assert produce(topic, b"k", b"hello over SASL_SSL", **client) == 0
    assert consume(topic, 1, **client) == [(b"k", b"hello over SASL_SSL")]


def test_sasl_plaintext_round_trip(broker: LocalBroker) -> None:
    topic = fresh_topic(broker)
    client: dict[str, Any] = {
        "bootstrap_servers": broker.bootstrap_servers_for("SASL_PLAINTEXT"),
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "PLAIN",
        "sasl_plain_username": "bob",
        "sasl_plain_password": BOB_PASSWORD,
    }

    assert produce(topic, b"k", b"hello over SASL_PLAINTEXT", **client) == 0
    assert consume(topic, 1, **client) == [(b"k", b"hello over SASL_PLAINTEXT")]


def test_wrong_password_is_refused(broker: LocalBroker) -> None:
    log_size = broker.log_path.stat().st_size
    client = sasl_ssl_client(broker, "alice", "not-alices-password")

    with pytest.raises(KafkaError):
        KafkaProducer(bootstrap_timeout_ms=2000, **client)

    # The client only sees its connection drop (sometimes before it reads the error response); the
    # broker's log says why.
    with broker.log_path.open("rb") as log_file:
        log_file.seek(log_size)
        new_lines = log_file.read().decode(errors="replace")
    assert "Failed authentication with /127.0.0.1" in new_lines
    assert "(Authentication failed: Invalid username or password)" in new_lines


def test_broker_certificate_verifies_against_its_ca_only(broker: LocalBroker, caplog: pytest.LogCaptureFixture) -> None:
    port = broker.config.sasl_ssl_port
    assert port is not None
    trusting = ssl.create_default_context(cafile=str(broker.ca_pem_path))
    with (
        socket.create_connection(("localhost", port), timeout=10) as raw,
        trusting.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        certificate: Any = tls.getpeercert()
        assert dict(pair[0] for pair in certificate["subject"]) == {"commonName": "localhost"}

    mismatched = ssl.create_default_context(cafile=str(broker.other_ca_pem_path))
    with (
        socket.create_connection(("localhost", port), timeout=10) as raw,
        pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"),
    ):
        mismatched.wrap_socket(raw, server_hostname="localhost")

    caplog.set_level(logging.WARNING, logger="kafka")
    with pytest.raises(KafkaError):
        KafkaProducer(
            bootstrap_timeout_ms=2000, **sasl_ssl_client(broker, "alice", ALICE_PASSWORD, broker.other_ca_pem_path)
        )
    assert any("CERTIFICATE_VERIFY_FAILED" in r.getMessage() for r in caplog.records)


def test_passwords_stay_out_of_logs_and_reprs(broker: LocalBroker) -> None:
    server_log = broker.log_path.read_text(errors="replace")
    for password in USERS.values():
        assert password not in server_log
        assert password not in repr(broker.config)
    # The generated config must hold them (Kafka reads it), so only the owner may read it.
    assert broker.server_properties_path.stat().st_mode & 0o777 == 0o600


def test_busy_port_names_the_port(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        busy = squatter.getsockname()[1]
        local = LocalBroker(BrokerConfig(run_dir=tmp_path, port=busy, controller_port=free_port()))

        with pytest.raises(BrokerError, match=rf"port {busy} \(PLAINTEXT listener\) is already in use"):
            local.start()

    assert not local.is_running()
    assert not local.pid_path.exists()


def test_stop_when_not_running_is_fine_and_never_kills_a_reused_pid(tmp_path: Path) -> None:
    local = LocalBroker(BrokerConfig(run_dir=tmp_path / "stale", port=free_port(), controller_port=free_port()))
    local.stop()  # never started: nothing to do, no error

    # A pid file left by a broker that died, whose pid now belongs to another live process (this test's).
    local.run_dir.mkdir(parents=True, exist_ok=True)
    local.pid_path.write_text(str(os.getpid()))
    assert not local.is_running()
    local.stop()
    assert process_alive(os.getpid())  # still here: stop checked the command line before signalling
    assert not local.pid_path.exists()  # and cleared the stale pid file


def test_start_timeout_shows_the_log_tail_and_leaves_nothing_running(tmp_path: Path) -> None:
    local = LocalBroker(BrokerConfig(run_dir=tmp_path, port=free_port(), controller_port=free_port()))

    with pytest.raises(BrokerError) as failure:
        local.start(timeout_s=0)

    message = str(failure.value)
    assert f"did not come up on {local.bootstrap_servers} within 0 s" in message
    assert f"Last 20 lines of {local.log_path}:" in message
    assert not local.is_running()
    assert not local.pid_path.exists()
    assert port_is_free(local.config.port)
    assert port_is_free(local.config.controller_port)


def test_fetch_failure_names_the_artifact_and_maven_central(tmp_path: Path) -> None:
    unreachable = tmp_path / "ivysettings.xml"
    unreachable.write_text(
        "<ivysettings><settings defaultResolver='central'/><resolvers>"
        f"<ibiblio name='central' m2compatible='true' root='http://127.0.0.1:{free_port()}/maven2/'/>"
        "</resolvers></ivysettings>"
    )

    with pytest.raises(BrokerError) as failure:
        fetch_kafka(cache_dir=tmp_path / "cache", ivy_settings=unreachable)

    message = str(failure.value)
    assert f"org.apache.kafka:kafka_2.13:{KAFKA_VERSION} (not found)" in message
    assert "Maven Central" in message and "must be reachable" in message
    assert "Connection refused" in message
    assert not lib_is_complete(tmp_path / "cache" / f"kafka-{KAFKA_VERSION}" / "lib")


def test_warm_fetch_needs_no_network() -> None:
    """Once fetched, the lib folder is used as is: Ivy (and the network) is not touched again."""
    lib_dir = fetch_kafka()
    assert lib_is_complete(lib_dir)

    def no_ivy(*args: object, **kwargs: object) -> None:
        raise AssertionError("fetch_kafka ran Ivy although the lib folder is complete")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(broker_module.deps, "ivy_jar", no_ivy)
        assert fetch_kafka() == lib_dir
    assert {"kafka_2.13-4.1.1.jar", "log4j-slf4j-impl-2.24.3.jar"} <= {p.name for p in lib_dir.iterdir()}


@pytest.mark.slow
def test_cli_start_status_stop(tmp_path: Path) -> None:
    port, controller_port = free_port(), free_port()
    run_dir = tmp_path / "cli"

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "job.tools.broker", *args, "--run-dir", str(run_dir)],
            cwd=PROJECT_ROOT,
            env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT)},
            capture_output=True,
            text=True,
            timeout=180,
        )

    running = (
        f"Kafka {KAFKA_VERSION} broker (KRaft) running on localhost:{port} (logs: {run_dir / 'logs' / 'server.log'})\n"
    )
    try:
        started = cli("start", "--port", str(port), "--controller-port", str(controller_port))
        assert (started.returncode, started.stdout) == (0, running), started.stderr
        # The broker outlived the CLI process that started it; a second start is a no-op.
        again = cli("start", "--port", str(port), "--controller-port", str(controller_port))
        assert (again.returncode, again.stdout) == (0, running), again.stderr
        status = cli("status")
        assert (status.returncode, status.stdout) == (0, running)
        created = cli("create-topics", "cli-a", "cli-b", "--partitions", "2")
        assert (created.returncode, created.stdout) == (
            0,
            f"topic cli-a (2 partition(s)) ready on localhost:{port}\n"
            f"topic cli-b (2 partition(s)) ready on localhost:{port}\n",
        ), created.stderr
        consumer = KafkaConsumer(bootstrap_servers=f"localhost:{port}")
        try:
            assert [sorted(consumer.partitions_for_topic(t)) for t in ("cli-a", "cli-b")] == [[0, 1], [0, 1]]
        finally:
            consumer.close()
    finally:
        stopped = cli("stop")
    assert (stopped.returncode, stopped.stdout) == (0, f"Kafka broker stopped (run dir: {run_dir})\n")
    status = cli("status")
    assert (status.returncode, status.stdout) == (3, f"Kafka broker not running (run dir: {run_dir})\n")
    stopped = cli("stop")
    assert (stopped.returncode, stopped.stdout) == (0, f"Kafka broker was not running (run dir: {run_dir})\n")
    refused = cli("create-topics", "cli-c")
    assert refused.returncode == 1
    assert refused.stderr == f"error: no broker running in {run_dir}; start it first (make broker-start)\n"
