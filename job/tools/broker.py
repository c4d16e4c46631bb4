"""Local single-node Apache Kafka 4.x broker (KRaft) for tests and demos, run from Maven Central jars."""

from __future__ import annotations

import argparse
import base64
import contextlib
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from job.runtime.secrets import jaas_quote
from job.tools import deps
from job.tools.processes import command_line, port_is_free, process_alive

log = logging.getLogger(__name__)

KAFKA_VERSION = "4.1.1"
# kafka_2.13 4.1.1 logs through slf4j-api 1.7.36 and ships log4j-core 2.24.3 without a binding;
# log4j-slf4j-impl (not log4j-slf4j2-impl, which is for slf4j 2.x) is the matching bridge.
LOG4J_VERSION = "2.24.3"
KAFKA_ARTIFACTS = (
    ("org.apache.kafka", f"kafka_{deps.SCALA_BINARY_VERSION}", KAFKA_VERSION),
    ("org.apache.logging.log4j", "log4j-slf4j-impl", LOG4J_VERSION),
)
DEFAULT_RUN_DIR = deps.PROJECT_ROOT / ".state" / "broker"
HOST = "localhost"
NODE_ID = 1
BROKER_HEAP = "-Xmx512m"
# Kafka's own defaults from bin/kafka-run-class.sh.
BROKER_JVM_OPTS = (
    "-XX:+UseG1GC",
    "-XX:MaxGCPauseMillis=20",
    "-XX:InitiatingHeapOccupancyPercent=35",
    "-XX:+ExplicitGCInvokesConcurrent",
    "-Djava.awt.headless=true",
)
# keytool runs nine times when TLS material is made; a C1-only JIT halves each JVM's start-up.
KEYTOOL_FAST_START = ("-J-XX:TieredStopAtLevel=1", "-J-XX:+UseSerialGC")

PLAINTEXT = "PLAINTEXT"
CONTROLLER = "CONTROLLER"
SASL_PLAINTEXT = "SASL_PLAINTEXT"
SASL_SSL = "SASL_SSL"

EXIT_NOT_RUNNING = 3
LOG_TAIL_LINES = 20
_USER_NAME = re.compile(r"^[A-Za-z0-9._-]+$")


class BrokerError(RuntimeError):
    """The local broker could not be fetched, started or stopped; the message says why and what to do."""


@dataclass(frozen=True)
class BrokerConfig:
    """Where the broker keeps its state and which localhost ports it listens on."""

    run_dir: Path
    port: int = 9092
    controller_port: int = 9093
    sasl_plaintext_port: int | None = None
    sasl_ssl_port: int | None = None
    # SASL/PLAIN users, name -> password. Kept out of repr so a logged config never shows a password.
    users: Mapping[str, str] = field(default_factory=dict, repr=False, hash=False)
    # SASL/SCRAM-SHA-512 users, name -> password, enabled beside PLAIN on the SASL listeners. Kafka stores
    # SCRAM credentials in the metadata log, so they are added when the storage is formatted (first start
    # of a run dir), through `kafka-storage format --add-scram`: the throw-away passwords are on that
    # short-lived process's command line.
    scram_users: Mapping[str, str] = field(default_factory=dict, repr=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "run_dir", Path(self.run_dir).expanduser().resolve())
        object.__setattr__(self, "users", MappingProxyType(dict(self.users)))
        object.__setattr__(self, "scram_users", MappingProxyType(dict(self.scram_users)))
        seen: dict[int, str] = {}
        for name, port in self.listener_ports.items():
            if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
                raise ValueError(f"BrokerConfig: {name} port must be an int in 1..65535, got {port!r}")
            if port in seen:
                raise ValueError(f"BrokerConfig: {seen[port]} and {name} listeners both use port {port}")
            seen[port] = name
        has_sasl = self.sasl_plaintext_port is not None or self.sasl_ssl_port is not None
        if has_sasl and not self.users:
            raise ValueError("BrokerConfig.users: SASL listeners need at least one user, got none")
        for user, password in self.users.items():
            if not _USER_NAME.match(user):
                raise ValueError(f"BrokerConfig.users: user name {user!r} must match {_USER_NAME.pattern}")
            if not isinstance(password, str) or not password or any(c in password for c in "\r\n\0"):
                # The password itself is never echoed.
                raise ValueError(f"BrokerConfig.users: password of {user!r} must be a non-empty one-line string")
        if self.scram_users and not has_sasl:
            raise ValueError("BrokerConfig.scram_users: SCRAM users need a SASL listener, got none")
        for user, password in self.scram_users.items():
            if not _USER_NAME.match(user):
                raise ValueError(f"BrokerConfig.scram_users: user name {user!r} must match {_USER_NAME.pattern}")
            # kafka-storage's --add-scram splits on ',' and strips one pair of quotes, with no escapes.
            if not isinstance(password, str) or not password or any(c in password for c in ',"[]\r\n\0'):
                raise ValueError(
                    f"BrokerConfig.scram_users: password of {user!r} must be a non-empty one-line string "
                    'without , " [ ]'
                )

    @property
    def listener_ports(self) -> dict[str, int]:
        """Listener name -> port, controller included, in the order Kafka's `listeners` gets them."""
        ports = {PLAINTEXT: self.port, CONTROLLER: self.controller_port}
        if self.sasl_plaintext_port is not None:
            ports[SASL_PLAINTEXT] = self.sasl_plaintext_port
        if self.sasl_ssl_port is not None:
            ports[SASL_SSL] = self.sasl_ssl_port
        return ports


