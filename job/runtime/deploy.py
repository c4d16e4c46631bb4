"""Running a deployment: start-up checks, the model, the query, and the loop that waits for a stop, a failure or a
model change (`job update`, whose mechanics are in `job.runtime.update`).

`stop_at_batch_boundary` is the one way the job stops a query gracefully (the run loop and a model swap use it).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import yaml
from pyspark import SparkContext
from pyspark.sql import SparkSession
from pyspark.sql.streaming.query import StreamingQuery

from job.runtime import storage
from job.runtime.cluster_check import StartupError, check_topics
from job.runtime.connection import loggable, sink_options, source_options
from job.runtime.failures import full_text, short_reason
from job.runtime.health import HEARTBEAT_INTERVAL_S, heartbeat_bound_s, interval_seconds
from job.runtime.model import LoadedModel, ModelError
from job.runtime.publish import load_serving_model
from job.runtime.query import prepare_query, start_query
from job.runtime.secrets import REDACTED
from job.runtime.session import deployment_session
from job.runtime.status import FAILED, INITIALIZING, STOPPED, StateStore, StatusTracker, now_iso
from job.runtime.stopping import ProcessWatch, StopRequest
from job.runtime.update import ModelUpdates, PointerWatch, serving_location
from job.runtime.values import EXIT_FAILED, EXIT_OK, DeploymentSpec, Topic

logger = logging.getLogger(__name__)


def describe(spec: DeploymentSpec) -> dict[str, Any]:
    """The resolved deployment as shown to a person: no password, API key or JAAS line."""

    def connection(topic: Topic) -> dict[str, Any]:
        c = topic.connection
        shown: dict[str, Any] = {
            "bootstrap_servers": list(c.bootstrap_servers),
            "security_protocol": c.security_protocol,
        }
        if c.sasl_mechanism:
            shown["sasl_mechanism"] = c.sasl_mechanism
            # A Message Hub user is the first part of its API key, so it is masked too, except
            # Event Streams' literal user name 'token'.
            shown["user"] = c.user if c.user == "token" else REDACTED
            shown["password"] = REDACTED
        if c.ssl_ca_location:
            shown["ssl_ca_location"] = c.ssl_ca_location
        if c.ssl_truststore_location:
            shown["ssl_truststore_location"] = c.ssl_truststore_location
            if c.ssl_truststore_password is not None:
                shown["ssl_truststore_password"] = REDACTED
        return {"topic": topic.topic, "connection": shown}

    o = spec.options
    return {
        "name": spec.name,
        "type": "stream",
        "description": spec.description,
        "input": connection(spec.source),
        "output": connection(spec.target),
        "dead_letter": connection(spec.dead_letter),
        "model": {"location": spec.model_location, **({"watch": spec.model_watch} if spec.model_watch else {})},
        "checkpoint_location": spec.checkpoint_location,
        "state_location": spec.state_location,
        "options": {
            "trigger": {o.trigger.kind: o.trigger.interval or True},
            "starting_offsets": o.starting_offsets,
            "max_offsets_per_trigger": o.max_offsets_per_trigger,
            "min_partitions": o.min_partitions,
            "fail_on_data_loss": o.fail_on_data_loss,
            "max_text_length": o.max_text_length,
            "max_message_bytes": o.max_message_bytes,
            "stop_limit": o.stop_limit,
        },
        "kafka_source_options": loggable(source_options(spec)),
        "kafka_sink_options": loggable(sink_options(spec.target.connection, o.kafka)),
        "spark_log_level": spec.spark_log_level,
    }


def validate(spec: DeploymentSpec, check_topics_too: bool = False) -> int:
    """Print the resolved deployment (secrets masked), load the model, and optionally check the topics."""
    print(yaml.safe_dump(describe(spec), sort_keys=False).rstrip())
    spark = deployment_session(spec, app_name=f"validate: {spec.name}")
    try:
        # The same full check as `run`: the model's input schema is what the job parses from each message.
        model = load_serving_model(spark, spec.model_location, spec.options)
        fields = ", ".join(f"{n} {t}" for n, t in model.input_fields)
        print(f"model: {model.name} version {model.version}, labels {list(model.label_values)}, input {fields}")
        if check_topics_too:
            check_topics(spec, spark)
            print("topics: all three found, distinct, the input readable and the outputs writable")
    except (ModelError, StartupError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        spark.stop()
    print("spec OK")
    return EXIT_OK


FAILURE_FILE = "failure.txt"


def run(
    spec: DeploymentSpec,
    scrub: Callable[[str], str],
    stop: StopRequest | None = None,
    run_started_s: float | None = None,
    wrapper: ProcessWatch | None = None,
) -> int:
    """Start the deployment and run it until it is stopped or fails; the status document follows it.

    `stop` is the request the entrypoint's signal handlers set from its first line; `run_started_s` (epoch
    seconds) tells a stop marker written for this run from one left by an earlier run; `wrapper` watches
    spark-submit.sh, whose death ends the job. A stop asked for during start-up ends it before the query starts.
    """
    stop = stop or StopRequest()
    started_s = time.time() if run_started_s is None else run_started_s
    trigger = spec.options.trigger
    local_state = spec.state_location is not None and storage.is_local(spec.state_location)
    store = StateStore(spec.state_location) if spec.state_location is not None and local_state else None
    tracker = StatusTracker(store, spec.name, scrub, stale_after_s=heartbeat_bound_s(trigger.kind, trigger.interval))
    supervisor = Supervisor(tracker, stop, started_s, wrapper)
    supervisor.attach_store()
    tracker.set_state(INITIALIZING)
    supervisor.start()
    spark: SparkSession | None = None
    try:
        if stop.is_set():
            return stopped_during_start_up(tracker, stop)
        spark = deployment_session(spec)
        supervisor.ping = _jvm_ping(spark)
        if spec.state_location is not None and not local_state:
            tracker.attach(StateStore(spec.state_location, spark))
            supervisor.attach_store()
            tracker.set_state(INITIALIZING)
        if stop.is_set():
            return stopped_during_start_up(tracker, stop)
        model = check_topics_and_load_model(spark, spec, tracker)
        if stop.is_set():
            return stopped_during_start_up(tracker, stop)
        updates = model_updates(spark, spec, tracker, stop, started_s)
        updates.begin(model)
        query = start_query(spark, spec, model, tracker)
        return serve(query, spec, tracker, stop, updates)
    except (StartupError, ModelError) as exc:
        reason = scrub(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        tracker.set_state(FAILED, reason)
        logger.error("cannot start deployment %r: %s", spec.name, reason)
        return EXIT_FAILED
    except Exception as exc:  # the query failed, Spark refused it, or the JVM went away: one path for all
        return failed(spec, tracker, scrub, exc, spark)
    finally:
        supervisor.finish()
        if spark is not None:
            spark.stop()


def check_topics_and_load_model(spark: SparkSession, spec: DeploymentSpec, tracker: StatusTracker) -> LoadedModel:
    """The topic check and the model's load and check, side by side: each is seconds of a cold JVM (the Kafka
    AdminClient's classes and round trips; Spark jobs that read the model), mostly on one thread, so on two cores
    start-up waits for the longer of the two, not their sum. A topic error still wins over a model error, as when
    they ran one after the other; the model is loaded even then, and only dropped."""
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="topic-check") as pool:
        # In the driver's JVM, with the client Spark uses: a wrong password or certificate is named at once.
        topics_checked = pool.submit(check_topics, spec, spark)
        try:
            model = load_serving_model(spark, model_to_serve(spec, tracker), spec.options)
        except Exception:
            topics_checked.result()  # a topic error, if there is one, is the one reported
            raise
        topics_checked.result()
    return model


def model_to_serve(spec: DeploymentSpec, tracker: StatusTracker) -> str:
    """The spec's model.location, unless the status document names the model that served last: a restart (after a
    crash, a stop, or `job update`) goes on with that one, so a replayed batch is scored by the model that scored
    it, and a change made with `job update` outlives the run."""
    resumed = serving_location(tracker.status)
    if resumed is None:
        return spec.model_location
    if resumed != spec.model_location:
        logger.info(
            "serving the model at %s, the last one the model history in the state folder (%s) names, instead of the "
            "spec's model.location %s; `job update` changes it",
            resumed,
            spec.state_location,
            spec.model_location,
        )
    else:
        logger.info("serving the model at %s, the last one the model history in the state folder names", resumed)
    return resumed


def model_updates(
    spark: SparkSession, spec: DeploymentSpec, tracker: StatusTracker, stop: StopRequest, run_started_s: float
) -> ModelUpdates[StreamingQuery, LoadedModel]:
    """`job update`'s mechanics for this run: the full check, the stop at a batch boundary, the same query again."""

    def stop_for_swap(query: StreamingQuery) -> None:
        stop_at_batch_boundary(query)  # no stop_limit: a swap never cancels a batch
        _fold_last_progress(query, tracker)

    pointer = spec.model_watch
    return ModelUpdates(
        tracker,
        run_started_s,
        check=lambda location: load_serving_model(spark, location, spec.options),
        stop=stop_for_swap,
        prepare=lambda model: prepare_query(spark, spec, model, tracker),
        stopping=stop.is_set,
        watch=None if pointer is None else PointerWatch(pointer, lambda: storage.read_text(spark, pointer)),
    )


