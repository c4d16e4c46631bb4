"""Local broker tooling without a broker: generated config, validation, fetch bookkeeping, CLI exit codes."""

from __future__ import annotations

import base64
import os
import socket
import stat
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from job.tools.broker import (
    EXIT_NOT_RUNNING,
    BrokerConfig,
    BrokerError,
    LocalBroker,
    ivy_failure_summary,
    java_executable,
    lib_is_complete,
    main,
    metadata_broker_count,
    new_cluster_id,
    plain_jaas_config,
    read_listener_ports,
    render_log4j2_properties,
    render_server_properties,
)
from job.tools.processes import free_port, port_is_free

RUN_DIR = Path("/srv/broker")

# What Ivy printed when Maven Central could not be reached (trimmed).
IVY_UNREACHABLE = """\
:: problems summary ::
:::: WARNINGS
		module not found: org.apache.kafka#kafka_2.13;4.1.1
		::::::::::::::::::::::::::::::::::::::::::::::
		::          UNRESOLVED DEPENDENCIES         ::
		::::::::::::::::::::::::::::::::::::::::::::::
		:: org.apache.kafka#kafka_2.13;4.1.1: not found
		:: org.apache.logging.log4j#log4j-slf4j-impl;2.24.3: not found
		::::::::::::::::::::::::::::::::::::::::::::::
:::: ERRORS
	Server access error at url https://repo1.maven.org/maven2/org/apache/kafka/kafka_2.13/4.1.1/kafka_2.13-4.1.1.pom \
(java.net.UnknownHostException: repo1.maven.org)
"""

IVY_DOWNLOAD_FAILED = """\
	[FAILED     ] org.apache.kafka#kafka-clients;4.1.1!kafka-clients.jar: Downloaded file size (0) doesn't match \
expected Content Length (9161720) (120ms)
"""


