"""The view's HTTP server (standard library): one page, its static files, /api/summary and server-sent events.

Security: bound to a loopback address it serves anyone on this machine, and only requests that name a loopback
host (a page elsewhere cannot reach it through DNS rebinding). Bound to anything else, it refuses to start without
a token in the environment (TOKEN_ENV) and then answers only requests that carry it.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

logger = logging.getLogger(__name__)

TOKEN_ENV = "JOB_VIEW_TOKEN"
MIN_TOKEN_CHARS = 16
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9._~+/=-]+")  # safe in a URL query and a cookie without quoting
COOKIE = "job_view_token"
STATIC_DIR = Path(__file__).resolve().parent / "static"
MAX_EVENT_CLIENTS = 32  # each open page holds one thread; a bound keeps a reload storm from exhausting them

# Path -> (file under static/, content type). Nothing else is served: no directory listing, no path joining.
FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/style.css": ("style.css", "text/css; charset=utf-8"),
    "/static/vendor/uPlot.iife.min.js": ("vendor/uPlot.iife.min.js", "text/javascript; charset=utf-8"),
    "/static/vendor/uPlot.min.css": ("vendor/uPlot.min.css", "text/css; charset=utf-8"),
}
SECURITY_HEADERS = {
    # Everything comes from this server: the page works offline and cannot be made to load anything else.
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


class ServerError(RuntimeError):
    """The view cannot start (no token for a public address, the charting library not installed)."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def load_static() -> dict[str, tuple[bytes, str]]:
    """Every file the page needs, read once at start, so a missing one fails the start and not a page load."""
    missing = [name for name, _ in FILES.values() if not (STATIC_DIR / name).is_file()]
    if missing:
        raise ServerError(
            f"the view's files are missing from {STATIC_DIR}: {', '.join(missing)}; `make install` installs the "
            "charting library (npm ci in job/view, copied to job/view/static/vendor)"
        )
    return {path: ((STATIC_DIR / name).read_bytes(), kind) for path, (name, kind) in FILES.items()}


class Broadcaster:
    """Computes the summary once per interval for every open page, whatever the number of pages."""

    def __init__(self, summary: Callable[[], dict[str, Any]], interval_s: float = 1.0) -> None:
        self._summary = summary
        self._interval_s = interval_s
        self._condition = threading.Condition()
        self._sequence = 0
        self._payload = b""
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="view-push", daemon=True)

    def start(self) -> None:
        self._publish()
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        with self._condition:
            self._condition.notify_all()
        self._thread.join(timeout=5)

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    def _publish(self) -> None:
        payload = json.dumps(self._summary(), separators=(",", ":")).encode()
        with self._condition:
            self._sequence += 1
            self._payload = payload
            self._condition.notify_all()

    def _run(self) -> None:
        while not self._stopped.wait(self._interval_s):
            try:
                self._publish()
            except Exception:  # one bad summary must not silence the page for good
                logger.exception("view: could not build the summary")

    def next(self, after: int, timeout_s: float) -> tuple[int, bytes | None]:
        """The next payload after sequence `after`, or (after, None) when none came within the timeout."""
        with self._condition:
            self._condition.wait_for(lambda: self._sequence != after or self._stopped.is_set(), timeout_s)
            if self._sequence == after or self._stopped.is_set():
                return after, None
            return self._sequence, self._payload


class ViewServer:
    """Serves the page for one view. `summary` returns the /api/summary document."""

    def __init__(
        self,
        summary: Callable[[], dict[str, Any]],
        host: str = "127.0.0.1",
        port: int = 0,
        environ: dict[str, str] | None = None,
        push_interval_s: float = 1.0,
        require_token: bool = False,
    ) -> None:
        env = os.environ if environ is None else environ
        self.host = host
        self.token: str | None = None
        # On a machine shared by several people, loopback reaches them all: --require-token asks for it there too.
        if require_token or not is_loopback(host):
            token = env.get(TOKEN_ENV, "")
            if len(token) < MIN_TOKEN_CHARS or not _TOKEN_CHARS.fullmatch(token):
                where = host if is_loopback(host) else f"{host} (not a loopback address)"
                raise ServerError(
                    f"binding to {where} needs a token of at least {MIN_TOKEN_CHARS} "
                    f"characters (letters, digits, ._~+/=-) in the environment variable {TOKEN_ENV}, e.g. "
                    f'`export {TOKEN_ENV}="$(python3 -c "import secrets; print(secrets.token_urlsafe(24))")"`'
                )
            self.token = token
        self._files = load_static()
        self._summary = summary
        self.broadcaster = Broadcaster(summary, push_interval_s)
        self._clients = threading.BoundedSemaphore(MAX_EVENT_CLIENTS)
        self._httpd = ThreadingHTTPServer((host, port), self._handler_class())
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="view-http", daemon=True)

    @property
    def url(self) -> str:
        shown = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{shown}:{self.port}/"

    def start(self) -> None:
        self.broadcaster.start()
        self._thread.start()

    def stop(self) -> None:
        self.broadcaster.stop()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(_Handler):
            view = server

        return Handler


