"""Credentials -> Kafka options: exact options for Message Hub, Event Streams and a local broker."""

from __future__ import annotations

import pickle

import pytest

from job.credentials import (
    Secret,
    jaas_config,
    kafka_client_options,
    kafka_python_config,
    loggable,
    sink_options,
    source_options,
)
from job.spec import Connection, parse_spec

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
    spec = parse_spec(
        {
            "name": "es",
            "type": "stream",
            "input": {
                "connection": {
                    "kafka_brokers_sasl": ["broker-0.es.cloud:9093"],
                    "user": "token",
                    "api_key": "AbC-123",
                    "kafka_http_url": "https://es.cloud",
                    "instance_id": "i-1",
                },
                "source": {"topic": "tweets", "type": "kafka"},
            },
            "output": {
                "connection": {"bootstrap_servers": ["localhost:9092"]},
                "target": {"topic": "scored", "type": "kafka"},
            },
            "model": {"location": "m"},
            "checkpoint_location": "c",
        }
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
    line = jaas_config("PLAIN", 'us"er', Secret('p\\a"ss'))
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


def test_secret_hides_its_value_and_refuses_to_travel() -> None:
    secret = Secret("hunter2")
    assert (repr(secret), str(secret), f"{secret}") == ("Secret('*****')",) * 3
    assert secret.reveal() == "hunter2"
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(secret)
