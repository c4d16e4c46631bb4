"""Connection -> Kafka options: exact options for Message Hub, Event Streams and a local broker."""

from __future__ import annotations

import pytest

from job.runtime.connection import (
    connection_scrubber,
    deployment_scrubber,
    jaas_config,
    kafka_client_options,
    kafka_python_config,
    loggable,
    secret_values,
    sink_options,
    source_options,
)
from job.runtime.secrets import Secret
from job.runtime.spec import parse_spec
from job.runtime.values import Connection
from job.tools.specs import spec_document

MESSAGE_HUB = Connection(
    bootstrap_servers=("kafka01-prod01.messagehub:9093", "kafka02-prod01.messagehub:9093"),
    security_protocol="SASL_SSL",
    sasl_mechanism="PLAIN",
    user="Dv5kEVNNsbuJ9RFE",
    password=Secret("KdahIn2hrui"),
)
PLAIN = "org.apache.kafka.common.security.plain.PlainLoginModule"


def test_message_hub_credentials_give_sasl_ssl_plain_with_tls12_plus_and_hostname_verification() -> None:
    assert kafka_client_options(MESSAGE_HUB) == {
        "kafka.bootstrap.servers": "kafka01-prod01.messagehub:9093,kafka02-prod01.messagehub:9093",
        "kafka.security.protocol": "SASL_SSL",
        "kafka.sasl.mechanism": "PLAIN",
        "kafka.sasl.jaas.config": f'{PLAIN} required username="Dv5kEVNNsbuJ9RFE" password="KdahIn2hrui";',
        "kafka.ssl.protocol": "TLSv1.3",
        "kafka.ssl.enabled.protocols": "TLSv1.2,TLSv1.3",
        "kafka.ssl.endpoint.identification.algorithm": "https",
    }


def test_event_streams_token_user_and_api_key() -> None:
    event_streams = {
        "kafka_brokers_sasl": ["broker-0.es.cloud:9093"],
        "user": "token",
        "api_key": "AbC-123",
        "kafka_http_url": "https://es.cloud",
        "instance_id": "i-1",
    }
    spec = parse_spec(
        spec_document("es", {"in": "tweets", "out": "scored"}, "c", model="m", input_connection=event_streams)
    )
    assert source_options(spec) == {
        "kafka.bootstrap.servers": "broker-0.es.cloud:9093",
        "kafka.security.protocol": "SASL_SSL",
        "kafka.sasl.mechanism": "PLAIN",
        "kafka.sasl.jaas.config": f'{PLAIN} required username="token" password="AbC-123";',
        "kafka.ssl.protocol": "TLSv1.3",
        "kafka.ssl.enabled.protocols": "TLSv1.2,TLSv1.3",
        "kafka.ssl.endpoint.identification.algorithm": "https",
        "subscribe": "tweets",
        "startingOffsets": "latest",
        "maxOffsetsPerTrigger": "50000",
        "failOnDataLoss": "true",
    }
    assert sink_options(spec.target.connection, {}) == {
        "kafka.bootstrap.servers": "localhost:9092",
        "kafka.security.protocol": "PLAINTEXT",
    }


def test_local_broker_options_with_spec_extras() -> None:
    local = Connection(("localhost:9092",), "PLAINTEXT")
    assert sink_options(local, {"kafka.linger.ms": "5"}) == {
        "kafka.bootstrap.servers": "localhost:9092",
        "kafka.security.protocol": "PLAINTEXT",
        "kafka.linger.ms": "5",
    }
    assert kafka_python_config(local) == {"bootstrap_servers": ["localhost:9092"], "security_protocol": "PLAINTEXT"}


def test_private_ca_and_scram() -> None:
    conn = Connection(("k:9095",), "SASL_SSL", "SCRAM-SHA-512", "svc", Secret("pw"), "/etc/kafka/ca.pem")
    options = kafka_client_options(conn)
    assert options["kafka.sasl.jaas.config"] == (
        'org.apache.kafka.common.security.scram.ScramLoginModule required username="svc" password="pw";'
    )
    assert (options["kafka.ssl.truststore.type"], options["kafka.ssl.truststore.location"]) == (
        "PEM",
        "/etc/kafka/ca.pem",
    )
    assert kafka_python_config(conn) == {
        "bootstrap_servers": ["k:9095"],
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "svc",
        "sasl_plain_password": "pw",
        "ssl_check_hostname": True,
        "ssl_cafile": "/etc/kafka/ca.pem",
    }


def test_jaas_line_escapes_quotes_and_backslashes() -> None:
    line = jaas_config("PLAIN", 'us"er', 'p\\a"ss')
    assert line == f'{PLAIN} required username="us\\"er" password="p\\\\a\\"ss";'


def test_loggable_shows_only_allow_listed_values() -> None:
    shown = loggable({**kafka_client_options(MESSAGE_HUB), "kafka.ssl.keystore.password": "x", "subscribe": "t"})
    assert shown == {
        "kafka.bootstrap.servers": "kafka01-prod01.messagehub:9093,kafka02-prod01.messagehub:9093",
        "kafka.sasl.jaas.config": "*****",
        "kafka.sasl.mechanism": "PLAIN",
        "kafka.security.protocol": "SASL_SSL",
        "kafka.ssl.enabled.protocols": "TLSv1.2,TLSv1.3",
        "kafka.ssl.endpoint.identification.algorithm": "https",
        "kafka.ssl.keystore.password": "*****",
        "kafka.ssl.protocol": "TLSv1.3",
        "subscribe": "t",
    }


