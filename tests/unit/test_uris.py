"""Locations in the spec are URIs for Hadoop, used as given: never rewritten into local paths.

Without an HDFS or S3 at hand, the tests use Hadoop's `viewfs://` file system, whose mount table maps a
non-local URI onto folders of the local disk. A file that arrives in the mapped folder went through
Hadoop with its URI untouched: anything that turned `viewfs://mt/...` into a local path would have
written under the current folder (`viewfs:/mt/...`) or failed.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import SparkSession
from pyspark.sql.streaming.readwriter import DataStreamWriter

from job.runtime import storage
from job.runtime.deploy import describe
from job.runtime.main import build_parser, overrides
from job.runtime.model import load_model
from job.runtime.publish import PublishRequest, publish
from job.runtime.query import start_query
from job.runtime.spec import load_locations, load_spec, parse_spec
from job.runtime.status import StateStore
from job.runtime.storage import is_local
from job.tools.specs import spec_document
from tests.paths import PROJECT_ROOT, SHIPPED_MODEL

MODEL_URI = "hdfs://nn:8020/models/m"
CHECKPOINT_URI = "s3a://bucket/cp"
STATE_URI = "file:///tmp/x"


def uris_spec(**changes: Any) -> dict[str, Any]:
    # A closed port: nothing here connects to Kafka.
    doc = spec_document(
        "uris", {"in": "in", "out": "out"}, CHECKPOINT_URI, "127.0.0.1:1", model=MODEL_URI, state=STATE_URI
    )
    return {**doc, **changes}


def test_the_spec_keeps_every_location_verbatim() -> None:
    spec = parse_spec(uris_spec())
    assert (spec.model_location, spec.checkpoint_location, spec.state_location) == (
        MODEL_URI,
        CHECKPOINT_URI,
        STATE_URI,
    )
    shown = describe(spec)
    assert (shown["model"], shown["checkpoint_location"], shown["state_location"]) == (
        {"location": MODEL_URI},
        CHECKPOINT_URI,
        STATE_URI,
    )


def test_command_line_overrides_keep_the_uris_verbatim(tmp_path: Path) -> None:
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text("name: uris\ncheckpoint_location: relative/cp\n", encoding="utf-8")
    uris = ["abfss://container@account.dfs.core.windows.net/models/m", "hdfs:///cp/tweets", "s3a://b/state/?x=1"]
    args = build_parser().parse_args(
        ["run", "--spec", str(spec_file), "--model", uris[0], "--checkpoint", uris[1], "--state", uris[2]]
    )
    assert overrides(args) == {
        "model": {"location": uris[0]},
        "checkpoint_location": uris[1],
        "state_location": uris[2],
    }
    locations = load_locations([spec_file], overrides(args))
    assert (locations.checkpoint_location, locations.state_location) == (uris[1], uris[2])
    full = tmp_path / "full.yaml"
    full.write_text(
        "name: uris\ntype: stream\n"
        "input: {connection: {bootstrap_servers: ['h:9092']}, source: {topic: in}}\n"
        "output: {connection: {bootstrap_servers: ['h:9092']}, target: {topic: out}}\n"
        "model: {location: models/m}\ncheckpoint_location: cp\n",
        encoding="utf-8",
    )
    spec = load_spec([full], overrides(args))
    assert (spec.model_location, spec.checkpoint_location, spec.state_location) == tuple(uris)


@pytest.mark.parametrize(
    ("location", "local"),
    [
        ("hdfs://nn:8020/state", False),
        ("s3a://bucket/state", False),
        ("viewfs://cluster/state", False),
        ("file:///tmp/x", True),
        ("/tmp/x", True),
        ("relative/state", True),
    ],
)
def test_only_scheme_less_and_file_locations_count_as_local(location: str, local: bool) -> None:
    assert is_local(location) is local


def test_a_state_store_on_hdfs_goes_through_hadoop_and_needs_a_session() -> None:
    # No silent fallback to the local disk: without a SparkSession (Hadoop) it refuses.
    with pytest.raises(ValueError, match=r"state location 'hdfs://nn:8020/state' is not a local path"):
        StateStore("hdfs://nn:8020/state")
    with pytest.raises(ValueError, match=r"'s3a://bucket/state' is not a local path"):
        storage.delete(None, "s3a://bucket/state", recursive=True)


def test_a_file_uri_state_store_writes_to_that_path(tmp_path: Path) -> None:
    store = StateStore(f"file://{tmp_path}/state")
    store.write_status({"state": "RUNNING"})
    assert (tmp_path / "state" / "status.json").is_file()
    assert store.read_status() == {"state": "RUNNING"}


@dataclass(frozen=True)
class MountedFs:
    """A `viewfs://<name>/` namespace whose /models and /store are folders on the local disk."""

    name: str
    store: Path

    def uri(self, path: str) -> str:
        return f"viewfs://{self.name}/{path.lstrip('/')}"


@pytest.fixture
def viewfs(spark: SparkSession, tmp_path: Path) -> Iterator[MountedFs]:
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    # A fresh mount table name per test: Hadoop caches file systems by scheme and authority.
    name = f"mt{uuid.uuid4().hex[:12]}"
    store = tmp_path / "store"
    store.mkdir()
    links = {
        f"fs.viewfs.mounttable.{name}.link./models": SHIPPED_MODEL.parent.as_uri(),
        f"fs.viewfs.mounttable.{name}.link./store": store.as_uri(),
    }
    for key, value in links.items():
        conf.set(key, value)
    try:
        yield MountedFs(name, store)
    finally:
        for key in links:
            conf.unset(key)


def test_model_status_stop_marker_and_delete_go_through_hadoop_with_the_uri_untouched(
    spark: SparkSession, viewfs: MountedFs
) -> None:
    model = load_model(spark, viewfs.uri("/models/sentiment-prediction"))
    assert (model.metadata.name, model.location) == ("Sentiment Prediction", viewfs.uri("/models/sentiment-prediction"))

    store = StateStore(viewfs.uri("/store/deployment"), spark)
    store.write_status({"state": "RUNNING", "deployment": "uris"})
    assert (viewfs.store / "deployment" / "status.json").read_text(encoding="utf-8") == (
        '{\n  "state": "RUNNING",\n  "deployment": "uris"\n}\n'
    )
    assert store.read_status() == {"state": "RUNNING", "deployment": "uris"}
    store.request_stop()
    assert (viewfs.store / "deployment" / "stop-requested").is_file()
    assert store.stop_requested()
    store.clear_stop()
    assert not (viewfs.store / "deployment" / "stop-requested").exists()
    assert not store.stop_requested()

    assert storage.delete(spark, viewfs.uri("/store/deployment"), recursive=True) is True
    assert not (viewfs.store / "deployment").exists()
    # Nothing was written beside the project as if the URI were a relative path.
    assert not (PROJECT_ROOT / "viewfs:").exists()


def test_the_query_gets_the_checkpoint_uri_verbatim(spark: SparkSession, monkeypatch: pytest.MonkeyPatch) -> None:
    model = load_model(spark, str(SHIPPED_MODEL))
    given: list[tuple[str, str]] = []
    option = DataStreamWriter.option

    def spy_option(self: DataStreamWriter, key: str, value: Any) -> DataStreamWriter:
        given.append((key, value))
        return option(self, key, value)

    class NotStarted:
        id = runId = "not-started"  # noqa: N815

    monkeypatch.setattr(DataStreamWriter, "option", spy_option)
    monkeypatch.setattr(DataStreamWriter, "start", lambda self, *args, **kwargs: NotStarted())
    for uri in ("hdfs://nn:8020/checkpoints/tweets", CHECKPOINT_URI, "file:///tmp/x/cp"):
        given.clear()
        start_query(spark, parse_spec(uris_spec(checkpoint_location=uri)), model)
        assert given == [("checkpointLocation", uri)]


def test_a_started_query_keeps_its_checkpoint_where_the_uri_points(spark: SparkSession, viewfs: MountedFs) -> None:
    # Port 1 is closed: the query's first batch waits on Kafka's admin client in a thread Spark does not
    # interrupt, so its timeouts are short here, or stop() would wait them out (60 s by default).
    quick = {"kafka.default.api.timeout.ms": "2000", "kafka.request.timeout.ms": "1000"}
    spec = parse_spec(uris_spec(model={"location": viewfs.uri("/models/sentiment-prediction")},
                                    checkpoint_location=viewfs.uri("/store/checkpoint"),
                                    options={"kafka": quick}))  # fmt: skip
    model = load_model(spark, spec.model_location)
    query = start_query(spark, spec, model)
    try:
        # Spark writes the checkpoint's metadata before start() returns, through the URI's file system; the
        # source's own folder ("sources") appears once the first batch plans, which may or may not have happened yet.
        resolved = query._jsq.streamingQuery().resolvedCheckpointRoot()
        written = sorted(p.name for p in (viewfs.store / "checkpoint").iterdir() if not p.name.startswith("."))
    finally:
        query.stop()
    assert resolved == viewfs.uri("/store/checkpoint")
    assert written in (["commits", "metadata", "offsets"], ["commits", "metadata", "offsets", "sources"])


def test_publishing_goes_through_hadoop_and_gives_the_version_a_local_publish_gives(
    spark: SparkSession, viewfs: MountedFs, tmp_path: Path
) -> None:
    local = publish(spark, PublishRequest(str(SHIPPED_MODEL), output=str(tmp_path / "local")))
    output = viewfs.uri("/store/published")
    remote = publish(spark, PublishRequest(viewfs.uri("/models/sentiment-prediction"), output=output))
    # Listed, digested (in the JVM), copied and written through Hadoop: the same bytes, so the same version.
    assert remote.model.version == local.model.version
    assert remote.model.location == output
    copied = sorted(
        p.relative_to(viewfs.store / "published").as_posix()
        for p in (viewfs.store / "published").rglob("*")
        if p.is_file() and not p.name.startswith(".")
    )
    assert copied == [
        f for f in storage.list_files(spark, str(SHIPPED_MODEL)) if not f.rsplit("/", 1)[-1].startswith(".")
    ]
    assert storage.list_files(spark, output) == copied  # Hadoop hides its .crc files
    assert (
        storage.sha256(spark, output + "/model.json")
        == hashlib.sha256((viewfs.store / "published" / "model.json").read_bytes()).hexdigest()
    )
    assert not (PROJECT_ROOT / "viewfs:").exists()
