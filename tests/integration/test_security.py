"""Security end to end against a real secured broker: SASL over TLS with both IBM credential styles, fast
failures that name the broker and the cause, and no secret in any log, UI page, event log or status."""

from __future__ import annotations

import base64
import codecs
import contextlib
import io
import json
import logging
import os
import re
import secrets
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka.admin import KafkaAdminClient
from py4j.protocol import escape_new_line
from pyspark.ml.functions import vector_to_array
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from job.runtime.cluster_check import StartupError, check_topics
from job.runtime.connection import connection_scrubber, jaas_config
from job.runtime.model import LoadedModel, load_model
from job.runtime.query import start_query
from job.runtime.secrets import ScrubbingFilter, Secret
from job.runtime.values import DeploymentSpec
from job.tools import specs
from job.tools.broker import BrokerConfig, LocalBroker, java_executable
from job.tools.processes import free_port
from tests.integration.kafka_utils import assert_eventually, create_topics, produce, read_all, unique_topics
from tests.integration.messages import GOOD_TEXTS
from tests.paths import PROJECT_ROOT, SHIPPED_MODEL

# Quotes and a backslash prove the JAAS escaping from the spec through Spark's Kafka clients to the broker.
MH_USER, MH_PASSWORD = "mh-user-0001", 'mh "pass" \\ word-' + secrets.token_hex(4)
ES_API_KEY = "es-api-key-" + secrets.token_hex(8)
SCRAM_USER, SCRAM_PASSWORD = "scram-user", "scram-pw-" + secrets.token_hex(8)
LEAK_USER, SENTINEL = "leak-user", "Sentinel" + secrets.token_hex(10)
# A backslash, a double quote, a single quote and a non-ASCII letter: each escaped differently by JAAS, py4j, JSON.
ODD_USER, ODD_PASSWORD = "odd-user", "Ab\\cd\"Ef'gh-é-" + secrets.token_hex(8)
LEAKS = pytest.mark.parametrize(
    ("user", "password"), [(LEAK_USER, SENTINEL), (ODD_USER, ODD_PASSWORD)], ids=["plain", "odd-characters"]
)
TRUSTSTORE_PASSWORD = "truststore-pw-" + secrets.token_hex(4)
PLAIN_MODULE = "org.apache.kafka.common.security.plain.PlainLoginModule"
AUTH_HINT = "check the user and password (Event Streams: user 'token' and an API key as the password)"

TWEETS = GOOD_TEXTS[:6]


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalBroker]:
    """One broker for the module: PLAINTEXT (test harness), SASL_PLAINTEXT and SASL_SSL (the job), PLAIN and SCRAM users."""
    broker = LocalBroker(
        BrokerConfig(
            run_dir=tmp_path_factory.mktemp("secured-kafka"),
            port=free_port(),
            controller_port=free_port(),
            sasl_plaintext_port=free_port(),
            sasl_ssl_port=free_port(),
            users={MH_USER: MH_PASSWORD, "token": ES_API_KEY, LEAK_USER: SENTINEL, ODD_USER: ODD_PASSWORD},
            scram_users={SCRAM_USER: SCRAM_PASSWORD},
        )
    )
    broker.start(timeout_s=120)
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(scope="module")
def model(spark: SparkSession) -> LoadedModel:
    return load_model(spark, str(SHIPPED_MODEL))


def sasl_ssl(broker: LocalBroker, user: str, password: str, **extra: Any) -> dict[str, Any]:
    """A Message Hub style connection to the SASL_SSL listener, trusting the broker's throw-away CA."""
    return {
        "kafka_brokers_sasl": [broker.bootstrap_servers_for("SASL_SSL")],
        "user": user,
        "password": password,
        "ssl_ca_location": str(broker.ca_pem_path),
        **extra,
    }


def make_spec(
    inbound: dict[str, Any],
    outbound: dict[str, Any],
    topics: dict[str, str],
    tmp_path: Path,
    environ: dict[str, str] | None = None,
) -> DeploymentSpec:
    document = specs.spec_document(
        "security-it",
        topics,
        tmp_path / "checkpoint",
        input_connection=inbound,
        output_connection=outbound,
        options={"starting_offsets": "earliest", "trigger": {"processing_time": "500 milliseconds"}},
    )
    return specs.build_spec(document, environ)


def fresh_topics(broker: LocalBroker) -> dict[str, str]:
    topics = unique_topics("in", "out", "dlq")
    create_topics(broker.bootstrap_servers, topics.values())
    return topics


