"""`job view --spec SPEC`: serve the live page of a deployment until Ctrl-C or SIGTERM."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from job.view.app import LiveView, iso
from job.view.reader import parse_since
from job.view.runtime import DeploymentSpec, SpecError, load_spec
from job.view.server import TOKEN_ENV, ServerError, ViewServer

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="job view",
        description="A live web page of a deployment: label shares, latest records, dead letters and health, "
        "read from its topics (no consumer group) and its state folder.",
    )
    parser.add_argument("--spec", action="append", required=True, metavar="FILE", help="deployment spec; repeatable")
    parser.add_argument("--state", metavar="URI", help="state folder (overrides state_location)")
    parser.add_argument(
        "--since", default="1h", help="start reading at: 1h, 30m, 2d, 'beginning', 'now' or an ISO time (default 1h)"
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help=f"address to bind (default 127.0.0.1; others need ${TOKEN_ENV})"
    )
    parser.add_argument("--port", type=int, default=0, help="port (default: a free one)")
    parser.add_argument(
        "--require-token", action="store_true", help=f"ask for ${TOKEN_ENV} on a loopback address too (shared machines)"
    )
    parser.add_argument("--latest", type=int, default=50, help="scored records to list (default 50)")
    return parser


@dataclass
class RunningView:
    """A started view and its server; `stop()` ends both."""

    view: LiveView
    server: ViewServer

    @property
    def url(self) -> str:
        return self.server.url

    def stop(self) -> None:
        self.server.stop()
        self.view.stop()


def start_view(
    spec: DeploymentSpec,
    since: str = "1h",
    host: str = "127.0.0.1",
    port: int = 0,
    latest: int = 50,
    environ: dict[str, str] | None = None,
    require_token: bool = False,
    push_interval_s: float = 1.0,
) -> RunningView:
    """Start reading and serving in background threads (for `job view`, the demo and the tests)."""
    since_ms = parse_since(since, time.time())
    view = LiveView(spec, since_ms, latest=latest)
    # The server refuses to start (no token, no charting library) before any thread starts.
    server = ViewServer(view.summary, host, port, environ, push_interval_s, require_token)
    view.start()
    server.start()
    return RunningView(view, server)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kafka").setLevel(logging.ERROR)  # reconnect chatter; the page shows the reader's state
    try:
        spec = load_spec(args.spec, {"state_location": args.state} if args.state else None)
        running = start_view(spec, args.since, args.host, args.port, args.latest, require_token=args.require_token)
    except (SpecError, ValueError, ServerError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"job view: {running.url}  (deployment {spec.name}; Ctrl-C stops it)", flush=True)
    print(
        f"  reading {spec.target.topic} and {spec.dead_letter.topic} since {iso(running.view.since_ms / 1000)}, "
        f"status from {spec.state_location or '(no state folder)'}",
        flush=True,
    )
    if running.server.token is not None:
        print(
            f"  every request needs the token in ${TOKEN_ENV}"
            f"{'' if args.require_token else f' (bound to {args.host}, not a loopback address)'}; "
            f"open {running.url}?token=<value of ${TOKEN_ENV}> once (it becomes a cookie)",
            flush=True,
        )
    done = threading.Event()

    def request_stop(_signum: int, _frame: Any) -> None:
        done.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        done.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        running.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