def serve(
    query: StreamingQuery,
    spec: DeploymentSpec,
    tracker: StatusTracker,
    stop: StopRequest,
    updates: ModelUpdates[StreamingQuery, LoadedModel] | None = None,
) -> int:
    """Wait until the query ends by itself (a failure raises) or a stop is asked for, handling model changes
    meanwhile; then stop at a batch boundary."""
    while not stop.wait(0.0):
        if query.awaitTermination(1):
            # Ended without an exception: an available_now trigger that read everything, or a stop from outside.
            ended = "the query ended: no more input for its trigger"
            if updates is not None:
                updates.refuse_pending(ended)
            tracker.set_state(STOPPED, ended)
            return EXIT_OK
        if updates is not None:
            query = updates.poll(query)
    why = stop.reason or "a stop was asked for"
    if updates is not None:
        updates.refuse_pending(f"the deployment is stopping ({why})")
    tracker.set_reason(f"stopping after the batch in flight ({why})")
    limit = spec.options.stop_limit
    outcome = stop_at_batch_boundary(query, limit_s=None if limit is None else interval_seconds(limit))
    _fold_last_progress(query, tracker)
    if outcome.graceful:
        tracker.set_state(STOPPED, f"stopped gracefully ({why})")
    else:
        tracker.set_state(STOPPED, f"stopped, not gracefully ({why}): {outcome.words}")
    return EXIT_OK