def assert_scores_end_to_end(
    spark: SparkSession, model: LoadedModel, broker: LocalBroker, spec: DeploymentSpec, n: int = 12
) -> None:
    """n tweets in; exactly those ids out, each with the label the batch model gives it, nothing dead-lettered.

    The test harness produces and reads over PLAINTEXT; the job only knows the secured addresses in its spec.
    """
    texts = {i: f"{TWEETS[i % len(TWEETS)]} #{i}" for i in range(n)}
    produce(
        broker.bootstrap_servers,
        spec.source.topic,
        [(str(i).encode(), json.dumps({"id": i, "text": t}).encode()) for i, t in texts.items()],
    )
    check_topics(spec, spark=spark)
    query = start_query(spark, spec, model)
    try:
        out = read_all(broker.bootstrap_servers, spec.target.topic, expected=n, timeout_s=120)
        assert query.exception() is None
    finally:
        query.stop()
    batch = model.pipeline.transform(spark.createDataFrame(list(texts.items()), "id int, text string"))
    labels = model.metadata.label_values
    expected = {
        r.id: (labels[int(r.prediction)], r.p[int(r.prediction)])
        for r in batch.select("id", "prediction", vector_to_array(F.col("probability")).alias("p")).collect()
    }
    got = {r.json()["id"]: r for r in out}
    assert sorted(got) == list(range(n))
    for i, record in got.items():
        value = record.json()
        assert record.key == str(i).encode()
        assert (value["text"], value["predictedLabel"]) == (texts[i], expected[i][0])
        assert value["probability"] == pytest.approx(expected[i][1], abs=1e-12)
    assert read_all(broker.bootstrap_servers, spec.dead_letter.topic) == []


# --------------------------------------------------------------------------- scoring over secured listeners


def test_message_hub_user_and_password_over_sasl_ssl_with_a_pem_ca(
    spark: SparkSession, model: LoadedModel, secured: LocalBroker, tmp_path: Path
) -> None:
    connection = sasl_ssl(secured, MH_USER, MH_PASSWORD)
    spec = make_spec(connection, connection, fresh_topics(secured), tmp_path)
    assert spec.source.connection.security_protocol == "SASL_SSL"
    assert_scores_end_to_end(spark, model, secured, spec)


def test_event_streams_service_key_file_in_and_vcap_services_out(
    spark: SparkSession, model: LoadedModel, secured: LocalBroker, tmp_path: Path
) -> None:
    brokers = [secured.bootstrap_servers_for("SASL_SSL")]
    # Event Streams service key as IBM prints it: user "token", the API key as password (and twice more).
    key = {
        "api_key": ES_API_KEY,
        "apikey": ES_API_KEY,
        "bootstrap_endpoints": ",".join(brokers),
        "iam_apikey_name": "tweets-writer",
        "instance_id": "11111111-2222-3333-4444-555555555555",
        "kafka_admin_url": "https://localhost:1",
        "kafka_brokers_sasl": brokers,
        "kafka_http_url": "https://localhost:1",
        "password": ES_API_KEY,
        "user": "token",
    }
    key_file = tmp_path / "event-streams-key.json"
    key_file.write_text(json.dumps(key), encoding="utf-8")
    # The output's credentials come from VCAP_SERVICES, a Message Hub user/password among other services.
    vcap = {
        "messagehub": [
            {
                "name": "other-hub",
                "credentials": {"kafka_brokers_sasl": ["elsewhere:9093"], "user": "x", "password": "y"},
            },
            {
                "name": "tweets-out",
                "credentials": {"kafka_brokers_sasl": brokers, "user": MH_USER, "password": MH_PASSWORD},
            },
        ],
        "cloudantNoSQLDB": [{"name": "db", "credentials": {"url": "https://db"}}],
    }
    ca = str(secured.ca_pem_path)
    spec = make_spec(
        {"credentials_file": str(key_file), "ssl_ca_location": ca},
        {"credentials_env": "VCAP_SERVICES", "service_name": "tweets-out", "ssl_ca_location": ca},
        fresh_topics(secured),
        tmp_path,
        environ={"VCAP_SERVICES": json.dumps(vcap)},
    )
    assert (spec.source.connection.user, spec.source.connection.password) == ("token", Secret(ES_API_KEY))
    assert (spec.target.connection.user, spec.target.connection.password) == (MH_USER, Secret(MH_PASSWORD))
    assert_scores_end_to_end(spark, model, secured, spec)


