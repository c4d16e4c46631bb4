"""Messages a hostile or unlucky producer sends (issue 11), against the real broker: the stream never stops.

Poison messages are interleaved with good tweets over several micro-batches; every offset gets exactly one
record, good tweets are scored exactly as a static PipelineModel.transform scores them, and no record is
larger than its topic accepts. A record whose timestamp Spark's Kafka source cannot read fails the query
(nothing in Spark avoids it, see job/runtime/skip.py): the status names it and the documented `skip` command moves
the deployment past exactly that offset.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from kafka import KafkaProducer
from kafka.admin import KafkaAdminClient, NewTopic
from pyspark.ml.functions import vector_to_array
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from job.runtime import skip
from job.runtime.model import LoadedModel, decision_threshold, load_model
from job.runtime.query import start_query
from job.runtime.spec import parse_spec
from job.runtime.status import FAILED, STOPPED, StateStore
from job.runtime.values import EXIT_FAILED
from job.tools import specs
from job.tools.processes import launch_job, stop_job
from tests.integration.kafka_utils import Record, assert_eventually, create_topics, read_all, unique_topics
from tests.integration.messages import GOOD_TEXTS
from tests.paths import PROJECT_ROOT, SHIPPED_MODEL

# What the output topics accept: set explicitly (it is the broker's default) so the size check has a number.
TOPIC_MAX_MESSAGE_BYTES = 1_048_588
# Per-record overhead of a Kafka record batch holding one record, beyond key and value (v2 format, < 100 bytes).
RECORD_OVERHEAD = 100
BAD_TIMESTAMP_MS = -9_223_372_036_854_776
SUBMIT = (str(PROJECT_ROOT / "spark-submit.sh"), "--master", "local[2]")


@pytest.fixture(scope="module")
def model(spark: SparkSession) -> LoadedModel:
    return load_model(spark, str(SHIPPED_MODEL))


def spec_doc(bootstrap: str, topics: dict[str, str], tmp_path: Path, **options: Any) -> dict[str, Any]:
    return specs.spec_document(
        f"poison-{topics['in']}",
        topics,
        tmp_path / "checkpoint",
        bootstrap,
        state=tmp_path / "state",
        options={"starting_offsets": "earliest", **options},
    )


def create_with_limit(bootstrap: str, topics: dict[str, str], partitions: int) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics(
            [
                NewTopic(name, partitions, 1, topic_configs={"max.message.bytes": str(TOPIC_MAX_MESSAGE_BYTES)})
                for role, name in topics.items()
                if role != "in"
            ]
        )
    finally:
        admin.close()
    create_topics(bootstrap, [topics["in"]], partitions=partitions)


def send(bootstrap: str, topic: str, messages: list[dict[str, Any]]) -> list[tuple[int, int]]:
    """Send and wait for every acknowledgement; each message may name its partition, timestamp and headers."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_request_size=2_000_000)
    try:
        futures = [
            producer.send(
                topic,
                key=m.get("key"),
                value=m.get("value"),
                partition=m.get("partition"),
                timestamp_ms=m.get("timestamp_ms"),
                headers=m.get("headers"),
            )
            for m in messages
        ]
        producer.flush(timeout=60)
        return [(meta.partition, meta.offset) for meta in (f.get(timeout=60) for f in futures)]
    finally:
        producer.close()


def tweet(i: int, text: str | None = None) -> bytes:
    return json.dumps(
        {"id": i, "text": text if text is not None else f"{GOOD_TEXTS[i % len(GOOD_TEXTS)]} #{i}"}
    ).encode()


