"""Running a deployment: start-up checks, the model, the query, and the loop that waits for a stop or a failure."""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

import yaml
from pyspark.sql.streaming.query import StreamingQuery

from job.runtime.cluster_check import StartupError, check_topics
from job.runtime.connection import loggable, sink_options, source_options
from job.runtime.model import ModelError
from job.runtime.publish import load_serving_model
from job.runtime.query import start_query
from job.runtime.secrets import REDACTED
from job.runtime.session import deployment_session
from job.runtime.status import FAILED, INITIALIZING, STOPPED, StateStore, StatusTracker
from job.runtime.storage import is_local
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
        "model": {"location": spec.model_location},
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
            print("topics: all three found")
    except (ModelError, StartupError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        spark.stop()
    print("spec OK")
    return EXIT_OK


def run(spec: DeploymentSpec, scrub: Callable[[str], str]) -> int:
    """Start the deployment and run it until it is stopped or fails; the status document follows it."""
    local_state = spec.state_location is not None and is_local(spec.state_location)
    store = StateStore(spec.state_location) if spec.state_location is not None and local_state else None
    tracker = StatusTracker(store, spec.name, scrub)
    tracker.set_state(INITIALIZING)
    spark = deployment_session(spec)
    if spec.state_location is not None and not local_state:
        tracker.store = StateStore(spec.state_location, spark)
        tracker.set_state(INITIALIZING)
    if tracker.store is not None:
        tracker.store.clear_stop()
    try:
        # In the driver's JVM, with the client Spark uses: a wrong password or certificate is named at once.
        check_topics(spec, spark)
    except StartupError as exc:
        tracker.set_state(FAILED, scrub(str(exc)))
        logger.error("cannot start deployment %r: %s", spec.name, scrub(str(exc)))
        spark.stop()
        return EXIT_FAILED
    try:
        model = load_serving_model(spark, spec.model_location, spec.options)
        query = start_query(spark, spec, model, tracker)
    except Exception as exc:  # a ModelError, or Spark refusing the query: either way the deployment is FAILED
        reason = scrub(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        tracker.set_state(FAILED, reason)
        logger.error("cannot start deployment %r: %s", spec.name, reason)
        spark.stop()
        return EXIT_FAILED
    code = wait_until_stopped(query, stop_marker=tracker.store)
    error = query.exception()
    if code == EXIT_OK:
        tracker.set_state(STOPPED)
    else:
        tracker.terminated(scrub(str(error)) if error is not None else "the query ended unexpectedly")
    spark.stop()
    return code


def wait_until_stopped(query: StreamingQuery, stop_marker: StateStore | None = None, poll_s: int = 1) -> int:
    """Block until the query ends or a stop is asked for, then stop it gracefully.

    A stop is asked for by SIGTERM, Ctrl-C (SIGINT) or `job stop` (a marker file in the state folder,
    which works from another host too when the state folder is on shared storage).
    """
    stop_requested = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        logger.info("received %s: stopping after the batch in flight", signal.Signals(signum).name)
        stop_requested.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        while query.isActive and not stop_requested.is_set():
            query.awaitTermination(poll_s)
            if stop_marker is not None and stop_marker.stop_requested():
                logger.info("stop requested through the state folder: stopping after the batch in flight")
                stop_requested.set()
        if stop_requested.is_set():
            stop_gracefully(query)
            if stop_marker is not None:
                stop_marker.clear_stop()
            return EXIT_OK
        error = query.exception()
        if error is not None:
            logger.error("query failed: %s", str(error).splitlines()[0])
            return EXIT_FAILED
        return EXIT_OK
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def stop_gracefully(query: StreamingQuery, timeout_s: float = 120.0) -> None:
    """Let the micro-batch in flight finish (so its offsets are committed), then stop."""
    deadline = time.monotonic() + timeout_s
    while query.isActive and query.status.get("isTriggerActive") and time.monotonic() < deadline:
        time.sleep(0.1)
    query.stop()
    logger.info("deployment stopped")
