"""The live view against the real job and broker: /api/summary equals what the topics hold, and a real browser sees it.

One deployment (spark-submit.sh in local mode) serves the three tests; each sends its own tweets and compares the
view with the topics read back independently. The browser is Debian's Chromium, driven through its chromedriver
(`make browser` installs both); screenshots go to <pytest base temp>/view-screenshots/.
"""

from __future__ import annotations

import collections
import http.client
import json
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from job.runtime.spec import load_spec
from job.view.cli import RunningView, start_view
from tests.integration.kafka_utils import assert_eventually, create_topics, produce, read_all, unique_topics, written
from tests.integration.messages import Message, mixed_stream
from tests.integration.test_lifecycle import Job, status_of, write_spec


@dataclass
class Deployment:
    bootstrap: str
    topics: dict[str, str]
    spec: Path
    job: Job
    view: RunningView
    sent: int = 0

    def send(self, messages: list[Message]) -> None:
        """Send and wait until the job has written one record per message (scored or dead-lettered)."""
        produce(self.bootstrap, self.topics["in"], [(m.key, m.value) for m in messages])
        self.sent += len(messages)
        assert_eventually(
            lambda: self.handled() >= self.sent or self.job.proc.poll() is not None,
            180,
            f"{self.sent} messages handled",
            interval_s=1,
        )
        assert self.job.proc.poll() is None, self.job.tail()

    def handled(self) -> int:
        return written(self.bootstrap, self.topics["out"], self.topics["dlq"])

    def topic_counts(self) -> tuple[dict[str, int], dict[str, int], int]:
        """Per label and per error code, each source offset once, read straight off the topics; and the copies."""
        by_label: dict[str, str] = {}
        by_code: dict[str, str] = {}
        copies = 0
        for topic, field, seen in (("out", "predictedLabel", by_label), ("dlq", "errorCode", by_code)):
            for record in read_all(self.bootstrap, self.topics[topic]):
                doc = record.json()
                where = f"{doc['sourceTopic']}/{doc['sourcePartition']}/{doc['sourceOffset']}"
                copies += where in seen
                seen[where] = doc[field]
        return dict(collections.Counter(by_label.values())), dict(collections.Counter(by_code.values())), copies

    def summary(self) -> dict[str, Any]:
        connection = http.client.HTTPConnection("127.0.0.1", self.view.server.port, timeout=10)
        try:
            connection.request("GET", "/api/summary")
            response = connection.getresponse()
            assert response.status == 200
            return json.loads(response.read())
        finally:
            connection.close()