def _fold_last_progress(query: StreamingQuery, tracker: StatusTracker) -> None:
    """Count the last batch before the final state is written: Spark's listener event for it may come later."""
    try:
        last = query.lastProgress
    except Exception:
        return
    if last is not None:
        tracker.progress(json.loads(last.json))


def stopped_during_start_up(tracker: StatusTracker, stop: StopRequest) -> int:
    tracker.set_state(STOPPED, f"stopped during start-up, before serving ({stop.reason})")
    return EXIT_OK


def failed(
    spec: DeploymentSpec,
    tracker: StatusTracker,
    scrub: Callable[[str], str],
    exc: BaseException,
    spark: SparkSession | None,
) -> int:
    """The one failure path: a short reason in the status and on stderr, the full text (masked) in a file."""
    reason = scrub(short_reason(exc))
    tracker.set_state(FAILED, reason)
    where = _keep_failure(spec, scrub(full_text(exc)), spark)
    logger.error("deployment %r FAILED: %s (the full error, secrets masked: %s)", spec.name, reason, where)
    return EXIT_FAILED


def _keep_failure(spec: DeploymentSpec, text: str, spark: SparkSession | None) -> str:
    """Write the full error beside the status document, or into a local temporary file without a state folder."""
    header = f"deployment {spec.name!r} failed at {now_iso()}\n\n"
    if spec.state_location is not None:
        location = storage.join(spec.state_location, FAILURE_FILE)
        try:
            storage.write_text(None if storage.is_local(location) else spark, location, header + text)
            return location
        except Exception as exc:  # the state folder may be what failed; a local file then
            logger.warning("could not write %s: %s", location, type(exc).__name__)
    fd, path = tempfile.mkstemp(prefix=f"stream-deployment-{_file_safe(spec.name)}-", suffix="-failure.txt")
    with open(fd, "w", encoding="utf-8") as handle:
        handle.write(header + text)
    return path


def _file_safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)[:60]


def _jvm_ping(spark: SparkSession) -> Callable[[], bool]:
    """A check that the driver's JVM answers (a py4j round trip), for the heartbeat."""
    jvm = storage.jvm(spark)

    def ping() -> bool:
        try:
            jvm.java.lang.System.currentTimeMillis()
        except Exception:
            return False
        return True

    return ping