# --------------------------------------------------------------------------------------------------------
# Fetching the jars


def java_executable() -> str:
    """`java` for the broker: $JAVA_HOME/bin/java if present (as kafka-run-class.sh does), else PATH."""
    try:
        return deps.java_executable()
    except deps.FetchError as exc:
        raise BrokerError(str(exc)) from None


def kafka_home(cache_dir: Path = deps.CACHE_DIR) -> Path:
    return cache_dir / f"kafka-{KAFKA_VERSION}"


def lib_is_complete(lib_dir: Path) -> bool:
    """True when a retrieve finished and every jar it listed in the marker file is still there."""
    return deps.jars_complete(lib_dir)


def ivy_failure_summary(output: str) -> str:
    """Turn Ivy's output into 'which artifacts failed, and the first underlying error'."""
    return deps.ivy_failure_summary(output, KAFKA_ARTIFACTS)


def fetch_kafka(cache_dir: Path = deps.CACHE_DIR, ivy_settings: Path | None = None) -> Path:
    """Download the Kafka broker and its runtime jars once; return the lib folder (offline afterwards)."""
    try:
        return deps.fetch_jars(
            kafka_home(cache_dir),
            KAFKA_ARTIFACTS,
            what=f"the Kafka {KAFKA_VERSION} broker jars",
            ivy_settings_file=ivy_settings,
            ivy_cache=cache_dir / "ivy",
        )
    except (deps.FetchError, FileNotFoundError) as exc:
        raise BrokerError(str(exc)) from exc


# --------------------------------------------------------------------------------------------------------
# Generated configuration


def _properties_value(value: str) -> str:
    """Escape a value for a java.util.Properties file.

    Kafka reads server.properties as ISO-8859-1 (Properties.load of a stream): any other character is written
    as a \\uXXXX escape (a UTF-16 pair beyond the BMP), or a non-ASCII password would reach the broker garbled.
    """
    escaped = value.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    escaped = "".join(c if " " <= c <= "~" else _unicode_escapes(c) for c in escaped)
    return "\\" + escaped if escaped.startswith(" ") else escaped


def _unicode_escapes(char: str) -> str:
    utf16 = char.encode("utf-16-be")
    return "".join(f"\\u{int.from_bytes(utf16[i : i + 2], 'big'):04x}" for i in range(0, len(utf16), 2))