def poison() -> list[tuple[dict[str, Any], str | None]]:
    """(message, expected code; None = scored). Ids from 10,000 on, apart from the good tweets'."""
    good = b'{"id": 10001, "text": "what a lovely morning"}'
    return [
        ({"key": b"k" * 600_000, "value": None}, "TOMBSTONE"),  # a 600 KB key, no value
        ({"key": b"c", "value": b"\x01" * 200_000}, "OVERSIZED"),  # each byte escaped to six in a dead letter
        ({"key": b"u", "value": b"\xff\xfe" * 400_000}, "OVERSIZED"),  # 800 KB, not UTF-8: base64
        ({"key": b"t" * 700_000, "value": tweet(10_002)}, None),  # a 700 KB key on a valid tweet
        ({"key": b"x", "value": good + b" xyz"}, "NOT_JSON"),
        ({"key": b"x", "value": good + b"]]]"}, "NOT_JSON"),
        ({"key": b"x", "value": tweet(10_003) + tweet(10_004)}, "NOT_JSON"),  # never one scored, one lost
        ({"key": b"w", "value": b"\n" + tweet(10_005)}, None),
        ({"key": b"w", "value": b"\t" + tweet(10_006)}, None),
        ({"key": b"w", "value": b"\r\n" + tweet(10_007)}, None),
        ({"key": b"e", "value": tweet(10_008, "\t\t")}, "EMPTY_TEXT"),
        ({"key": b"e", "value": tweet(10_009, "\n")}, "EMPTY_TEXT"),
        ({"key": b"e", "value": tweet(10_010, "\u00a0")}, "EMPTY_TEXT"),
        ({"key": b"e", "value": tweet(10_011, "\u3000")}, "EMPTY_TEXT"),
        ({"key": b"f", "value": tweet(10_012, "😀😀")}, "NO_FEATURES"),
        ({"key": b"f", "value": tweet(10_013, "こんにちは")}, "NO_FEATURES"),
        ({"key": b"f", "value": tweet(10_014, "... --")}, "NO_FEATURES"),
        ({"key": b"b", "value": b"\xef\xbb\xbf" + tweet(10_015)}, "BYTE_ORDER_MARK"),
        ({"key": b"d", "value": b'{"id": 10016, "id": 10017, "text": "two ids"}'}, "DUPLICATE_KEY"),
        ({"key": b"n", "value": b'{"id": 10018, "text": "x", "a": ' + b"[" * 1000 + b"]" * 1000 + b"}"}, "TOO_DEEP"),
        ({"key": b"s", "value": b'{"id": 10019, "text": "\\ud800 half"}'}, "LONE_SURROGATE"),
        ({"key": b"h", "value": tweet(10_020), "headers": [("big", b"h" * 100_000)]}, None),  # headers: not read
    ]


def by_offset(records: list[Record]) -> dict[tuple[int, int], list[Record]]:
    found: dict[tuple[int, int], list[Record]] = {}
    for r in records:
        doc = r.json()
        found.setdefault((doc["sourcePartition"], doc["sourceOffset"]), []).append(r)
    return found


def test_poison_among_good_tweets_over_several_batches(
    spark: SparkSession, kafka_bootstrap: str, model: LoadedModel, tmp_path: Path
) -> None:
    topics = unique_topics("in", "out", "dlq")
    create_with_limit(kafka_bootstrap, topics, partitions=2)
    bad = poison()
    messages: list[dict[str, Any]] = []
    expected: list[str | None] = []
    for i in range(200):
        messages.append({"key": str(i).encode(), "value": tweet(i)})
        expected.append(None)
        if i % 9 == 4 and bad:
            message, code = bad.pop(0)
            messages.append(message)
            expected.append(code)
    assert not bad, "every poison message is in the stream"
    placed = send(kafka_bootstrap, topics["in"], [{**m, "partition": n % 2} for n, m in enumerate(messages)])
    spec = parse_spec(
        spec_doc(
            kafka_bootstrap, topics, tmp_path, max_offsets_per_trigger=40, trigger={"processing_time": "0 seconds"}
        )
    )
    query = start_query(spark, spec, model)
    try:
        assert_eventually(
            lambda: (
                len(by_offset(read_all(kafka_bootstrap, topics["out"]) + read_all(kafka_bootstrap, topics["dlq"])))
                >= len(messages)
                or not query.isActive
            ),
            180,
            "every offset to be answered",
            interval_s=1,
        )
        assert query.exception() is None
        assert query.isActive
        assert query.lastProgress is not None and query.lastProgress["batchId"] >= 4  # several micro-batches
    finally:
        query.stop()
    out, dead = read_all(kafka_bootstrap, topics["out"]), read_all(kafka_bootstrap, topics["dlq"])
    answered = by_offset(out + dead)
    assert sorted(answered) == sorted(placed)
    assert all(len(records) == 1 for records in answered.values())
    scored = {offset: records[0] for offset, records in by_offset(out).items()}
    codes = {offset: records[0].json()["errorCode"] for offset, records in by_offset(dead).items()}
    for offset, code in zip(placed, expected, strict=True):
        assert (code is None and offset in scored) or codes.get(offset) == code, (offset, code)

    # The good ones, exactly as a static transform of the same texts scores them.
    texts = {r.json()["id"]: r.json()["text"] for r in scored.values()}
    static = model.pipeline.transform(spark.createDataFrame(sorted(texts.items()), "id int, text string"))
    labels = model.metadata.label_values
    want = {
        r.id: (labels[int(r.prediction)], r.p[int(r.prediction)])
        for r in static.select("id", "prediction", vector_to_array(F.col("probability")).alias("p")).collect()
    }
    for record in scored.values():
        doc = record.json()
        assert record.key == str(doc["id"]).encode()
        assert doc["predictedLabel"] == want[doc["id"]][0]
        assert doc["probability"] == pytest.approx(want[doc["id"]][1], abs=1e-12)
        assert doc["threshold"] == decision_threshold(model.pipeline.stages[-1])

    # Every record fits its topic, the dead letters of the largest poison included.
    for record in out + dead:
        assert len(record.key or b"") + len(record.value or b"") + RECORD_OVERHEAD <= TOPIC_MAX_MESSAGE_BYTES
    largest = max(dead, key=lambda r: len(r.value or b""))
    assert largest.json()["valueTruncated"] is True