@pytest.fixture(scope="module")
def deployment(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    folder = tmp_path_factory.mktemp("view")
    topics = unique_topics("in", "out", "dlq")
    create_topics(kafka_bootstrap, topics.values(), partitions=2)
    spec = write_spec(folder / "spec.yaml", kafka_bootstrap, topics)
    job = Job(spec)
    view = None
    try:
        assert_eventually(
            lambda: status_of(spec).get("state") == "RUNNING" or job.proc.poll() is not None, 180, "the job to run"
        )
        assert job.proc.poll() is None, job.tail()
        view = start_view(load_spec([str(spec)]), since="beginning")
        yield Deployment(kafka_bootstrap, topics, spec, job, view)
    finally:
        if view is not None:
            view.stop()
        job.kill()


def wait_for_summary(deployment: Deployment, condition: Any, what: str) -> dict[str, Any]:
    found: dict[str, Any] = {}

    def check() -> bool:
        found.update(deployment.summary())
        return bool(condition(found))

    assert_eventually(check, 60, what)
    return found


def test_api_summary_reports_exactly_what_the_topics_hold(deployment: Deployment) -> None:
    messages = mixed_stream(300, bad_every=10, first_id=0)
    deployment.send(messages)
    by_label, by_code, copies = deployment.topic_counts()
    assert copies == 0
    # The dead letters are known in advance, independently of the job: the stream says which code each one gets.
    assert by_code == dict(collections.Counter(m.error_code for m in messages if m.error_code))
    assert sum(by_label.values()) == 270 and set(by_label) == {"NEGATIVE", "POSITIVE"}

    # A replayed micro-batch after a crash writes the same source offsets again: the topic holds copies.
    replayed = read_all(deployment.bootstrap, deployment.topics["out"])[:5]
    produce(deployment.bootstrap, deployment.topics["out"], [(r.key, r.value) for r in replayed])
    assert deployment.topic_counts() == (by_label, by_code, 5)

    summary = wait_for_summary(
        deployment,
        lambda s: (
            s["totals"]["by_label"] == by_label and s["totals"]["by_code"] == by_code and s["records"]["duplicate"] == 5
        ),
        "the view to count what the topics hold",
    )
    assert summary["totals"] == {
        "scored": 270,
        "by_label": dict(sorted(by_label.items())),
        "dead_lettered": 30,
        "by_code": dict(sorted(by_code.items())),
    }
    assert summary["records"] == {"counted": 300, "duplicate": 5, "too_late": 0, "unreadable": 0, "outside_window": 0}
    for ring in summary["series"].values():  # every record is in a bucket of each width
        assert {label: sum(counts) for label, counts in ring["by_label"].items()} == by_label
        assert {code: sum(counts) for code, counts in ring["by_code"].items()} == by_code
    assert summary["topics"] == {"output": deployment.topics["out"], "dead_letter": deployment.topics["dlq"]}
    assert summary["readers"][0]["state"] == "reading" and summary["readers"][0]["partitions"] == 4

    latest = summary["latest"]
    assert len(latest) == 50
    assert [r["timestamp_ms"] for r in latest] == sorted((r["timestamp_ms"] for r in latest), reverse=True)
    texts = {m.id: json.loads(m.value)["text"] for m in messages if m.id is not None}  # type: ignore[arg-type]
    assert all(texts[r["id"]] == r["text"] for r in latest)
    assert {r["model_version"] for r in latest} == {status_of(deployment.spec)["model"]["version"]}
    assert all(d["code"] in by_code for d in summary["latest_dead_letters"])

    # Health, from the status document the job keeps.
    status = wait_for_summary(
        deployment, lambda s: (s["health"]["totals"]["records_in"] or 0) >= 300, "the status totals"
    )["health"]
    assert (status["level"], status["words"], status["state"]) == ("ok", "RUNNING", "RUNNING")
    assert status["model"]["name"] == "Sentiment Prediction"
    assert status["totals"] == {"records_in": 300, "records_scored": 270, "records_dead_lettered": 30}
    assert status["offsets_behind_latest"] == 0 and status["stale_after_s"] == 30.0


# -- in a real browser -------------------------------------------------------------------------------------------

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]

# The page's own code: read what a person sees, and count each series' colour on the chart canvases.
READ_PAGE = """
const cells = {};
document.querySelectorAll('[data-testid]').forEach((n) => { cells[n.dataset.testid] = n.textContent; });
const drawn = (id, colours) => {
  const canvas = document.querySelector(`#${id} canvas`);
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  const wanted = colours.map((hex) => [1, 3, 5].map((i) => parseInt(hex.slice(i, i + 2), 16)));
  const counts = wanted.map(() => 0);
  for (let p = 0; p < data.length; p += 4) {
    wanted.forEach((rgb, i) => {
      if (data[p] === rgb[0] && data[p + 1] === rgb[1] && data[p + 2] === rgb[2] && data[p + 3] === 255) counts[i]++;
    });
  }
  return counts;
};
const v = window.jobView;
const s = v.summary;
return {
  updates: v.updates,
  cells,
  scored: document.getElementById('scored-total').textContent,
  dead: document.getElementById('dead-total').textContent,
  health: document.getElementById('health-words').textContent,
  level: document.getElementById('health-badge').dataset.level,
  latestRows: document.querySelectorAll('#latest tbody tr').length,
  firstText: (document.querySelector('#latest tbody tr td:last-child') || {}).textContent,
  labelSeries: v.charts.labels.series.length,
  codeSeries: v.charts.codes.series.length,
  labelPixels: drawn('label-chart', s.labels.map((_, i) => v.colours.labels[i % v.colours.labels.length])),
  codePixels: drawn('code-chart', s.codes.map((_, i) => v.colours.codes[i % v.colours.codes.length])),
  scrollWidth: document.documentElement.scrollWidth,
  innerWidth: window.innerWidth,
};
"""


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.getbasetemp() / "view-screenshots"
    folder.mkdir(exist_ok=True)
    return folder


