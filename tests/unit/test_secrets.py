"""The Secret type and the masking of secrets in texts and log records."""

from __future__ import annotations

import base64
import json
import logging
import pickle

import pytest
from hypothesis import given
from hypothesis import strategies as st
from py4j.protocol import escape_new_line, get_command_part

from job.runtime.secrets import (
    REDACTED,
    ScrubbingFilter,
    Secret,
    is_secret_option,
    jaas_quote,
    py4j_escape,
    scrubber,
    secret_forms,
)

# Any text but the mask's own character, which a scrubbed text is full of.
SECRET_TEXT = st.text(st.characters(exclude_characters="*", exclude_categories=["Cs"]), min_size=1, max_size=40)


def test_secret_hides_its_value_and_refuses_to_travel() -> None:
    secret = Secret("hunter2")
    assert (repr(secret), str(secret), f"{secret}") == ("Secret('*****')",) * 3
    assert secret.reveal() == "hunter2"
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(secret)


def test_jaas_quote_escapes_backslashes_before_quotes() -> None:
    assert jaas_quote('a\\"b') == '"a\\\\\\"b"'


def test_secret_forms_are_the_value_and_its_jaas_py4j_json_and_base64_forms() -> None:
    assert secret_forms("é'x") == ["é'x", "\\u00e9'x", "w6kneA=="]  # a JSON string may carry it \\u-escaped
    assert secret_forms('p"w\\x') == [
        'p"w\\x',
        'p"w\\\\x',  # py4j doubles the backslash
        'p\\"w\\\\x',  # JAAS-escaped; JSON escapes it the same way
        'p\\\\"w\\\\\\\\x',  # JAAS-escaped as py4j sends it inside the JAAS line
        'p\\\\\\"w\\\\\\\\x',  # JAAS-escaped inside a JSON string
        "cCJ3XHg=",
    ]
    assert secret_forms("") == []


def test_each_long_enough_line_of_a_multi_line_secret_is_masked_on_its_own() -> None:
    forms = secret_forms("Ab\\cdE\nGhSECRETPART-tail\r\nxyz")
    assert {"GhSECRETPART-tail", "Ab\\cdE", "Ab\\\\cdE"} <= set(forms)  # as given, and JAAS- or py4j-escaped
    assert "xyz" not in forms  # shorter than MIN_SECRET_LINE: masking every "xyz" would garble unrelated text
    # Kafka's JAAS parser quotes the line after a line break into its error; that error is masked.
    scrub = scrubber(forms)
    error = "IllegalArgumentException: Value not specified for key 'GhSECRETPART-tail' in JAAS config"
    assert scrub(error) == "IllegalArgumentException: Value not specified for key '*****' in JAAS config"


def test_py4j_escape_mirrors_py4j_itself() -> None:
    for text in ["a\\b", "a\nb\rc", "\\n", "plain", 'q"uote']:
        assert py4j_escape(text) == escape_new_line(text)


@given(SECRET_TEXT)
def test_py4j_escape_mirrors_py4j_for_any_text(text: str) -> None:
    assert py4j_escape(text) == escape_new_line(text)


@given(SECRET_TEXT)
def test_no_rendering_of_a_secret_survives_the_scrubber(secret: str) -> None:
    scrub = scrubber(secret_forms(secret))
    jaas = jaas_quote(secret)[1:-1]
    renderings = {
        "as given": secret,
        "JAAS-escaped": jaas,
        "py4j-escaped": escape_new_line(secret),
        "JAAS-escaped, then py4j-escaped (py4j's DEBUG log of the JAAS line)": escape_new_line(jaas),
        "in JSON": json.dumps(secret)[1:-1],
        "in JSON, not ASCII-escaped": json.dumps(secret, ensure_ascii=False)[1:-1],
        "JAAS-escaped in JSON": json.dumps(jaas)[1:-1],
        "base64": base64.b64encode(secret.encode()).decode(),
    }
    for name, rendering in renderings.items():
        scrubbed = scrub(f"[{rendering}]")
        assert REDACTED in scrubbed and rendering not in scrubbed, name
    # py4j's own command part, as its DEBUG log shows it.
    command = scrub(get_command_part(jaas_quote(secret)))
    assert REDACTED in command and escape_new_line(jaas) not in command


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("kafka.ssl.key.password", True),
        ("kafka.ssl.keystore.key", True),
        ("kafka.SSL.KEYSTORE.CERTIFICATE.CHAIN", True),  # a keystore holds a key
        ("kafka.sasl.client.callback.handler.class", False),
        ("kafka.Some.Secret.Thing", True),
        ("kafka.oauth.Token.endpoint", True),
        ("kafka.credentials.provider", True),
        ("kafka.client.id", False),
        ("kafka.request.timeout.ms", False),
    ],
)
def test_secret_option_names_are_recognised_in_any_case(name: str, secret: bool) -> None:
    assert is_secret_option(name) is secret


def test_scrubber_masks_longer_secrets_first_and_leaves_other_text() -> None:
    scrub = scrubber(["pw", "user:pw", ""])
    assert scrub("login user:pw then pw, not p w") == "login ***** then *****, not p w"


def test_scrubbing_filter_masks_message_arguments_and_tracebacks() -> None:
    record = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed with %s", ("pw",), None)
    try:
        raise RuntimeError("boom pw")
    except RuntimeError:
        import sys

        record.exc_info = sys.exc_info()
    assert ScrubbingFilter(scrubber(["pw"])).filter(record)
    assert record.getMessage() == "failed with *****"
    assert record.exc_info is None
    assert "RuntimeError: boom *****" in (record.exc_text or "")
    assert "pw" not in (record.exc_text or "")
