"""The deployment spec: YAML (or the original WML JSON request) parsed into frozen, validated objects."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from job.runtime.secrets import Secret
from job.runtime.service_credentials import CredentialsSourceError, merge_service_credentials
from job.runtime.values import (
    DEFAULT_MAX_MESSAGE_BYTES,
    DEFAULT_MAX_OFFSETS_PER_TRIGGER,
    DEFAULT_MAX_TEXT_LENGTH,
    MAX_MAX_MESSAGE_BYTES,
    SASL_MECHANISMS,
    SECURITY_PROTOCOLS,
    STARTING_OFFSETS,
    Connection,
    DeploymentLocations,
    DeploymentSpec,
    Options,
    SpecError,
    Topic,
    Trigger,
    kind_of,
    parse_host_port,
)

# Fields IBM prints in a Message Hub / Event Streams service key that this job does not need.
# They are accepted (so the original request loads unchanged) and ignored.
IGNORED_CREDENTIAL_FIELDS = frozenset(
    {
        "kafka_admin_url",
        "kafka_rest_url",
        "kafka_http_url",
        "mqlight_lookup_url",
        "instance_id",
        "apikey",
        "iam_apikey_description",
        "iam_apikey_name",
        "iam_role_crn",
        "iam_serviceid_crn",
    }
)
SECRET_FIELDS = frozenset({"password", "api_key", "apikey", "ssl_truststore_password"})

# Kafka client settings the connection owns; setting them through `options.kafka` would bypass
# the credential handling (and could put a secret in plain sight), so that is refused, whatever the case of the name:
# Spark's Kafka source and sink lower-case option names before they reach the Kafka client.
CONNECTION_OWNED_KAFKA_OPTIONS = frozenset(
    {
        "kafka.bootstrap.servers",
        "kafka.security.protocol",
        "kafka.sasl.mechanism",
        "kafka.sasl.jaas.config",
        "kafka.ssl.truststore.location",
        "kafka.ssl.truststore.type",
        "kafka.ssl.truststore.password",
        "kafka.ssl.endpoint.identification.algorithm",
        "kafka.ssl.enabled.protocols",
        "kafka.ssl.protocol",
    }
)

_ENV_REF = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


# --------------------------------------------------------------------------- loading


def load_spec(
    paths: Sequence[str | os.PathLike[str]],
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> DeploymentSpec:
    """Read one or more spec files (later files deep-merge over earlier ones), apply overrides, validate."""
    return parse_spec(_merged(paths, overrides), environ)


def load_locations(
    paths: Sequence[str | os.PathLike[str]],
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> DeploymentLocations:
    """Read only the name and folders of a spec, so stopping a job does not need its secrets set."""
    merged = _merged(paths, overrides)
    wanted = {key: merged[key] for key in ("name", "checkpoint_location", "state_location") if key in merged}
    doc = _Node(_substitute(wanted, "", os.environ if environ is None else environ), "")
    return DeploymentLocations(
        name=doc.string("name"),
        checkpoint_location=doc.string("checkpoint_location"),
        state_location=doc.optional_string("state_location"),
    )


def _merged(paths: Sequence[str | os.PathLike[str]], overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    if not paths:
        raise SpecError("<spec files>", "none", "at least one spec file (YAML or the original JSON request)")
    merged: dict[str, Any] = {}
    for path in paths:
        merged = deep_merge(merged, read_spec_file(Path(path)))
    if overrides:
        merged = deep_merge(merged, dict(overrides))
    return merged


def read_spec_file(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise SpecError("<spec file>", f"'{path}', which does not exist", "a readable YAML or JSON file")
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        # The parser's message quotes the offending line, which may hold a secret; report the position only.
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        raise SpecError("<spec file>", f"invalid YAML/JSON in '{path}' at {where}", "a valid document") from None
    if not isinstance(document, dict):
        raise SpecError("<spec file>", f"{kind_of(document)} in '{path}'", "a mapping at the top level")
    return document


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    result = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(result.get(key), Mapping):
            result[key] = deep_merge(result[key], value)
        else:
            result[key] = value
    return result


def parse_spec(document: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> DeploymentSpec:
    """Validate a spec document already read into Python objects (tests build specs this way)."""
    env = os.environ if environ is None else environ
    doc = _Node(_substitute(document, "", env), "")
    doc.allow_keys(
        "name",
        "type",
        "description",
        "input",
        "output",
        "dead_letter",
        "model",
        "checkpoint_location",
        "state_location",
        "options",
        "spark",
    )
    name = doc.string("name")
    spec_type = doc.string("type")
    if spec_type != "stream":
        raise SpecError(doc.path("type"), repr(spec_type), "'stream' (the only deployment type this job runs)")
    description = doc.optional_string("description") or ""

    input_node = doc.mapping("input")
    input_node.allow_keys("connection", "source")
    source_node = input_node.mapping("source")
    source = Topic(_topic_name(source_node), _connection(input_node.mapping("connection"), env))

    output_node = doc.mapping("output")
    output_node.allow_keys("connection", "target")
    target_node = output_node.mapping("target")
    target = Topic(_topic_name(target_node), _connection(output_node.mapping("connection"), env))

    dead_letter = _dead_letter(doc, target, env)
    if len({source.topic, target.topic, dead_letter.topic}) < 3 and _same_cluster(source, target, dead_letter):
        raise SpecError(
            "output.target.topic",
            f"topics input={source.topic!r}, output={target.topic!r}, dead_letter={dead_letter.topic!r}",
            "three different topics (reading what the job writes would loop forever)",
        )

    model_node = doc.mapping("model")
    model_node.allow_keys("location", "watch")
    model_location = model_node.string("location")
    model_watch = model_node.optional_string("watch")
    checkpoint_location = doc.string("checkpoint_location")
    state_location = doc.optional_string("state_location")

    spark_node = doc.optional_mapping("spark")
    log_level = "WARN"
    prometheus = False
    if spark_node is not None:
        spark_node.allow_keys("log_level", "prometheus")
        log_level = (spark_node.optional_string("log_level") or "WARN").upper()
        levels = ("ALL", "DEBUG", "INFO", "WARN", "ERROR", "FATAL", "OFF", "TRACE")
        if log_level not in levels:
            raise SpecError(spark_node.path("log_level"), repr(log_level), f"one of {', '.join(levels)}")
        prometheus = spark_node.optional_bool("prometheus", False)

    return DeploymentSpec(
        name=name,
        description=description,
        source=source,
        target=target,
        dead_letter=dead_letter,
        model_location=model_location,
        checkpoint_location=checkpoint_location,
        state_location=state_location,
        options=_options(doc.optional_mapping("options")),
        spark_log_level=log_level,
        prometheus=prometheus,
        model_watch=model_watch,
    )


# --------------------------------------------------------------------------- parts


def _topic_name(node: _Node) -> str:
    node.allow_keys("topic", "type")
    topic = node.string("topic")
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,249}", topic):
        raise SpecError(node.path("topic"), repr(topic), "a Kafka topic name (letters, digits, '.', '_', '-')")
    kind = node.optional_string("type") or "kafka"
    if kind != "kafka":
        raise SpecError(node.path("type"), repr(kind), "'kafka'")
    return topic


def _connection(node: _Node, env: Mapping[str, str] | None = None) -> Connection:
    try:
        # credentials_file / credentials_env: the service key's fields join the connection's (job.service_credentials).
        node = _Node(merge_service_credentials(node._data, env), node._path)
    except CredentialsSourceError as exc:
        raise SpecError(node.path(exc.key), exc.found, exc.expected) from None
    node.allow_keys(
        "kafka_brokers_sasl",
        "bootstrap_servers",
        "user",
        "password",
        "api_key",
        "security_protocol",
        "sasl_mechanism",
        "ssl_ca_location",
        "ssl_truststore_location",
        "ssl_truststore_password",
        "credentials_file",
        "credentials_env",
        "service_name",
        *IGNORED_CREDENTIAL_FIELDS,
    )
    if node.has("kafka_brokers_sasl") == node.has("bootstrap_servers"):
        raise SpecError(
            node.path("kafka_brokers_sasl"),
            "both" if node.has("bootstrap_servers") else "neither",
            "exactly one of 'kafka_brokers_sasl' (Message Hub) or 'bootstrap_servers' (a plain broker)",
        )
    key = "kafka_brokers_sasl" if node.has("kafka_brokers_sasl") else "bootstrap_servers"
    servers = node.host_ports(key)

    user = node.optional_string("user")
    password = node.optional_secret("password")
    api_key = node.optional_secret("api_key")
    if password is None and api_key is not None and user is not None:
        # Event Streams service keys carry user 'token' and the API key; the API key is the password.
        password = api_key
    for field, text in (("user", user), ("password", password.reveal() if password else None)):
        if text is not None and ("\n" in text or "\r" in text):
            # Kafka's JAAS parser ends a quoted value at a line break and then quotes the rest into its error.
            raise SpecError(
                node.path(field),
                "a value with a line break",
                f"a {field} on one line (Kafka's JAAS configuration cannot hold a line break)",
            )
    has_credentials = user is not None or password is not None
    if has_credentials and (user is None or password is None):
        missing = "user" if user is None else "password"
        raise SpecError(node.path(missing), "nothing", f"'{missing}' too: SASL needs a user and a password")

    default_protocol = "SASL_SSL" if has_credentials else "PLAINTEXT"
    protocol = (node.optional_string("security_protocol") or default_protocol).upper()
    if protocol not in SECURITY_PROTOCOLS:
        raise SpecError(node.path("security_protocol"), repr(protocol), f"one of {', '.join(SECURITY_PROTOCOLS)}")
    mechanism: str | None = None
    if protocol.startswith("SASL_"):
        if not has_credentials:
            raise SpecError(node.path("user"), "nothing", f"a user and password for {protocol}")
        mechanism = (node.optional_string("sasl_mechanism") or "PLAIN").upper()
        if mechanism not in SASL_MECHANISMS:
            raise SpecError(node.path("sasl_mechanism"), repr(mechanism), f"one of {', '.join(SASL_MECHANISMS)}")
    elif node.has("sasl_mechanism"):
        raise SpecError(node.path("sasl_mechanism"), "a SASL mechanism", f"none with {protocol}")
    # Credentials with a plain protocol are allowed on purpose: the original request pointed at a local
    # broker keeps its Message Hub user/password, and `security_protocol: PLAINTEXT` says not to use them.
    ca = node.optional_string("ssl_ca_location")
    if ca is not None and protocol not in ("SSL", "SASL_SSL"):
        raise SpecError(node.path("ssl_ca_location"), repr(ca), f"no CA with {protocol} (TLS is off)")
    truststore = node.optional_string("ssl_truststore_location")
    truststore_password = node.optional_secret("ssl_truststore_password")
    if truststore is not None and ca is not None:
        raise SpecError(
            node.path("ssl_truststore_location"), repr(truststore), "either it or ssl_ca_location, not both"
        )
    if truststore is not None and protocol not in ("SSL", "SASL_SSL"):
        raise SpecError(node.path("ssl_truststore_location"), repr(truststore), f"no truststore with {protocol}")
    if truststore_password is not None and truststore is None:
        raise SpecError(node.path("ssl_truststore_password"), "a hidden string", "it only with ssl_truststore_location")
    return Connection(
        bootstrap_servers=servers,
        security_protocol=protocol,
        sasl_mechanism=mechanism,
        user=user if protocol.startswith("SASL_") else None,
        password=password if protocol.startswith("SASL_") else None,
        ssl_ca_location=ca,
        ssl_truststore_location=truststore,
        ssl_truststore_password=truststore_password,
    )


def _dead_letter(doc: _Node, target: Topic, env: Mapping[str, str] | None = None) -> Topic:
    node = doc.optional_mapping("dead_letter")
    if node is None:
        # Documented default: beside the output topic, on the output's connection.
        return Topic(f"{target.topic}.dead-letter", target.connection)
    node.allow_keys("topic", "type", "connection")
    # _topic_name allows only topic and type; the dead letter's own connection sits beside them.
    topic = _topic_name(_Node({k: v for k, v in node._data.items() if k != "connection"}, node._path))
    connection_node = node.optional_mapping("connection")
    connection = target.connection if connection_node is None else _connection(connection_node, env)
    return Topic(topic, connection)


def _same_cluster(*topics: Topic) -> bool:
    return len({t.connection.bootstrap_servers for t in topics}) == 1


def _options(node: _Node | None) -> Options:
    if node is None:
        return Options()
    node.allow_keys(
        "trigger",
        "starting_offsets",
        "max_offsets_per_trigger",
        "min_partitions",
        "fail_on_data_loss",
        "max_text_length",
        "max_message_bytes",
        "dead_letter_no_features",
        "kafka",
        "stop_limit",
    )
    starting = node.optional_string("starting_offsets") or "latest"
    if starting not in STARTING_OFFSETS:
        raise SpecError(node.path("starting_offsets"), repr(starting), "'latest' or 'earliest'")
    kafka_node = node.optional_mapping("kafka")
    kafka: dict[str, str] = {}
    if kafka_node is not None:
        for key in kafka_node.keys():  # noqa: SIM118 (a _Node, not a dict)
            if not key.startswith("kafka."):
                raise SpecError(kafka_node.path(key), repr(key), "a Kafka client option starting with 'kafka.'")
            if key.lower() in CONNECTION_OWNED_KAFKA_OPTIONS:
                raise SpecError(kafka_node.path(key), "a setting the connection owns", "it in the connection")
            kafka[key] = kafka_node.scalar_text(key)
    trigger = _trigger(node)
    if trigger.kind == "real_time" and node.has("max_offsets_per_trigger"):
        raise SpecError(
            node.path("max_offsets_per_trigger"),
            "a cap with a real_time trigger",
            "no cap: Spark's real-time mode reads all available offsets",
        )
    stop_limit = node.optional_string("stop_limit")
    if stop_limit is not None and not _INTERVAL.fullmatch(stop_limit.strip()):
        raise SpecError(node.path("stop_limit"), repr(stop_limit), "an interval such as '10 minutes', or no limit")
    max_message_bytes = node.positive_int("max_message_bytes", DEFAULT_MAX_MESSAGE_BYTES)
    if max_message_bytes > MAX_MAX_MESSAGE_BYTES:
        raise SpecError(
            node.path("max_message_bytes"),
            str(max_message_bytes),
            f"at most {MAX_MAX_MESSAGE_BYTES:,} (a scored record must stay under Kafka's default 1 MiB)",
        )
    return Options(
        trigger=trigger,
        starting_offsets=starting,
        max_offsets_per_trigger=node.positive_int("max_offsets_per_trigger", DEFAULT_MAX_OFFSETS_PER_TRIGGER),
        min_partitions=node.optional_int("min_partitions"),
        fail_on_data_loss=node.optional_bool("fail_on_data_loss", True),
        max_text_length=node.positive_int("max_text_length", DEFAULT_MAX_TEXT_LENGTH),
        max_message_bytes=max_message_bytes,
        dead_letter_no_features=node.optional_bool("dead_letter_no_features", True),
        kafka=kafka,
        stop_limit=None if stop_limit is None else stop_limit.strip(),
    )


_INTERVAL = re.compile(r"\d+(\.\d+)?\s*(millisecond|milliseconds|ms|second|seconds|s|minute|minutes|min)")


def _trigger(node: _Node) -> Trigger:
    if not node.has("trigger"):
        return Trigger()
    raw = node.raw("trigger")
    if raw == "available_now":
        return Trigger("available_now", "")
    trigger = node.mapping("trigger")
    keys = trigger.keys()
    kinds = ("processing_time", "real_time", "available_now")
    if len(keys) != 1 or keys[0] not in kinds:
        raise SpecError(node.path("trigger"), f"keys {keys}", f"exactly one of {', '.join(kinds)}")
    kind = keys[0]
    if kind == "available_now":
        if trigger.raw(kind) is not True:
            raise SpecError(trigger.path(kind), repr(trigger.raw(kind)), "true")
        return Trigger("available_now", "")
    interval = trigger.string(kind)
    if not _INTERVAL.fullmatch(interval.strip()):
        raise SpecError(trigger.path(kind), repr(interval), "an interval such as '1 second' or '500 milliseconds'")
    return Trigger(kind, interval.strip())


# --------------------------------------------------------------------------- helpers


def _substitute(value: Any, path: str, env: Mapping[str, str]) -> Any:
    """Replace ${NAME} in every string from the environment; '$$' stands for a literal '$'."""
    if isinstance(value, Mapping):
        return {k: _substitute(v, f"{path}.{k}" if path else str(k), env) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute(v, f"{path}[{i}]", env) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def replace_ref(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        if name not in env:
            raise SpecError(path, f"${{{name}}}, which is not set in the environment", f"environment variable {name}")
        return env[name]

    return _ENV_REF.sub(replace_ref, value)


class _Node:
    """A mapping in the spec with its dotted path, so every error names its field."""

    def __init__(self, data: Any, path: str) -> None:
        self._data = data
        self._path = path

    def path(self, key: str) -> str:
        return f"{self._path}.{key}" if self._path else key

    def keys(self) -> list[str]:
        return [str(k) for k in self._data]

    def has(self, key: str) -> bool:
        return key in self._data and self._data[key] is not None

    def raw(self, key: str) -> Any:
        return self._data.get(key)

    def allow_keys(self, *allowed: str) -> None:
        for key in self._data:
            if key not in allowed:
                raise SpecError(self.path(str(key)), "an unknown key", f"one of {', '.join(sorted(allowed))}")

    def _shown(self, key: str) -> str:
        value = self._data.get(key)
        if key in SECRET_FIELDS:
            return f"a hidden {kind_of(value)}"
        return f"{value!r} ({kind_of(value)})" if value is not None else "nothing"

    def mapping(self, key: str) -> _Node:
        value = self._data.get(key)
        if not isinstance(value, Mapping):
            raise SpecError(self.path(key), self._shown(key), "a mapping")
        return _Node(value, self.path(key))

    def optional_mapping(self, key: str) -> _Node | None:
        return self.mapping(key) if self.has(key) else None

    def string(self, key: str) -> str:
        value = self._data.get(key)
        if not isinstance(value, str) or not value.strip():
            raise SpecError(self.path(key), self._shown(key), "a non-empty string")
        return value

    def optional_string(self, key: str) -> str | None:
        return self.string(key) if self.has(key) else None

    def optional_secret(self, key: str) -> Secret | None:
        return Secret(self.string(key)) if self.has(key) else None

    def scalar_text(self, key: str) -> str:
        value = self._data.get(key)
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, (str, int, float)):
            return str(value)
        raise SpecError(self.path(key), self._shown(key), "a string, number or boolean")

    def optional_int(self, key: str) -> int | None:
        if not self.has(key):
            return None
        value = self._data[key]
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise SpecError(self.path(key), self._shown(key), "a positive integer")
        return value

    def positive_int(self, key: str, default: int) -> int:
        found = self.optional_int(key)
        return default if found is None else found

    def optional_bool(self, key: str, default: bool) -> bool:
        if not self.has(key):
            return default
        value = self._data[key]
        if not isinstance(value, bool):
            raise SpecError(self.path(key), self._shown(key), "true or false")
        return value

    def host_ports(self, key: str) -> tuple[str, ...]:
        value = self._data[key]
        items = [s.strip() for s in value.split(",")] if isinstance(value, str) else value
        if not isinstance(items, list) or not items:
            raise SpecError(self.path(key), self._shown(key), "a non-empty list of host:port")
        for i, item in enumerate(items):
            if not isinstance(item, str) or parse_host_port(item) is None:
                raise SpecError(f"{self.path(key)}[{i}]", f"{item!r} ({kind_of(item)})", "host:port")
        return tuple(item.strip() for item in items)
