"""One line saying why: the deepest cause of a Java chain, the last line of a Python traceback, bounded length."""

from __future__ import annotations

from typing import Any

from job.runtime.failures import (
    MAX_REASON,
    UnreadableRecord,
    deepest_cause,
    full_text,
    meaningful_line,
    short_reason,
    unreadable_record,
)


class FakeJava:
    """A Java throwable as py4j shows it: getClass().getName(), getMessage(), getCause()."""

    def __init__(self, name: str, message: str | None, cause: FakeJava | None = None) -> None:
        self._name, self._message, self._cause = name, message, cause

    def getClass(self) -> Any:  # noqa: N802
        name = self._name
        return type("Cls", (), {"getName": lambda _self: name})()

    def getMessage(self) -> str | None:  # noqa: N802
        return self._message

    def getCause(self) -> FakeJava | None:  # noqa: N802
        return self._cause


class CapturedError(Exception):
    """Like pyspark's captured exceptions: the Java throwable in `_origin`."""

    def __init__(self, text: str, origin: FakeJava) -> None:
        super().__init__(text)
        self._origin = origin


def test_the_deepest_cause_with_a_message_names_the_failure() -> None:
    chain = FakeJava(
        "org.apache.spark.sql.streaming.StreamingQueryException",
        "[STREAM_FAILED] Query [id = 1] terminated with exception: Job aborted\n=== Streaming Query ===\nLogical Plan: ...",
        FakeJava(
            "org.apache.spark.SparkException",
            "Job aborted due to stage failure",
            FakeJava(
                "org.apache.kafka.common.errors.TimeoutException",
                "Topic out not present in metadata after 60000 ms.",
                FakeJava("java.lang.Throwable", None),
            ),
        ),
    )
    exc = CapturedError("long text with the plan", chain)
    assert short_reason(exc) == "TimeoutException: Topic out not present in metadata after 60000 ms."
    assert "Logical Plan" in full_text(exc) and "TimeoutException" in full_text(exc)


def test_a_python_worker_traceback_gives_its_last_line() -> None:
    message = (
        "[PYTHON_EXCEPTION] An exception was thrown from the Python worker: Traceback (most recent call last):\n"
        '  File "x.py", line 7, in f\n    raise ValueError("boom")\nValueError: boom\n SQLSTATE: 38000'
    )
    assert meaningful_line(message) == "ValueError: boom"
    assert meaningful_line("first\nsecond") == "first"
    assert meaningful_line("  \n") == ""


def test_a_python_exception_without_java_and_a_long_reason_is_cut() -> None:
    assert deepest_cause(ValueError("bad\nmore")) == "ValueError: bad"
    long = short_reason(RuntimeError("x" * 2000))
    assert len(long) == MAX_REASON and long.endswith("…")


# The message of the exception Spark 4.x raises for KAFKA_MALFORMED_RECORD_TIMESTAMP, as the query's failure shows it.
SPARK_TIMESTAMP_FAILURE = (
    "[STREAM_FAILED] Query [id = 967e3c64-3e67-41de-9fbe-5c760e917400, runId = 5c8d2a39-16ae-4256-a177-bcf2cae16011] "
    "terminated with exception: Job aborted due to stage failure"
)
TIMESTAMP_CAUSE = (
    "Record at topic in-b4ca5ad91c partition 3 offset 1234 has timestamp value -9223372036854776 that overflows "
    "when converting to Spark's microsecond-precision TimestampType.\n"
    "Kafka record timestamps must be in milliseconds since epoch per the Kafka protocol."
)


def test_a_failure_on_an_unreadable_timestamp_names_the_record_and_the_skip_command() -> None:
    assert unreadable_record(TIMESTAMP_CAUSE) == UnreadableRecord("in-b4ca5ad91c", 3, 1234, -9223372036854776)
    exc = CapturedError(
        SPARK_TIMESTAMP_FAILURE,
        FakeJava(
            "org.apache.spark.sql.streaming.StreamingQueryException",
            SPARK_TIMESTAMP_FAILURE,
            FakeJava("org.apache.spark.SparkException", TIMESTAMP_CAUSE),
        ),
    )
    assert short_reason(exc) == (
        "Spark's Kafka source cannot read offset 1234 of partition 3 of topic in-b4ca5ad91c: its timestamp "
        "-9223372036854776 ms overflows Spark's timestamps, and the query fails on it at every start; to dead-letter "
        "it and move past it: ./spark-submit.sh skip --spec <the spec> --partition 3 --offset 1234, then start the "
        "deployment again"
    )
    # Any other failure keeps its deepest cause.
    assert unreadable_record("boom: broker gone") is None
    other = CapturedError("boom", FakeJava("org.apache.kafka.common.KafkaException", "broker gone"))
    assert short_reason(other) == "KafkaException: broker gone"