class Supervisor(threading.Thread):
    """The run loop's own thread: the heartbeat, the stop marker and spark-submit.sh's life, once a second.

    It beats every HEARTBEAT_INTERVAL_S while the driver (and, once the session is up, its JVM) answers, whatever
    the micro-batches do, so a batch that runs for minutes is not mistaken for a dead driver.
    """

    def __init__(
        self,
        tracker: StatusTracker,
        stop: StopRequest,
        run_started_s: float,
        wrapper: ProcessWatch | None,
        interval_s: float = 1.0,
        beat_every_s: float = HEARTBEAT_INTERVAL_S,
    ) -> None:
        super().__init__(name="deployment-supervisor", daemon=True)
        self.tracker = tracker
        self.stop_request = stop
        self.run_started_s = run_started_s
        self.wrapper = wrapper
        self.interval_s = interval_s
        self.beat_every_s = beat_every_s
        self.ping: Callable[[], bool] | None = None
        self._done = threading.Event()
        self._last_beat = -float("inf")
        self._told = False

    def attach_store(self) -> None:
        """The state folder is known: remove a stop marker left from before this run (one written since is ours)."""
        store = self.tracker.store
        if store is None:
            return
        try:
            written = store.stop_requested_at()
            if written is not None and 0.0 < written < self.run_started_s:
                store.clear_stop()
                logger.info("removed a stop marker written at %s, before this run began", _iso(written))
        except Exception as exc:
            logger.warning("could not read the stop marker: %s", type(exc).__name__)

    def run(self) -> None:
        while not self._done.is_set():
            try:
                self._tick()
            except Exception as exc:  # never let the supervisor die: the heartbeat is its life
                logger.warning("supervisor: %s", type(exc).__name__)
            self._done.wait(self.interval_s)

    def _tick(self) -> None:
        stop = self.stop_request
        if self.wrapper is not None and not stop.is_set() and self.wrapper.gone():
            stop.request(f"spark-submit.sh (pid {self.wrapper.pid}) is gone")
        store = self.tracker.store
        if store is not None and not stop.is_set():
            written = store.stop_requested_at()
            if written is not None and (written == 0.0 or written >= self.run_started_s):
                stop.request(f"job stop, marker written at {_iso(written) if written else 'an unknown time'}")
        if stop.is_set() and not self._told:
            self._told = True
            logger.info("stop requested (%s): the deployment stops after the batch in flight", stop.reason)
        elif stop.repeats and self._told:
            logger.info("already stopping after the batch in flight; kill -9 stops hard (the batch is replayed)")
            stop.repeats = 0
        now = time.monotonic()
        if now - self._last_beat >= self.beat_every_s and (self.ping is None or self.ping()):
            self.tracker.beat()
            self._last_beat = now

    def finish(self) -> None:
        """Stop the thread; clear a stop marker this run honoured (or that came in as it ended)."""
        self._done.set()
        if self.is_alive():
            self.join(timeout=10)
        store = self.tracker.store
        if store is None:
            return
        try:
            written = store.stop_requested_at()
            if written is not None and (written == 0.0 or written >= self.run_started_s):
                store.clear_stop()
        except Exception as exc:
            logger.warning("could not clear the stop marker: %s", type(exc).__name__)


def _iso(epoch_s: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch_s))


@dataclass(frozen=True)
class StopOutcome:
    """How a stop ended: gracefully at a batch boundary, or by cancelling the batch in flight at the limit."""

    graceful: bool
    waited_s: float
    words: str


