"""One line saying why: the deepest cause of a Java chain, the last line of a Python traceback, bounded length."""

from __future__ import annotations

from typing import Any

from job.runtime.failures import MAX_REASON, deepest_cause, full_text, meaningful_line, short_reason


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