def plain_jaas_config(users: Mapping[str, str]) -> str:
    """The broker-side PlainLoginModule entry that defines the SASL/PLAIN users."""
    entries = " ".join(f"user_{name}={jaas_quote(password)}" for name, password in users.items())
    return f"org.apache.kafka.common.security.plain.PlainLoginModule required {entries};"


def render_server_properties(config: BrokerConfig, keystore_password: str | None = None) -> str:
    """server.properties for a combined broker+controller node; contains SASL passwords when users are set."""
    ports = config.listener_ports
    listeners = ",".join(f"{name}://{HOST}:{port}" for name, port in ports.items())
    protocol_map = ",".join(f"{name}:{PLAINTEXT if name == CONTROLLER else name}" for name in ports)
    props: dict[str, str] = {
        "process.roles": "broker,controller",
        "node.id": str(NODE_ID),
        "controller.quorum.bootstrap.servers": f"{HOST}:{config.controller_port}",
        "controller.listener.names": CONTROLLER,
        "inter.broker.listener.name": PLAINTEXT,
        "listeners": listeners,
        "advertised.listeners": listeners,
        "listener.security.protocol.map": protocol_map,
        "log.dirs": str(config.run_dir / "data"),
        "auto.create.topics.enable": "false",
        "num.partitions": "1",
        "offsets.topic.replication.factor": "1",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
    }
    sasl_listeners = [name for name in (SASL_PLAINTEXT, SASL_SSL) if name in ports]
    if sasl_listeners:
        props["sasl.enabled.mechanisms"] = "PLAIN,SCRAM-SHA-512" if config.scram_users else "PLAIN"
        for name in sasl_listeners:
            props[f"listener.name.{name.lower()}.plain.sasl.jaas.config"] = plain_jaas_config(config.users)
            if config.scram_users:
                # The users live in the metadata log; the login module entry only enables the mechanism.
                props[f"listener.name.{name.lower()}.scram-sha-512.sasl.jaas.config"] = (
                    "org.apache.kafka.common.security.scram.ScramLoginModule required;"
                )
    if SASL_SSL in ports:
        if keystore_password is None:
            raise ValueError("render_server_properties: a SASL_SSL listener needs the keystore password")
        prefix = f"listener.name.{SASL_SSL.lower()}."
        props[prefix + "ssl.keystore.type"] = "PKCS12"
        props[prefix + "ssl.keystore.location"] = str(config.run_dir / "tls" / "broker.p12")
        props[prefix + "ssl.keystore.password"] = keystore_password
        props[prefix + "ssl.key.password"] = keystore_password
    header = f"# Generated by job.broker for Kafka {KAFKA_VERSION} (KRaft); rewritten on every start.\n"
    return header + "".join(f"{key}={_properties_value(value)}\n" for key, value in props.items())


def render_log4j2_properties(log_file: Path) -> str:
    """log4j2 config: everything at INFO into one file in the run folder, nothing on the console."""
    return "\n".join(
        [
            "status = warn",
            "appender.file.type = File",
            "appender.file.name = FILE",
            f"appender.file.fileName = {_properties_value(str(log_file))}",
            "appender.file.layout.type = PatternLayout",
            "appender.file.layout.pattern = [%d] %p %m (%c)%n",
            "rootLogger.level = INFO",
            "rootLogger.appenderRef.file.ref = FILE",
            # One line per request at INFO would drown everything else.
            "logger.request.name = kafka.request.logger",
            "logger.request.level = WARN",
            "",
        ]
    )


def new_cluster_id() -> str:
    """A cluster id like `kafka-storage random-uuid`: 16 random bytes, URL-safe base64, no padding."""
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode("ascii")
        if not cluster_id.startswith("-"):  # Kafka avoids ids that look like command-line flags
            return cluster_id


def read_listener_ports(server_properties: Path) -> dict[str, int]:
    """Listener name -> port from a generated server.properties (empty if the file is missing)."""
    if not server_properties.is_file():
        return {}
    for line in server_properties.read_text().splitlines():
        if line.startswith("listeners="):
            return {
                m.group(1): int(m.group(2)) for m in re.finditer(r"([A-Z_]+)://[^:,]*:(\d+)", line.split("=", 1)[1])
            }
    return {}