def test_an_unreadable_timestamp_is_named_and_skip_moves_past_exactly_it(
    spark: SparkSession, kafka_bootstrap: str, model: LoadedModel, tmp_path: Path
) -> None:
    topics = unique_topics("in", "out", "dlq")
    create_topics(kafka_bootstrap, topics.values(), partitions=2)
    messages = [{"key": str(i).encode(), "value": tweet(i), "partition": i % 2} for i in range(80)]
    # Offset 20 of partition 0: inside the second micro-batch (15 offsets per partition and batch).
    messages.insert(40, {"key": b"late", "value": tweet(9_999), "partition": 0, "timestamp_ms": BAD_TIMESTAMP_MS})
    placed = send(kafka_bootstrap, topics["in"], messages)
    assert placed[40] == (0, 20)
    doc = spec_doc(kafka_bootstrap, topics, tmp_path, max_offsets_per_trigger=30)
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(doc), encoding="utf-8")
    spec = parse_spec(doc)

    store = StateStore(str(tmp_path / "state"))
    # As an operator runs it: the deployment fails on the record, and says which one and what to do.
    job = launch_job(["run", "--spec", str(spec_file)], tmp_path / "job.log")
    try:
        assert_eventually(lambda: job.poll() is not None, 300, "the deployment to fail on the record")
    finally:
        stop_job(job)
    assert job.returncode == EXIT_FAILED, (tmp_path / "job.log").read_text(errors="replace")[-3000:]
    status = store.read_status()
    assert status is not None and status["state"] == FAILED
    assert status["reason"] == (
        f"Spark's Kafka source cannot read offset 20 of partition 0 of topic {topics['in']}: its timestamp "
        f"{BAD_TIMESTAMP_MS} ms overflows Spark's timestamps, and the query fails on it at every start; to "
        "dead-letter it and move past it: ./spark-submit.sh skip --spec <the spec> --partition 0 --offset 20, "
        "then start the deployment again"
    )
    # Asked for an offset of a batch that was committed: refused, nothing changed.
    with pytest.raises(skip.SkipError, match="not in the micro-batch the deployment stopped in"):
        skip.skip_records(spark, spec, model, [(0, 5)])

    result = subprocess.run(
        [*SUBMIT, "skip", "--spec", str(spec_file), "--partition", "0", "--offset", "20"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"{spec.name}: batch 1 finished without offset 20 of partition 0" in result.stdout
    status = store.read_status()
    assert status is not None and (status["state"], status["reason"]) == (
        STOPPED,
        "skipped offset 20 of partition 0 as dead letters (batch 1 finished by `skip`); start it again",
    )

    again = parse_spec({**doc, "options": {**doc["options"], "trigger": {"available_now": True}}})
    query = start_query(spark, again, model)
    query.awaitTermination(180)
    assert query.exception() is None
    out, dead = read_all(kafka_bootstrap, topics["out"]), read_all(kafka_bootstrap, topics["dlq"])
    answered = by_offset(out + dead)
    assert sorted(answered) == sorted(placed)
    assert all(len(records) == 1 for records in answered.values()), "an offset written twice"
    assert [(r.key, r.json()["errorCode"], r.json()["sourcePartition"], r.json()["sourceOffset"]) for r in dead] == [
        (b"late", "UNREADABLE_TIMESTAMP", 0, 20)
    ]
    letter = dead[0].json()
    assert (letter["value"], letter["sourceTimestamp"]) == (tweet(9_999).decode(), None)
    assert str(BAD_TIMESTAMP_MS) in letter["errorReason"]
    assert sorted(r.json()["id"] for r in out) == list(range(80))