def stop_at_batch_boundary(query: StreamingQuery, limit_s: float | None = None, poll_s: float = 1.0) -> StopOutcome:
    """Stop the query after the batch in flight has been committed, however long it takes (or `limit_s`).

    Spark's `StreamingQuery.stop()` cancels the batch in flight (MicroBatchExecution.stop: cancelJobGroup, then
    interrupt): what it had written is written again after a restart. Here the query's execution loop is asked to
    end instead: its state becomes TERMINATED, which the loop checks only between batches (executeOneBatch starts
    with `if (isActive)`; ProcessingTimeExecutor returns once a batch returns false), exactly as Spark ends an
    available_now query after its last batch. A batch that has begun (micro-batch or real-time) runs to its commit;
    none starts after. The state is set only while no batch is being planned (`_end_after_current_batch`): Spark
    checks it once more when a batch's planning ends, and aborts the batch then. In real-time mode a batch ends at
    its fixed duration (RealTimeStreamScanExec gives its tasks an end time when it plans them), so the stop takes up
    to that duration. A loop that sleeps until its
    next trigger (ProcessingTimeExecutor, in SystemClock.waitTillTime) is woken: no batch runs then, and none
    can start once the state is TERMINATED, so the interrupt meets nothing but the sleep (and Spark's clean-up
    after the loop runs uninterruptibly).

    With `limit_s`, a batch still running at the limit is cancelled with `query.stop()`: the outcome says so, and
    that a restart writes that batch's records again. The query's failure, if the batch fails, is raised.
    """
    started = time.monotonic()
    in_flight = _batch_in_flight(query)
    logger.info("stopping the query after %s", in_flight)
    try:
        thread = query._jsq.streamingQuery().queryExecutionThread()
        _end_after_current_batch(query, thread, None if limit_s is None else started + limit_s)
    except Exception as exc:  # Spark's internals moved: say so and fall back to the public API
        logger.warning(
            "cannot ask Spark to end the query between batches (%s); stopping it between triggers instead",
            type(exc).__name__,
        )
        return _stop_between_triggers(query, started, limit_s)
    # Not query.awaitTermination: it answers `not isActive`, true as soon as the state is TERMINATED, while the
    # batch in flight still runs. The loop has ended when its thread has.
    while thread.isAlive():
        remaining = None if limit_s is None else limit_s - (time.monotonic() - started)
        if remaining is not None and remaining <= 0:
            in_flight = _batch_in_flight(query)
            query.stop()
            waited = time.monotonic() - started
            words = (
                f"the stop limit of {limit_s:g} s was reached during {in_flight}, which was cancelled; a restart "
                "scores its input again and writes its records a second time"
            )
            logger.warning("query stopped, not gracefully: %s", words)
            return StopOutcome(False, waited, words)
        _wake_if_waiting_for_trigger(thread)
        wait_s = poll_s if remaining is None else min(poll_s, remaining)
        thread.join(max(1, int(wait_s * 1000)))
    error = query.exception()
    if error is not None:
        raise error  # the batch in flight failed: the caller's failure path, as for any failure of the query
    query.stop()  # the loop has ended: this only releases what Spark still holds for the query
    waited = time.monotonic() - started
    logger.info("query stopped at a batch boundary after %.1f s", waited)
    return StopOutcome(True, waited, f"stopped at a batch boundary after {waited:.1f} s")


def _end_after_current_batch(query: StreamingQuery, thread: Any, deadline: float | None = None) -> None:
    """Set the query's StreamExecution state to TERMINATED between two batches, without cancelling anything.

    Not at any moment: Spark checks the state once more when a batch's planning is done (MicroBatchExecution.runBatch
    interrupts its own thread when the query is no longer active), so a state set while a batch is planned (its
    offsets already in the offset log) aborts it half-written, and a restart writes it again. So the state is set
    while the query's thread is held where no batch is being planned: Spark's progress lock (`awaitProgressLock`,
    held by every offset planning, `constructNextBatch`, and taken at every batch's end) is taken here first, and
    the state is set once the thread waits for it at a batch's end, or waits for its next trigger. A thread that
    waits for it at the start of a batch (`constructNextBatch`) has begun that batch: it runs, and the state is set
    at its end. At `deadline` (monotonic) the state is set wherever the thread is: the caller's stop limit cancels
    the batch then anyway.
    """
    if os.environ.get("PYSPARK_PIN_THREAD", "true").lower() == "false":
        raise RuntimeError("py4j threads are not pinned: a JVM lock taken here could not be released")
    jvm = SparkContext._jvm
    if jvm is None:
        raise RuntimeError("no SparkContext")
    runtime = jvm.org.apache.spark.sql.execution.streaming.runtime
    terminated = getattr(getattr(runtime, "TERMINATED$"), "MODULE$")
    active = getattr(getattr(runtime, "ACTIVE$"), "MODULE$")
    execution = query._jsq.streamingQuery()
    lock = execution.awaitProgressLock()
    lock.lock()
    try:
        if not lock.isHeldByCurrentThread():
            raise RuntimeError("the progress lock is not held by this thread")
        poll_s = 0.005
        while thread.isAlive():
            where = _where_is(thread)
            if deadline is not None and time.monotonic() >= deadline:
                execution.state().set(terminated)
                return
            if where == PLANNING:
                # It passed its check of the state for this trigger: let it plan and run the batch.
                lock.unlock()
                time.sleep(poll_s)
                lock.lock()
                continue
            if where == AT_BATCH_END:
                execution.state().set(terminated)
                return
            if where == WAITING_FOR_TRIGGER:
                execution.state().set(terminated)
                # It may have woken and passed its check of the state just before: then it waits for the lock at
                # the start of a batch, and the state goes back until that batch has run.
                settled = _where_is(thread)
                while settled == RUNNING and thread.isAlive():
                    time.sleep(0.001)
                    settled = _where_is(thread)
                if settled != PLANNING:
                    return
                execution.state().set(active)
                continue
            # Planning or writing a batch: it waits for the lock at the next of those points, however long we look.
            time.sleep(poll_s)
            poll_s = min(0.25, poll_s * 2)
    finally:
        lock.unlock()


