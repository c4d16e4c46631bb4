"""Changing the model of a running deployment (`job update`): the request file, its answer, and the model history.

`job update` writes a small JSON request (an id, the model's location, when it was asked) into the state folder,
`update-requested.json`. The running deployment picks it up once a second, removes it, and answers it in its status
document under the request's id (`update`: CHECKING, then SERVING or REFUSED with the reason), so the command can
tell its own answer from another's. The status document also keeps the models that served, oldest first
(`models`): a restart resumes with the last of them.

The mechanics of a swap (stop the query at a batch boundary, start it again with the new model on the same
checkpoint) are handed to `ModelUpdates` by the run loop in `deploy.py`, so this module imports neither.

A request entry:   {id, model, requested_at}
`update` (answer): {id, model, requested_at, state (CHECKING | SERVING | REFUSED), reason, name, version,
                    previous_version, decided_at}
`models` entry:    {name, version, location, since, first_batch, first_offsets {partition: offset}, request}
                   (`first_batch` and `first_offsets` come from the first micro-batch with rows after the change,
                   its `sources[0].startOffset`; null until then, and `first_offsets` null for a batch that started
                   a new checkpoint, which has no start offsets)
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar
from urllib.parse import urlsplit

from job.runtime.failures import MAX_REASON, short_reason
from job.runtime.health import parse_time
from job.runtime.model import ModelError
from job.runtime.status import StateStore, StatusTracker, now_iso

logger = logging.getLogger(__name__)

REQUEST_FILE = "update-requested.json"
CHECKING, SERVING, REFUSED = "CHECKING", "SERVING", "REFUSED"
# The history is for people and for a restart (which reads its last entry); a bound keeps the document small.
MAX_HISTORY = 100
# How often a deployment with `model.watch` reads its pointer file.
WATCH_INTERVAL_S = 5.0


class UpdateRequestError(ValueError):
    """A request file that is not one (not JSON, a field missing): it cannot be answered, since it has no id."""


@dataclass(frozen=True)
class UpdateRequest:
    """What `job update` asks for. No secret: the location is refused when it carries one (`location_problem`)."""

    id: str
    model: str
    requested_at: str

    def to_json(self) -> str:
        return json.dumps({"id": self.id, "model": self.model, "requested_at": self.requested_at}) + "\n"

    @classmethod
    def from_json(cls, text: str) -> UpdateRequest:
        try:
            document = json.loads(text)
        except ValueError as exc:
            raise UpdateRequestError(f"not JSON ({exc})") from None
        if not isinstance(document, dict):
            raise UpdateRequestError("not a JSON object")
        fields = {key: document.get(key) for key in ("id", "model", "requested_at")}
        texts = {key: value for key, value in fields.items() if isinstance(value, str) and value.strip()}
        missing = [key for key in fields if key not in texts]
        if missing:
            raise UpdateRequestError(f"{', '.join(missing)} missing or not a string")
        return cls(id=texts["id"], model=texts["model"], requested_at=texts["requested_at"])


def new_request(model: str, requested_at: str | None = None) -> UpdateRequest:
    return UpdateRequest(id=uuid.uuid4().hex[:12], model=model, requested_at=requested_at or now_iso())


def location_problem(model: str) -> str | None:
    """Why a model location may not go into the request file and the status document (which anyone with the state
    folder reads), or None: a password in the URI (`s3a://key:secret@bucket`), or a query string, where tokens
    (an Azure SAS) live. Such credentials belong in the Hadoop configuration."""
    if not model.strip():
        return "the model location is empty"
    parts = urlsplit(model)
    if parts.scheme and "@" in parts.netloc and parts.password is not None:
        return "the model location holds a password (user:password@…); give credentials in the Hadoop configuration"
    if parts.scheme and parts.query:
        return (
            "the model location has a query string (…?…), where tokens live; give credentials in the Hadoop "
            "configuration"
        )
    return None


def local_path_made_absolute(model: str) -> str:
    """A relative path is the caller's (as on every command line of the job); the driver runs elsewhere."""
    if urlsplit(model).scheme or os.path.isabs(model):
        return model
    return os.path.abspath(model)