@pytest.mark.parametrize(("device", "width", "height"), [("laptop", 1366, 900), ("phone", 390, 844)])
def test_a_person_sees_the_counts_change_and_the_charts_draw(
    deployment: Deployment, screenshots: Path, device: str, width: int, height: int
) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    assert shutil.which("chromium") and shutil.which("chromedriver"), "Chromium is missing: run `make browser`"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="view-chromium-")
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        driver.set_window_size(width, height)
        driver.get(deployment.view.url)
        before_label, before_code, _ = deployment.topic_counts()
        page: dict[str, Any] = {}

        def shows(by_label: dict[str, int], by_code: dict[str, int]) -> bool:
            page.update(
                driver.execute_script(READ_PAGE) if driver.execute_script("return !!window.jobView.summary") else {}
            )
            expected = {f"count-{k}": f"{v:,}" for k, v in by_label.items()} | {
                f"dead-{k}": f"{v:,}" for k, v in by_code.items()
            }
            return page.get("cells") == expected

        assert_eventually(
            lambda: shows(before_label, before_code), 30, f"the page to show {before_label} {before_code}"
        )
        updates_before = page["updates"]

        # Tweets flow while the page is open: its counts must move to what the topics then hold.
        wave = mixed_stream(40, bad_every=10, first_id=100_000 + width, seed=width)
        deployment.send(wave)
        after_label, after_code, _ = deployment.topic_counts()
        assert sum(after_label.values()) - sum(before_label.values()) == 36
        assert sum(after_code.values()) - sum(before_code.values()) == 4
        assert_eventually(lambda: shows(after_label, after_code), 30, f"the page to show {after_label} {after_code}")

        assert page["updates"] > updates_before, "the page did not update live"
        assert page["scored"] == f"{sum(after_label.values()):,}" and page["dead"] == f"{sum(after_code.values()):,}"
        assert (page["level"], page["health"]) == ("ok", "RUNNING")
        assert page["latestRows"] == min(50, sum(after_label.values()))
        # The charts: one series per label and per error code (plus uPlot's x series), each drawn in its colour.
        assert page["labelSeries"] == 1 + len(after_label) and page["codeSeries"] == 1 + len(after_code)
        assert all(count > 0 for count in page["labelPixels"]), page["labelPixels"]
        assert all(count > 0 for count in page["codePixels"]), page["codePixels"]
        assert page["scrollWidth"] <= page["innerWidth"], "the page is wider than the screen"

        # The 1-minute switch redraws the same figures in wider buckets.
        driver.find_element("css selector", "button[data-ring='1m']").click()
        assert driver.execute_script("return window.jobView.ring") == "1m"
        assert driver.find_element("css selector", "button[data-ring='1m']").get_attribute("aria-pressed") == "true"
        driver.find_element("css selector", "button[data-ring='10s']").click()

        shot = screenshots / f"{device}.png"
        driver.save_screenshot(str(shot))
        full = screenshots / f"{device}-full.png"
        page_height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(width, page_height + 100)
        driver.save_screenshot(str(full))
        print(f"screenshots: {shot} {full}")
        assert shot.stat().st_size > 10_000
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
