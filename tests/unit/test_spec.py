"""Spec loading: the original WML request verbatim, ${ENV} substitution, and one clear error per mistake."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from job.runtime.connection import source_options
from job.runtime.secrets import Secret
from job.runtime.spec import load_spec, parse_spec
from job.runtime.values import Connection, DeploymentSpec, Options, SpecError, Topic, Trigger
from job.tools.specs import spec_document

CONFIG = Path(__file__).resolve().parents[2] / "config"

MESSAGE_HUB_BROKERS = tuple(f"kafka0{i}-prod01.messagehub.services.us-south.bluemix.net:9093" for i in (1, 2, 3, 4, 5))


def local_spec(**changes: Any) -> dict[str, Any]:
    # The output's broker list as one string, the input's as a list: both forms IBM prints.
    return spec_document(
        "tweets",
        {"in": "in", "out": "out"},
        "/tmp/cp",
        model="models/sentiment-prediction",
        output_connection={"bootstrap_servers": "localhost:9092"},
        **changes,
    )


def test_original_request_body_loads_unchanged_with_model_and_checkpoint_beside_it() -> None:
    spec = load_spec(
        [CONFIG / "original-request.json"],
        overrides={"model": {"location": "hdfs:///models/sentiment"}, "checkpoint_location": "s3a://b/cp"},
    )
    connection = Connection(
        bootstrap_servers=MESSAGE_HUB_BROKERS,
        security_protocol="SASL_SSL",
        sasl_mechanism="PLAIN",
        user="EXAMPLEUSER00001",
        password=Secret("EXAMPLEPASSWORD0000000000000001"),
    )
    assert spec == DeploymentSpec(
        name="Sentiment Prediction ",
        description="Streaming Deployment",
        source=Topic("sinput", connection),
        target=Topic("soutput", connection),
        dead_letter=Topic("soutput.dead-letter", connection),
        model_location="hdfs:///models/sentiment",
        checkpoint_location="s3a://b/cp",
    )


def test_original_request_with_local_overlay_points_at_the_local_broker() -> None:
    spec = load_spec([CONFIG / "original-request.json", CONFIG / "original-request.local.yaml"])
    local = Connection(bootstrap_servers=("localhost:9092",), security_protocol="PLAINTEXT")
    assert (spec.source, spec.target) == (Topic("sinput", local), Topic("soutput", local))
    assert spec.model_location == "models/sentiment-prediction"
    assert spec.options.starting_offsets == "earliest"


def test_shipped_local_and_messagehub_specs_load() -> None:
    local = load_spec([CONFIG / "local.yaml"])
    assert (local.source.topic, local.target.topic, local.dead_letter.topic) == (
        "tweets",
        "tweet-predictions",
        "tweet-predictions.dead-letter",
    )
    assert local.options.trigger == Trigger("processing_time", "1 second")
    env = {f"MESSAGEHUB_BROKER_{i}": f"b{i}.example:9093" for i in (1, 2, 3)}
    env |= {"MESSAGEHUB_USER": "token", "MESSAGEHUB_PASSWORD": "k3y", "MODEL_URI": "s3a://m/model"}
    env |= {"CHECKPOINT_URI": "s3a://m/cp", "STATE_URI": "s3a://m/state"}
    hub = load_spec([CONFIG / "messagehub.yaml"], environ=env)
    assert hub.source.connection == Connection(
        bootstrap_servers=("b1.example:9093", "b2.example:9093", "b3.example:9093"),
        security_protocol="SASL_SSL",
        sasl_mechanism="PLAIN",
        user="token",
        password=Secret("k3y"),
    )
    assert (hub.model_location, hub.checkpoint_location, hub.state_location) == (
        "s3a://m/model",
        "s3a://m/cp",
        "s3a://m/state",
    )


def test_defaults_of_a_minimal_local_spec() -> None:
    spec = parse_spec(local_spec())
    assert spec.source.connection == Connection(("localhost:9092",), "PLAINTEXT")
    assert spec.description == ""
    assert spec.dead_letter == Topic("out.dead-letter", spec.target.connection)
    assert spec.options == Options(
        trigger=Trigger("processing_time", "0 seconds"),
        starting_offsets="latest",
        max_offsets_per_trigger=50_000,
        min_partitions=None,
        fail_on_data_loss=True,
        max_text_length=4_000,
        max_message_bytes=65_536,
        kafka={},
    )
    assert spec.state_location is None


def test_env_references_are_substituted_everywhere_and_dollar_dollar_escapes() -> None:
    doc = local_spec(description="cost $$5 for ${WHO}", checkpoint_location="${ROOT}/cp")
    doc["input"]["connection"] = {"bootstrap_servers": ["${HOST}:9092"], "user": "u", "password": "${PW}"}
    spec = parse_spec(doc, environ={"WHO": "ops", "ROOT": "/data", "HOST": "kafka1", "PW": "p@ss"})
    assert spec.description == "cost $5 for ops"
    assert spec.checkpoint_location == "/data/cp"
    assert spec.source.connection.bootstrap_servers == ("kafka1:9092",)
    assert spec.source.connection.password == Secret("p@ss")


def test_missing_environment_variable_is_an_error_naming_field_and_variable() -> None:
    doc = local_spec()
    doc["input"]["connection"] = {"bootstrap_servers": ["h:1"], "user": "u", "password": "${MH_PASSWORD}"}
    with pytest.raises(SpecError) as err:
        parse_spec(doc, environ={})
    assert str(err.value) == (
        "spec field 'input.connection.password': found ${MH_PASSWORD}, which is not set in the environment, "
        "expected environment variable MH_PASSWORD"
    )


def test_event_streams_api_key_becomes_the_password() -> None:
    doc = local_spec()
    doc["input"]["connection"] = {"kafka_brokers_sasl": ["es:9093"], "user": "token", "api_key": "AK"}
    spec = parse_spec(doc)
    assert spec.source.connection == Connection(("es:9093",), "SASL_SSL", "PLAIN", "token", Secret("AK"))


def test_explicit_protocol_mechanism_and_ca() -> None:
    doc = local_spec()
    doc["input"]["connection"] = {
        "bootstrap_servers": ["k:9094"],
        "user": "u",
        "password": "p",
        "security_protocol": "sasl_plaintext",
        "sasl_mechanism": "SCRAM-SHA-512",
    }
    doc["output"]["connection"] = {
        "bootstrap_servers": ["k:9095"],
        "user": "u",
        "password": "p",
        "ssl_ca_location": "/etc/ca.pem",
    }
    spec = parse_spec(doc)
    assert spec.source.connection == Connection(("k:9094",), "SASL_PLAINTEXT", "SCRAM-SHA-512", "u", Secret("p"))
    assert spec.target.connection == Connection(("k:9095",), "SASL_SSL", "PLAIN", "u", Secret("p"), "/etc/ca.pem")


def test_options_are_parsed() -> None:
    doc = local_spec(
        options={
            "trigger": {"processing_time": "5 seconds"},
            "starting_offsets": "earliest",
            "max_offsets_per_trigger": 1000,
            "min_partitions": 4,
            "fail_on_data_loss": False,
            "max_text_length": 280,
            "max_message_bytes": 2048,
            "dead_letter_no_features": False,
            "kafka": {"kafka.request.timeout.ms": 20000, "kafka.client.id": "x"},
        }
    )
    assert parse_spec(doc).options == Options(
        trigger=Trigger("processing_time", "5 seconds"),
        starting_offsets="earliest",
        max_offsets_per_trigger=1000,
        min_partitions=4,
        fail_on_data_loss=False,
        max_text_length=280,
        max_message_bytes=2048,
        dead_letter_no_features=False,
        kafka={"kafka.request.timeout.ms": "20000", "kafka.client.id": "x"},
    )
    assert parse_spec(local_spec(options={"trigger": "available_now"})).options.trigger == Trigger("available_now", "")


def _without(doc: dict[str, Any], dotted: str) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    *parents, last = dotted.split(".")
    node = doc
    for p in parents:
        node = node[p]
    del node[last]
    return doc


def _with(doc: dict[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    *parents, last = dotted.split(".")
    node = doc
    for p in parents:
        node = node[p]
    node[last] = value
    return doc


BAD_SPECS = [
    (
        _with(local_spec(), "type", "batch"),
        "spec field 'type': found 'batch', expected 'stream' (the only deployment type this job runs)",
    ),
    (_without(local_spec(), "name"), "spec field 'name': found nothing, expected a non-empty string"),
    (_with(local_spec(), "name", 7), "spec field 'name': found 7 (integer), expected a non-empty string"),
    (
        _without(local_spec(), "checkpoint_location"),
        "spec field 'checkpoint_location': found nothing, expected a non-empty string",
    ),
    (_without(local_spec(), "model"), "spec field 'model': found nothing, expected a mapping"),
    (
        _with(local_spec(), "checkpoint_locaton", "/tmp/x"),
        "spec field 'checkpoint_locaton': found an unknown key, expected one of checkpoint_location, dead_letter, "
        "description, input, model, name, options, output, spark, state_location, type",
    ),
    (
        _with(local_spec(), "input.source.topic", "bad topic!"),
        "spec field 'input.source.topic': found 'bad topic!', expected a Kafka topic name (letters, digits, '.', "
        "'_', '-')",
    ),
    (
        _with(local_spec(), "input.source.type", "mqlight"),
        "spec field 'input.source.type': found 'mqlight', expected 'kafka'",
    ),
    (
        _with(local_spec(), "output.target.topic", "in"),
        "spec field 'output.target.topic': found topics input='in', output='in', dead_letter='in.dead-letter', "
        "expected three different topics (reading what the job writes would loop forever)",
    ),
    (
        _with(local_spec(), "input.connection", {"user": "u", "password": "p"}),
        "spec field 'input.connection.kafka_brokers_sasl': found neither, expected exactly one of "
        "'kafka_brokers_sasl' (Message Hub) or 'bootstrap_servers' (a plain broker)",
    ),
    (
        _with(local_spec(), "input.connection", {"bootstrap_servers": ["localhost"]}),
        "spec field 'input.connection.bootstrap_servers[0]': found 'localhost' (string), expected host:port",
    ),
    (
        _with(local_spec(), "input.connection", {"bootstrap_servers": ["h:1"], "user": "u"}),
        "spec field 'input.connection.password': found nothing, expected 'password' too: SASL needs a user and a "
        "password",
    ),
    (
        _with(local_spec(), "input.connection", {"bootstrap_servers": ["h:1"], "password": 12345}),
        "spec field 'input.connection.password': found a hidden integer, expected a non-empty string",
    ),
    (
        _with(local_spec(), "input.connection", {"bootstrap_servers": ["h:1"], "security_protocol": "TLS"}),
        "spec field 'input.connection.security_protocol': found 'TLS', expected one of PLAINTEXT, SSL, "
        "SASL_PLAINTEXT, SASL_SSL",
    ),
    (
        _with(local_spec(), "input.connection", {"bootstrap_servers": ["h:1"], "security_protocol": "SASL_SSL"}),
        "spec field 'input.connection.user': found nothing, expected a user and password for SASL_SSL",
    ),
    (
        _with(
            local_spec(),
            "input.connection",
            {"bootstrap_servers": ["h:1"], "user": "u", "password": "p", "sasl_mechanism": "GSSAPI"},
        ),
        "spec field 'input.connection.sasl_mechanism': found 'GSSAPI', expected one of PLAIN, SCRAM-SHA-256, "
        "SCRAM-SHA-512",
    ),
    (
        _with(local_spec(), "input.connection", {"bootstrap_servers": ["h:1"], "pasword": "p"}),
        "spec field 'input.connection.pasword': found an unknown key, expected one of api_key, apikey, "
        "bootstrap_servers, credentials_env, credentials_file, iam_apikey_description, iam_apikey_name, "
        "iam_role_crn, iam_serviceid_crn, instance_id, kafka_admin_url, kafka_brokers_sasl, kafka_http_url, "
        "kafka_rest_url, mqlight_lookup_url, password, sasl_mechanism, security_protocol, service_name, "
        "ssl_ca_location, ssl_truststore_location, ssl_truststore_password, user",
    ),
    (
        _with(local_spec(), "options", {"starting_offsets": "newest"}),
        "spec field 'options.starting_offsets': found 'newest', expected 'latest' or 'earliest'",
    ),
    (
        _with(local_spec(), "options", {"max_offsets_per_trigger": 0}),
        "spec field 'options.max_offsets_per_trigger': found 0 (integer), expected a positive integer",
    ),
    (
        _with(local_spec(), "options", {"max_message_bytes": 1_000_001}),
        "spec field 'options.max_message_bytes': found 1000001, expected at most 1,000,000 (a scored record must "
        "stay under Kafka's default 1 MiB)",
    ),
    (
        _with(local_spec(), "options", {"dead_letter_no_features": "yes"}),
        "spec field 'options.dead_letter_no_features': found 'yes' (string), expected true or false",
    ),
    (
        _with(local_spec(), "options", {"fail_on_data_loss": "no"}),
        "spec field 'options.fail_on_data_loss': found 'no' (string), expected true or false",
    ),
    (
        _with(local_spec(), "options", {"trigger": {"processing_time": "soon"}}),
        "spec field 'options.trigger.processing_time': found 'soon', expected an interval such as '1 second' or "
        "'500 milliseconds'",
    ),
    (
        _with(local_spec(), "options", {"trigger": {"continuous": "1 second"}}),
        "spec field 'options.trigger': found keys ['continuous'], expected exactly one of processing_time, "
        "real_time, available_now",
    ),
    (
        _with(local_spec(), "options", {"kafka": {"kafka.sasl.jaas.config": "x"}}),
        "spec field 'options.kafka.kafka.sasl.jaas.config': found a setting the connection owns, expected it in "
        "the connection",
    ),
    (
        # Spark lower-cases option names before they reach the Kafka client: this would replace the JAAS line.
        _with(local_spec(), "options", {"kafka": {"kafka.SASL.Jaas.Config": "x"}}),
        "spec field 'options.kafka.kafka.SASL.Jaas.Config': found a setting the connection owns, expected it in "
        "the connection",
    ),
    (
        _with(local_spec(), "options", {"kafka": {"kafka.BOOTSTRAP.SERVERS": "elsewhere:9092"}}),
        "spec field 'options.kafka.kafka.BOOTSTRAP.SERVERS': found a setting the connection owns, expected it in "
        "the connection",
    ),
    (
        _with(local_spec(), "options", {"kafka": {"request.timeout.ms": 1}}),
        "spec field 'options.kafka.request.timeout.ms': found 'request.timeout.ms', expected a Kafka client option "
        "starting with 'kafka.'",
    ),
]


@pytest.mark.parametrize(("doc", "message"), BAD_SPECS, ids=[m.split("'")[1] for _, m in BAD_SPECS])
def test_each_bad_spec_names_field_found_and_expected(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError) as err:
        parse_spec(doc, environ={})
    assert str(err.value) == message


@pytest.mark.parametrize("field", ["password", "user"])
@pytest.mark.parametrize("line_break", ["\n", "\r", "\r\n"])
def test_a_user_or_password_with_a_line_break_is_refused_without_quoting_it(field: str, line_break: str) -> None:
    # Kafka's JAAS parser ends a quoted value at a line break and quotes what follows into its own error.
    doc = local_spec()
    connection = {"bootstrap_servers": ["h:1"], "user": "u", "password": "pw"}
    connection[field] = f"FirstLine{line_break}SecondLineSecret"
    doc["output"]["connection"] = connection
    with pytest.raises(SpecError) as err:
        parse_spec(doc, environ={})
    assert str(err.value) == (
        f"spec field 'output.connection.{field}': found a value with a line break, expected a {field} on one line "
        "(Kafka's JAAS configuration cannot hold a line break)"
    )


def test_bad_file_errors_do_not_quote_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text('name: x\npassword: "s3cret\n', encoding="utf-8")
    with pytest.raises(SpecError) as err:
        load_spec([bad])
    assert "s3cret" not in str(err.value)
    assert str(err.value).startswith(f"spec field '<spec file>': found invalid YAML/JSON in '{bad}' at line ")
    with pytest.raises(SpecError, match="which does not exist"):
        load_spec([tmp_path / "missing.yaml"])
    listed = tmp_path / "list.json"
    listed.write_text(json.dumps([1, 2]), encoding="utf-8")
    with pytest.raises(SpecError, match="expected a mapping at the top level"):
        load_spec([listed])


def test_secret_never_shows_in_repr_of_the_spec() -> None:
    doc = local_spec()
    doc["input"]["connection"] = {"bootstrap_servers": ["h:1"], "user": "u", "password": "sup3r-s3cret"}
    spec = parse_spec(doc)
    assert "sup3r-s3cret" not in repr(spec)
    assert "sup3r-s3cret" not in str(spec.source.connection.password)


def test_truststore_instead_of_a_pem_ca() -> None:
    doc = local_spec()
    doc["input"]["connection"] = {
        "bootstrap_servers": ["k:9095"],
        "user": "u",
        "password": "p",
        "ssl_truststore_location": "/etc/kafka/truststore.jks",
        "ssl_truststore_password": "${STORE_PW}",
    }
    spec = parse_spec(doc, environ={"STORE_PW": "store-secret"})
    assert spec.source.connection == Connection(
        ("k:9095",), "SASL_SSL", "PLAIN", "u", Secret("p"), None, "/etc/kafka/truststore.jks", Secret("store-secret")
    )
    assert "store-secret" not in repr(spec)


@pytest.mark.parametrize(
    ("connection", "message"),
    [
        (
            {"bootstrap_servers": ["k:1"], "user": "u", "password": "p", "ssl_ca_location": "/ca.pem",
             "ssl_truststore_location": "/ts.jks"},
            "spec field 'input.connection.ssl_truststore_location': found '/ts.jks', expected either it or "
            "ssl_ca_location, not both",
        ),
        (
            {"bootstrap_servers": ["k:1"], "ssl_truststore_location": "/ts.jks"},
            "spec field 'input.connection.ssl_truststore_location': found '/ts.jks', expected no truststore with "
            "PLAINTEXT",
        ),
        (
            {"bootstrap_servers": ["k:1"], "user": "u", "password": "p", "ssl_truststore_password": "store-secret"},
            "spec field 'input.connection.ssl_truststore_password': found a hidden string, expected it only with "
            "ssl_truststore_location",
        ),
        (
            {"bootstrap_servers": ["k:1"], "user": "u", "password": "p", "ssl_truststore_location": "/ts.jks",
             "ssl_truststore_password": 1234},
            "spec field 'input.connection.ssl_truststore_password': found a hidden integer, expected a non-empty string",
        ),
    ],
    ids=["ca-and-truststore", "truststore-without-tls", "password-without-truststore", "password-not-a-string"],
)  # fmt: skip
def test_truststore_mistakes_are_named_without_the_password(connection: dict[str, Any], message: str) -> None:
    doc = local_spec()
    doc["input"]["connection"] = connection
    with pytest.raises(SpecError) as err:
        parse_spec(doc, environ={})
    assert str(err.value) == message


def test_credentials_file_beside_the_original_request_with_its_inline_credentials_dropped(tmp_path: Path) -> None:
    key = tmp_path / "event-streams.json"
    key.write_text(
        json.dumps({"kafka_brokers_sasl": ["b-0:9093"], "user": "token", "password": "FROM-THE-FILE", "api_key": "x"}),
        encoding="utf-8",
    )
    overlay = tmp_path / "overlay.yaml"
    # The request's inline Message Hub credentials are dropped with null; the file gives the connection.
    dropped = dict.fromkeys(("kafka_brokers_sasl", "user", "password", "api_key"))
    connection = {**dropped, "credentials_file": str(key)}
    overlay.write_text(
        json.dumps({"input": {"connection": connection}, "output": {"connection": connection}}), encoding="utf-8"
    )
    spec = load_spec(
        [CONFIG / "original-request.json", overlay],
        overrides={"model": {"location": "m"}, "checkpoint_location": "/tmp/cp"},
    )
    expected = Connection(("b-0:9093",), "SASL_SSL", "PLAIN", "token", Secret("FROM-THE-FILE"))
    assert (spec.source.connection, spec.target.connection, spec.dead_letter.connection) == (expected,) * 3


def test_dead_letter_topic_with_its_own_connection() -> None:
    doc = local_spec(
        dead_letter={
            "topic": "rejected",
            "connection": {"bootstrap_servers": ["dlq:9093"], "user": "u", "password": "p"},
        }
    )
    spec = parse_spec(doc, environ={})
    assert spec.dead_letter == Topic("rejected", Connection(("dlq:9093",), "SASL_SSL", "PLAIN", "u", Secret("p")))


def test_spark_section_sets_log_level_and_prometheus() -> None:
    spec = parse_spec(local_spec(spark={"log_level": "debug", "prometheus": True}))
    assert (spec.spark_log_level, spec.prometheus) == ("DEBUG", True)
    assert parse_spec(local_spec()).prometheus is False
    with pytest.raises(SpecError) as err:
        parse_spec(local_spec(spark={"prometheus": "yes"}))
    assert str(err.value) == "spec field 'spark.prometheus': found 'yes' (string), expected true or false"


def test_real_time_trigger_takes_no_offset_cap() -> None:
    spec = parse_spec(local_spec(options={"trigger": {"real_time": "5 seconds"}}))
    assert spec.options.trigger == Trigger("real_time", "5 seconds")
    assert "maxOffsetsPerTrigger" not in source_options(spec)
    assert source_options(parse_spec(local_spec()))["maxOffsetsPerTrigger"] == "50000"
    with pytest.raises(SpecError) as err:
        parse_spec(local_spec(options={"trigger": {"real_time": "5 seconds"}, "max_offsets_per_trigger": 10}))
    assert str(err.value) == (
        "spec field 'options.max_offsets_per_trigger': found a cap with a real_time trigger, "
        "expected no cap: Spark's real-time mode reads all available offsets"
    )