# -- the request file ------------------------------------------------------------------------------------


def write_request(store: StateStore, request: UpdateRequest) -> None:
    store.write_text(REQUEST_FILE, request.to_json())


def read_request(store: StateStore) -> UpdateRequest | None:
    """The pending request, None without one; UpdateRequestError for a file that is not a request."""
    text = store.read_text(REQUEST_FILE)
    return None if text is None else UpdateRequest.from_json(text)


def withdraw(store: StateStore, request_id: str) -> bool:
    """Remove the request file if it still holds this request (not one another `job update` wrote since)."""
    try:
        pending = read_request(store)
    except UpdateRequestError:
        return False
    if pending is None or pending.id != request_id:
        return False
    store.delete(REQUEST_FILE)
    return True


def is_stale(request: UpdateRequest, run_started_s: float) -> bool:
    """Written before this run began: meant for an earlier run, whose `job update` has long been told it ended."""
    written = parse_time(request.requested_at)
    return written is None or written < run_started_s


def answer_for(status: Mapping[str, Any] | None, request_id: str) -> dict[str, Any] | None:
    """The deployment's answer to this request in its status document, None while it has not answered it."""
    update = (status or {}).get("update")
    return update if isinstance(update, dict) and update.get("id") == request_id else None


# -- the history -------------------------------------------------------------------------------------------


class ServedModel(Protocol):
    """What the history needs of a model (`job.runtime.model.LoadedModel` is one)."""

    @property
    def name(self) -> str: ...

    @property
    def version(self) -> str: ...

    @property
    def location(self) -> str: ...

    @property
    def input_fields(self) -> tuple[tuple[str, str], ...]: ...


def history_entry(model: ServedModel, request_id: str | None = None, since: str | None = None) -> dict[str, Any]:
    return {
        "name": model.name,
        "version": model.version,
        "location": model.location,
        "since": since or now_iso(),
        "first_batch": None,
        "first_offsets": None,
        "request": request_id,
    }


