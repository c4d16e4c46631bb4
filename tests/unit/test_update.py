"""`job update` without Spark: the request file and its answer, stale requests, the history, the deployment's side
with fake checks and queries, the command's exit codes against a fake deployment, and `job status`'s lines."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from job.runtime import control, main
from job.runtime.connection import connection_scrubber
from job.runtime.deploy import model_to_serve
from job.runtime.health import parse_time
from job.runtime.model import ModelError
from job.runtime.secrets import Secret
from job.runtime.status import StateStore, StatusTracker
from job.runtime.update import (
    REQUEST_FILE,
    ModelUpdates,
    PointerWatch,
    UpdateRequest,
    UpdateRequestError,
    answer_for,
    first_offsets,
    history_lines,
    is_stale,
    local_path_made_absolute,
    location_problem,
    new_request,
    read_request,
    serving_location,
    update_line,
    withdraw,
    write_request,
)
from job.runtime.values import Connection, DeploymentLocations
from job.tools import specs

TEXT_FIELDS = (("id", "integer"), ("text", "string"))
SECRET_CONNECTION = Connection(("h:9093",), "SASL_SSL", "PLAIN", "user1", Secret("pa55word"))


@dataclass(frozen=True)
class FakeModel:
    name: str
    version: str
    location: str
    input_fields: tuple[tuple[str, str], ...] = TEXT_FIELDS


@dataclass(frozen=True)
class FakeQuery:
    runId: str  # noqa: N815 (pyspark's StreamingQuery names it so)
    model: FakeModel


A = FakeModel("Sentiment Prediction", "aaaaaaaaaaaa", "/models/a")
B = FakeModel("Sentiment Prediction", "bbbbbbbbbbbb", "/models/b")
STARS = FakeModel(
    "Stars", "ssssssssssss", "/models/stars", (("id", "integer"), ("text", "string"), ("stars", "double"))
)
MODELS = {m.location: m for m in (A, B, STARS)}


@dataclass
class FakeDeployment:
    """ModelUpdates wired to fake mechanics that record what they were asked to do."""

    tracker: StatusTracker
    run_started_s: float
    fail_start_of: set[str] = field(default_factory=set)
    fail_prepare_of: set[str] = field(default_factory=set)
    stopping: bool = False
    calls: list[tuple[str, str]] = field(default_factory=list)
    runs: int = 0

    def check(self, location: str) -> FakeModel:
        self.calls.append(("check", location))
        if location not in MODELS:
            raise ModelError(f"model location {location}: not a saved Spark ML PipelineModel (no metadata/ folder)")
        return MODELS[location]

    def stop(self, query: FakeQuery) -> None:
        self.calls.append(("stop", query.runId))

    def start(self, model: FakeModel) -> FakeQuery:
        return self.prepare(model)()

    def prepare(self, model: FakeModel) -> Callable[[], FakeQuery]:
        self.calls.append(("prepare", model.version))
        if model.location in self.fail_prepare_of:
            raise RuntimeError(f"cannot build a plan with {model.version}")

        def start() -> FakeQuery:
            self.calls.append(("start", model.version))
            if model.location in self.fail_start_of:
                raise RuntimeError(f"cannot start with {model.version}")
            self.runs += 1
            self.tracker.set_model(model.name, model.version, model.location)  # as start_query does
            return FakeQuery(f"run-{self.runs}", model)

        return start

    def updates(self, watch: PointerWatch | None = None) -> ModelUpdates[FakeQuery, FakeModel]:
        return ModelUpdates(
            self.tracker,
            self.run_started_s,
            self.check,
            self.stop,
            self.prepare,
            stopping=lambda: self.stopping,
            watch=watch,
        )


def tracker_at(state: Path, scrub: Callable[[str], str] = lambda text: text) -> StatusTracker:
    return StatusTracker(StateStore(str(state)), "dep", scrub)


def status_of(state: Path) -> dict[str, Any]:
    document = StateStore(str(state)).read_status()
    assert document is not None
    return document


def progress(run_id: str, batch: int, rows: int, start: dict[str, int] | None) -> dict[str, Any]:
    return {
        "runId": run_id,
        "batchId": batch,
        "numInputRows": rows,
        "sources": [{"startOffset": None if start is None else json.dumps({"in": start}), "endOffset": "{}"}],
    }


def ask(state: Path, model: str, requested_at: str | None = None) -> UpdateRequest:
    request = new_request(model, requested_at)
    write_request(StateStore(str(state)), request)
    return request


# -- the request file and its answer ----------------------------------------------------------------------


def test_a_request_round_trips_through_the_state_folder(tmp_path: Path) -> None:
    store = StateStore(str(tmp_path))
    assert read_request(store) is None
    request = new_request("/models/b", "2026-12-02T08:00:00.000Z")
    write_request(store, request)
    assert json.loads((tmp_path / REQUEST_FILE).read_text()) == {
        "id": request.id,
        "model": "/models/b",
        "requested_at": "2026-12-02T08:00:00.000Z",
    }
    assert read_request(store) == request == UpdateRequest.from_json(request.to_json())
    assert len(request.id) == 12 and request.id != new_request("/models/b").id


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("{oops", "not JSON"),
        ("[1, 2]", "not a JSON object"),
        ('{"id": "x", "model": "/m"}', "requested_at missing or not a string"),
        ('{"id": 7, "model": " ", "requested_at": "t"}', "id, model missing or not a string"),
    ],
)
def test_a_file_that_is_not_a_request_says_why(tmp_path: Path, text: str, why: str) -> None:
    (tmp_path / REQUEST_FILE).write_text(text)
    with pytest.raises(UpdateRequestError) as raised:
        read_request(StateStore(str(tmp_path)))
    assert str(raised.value).startswith(why)


def test_withdraw_removes_only_the_request_it_names(tmp_path: Path) -> None:
    store = StateStore(str(tmp_path))
    mine = ask(tmp_path, "/models/a")
    theirs = ask(tmp_path, "/models/b")  # another job update wrote over it
    assert not withdraw(store, mine.id)
    assert read_request(store) == theirs
    assert withdraw(store, theirs.id)
    assert not (tmp_path / REQUEST_FILE).exists()
    assert not withdraw(store, theirs.id)


def test_an_answer_is_matched_to_its_request_by_id() -> None:
    status = {"update": {"id": "abc", "state": "SERVING"}}
    assert answer_for(status, "abc") == {"id": "abc", "state": "SERVING"}
    assert answer_for(status, "abd") is None
    assert answer_for({"update": None}, "abc") is None
    assert answer_for(None, "abc") is None


def test_a_request_written_before_the_run_began_is_stale() -> None:
    started = parse_time("2026-12-02T08:00:00.000Z")
    assert started is not None
    assert is_stale(new_request("/m", "2026-12-02T07:59:59.999Z"), started)
    assert not is_stale(new_request("/m", "2026-12-02T08:00:00.000Z"), started)
    assert not is_stale(new_request("/m", "2026-12-02T08:00:05.000Z"), started)
    assert is_stale(new_request("/m", "yesterday"), started)


def test_locations_with_credentials_never_reach_the_request_file() -> None:
    assert location_problem("s3a://AKIAKEY:secret@bucket/models/b") == (
        "the model location holds a password (user:password@…); give credentials in the Hadoop configuration"
    )
    assert location_problem("wasbs://c@acct.blob.core.windows.net/m?sv=2020&sig=abc") is not None
    assert location_problem(" ") == "the model location is empty"
    for fine in ("/models/b", "hdfs://user@namenode:8020/models/b", "s3a://bucket/models/b", "models/b"):
        assert location_problem(fine) is None
    assert local_path_made_absolute("s3a://bucket/m") == "s3a://bucket/m"
    assert local_path_made_absolute("/models/b") == "/models/b"
    assert local_path_made_absolute("models/b") == str(Path("models/b").absolute())


def test_first_offsets_come_from_the_first_source_start_offset() -> None:
    assert first_offsets(progress("r", 3, 10, {"1": 40, "0": 35})) == {"0": 35, "1": 40}
    assert first_offsets({"sources": [{"startOffset": {"in": {"0": 5}}}]}) == {"0": 5}
    assert first_offsets({"sources": [{"startOffset": {"a": {"0": 5}, "b": {"0": 6}}}]}) == {"a/0": 5, "b/0": 6}
    assert first_offsets(progress("r", 0, 10, None)) is None
    assert first_offsets({"sources": []}) is None


# -- the deployment's side ----------------------------------------------------------------------------------


@pytest.fixture
def deployment(tmp_path: Path) -> FakeDeployment:
    return FakeDeployment(tracker_at(tmp_path), run_started_s=time.time() - 1)


def started(deployment: FakeDeployment, model: FakeModel = A) -> tuple[ModelUpdates[FakeQuery, FakeModel], FakeQuery]:
    updates = deployment.updates()
    updates.begin(model)
    return updates, deployment.start(model)


def test_the_first_model_opens_the_history_and_its_first_batch_fills_it(
    deployment: FakeDeployment, tmp_path: Path
) -> None:
    _, query = started(deployment)
    [entry] = status_of(tmp_path)["models"]
    assert {k: entry[k] for k in ("name", "version", "location", "first_batch", "first_offsets", "request")} == {
        "name": "Sentiment Prediction",
        "version": A.version,
        "location": A.location,
        "first_batch": None,
        "first_offsets": None,
        "request": None,
    }
    deployment.tracker.progress(progress(query.runId, 0, 0, None))  # no rows: not yet
    assert status_of(tmp_path)["models"][0]["first_batch"] is None
    deployment.tracker.progress(progress(query.runId, 0, 25, None))  # a new checkpoint's first batch
    deployment.tracker.progress(progress(query.runId, 1, 25, {"0": 12, "1": 13}))
    [entry] = status_of(tmp_path)["models"]
    assert (entry["first_batch"], entry["first_offsets"]) == (0, None)


def test_a_change_stops_at_the_boundary_starts_again_and_records_where_the_new_model_began(
    deployment: FakeDeployment, tmp_path: Path
) -> None:
    updates, query = started(deployment)
    deployment.tracker.progress(progress(query.runId, 0, 30, None))
    request = ask(tmp_path, B.location)
    after = updates.poll(query)
    assert after == FakeQuery("run-2", B)
    # The new plan is built while the old query scores; the stop comes after it, then the start.
    assert deployment.calls == [
        ("prepare", A.version),
        ("start", A.version),
        ("check", B.location),
        ("prepare", B.version),
        ("stop", "run-1"),
        ("start", B.version),
    ]
    assert not (tmp_path / REQUEST_FILE).exists()
    status = status_of(tmp_path)
    answer = status["update"]
    assert {k: answer[k] for k in ("id", "model", "state", "reason", "name", "version", "previous_version")} == {
        "id": request.id,
        "model": B.location,
        "state": "SERVING",
        "reason": None,
        "name": "Sentiment Prediction",
        "version": B.version,
        "previous_version": A.version,
    }
    assert [(m["version"], m["request"], m["first_batch"]) for m in status["models"]] == [
        (A.version, None, 0),
        (B.version, request.id, None),
    ]
    # The replaced query's last batch, late on Spark's listener bus, is not where the new model began.
    deployment.tracker.progress(progress("run-1", 4, 30, {"0": 100, "1": 90}))
    assert status_of(tmp_path)["models"][1]["first_batch"] is None
    deployment.tracker.progress(progress("run-2", 5, 30, {"0": 115, "1": 105}))
    deployment.tracker.progress(progress("run-2", 6, 30, {"0": 130, "1": 120}))
    entry = status_of(tmp_path)["models"][1]
    assert (entry["first_batch"], entry["first_offsets"]) == (5, {"0": 115, "1": 105})
    assert updates.model == B
    assert updates.poll(after) is after  # nothing pending: nothing done
    assert len(deployment.calls) == 6


def test_a_rollback_is_a_change_like_any_other(deployment: FakeDeployment, tmp_path: Path) -> None:
    updates, query = started(deployment)
    ask(tmp_path, B.location)
    query = updates.poll(query)
    ask(tmp_path, A.location)
    query = updates.poll(query)
    assert query == FakeQuery("run-3", A)
    status = status_of(tmp_path)
    assert [m["version"] for m in status["models"]] == [A.version, B.version, A.version]
    assert (status["update"]["state"], status["update"]["previous_version"]) == ("SERVING", B.version)
    assert serving_location(status) == A.location


def test_a_model_that_fails_its_check_is_refused_and_the_serving_one_goes_on(
    deployment: FakeDeployment, tmp_path: Path
) -> None:
    updates, query = started(deployment)
    request = ask(tmp_path, "/models/not-a-model")
    assert updates.poll(query) is query
    assert deployment.calls == [("prepare", A.version), ("start", A.version), ("check", "/models/not-a-model")]
    status = status_of(tmp_path)
    assert (status["update"]["id"], status["update"]["state"], status["update"]["reason"]) == (
        request.id,
        "REFUSED",
        "model location /models/not-a-model: not a saved Spark ML PipelineModel (no metadata/ folder)",
    )
    assert [m["version"] for m in status["models"]] == [A.version]
    assert not (tmp_path / REQUEST_FILE).exists()


def test_a_model_with_other_input_fields_is_refused(deployment: FakeDeployment, tmp_path: Path) -> None:
    updates, query = started(deployment)
    ask(tmp_path, STARS.location)
    assert updates.poll(query) is query
    answer = status_of(tmp_path)["update"]
    assert (answer["state"], answer["version"], answer["reason"]) == (
        "REFUSED",
        STARS.version,
        "it reads the input fields [id integer, text string, stars double], but the deployment's messages are "
        f"parsed with [id integer, text string] (version {A.version}); a model with other input fields needs a "
        "deployment of its own",
    )
    assert ("stop", "run-1") not in deployment.calls


def test_a_refusal_reason_passes_through_the_scrubber(tmp_path: Path) -> None:
    deployment = FakeDeployment(
        tracker_at(tmp_path, connection_scrubber([SECRET_CONNECTION])), run_started_s=time.time() - 1
    )
    updates, query = started(deployment)
    ask(tmp_path, "/models/pa55word")
    updates.poll(query)
    text = (tmp_path / "status.json").read_text()
    assert "pa55word" not in text
    assert status_of(tmp_path)["update"]["reason"].startswith("model location /models/")


def test_a_stale_request_is_refused_without_a_check(deployment: FakeDeployment, tmp_path: Path) -> None:
    updates, query = started(deployment)
    request = ask(tmp_path, B.location, "2020-01-01T00:00:00.000Z")
    assert updates.poll(query) is query
    answer = status_of(tmp_path)["update"]
    assert (answer["id"], answer["state"], answer["reason"]) == (
        request.id,
        "REFUSED",
        f"the request was written at 2020-01-01T00:00:00.000Z, before this run began; the deployment serves "
        f"version {A.version}; ask again",
    )
    assert deployment.calls == [("prepare", A.version), ("start", A.version)]


def test_the_serving_version_again_changes_nothing(deployment: FakeDeployment, tmp_path: Path) -> None:
    updates, query = started(deployment)
    ask(tmp_path, A.location)
    assert updates.poll(query) is query
    answer = status_of(tmp_path)["update"]
    assert (answer["state"], answer["reason"]) == ("SERVING", f"already serving version {A.version}; nothing changed")
    assert len(status_of(tmp_path)["models"]) == 1


def test_no_change_while_the_deployment_stops(deployment: FakeDeployment, tmp_path: Path) -> None:
    updates, query = started(deployment)
    deployment.stopping = True
    ask(tmp_path, B.location)
    assert updates.poll(query) is query
    assert status_of(tmp_path)["update"]["reason"] == "the deployment is stopping"


def test_a_query_that_does_not_start_with_the_new_model_starts_again_with_the_old(
    deployment: FakeDeployment, tmp_path: Path
) -> None:
    deployment.fail_start_of.add(B.location)
    updates, query = started(deployment)
    ask(tmp_path, B.location)
    after = updates.poll(query)
    assert after == FakeQuery("run-2", A)
    assert deployment.calls[-5:] == [
        ("prepare", B.version),
        ("stop", "run-1"),
        ("start", B.version),
        ("prepare", A.version),
        ("start", A.version),
    ]
    status = status_of(tmp_path)
    assert [m["version"] for m in status["models"]] == [A.version]
    assert (status["update"]["state"], status["update"]["reason"]) == (
        "REFUSED",
        f"the query did not start with it (RuntimeError: cannot start with {B.version}); serving version "
        f"{A.version} again",
    )
    assert updates.model == A


def test_a_model_whose_query_cannot_be_built_is_refused_before_the_stop(
    deployment: FakeDeployment, tmp_path: Path
) -> None:
    deployment.fail_prepare_of.add(B.location)
    updates, query = started(deployment)
    ask(tmp_path, B.location)
    assert updates.poll(query) is query
    assert ("stop", "run-1") not in deployment.calls
    status = status_of(tmp_path)
    assert (status["update"]["state"], status["update"]["reason"], status["reason"]) == (
        "REFUSED",
        f"the query cannot be built with it (RuntimeError: cannot build a plan with {B.version})",
        None,
    )
    assert [m["version"] for m in status["models"]] == [A.version]


def test_a_request_the_run_will_not_handle_is_answered_when_it_ends(deployment: FakeDeployment, tmp_path: Path) -> None:
    updates, _ = started(deployment)
    request = ask(tmp_path, B.location)
    updates.refuse_pending("the deployment is stopping (job stop)")
    answer = status_of(tmp_path)["update"]
    assert (answer["id"], answer["state"], answer["reason"]) == (
        request.id,
        "REFUSED",
        "the deployment is stopping (job stop)",
    )
    assert not (tmp_path / REQUEST_FILE).exists()


def test_a_file_that_is_not_a_request_is_removed(deployment: FakeDeployment, tmp_path: Path) -> None:
    updates, query = started(deployment)
    (tmp_path / REQUEST_FILE).write_text("{oops")
    assert updates.poll(query) is query
    assert not (tmp_path / REQUEST_FILE).exists()
    assert status_of(tmp_path)["update"] is None


def test_a_restart_resumes_the_history_and_the_model_that_served(deployment: FakeDeployment, tmp_path: Path) -> None:
    updates, query = started(deployment)
    deployment.tracker.progress(progress(query.runId, 0, 30, None))
    ask(tmp_path, B.location)
    updates.poll(query)
    # A crash before B's first batch; the next run reads the history and goes on with B.
    again = FakeDeployment(tracker_at(tmp_path), run_started_s=time.time())
    assert serving_location(again.tracker.status) == B.location
    resumed, query = started(again, B)
    assert [m["version"] for m in status_of(tmp_path)["models"]] == [A.version, B.version]
    again.tracker.progress(progress(query.runId, 7, 30, {"0": 200, "1": 180}))
    entry = status_of(tmp_path)["models"][-1]
    assert (entry["first_batch"], entry["first_offsets"]) == (7, {"0": 200, "1": 180})
    assert status_of(tmp_path)["totals"]["records_in"] == 60
    # A run that serves another model than the history's last (no history of it) opens an entry.
    third = FakeDeployment(tracker_at(tmp_path), run_started_s=time.time())
    started(third, A)
    assert [m["version"] for m in status_of(tmp_path)["models"]] == [A.version, B.version, A.version]
    assert resumed.model == B


# -- `job update` against a fake deployment ---------------------------------------------------------------


def locations(tmp_path: Path, state: bool = True) -> DeploymentLocations:
    return DeploymentLocations("dep", str(tmp_path / "checkpoint"), str(tmp_path / "state") if state else None)


class AnsweringDeployment:
    """A running deployment as `job update` sees it: a status document with a fresh heartbeat, and a thread that
    handles requests as the run loop does (ModelUpdates, with fake checks and queries)."""

    def __init__(self, state: Path, answers: bool = True) -> None:
        self.fake = FakeDeployment(tracker_at(state), run_started_s=time.time() - 1)
        self.fake.tracker.set_state("RUNNING")
        self.fake.tracker.beat()
        self.updates, self.query = started(self.fake)
        self.answers = answers
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._done.wait(0.05):
            self.fake.tracker.beat()
            if self.answers:
                self.query = self.updates.poll(self.query)

    def stop(self) -> None:
        self._done.set()
        self._thread.join(timeout=5)


@pytest.fixture
def running(tmp_path: Path) -> Iterator[AnsweringDeployment]:
    deployment = AnsweringDeployment(tmp_path / "state")
    yield deployment
    deployment.stop()


def test_update_exits_0_once_the_new_version_serves(
    running: AnsweringDeployment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert control.update(locations(tmp_path), B.location, poll_s=0.05) == 0
    out = capsys.readouterr().out.splitlines()
    request_id = status_of(tmp_path / "state")["update"]["id"]
    assert out == [
        f"dep: asked to serve /models/b (request {request_id}); version {A.version} scores while the deployment "
        "checks it",
        f"dep: SERVING Sentiment Prediction version {B.version} from /models/b (was version {A.version})",
    ]
    assert running.query == FakeQuery("run-2", B)


def test_update_exits_1_with_the_reason_when_the_deployment_refuses(
    running: AnsweringDeployment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert control.update(locations(tmp_path), "/models/nothing", poll_s=0.05) == 1
    err = capsys.readouterr().err
    assert err == (
        "error: dep REFUSED /models/nothing: model location /models/nothing: not a saved Spark ML PipelineModel "
        f"(no metadata/ folder); it goes on serving version {A.version}\n"
    )
    assert running.query == FakeQuery("run-1", A)


def test_update_needs_a_state_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert control.update(locations(tmp_path, state=False), B.location) == 2
    assert capsys.readouterr().err == (
        "error: dep has no state folder (state_location): job update asks the running deployment through it, as job "
        "stop does, and cannot reach a deployment without one\n"
    )


def test_update_refuses_a_location_with_a_password(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert control.update(locations(tmp_path), "s3a://KEY:pa55word@bucket/m") == 2
    assert "pa55word" not in capsys.readouterr().err
    assert not (tmp_path / "state" / REQUEST_FILE).exists()


def test_update_of_a_deployment_that_is_not_running(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert control.update(locations(tmp_path), B.location) == 1
    assert capsys.readouterr().err == "error: dep is not running (not started); nothing to update\n"

    tracker = tracker_at(tmp_path / "state")
    tracker.set_state("STOPPED", "stopped gracefully (job stop)")
    assert control.update(locations(tmp_path), B.location) == 1
    assert capsys.readouterr().err == (
        "error: dep is not running (STOPPED: stopped gracefully (job stop)); nothing to update\n"
    )

    tracker.set_state("RUNNING")
    tracker.status["heartbeat_at"] = "2020-01-01T00:00:00.000Z"
    tracker.status["host"] = "another-host"
    StateStore(str(tmp_path / "state")).write_status(tracker.status)
    assert control.update(locations(tmp_path), B.location) == 1
    assert capsys.readouterr().err.startswith("error: dep is not running (FAILED: no heartbeat for ")
    assert not (tmp_path / "state" / REQUEST_FILE).exists()


def test_update_stops_waiting_when_the_deployment_stops(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    silent = AnsweringDeployment(tmp_path / "state", answers=False)
    timer = threading.Timer(0.5, lambda: silent.fake.tracker.set_state("STOPPED", "stopped gracefully (SIGTERM)"))
    timer.start()
    try:
        assert control.update(locations(tmp_path), B.location, poll_s=0.05) == 1
    finally:
        timer.cancel()
        silent.stop()
    assert capsys.readouterr().err == (
        "error: dep is no longer running (STOPPED: stopped gracefully (SIGTERM)); the model was not changed\n"
    )
    assert not (tmp_path / "state" / REQUEST_FILE).exists()  # withdrawn: the next run will not find it


def test_update_gives_up_at_its_timeout_and_withdraws_a_request_not_picked_up(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    silent = AnsweringDeployment(tmp_path / "state", answers=False)
    try:
        assert control.update(locations(tmp_path), B.location, timeout_s=0.3, poll_s=0.05) == 1
    finally:
        silent.stop()
    assert capsys.readouterr().err == (
        "error: no answer from dep within 0.3 s; the deployment had not picked it up; the request is withdrawn\n"
    )
    assert not (tmp_path / "state" / REQUEST_FILE).exists()


def test_update_refuses_while_another_request_is_pending(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    silent = AnsweringDeployment(tmp_path / "state", answers=False)
    try:
        other = ask(tmp_path / "state", A.location)
        assert control.update(locations(tmp_path), B.location, timeout_s=1, poll_s=0.05) == 1
    finally:
        silent.stop()
    assert capsys.readouterr().err == (
        f"error: another update is pending (request {other.id} for /models/a, asked at {other.requested_at}); wait "
        "for its answer in job status, then ask again\n"
    )
    assert read_request(StateStore(str(tmp_path / "state"))) == other


def test_the_command_line_wires_update(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    topics = {"in": "in", "out": "out", "dlq": "dlq"}
    without_state = specs.write_spec(tmp_path / "a.yaml", specs.spec_document("dep", topics, tmp_path / "cp"))
    with pytest.raises(SystemExit) as exited:
        main.cli(["update", "--spec", str(without_state)])
    assert exited.value.code == 2
    assert "--model" in capsys.readouterr().err
    assert main.cli(["update", "--spec", str(without_state), "--model", B.location]) == 2
    assert capsys.readouterr().err.startswith("error: dep has no state folder")
    with_state = specs.write_spec(
        tmp_path / "b.yaml", specs.spec_document("dep", topics, tmp_path / "cp", state=tmp_path / "state")
    )
    assert main.cli(["update", "--spec", str(with_state), "--model", "relative/model", "--timeout", "1"]) == 1
    assert capsys.readouterr().err == "error: dep is not running (not started); nothing to update\n"


# -- `job status` ---------------------------------------------------------------------------------------------


def test_job_status_shows_the_last_update_and_the_history(deployment: FakeDeployment, tmp_path: Path) -> None:
    updates, query = started(deployment)
    deployment.tracker.progress(progress(query.runId, 0, 30, None))
    request = ask(tmp_path, B.location)
    query = updates.poll(query)
    deployment.tracker.progress(progress(query.runId, 1, 30, {"0": 15, "1": 15}))
    refused = ask(tmp_path, STARS.location)
    updates.poll(query)
    status = status_of(tmp_path)
    since = [m["since"] for m in status["models"]]
    lines = control.status_lines(status)
    assert f"model:       Sentiment Prediction version {B.version} at /models/b" in lines
    assert lines[-4:] == [
        f"last update: REFUSED /models/stars (request {refused.id}, {status['update']['decided_at']}): it reads the "
        "input fields [id integer, text string, stars double], but the deployment's messages are parsed with "
        f"[id integer, text string] (version {B.version}); a model with other input fields needs a deployment of "
        "its own",
        "models:      (oldest first: version, name, serving since, first offsets, location)",
        f"  {A.version}  Sentiment Prediction  since {since[0]}  from batch 0 (the checkpoint's first)  /models/a",
        f"  {B.version}  Sentiment Prediction  since {since[1]}  from batch 1, offsets 0: 15, 1: 15  /models/b",
    ]
    assert status["models"][1]["request"] == request.id
    assert update_line({"update": {**status["update"], "state": "CHECKING", "decided_at": None}}) == (
        f"CHECKING /models/stars (request {refused.id}, {refused.requested_at})"
    )
    assert history_lines({"models": [{**status["models"][1], "first_batch": None}]})[0].endswith(
        "  no batch yet  /models/b"
    )


# -- a restart -------------------------------------------------------------------------------------------------


def test_a_restart_serves_the_model_the_history_names_and_says_so(
    deployment: FakeDeployment, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    topics = {"in": "in", "out": "out", "dlq": "dlq"}
    spec = specs.build_spec(specs.spec_document("dep", topics, tmp_path / "cp", model=A.location, state=tmp_path))
    assert model_to_serve(spec, tracker_at(tmp_path / "never-ran")) == A.location  # no history: the spec's
    updates, query = started(deployment)
    ask(tmp_path, B.location)
    updates.poll(query)
    caplog.set_level("INFO", logger="job.runtime.deploy")
    assert model_to_serve(spec, tracker_at(tmp_path)) == B.location
    assert caplog.messages == [
        f"serving the model at {B.location}, the last one the model history in the state folder ({tmp_path}) "
        f"names, instead of the spec's model.location {A.location}; `job update` changes it"
    ]


# -- watch mode ------------------------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_spec_takes_a_pointer_to_watch(tmp_path: Path) -> None:
    topics = {"in": "in", "out": "out", "dlq": "dlq"}
    document = specs.spec_document("dep", topics, tmp_path / "cp", model="/models/a")
    assert specs.build_spec(document).model_watch is None
    watched = specs.build_spec({**document, "model": {"location": "/models/a", "watch": "/pointers/dep"}})
    assert (watched.model_location, watched.model_watch) == ("/models/a", "/pointers/dep")


def test_the_pointer_is_read_every_interval_and_a_change_is_asked_for_once() -> None:
    content = {"text": "/models/a\n"}
    reads: list[float] = []
    clock = Clock()

    def read() -> str | None:
        reads.append(clock.now)
        return content["text"]

    watch = PointerWatch("/pointers/dep", read, interval_s=5.0, clock=clock)
    assert watch.due_request("/models/a") is None  # it names the serving model
    clock.now = 3.0
    content["text"] = "/models/b\n"
    assert watch.due_request("/models/a") is None  # not yet due: not read
    clock.now = 5.0
    request = watch.due_request("/models/a")
    assert request is not None and request.model == "/models/b" and request.id.startswith("watch-")
    clock.now = 10.0
    assert watch.due_request("/models/a") is None  # the same content: asked for once (refused, say)
    content["text"] = "/models/a"
    clock.now = 15.0
    assert watch.due_request("/models/a") is None  # back to the serving one: nothing to do
    content["text"] = "/models/b"
    clock.now = 20.0
    again = watch.due_request("/models/a")
    assert again is not None and again.model == "/models/b"
    assert reads == [0.0, 5.0, 10.0, 15.0, 20.0]


def test_a_pointer_that_cannot_be_read_or_is_empty_changes_nothing(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    outcomes: list[str | Exception | None] = [OSError("gone"), OSError("gone"), None, "  \n", "/models/b"]

    def read() -> str | None:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    watch = PointerWatch("/pointers/dep", read, interval_s=1.0, clock=clock)
    found = []
    for second in range(5):
        clock.now = float(second)
        found.append(watch.due_request("/models/a"))
    assert found[:4] == [None, None, None, None]
    assert found[4] is not None and found[4].model == "/models/b"
    assert caplog.messages == ["cannot read the model pointer /pointers/dep: OSError"]  # once


def test_a_changed_pointer_swaps_like_job_update_and_a_refused_one_is_not_retried(
    deployment: FakeDeployment, tmp_path: Path
) -> None:
    pointer = tmp_path / "pointer"
    pointer.write_text(A.location)
    clock = Clock()
    watch = PointerWatch(str(pointer), lambda: pointer.read_text(), interval_s=5.0, clock=clock)
    updates = deployment.updates(watch)
    updates.begin(A)
    query = deployment.start(A)
    assert updates.poll(query) is query
    pointer.write_text(B.location + "\n")
    clock.now = 5.0
    query = updates.poll(query)
    assert query == FakeQuery("run-2", B)
    status = status_of(tmp_path)
    assert (status["update"]["state"], status["update"]["id"][:6]) == ("SERVING", "watch-")
    assert [m["version"] for m in status["models"]] == [A.version, B.version]
    pointer.write_text("/models/nothing")
    clock.now = 10.0
    assert updates.poll(query) is query
    assert status_of(tmp_path)["update"]["state"] == "REFUSED"
    checks = [c for c in deployment.calls if c[0] == "check"]
    clock.now = 15.0
    assert updates.poll(query) is query
    assert [c for c in deployment.calls if c[0] == "check"] == checks  # not checked again until it changes


def test_a_pointer_naming_a_location_with_a_password_is_refused_without_showing_it(
    deployment: FakeDeployment, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pointer = tmp_path / "pointer"
    pointer.write_text("s3a://KEY:pa55word@bucket/models/b")
    watch = PointerWatch(str(pointer), lambda: pointer.read_text(), clock=Clock())
    updates = deployment.updates(watch)
    updates.begin(A)
    query = deployment.start(A)
    caplog.set_level("INFO")
    assert updates.poll(query) is query
    answer = status_of(tmp_path)["update"]
    assert (answer["state"], answer["model"]) == ("REFUSED", f"the location in {pointer}")
    assert "pa55word" not in (tmp_path / "status.json").read_text() + "\n".join(caplog.messages)
