"""Service credentials as IBM Cloud hands them out: service keys, key lists and VCAP_SERVICES, into exact connections."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from job.runtime.secrets import Secret
from job.runtime.service_credentials import CredentialsSourceError, merge_service_credentials, select_service
from job.runtime.spec import parse_spec
from job.runtime.values import Connection, SpecError
from job.tools.specs import spec_document

ES_BROKERS = [
    "broker-0-abcdefghij.kafka.svc01.us-south.eventstreams.cloud.ibm.com:9093",
    "broker-1-abcdefghij.kafka.svc01.us-south.eventstreams.cloud.ibm.com:9093",
    "broker-2-abcdefghij.kafka.svc01.us-south.eventstreams.cloud.ibm.com:9093",
]
# An Event Streams service key, field for field as `ibmcloud resource service-key` prints it (values made up).
EVENT_STREAMS_KEY: dict[str, Any] = {
    "api_key": "ES-API-KEY-0123456789abcdef",
    "apikey": "ES-API-KEY-0123456789abcdef",
    "bootstrap_endpoints": ",".join(ES_BROKERS),
    "iam_apikey_description": "Auto-generated for key 0000",
    "iam_apikey_name": "tweets-writer",
    "iam_role_crn": "crn:v1:bluemix:public:iam::::serviceRole:Writer",
    "iam_serviceid_crn": "crn:v1:bluemix:public:iam-identity::a/0000::serviceid:ServiceId-0000",
    "instance_id": "11111111-2222-3333-4444-555555555555",
    "kafka_admin_url": "https://abcdefghij.svc01.us-south.eventstreams.cloud.ibm.com",
    "kafka_brokers_sasl": ES_BROKERS,
    "kafka_http_url": "https://abcdefghij.svc01.us-south.eventstreams.cloud.ibm.com",
    "password": "ES-API-KEY-0123456789abcdef",
    "user": "token",
}
MH_BROKERS = [f"kafka0{i}-prod01.messagehub.services.us-south.bluemix.net:9093" for i in (1, 2, 3)]
# A classic Message Hub service key (values made up).
MESSAGE_HUB_KEY: dict[str, Any] = {
    "instance_id": "66666666-7777-8888-9999-000000000000",
    "mqlight_lookup_url": "https://mqlight-lookup-prod01.messagehub.services.us-south.bluemix.net/Lookup?serviceId=6",
    "api_key": "MHUSER0000000001MHPASSWORD000000000000000001",
    "kafka_admin_url": "https://kafka-admin-prod01.messagehub.services.us-south.bluemix.net:443",
    "kafka_rest_url": "https://kafka-rest-prod01.messagehub.services.us-south.bluemix.net:443",
    "kafka_brokers_sasl": MH_BROKERS,
    "user": "MHUSER0000000001",
    "password": "MHPASSWORD000000000000000001",
}
EVENT_STREAMS = Connection(tuple(ES_BROKERS), "SASL_SSL", "PLAIN", "token", Secret("ES-API-KEY-0123456789abcdef"))
MESSAGE_HUB = Connection(
    tuple(MH_BROKERS), "SASL_SSL", "PLAIN", "MHUSER0000000001", Secret("MHPASSWORD000000000000000001")
)


def vcap(*services: tuple[str, str, dict[str, Any]]) -> dict[str, Any]:
    """A VCAP_SERVICES document: label -> [{name, label, plan, credentials}]."""
    document: dict[str, list[dict[str, Any]]] = {}
    for label, name, credentials in services:
        document.setdefault(label, []).append(
            {"name": name, "label": label, "plan": "standard", "tags": ["kafka"], "credentials": credentials}
        )
    return document


def spec_with(connection: dict[str, Any]) -> dict[str, Any]:
    return spec_document("tweets", {"in": "in", "out": "out"}, "/tmp/cp", model="m", input_connection=connection)


def source_connection(connection: dict[str, Any], environ: dict[str, str] | None = None) -> Connection:
    return parse_spec(spec_with(connection), environ=environ or {}).source.connection


def write(tmp_path: Path, document: Any, name: str = "credentials.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(document, indent=2), encoding="utf-8")
    return str(path)


def test_event_streams_service_key_file(tmp_path: Path) -> None:
    assert source_connection({"credentials_file": write(tmp_path, EVENT_STREAMS_KEY)}) == EVENT_STREAMS


def test_message_hub_service_key_file(tmp_path: Path) -> None:
    assert source_connection({"credentials_file": write(tmp_path, MESSAGE_HUB_KEY)}) == MESSAGE_HUB


def test_event_streams_key_with_only_an_api_key_uses_user_token(tmp_path: Path) -> None:
    key = {"kafka_brokers_sasl": ES_BROKERS, "apikey": "ONLY-AN-API-KEY"}
    assert source_connection({"credentials_file": write(tmp_path, key)}) == Connection(
        tuple(ES_BROKERS), "SASL_SSL", "PLAIN", "token", Secret("ONLY-AN-API-KEY")
    )


def test_bootstrap_endpoints_when_there_is_no_broker_list(tmp_path: Path) -> None:
    key = {"bootstrap_endpoints": "b-0:9093, b-1:9093", "user": "token", "password": "pw"}
    assert source_connection({"credentials_file": write(tmp_path, key)}) == Connection(
        ("b-0:9093", "b-1:9093"), "SASL_SSL", "PLAIN", "token", Secret("pw")
    )


def test_vcap_services_from_the_environment_with_the_only_kafka_service() -> None:
    document = vcap(
        ("messagehub", "tweets-kafka", EVENT_STREAMS_KEY),
        ("cloudantNoSQLDB", "tweets-db", {"url": "https://x.cloudant.com", "apikey": "not-kafka"}),
    )
    environ = {"VCAP_SERVICES": json.dumps(document)}
    assert source_connection({"credentials_env": "VCAP_SERVICES"}, environ) == EVENT_STREAMS


def test_vcap_services_file_picks_the_named_service(tmp_path: Path) -> None:
    document = vcap(("messagehub", "old-hub", MESSAGE_HUB_KEY), ("messagehub", "tweets-kafka", EVENT_STREAMS_KEY))
    path = write(tmp_path, document)
    assert source_connection({"credentials_file": path, "service_name": "tweets-kafka"}) == EVENT_STREAMS
    assert source_connection({"credentials_file": path, "service_name": "old-hub"}) == MESSAGE_HUB


def test_ibmcloud_service_keys_list_and_single_key_object(tmp_path: Path) -> None:
    keys = [
        {"name": "reader", "guid": "g1", "credentials": MESSAGE_HUB_KEY},
        {"name": "writer", "guid": "g2", "credentials": EVENT_STREAMS_KEY},
    ]
    listed = write(tmp_path, keys, "keys.json")
    assert source_connection({"credentials_file": listed, "service_name": "writer"}) == EVENT_STREAMS
    single = write(tmp_path, keys[0], "key.json")
    assert source_connection({"credentials_file": single}) == MESSAGE_HUB


def test_spec_fields_beside_the_file_set_what_the_file_does_not(tmp_path: Path) -> None:
    connection = {
        "credentials_file": write(tmp_path, MESSAGE_HUB_KEY),
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "ssl_ca_location": "/etc/kafka/ca.pem",
        # The same value in both places is not a conflict.
        "user": "MHUSER0000000001",
        # null drops a field an earlier spec file set inline (the original request's password, say).
        "password": None,
    }
    assert source_connection(connection) == Connection(
        tuple(MH_BROKERS),
        "SASL_SSL",
        "SCRAM-SHA-512",
        "MHUSER0000000001",
        Secret("MHPASSWORD000000000000000001"),
        "/etc/kafka/ca.pem",
    )


def test_env_reference_in_the_path_and_credentials_env_on_the_output(tmp_path: Path) -> None:
    write(tmp_path, EVENT_STREAMS_KEY)
    doc = spec_with({"credentials_file": "${SECRETS}/credentials.json"})
    doc["output"]["connection"] = {"credentials_env": "OUTPUT_KEY"}
    spec = parse_spec(doc, environ={"SECRETS": str(tmp_path), "OUTPUT_KEY": json.dumps(MESSAGE_HUB_KEY)})
    assert (spec.source.connection, spec.target.connection, spec.dead_letter.connection) == (
        EVENT_STREAMS,
        MESSAGE_HUB,
        MESSAGE_HUB,
    )


def test_select_service_reports_where_the_credentials_came_from() -> None:
    document = vcap(("messagehub", "tweets-kafka", EVENT_STREAMS_KEY))
    found = select_service(document, "environment variable VCAP_SERVICES", "credentials_env")
    assert found.source == "service 'tweets-kafka' of environment variable VCAP_SERVICES"
    assert found.brokers == tuple(ES_BROKERS)
    assert (found.user, found.password, found.api_key) == (
        "token",
        Secret("ES-API-KEY-0123456789abcdef"),
        Secret("ES-API-KEY-0123456789abcdef"),
    )


def test_a_connection_without_a_source_is_returned_as_it_is() -> None:
    connection = {"bootstrap_servers": ["h:1"], "user": "u", "password": "p"}
    assert merge_service_credentials(connection, {}) == connection


def bad_cases(tmp_path: Path) -> list[tuple[dict[str, Any], dict[str, str], str]]:
    es = write(tmp_path, EVENT_STREAMS_KEY, "es.json")
    two_hubs = write(
        tmp_path, vcap(("messagehub", "a", EVENT_STREAMS_KEY), ("messagehub", "b", MESSAGE_HUB_KEY)), "two.json"
    )
    no_kafka = write(tmp_path, vcap(("cloudantNoSQLDB", "db", {"url": "u"})), "nokafka.json")
    broken = tmp_path / "broken.json"
    broken.write_text('{"user": "token",\n "password": "ES-API-KEY-0123456789abcdef"', encoding="utf-8")
    wrong_types = write(tmp_path, {"kafka_brokers_sasl": ES_BROKERS, "user": "token", "password": 12345}, "types.json")
    bad_broker = write(tmp_path, {"kafka_brokers_sasl": ["broker-0"], "user": "token", "password": "p"}, "broker.json")
    p = "spec field 'input.connection"
    return [
        (
            {"credentials_file": str(tmp_path / "missing.json")},
            {},
            f"{p}.credentials_file': found '{tmp_path / 'missing.json'}', which does not exist, expected a readable JSON file",
        ),
        (
            {"credentials_file": str(broken)},
            {},
            f"{p}.credentials_file': found invalid JSON in '{broken}' at line 2, column 43, expected a service key or "
            "VCAP_SERVICES JSON",
        ),
        (
            {"credentials_env": "VCAP_SERVICES"},
            {},
            f"{p}.credentials_env': found VCAP_SERVICES, which is not set in the environment, expected an environment "
            "variable holding JSON credentials",
        ),
        (
            {"credentials_file": es, "credentials_env": "VCAP_SERVICES"},
            {},
            f"{p}.credentials_env': found both credentials_file and credentials_env, expected one of them",
        ),
        (
            {"bootstrap_servers": ["h:1"], "service_name": "x"},
            {},
            f"{p}.service_name': found 'x', expected it beside credentials_file or credentials_env",
        ),
        (
            {"credentials_file": es, "service_name": "x"},
            {},
            f"{p}.service_name': found 'x', but file '{es}' is a single service key, not a list of services, expected "
            "no service_name with a service key",
        ),
        (
            {"credentials_file": two_hubs},
            {},
            f"{p}.service_name': found 2 Kafka services in file '{two_hubs}' ('a', 'b'), expected service_name "
            "naming one of them",
        ),
        (
            {"credentials_file": two_hubs, "service_name": "c"},
            {},
            f"{p}.service_name': found 'c', which is not in file '{two_hubs}', expected one of 'a', 'b'",
        ),
        (
            {"credentials_file": no_kafka},
            {},
            f"{p}.credentials_file': found 0 Kafka services in file '{no_kafka}', expected a Message Hub / Event "
            "Streams service",
        ),
        (
            {"credentials_env": "VCAP_SERVICES"},
            {"VCAP_SERVICES": json.dumps(["not", "services"])},
            f"{p}.credentials_env': found service #0 in environment variable VCAP_SERVICES without a 'credentials' "
            "object, expected one per service",
        ),
        (
            {"credentials_env": "VCAP_SERVICES"},
            {"VCAP_SERVICES": "42"},
            f"{p}.credentials_env': found a JSON integer in environment variable VCAP_SERVICES that is neither a service "
            'key nor a list of services, expected a service key ({"kafka_brokers_sasl": [...], "user": ..., ...}) '
            'or VCAP_SERVICES ({"messagehub": [{"name": ..., "credentials": {...}}]})',
        ),
        (
            {"credentials_file": wrong_types},
            {},
            f"{p}.credentials_file': found 'password' in file '{wrong_types}' is a hidden integer, expected a non-empty "
            "string",
        ),
        (
            {"credentials_file": bad_broker},
            {},
            f"{p}.credentials_file': found 'kafka_brokers_sasl[0]' in file '{bad_broker}' is 'broker-0' (string), "
            "expected host:port",
        ),
        (
            {"credentials_file": es, "password": "another-password"},
            {},
            f"{p}.password': found a value here and a different one in file '{es}', expected each credential in one "
            "place only (remove it here, or set it to null in an overlay spec)",
        ),
        (
            {"credentials_file": es, "bootstrap_servers": ["localhost:9093"]},
            {},
            f"{p}.bootstrap_servers': found ['localhost:9093'] here and a different one in file '{es}', expected "
            "each credential in one place only (remove it here, or set it to null in an overlay spec)",
        ),
        (
            {"credentials_file": 7},
            {},
            f"{p}.credentials_file': found 7 (integer), expected a non-empty string",
        ),
    ]


def test_each_bad_source_is_named_with_what_was_found_and_expected(tmp_path: Path) -> None:
    for connection, environ, message in bad_cases(tmp_path):
        with pytest.raises(SpecError) as err:
            source_connection(connection, environ)
        assert str(err.value) == message
        assert "ES-API-KEY" not in str(err.value) and "MHPASSWORD" not in str(err.value)


def test_errors_never_show_a_secret_of_the_file(tmp_path: Path) -> None:
    key = copy.deepcopy(EVENT_STREAMS_KEY)
    key["user"] = ["ES-API-KEY-0123456789abcdef"]
    path = write(tmp_path, key)
    with pytest.raises(CredentialsSourceError) as err:
        merge_service_credentials({"credentials_file": path}, {})
    assert str(err.value) == (
        f"credentials_file: found 'user' in file '{path}' is a hidden array, expected a non-empty string"
    )
