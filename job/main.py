"""Entrypoint: parse the command line, load the spec, build the SparkSession and run the deployment."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    # Run as a file by spark-submit: make the `job` package importable from the project root
    # (on a cluster it also arrives through --py-files).
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import yaml

from job.spec import DeploymentLocations, DeploymentSpec, SpecError, load_locations, load_spec

logger = logging.getLogger("job.main")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_SPEC = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="job",
        description="Streaming deployment of a Spark ML model: Kafka in, scored predictions out.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (
        ("run", "start the deployment and run until stopped (SIGTERM or Ctrl-C stop it gracefully)"),
        ("validate", "check the spec and the model, print the resolved deployment (secrets masked), exit"),
        ("status", "show the deployment's state and latest progress"),
        ("stop", "stop the running deployment gracefully (the batch in flight finishes) and wait for it"),
        ("delete", "stop the deployment if it runs, then remove its checkpoint and state"),
    ):
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument(
            "--spec",
            action="append",
            required=True,
            metavar="FILE",
            help="deployment spec (YAML, or the original JSON request); repeat to merge files, later ones win",
        )
        sub.add_argument("--model", metavar="URI", help="model location (overrides model.location)")
        sub.add_argument("--checkpoint", metavar="URI", help="checkpoint location (overrides checkpoint_location)")
        sub.add_argument("--state", metavar="URI", help="state folder (overrides state_location)")
        sub.add_argument("--log-level", metavar="LEVEL", help="Spark's log level (overrides spark.log_level)")
        if name == "validate":
            sub.add_argument("--check-topics", action="store_true", help="also connect and check the three topics")
        if name == "status":
            sub.add_argument("--json", action="store_true", help="print the status document as JSON")
        if name in ("stop", "delete"):
            sub.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for the stop (default 180)")
        if name == "delete":
            sub.add_argument("--yes", action="store_true", help="confirm: the checkpoint and state are removed")
    # Listed here for `job --help`; its arguments belong to job.view (see cli()).
    commands.add_parser("view", help="serve a live web page of the deployment (`job view --help`)", add_help=False)
    return parser


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    if args.model:
        overrides["model"] = {"location": args.model}
    if args.checkpoint:
        overrides["checkpoint_location"] = args.checkpoint
    if args.state:
        overrides["state_location"] = args.state
    if getattr(args, "log_level", None):
        overrides["spark"] = {"log_level": args.log_level}
    return overrides


def cli(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["view"]:
        # Tooling, not runtime: imported only here, so the runtime shipped to a cluster does not need it.
        from job.view.cli import main as view_main

        return view_main(argv[1:])
    args = build_parser().parse_args(argv)
    pid_file = os.environ.get("STREAM_JOB_DRIVER_PID_FILE")
    if pid_file and args.command == "run":
        # spark-submit.sh forwards SIGTERM and Ctrl-C to this process (see the script).
        Path(pid_file).write_text(str(os.getpid()), encoding="utf-8")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("py4j").setLevel(logging.WARNING)  # its INFO lines are connection chatter
    try:
        if args.command in ("status", "stop", "delete"):
            # These need the deployment's folders only, not its connections (or their secrets).
            target = load_locations(args.spec, _overrides(args))
            if args.command == "status":
                return show_status(target, as_json=args.json)
            if args.command == "stop":
                return stop(target, timeout_s=args.timeout)
            return delete(target, confirmed=args.yes, timeout_s=args.timeout)
        spec = load_spec(args.spec, _overrides(args))
    except SpecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_SPEC
    from job.credentials import ScrubbingFilter, scrubber

    scrub = scrubber([spec.source.connection, spec.target.connection, spec.dead_letter.connection])
    for handler in logging.getLogger().handlers:
        handler.addFilter(ScrubbingFilter(scrub))
    if spec.spark_log_level in ("DEBUG", "TRACE", "ALL"):
        logging.getLogger().setLevel(logging.DEBUG)  # ours too, through the same scrubbing filter
        logging.getLogger("py4j").setLevel(logging.DEBUG)
    if args.command == "validate":
        return validate(spec, check_topics=args.check_topics)
    return run(spec, scrub)


def describe(spec: DeploymentSpec) -> dict[str, Any]:
    """The resolved deployment as shown to a person: no password, API key or JAAS line."""
    from job.credentials import REDACTED, loggable, sink_options, source_options

    def connection(topic: Any) -> dict[str, Any]:
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


def build_spark(spec: DeploymentSpec, app_name: str | None = None) -> Any:
    from pyspark.sql import SparkSession

    from job.query import spark_conf

    builder = SparkSession.builder.appName(app_name or f"stream-deployment: {spec.name}")
    for key, value in spark_conf(prometheus=spec.prometheus).items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel(spec.spark_log_level)
    return spark


def validate(spec: DeploymentSpec, check_topics: bool = False) -> int:
    from job.model import ModelError, load_model
    from job.query import StartupError
    from job.query import check_topics as check

    print(yaml.safe_dump(describe(spec), sort_keys=False).rstrip())
    spark = build_spark(spec, app_name=f"validate: {spec.name}")
    try:
        model = load_model(spark, spec.model_location, available_columns=_parsed_fields(spec))
        print(
            f"model: {model.metadata.name} version {model.metadata.version}, labels {list(model.metadata.label_values)}"
        )
        if check_topics:
            check(spec, spark=spark)
            print("topics: all three found")
    except (ModelError, StartupError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        spark.stop()
    print("spec OK")
    return EXIT_OK


def _parsed_fields(spec: DeploymentSpec) -> list[str]:
    # The job parses each message with the model's declared input schema; `id` is required on top
    # of that because it keys the output records.
    return ["id", "text"]


def run(spec: DeploymentSpec, scrub: Any = None) -> int:
    from job.model import ModelError, load_model
    from job.query import StartupError, check_topics, start_query
    from job.status import FAILED, STOPPED, StateStore, StatusTracker

    scrub = scrub or (lambda text: text)
    local_state = spec.state_location is not None and _is_local(spec.state_location)
    store = StateStore(spec.state_location) if local_state else None
    tracker = StatusTracker(store, spec.name, scrub)
    tracker.set_state("INITIALIZING")
    spark = build_spark(spec)
    if spec.state_location is not None and not local_state:
        tracker.store = StateStore(spec.state_location, spark)
        tracker.set_state("INITIALIZING")
    if tracker.store is not None:
        tracker.store.clear_stop()
    try:
        # In the driver's JVM, with the client Spark uses: a wrong password or certificate is named at once.
        check_topics(spec, spark=spark)
    except StartupError as exc:
        tracker.set_state(FAILED, scrub(str(exc)))
        logger.error("cannot start deployment %r: %s", spec.name, scrub(str(exc)))
        spark.stop()
        return EXIT_FAILED
    try:
        model = load_model(spark, spec.model_location, available_columns=_parsed_fields(spec))
        query = start_query(spark, spec, model, tracker)
    except (ModelError, Exception) as exc:
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


def _is_local(location: str) -> bool:
    from urllib.parse import urlparse

    return urlparse(location).scheme in ("", "file")


def wait_until_stopped(query: Any, stop_marker: Any = None, poll_s: float = 1.0) -> int:
    """Block until the query ends or a stop is asked for, then stop it gracefully.

    A stop is asked for by SIGTERM, Ctrl-C (SIGINT) or `job stop` (a marker file in the state folder,
    which works from another host too when the state folder is on shared storage).
    """
    stop_requested = threading.Event()

    def request_stop(signum: int, _frame: Any) -> None:
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


def stop_gracefully(query: Any, timeout_s: float = 120.0) -> None:
    """Let the micro-batch in flight finish (so its offsets are committed), then stop."""
    import time

    deadline = time.monotonic() + timeout_s
    while query.isActive and query.status.get("isTriggerActive") and time.monotonic() < deadline:
        time.sleep(0.1)
    query.stop()
    logger.info("deployment stopped")


def _state_store(spec: DeploymentLocations) -> tuple[Any, Any]:
    """The state folder, with a small local Spark session only when it is not a local path."""
    from job.status import StateStore

    if spec.state_location is None:
        raise SpecError("state_location", "nothing", "a state folder (status, stop and delete need one)")
    if _is_local(spec.state_location):
        return StateStore(spec.state_location), None
    from pyspark.sql import SparkSession

    spark = SparkSession.builder.master("local[1]").appName("job-status").config("spark.ui.enabled", "false")
    session = spark.getOrCreate()
    return StateStore(spec.state_location, session), session


def _process_gone(status: dict[str, Any]) -> bool:
    import socket

    if status.get("host") != socket.gethostname() or not status.get("pid"):
        return False
    try:
        os.kill(int(status["pid"]), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def current_status(spec: DeploymentLocations) -> dict[str, Any] | None:
    """The status document, with the state corrected when the process died without saying so."""
    from job.status import FAILED, INITIALIZING, RUNNING

    store, session = _state_store(spec)
    try:
        status = store.read_status()
    finally:
        if session is not None:
            session.stop()
    if status and status.get("state") in (INITIALIZING, RUNNING) and _process_gone(status):
        status["state"] = FAILED
        status["reason"] = f"process {status['pid']} on {status['host']} is gone without stopping (killed?)"
    return status


def show_status(spec: DeploymentLocations, as_json: bool = False) -> int:
    import json

    try:
        status = current_status(spec)
    except SpecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_SPEC
    if status is None:
        if as_json:
            print(json.dumps({"deployment": spec.name, "state": None}))
        else:
            print(f"{spec.name}: no status (never started with state folder {spec.state_location})")
        return 3
    if as_json:
        print(json.dumps(status, indent=2))
        return EXIT_OK
    progress = status.get("progress") or {}
    totals = status.get("totals") or {}
    model = status.get("model") or {}
    lines = [
        f"deployment:  {status['deployment']}",
        f"state:       {status['state']}" + (f" ({status['reason']})" if status.get("reason") else ""),
        f"model:       {model.get('name', '?')} version {model.get('version', '?')}",
        f"started at:  {status.get('started_at')} (pid {status.get('pid')} on {status.get('host')})",
        f"updated at:  {status.get('updated_at')}",
        f"last batch:  #{progress.get('batch_id', '-')}: {progress.get('input_rows', 0)} rows, "
        f"{progress.get('input_rows_per_second', 0.0)} rows/s in, "
        f"{progress.get('processed_rows_per_second', 0.0)} rows/s processed, "
        f"{progress.get('batch_duration_ms', '-')} ms",
        f"lag:         {progress.get('offsets_behind_latest', '-')} offsets behind the latest",
        f"totals:      {totals.get('records_scored', 0)} scored, {totals.get('records_dead_lettered', 0)} "
        f"dead-lettered, {totals.get('records_in', 0)} read",
        f"last error:  {status.get('last_error') or '-'}",
    ]
    print("\n".join(lines))
    return EXIT_OK


def stop(spec: DeploymentLocations, timeout_s: float = 180.0) -> int:
    import time

    from job.status import FAILED, INITIALIZING, RUNNING, STOPPED

    status = current_status(spec)
    if status is None or status.get("state") not in (INITIALIZING, RUNNING):
        state = status.get("state") if status else "not started"
        print(f"{spec.name}: not running ({state})")
        return EXIT_OK
    store, session = _state_store(spec)
    try:
        store.request_stop()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            time.sleep(0.5)
            status = current_status(spec) or {}
            if status.get("state") in (STOPPED, FAILED):
                print(f"{spec.name}: {status['state']}")
                return EXIT_OK if status["state"] == STOPPED else EXIT_FAILED
        print(f"{spec.name}: still {status.get('state')} after {timeout_s:.0f}s", file=sys.stderr)
        return EXIT_FAILED
    finally:
        if session is not None:
            session.stop()


def delete(spec: DeploymentLocations, confirmed: bool, timeout_s: float = 180.0) -> int:
    from job.status import remove_tree

    if not confirmed:
        print(
            f"error: delete removes the checkpoint ({spec.checkpoint_location}) and state ({spec.state_location}) "
            "of this deployment; add --yes to confirm",
            file=sys.stderr,
        )
        return EXIT_BAD_SPEC
    if spec.state_location is not None and stop(spec, timeout_s) != EXIT_OK:
        print("error: the deployment did not stop; nothing deleted", file=sys.stderr)
        return EXIT_FAILED
    session = None
    locations = [spec.checkpoint_location, *([spec.state_location] if spec.state_location else [])]
    if not all(_is_local(loc) for loc in locations):
        from pyspark.sql import SparkSession

        session = SparkSession.builder.master("local[1]").appName("job-delete").getOrCreate()
    try:
        for location in locations:
            removed = remove_tree(location, session)
            print(f"{'removed' if removed else 'nothing at'} {location}")
    finally:
        if session is not None:
            session.stop()
    print(f"{spec.name}: deleted")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(cli())
