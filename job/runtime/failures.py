"""Why something failed, in one line: from Spark's and Kafka's exceptions (through py4j), without plans or traces.

A streaming query's exception carries Spark's description of the query, its logical plan and a JVM stack trace;
the status document and stderr get one line from the deepest cause instead, and the full text (secrets masked)
goes to a file the line points at.
"""

from __future__ import annotations

import re
import traceback
from dataclasses import dataclass

MAX_REASON = 500

# Spark's Kafka source converts every record's timestamp while reading (KafkaRecordToRowConverter), and a
# timestamp outside what a microsecond TimestampType holds fails the query: KAFKA_MALFORMED_RECORD_TIMESTAMP.
_UNREADABLE_TIMESTAMP = re.compile(
    r"Record at topic (?P<topic>\S+) partition (?P<partition>\d+) offset (?P<offset>\d+) "
    r"has timestamp value (?P<timestamp>-?\d+) that overflows"
)


@dataclass(frozen=True)
class UnreadableRecord:
    """A record Spark's Kafka source cannot read: the query fails on it, on every restart."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int


def unreadable_record(error: str) -> UnreadableRecord | None:
    """The record named by a query failure of Spark's Kafka source on a timestamp, if that is the failure."""
    found = _UNREADABLE_TIMESTAMP.search(error)
    if found is None:
        return None
    return UnreadableRecord(found["topic"], int(found["partition"]), int(found["offset"]), int(found["timestamp"]))


def skip_advice(record: UnreadableRecord) -> str:
    """The status reason for a query that failed on a record it cannot read: which one, and what to do."""
    return (
        f"Spark's Kafka source cannot read offset {record.offset} of partition {record.partition} of topic "
        f"{record.topic}: its timestamp {record.timestamp_ms} ms overflows Spark's timestamps, and the query fails "
        "on it at every start; to dead-letter it and move past it: ./spark-submit.sh skip --spec <the spec> "
        f"--partition {record.partition} --offset {record.offset}, then start the deployment again"
    )


def java_chain(exc: BaseException) -> list[tuple[str, str]]:
    """(Java class name, message) from the outermost exception to its root cause; the Python exception's own
    type and first line when it does not come from the JVM."""
    java = getattr(exc, "java_exception", None) or getattr(exc, "_origin", None)
    if java is None:
        return [(type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")]
    chain: list[tuple[str, str]] = []
    seen = 0
    try:
        while java is not None and seen < 20:
            chain.append((str(java.getClass().getName()), str(java.getMessage() or "")))
            java, seen = java.getCause(), seen + 1
    except Exception:  # the JVM is gone: what was read so far, or the Python side's own words
        if not chain:
            return [(type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")]
    return chain


def meaningful_line(message: str) -> str:
    """The line of a message that says what went wrong: the first, or for a Python traceback its last."""
    lines = [line.rstrip() for line in message.splitlines() if line.strip()]
    if not lines:
        return ""
    if "Traceback (most recent call last)" in lines[0]:
        body = [line for line in lines[1:] if not line.startswith((" ", "\t")) and not line.startswith("SQLSTATE")]
        if body:
            return body[-1].strip()
    return lines[0].strip()


def deepest_cause(exc: BaseException) -> str:
    """`Class: message` of the deepest cause that says something, one line."""
    chain = java_chain(exc)
    name, message = next(((n, m) for n, m in reversed(chain) if m.strip()), chain[-1])
    line = meaningful_line(message) or "no detail"
    return f"{name.rsplit('.', 1)[-1]}: {line}"


def short_reason(exc: BaseException) -> str:
    """One line for the status document and stderr: the deepest cause, at most MAX_REASON characters; for a
    record Spark's Kafka source cannot read, which record and the command that moves past it."""
    record = unreadable_record("\n".join([str(exc), *(message for _, message in java_chain(exc))]))
    if record is not None:
        return skip_advice(record)
    reason = deepest_cause(exc)
    return reason if len(reason) <= MAX_REASON else reason[: MAX_REASON - 1] + "…"


def full_text(exc: BaseException) -> str:
    """Everything known about a failure: Spark's message (query, plan, JVM trace) and the Python traceback."""
    parts = [str(exc)]
    causes = "\n".join(f"  {name}: {message}" for name, message in java_chain(exc))
    parts.append(f"Causes, outermost first:\n{causes}")
    parts.append("".join(traceback.format_exception(exc)))
    return "\n\n".join(parts)