def properties(text: str) -> dict[str, str]:
    """The key=value lines of a generated file (our values contain no line continuations)."""
    return dict(line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#"))


def test_plaintext_config_is_a_single_combined_kraft_node() -> None:
    config = BrokerConfig(run_dir=RUN_DIR, port=19092, controller_port=19093)

    assert properties(render_server_properties(config)) == {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.bootstrap.servers": "localhost:19093",
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listeners": "PLAINTEXT://localhost:19092,CONTROLLER://localhost:19093",
        "advertised.listeners": "PLAINTEXT://localhost:19092,CONTROLLER://localhost:19093",
        "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        "log.dirs": "/srv/broker/data",
        "auto.create.topics.enable": "false",
        "num.partitions": "1",
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
    }


def test_secured_listeners_get_plain_users_and_the_keystore() -> None:
    config = BrokerConfig(
        run_dir=RUN_DIR,
        port=19092,
        controller_port=19093,
        sasl_plaintext_port=19094,
        sasl_ssl_port=19095,
        users={"alice": 'a"b\\c', "bob": "pw"},
    )

    props = properties(render_server_properties(config, keystore_password="store-pw"))

    assert props["listeners"] == (
        "PLAINTEXT://localhost:19092,CONTROLLER://localhost:19093,"
        "SASL_PLAINTEXT://localhost:19094,SASL_SSL://localhost:19095"
    )
    assert props["listener.security.protocol.map"] == (
        "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL"
    )
    assert props["inter.broker.listener.name"] == "PLAINTEXT"
    assert props["sasl.enabled.mechanisms"] == "PLAIN"
    # JAAS escapes the quote and the backslash; the properties file doubles every backslash again.
    jaas = (
        'org.apache.kafka.common.security.plain.PlainLoginModule required user_alice="a\\\\"b\\\\\\\\c" user_bob="pw";'
    )
    assert props["listener.name.sasl_plaintext.plain.sasl.jaas.config"] == jaas
    assert props["listener.name.sasl_ssl.plain.sasl.jaas.config"] == jaas
    assert props["listener.name.sasl_ssl.ssl.keystore.type"] == "PKCS12"
    assert props["listener.name.sasl_ssl.ssl.keystore.location"] == "/srv/broker/tls/broker.p12"
    assert props["listener.name.sasl_ssl.ssl.keystore.password"] == "store-pw"
    assert props["listener.name.sasl_ssl.ssl.key.password"] == "store-pw"


def test_jaas_entry_before_properties_escaping() -> None:
    assert plain_jaas_config({"alice": 'a"b\\c'}) == (
        'org.apache.kafka.common.security.plain.PlainLoginModule required user_alice="a\\"b\\\\c";'
    )


def test_properties_values_are_ascii_with_java_escapes_for_everything_else() -> None:
    # Kafka reads server.properties as ISO-8859-1: a non-ASCII password must arrive \\u-escaped to survive. The
    # JAAS entry doubles the backslash, the properties file doubles both again.
    config = BrokerConfig(run_dir=Path("/tmp/x"), sasl_plaintext_port=9095, users={"u": "é😀\\q"})
    rendered = render_server_properties(config)
    assert rendered.isascii()
    assert properties(rendered)["listener.name.sasl_plaintext.plain.sasl.jaas.config"] == (
        'org.apache.kafka.common.security.plain.PlainLoginModule required user_u="\\u00e9\\ud83d\\ude00\\\\\\\\q";'
    )


def test_sasl_ssl_needs_the_keystore_password() -> None:
    config = BrokerConfig(run_dir=RUN_DIR, sasl_ssl_port=19095, users={"alice": "pw"})

    with pytest.raises(ValueError, match="keystore password"):
        render_server_properties(config)


def test_log4j_writes_only_to_the_run_folder_file() -> None:
    props = {k.strip(): v.strip() for k, v in properties(render_log4j2_properties(RUN_DIR / "logs/server.log")).items()}

    assert props["appender.file.type"] == "File"
    assert props["appender.file.fileName"] == "/srv/broker/logs/server.log"
    assert props["rootLogger.level"] == "INFO"
    assert props["rootLogger.appenderRef.file.ref"] == "FILE"
    assert not any(v == "Console" for v in props.values())


def test_listener_ports_read_back_from_the_generated_file(tmp_path: Path) -> None:
    config = BrokerConfig(run_dir=tmp_path, port=1111, controller_port=2222, sasl_ssl_port=3333, users={"u": "p"})
    (tmp_path / "server.properties").write_text(render_server_properties(config, keystore_password="x"))

    assert read_listener_ports(tmp_path / "server.properties") == {
        "PLAINTEXT": 1111,
        "CONTROLLER": 2222,
        "SASL_SSL": 3333,
    }
    assert read_listener_ports(tmp_path / "missing.properties") == {}
    broker = LocalBroker.for_run_dir(tmp_path)
    assert (broker.config.port, broker.config.controller_port) == (1111, 2222)
    assert broker.bootstrap_servers == "localhost:1111"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"port": 9093}, "PLAINTEXT and CONTROLLER listeners both use port 9093"),
        ({"port": 0}, "PLAINTEXT port must be an int in 1..65535, got 0"),
        ({"controller_port": 70000}, "CONTROLLER port must be an int in 1..65535, got 70000"),
        ({"sasl_ssl_port": 9095}, "SASL listeners need at least one user, got none"),
        ({"sasl_plaintext_port": 9094, "users": {"al ice": "pw"}}, "user name 'al ice' must match"),
    ],
)
def test_bad_config_is_named(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BrokerConfig(run_dir=RUN_DIR, **changes)  # type: ignore[arg-type]


def test_bad_password_error_does_not_echo_it() -> None:
    with pytest.raises(ValueError, match="password of 'alice' must be a non-empty one-line string") as failure:
        BrokerConfig(run_dir=RUN_DIR, sasl_plaintext_port=9094, users={"alice": "top\nsecret"})

    assert "secret" not in str(failure.value)


def test_config_repr_hides_passwords_and_config_stays_frozen() -> None:
    users = {"alice": "alice-password"}
    config = BrokerConfig(run_dir=RUN_DIR, sasl_plaintext_port=9094, users=users)
    users["alice"] = "changed later"

    assert "alice-password" not in repr(config)
    assert config.users == {"alice": "alice-password"}
    with pytest.raises(TypeError):
        config.users["bob"] = "pw"  # type: ignore[index]
    assert isinstance(hash(config), int)


def test_cluster_id_looks_like_kafkas() -> None:
    ids = {new_cluster_id() for _ in range(200)}

    assert len(ids) == 200
    for cluster_id in ids:
        assert len(cluster_id) == 22
        assert not cluster_id.startswith("-")
        assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16


def test_ivy_failure_names_the_unresolved_artifacts_and_the_cause() -> None:
    assert ivy_failure_summary(IVY_UNREACHABLE) == (
        "unresolved: org.apache.kafka:kafka_2.13:4.1.1 (not found), "
        "org.apache.logging.log4j:log4j-slf4j-impl:2.24.3 (not found); "
        "first error: Server access error at url "
        "https://repo1.maven.org/maven2/org/apache/kafka/kafka_2.13/4.1.1/kafka_2.13-4.1.1.pom "
        "(java.net.UnknownHostException: repo1.maven.org)"
    )
    assert ivy_failure_summary(IVY_DOWNLOAD_FAILED) == (
        "unresolved: org.apache.kafka:kafka-clients:4.1.1 artifact kafka-clients.jar "
        "(Downloaded file size (0) doesn't match expected Content Length (9161720) (120ms))"
    )


def test_lib_folder_counts_as_fetched_only_when_the_marker_lists_present_jars(tmp_path: Path) -> None:
    lib = tmp_path / "kafka-4.1.1" / "lib"
    lib.mkdir(parents=True)
    (lib / "a.jar").write_bytes(b"")
    (lib / "b.jar").write_bytes(b"")
    assert not lib_is_complete(lib)  # retrieve never finished

    (lib.parent / "lib.complete").write_text("a.jar\nb.jar\n")
    assert lib_is_complete(lib)

    (lib / "b.jar").unlink()
    assert not lib_is_complete(lib)


def test_missing_java_says_to_install_openjdk_17(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))

    with pytest.raises(BrokerError, match=r"java not found on PATH.*Install OpenJDK 17"):
        java_executable()


