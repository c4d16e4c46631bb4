"""A strict reference for the parse step, in plain Python: what code each Kafka value must get.

It is written from the README's definitions, not from the job's code: Python's `json` (with duplicate-key,
non-finite-number and trailing-content checks) decides what is valid JSON, and the few definitions that
are the job's own (JSON whitespace, the nesting depth, the parser's limits, Unicode whitespace) are
spelled out here on their own.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from typing import Any

MAX_DEPTH = 1000
MAX_NUMBER_DIGITS = 1000
MAX_KEY_CHARS = 50_000
INT_MIN, INT_MAX = -(2**31), 2**31 - 1

# The Unicode White_Space property (Unicode 15, PropList.txt), and NUL: EMPTY_TEXT's "whitespace".
# Not str.isspace(), which also counts U+001C..U+001F (information separators) as space.
WHITE_SPACE = frozenset(
    "\t\n\x0b\x0c\r \x85\xa0\u1680" + "".join(chr(c) for c in range(0x2000, 0x200B)) + "\u2028\u2029\u202f\u205f\u3000"
)
EMPTY_TEXT_CHARACTERS = WHITE_SPACE | {"\x00"}

# The README's skeleton: JSON strings and everything but brackets and quotes removed, from the left.
_STRING = r'"[^"\\\x00-\x1f]*+(?:\\.[^"\\\x00-\x1f]*+)*+"'
_NOT_SKELETON = re.compile(r"(?s)" + _STRING + r"""|[^\[\]{}"']++""")


def nesting_depth(text: str) -> int:
    level = depth = 0
    for char in _NOT_SKELETON.sub("", text):
        if char in "{[":
            level += 1
            depth = max(depth, level)
        elif char in "}]":
            level -= 1
    return depth


class _RejectedError(ValueError):
    """Valid for Python's json, invalid for the job: NaN/Infinity, or over one of the parser's limits."""


@dataclass(frozen=True)
class Parsed:
    value: Any
    duplicate_key: bool


def strict_loads(text: str) -> Parsed:
    """json.loads that refuses what RFC 8259 and the parser's limits refuse; raises ValueError."""
    duplicate = False

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal duplicate
        keys = [key for key, _ in items]
        if any(len(key) > MAX_KEY_CHARS for key in keys):
            raise _RejectedError("key too long")
        duplicate = duplicate or len(set(keys)) != len(keys)
        return dict(items)

    def constant(name: str) -> Any:
        raise _RejectedError(f"{name} is not JSON")

    def digits(literal: str) -> int:
        # Jackson counts the digits of the whole literal: integer part, fraction and exponent.
        return sum(ch.isdigit() for ch in literal)

    def parse_int(literal: str) -> int:
        if digits(literal) > MAX_NUMBER_DIGITS:
            raise _RejectedError("number too long")
        return int(literal)

    def parse_float(literal: str) -> float:
        if digits(literal) > MAX_NUMBER_DIGITS:
            raise _RejectedError("number too long")
        return float(literal)

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10 * MAX_DEPTH))  # json's decoder recurses once per level
    try:
        value = json.loads(
            text, object_pairs_hook=pairs, parse_constant=constant, parse_int=parse_int, parse_float=parse_float
        )
    finally:
        sys.setrecursionlimit(limit)
    return Parsed(value, duplicate)


def _has_surrogate(value: Any) -> bool:
    # json decodes a valid pair of escapes to one code point; a lone half stays a surrogate code point.
    pending = [value]  # a stack, not recursion: values may nest 1000 deep
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if any(0xD800 <= ord(ch) <= 0xDFFF for ch in item):
                return True
        elif isinstance(item, dict):
            pending += [*item.keys(), *item.values()]
        elif isinstance(item, list):
            pending += item
    return False


@dataclass(frozen=True)
class Expected:
    code: str | None
    id: int | None = None
    text: str | None = None


def expected(value: bytes | None, max_text_length: int, max_message_bytes: int) -> Expected:
    """The outcome the README promises for one Kafka value (the first failing check wins)."""
    if value is None:
        return Expected("TOMBSTONE")
    if len(value) > max_message_bytes:
        return Expected("OVERSIZED")
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        return Expected("INVALID_UTF8")
    if text.startswith("\ufeff"):
        return Expected("BYTE_ORDER_MARK")
    if nesting_depth(text) > MAX_DEPTH:
        return Expected("TOO_DEEP")
    try:
        parsed = strict_loads(text)
    except (ValueError, RecursionError):
        return Expected("NOT_JSON")
    if _has_surrogate(parsed.value):
        return Expected("LONE_SURROGATE")
    if parsed.duplicate_key:
        return Expected("DUPLICATE_KEY")
    doc = parsed.value
    if not isinstance(doc, dict):
        return Expected("NOT_AN_OBJECT")
    for name in ("id", "text"):
        if name not in doc:
            return Expected("MISSING_FIELD")
        if doc[name] is None:
            return Expected("NULL_FIELD")
        field = doc[name]
        if name == "id" and not (
            isinstance(field, int) and not isinstance(field, bool) and INT_MIN <= field <= INT_MAX
        ):
            return Expected("WRONG_TYPE")
        if name == "text" and not isinstance(field, str):
            return Expected("WRONG_TYPE")
    if len(doc["text"]) > max_text_length:
        return Expected("TEXT_TOO_LONG")
    if all(ch in EMPTY_TEXT_CHARACTERS for ch in doc["text"]):
        return Expected("EMPTY_TEXT")
    return Expected(None, doc["id"], doc["text"])
