"""Entrypoint: parse the command line, load the spec, build the SparkSession and run the deployment."""

from __future__ import annotations

import argparse
import logging
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

from job.spec import DeploymentSpec, SpecError, load_spec

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
    return parser


def spec_from_args(args: argparse.Namespace) -> DeploymentSpec:
    overrides: dict[str, Any] = {}
    if args.model:
        overrides["model"] = {"location": args.model}
    if args.checkpoint:
        overrides["checkpoint_location"] = args.checkpoint
    if args.state:
        overrides["state_location"] = args.state
    if args.log_level:
        overrides["spark"] = {"log_level": args.log_level}
    return load_spec(args.spec, overrides)


def cli(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        spec = spec_from_args(args)
    except SpecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_SPEC
    if args.command == "validate":
        return validate(spec, check_topics=args.check_topics)
    return run(spec)


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
    for key, value in spark_conf().items():
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
            check(spec)
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


def run(spec: DeploymentSpec) -> int:
    from job.model import ModelError, load_model
    from job.query import StartupError, check_topics, start_query

    try:
        check_topics(spec)
    except StartupError as exc:
        logger.error("cannot start deployment %r: %s", spec.name, exc)
        return EXIT_FAILED
    spark = build_spark(spec)
    try:
        model = load_model(spark, spec.model_location, available_columns=_parsed_fields(spec))
    except ModelError as exc:
        logger.error("cannot start deployment %r: %s", spec.name, exc)
        spark.stop()
        return EXIT_FAILED
    query = start_query(spark, spec, model)
    return wait_until_stopped(query)


def wait_until_stopped(query: Any, poll_s: float = 1.0) -> int:
    """Block until the query ends or a stop is asked for (SIGTERM, Ctrl-C), then stop it gracefully."""
    stop_requested = threading.Event()

    def request_stop(signum: int, _frame: Any) -> None:
        logger.info("received %s: stopping after the batch in flight", signal.Signals(signum).name)
        stop_requested.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        while query.isActive and not stop_requested.is_set():
            query.awaitTermination(poll_s)
        if stop_requested.is_set():
            stop_gracefully(query)
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
        time.sleep(0.2)
    query.stop()
    logger.info("deployment stopped")


if __name__ == "__main__":
    sys.exit(cli())