def test_truststore_options_for_a_private_broker() -> None:
    conn = Connection(
        ("k:9095",), "SASL_SSL", "PLAIN", "svc", Secret("pw"), ssl_truststore_location="/etc/kafka/truststore.p12",
        ssl_truststore_password=Secret("store-pw"),
    )  # fmt: skip
    assert kafka_client_options(conn) == {
        "kafka.bootstrap.servers": "k:9095",
        "kafka.security.protocol": "SASL_SSL",
        "kafka.sasl.mechanism": "PLAIN",
        "kafka.sasl.jaas.config": f'{PLAIN} required username="svc" password="pw";',
        "kafka.ssl.protocol": "TLSv1.3",
        "kafka.ssl.enabled.protocols": "TLSv1.2,TLSv1.3",
        "kafka.ssl.endpoint.identification.algorithm": "https",
        "kafka.ssl.truststore.location": "/etc/kafka/truststore.p12",
        "kafka.ssl.truststore.password": "store-pw",
    }
    assert loggable(kafka_client_options(conn))["kafka.ssl.truststore.password"] == "*****"
    with pytest.raises(ValueError, match=r"cannot read the JKS/PKCS12 truststore '/etc/kafka/truststore.p12'"):
        kafka_python_config(conn)


def test_secret_values_cover_every_form_of_each_secret_and_the_whole_jaas_line() -> None:
    conn = Connection(
        ("k:9095",), "SASL_SSL", "PLAIN", "svc", Secret('p"w\\x'), ssl_truststore_location="/ts.p12",
        ssl_truststore_password=Secret("store-pw"),
    )  # fmt: skip
    line = f'{PLAIN} required username="svc" password="p\\"w\\\\x";'
    assert set(secret_values([conn])) == {
        line,  # the JAAS line, user name and all
        line.replace("\\", "\\\\"),  # the line as py4j sends it (backslashes doubled)
        line.replace("\\", "\\\\").replace('"', '\\"'),  # the line inside a JSON string
        'p"w\\x',  # as given
        'p"w\\\\x',  # py4j-escaped
        'p\\"w\\\\x',  # JAAS-escaped, which is also its JSON form
        'p\\\\"w\\\\\\\\x',  # JAAS-escaped, then py4j-escaped (inside the JAAS line py4j logs)
        'p\\\\\\"w\\\\\\\\x',  # JAAS-escaped, then JSON-escaped
        "cCJ3XHg=",  # base64
        "store-pw",
        "c3RvcmUtcHc=",
    }


def test_secret_named_kafka_options_are_masked_when_printed_and_in_every_text() -> None:
    pem_key = (
        "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nBKcwggSjAgEAAoIBAQC7\n-----END PRIVATE KEY-----"
    )
    extra = {
        "kafka.ssl.key.password": "key-pass-1",
        "kafka.SSL.Keystore.Key": pem_key,
        "kafka.sasl.oauthbearer.token.endpoint.url": "https://idp/token",
        "kafka.my.Credential": "cred-9",
        "kafka.client.id": "svc",
    }
    shown = loggable(sink_options(MESSAGE_HUB, extra))
    assert {key: shown[key] for key in extra} == {
        "kafka.ssl.key.password": "*****",
        "kafka.SSL.Keystore.Key": "*****",
        "kafka.sasl.oauthbearer.token.endpoint.url": "*****",
        "kafka.my.Credential": "*****",
        "kafka.client.id": "svc",
    }
    doc = spec_document("d", {"in": "in", "out": "out"}, "/tmp/cp", options={"kafka": extra})
    scrub = deployment_scrubber(parse_spec(doc, environ={}))
    # A PEM key is masked whole, and line by line wherever a log shows one of its lines alone.
    assert scrub(f"a {pem_key} b key-pass-1 c cred-9") == "a ***** b ***** c *****"
    assert scrub("line MIIEvQIBADANBgkqhkiG9w0BAQEFAASC of it") == "line ***** of it"
    assert scrub("client svc, protocol PLAINTEXT") == "client svc, protocol PLAINTEXT"


def test_connection_scrubber_masks_the_jaas_line_whole_and_the_escaped_password() -> None:
    conn = Connection(("k:9095",), "SASL_SSL", "PLAIN", "svc", Secret('p"w\\x'))
    # py4j at DEBUG logs the option as it travels, JAAS-escaped inside the line: the line is masked whole.
    line = jaas_config("PLAIN", "svc", 'p"w\\x')
    text = f"Command to send: option kafka.sasl.jaas.config {line} e"
    assert connection_scrubber([conn])(text) == "Command to send: option kafka.sasl.jaas.config ***** e"
    assert connection_scrubber([conn])('password="p\\"w\\\\x" and p"w\\x') == 'password="*****" and *****'
