"""The live view's HTTP server: routes, server-sent events, the token, the Host check, and no secret in any answer."""

from __future__ import annotations

import base64
import http.client
import json
import secrets
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from job.cli import main as cli
from job.runtime.connection import jaas_config
from job.runtime.secrets import REDACTED
from job.runtime.spec import parse_spec
from job.tools.processes import free_port
from job.view.cli import RunningView, start_view
from job.view.server import COOKIE, FILES, TOKEN_ENV, ServerError, ViewServer

TOKEN = "t0ken-" + secrets.token_urlsafe(16)


def get(port: int, path: str, headers: dict[str, str] | None = None, method: str = "GET") -> tuple[int, dict, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request(method, path, headers=headers or {})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def events(port: int, count: int, headers: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """Read `count` summary events from /api/events."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", "/api/events", headers=headers or {})
        response = connection.getresponse()
        assert response.status == 200 and response.getheader("Content-Type") == "text/event-stream"
        found: list[dict[str, Any]] = []
        event = None
        while len(found) < count:
            line = response.fp.readline().decode().rstrip("\n")
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event == "summary":
                found.append(json.loads(line[6:]))
        return found
    finally:
        connection.close()


@pytest.fixture
def counting_server() -> Iterator[ViewServer]:
    calls = {"n": 0}

    def summary() -> dict[str, Any]:
        calls["n"] += 1
        return {"n": calls["n"], "generated_at": time.time()}

    server = ViewServer(summary, push_interval_s=0.05)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_serves_the_page_its_files_and_the_summary(counting_server: ViewServer) -> None:
    port = counting_server.port
    assert counting_server.url == f"http://127.0.0.1:{port}/"
    for path, (name, kind) in FILES.items():
        status, headers, body = get(port, path)
        assert (status, headers["Content-Type"]) == (200, kind), path
        assert body == (Path("job/view/static") / name).read_bytes()
        assert "default-src 'none'" in headers["Content-Security-Policy"]
    status, headers, body = get(port, "/api/summary")
    assert status == 200 and headers["Content-Type"] == "application/json" and "n" in json.loads(body)


def test_the_page_loads_nothing_from_elsewhere() -> None:
    page = (Path("job/view/static") / "index.html").read_text()
    script = (Path("job/view/static") / "app.js").read_text()
    for text in (page, script):
        assert "http://" not in text.replace("http://www.w3.org/2000/svg", "") and "https://" not in text
    assert 'src="/static/vendor/uPlot.iife.min.js"' in page


def test_events_push_a_new_summary_each_interval(counting_server: ViewServer) -> None:
    first, second, third = events(counting_server.port, 3)
    assert first["n"] < second["n"] < third["n"]


@pytest.mark.parametrize("path", ["/static/../server.py", "/static/vendor/../../cli.py", "/nope", "/static/"])
def test_only_the_listed_files_are_served(counting_server: ViewServer, path: str) -> None:
    assert get(counting_server.port, path)[0] == 404


def test_the_view_is_read_only(counting_server: ViewServer) -> None:
    assert get(counting_server.port, "/api/summary", method="POST")[0] == 405


@pytest.mark.parametrize("host", ["evil.example", "evil.example:80", "10.0.0.1", ""])
def test_a_loopback_view_refuses_other_host_names_against_dns_rebinding(counting_server: ViewServer, host: str) -> None:
    status, _, body = get(counting_server.port, "/api/summary", headers={"Host": host})
    assert status == 403 and b"Host" in body


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "127.0.0.1:80", "[::1]:8080", "localhost:1"])
def test_loopback_host_names_are_served(counting_server: ViewServer, host: str) -> None:
    assert get(counting_server.port, "/api/summary", headers={"Host": host})[0] == 200


@pytest.mark.parametrize("token", [None, "", "short", "x" * 15, "has space" + "x" * 16, 'quote"' + "x" * 16])
def test_a_public_address_needs_a_proper_token(token: str | None) -> None:
    environ = {} if token is None else {TOKEN_ENV: token}
    with pytest.raises(ServerError, match=TOKEN_ENV) as error:
        ViewServer(dict, host="0.0.0.0", environ=environ)  # refused before anything is bound
    assert not token or token not in str(error.value)


@pytest.fixture
def token_server() -> Iterator[ViewServer]:
    server = ViewServer(lambda: {"ok": True}, environ={TOKEN_ENV: TOKEN}, require_token=True, push_interval_s=0.05)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize("path", ["/", "/api/summary", "/api/events", "/static/app.js", "/nope"])
@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong-token-000000"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Cookie": f"{COOKIE}=wrong"},
        {"Cookie": "garbage;;=;"},
    ],
)
def test_without_the_token_nothing_is_served(token_server: ViewServer, path: str, headers: dict[str, str]) -> None:
    status, _, body = get(token_server.port, path, headers=headers)
    assert status == 401 and TOKEN_ENV.encode() in body and TOKEN.encode() not in body


def test_the_token_works_as_bearer_as_a_cookie_and_once_in_the_address(token_server: ViewServer) -> None:
    port = token_server.port
    assert get(port, "/api/summary", {"Authorization": f"Bearer {TOKEN}"})[0] == 200
    assert get(port, "/api/summary", {"Cookie": f"{COOKIE}={TOKEN}"})[0] == 200
    assert len(events(port, 1, {"Cookie": f"{COOKIE}={TOKEN}"})) == 1
    status, headers, _ = get(port, f"/?token={TOKEN}")
    # The token leaves the address bar at once: a redirect to the bare path, and a cookie scripts cannot read.
    assert status == 303 and headers["Location"] == "/"
    assert headers["Set-Cookie"] == f"{COOKIE}={TOKEN}; HttpOnly; SameSite=Strict; Path=/"
    assert get(port, "/?token=wrong-token-00000000")[0] == 401


# -- no secret anywhere ------------------------------------------------------------------------------------------

SENTINEL = "Sentinel" + secrets.token_hex(8) + '"\\'  # with a quote and a backslash, escaped in the JAAS line


@pytest.fixture
def secret_view(tmp_path: Path) -> Iterator[tuple[RunningView, list[str]]]:
    port = free_port()  # nothing listens: the reader fails and says so on the page
    connection = {
        "bootstrap_servers": [f"127.0.0.1:{port}"],
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "PLAIN",
        "user": "leak-user",
        "password": "${VIEW_TEST_PASSWORD}",
    }
    spec = parse_spec(
        {
            "name": "secret-view",
            "type": "stream",
            "input": {"connection": connection, "source": {"topic": "in", "type": "kafka"}},
            "output": {"connection": connection, "target": {"topic": "out", "type": "kafka"}},
            "model": {"location": "models/sentiment-prediction"},
            "checkpoint_location": str(tmp_path / "cp"),
            "state_location": str(tmp_path / "state"),
        },
        environ={"VIEW_TEST_PASSWORD": SENTINEL},
    )
    jaas = jaas_config("PLAIN", "leak-user", SENTINEL)
    forms = [SENTINEL, base64.b64encode(SENTINEL.encode()).decode(), jaas, json.dumps(SENTINEL)[1:-1]]
    # A status document that did leak (an older job, a hand edit): the view must not pass it on.
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "status.json").write_text(
        json.dumps(
            {
                "deployment": "secret-view",
                "state": "FAILED",
                "reason": f"auth failed with {SENTINEL}",
                "last_error": f"login {jaas} / {forms[1]}",
                "model": {"name": "m", "version": "1"},
            }
        )
    )
    running = start_view(spec, since="1h", push_interval_s=0.1)
    try:
        yield running, forms
    finally:
        running.stop()


def test_no_answer_ever_shows_the_password(secret_view: tuple[RunningView, list[str]]) -> None:
    running, forms = secret_view
    port = running.server.port
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        summary = json.loads(get(port, "/api/summary")[2])
        if summary["health"]["state"] == "FAILED" and summary["readers"][0]["state"] == "error":
            break
        time.sleep(0.2)
    # Positive controls: the leaky status document and the reader's failure did reach the page, masked.
    assert summary["health"]["reason"] == f"auth failed with {REDACTED}"
    assert summary["health"]["last_error"] == f"login {REDACTED} / {REDACTED}"
    assert summary["readers"][0]["state"] == "error" and "Unable to bootstrap" in summary["readers"][0]["error"]
    answers = [get(port, path)[2] for path in [*FILES, "/api/summary", "/nope", "/?token=x"]]
    answers.append(json.dumps(events(port, 2)).encode())
    for body in answers:
        text = body.decode()
        for form in forms:
            assert form not in text


# -- the command line ------------------------------------------------------------------------------------------


def spec_file(tmp_path: Path) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(
        json.dumps(
            {
                "name": "cli-view",
                "type": "stream",
                "input": {"connection": {"bootstrap_servers": ["127.0.0.1:1"]}, "source": {"topic": "in"}},
                "output": {"connection": {"bootstrap_servers": ["127.0.0.1:1"]}, "target": {"topic": "out"}},
                "model": {"location": "models/sentiment-prediction"},
                "checkpoint_location": str(tmp_path / "cp"),
            }
        )
    )
    return path


def test_job_view_refuses_a_public_address_without_a_token(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    assert cli(["view", "--spec", str(spec_file(tmp_path)), "--host", "0.0.0.0"]) == 2
    assert "binding to 0.0.0.0 (not a loopback address) needs a token" in capsys.readouterr().err


def test_job_view_refuses_a_since_it_cannot_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["view", "--spec", str(spec_file(tmp_path)), "--since", "yesterday"]) == 2
    assert "--since 'yesterday': expected a duration" in capsys.readouterr().err
