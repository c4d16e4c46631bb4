"""The Secret type and the masking of secrets in texts and log records."""

from __future__ import annotations

import logging
import pickle

import pytest

from job.runtime.secrets import ScrubbingFilter, Secret, jaas_quote, scrubber, secret_forms


def test_secret_hides_its_value_and_refuses_to_travel() -> None:
    secret = Secret("hunter2")
    assert (repr(secret), str(secret), f"{secret}") == ("Secret('*****')",) * 3
    assert secret.reveal() == "hunter2"
    with pytest.raises(TypeError, match="cannot be pickled"):
        pickle.dumps(secret)


def test_jaas_quote_escapes_backslashes_before_quotes() -> None:
    assert jaas_quote('a\\"b') == '"a\\\\\\"b"'


def test_secret_forms_are_the_value_its_jaas_escape_and_its_base64() -> None:
    assert secret_forms('p"w\\x') == ['p"w\\x', 'p\\"w\\\\x', "cCJ3XHg="]
    assert secret_forms("") == []


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
