"""Secrets and their masking: the type that hides a password, and the filters that keep it out of every text.

The ground floor of the runtime: it imports nothing of ours, so every other module may use it.
"""

from __future__ import annotations

import base64
import json
import logging
import re
from collections.abc import Callable, Iterable
from typing import Any

REDACTED = "*****"

# A line of a multi-line secret (a PEM private key, a password with a line break) is masked on its own when it is at
# least this long: Kafka's JAAS parser quotes the line after a line break into its error, and a PEM key's lines are
# what a log would show. Shorter lines are not: masking every "abc" or "2026" in every log line would garble unrelated
# text (timestamps, words), and such a fragment alone gives away little of the secret.
MIN_SECRET_LINE = 6

# A Kafka option whose name says it holds a secret: masked wherever options are printed, its value in every text.
SECRET_OPTION_NAME = re.compile(r"password|key|secret|token|credential", re.IGNORECASE)


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


def py4j_escape(text: str) -> str:
    """A string as py4j sends it to the JVM (py4j.protocol.escape_new_line), which its DEBUG log shows.

    Backslashes are doubled first, then carriage returns and line feeds become two-character escapes.
    """
    return text.replace("\\", "\\\\").replace("\r", "\\r").replace("\n", "\\n")


def escaped_forms(text: str) -> list[str]:
    """A text as given, as py4j sends it, and inside a JSON string (ASCII-escaped, as Python writes JSON, or not)."""
    forms = [text, py4j_escape(text), json.dumps(text)[1:-1], json.dumps(text, ensure_ascii=False)[1:-1]]
    return list(dict.fromkeys(forms))


def secret_forms(value: str) -> list[str]:
    """The forms in which a secret value can appear in our output.

    As given and JAAS-escaped, each also py4j-escaped and JSON-escaped; base64; and each line of a multi-line
    value that is at least MIN_SECRET_LINE characters long, in the same forms.
    """
    if not value:
        return []
    lines = value.splitlines()
    bases = [value, jaas_quote(value)[1:-1]]
    if len(lines) > 1:
        for line in lines:
            if len(line) >= MIN_SECRET_LINE:
                bases += [line, jaas_quote(line)[1:-1]]
    forms = [form for base in bases for form in escaped_forms(base)]
    forms.append(base64.b64encode(value.encode()).decode())
    return list(dict.fromkeys(forms))


def is_secret_option(name: str) -> bool:
    """Whether a Kafka option's name says it holds a secret (password, key, secret, token, credential)."""
    return SECRET_OPTION_NAME.search(name) is not None


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