class _Handler(BaseHTTPRequestHandler):
    view: ViewServer
    server_version = "job-view"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        # Request lines can carry ?token=…: never logged.
        logger.debug("view: %s %s", self.command, urlsplit(self.path).path)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if not self._host_allowed():
            self._plain(HTTPStatus.FORBIDDEN, "unexpected Host header: open the view by the address it printed\n")
            return
        if self.view.token is not None:
            given = parse_qs(url.query).get("token", [None])[0]
            if given is not None and hmac.compare_digest(given.encode(), self.view.token.encode()):
                # Keep the token out of the address bar, history and logs: a cookie from now on.
                self.send_response(HTTPStatus.SEE_OTHER)
                self.send_header("Location", url.path or "/")
                self.send_header("Set-Cookie", f"{COOKIE}={self.view.token}; HttpOnly; SameSite=Strict; Path=/")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if not self._authorized():
                self._plain(
                    HTTPStatus.UNAUTHORIZED,
                    f"this view needs its token: open /?token=… with the value of {TOKEN_ENV}, "
                    "or send 'Authorization: Bearer …'\n",
                )
                return
        if url.path == "/api/summary":
            self._send(HTTPStatus.OK, json.dumps(self.view._summary(), indent=1).encode(), "application/json")
        elif url.path == "/api/events":
            self._events()
        elif url.path in self.view._files:
            body, kind = self.view._files[url.path]
            self._send(HTTPStatus.OK, body, kind, cache="no-cache")
        else:
            self._plain(HTTPStatus.NOT_FOUND, "not found\n")

    def do_HEAD(self) -> None:
        self._plain(HTTPStatus.METHOD_NOT_ALLOWED, "")

    def do_POST(self) -> None:
        self._plain(HTTPStatus.METHOD_NOT_ALLOWED, "the view is read-only\n")

    def _host_allowed(self) -> bool:
        if self.view.token is not None:
            return True  # a public bind is reached by whatever name; the token protects it
        host = self.headers.get("Host", "")
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        return is_loopback(name)

    def _authorized(self) -> bool:
        token = self.view.token
        assert token is not None
        header = self.headers.get("Authorization", "")
        if header.startswith("Bearer ") and hmac.compare_digest(header[7:].encode(), token.encode()):
            return True
        cookie = SimpleCookie()
        try:
            cookie.load(self.headers.get("Cookie", ""))
        except Exception:
            return False
        given = cookie.get(COOKIE)
        return given is not None and hmac.compare_digest(given.value.encode(), token.encode())

    def _send(self, status: HTTPStatus, body: bytes, kind: str, cache: str = "no-store") -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", cache)
        for name, value in SECURITY_HEADERS.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _plain(self, status: HTTPStatus, text: str) -> None:
        self._send(status, text.encode(), "text/plain; charset=utf-8")

    def _events(self) -> None:
        """Server-sent events: the summary as `event: summary` once per interval, until the page goes away."""
        if not self.view._clients.acquire(blocking=False):
            self._plain(HTTPStatus.SERVICE_UNAVAILABLE, "too many open pages\n")
            return
        try:
            self.send_response(HTTPStatus.OK)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-store")
            for name, value in SECURITY_HEADERS.items():
                self.send_header(name, value)
            self.end_headers()
            broadcaster = self.view.broadcaster
            self.wfile.write(b"retry: 2000\n\n")
            sequence = 0
            last_write = time.monotonic()
            while not broadcaster.stopped:
                sequence, payload = broadcaster.next(sequence, timeout_s=5.0)
                if payload is not None:
                    self.wfile.write(b"event: summary\ndata: " + payload + b"\n\n")
                    last_write = time.monotonic()
                elif time.monotonic() - last_write > 15:
                    self.wfile.write(b": keep-alive\n\n")  # proxies close idle streams
                    last_write = time.monotonic()
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass  # the page was closed
        finally:
            self.view._clients.release()
