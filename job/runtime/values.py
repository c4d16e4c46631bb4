"""The deployment spec's value types: frozen dataclasses, their error type, and the small parsers they share.

Part of the ground floor: it imports only `secrets`. `spec` fills these types from a YAML document.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from job.runtime.secrets import Secret

SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
STARTING_OFFSETS = ("latest", "earliest")

# Exit codes of the job's commands.
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_SPEC = 2
EXIT_NO_STATUS = 3

DEFAULT_MAX_OFFSETS_PER_TRIGGER = 50_000
DEFAULT_MAX_TEXT_LENGTH = 4_000
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024
# A scored record holds the value's text, re-escaped (never longer than it was in the value), plus about
# 1 KiB of fixed fields; this keeps it under the 1 MiB a Kafka topic and producer accept by default.
MAX_MAX_MESSAGE_BYTES = 1_000_000

# A broker address as IBM prints it and Kafka takes it: a host name, IPv4 or [IPv6] address, then the port
# after the last colon.
HOST_PORT = re.compile(r"(?P<host>[A-Za-z0-9._\-\[\]:]+):(?P<port>\d{1,5})")


class SpecError(ValueError):
    """A deployment spec that cannot run; the message names the field, what was found and what was expected."""

    def __init__(self, field_path: str, found: str, expected: str) -> None:
        self.field_path = field_path
        self.found = found
        self.expected = expected
        super().__init__(f"spec field '{field_path}': found {found}, expected {expected}")


def parse_host_port(text: str) -> tuple[str, int] | None:
    """(host, port) of a `host:port` broker address, the host without IPv6 brackets; None if it is not one."""
    match = HOST_PORT.fullmatch(text.strip())
    if match is None or not 0 < int(match["port"]) < 65536:
        return None
    return match["host"].strip("[]"), int(match["port"])


def kind_of(value: Any) -> str:
    """What a YAML or JSON value is, in words for an error message (never the value itself)."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


@dataclass(frozen=True)
class Connection:
    """Where a Kafka cluster is and how to authenticate to it (Message Hub credentials or a plain broker)."""

    bootstrap_servers: tuple[str, ...]
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    user: str | None = None
    password: Secret | None = None
    ssl_ca_location: str | None = None
    # A JKS or PKCS12 truststore (Kafka's default type JKS reads both on Java 9+), instead of a PEM CA.
    ssl_truststore_location: str | None = None
    ssl_truststore_password: Secret | None = None


@dataclass(frozen=True)
class Topic:
    topic: str
    connection: Connection


@dataclass(frozen=True)
class Trigger:
    """How often micro-batches run. kind is 'processing_time', 'available_now' or 'real_time'."""

    kind: str = "processing_time"
    interval: str = "0 seconds"


@dataclass(frozen=True)
class Options:
    trigger: Trigger = field(default_factory=Trigger)
    starting_offsets: str = "latest"
    max_offsets_per_trigger: int = DEFAULT_MAX_OFFSETS_PER_TRIGGER
    min_partitions: int | None = None
    fail_on_data_loss: bool = True
    max_text_length: int = DEFAULT_MAX_TEXT_LENGTH
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    # NO_FEATURES: a text in which the model's own stages find no feature is dead-lettered, not scored.
    dead_letter_no_features: bool = True
    kafka: Mapping[str, str] = field(default_factory=dict)
    # How long a graceful stop may wait for the batch in flight before it cancels it; None (the default): as long
    # as the batch takes.
    stop_limit: str | None = None


@dataclass(frozen=True)
class DeploymentSpec:
    name: str
    description: str
    source: Topic
    target: Topic
    dead_letter: Topic
    model_location: str
    checkpoint_location: str
    state_location: str | None = None
    options: Options = field(default_factory=Options)
    spark_log_level: str = "WARN"
    prometheus: bool = False
    # model.watch: a file whose content is a model location; the deployment serves what it names (see update.py).
    model_watch: str | None = None

    def connections(self) -> tuple[Connection, ...]:
        """The input, output and dead-letter connections (equal ones may repeat)."""
        return (self.source.connection, self.target.connection, self.dead_letter.connection)

    def locations(self) -> DeploymentLocations:
        """The name and folders alone, as `status`, `stop` and `delete` take them."""
        return DeploymentLocations(self.name, self.checkpoint_location, self.state_location)


@dataclass(frozen=True)
class DeploymentLocations:
    """What `status`, `stop` and `delete` need: the deployment's name and folders, no connection."""

    name: str
    checkpoint_location: str
    state_location: str | None