def test_java_home_wins_over_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    java = tmp_path / "jdk" / "bin" / "java"
    java.parent.mkdir(parents=True)
    java.write_text("#!/bin/sh\n")
    java.chmod(java.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("JAVA_HOME", str(tmp_path / "jdk"))

    assert java_executable() == str(java)


@pytest.fixture
def listening_socket() -> Iterator[socket.socket]:
    """A TCP listener that is not Kafka: it accepts and closes at once."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        stop.set()
        thread.join()
        server.close()


def test_port_checks(listening_socket: socket.socket) -> None:
    busy = listening_socket.getsockname()[1]

    assert not port_is_free(busy)
    assert port_is_free(free_port())
    assert metadata_broker_count(busy) is None  # listening, but not Kafka
    assert metadata_broker_count(free_port()) is None  # nothing listening


def test_busy_port_fails_before_anything_is_written(
    tmp_path: Path, listening_socket: socket.socket, capsys: pytest.CaptureFixture[str]
) -> None:
    busy = listening_socket.getsockname()[1]

    code = main(["start", "--port", str(busy), "--run-dir", str(tmp_path / "run")])

    assert code == 1
    assert f"error: port {busy} (PLAINTEXT listener) is already in use by another process" in capsys.readouterr().err
    assert not (tmp_path / "run" / "server.properties").exists()


def test_cli_status_and_stop_without_a_broker(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--run-dir", str(tmp_path)]) == EXIT_NOT_RUNNING
    assert capsys.readouterr().out == f"Kafka broker not running (run dir: {tmp_path})\n"

    assert main(["stop", "--run-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out == f"Kafka broker was not running (run dir: {tmp_path})\n"


def test_stale_pid_file_is_not_a_running_broker(tmp_path: Path) -> None:
    broker = LocalBroker(BrokerConfig(run_dir=tmp_path))
    # Our own pid: alive, but not a Kafka broker for this run dir (as after a reboot reused the pid).
    broker.pid_path.write_text(f"{os.getpid()}\n")

    assert not broker.is_running()
    broker.stop()
    assert not broker.pid_path.exists()