def test_sasl_plaintext_in_and_scram_sha_512_with_a_pkcs12_truststore_out(
    spark: SparkSession, model: LoadedModel, secured: LocalBroker, tmp_path: Path
) -> None:
    truststore = tmp_path / "truststore.p12"
    keytool = Path(java_executable()).resolve().parent / "keytool"
    subprocess.run(
        [str(keytool), "-importcert", "-noprompt", "-alias", "ca", "-file", str(secured.ca_pem_path),
         "-keystore", str(truststore), "-storetype", "PKCS12", "-storepass:env", "TS_PW"],
        env={**os.environ, "TS_PW": TRUSTSTORE_PASSWORD}, check=True, capture_output=True,
    )  # fmt: skip
    inbound = {
        "bootstrap_servers": [secured.bootstrap_servers_for("SASL_PLAINTEXT")],
        "security_protocol": "SASL_PLAINTEXT",
        "user": MH_USER,
        "password": MH_PASSWORD,
    }
    outbound = {
        "bootstrap_servers": [secured.bootstrap_servers_for("SASL_SSL")],
        "sasl_mechanism": "SCRAM-SHA-512",
        "user": SCRAM_USER,
        "password": SCRAM_PASSWORD,
        "ssl_truststore_location": str(truststore),
        "ssl_truststore_password": "${TS_PW}",
    }
    spec = make_spec(inbound, outbound, fresh_topics(secured), tmp_path, environ={"TS_PW": TRUSTSTORE_PASSWORD})
    assert (spec.target.connection.security_protocol, spec.target.connection.sasl_mechanism) == (
        "SASL_SSL",
        "SCRAM-SHA-512",
    )
    assert_scores_end_to_end(spark, model, secured, spec)


# --------------------------------------------------------------------------- clear failures, fast


def failure_of(spark: SparkSession, spec: DeploymentSpec, timeout_s: float = 30.0) -> tuple[str, float]:
    started = time.monotonic()
    with pytest.raises(StartupError) as err:
        check_topics(spec, timeout_s=timeout_s, spark=spark)
    return str(err.value), time.monotonic() - started


@pytest.mark.parametrize(
    ("user", "password", "mechanism", "cause"),
    [
        (MH_USER, "not-the-password", "PLAIN", "Authentication failed: Invalid username or password"),
        ("nobody", "not-the-password", "PLAIN", "Authentication failed: Invalid username or password"),
        (
            SCRAM_USER,
            "not-the-password",
            "SCRAM-SHA-512",
            "Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512",
        ),
    ],
    ids=["wrong-password", "unknown-user", "wrong-scram-password"],
)
def test_rejected_credentials_are_named_within_seconds(
    spark: SparkSession, secured: LocalBroker, tmp_path: Path, user: str, password: str, mechanism: str, cause: str
) -> None:
    connection = sasl_ssl(secured, user, password, sasl_mechanism=mechanism)
    spec = make_spec(connection, connection, fresh_topics(secured), tmp_path)
    message, took = failure_of(spark, spec)
    server = secured.bootstrap_servers_for("SASL_SSL")
    assert message == f"SASL authentication to Kafka at {server} failed ({mechanism}): {cause}; {AUTH_HINT}"
    assert "not-the-password" not in message
    assert took < 60


def test_a_ca_that_did_not_sign_the_broker_certificate_is_named(
    spark: SparkSession, secured: LocalBroker, tmp_path: Path
) -> None:
    connection = sasl_ssl(secured, MH_USER, MH_PASSWORD, ssl_ca_location=str(secured.other_ca_pem_path))
    message, took = failure_of(spark, make_spec(connection, connection, fresh_topics(secured), tmp_path))
    assert message == (
        f"TLS connection to Kafka at {secured.bootstrap_servers_for('SASL_SSL')} failed: the broker's certificate "
        f"is not signed by the CA in ssl_ca_location {secured.other_ca_pem_path}"
    )
    assert took < 60