def serving_entry(status: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The history's last entry: the model that served last (and serves, while the deployment runs)."""
    models = (status or {}).get("models")
    if not isinstance(models, list) or not models or not isinstance(models[-1], dict):
        return None
    return models[-1]


def serving_location(status: Mapping[str, Any] | None) -> str | None:
    """Where the model that served last is: a restart serves it, whatever the spec's model.location says."""
    entry = serving_entry(status)
    location = entry.get("location") if entry else None
    return location if isinstance(location, str) and location else None


def first_offsets(progress: Mapping[str, Any]) -> dict[str, int] | None:
    """The micro-batch's start offsets per partition (`sources[0].startOffset`), None when it has none."""
    sources = progress.get("sources") or []
    if not sources:
        return None
    start = sources[0].get("startOffset")
    if isinstance(start, str):
        try:
            start = json.loads(start)
        except ValueError:
            return None
    if not isinstance(start, dict) or not start:
        return None
    found: dict[str, int] = {}
    several = len(start) > 1
    for topic, partitions in start.items():
        if not isinstance(partitions, dict):
            return None
        for partition, offset in sorted(partitions.items(), key=lambda item: int(item[0])):
            found[f"{topic}/{partition}" if several else str(partition)] = int(offset)
    return found


def incompatibility(serving: ServedModel, candidate: ServedModel) -> str | None:
    """Why the deployment cannot swap to `candidate`, whose messages it parses with the serving model's input fields.

    Another set of input fields would change what a valid message is in the middle of the stream: every message
    of the producers would become a dead letter (or the new field would be missing from it).
    """
    if set(candidate.input_fields) == set(serving.input_fields):
        return None
    return (
        f"it reads the input fields {_fields(candidate.input_fields)}, but the deployment's messages are parsed with "
        f"{_fields(serving.input_fields)} (version {serving.version}); a model with other input fields needs a "
        "deployment of its own"
    )


def _fields(fields: Sequence[tuple[str, str]]) -> str:
    return "[" + ", ".join(f"{name} {kind}" for name, kind in fields) + "]"


class PointerWatch:
    """`model: {watch: POINTER}`: a file whose content is a model location. Read every `interval_s`; a change of its
    content to a location other than the serving one is a request like `job update`'s (id `watch-…`), made once:
    a refused location is tried again only after the pointer changes again."""

    def __init__(
        self,
        pointer: str,
        read: Callable[[], str | None],
        interval_s: float = WATCH_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.pointer = pointer
        self._read = read
        self._interval_s = interval_s
        self._clock = clock
        self._next = -float("inf")
        self._seen: str | None = None
        self._failing = False

    def due_request(self, serving_location: str) -> UpdateRequest | None:
        now = self._clock()
        if now < self._next:
            return None
        self._next = now + self._interval_s
        try:
            text = self._read()
        except Exception as exc:  # the pointer's storage: say so once, keep serving, read it again next time
            if not self._failing:
                logger.warning("cannot read the model pointer %s: %s", self.pointer, type(exc).__name__)
            self._failing = True
            return None
        self._failing = False
        location = (text or "").strip()
        if not location or location == self._seen:
            return None
        self._seen = location
        if location == serving_location:
            return None
        return UpdateRequest(id=f"watch-{uuid.uuid4().hex[:8]}", model=location, requested_at=now_iso())


# -- the deployment's side ---------------------------------------------------------------------------------


class Query(Protocol):
    """What the update needs of a running query (pyspark's StreamingQuery is one)."""

    @property
    def runId(self) -> str: ...  # noqa: N802


Q = TypeVar("Q", bound=Query)
M = TypeVar("M", bound=ServedModel)


class ModelUpdates(Generic[Q, M]):
    """The deployment's side of `job update`: the history, the requests, the check, and the swap.

    `check(location)` loads and fully checks a model (raising with the reason when it cannot serve);
    `stop(query)` ends the query after the batch in flight, committed; `prepare(model)` builds the query's plan with
    that model, and the function it returns starts it on the same checkpoint (the plan is built before the stop, so
    the change waits only for the start); `stopping()` tells whether the deployment is being stopped. Without a
    state folder (`tracker.store` None) there is no request to read; the history is kept all the same.
    """

    def __init__(
        self,
        tracker: StatusTracker,
        run_started_s: float,
        check: Callable[[str], M],
        stop: Callable[[Q], None],
        prepare: Callable[[M], Callable[[], Q]],
        stopping: Callable[[], bool] = lambda: False,
        watch: PointerWatch | None = None,
    ) -> None:
        self.tracker = tracker
        self.watch = watch
        self.run_started_s = run_started_s
        self._check = check
        self._stop = stop
        self._prepare = prepare
        self._stopping = stopping
        self.model: M | None = None
        # The run whose progress does not count for the last history entry's first offsets (the query it replaced);
        # `_awaiting` is False once they are known. Read by the listener's hook, under the tracker's lock.
        self._awaiting = False
        self._replaced_run: str | None = None
        tracker.add_progress_hook(self._first_batch)

    def begin(self, model: M) -> None:
        """The model this run serves first: a new history entry, unless it continues the last one (a restart)."""
        self.model = model

        def change(status: dict[str, Any]) -> None:
            last = serving_entry(status)
            continues = last is not None and (last.get("version"), last.get("location")) == (
                model.version,
                model.location,
            )
            if not continues:
                _append(status, history_entry(model))
            self._awaiting = not continues or (last is not None and last.get("first_batch") is None)
            self._replaced_run = None

        self.tracker.edit(change)

    def poll(self, query: Q) -> Q:
        """Handle a pending request (`job update`'s, or a change of the watched pointer), if there is one; the query
        that serves afterwards (a new one after a swap)."""
        request = self._requested()
        if request is None and self.watch is not None and self.model is not None:
            request = self.watch.due_request(self.model.location)
            problem = None if request is None else location_problem(request.model)
            if request is not None and problem is not None:
                # Its content stays out of the status and the log: it may hold what the problem is about.
                hidden = UpdateRequest(request.id, f"the location in {self.watch.pointer}", request.requested_at)
                self._refuse(hidden, problem)
                return query
            if request is not None:
                logger.info("the model pointer %s names %s", self.watch.pointer, request.model)
        return query if request is None else self.handle(request, query)

    def _requested(self) -> UpdateRequest | None:
        """`job update`'s request from the state folder, removed from it: answered from here on in the status."""
        store = self.tracker.store
        if store is None:
            return None
        try:
            request = read_request(store)
        except UpdateRequestError as exc:
            logger.warning("removed %s from the state folder: it is not an update request (%s)", REQUEST_FILE, exc)
            store.delete(REQUEST_FILE)
            return None
        except Exception as exc:  # the state folder's storage: say so, keep serving, try again next time
            logger.warning("could not read %s: %s", REQUEST_FILE, type(exc).__name__)
            return None
        if request is not None:
            withdraw(store, request.id)
        return request

    def handle(self, request: UpdateRequest, query: Q) -> Q:
        """Check the requested model while `query` keeps scoring; swap at a batch boundary, or refuse and keep it."""
        serving = self.model
        if serving is None:
            raise RuntimeError("ModelUpdates.handle before begin")
        if is_stale(request, self.run_started_s):
            self._refuse(
                request,
                f"the request was written at {request.requested_at}, before this run began; the deployment "
                f"serves version {serving.version}; ask again",
            )
            return query
        self._answer(request, CHECKING)
        logger.info(
            "update %s: checking the model at %s while version %s serves", request.id, request.model, serving.version
        )
        try:
            model = self._check(request.model)
        except Exception as exc:  # whatever the check raises, the serving model goes on
            self._refuse(request, _first_line(exc))
            return query
        problem = incompatibility(serving, model)
        if problem is not None:
            self._refuse(request, problem, model)
            return query
        if model.version == serving.version:
            self._answer(request, SERVING, f"already serving version {model.version}; nothing changed", model)
            return query
        if self._stopping():
            self._refuse(request, "the deployment is stopping", model)
            return query
        return self._swap(request, query, serving, model)

    def _swap(self, request: UpdateRequest, query: Q, serving: M, model: M) -> Q:
        self.tracker.set_reason(f"changing the model to version {model.version} after the batch in flight")
        replaced = query.runId
        try:
            start = self._prepare(model)
        except Exception as exc:  # the plan cannot be built with it: the old query has not been touched
            self._refuse(request, f"the query cannot be built with it ({short_reason(exc)})", model)
            self.tracker.set_reason(None)
            return query
        self._stop(query)  # the batch in flight is committed: the new model starts at the next offsets
        self.tracker.edit(lambda status: self._now_serving(status, model, request.id, replaced))
        try:
            started = start()
        except Exception as exc:
            reason = short_reason(exc)
            logger.error("update %s: the query did not start with version %s: %s", request.id, model.version, reason)
            self.tracker.edit(lambda status: self._not_serving(status, request.id))
            started = self._prepare(serving)()  # from the same offsets; a failure here is the deployment's failure
            self.tracker.set_reason(None)
            self._refuse(
                request, f"the query did not start with it ({reason}); serving version {serving.version} again", model
            )
            return started
        self.model = model
        self.tracker.set_reason(None)
        self._answer(request, SERVING, None, model, previous=serving.version)
        logger.info("update %s: version %s serves from now on (was %s)", request.id, model.version, serving.version)
        return started

    def _now_serving(self, status: dict[str, Any], model: M, request_id: str | None, replaced: str) -> None:
        _append(status, history_entry(model, request_id))
        self._awaiting = True
        self._replaced_run = replaced

    def _not_serving(self, status: dict[str, Any], request_id: str) -> None:
        """Take back the entry of a model that never served (its query did not start): the previous one goes on."""
        last = serving_entry(status)
        if last is not None and last.get("request") == request_id:
            status["models"] = status["models"][:-1]
        self._awaiting = False

    def refuse_pending(self, reason: str) -> None:
        """The run ends: answer a request it will not handle, so its `job update` does not wait for nothing."""
        store = self.tracker.store
        if store is None:
            return
        try:
            request = read_request(store)
        except Exception:
            return
        if request is not None and withdraw(store, request.id):
            self._refuse(request, reason)

    def _first_batch(self, status: dict[str, Any], progress: dict[str, Any]) -> None:
        """The listener's hook: the first micro-batch with rows after a change names where the new model began."""
        if not self._awaiting or not int(progress.get("numInputRows") or 0):
            return
        if self._replaced_run is not None and progress.get("runId") == self._replaced_run:
            return  # the replaced query's last event, late on Spark's listener bus
        entry = serving_entry(status)
        if entry is None:
            return
        entry["first_batch"] = progress.get("batchId")
        entry["first_offsets"] = first_offsets(progress)
        self._awaiting = False

    def _refuse(self, request: UpdateRequest, reason: str, model: ServedModel | None = None) -> None:
        logger.warning("update %s refused (%s): %s", request.id, request.model, self.tracker.scrub(reason))
        self._answer(request, REFUSED, reason, model)

    def _answer(
        self,
        request: UpdateRequest,
        state: str,
        reason: str | None = None,
        model: ServedModel | None = None,
        previous: str | None = None,
    ) -> None:
        scrub = self.tracker.scrub
        answer = {
            "id": request.id,
            "model": scrub(request.model),
            "requested_at": request.requested_at,
            "state": state,
            "reason": scrub(reason)[:MAX_REASON] if reason else None,
            "name": model.name if model else None,
            "version": model.version if model else None,
            "previous_version": previous,
            "decided_at": None if state == CHECKING else now_iso(),
        }
        self.tracker.edit(lambda status: status.__setitem__("update", answer))


def _append(status: dict[str, Any], entry: dict[str, Any]) -> None:
    models = status.get("models")
    history = list(models) if isinstance(models, list) else []
    status["models"] = [*history, entry][-MAX_HISTORY:]


def _first_line(exc: BaseException) -> str:
    """A model check's reason: its ModelError's first line (they are written for people), else the deepest cause."""
    text = str(exc).strip()
    if isinstance(exc, ModelError) and text:
        return text.splitlines()[0]
    return short_reason(exc)


# -- for people --------------------------------------------------------------------------------------------


def update_line(status: Mapping[str, Any]) -> str | None:
    """The last update's answer in one line, for `job status`."""
    update = status.get("update")
    if not isinstance(update, dict):
        return None
    state = update.get("state")
    when = update.get("decided_at") or update.get("requested_at")
    what = f"{update.get('model')} (request {update.get('id')}, {when})"
    if state == SERVING:
        version = update.get("version")
        return f"SERVING {what}: version {version}" + (f"; {update['reason']}" if update.get("reason") else "")
    if state == REFUSED:
        return f"REFUSED {what}: {update.get('reason')}"
    return f"{state} {what}"


def history_lines(status: Mapping[str, Any]) -> list[str]:
    """The models that served, oldest first, one line each, for `job status`."""
    lines = []
    models = status.get("models")
    for entry in models if isinstance(models, list) else []:
        if not isinstance(entry, dict):
            continue
        offsets = entry.get("first_offsets")
        if entry.get("first_batch") is None:
            start = "no batch yet"
        elif isinstance(offsets, dict) and offsets:
            where = ", ".join(f"{partition}: {offset}" for partition, offset in offsets.items())
            start = f"from batch {entry['first_batch']}, offsets {where}"
        else:
            start = f"from batch {entry['first_batch']} (the checkpoint's first)"
        lines.append(
            f"{entry.get('version')}  {entry.get('name')}  since {entry.get('since')}  {start}  {entry.get('location')}"
        )
    return lines
