"""Entrypoint: parse the command line, load the spec, and hand over to the command. Wiring only."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    # Run as a file by spark-submit: make the `job` package importable from the project root
    # (on a cluster it also arrives through --py-files).
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from job.runtime import control, deploy, publish, skip, stopping, update
from job.runtime.connection import deployment_scrubber
from job.runtime.secrets import ScrubbingFilter
from job.runtime.spec import load_locations, load_spec
from job.runtime.values import EXIT_BAD_SPEC, SpecError

COMMANDS = (
    ("run", "start the deployment and run until stopped (SIGTERM or Ctrl-C stop it gracefully)"),
    ("validate", "check the spec and the model, print the resolved deployment (secrets masked), exit"),
    ("status", "show the deployment's state and latest progress"),
    ("stop", "stop the running deployment gracefully (the batch in flight finishes) and wait for it"),
    (
        "update",
        "ask the running deployment to serve another published model (--model URI; the previous one rolls back): "
        "it checks it while the current one scores and swaps at a batch boundary; waits for the answer",
    ),
    ("delete", "stop the deployment if it runs, then remove its checkpoint and state"),
    (
        "skip",
        "after a failure on a record Spark's Kafka source cannot read: dead-letter that record, finish the "
        "failed micro-batch without it and move the checkpoint past it (through spark-submit.sh)",
    ),
)  # and `model publish` / `model show` (add_model_commands)


def build_parser(tools: Mapping[str, str] | None = None) -> argparse.ArgumentParser:
    """The command line; `tools` lists commands the caller handles itself (name -> help), for `--help`."""
    parser = argparse.ArgumentParser(
        prog="job",
        description="Streaming deployment of a Spark ML model: Kafka in, scored predictions out.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name, help_text in COMMANDS:
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument(
            "--spec",
            action="append",
            required=True,
            metavar="FILE",
            help="deployment spec (YAML, or the original JSON request); repeat to merge files, later ones win",
        )
        if name == "update":
            sub.add_argument(
                "--model",
                metavar="URI",
                required=True,
                help="the published model to serve from now on (a path or any URI the driver reads)",
            )
        else:
            sub.add_argument("--model", metavar="URI", help="model location (overrides model.location)")
        sub.add_argument("--checkpoint", metavar="URI", help="checkpoint location (overrides checkpoint_location)")
        sub.add_argument("--state", metavar="URI", help="state folder (overrides state_location)")
        sub.add_argument("--log-level", metavar="LEVEL", help="Spark's log level (overrides spark.log_level)")
        if name == "validate":
            sub.add_argument("--check-topics", action="store_true", help="also connect and check the three topics")
        if name == "status":
            sub.add_argument("--json", action="store_true", help="print the status document as JSON")
        if name in ("stop", "delete"):
            sub.add_argument(
                "--timeout",
                type=float,
                default=None,
                help="give up waiting for the stop after this many seconds (default: wait as long as the deployment's "
                "heartbeat is fresh, since the batch in flight is finished first however long it takes)",
            )
        if name == "update":
            sub.add_argument(
                "--timeout",
                type=float,
                default=None,
                help="give up waiting for the answer after this many seconds (default: wait as long as the "
                "deployment's heartbeat is fresh: the check and the batch in flight come first)",
            )
        if name == "delete":
            sub.add_argument("--yes", action="store_true", help="confirm: the checkpoint and state are removed")
            sub.add_argument(
                "--not-running",
                action="store_true",
                help="confirm the deployment is not running (needed without a state folder, where delete cannot "
                "ask it to stop and would remove the checkpoint under it)",
            )
        if name == "skip":
            sub.add_argument(
                "--partition", type=int, action="append", required=True, help="partition of a record to skip"
            )
            sub.add_argument(
                "--offset",
                type=int,
                action="append",
                required=True,
                help="its offset; repeat --partition P --offset O for several records of the same batch",
            )
    add_model_commands(commands)
    for name, help_text in (tools or {}).items():
        commands.add_parser(name, help=help_text, add_help=False)
    return parser


def add_model_commands(commands: Any) -> None:
    """`job model publish` and `job model show` (job.runtime.publish); they need a model location, no spec."""
    model = commands.add_parser("model", help="publish a saved Spark ML pipeline for deployment, or show one")
    actions = model.add_subparsers(dest="model_command", required=True)
    pub = actions.add_parser(
        "publish",
        help="check a saved PipelineModel and write the model.json the job needs beside it (or into --output)",
        description="Check a saved PipelineModel (any URI Spark reads), score a generated message with it, and write "
        "its model.json. Metadata comes from the flags, then --metadata, then a model.json already beside the "
        "pipeline, then the pipeline's own stages.",
    )
    pub.add_argument("pipeline", metavar="PIPELINE_LOCATION", help="the folder pipeline_model.save(...) wrote")
    pub.add_argument("--output", metavar="URI", help="copy the pipeline here and publish the copy (default: in place)")
    pub.add_argument(
        "--metadata",
        metavar="FILE",
        help="a WML published-model document (the GET response or its entity, unchanged) or a model.json",
    )
    pub.add_argument("--name", help="the model's name (default: the metadata's, else the folder's name)")
    pub.add_argument("--description", help="what the model does")
    pub.add_argument("--author", help="who trained it")
    pub.add_argument("--label-column", metavar="COLUMN", help="the training label column (WML's label_col)")
    pub.add_argument(
        "--labels",
        metavar="A,B,...",
        help="label of each prediction, in order (0.0 is the first); needed when the pipeline does not name them",
    )
    pub.add_argument(
        "--input",
        action="append",
        metavar="NAME:TYPE",
        help="a field of each message (repeat for each; TYPE: string, integer, long, double, float, boolean); "
        "replaces the metadata's input schema",
    )
    pub.add_argument("--overwrite", action="store_true", help="replace another version's model.json or --output")
    show = actions.add_parser("show", help="print what a deployment would use: name, version, labels, input, stages")
    show.add_argument("location", metavar="LOCATION", help="a published model's folder (the spec's model.location)")
    show.add_argument("--json", action="store_true", help="print it as JSON")


def overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The spec fields the command line sets."""
    found: dict[str, Any] = {}
    if args.model:
        found["model"] = {"location": args.model}
    if args.checkpoint:
        found["checkpoint_location"] = args.checkpoint
    if args.state:
        found["state_location"] = args.state
    if getattr(args, "log_level", None):
        found["spark"] = {"log_level": args.log_level}
    return found