RUNNING, PLANNING, AT_BATCH_END, WAITING_FOR_TRIGGER = "running", "planning", "at batch end", "waiting for trigger"


def _where_is(thread: Any, depth: int = 12) -> str:
    """Where the query's thread is, from the top of its stack: waiting for Spark's progress lock at the start of a
    batch (PLANNING) or elsewhere (AT_BATCH_END: a batch's end, the query's own end), sleeping until its next
    trigger or after a trigger without data (WAITING_FOR_TRIGGER), or RUNNING."""
    stack = thread.getStackTrace()
    frames = [f"{stack[i].getClassName()}.{stack[i].getMethodName()}" for i in range(min(depth, len(stack)))]
    if any(f.endswith("SystemClock.waitTillTime") for f in frames):
        return WAITING_FOR_TRIGGER
    locked = [i for i, f in enumerate(frames) if f.endswith("ReentrantLock.lock")]
    if locked:
        # Only Spark's progress lock counts: taken by withProgressLocked, or by runStream as the query ends.
        callers = [f for f in frames[locked[0] + 1 :] if f.startswith("org.apache.spark.")]
        if callers and callers[0].endswith("MicroBatchExecution.withProgressLocked") and len(callers) > 1:
            return PLANNING if "constructNextBatch" in callers[1] else AT_BATCH_END
        if callers and "runStream" in callers[0]:
            return AT_BATCH_END
        return RUNNING
    if frames and frames[0].endswith("Thread.sleep") and any("executeOneBatch" in f for f in frames[:6]):
        return WAITING_FOR_TRIGGER  # a trigger without new data sleeps pollingDelayMs before the next check
    return RUNNING


def _wake_if_waiting_for_trigger(thread: Any) -> None:
    """Interrupt the query's thread when it sleeps until its next trigger (a trigger of an hour would otherwise
    keep a stop waiting for an hour). Only after `_end_after_current_batch`: then no batch can be running."""
    try:
        frames = thread.getStackTrace()
        names = [f"{frame.getClassName()}.{frame.getMethodName()}" for frame in list(frames)[:8]]
    except Exception:
        return
    if any(n.endswith("SystemClock.waitTillTime") for n in names) and any(
        n.endswith("ProcessingTimeExecutor.execute") for n in names
    ):
        thread.interrupt()


def _batch_in_flight(query: StreamingQuery) -> str:
    """Words for the batch in flight, for the log and the status."""
    try:
        status = query.status
        last = query.lastProgress
    except Exception:
        return "the batch in flight"
    if not status.get("isTriggerActive"):
        return "no batch (the query was between triggers)"
    next_batch = 0 if last is None else int(last["batchId"]) + 1
    return f"batch {next_batch} ({status.get('message', '').lower() or 'running'})"


def _stop_between_triggers(query: StreamingQuery, started: float, limit_s: float | None) -> StopOutcome:
    """The public API's best: wait for a moment between triggers, then stop (a batch starting then is cancelled)."""
    while query.isActive and query.status.get("isTriggerActive"):
        if limit_s is not None and time.monotonic() - started >= limit_s:
            break
        time.sleep(0.1)
    graceful = not query.status.get("isTriggerActive")
    query.stop()
    waited = time.monotonic() - started
    words = (
        f"stopped between triggers after {waited:.1f} s"
        if graceful
        else f"the stop limit of {limit_s:g} s was reached during a batch, which was cancelled; a restart scores "
        "its input again and writes its records a second time"
    )
    return StopOutcome(graceful, waited, words)
