"""Nothing stops the stream and nothing is lost: bad messages, kill -9 and broker restarts, with exact accounting."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from pyspark.sql import SparkSession

from job.runtime.model import LoadedModel, load_model
from job.runtime.query import start_query
from job.runtime.spec import parse_spec
from job.tools import specs
from job.tools.broker import BrokerConfig, LocalBroker
from job.tools.processes import free_port
from tests.integration.kafka_utils import (
    Record,
    assert_eventually,
    create_topics,
    produce,
    read_all,
    unique_topics,
    written,
)
from tests.integration.messages import MAX_MESSAGE_BYTES, MAX_TEXT_LENGTH, Message, mixed_stream
from tests.paths import PROJECT_ROOT, SHIPPED_MODEL

pytestmark = pytest.mark.slow

N = 10_000
BATCH = 1_000
KILL_BATCH = 200


@pytest.fixture(scope="module")
def model(spark: SparkSession) -> LoadedModel:
    return load_model(spark, str(SHIPPED_MODEL))


def spec_doc(bootstrap: str, topics: dict[str, str], tmp_path: Path, **options: Any) -> dict[str, Any]:
    return specs.spec_document(
        f"reliability-{topics['in']}",
        topics,
        tmp_path / "checkpoint",
        bootstrap,
        state=tmp_path / "state",
        options={
            "starting_offsets": "earliest",
            "trigger": {"processing_time": "200 milliseconds"},
            "max_offsets_per_trigger": BATCH,
            "max_text_length": MAX_TEXT_LENGTH,
            "max_message_bytes": MAX_MESSAGE_BYTES,
            **options,
        },
    )


def send(bootstrap: str, topic: str, messages: list[Message]) -> list[tuple[int, int, Message]]:
    # Round-robin over both partitions, explicitly, so both carry good and bad messages.
    placed = produce(bootstrap, topic, [(m.key, m.value, i % 2) for i, m in enumerate(messages)])
    return [(p, o, m) for (p, o), m in zip(placed, messages, strict=True)]


def account(sent: list[tuple[int, int, Message]], out: list[Record], dead: list[Record]) -> int:
    """Assert every input offset has exactly the expected outcome; return how many duplicates there were."""
    scored = Counter((d["sourcePartition"], d["sourceOffset"]) for d in (r.json() for r in out))
    rejected = Counter((d["sourcePartition"], d["sourceOffset"]) for d in (r.json() for r in dead))
    scored_ids = {(d["sourcePartition"], d["sourceOffset"]): (d["id"], r.key) for r in out for d in [r.json()]}
    codes = {(d["sourcePartition"], d["sourceOffset"]): d["errorCode"] for r in dead for d in [r.json()]}
    sent_at = {(p, o) for p, o, _ in sent}
    assert set(scored) | set(rejected) == sent_at, "an outcome for an offset that was never sent, or one missing"
    assert not set(scored) & set(rejected), "an offset both scored and dead-lettered"
    for p, o, message in sent:
        if message.error_code is None:
            assert scored_ids[(p, o)] == (message.id, str(message.id).encode())
        else:
            assert codes[(p, o)] == message.error_code, f"offset {p}/{o}: {message}"
    return sum(c - 1 for c in scored.values()) + sum(c - 1 for c in rejected.values())


def wait_for_all(bootstrap: str, topics: dict[str, str], total: int, timeout_s: float) -> tuple[list, list]:
    deadline = time.monotonic() + timeout_s
    out: list[Record] = []
    dead: list[Record] = []
    while time.monotonic() < deadline:
        out = read_all(bootstrap, topics["out"])
        dead = read_all(bootstrap, topics["dlq"])
        if len({(r.json()["sourcePartition"], r.json()["sourceOffset"]) for r in out + dead}) >= total:
            return out, dead
        time.sleep(2)
    raise AssertionError(f"only {len(out)} scored + {len(dead)} dead-lettered of {total} after {timeout_s:.0f}s")


def test_ten_thousand_messages_a_tenth_bad_every_offset_accounted_for(
    spark: SparkSession, kafka_bootstrap: str, model: LoadedModel, tmp_path: Path
) -> None:
    topics = unique_topics("in", "out", "dlq")
    create_topics(kafka_bootstrap, topics.values(), partitions=2)
    messages = mixed_stream(N, bad_every=10)
    assert Counter(m.error_code for m in messages)[None] == 9_000
    sent = send(kafka_bootstrap, topics["in"], messages)
    query = start_query(spark, parse_spec(spec_doc(kafka_bootstrap, topics, tmp_path)), model)
    try:
        out, dead = wait_for_all(kafka_bootstrap, topics, N, timeout_s=300)
        assert query.exception() is None
        assert query.isActive
    finally:
        query.stop()
    assert (len(out), len(dead)) == (9_000, 1_000)
    assert account(sent, out, dead) == 0
    assert Counter(r.json()["errorCode"] for r in dead) == Counter(m.error_code for m in messages if m.error_code)


def _run_job(spec_path: Path, log_path: Path) -> subprocess.Popen[bytes]:
    log = log_path.open("ab")
    return subprocess.Popen(
        [str(PROJECT_ROOT / "spark-submit.sh"), "--master", "local[2]", "run", "--spec", str(spec_path)],
        cwd=PROJECT_ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, so kill -9 takes the JVM and the Python driver
    )


def test_kill_minus_9_mid_stream_then_restart_scores_everything(kafka_bootstrap: str, tmp_path: Path) -> None:
    topics = unique_topics("in", "out", "dlq")
    create_topics(kafka_bootstrap, topics.values(), partitions=2)
    messages = mixed_stream(N, bad_every=10, first_id=100_000)
    sent = send(kafka_bootstrap, topics["in"], messages)
    spec_path = tmp_path / "spec.yaml"
    # Small, paced batches: the whole stream takes 25 s or more, so the kill lands mid-stream however fast
    # the machine scores.
    doc = spec_doc(
        kafka_bootstrap,
        topics,
        tmp_path,
        max_offsets_per_trigger=KILL_BATCH,
        trigger={"processing_time": "500 milliseconds"},
    )
    spec_path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    log_path = tmp_path / "job.log"

    job = _run_job(spec_path, log_path)
    try:
        assert_eventually(
            lambda: written(kafka_bootstrap, topics["out"]) >= 2 * KILL_BATCH or job.poll() is not None,
            180,
            "the first batches to be scored",
            interval_s=1,
        )
        assert job.poll() is None, log_path.read_text()[-3000:]
        os.killpg(job.pid, signal.SIGKILL)
        job.wait(timeout=30)
        assert job.returncode == -signal.SIGKILL
        scored_before_restart = written(kafka_bootstrap, topics["out"])
        assert scored_before_restart < 9_000, "the job finished before it could be killed; the test proves nothing"

        job = _run_job(spec_path, log_path)
        out, dead = wait_for_all(kafka_bootstrap, topics, N, timeout_s=300)
        assert job.poll() is None, log_path.read_text()[-3000:]
    finally:
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGTERM)
            job.wait(timeout=120)
    duplicates = account(sent, out, dead)
    # Only the micro-batch in flight at the kill may be written twice; it holds at most KILL_BATCH offsets.
    assert duplicates <= KILL_BATCH
    assert job.returncode == 0, log_path.read_text()[-3000:]
    status = json.loads((tmp_path / "state" / "status.json").read_text())
    assert status["state"] == "STOPPED"


def test_broker_restart_mid_stream_rides_through_without_loss(
    spark: SparkSession, model: LoadedModel, tmp_path: Path
) -> None:
    # A broker of its own: restarting the shared one would disturb the other tests.
    broker = LocalBroker(BrokerConfig(run_dir=tmp_path / "kafka", port=free_port(), controller_port=free_port()))
    bootstrap = broker.start(timeout_s=120)
    query = None
    try:
        topics = unique_topics("in", "out", "dlq")
        create_topics(bootstrap, topics.values(), partitions=2)
        messages = mixed_stream(N, bad_every=10, first_id=200_000)
        sent = send(bootstrap, topics["in"], messages[: N // 2])
        query = start_query(spark, parse_spec(spec_doc(bootstrap, topics, tmp_path)), model)
        assert_eventually(lambda: written(bootstrap, topics["out"]) >= BATCH, 120, "first batches")
        broker.stop()
        time.sleep(5)
        broker.start(timeout_s=120)
        sent += send(bootstrap, topics["in"], messages[N // 2 :])
        out, dead = wait_for_all(bootstrap, topics, N, timeout_s=300)
        assert query.exception() is None
        assert query.isActive
        duplicates = account(sent, out, dead)
        assert duplicates <= BATCH
    finally:
        if query is not None:
            query.stop()
        broker.stop()