def cli(argv: Sequence[str] | None = None, tools: Mapping[str, str] | None = None) -> int:
    # First, before anything that takes time: a SIGTERM or Ctrl-C from here on asks `run` for a graceful stop,
    # which it honours at the next step of its start-up (spark-submit.sh starts this process with both ignored).
    run_started_s = time.time()
    stop = stopping.StopRequest()
    previous = stopping.install_signal_handlers(stop)
    args = build_parser(tools).parse_args(argv)
    if args.command != "run":
        stopping.restore_signal_handlers(previous)  # the other commands end on Ctrl-C as usual
    pid_file = os.environ.get("STREAM_JOB_DRIVER_PID_FILE")
    if pid_file and args.command == "run":
        # spark-submit.sh forwards SIGTERM and Ctrl-C to this process (see the script) once this file names it;
        # the handlers above are in place by then.
        Path(pid_file).write_text(str(os.getpid()), encoding="utf-8")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("py4j").setLevel(logging.WARNING)  # its INFO lines are connection chatter
    if args.command == "model":
        return publish.model_command(args)
    try:
        if args.command in ("status", "stop", "update", "delete"):
            # These need the deployment's folders only, not its connections (or their secrets).
            target = load_locations(args.spec, overrides(args))
            if args.command == "status":
                return control.show_status(target, as_json=args.json)
            if args.command == "stop":
                return control.stop(target, timeout_s=args.timeout)
            if args.command == "update":
                model = update.local_path_made_absolute(args.model)
                return control.update(target, model, timeout_s=args.timeout)
            return control.delete(target, confirmed=args.yes, not_running=args.not_running, timeout_s=args.timeout)
        spec = load_spec(args.spec, overrides(args))
    except SpecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_SPEC
    scrub = deployment_scrubber(spec)
    for handler in logging.getLogger().handlers:
        handler.addFilter(ScrubbingFilter(scrub))
    if spec.spark_log_level in ("DEBUG", "TRACE", "ALL"):
        logging.getLogger().setLevel(logging.DEBUG)  # ours too, through the same scrubbing filter
        logging.getLogger("py4j").setLevel(logging.DEBUG)
    if args.command == "validate":
        return deploy.validate(spec, check_topics_too=args.check_topics)
    if args.command == "skip":
        if len(args.partition) != len(args.offset):
            print("error: give each --partition its --offset (as many of one as of the other)", file=sys.stderr)
            return EXIT_BAD_SPEC
        return skip.skip_command(spec, list(zip(args.partition, args.offset, strict=True)))
    return deploy.run(spec, scrub, stop=stop, run_started_s=run_started_s, wrapper=stopping.wrapper_watch())


if __name__ == "__main__":
    sys.exit(cli())
