"""Kafka credentials from where IBM Cloud users keep them: a service key file or a VCAP_SERVICES document.

A connection in the spec may say

    credentials_file: /etc/secrets/event-streams.json   # or credentials_env: VCAP_SERVICES
    service_name: tweets-kafka                          # which instance, when the document holds several

The JSON may be any of the shapes IBM Cloud hands out:

- a service key, as the console's "View credentials" or `ibmcloud resource service-key` shows it:
  `{"kafka_brokers_sasl": [...], "user": "token", "password": "...", "api_key": "...", ...}`;
- one service-key or service-binding object, `{"name": "...", "credentials": {...}}`, or a list of them
  (`ibmcloud resource service-keys --output json`);
- a Cloud Foundry `VCAP_SERVICES` document, `{"messagehub": [{"name": "...", "credentials": {...}}], ...}`.

Only `kafka_brokers_sasl` (or `bootstrap_endpoints`), `user`, `password` and `api_key` (or `apikey`) are
used; IBM's other fields (admin and REST URLs, instance and IAM ids, ...) are ignored. The fields are merged
into the connection. A field given both in the spec and in the document must be the same in both, otherwise
the spec is refused: two sources that disagree about a password are a mistake, never something to settle
silently. An overlay spec can drop an inline field with `field: null`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from job.runtime.secrets import Secret
from job.runtime.values import kind_of, parse_host_port

SOURCE_KEYS = ("credentials_file", "credentials_env", "service_name")
# Event Streams: SASL PLAIN with the literal user name "token" and an API key as the password.
EVENT_STREAMS_USER = "token"

_KAFKA_MARKERS = ("kafka_brokers_sasl", "bootstrap_endpoints")
_CREDENTIAL_MARKERS = (*_KAFKA_MARKERS, "user", "password", "api_key", "apikey")


class CredentialsSourceError(ValueError):
    """A credentials file or variable that cannot be used; `key` is the connection field to blame."""

    def __init__(self, key: str, found: str, expected: str) -> None:
        self.key = key
        self.found = found
        self.expected = expected
        super().__init__(f"{key}: found {found}, expected {expected}")


@dataclass(frozen=True)
class ServiceCredentials:
    """The Kafka part of one service's credentials. `source` says where they came from, for messages."""

    source: str
    brokers: tuple[str, ...] | None
    user: str | None
    password: Secret | None
    api_key: Secret | None

    def connection_fields(self) -> dict[str, Any]:
        """The fields in the spec's connection vocabulary (secrets revealed: they go back into the spec)."""
        fields: dict[str, Any] = {
            "kafka_brokers_sasl": list(self.brokers) if self.brokers else None,
            "user": self.user,
            "password": self.password.reveal() if self.password else None,
            "api_key": self.api_key.reveal() if self.api_key else None,
        }
        return {key: value for key, value in fields.items() if value is not None}


