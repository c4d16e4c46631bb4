"""Property: whatever the bytes, the parse step gives exactly one row per message, with the reference's code.

The reference (tests/json_reference.py) is Python's `json` held to RFC 8259 (no NaN, no duplicate keys, no
content after the value) plus the README's own definitions. Hypothesis feeds it arbitrary bytes, arbitrary
JSON documents, tweet-shaped objects and near misses of them (a character deleted, inserted or replaced,
something before or after the object); each example is one small static DataFrame.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyspark.sql import SparkSession

from job.runtime import scoring
from job.runtime.scoring import InputField
from tests.json_reference import WHITE_SPACE, expected

FIELDS = [InputField("id", "integer"), InputField("text", "string")]
KAFKA_SCHEMA = "key binary, value binary, topic string, partition int, offset long, timestamp timestamp"
MAX_TEXT_LENGTH = 40
MAX_MESSAGE_BYTES = 400

# Characters that matter to a JSON parser or to EMPTY_TEXT, besides whatever Hypothesis picks.
SPECIAL = [*"\"\\{}[],:'/", "\x00", "\x01", "\x1c", "\x1f", "\x7f", "\ufeff", "\u200b", *sorted(WHITE_SPACE), "😀"]
characters = st.one_of(
    st.characters(),
    st.sampled_from(SPECIAL),
    st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF),  # lone halves, escaped by json.dumps
)
texts = st.one_of(
    st.text(characters, max_size=12),
    st.text(st.sampled_from([*sorted(WHITE_SPACE), "\x00"]), max_size=4),  # EMPTY_TEXT, or not quite
    st.sampled_from(["i love it", "", "x" * MAX_TEXT_LENGTH, "x" * (MAX_TEXT_LENGTH + 1), "\x1c\x1d", "😀" * 3]),
)
ids = st.one_of(
    st.integers(-(2**31), 2**31 - 1),
    st.sampled_from([2**31, -(2**31) - 1, 2**63, 0, -0.0, 1.0, 1.5, True, None, "7", [1], {"a": 1}]),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
)
leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(characters, max_size=6),
)
json_values: st.SearchStrategy[Any] = st.recursive(
    leaves,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(characters, max_size=4), children, max_size=3)
    ),
    max_leaves=8,
)
tweets = st.fixed_dictionaries({}, optional={"id": ids, "text": texts, "lang": json_values, "nested": json_values})


@st.composite
def rendered(draw: st.DrawFn, doc: Any) -> str:
    """A document as some producer might write it: spacing, escaping and key order vary."""
    if isinstance(doc, dict) and draw(st.booleans()):
        # By hand, so a key may come twice (json.dumps cannot write a duplicate).
        pairs: list[tuple[Any, Any]] = list(doc.items())
        repeat_a_key: bool = draw(st.booleans())
        if pairs and repeat_a_key:
            pairs.append((draw(st.sampled_from([k for k, _ in pairs])), draw(json_values)))
        pairs = draw(st.permutations(pairs))
        ascii_only = draw(st.booleans())
        return "{" + ",".join(f"{json.dumps(k, ensure_ascii=ascii_only)}:{json.dumps(v)}" for k, v in pairs) + "}"
    return json.dumps(
        doc,
        ensure_ascii=draw(st.booleans()),
        indent=draw(st.sampled_from([None, 0, 2, "\t"])),
        separators=draw(st.sampled_from([None, (",", ":"), (", ", ": ")])),
    )


def encoded(text: str) -> bytes:
    # Unescaped lone surrogates (ensure_ascii=False) become bytes that are not UTF-8: INVALID_UTF8.
    return text.encode("utf-8", "surrogatepass")


JUNK = [
    " xyz",
    "]",
    "]]]",
    "}",
    ",",
    "{}",
    '{"id":2,"text":"b"}',
    "\n",
    " ",
    "\x0c",
    "\u00a0",
    "//c",
    '"',
    "'",
    "0",
    " 1",
]
LEADING = ["", " ", "\t", "\n", "\r\n", "\x0c", "\x0b", "\u00a0", "\ufeff", "\ufeff ", " \ufeff", "x", "[", "\x00"]


@st.composite
def near_misses(draw: st.DrawFn) -> bytes:
    text = draw(tweets.flatmap(rendered))
    kind = draw(st.sampled_from(["before", "after", "delete", "insert", "replace", "both"]))
    at = draw(st.integers(0, max(0, len(text) - 1)))
    if kind == "before":
        text = draw(st.sampled_from(LEADING)) + text
    elif kind == "after":
        text += draw(st.sampled_from(JUNK) | st.text(characters, max_size=3))
    elif kind == "delete":
        text = text[:at] + text[at + 1 :]
    elif kind == "insert":
        text = text[:at] + draw(characters) + text[at:]
    elif kind == "replace":
        text = text[:at] + draw(characters) + text[at + 1 :]
    else:
        text = draw(st.sampled_from(LEADING)) + text + draw(st.sampled_from(["", " ", "\r\n", "\t \n"]))
    return encoded(text)


messages = st.one_of(
    st.none(),
    st.binary(max_size=60),
    st.binary(max_size=20).map(lambda b: b'{"id":1,"text":"' + b + b'"}'),
    json_values.flatmap(rendered).map(encoded),
    tweets.flatmap(rendered).map(encoded),
    near_misses(),
    st.integers(0, 2000).map(lambda n: b"[" * n + b"]" * n),  # around the depth limit
    st.integers(990, 1010).map(lambda n: b'{"id":1,"text":"x","a":' + b"[" * n + b"]" * n + b"}"),
)


@settings(max_examples=25, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(st.lists(messages, min_size=1, max_size=60))
def test_one_row_per_message_with_the_reference_code(spark: SparkSession, values: list[bytes | None]) -> None:
    rows = [(b"k", value, "tweets", 0, offset, None) for offset, value in enumerate(values)]
    parsed = (
        spark.createDataFrame(rows, KAFKA_SCHEMA)
        .transform(scoring.parse_messages(FIELDS, MAX_TEXT_LENGTH, MAX_MESSAGE_BYTES))
        .select("offset", "id", "text", scoring.ERROR_CODE, scoring.ERROR_REASON)
        .collect()
    )
    assert sorted(r.offset for r in parsed) == list(range(len(values)))
    for row in parsed:
        value = values[row.offset]
        want = expected(value, MAX_TEXT_LENGTH, MAX_MESSAGE_BYTES)
        got = (row[scoring.ERROR_CODE], row.id, row.text)
        assert got == (want.code, want.id, want.text), f"value {value!r}: reason {row[scoring.ERROR_REASON]!r}"
        assert (row[scoring.ERROR_REASON] is None) == (want.code is None)
