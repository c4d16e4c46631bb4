"""Secrets and their masking: the type that hides a password, and the filters that keep it out of every text.

The ground floor of the runtime: it imports nothing of ours, so every other module may use it.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable, Iterable
from typing import Any

REDACTED = "*****"


class Secret:
    """A password or API key. Its repr and str never show the value; only `reveal()` does."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret('{REDACTED}')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> Any:
        # Pickling would carry the value to wherever the object goes (a Spark closure, a log handler);
        # refuse it so a secret can only travel as an explicit Kafka option.
        raise TypeError("a Secret cannot be pickled")


def jaas_quote(text: str) -> str:
    """A JAAS option value: in double quotes, with backslashes and double quotes escaped.

    The one escaper for the job's SASL line, the local broker's user list and the masking of both.
    """
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def secret_forms(value: str) -> list[str]:
    """The forms in which a secret value can appear in our output: as given, JAAS-escaped and base64."""
    if not value:
        return []
    return [value, jaas_quote(value)[1:-1], base64.b64encode(value.encode()).decode()]


def scrubber(secrets: Iterable[str]) -> Callable[[str], str]:
    """A function that masks every one of these texts (and nothing else) wherever it occurs."""
    # Longest first, so a JAAS line is replaced whole rather than around its password.
    ordered = sorted({s for s in secrets if s}, key=len, reverse=True)

    def scrub(text: str) -> str:
        for secret in ordered:
            text = text.replace(secret, REDACTED)
        return text

    return scrub


class ScrubbingFilter(logging.Filter):
    """A logging filter that masks secrets in every record passing through a handler."""

    def __init__(self, scrub: Callable[[str], str]) -> None:
        super().__init__()
        self._scrub = scrub

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = self._scrub(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and record.exc_info[1] is not None:
            text = logging.Formatter().formatException(record.exc_info)
            record.exc_info, record.exc_text = None, self._scrub(text)
        return True