def merge_service_credentials(
    connection: Mapping[str, Any], environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The connection with the credentials of its `credentials_file` / `credentials_env` merged in.

    A connection without either comes back as it is. The source keys are removed, so the result is an
    ordinary connection mapping.
    """
    env = os.environ if environ is None else environ
    given: dict[str, Any] = {key: connection[key] for key in SOURCE_KEYS if connection.get(key) is not None}
    if not given:
        return dict(connection)
    for key, value in given.items():
        if not isinstance(value, str) or not value.strip():
            raise CredentialsSourceError(key, _shown(value), "a non-empty string")
    if "credentials_file" in given and "credentials_env" in given:
        raise CredentialsSourceError("credentials_env", "both credentials_file and credentials_env", "one of them")
    if "credentials_file" not in given and "credentials_env" not in given:
        raise CredentialsSourceError(
            "service_name", repr(given["service_name"]), "it beside credentials_file or credentials_env"
        )
    if "credentials_file" in given:
        document, where, key = (
            _read_file(str(given["credentials_file"])),
            f"file '{given['credentials_file']}'",
            "credentials_file",
        )
    else:
        document, where, key = (
            _read_env(str(given["credentials_env"]), env),
            f"environment variable {given['credentials_env']}",
            "credentials_env",
        )
    credentials = select_service(document, where, key, given.get("service_name"))

    merged = {k: v for k, v in connection.items() if k not in SOURCE_KEYS}
    for field, value in credentials.connection_fields().items():
        spec_key = field
        if field == "kafka_brokers_sasl" and merged.get("bootstrap_servers") is not None:
            spec_key = "bootstrap_servers"
        mine = merged.get(spec_key)
        if mine is None:
            merged[spec_key] = value
        elif _normalised(spec_key, mine) != _normalised(spec_key, value):
            shown = "a value" if field in ("password", "api_key") else repr(mine)
            raise CredentialsSourceError(
                spec_key,
                f"{shown} here and a different one in {credentials.source}",
                "each credential in one place only (remove it here, or set it to null in an overlay spec)",
            )
    if merged.get("user") is None and merged.get("password") is None and merged.get("api_key") is not None:
        merged["user"] = EVENT_STREAMS_USER
    return merged


def select_service(document: Any, where: str, key: str, service_name: str | None = None) -> ServiceCredentials:
    """Find the one service's credentials in a parsed service key, service-key list or VCAP_SERVICES."""
    if isinstance(document, Mapping) and any(marker in document for marker in _CREDENTIAL_MARKERS):
        if service_name is not None:
            raise CredentialsSourceError(
                "service_name",
                f"{service_name!r}, but {where} is a single service key, not a list of services",
                "no service_name with a service key",
            )
        return _credentials(document, where, key)
    instances = _instances(document, where, key)
    if service_name is not None:
        chosen = [(name, creds) for name, creds in instances if name == service_name]
        if not chosen:
            names = ", ".join(repr(name) for name, _ in instances) or "none"
            raise CredentialsSourceError(
                "service_name", f"{service_name!r}, which is not in {where}", f"one of {names}"
            )
        if len(chosen) > 1:
            raise CredentialsSourceError(
                "service_name", f"{len(chosen)} services named {service_name!r} in {where}", "a unique service name"
            )
    else:
        chosen = [(name, creds) for name, creds in instances if any(m in creds for m in _KAFKA_MARKERS)]
        if len(chosen) != 1:
            names = ", ".join(repr(name) for name, _ in chosen)
            found = f"{len(chosen)} Kafka services in {where}" + (f" ({names})" if names else "")
            raise CredentialsSourceError(
                "service_name" if chosen else key,
                found,
                "service_name naming one of them" if chosen else "a Message Hub / Event Streams service",
            )
    name, creds = chosen[0]
    return _credentials(creds, f"service {name!r} of {where}", key)


# --------------------------------------------------------------------------- reading


def _read_file(path_text: str) -> Any:
    path = Path(path_text)
    if not path.is_file():
        raise CredentialsSourceError("credentials_file", f"'{path}', which does not exist", "a readable JSON file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8"
        raise CredentialsSourceError(
            "credentials_file", f"'{path}', which cannot be read ({reason})", "a readable JSON file"
        ) from None
    return _parse(text, f"'{path}'", "credentials_file")


def _read_env(name: str, env: Mapping[str, str]) -> Any:
    if name not in env:
        raise CredentialsSourceError(
            "credentials_env",
            f"{name}, which is not set in the environment",
            "an environment variable holding JSON credentials",
        )
    return _parse(env[name], f"environment variable {name}", "credentials_env")


def _parse(text: str, where: str, key: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        # The position only: the decoder's own message could quote the document, which holds secrets.
        raise CredentialsSourceError(
            key,
            f"invalid JSON in {where} at line {exc.lineno}, column {exc.colno}",
            "a service key or VCAP_SERVICES JSON",
        ) from None


def _instances(document: Any, where: str, key: str) -> list[tuple[str, Mapping[str, Any]]]:
    """(name, credentials) of every service in a binding object, a list of them or a VCAP_SERVICES document."""
    if isinstance(document, Mapping) and "credentials" in document:
        entries: list[Any] = [document]
    elif isinstance(document, list):
        entries = document
    elif isinstance(document, Mapping) and document and all(isinstance(v, list) for v in document.values()):
        entries = [entry for services in document.values() for entry in services]
    else:
        raise CredentialsSourceError(
            key,
            f"a JSON {kind_of(document)} in {where} that is neither a service key nor a list of services",
            'a service key ({"kafka_brokers_sasl": [...], "user": ..., ...}) or VCAP_SERVICES '
            '({"messagehub": [{"name": ..., "credentials": {...}}]})',
        )
    instances = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, Mapping) or not isinstance(entry.get("credentials"), Mapping):
            raise CredentialsSourceError(
                key, f"service #{i} in {where} without a 'credentials' object", "one per service"
            )
        instances.append((str(entry.get("name", f"#{i}")), entry["credentials"]))
    return instances


def _credentials(creds: Mapping[str, Any], where: str, key: str) -> ServiceCredentials:
    brokers_field = "kafka_brokers_sasl" if creds.get("kafka_brokers_sasl") is not None else "bootstrap_endpoints"
    brokers = _brokers(creds.get(brokers_field), brokers_field, where, key)
    user = _text(creds, "user", where, key)
    password = _text(creds, "password", where, key)
    api_key_field = "api_key" if creds.get("api_key") is not None else "apikey"
    api_key = _text(creds, api_key_field, where, key)
    if brokers is None and user is None and password is None and api_key is None:
        raise CredentialsSourceError(
            key, f"no Kafka credentials in {where}", "kafka_brokers_sasl, user, password or api_key in it"
        )
    return ServiceCredentials(
        source=where,
        brokers=brokers,
        user=user,
        password=Secret(password) if password is not None else None,
        api_key=Secret(api_key) if api_key is not None else None,
    )


def _brokers(value: Any, field: str, where: str, key: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    items = [s.strip() for s in value.split(",")] if isinstance(value, str) else value
    if not isinstance(items, list) or not items:
        raise CredentialsSourceError(key, f"'{field}' in {where} is {_shown(value)}", "a non-empty list of host:port")
    for i, item in enumerate(items):
        if not isinstance(item, str) or parse_host_port(item) is None:
            raise CredentialsSourceError(key, f"'{field}[{i}]' in {where} is {_shown(item)}", "host:port")
    return tuple(item.strip() for item in items)


def _text(creds: Mapping[str, Any], field: str, where: str, key: str) -> str | None:
    value = creds.get(field)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        # Never the value of a secret field; a user name may be part of a Message Hub API key, so not that either.
        raise CredentialsSourceError(key, f"'{field}' in {where} is a hidden {kind_of(value)}", "a non-empty string")
    return value


def _normalised(spec_key: str, value: Any) -> Any:
    if spec_key in ("kafka_brokers_sasl", "bootstrap_servers"):
        items = value.split(",") if isinstance(value, str) else value
        return tuple(str(item).strip() for item in items) if isinstance(items, list | tuple) else value
    return value


def _shown(value: Any) -> str:
    return f"{value!r} ({kind_of(value)})" if not isinstance(value, Mapping | list) else f"a JSON {kind_of(value)}"