# --------------------------------------------------------------------------------------------------------
# Process and network helpers


def _recv_exact(sock: socket.socket, size: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        chunk = sock.recv(size - len(chunks))
        if not chunk:
            raise ConnectionError("connection closed mid-response")
        chunks += chunk
    return bytes(chunks)


def metadata_broker_count(port: int, timeout_s: float = 1.0) -> int | None:
    """Brokers listed by a Kafka Metadata request on localhost:port, or None if no Kafka answers there.

    A KRaft broker opens its listeners once it has caught up with the metadata log and lists
    itself once it is unfenced, so at least one broker means it is ready for clients. Metadata v4
    (the oldest Kafka 4 accepts) keeps the probe free of client-library version differences.
    """
    correlation_id = secrets.randbits(31)
    client_id = b"job.broker"
    request = struct.pack(">hhih", 3, 4, correlation_id, len(client_id)) + client_id
    request += struct.pack(">i?", 0, False)  # no topics, no auto-creation
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
            sock.sendall(struct.pack(">i", len(request)) + request)
            (size,) = struct.unpack(">i", _recv_exact(sock, 4))
            response = _recv_exact(sock, size)
        answered_id, _throttle_ms, brokers = struct.unpack_from(">iii", response)
    except (OSError, struct.error):
        return None
    return brokers if answered_id == correlation_id else None


def _write_private(path: Path, text: str) -> None:
    """Write a file only the owner can read: server.properties holds the SASL passwords."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(path, 0o600)


# --------------------------------------------------------------------------------------------------------
# The broker


class LocalBroker:
    """One Kafka broker+controller process whose data, config, logs and pid file live in `config.run_dir`."""

    def __init__(self, config: BrokerConfig) -> None:
        self.config = config
        self._proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def for_run_dir(cls, run_dir: Path) -> LocalBroker:
        """The broker last started in run_dir, for stop/status: ports come from its server.properties."""
        config = BrokerConfig(run_dir)
        ports = read_listener_ports(config.run_dir / "server.properties")
        return cls(
            BrokerConfig(
                run_dir,
                port=ports.get(PLAINTEXT, config.port),
                controller_port=ports.get(CONTROLLER, config.controller_port),
            )
        )

    # -- paths -------------------------------------------------------------------------------------------
    @property
    def run_dir(self) -> Path:
        return self.config.run_dir

    @property
    def log_path(self) -> Path:
        return self.run_dir / "logs" / "server.log"

    @property
    def pid_path(self) -> Path:
        return self.run_dir / "broker.pid"

    @property
    def server_properties_path(self) -> Path:
        return self.run_dir / "server.properties"

    @property
    def tls_dir(self) -> Path:
        return self.run_dir / "tls"

    @property
    def ca_pem_path(self) -> Path:
        """CA certificate (PEM) that signed the SASL_SSL listener's certificate; give it to clients."""
        return self.tls_dir / "ca.pem"

    @property
    def other_ca_pem_path(self) -> Path:
        """An unrelated CA (PEM), for showing that a client trusting the wrong CA is refused."""
        return self.tls_dir / "other-ca.pem"

    # -- addresses ---------------------------------------------------------------------------------------
    @property
    def bootstrap_servers(self) -> str:
        return f"{HOST}:{self.config.port}"

    def bootstrap_servers_for(self, security_protocol: str) -> str:
        """Address of the listener for PLAINTEXT, SASL_PLAINTEXT or SASL_SSL."""
        port = self.config.listener_ports.get(security_protocol.upper())
        if port is None or security_protocol.upper() == CONTROLLER:
            raise ValueError(f"no {security_protocol} listener configured for the broker in {self.run_dir}")
        return f"{HOST}:{port}"

    # -- lifecycle ---------------------------------------------------------------------------------------
    def is_running(self) -> bool:
        """Our broker process is alive and answers Kafka metadata requests on its port."""
        return self._running_pid() is not None and bool(metadata_broker_count(self.config.port))

    def start(self, timeout_s: float = 60) -> str:
        """Start the broker (formatting storage on first use) and wait until it serves clients.

        Idempotent: if this run dir's broker is already running, returns at once. A stopped broker
        restarts with its data. Returns the PLAINTEXT bootstrap address.
        """
        with deps.file_lock(self.run_dir / "broker.lock"):
            pid = self._running_pid()
            if pid is not None:
                self._check_same_config(pid)
                self._wait_ready(pid, time.monotonic() + timeout_s, timeout_s)
                log.info("Kafka broker already running (pid %d) on %s", pid, self.bootstrap_servers)
                return self.bootstrap_servers
            self._check_ports_free()
            java = java_executable()
            lib_dir = fetch_kafka()
            self._prepare(java, lib_dir)
            pid = self._launch(java, lib_dir)
            try:
                self._wait_ready(pid, time.monotonic() + timeout_s, timeout_s)
            except BaseException:
                # A half-started broker would hold the ports and confuse the next start.
                self._terminate(pid, timeout_s=5)
                raise
        return self.bootstrap_servers

    def stop(self, timeout_s: float = 30) -> None:
        """SIGTERM (Kafka's controlled shutdown), SIGKILL after timeout_s. No error if not running."""
        with deps.file_lock(self.run_dir / "broker.lock"):
            pid = self._running_pid()
            if pid is None:
                log.info("Kafka broker in %s is not running", self.run_dir)
                self.pid_path.unlink(missing_ok=True)
                return
            self._terminate(pid, timeout_s)
            log.info("Kafka broker (pid %d) stopped", pid)

    def create_topic(self, name: str, partitions: int = 1, timeout_s: float = 30) -> None:
        """Create a topic (replication factor 1) and wait until its metadata shows a leader per partition.

        A topic that already exists with the same partition count is accepted as is.
        """
        from kafka import KafkaAdminClient
        from kafka.admin import NewTopic
        from kafka.errors import TopicAlreadyExistsError

        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap_servers, client_id="job.broker")
        try:
            try:
                admin.create_topics([NewTopic(name, partitions, 1)], timeout_ms=int(timeout_s * 1000))
            except TopicAlreadyExistsError:
                log.info("Topic %s already exists", name)
            deadline = time.monotonic() + timeout_s
            while True:
                leaders = _partition_leaders(admin, name)
                if leaders is not None and len(leaders) >= partitions and all(x >= 0 for x in leaders):
                    break
                if time.monotonic() > deadline:
                    raise BrokerError(f"topic {name!r} has no leader for every partition after {timeout_s:g} s")
                time.sleep(0.1)
            if len(leaders) != partitions:
                raise BrokerError(f"topic {name!r} already exists with {len(leaders)} partitions, not {partitions}")
        finally:
            admin.close()

    # -- internals ---------------------------------------------------------------------------------------
    def _running_pid(self) -> int | None:
        """Pid from the pid file if that process is alive and is this run dir's broker (not a reused pid)."""
        try:
            pid = int(self.pid_path.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        if self._proc is not None and self._proc.pid == pid:
            # Our own child: no command-line check, it may not have exec'd java yet.
            return pid if self._proc.poll() is None else None
        if not process_alive(pid):
            return None
        cmd = command_line(pid)
        return pid if "kafka.Kafka" in cmd and str(self.server_properties_path) in cmd else None

    def _check_same_config(self, pid: int) -> None:
        try:
            current = self.server_properties_path.read_text()
        except FileNotFoundError:
            return
        if current != render_server_properties(self.config, self._keystore_password(create=False)):
            raise BrokerError(
                f"the Kafka broker in {self.run_dir} is already running (pid {pid}) with other settings "
                f"({self.server_properties_path}); stop it first"
            )

    def _check_ports_free(self) -> None:
        for name, port in self.config.listener_ports.items():
            if not port_is_free(port):
                raise BrokerError(
                    f"port {port} ({name} listener) is already in use by another process, not by the "
                    f"Kafka broker of {self.run_dir}; stop that process or choose another port"
                )

    def _keystore_password(self, create: bool) -> str | None:
        if self.config.sasl_ssl_port is None:
            return None
        path = self.tls_dir / "keystore.pass"
        if not path.is_file():
            if not create:
                return None
            self.tls_dir.mkdir(parents=True, exist_ok=True)
            _write_private(path, secrets.token_urlsafe(24))
        return path.read_text().strip()

    def _prepare(self, java: str, lib_dir: Path) -> None:
        (self.run_dir / "logs").mkdir(parents=True, exist_ok=True)
        properties = render_server_properties(self.config, self._keystore_password(create=True))
        _write_private(self.server_properties_path, properties)
        (self.run_dir / "log4j2.properties").write_text(render_log4j2_properties(self.log_path))
        needs_format = not (self.run_dir / "data" / "meta.properties").is_file()
        # Formatting and keytool are independent JVM start-ups; overlapping them saves seconds.
        with ThreadPoolExecutor(max_workers=1) as pool:
            formatting = pool.submit(self._format_storage, java, lib_dir) if needs_format else None
            if self.config.sasl_ssl_port is not None:
                self._ensure_tls(java)
            if formatting is not None:
                formatting.result()

    def _java_base(self, java: str, lib_dir: Path) -> list[str]:
        return [java, f"-Dlog4j2.configurationFile={self.run_dir / 'log4j2.properties'}", "-cp", f"{lib_dir}/*"]

    def _format_storage(self, java: str, lib_dir: Path) -> None:
        cluster_id = new_cluster_id()
        cmd = [
            *self._java_base(java, lib_dir),
            "kafka.tools.StorageTool",
            "format",
            "--cluster-id",
            cluster_id,
            "--config",
            str(self.server_properties_path),
            "--standalone",  # single-node dynamic quorum, as in Kafka 4's quickstart
        ]
        for name, password in self.config.scram_users.items():
            cmd += ["--add-scram", f'SCRAM-SHA-512=[name={name},password="{password}"]']
        log.info("Formatting KRaft storage in %s (cluster id %s)", self.run_dir / "data", cluster_id)
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        if proc.returncode != 0:
            raise BrokerError(
                f"formatting Kafka storage in {self.run_dir / 'data'} failed (exit {proc.returncode}):\n"
                + (proc.stdout + proc.stderr).strip()
            )

    def _launch(self, java: str, lib_dir: Path) -> int:
        base = self._java_base(java, lib_dir)
        cmd = [
            base[0],
            BROKER_HEAP,
            *BROKER_JVM_OPTS,
            f"-Dkafka.logs.dir={self.log_path.parent}",
            *base[1:],
            "kafka.Kafka",
            str(self.server_properties_path),
        ]
        log.info(
            "Starting Kafka %s broker (KRaft) on %s, logs in %s", KAFKA_VERSION, self.bootstrap_servers, self.log_path
        )
        # The JVM's own stdout/stderr (start-up errors before log4j is up) land in the same log file.
        with self.log_path.open("ab") as log_file:
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=self.run_dir,
                start_new_session=True,  # outlives the CLI and ignores the terminal's Ctrl-C
            )
        self.pid_path.write_text(f"{self._proc.pid}\n")
        return self._proc.pid

    def _wait_ready(self, pid: int, deadline: float, timeout_s: float) -> None:
        while True:
            if self._running_pid() != pid:
                code = self._proc.poll() if self._proc is not None and self._proc.pid == pid else None
                how = f"exited with code {code}" if code is not None else "exited"
                raise BrokerError(f"the Kafka broker {how} during start-up.\n{self._log_tail()}")
            if metadata_broker_count(self.config.port):
                return
            if time.monotonic() >= deadline:
                raise BrokerError(
                    f"the Kafka broker did not come up on {self.bootstrap_servers} within {timeout_s:g} s.\n"
                    f"{self._log_tail()}"
                )
            time.sleep(0.1)

    def _terminate(self, pid: int, timeout_s: float) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        if not self._wait_exit(pid, timeout_s):
            log.warning("Kafka broker (pid %d) did not stop within %g s; killing it", pid, timeout_s)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            if not self._wait_exit(pid, 10):
                raise BrokerError(f"the Kafka broker (pid {pid}) survived SIGKILL")
        self.pid_path.unlink(missing_ok=True)

    def _wait_exit(self, pid: int, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while self._running_pid() == pid:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

    def _log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        try:
            with self.log_path.open("rb") as handle:
                handle.seek(0, os.SEEK_END)
                handle.seek(max(0, handle.tell() - 64 * 1024))
                tail = handle.read().decode(errors="replace").splitlines()[-lines:]
        except FileNotFoundError:
            return f"No log file at {self.log_path}."
        if not tail:
            return f"The log file {self.log_path} is empty."
        return f"Last {len(tail)} lines of {self.log_path}:\n" + "\n".join(f"  {line}" for line in tail)

    def _ensure_tls(self, java: str) -> None:
        """Throw-away CA, a broker certificate for localhost signed by it, and an unrelated second CA."""
        tls = self.tls_dir
        wanted = (tls / "broker.p12", self.ca_pem_path, self.other_ca_pem_path)
        if all(path.is_file() for path in wanted):
            return
        tls.mkdir(parents=True, exist_ok=True)
        for path in (*wanted, tls / "ca.p12", tls / "other-ca.p12", tls / "broker.csr", tls / "broker.pem"):
            path.unlink(missing_ok=True)
        password = self._keystore_password(create=True)
        assert password is not None
        keytool = Path(java).resolve().parent / "keytool"
        tool = str(keytool) if keytool.is_file() else shutil.which("keytool")
        if tool is None:
            raise BrokerError(f"keytool not found next to {java} nor on PATH; install a full OpenJDK 17")
        san = f"SAN=dns:{HOST},ip:127.0.0.1"
        ec = ["-keyalg", "EC", "-groupname", "secp256r1", "-validity", "3650", "-storetype", "PKCS12"]

        def keytool_run(*args: str) -> None:
            # The password goes through a ':env' reference so it never shows in a process listing.
            cmd = [tool, *KEYTOOL_FAST_START, *args, "-storepass:env", "JOB_BROKER_STOREPASS", "-noprompt"]
            env = {**os.environ, "JOB_BROKER_STOREPASS": password}
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tls, check=False)
            if proc.returncode != 0:
                raise BrokerError(f"keytool {args[0]} failed in {tls}: {(proc.stdout + proc.stderr).strip()}")

        log.info("Generating a throw-away CA and a localhost certificate in %s", tls)
        keytool_run("-genkeypair", "-alias", "ca", "-dname", "CN=job.broker throw-away CA", "-ext", "bc:c",
                    *ec, "-keystore", "ca.p12")  # fmt: skip
        keytool_run("-exportcert", "-rfc", "-alias", "ca", "-keystore", "ca.p12", "-file", "ca.pem")
        keytool_run("-genkeypair", "-alias", "broker", "-dname", f"CN={HOST}", "-ext", san, *ec,
                    "-keystore", "broker.p12")  # fmt: skip
        keytool_run("-certreq", "-alias", "broker", "-keystore", "broker.p12", "-file", "broker.csr")
        keytool_run("-gencert", "-rfc", "-alias", "ca", "-keystore", "ca.p12", "-infile", "broker.csr",
                    "-outfile", "broker.pem", "-validity", "3650", "-ext", san,
                    "-ext", "KU=digitalSignature,keyEncipherment", "-ext", "EKU=serverAuth")  # fmt: skip
        keytool_run("-importcert", "-alias", "ca", "-file", "ca.pem", "-keystore", "broker.p12")
        keytool_run("-importcert", "-alias", "broker", "-file", "broker.pem", "-keystore", "broker.p12")
        keytool_run("-genkeypair", "-alias", "other-ca", "-dname", "CN=job.broker unrelated CA", "-ext", "bc:c",
                    *ec, "-keystore", "other-ca.p12")  # fmt: skip
        keytool_run("-exportcert", "-rfc", "-alias", "other-ca", "-keystore", "other-ca.p12", "-file", "other-ca.pem")
        (tls / "broker.csr").unlink(missing_ok=True)


