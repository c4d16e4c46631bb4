"""A reproducible stream of good tweets interleaved with every kind of bad message, with the expected outcome."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass

GOOD_TEXTS = [
    "I love this new phone, best purchase ever!",
    "Worst customer service I have ever had. Never again.",
    "Just landed in Paris, so excited for the week ahead :)",
    "My flight got cancelled and I lost my bag. Awful day.",
    "Thank you all for the birthday wishes, you made my day",
    "This traffic is killing me, an hour late again",
    "Watching the sunset at the beach with friends",
    "I'm so tired and sick of this rain",
    "Great game tonight, what a comeback! 🎉",
    "Can't believe they cancelled my favourite show, so sad",
]

# Limits the tests put in their specs, so that the bad messages stay small on the broker.
MAX_TEXT_LENGTH = 280
MAX_MESSAGE_BYTES = 2048


@dataclass(frozen=True)
class Message:
    key: bytes | None
    value: bytes | None
    error_code: str | None  # None: must be scored
    id: int | None = None


def _bad(kind: str, n: int) -> Message:
    key = f"bad-{n}".encode()
    values: dict[str, tuple[bytes | None, str]] = {
        "not_json": (b"{this is not json", "NOT_JSON"),
        "not_object": (json.dumps([n, "text"]).encode(), "NOT_AN_OBJECT"),
        "missing_id": (json.dumps({"text": "no id here"}).encode(), "MISSING_FIELD"),
        "missing_text": (json.dumps({"id": n}).encode(), "MISSING_FIELD"),
        "null_id": (json.dumps({"id": None, "text": "null id"}).encode(), "NULL_FIELD"),
        "null_text": (json.dumps({"id": n, "text": None}).encode(), "NULL_FIELD"),
        "wrong_type_id": (json.dumps({"id": str(n), "text": "id as string"}).encode(), "WRONG_TYPE"),
        "wrong_type_text": (json.dumps({"id": n, "text": 12345}).encode(), "WRONG_TYPE"),
        "too_long": (json.dumps({"id": n, "text": "a" * (MAX_TEXT_LENGTH + 1)}).encode(), "TEXT_TOO_LONG"),
        "invalid_utf8": (b'{"id": 1, "text": "\xc3\x28 broken"}', "INVALID_UTF8"),
        "tombstone": (None, "TOMBSTONE"),
        "oversized": (json.dumps({"id": n, "text": "b" * MAX_MESSAGE_BYTES}).encode(), "OVERSIZED"),
        "empty_text": (json.dumps({"id": n, "text": "  "}).encode(), "EMPTY_TEXT"),
    }
    value, code = values[kind]
    return Message(key, value, code)


BAD_KINDS = (
    "not_json",
    "not_object",
    "missing_id",
    "missing_text",
    "null_id",
    "null_text",
    "wrong_type_id",
    "wrong_type_text",
    "too_long",
    "invalid_utf8",
    "tombstone",
    "oversized",
    "empty_text",
)


def mixed_stream(total: int, bad_every: int = 10, first_id: int = 0, seed: int = 7) -> list[Message]:
    """`total` messages; every `bad_every`-th is bad, cycling through every kind. Good ids are unique."""
    rng = random.Random(seed)
    messages: list[Message] = []
    next_id = first_id
    for n in range(total):
        if n % bad_every == bad_every - 1:
            messages.append(_bad(BAD_KINDS[(n // bad_every) % len(BAD_KINDS)], n))
        else:
            text = f"{rng.choice(GOOD_TEXTS)} #{next_id}"
            value = json.dumps({"id": next_id, "text": text}).encode()
            messages.append(Message(str(next_id).encode(), value, None, next_id))
            next_id += 1
    return messages