@contextlib.contextmanager
def forwarder(target_port: int) -> Iterator[int]:
    """A TCP relay on every interface to localhost:target_port, so the broker can be reached by another name."""
    server = socket.create_server(("0.0.0.0", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def serve() -> None:
        while not stop.is_set():
            try:
                client, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            upstream = socket.create_connection(("localhost", target_port))
            threading.Thread(target=pipe, args=(client, upstream), daemon=True).start()
            threading.Thread(target=pipe, args=(upstream, client), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(timeout=5)
        server.close()


def test_a_host_name_the_certificate_does_not_match_is_named(
    spark: SparkSession, secured: LocalBroker, tmp_path: Path
) -> None:
    # The certificate is for localhost and 127.0.0.1 only; the machine's own name reaches the same broker
    # through a relay, and hostname verification must refuse it.
    host = socket.gethostname()
    try:
        socket.getaddrinfo(host, None)
    except socket.gaierror:
        pytest.skip(f"this machine's host name {host!r} does not resolve")
    if host in ("localhost", "127.0.0.1"):
        pytest.skip("this machine's host name is localhost, which the certificate names")
    topics = fresh_topics(secured)
    with forwarder(int(secured.bootstrap_servers_for("SASL_SSL").rsplit(":", 1)[1])) as port:
        connection = sasl_ssl(secured, MH_USER, MH_PASSWORD, kafka_brokers_sasl=[f"{host}:{port}"])
        message, took = failure_of(spark, make_spec(connection, connection, topics, tmp_path))
    assert message == (
        f"TLS connection to Kafka at {host}:{port} failed: the broker's certificate does not match the host name "
        f"it was reached by (No subject alternative DNS name matching {host} found.)"
    )
    assert took < 60


def test_an_unreachable_broker_is_named_at_once(spark: SparkSession, secured: LocalBroker, tmp_path: Path) -> None:
    port = free_port()
    connection = sasl_ssl(secured, MH_USER, MH_PASSWORD, kafka_brokers_sasl=[f"localhost:{port}"])
    message, took = failure_of(spark, make_spec(connection, connection, unique_topics("in", "out", "dlq"), tmp_path))
    assert message == f"cannot reach Kafka at localhost:{port}: localhost:{port}: connection refused"
    assert took < 10


def test_a_missing_topic_on_the_secured_listener_is_named(
    spark: SparkSession, secured: LocalBroker, tmp_path: Path
) -> None:
    topics = unique_topics("in", "out", "dlq")
    create_topics(secured.bootstrap_servers, [topics["in"], topics["out"]])
    connection = sasl_ssl(secured, MH_USER, MH_PASSWORD)
    message, took = failure_of(spark, make_spec(connection, connection, topics, tmp_path))
    assert message == (
        f"topic(s) {topics['dlq']} not found on {secured.bootstrap_servers_for('SASL_SSL')}; create them first "
        "(the job does not create topics)"
    )
    assert took < 60


def test_a_listener_of_another_protocol_fails_at_the_deadline_not_never(
    spark: SparkSession, secured: LocalBroker, tmp_path: Path
) -> None:
    # TLS spoken to the SASL_PLAINTEXT port: nothing answers in a way Kafka's client understands.
    server = secured.bootstrap_servers_for("SASL_PLAINTEXT")
    connection = sasl_ssl(secured, MH_USER, MH_PASSWORD, kafka_brokers_sasl=[server])
    message, took = failure_of(spark, make_spec(connection, connection, fresh_topics(secured), tmp_path), timeout_s=8)
    assert message == (
        f"no answer from Kafka at {server} within 8 s: the port accepts connections, but no SASL_SSL listener "
        "answered (wrong port or security_protocol?)"
    )
    assert took < 20


@pytest.mark.parametrize("wrong", ["output", "dead letter"])
def test_a_wrong_output_or_dead_letter_password_beside_a_right_input_one_is_named(
    spark: SparkSession, secured: LocalBroker, tmp_path: Path, wrong: str
) -> None:
    # Event Streams gives a reader key and a writer key: the same brokers with other credentials are another
    # connection, and each is checked with its own.
    right = sasl_ssl(secured, MH_USER, MH_PASSWORD)
    bad = sasl_ssl(secured, MH_USER, "not-the-password")
    topics = fresh_topics(secured)
    document = specs.spec_document(
        "security-it",
        topics,
        tmp_path / "checkpoint",
        input_connection=right,
        output_connection=bad if wrong == "output" else right,
        dead_letter={"topic": topics["dlq"], **({"connection": bad} if wrong == "dead letter" else {})},
    )
    message, took = failure_of(spark, specs.build_spec(document))
    # Without a connection of its own the dead letter shares the output's: both are named.
    named = "output and dead letter connection" if wrong == "output" else "dead letter connection"
    server = secured.bootstrap_servers_for("SASL_SSL")
    assert message == (
        f"{named}: SASL authentication to Kafka at {server} failed (PLAIN): Authentication failed: Invalid "
        f"username or password; {AUTH_HINT}"
    )
    assert took < 60


def cluster_id(bootstrap: str) -> str:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        return str(admin.describe_cluster()["cluster_id"])
    finally:
        admin.close()


def test_a_loop_is_refused_by_cluster_id_however_the_address_is_spelled(
    spark: SparkSession, kafka_bootstrap: str, tmp_path: Path
) -> None:
    topics = unique_topics("in", "dlq")
    create_topics(kafka_bootstrap, topics.values())
    port = kafka_bootstrap.rsplit(":", 1)[1]
    # Output = input, the broker spelled two ways: the spec cannot tell, the cluster's id can.
    document = specs.spec_document(
        "loop",
        {"in": topics["in"], "out": topics["in"], "dlq": topics["dlq"]},
        tmp_path / "checkpoint",
        input_connection={"bootstrap_servers": [f"localhost:{port}"]},
        output_connection={"bootstrap_servers": [f"127.0.0.1:{port}"]},
    )
    message, took = failure_of(spark, specs.build_spec(document))
    assert message == (
        f"the input topic {topics['in']} and the output topic {topics['in']} are one topic of Kafka cluster "
        f"{cluster_id(kafka_bootstrap)} (localhost:{port} and 127.0.0.1:{port} reach the same cluster); the job "
        "would read what it writes, for ever: give them different topics"
    )
    assert took < 60


def test_dead_letters_into_the_output_topic_are_refused_and_one_name_on_two_clusters_is_not(
    spark: SparkSession, kafka_bootstrap: str, secured: LocalBroker, tmp_path: Path
) -> None:
    name = unique_topics("shared")["shared"]
    other = unique_topics("dlq")["dlq"]
    create_topics(kafka_bootstrap, [name, other])
    create_topics(secured.bootstrap_servers, [name])
    elsewhere = {"bootstrap_servers": [secured.bootstrap_servers]}  # another cluster, its PLAINTEXT listener
    here = {"bootstrap_servers": [kafka_bootstrap]}
    # The input on the other cluster; output and dead letter both `name` here: dead letters would mix in.
    mixed = specs.spec_document(
        "mixed",
        {"in": name, "out": name, "dlq": name},
        tmp_path / "checkpoint",
        input_connection=elsewhere,
        output_connection=here,
    )
    message, _ = failure_of(spark, specs.build_spec(mixed))
    assert message == (
        f"the output topic {name} and the dead letter topic {name} are one topic of Kafka cluster "
        f"{cluster_id(kafka_bootstrap)} on {kafka_bootstrap}; the job would mix dead letters into its output: "
        "give them different topics"
    )
    # The same name on two clusters is two topics: input `name` there, output `name` here.
    apart = specs.spec_document(
        "apart",
        {"in": name, "out": name, "dlq": other},
        tmp_path / "checkpoint",
        input_connection=elsewhere,
        output_connection=here,
    )
    check_topics(specs.build_spec(apart), spark=spark)


def spark_submit(*args: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [str(PROJECT_ROOT / "spark-submit.sh"), "--master", "local[2]", *args],
        cwd=PROJECT_ROOT,
        env={**os.environ, **env},
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def job_command(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "job.runtime.main", *args],
        cwd=PROJECT_ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def write_spec(
    path: Path, inbound: dict[str, Any], outbound: dict[str, Any], topics: dict[str, str], **extra: Any
) -> Path:
    document = specs.spec_document(
        f"security-{topics['in']}",
        topics,
        path.parent / "checkpoint",
        state=path.parent / "state",
        input_connection=inbound,
        output_connection=outbound,
        options={"starting_offsets": "earliest", "trigger": {"processing_time": "1 second"}},
        **extra,
    )
    return specs.write_spec(path, document)


@pytest.mark.slow
def test_run_with_a_wrong_password_records_failed_naming_broker_and_cause(secured: LocalBroker, tmp_path: Path) -> None:
    wrong = "Wrong" + secrets.token_hex(8)
    connection = sasl_ssl(secured, MH_USER, "${MH_PASSWORD}")
    spec = write_spec(tmp_path / "spec.yaml", connection, connection, fresh_topics(secured))
    log = tmp_path / "job.log"
    job = spark_submit("run", "--spec", str(spec), env={"MH_PASSWORD": wrong}, log=log)
    try:
        code = job.wait(timeout=120)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, 9)
    output = log.read_text(errors="replace")
    status = json.loads((tmp_path / "state" / "status.json").read_text())
    reason = (
        f"SASL authentication to Kafka at {secured.bootstrap_servers_for('SASL_SSL')} failed (PLAIN): "
        f"Authentication failed: Invalid username or password; {AUTH_HINT}"
    )
    assert (code, status["state"], status["reason"]) == (1, "FAILED", reason), output[-3000:]
    assert f"cannot start deployment {status['deployment']!r}: {reason}" in output
    for text in (output, json.dumps(status)):
        assert wrong not in text
        assert base64.b64encode(wrong.encode()).decode() not in text


# --------------------------------------------------------------------------- no leak


def forms_of(user: str, password: str) -> dict[str, str]:
    """Every form the secret could leak in, each made here from the rules of the format that would carry it: the
    value; JAAS-escaped (in the JAAS line); as py4j sends a string (its own escape_new_line), alone and in the
    JAAS line; inside a JSON string, ASCII-escaped or not; base64; the client's JAAS line, as is and as py4j sends it;
    and each line of a multi-line value long enough to mean something."""
    jaas_escaped = password.replace("\\", "\\\\").replace('"', '\\"')
    line = jaas_config("PLAIN", user, password)
    forms = {
        "password": password,
        "JAAS-escaped": jaas_escaped,
        "py4j-escaped": escape_new_line(password),
        "JAAS- then py4j-escaped": escape_new_line(jaas_escaped),
        "in JSON": json.dumps(password)[1:-1],
        "in JSON, not ASCII-escaped": json.dumps(password, ensure_ascii=False)[1:-1],
        "base64": base64.b64encode(password.encode()).decode(),
        "jaas line": line,
        "jaas line as py4j sends it": escape_new_line(line),
    }
    lines = password.splitlines()
    if len(lines) > 1:
        forms.update({f"line {i + 1}": part for i, part in enumerate(lines) if len(part) >= 6})
    return forms


def leaks(text: str, forms: dict[str, str]) -> list[str]:
    """Which forms appear in the text; any JAAS line counts too, unless Spark replaced its password."""
    found = [name for name, value in forms.items() if value in text]
    for match in re.finditer(r"PlainLoginModule required [^;\n]*", text):
        if "*********(redacted)" not in match.group(0):
            found.append(f"unredacted JAAS line: {match.group(0)[:60]}…")
    return found


@LEAKS
def test_python_debug_logs_go_through_the_scrubbing_filter(
    spark: SparkSession, model: LoadedModel, secured: LocalBroker, tmp_path: Path, user: str, password: str
) -> None:
    # At DEBUG, py4j logs every command it sends to the JVM, Kafka options included (py4j-escaped: backslashes
    # doubled): the filter the job puts on its log handlers must mask them. The unfiltered handler is the
    # positive control.
    connection = sasl_ssl(secured, user, password)
    spec = make_spec(connection, connection, fresh_topics(secured), tmp_path)
    raw, scrubbed = io.StringIO(), io.StringIO()
    raw_handler = logging.StreamHandler(raw)  # first: it formats each record before the filter rewrites it
    scrubbed_handler = logging.StreamHandler(scrubbed)
    scrubbed_handler.addFilter(ScrubbingFilter(connection_scrubber([spec.source.connection, spec.target.connection])))
    root = logging.getLogger()
    level = root.level
    # As `run` sets it at a DEBUG log level (job/runtime/main.py); an earlier in-process `job` command in this
    # test process may have left py4j's own level at WARNING.
    py4j = logging.getLogger("py4j")
    py4j_level = py4j.level
    py4j.setLevel(logging.DEBUG)
    root.addHandler(raw_handler)
    root.addHandler(scrubbed_handler)
    root.setLevel(logging.DEBUG)
    try:
        produce(
            secured.bootstrap_servers, spec.source.topic, [(b"1", json.dumps({"id": 1, "text": TWEETS[0]}).encode())]
        )
        check_topics(spec, spark=spark)
        query = start_query(spark, spec, model)
        try:
            assert [r.json()["id"] for r in read_all(secured.bootstrap_servers, spec.target.topic, expected=1)] == [1]
            assert query.exception() is None
        finally:
            query.stop()
    finally:
        root.removeHandler(raw_handler)
        root.removeHandler(scrubbed_handler)
        root.setLevel(level)
        py4j.setLevel(py4j_level)
    forms = forms_of(user, password)
    assert forms["jaas line as py4j sends it"] in raw.getvalue()
    assert leaks(scrubbed.getvalue(), forms) == []
    assert "kafka.sasl.jaas.config" in scrubbed.getvalue()


def test_a_plan_that_prints_kafka_options_shows_the_jaas_line_redacted(
    spark: SparkSession, secured: LocalBroker
) -> None:
    # A batch write (the two-cluster sink does these) prints its options in the plan, which the SQL tab,
    # its REST API and the event log show.
    topic = unique_topics("plan")["plan"]
    create_topics(secured.bootstrap_servers, [topic])
    options = {
        "kafka.bootstrap.servers": secured.bootstrap_servers_for("SASL_SSL"),
        "kafka.security.protocol": "SASL_SSL",
        "kafka.sasl.mechanism": "PLAIN",
        "kafka.sasl.jaas.config": jaas_config("PLAIN", LEAK_USER, SENTINEL),
        "kafka.ssl.truststore.type": "PEM",
        "kafka.ssl.truststore.location": str(secured.ca_pem_path),
    }
    spark.createDataFrame([(topic, "k", "v")], "topic string, key string, value string").write.format("kafka").options(
        **options
    ).save()
    executions = spark._jsparkSession.sharedState().statusStore().executionsList()
    plan = executions.apply(executions.size() - 1).physicalPlanDescription()
    assert "SaveIntoDataSourceCommand" in plan
    assert "kafka.sasl.jaas.config=*********(redacted)" in plan
    assert leaks(plan, forms_of(LEAK_USER, SENTINEL)) == []


def fetch(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=20) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


def spark_ui_pages(port: int) -> dict[str, str]:
    """The REST API and HTML pages that could show options, confs or plans, by path."""
    base = f"http://localhost:{port}"
    status, body = fetch(f"{base}/api/v1/applications")
    assert status == 200, body
    app = json.loads(body)[0]["id"]
    api = f"/api/v1/applications/{app}"
    paths = [
        "/api/v1/applications",
        f"{api}/environment",
        f"{api}/sql?details=true&planDescription=true",
        f"{api}/jobs",
        f"{api}/stages?details=true",
        f"{api}/streaming/statistics",
        "/environment/",
        "/SQL/",
        "/StreamingQuery/",
        "/jobs/",
        "/stages/",
    ]
    pages = {path: fetch(base + path) for path in paths}
    executions = json.loads(pages[f"{api}/sql?details=true&planDescription=true"][1])
    for execution in executions:
        path = f"/SQL/execution/?id={execution['id']}"
        pages[path] = fetch(base + path)
    # Streaming statistics exist for DStreams only; every other page must be there.
    missing = [p for p, (status, _) in pages.items() if status != 200 and not p.endswith("/streaming/statistics")]
    assert missing == []
    return {path: body for path, (_, body) in pages.items()}


@pytest.mark.slow
@LEAKS
def test_no_secret_in_logs_ui_rest_api_event_log_status_or_validate(
    secured: LocalBroker, tmp_path: Path, user: str, password: str
) -> None:
    topics = fresh_topics(secured)
    inbound = sasl_ssl(secured, user, "${LEAK_TEST_PASSWORD}")
    # Dead letters over SASL_PLAINTEXT: a second connection, so the job writes with two batch sinks, whose
    # plans print every Kafka option (the single streaming sink prints none).
    dead_letter_connection = {
        "bootstrap_servers": [secured.bootstrap_servers_for("SASL_PLAINTEXT")],
        "security_protocol": "SASL_PLAINTEXT",
        "user": user,
        "password": "${LEAK_TEST_PASSWORD}",
    }
    spec = write_spec(
        tmp_path / "spec.yaml",
        inbound,
        inbound,
        topics,
        dead_letter={"topic": topics["dlq"], "connection": dead_letter_connection},
    )
    env = {"LEAK_TEST_PASSWORD": password}
    events, ui_port = tmp_path / "events", free_port()
    events.mkdir()
    spark_args = [
        "--conf", "spark.ui.enabled=true", "--conf", f"spark.ui.port={ui_port}",
        "--conf", "spark.eventLog.enabled=true", "--conf", f"spark.eventLog.dir={events}",
        # Plain text, so that the search reads what Spark wrote (Spark 4 compresses event logs by default).
        "--conf", "spark.eventLog.compress=false",
    ]  # fmt: skip
    job_log, validate_log = tmp_path / "job.log", tmp_path / "validate.log"
    job = spark_submit(*spark_args, "run", "--spec", str(spec), "--log-level", "DEBUG", env=env, log=job_log)
    validate = spark_submit(
        "validate", "--spec", str(spec), "--check-topics", "--log-level", "DEBUG", env=env, log=validate_log
    )
    status_file = tmp_path / "state" / "status.json"
    try:

        def running() -> bool:
            assert job.poll() is None, job_log.read_text(errors="replace")[-3000:]
            return status_file.is_file() and json.loads(status_file.read_text())["state"] == "RUNNING"

        assert_eventually(running, 180, "the job to run")
        good = [(str(i).encode(), json.dumps({"id": i, "text": TWEETS[i]}).encode()) for i in range(3)]
        produce(secured.bootstrap_servers, topics["in"], [*good, (b"bad", b"{not json")])
        out = read_all(secured.bootstrap_servers, topics["out"], expected=3, timeout_s=120)
        dead = read_all(secured.bootstrap_servers, topics["dlq"], expected=1, timeout_s=60)
        assert (sorted(r.json()["id"] for r in out), [r.json()["errorCode"] for r in dead]) == ([0, 1, 2], ["NOT_JSON"])
        pages = spark_ui_pages(ui_port)
        stopped = job_command("stop", "--spec", str(spec), env=env)
        assert stopped.stdout.startswith(
            f"security-{topics['in']}: STOPPED (stopped gracefully (job stop, marker written at "
        ), stopped.stdout + stopped.stderr
        assert job.wait(timeout=120) == 0
        status_cli = job_command("status", "--spec", str(spec), "--json", env=env)
        assert validate.wait(timeout=240) == 0, validate_log.read_text(errors="replace")[-3000:]
    finally:
        for proc in (job, validate):
            if proc.poll() is None:
                os.killpg(proc.pid, 9)

    validate_output = validate_log.read_text(errors="replace")
    assert "topics: all three found" in validate_output
    assert json.loads(status_cli.stdout)["totals"] == {"records_in": 4, "records_scored": 3, "records_dead_lettered": 1}
    event_files = sorted(p for p in events.rglob("*") if p.is_file())
    assert event_files, "no event log written"
    searched = {
        "job stdout/stderr at DEBUG": job_log.read_text(errors="replace"),
        "validate output": validate_output,
        "status file": status_file.read_text(),
        "job status --json": status_cli.stdout + status_cli.stderr,
        **{f"Spark UI {path}": body for path, body in pages.items()},
        **{f"event log {p.name}": p.read_text(errors="replace") for p in event_files},
    }
    forms = forms_of(user, password)

    # Positive controls: the search finds the secret where it must be, and the places searched do carry the
    # Kafka options (masked), so an unmasked one would have been seen. The broker's server.properties holds the
    # JAAS-escaped password with Java's \\u escapes for anything not ASCII: decoded, the search must find it.
    broker_config = codecs.decode((secured.run_dir / "server.properties").read_text(), "unicode_escape")
    in_broker_config = leaks(broker_config, forms)
    assert "JAAS-escaped" in in_broker_config
    assert any(hit.startswith("unredacted JAAS line: PlainLoginModule required user_") for hit in in_broker_config)
    planted = " | ".join(forms.values())
    unredacted = (
        f"unredacted JAAS line: {forms['jaas line'].removeprefix(PLAIN_MODULE[: -len('PlainLoginModule')])[:60]}…"
    )
    assert set(leaks(planted, forms)) >= {*forms, unredacted}
    sql_api = next(body for path, body in pages.items() if "/sql?" in path)
    assert "kafka.sasl.jaas.config=*********(redacted)" in sql_api
    assert any(
        "kafka.sasl.jaas.config=*********(redacted)" in t for n, t in searched.items() if n.startswith("event log")
    )
    assert 'password="*********(redacted)"' in searched["job stdout/stderr at DEBUG"]

    found = {name: hits for name, text in searched.items() if (hits := leaks(text, forms))}
    assert found == {}


def test_a_password_with_a_line_break_is_refused_before_it_reaches_kafka_and_shown_nowhere(
    secured: LocalBroker, tmp_path: Path
) -> None:
    # Kafka's JAAS parser cannot hold a line break (a quoted value ends there) and quoted the line after it into its
    # error: the spec refuses such a password, naming the field, without any part of it.
    password = "First-line-of-it-" + secrets.token_hex(4) + "\nSecond-line-of-it-" + secrets.token_hex(4)
    connection = sasl_ssl(secured, LEAK_USER, "${LEAK_TEST_PASSWORD}")
    spec = write_spec(tmp_path / "spec.yaml", connection, connection, fresh_topics(secured))
    log = tmp_path / "job.log"
    job = spark_submit(
        "run", "--spec", str(spec), "--log-level", "DEBUG", env={"LEAK_TEST_PASSWORD": password}, log=log
    )
    try:
        code = job.wait(timeout=300)
    finally:
        if job.poll() is None:
            os.killpg(job.pid, 9)
    output = log.read_text(errors="replace")
    assert code == 2, output[-3000:]
    assert (
        "error: spec field 'input.connection.password': found a value with a line break, expected a password on one "
        "line (Kafka's JAAS configuration cannot hold a line break)"
    ) in output
    assert not (tmp_path / "state").exists()
    forms = forms_of(LEAK_USER, password)
    assert {"line 1", "line 2"} <= set(leaks(" ".join(forms.values()), forms))  # positive control
    assert leaks(output, forms) == []