def _partition_leaders(admin: object, topic: str) -> list[int] | None:
    """Leader id per partition from describe_topics, or None while the topic is not visible yet.

    Handles both kafka-python 2.x ('topic', 'leader') and 3.x ('name', 'leader_id') result keys.
    """
    try:
        described = admin.describe_topics([topic])  # type: ignore[attr-defined]
    except Exception as exc:  # the metadata may briefly fail right after creation
        log.debug("describe_topics(%s) failed: %s", topic, exc)
        return None
    for info in described:
        if info.get("name", info.get("topic")) != topic or info.get("error_code", 0) != 0:
            continue
        partitions = info.get("partitions") or []
        if not partitions:
            return None
        return [p.get("leader_id", p.get("leader", -1)) if p.get("error_code", 0) == 0 else -1 for p in partitions]
    return None


# --------------------------------------------------------------------------------------------------------
# Command line


def _running_line(broker: LocalBroker) -> str:
    return f"Kafka {KAFKA_VERSION} broker (KRaft) running on {broker.bootstrap_servers} (logs: {broker.log_path})"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m job.broker", description=f"Local Apache Kafka {KAFKA_VERSION} broker (KRaft, single node)."
    )
    parser.add_argument("command", choices=["start", "stop", "status", "fetch", "create-topics"])
    parser.add_argument("topics", nargs="*", metavar="TOPIC", help="create-topics: the topics to create")
    parser.add_argument("--partitions", type=int, default=1, help="create-topics: partitions per topic (default 1)")
    parser.add_argument("--port", type=int, default=9092, help="PLAINTEXT listener port (default 9092)")
    parser.add_argument("--controller-port", type=int, help="KRaft controller port (default: --port + 1)")
    parser.add_argument(
        "--run-dir", type=Path, default=DEFAULT_RUN_DIR, help=f"data, config and logs (default {DEFAULT_RUN_DIR})"
    )
    parser.add_argument("--timeout", type=float, help="seconds to wait for start (60) or stop (30)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("kafka").setLevel(logging.WARNING)  # kafka-python's connection chatter

    try:
        if args.command == "fetch":
            print(f"Kafka {KAFKA_VERSION} jars in {fetch_kafka()}")
            return 0
        if args.command == "start":
            config = BrokerConfig(
                args.run_dir,
                port=args.port,
                controller_port=args.controller_port if args.controller_port is not None else args.port + 1,
            )
            broker = LocalBroker(config)
            broker.start(timeout_s=args.timeout if args.timeout is not None else 60)
            print(_running_line(broker))
            return 0
        broker = LocalBroker.for_run_dir(args.run_dir)
        if args.command == "create-topics":
            if not broker.is_running():
                raise BrokerError(f"no broker running in {broker.run_dir}; start it first (make broker-start)")
            for topic in args.topics:
                broker.create_topic(topic, partitions=args.partitions)
                print(f"topic {topic} ({args.partitions} partition(s)) ready on {broker.bootstrap_servers}")
            return 0
        if args.command == "stop":
            was_running = broker._running_pid() is not None
            broker.stop(timeout_s=args.timeout if args.timeout is not None else 30)
            print(f"Kafka broker {'stopped' if was_running else 'was not running'} (run dir: {broker.run_dir})")
            return 0
        if broker.is_running():
            print(_running_line(broker))
            return 0
        print(f"Kafka broker not running (run dir: {broker.run_dir})")
        return EXIT_NOT_RUNNING
    except (BrokerError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        # start() has already stopped the half-started broker.
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
