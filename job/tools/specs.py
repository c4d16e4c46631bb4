"""Deployment spec documents built in code: the one builder for the tests, the benchmark and the demo's tools.

It writes the same documents a person writes in YAML, so everything built here goes through the real
`job.runtime.spec` validation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from job.runtime.spec import parse_spec
from job.runtime.values import DeploymentSpec
from job.tools.deps import PROJECT_ROOT

SHIPPED_MODEL = PROJECT_ROOT / "models" / "sentiment-prediction"


def spec_document(
    name: str,
    topics: Mapping[str, str],
    checkpoint: str | Path,
    bootstrap: str | Sequence[str] = "localhost:9092",
    *,
    model: str | Path = SHIPPED_MODEL,
    state: str | Path | None = None,
    options: Mapping[str, Any] | None = None,
    input_connection: Mapping[str, Any] | None = None,
    output_connection: Mapping[str, Any] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """A spec document: `topics` maps the roles "in", "out" and (optionally) "dlq" to topic names.

    Both connections default to the plain broker(s) at `bootstrap`; `fields` adds or replaces top-level
    fields (description, spark, dead_letter, ...).
    """
    servers = [bootstrap] if isinstance(bootstrap, str) else list(bootstrap)
    plain = {"bootstrap_servers": servers}
    doc: dict[str, Any] = {
        "name": name,
        "type": "stream",
        "input": {"connection": dict(input_connection or plain), "source": {"topic": topics["in"]}},
        "output": {"connection": dict(output_connection or plain), "target": {"topic": topics["out"]}},
        "model": {"location": str(model)},
        "checkpoint_location": str(checkpoint),
    }
    if "dlq" in topics:
        doc["dead_letter"] = {"topic": topics["dlq"]}
    if state is not None:
        doc["state_location"] = str(state)
    if options is not None:
        doc["options"] = dict(options)
    doc.update(fields)
    return doc


def build_spec(document: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> DeploymentSpec:
    """The validated spec of a document (environment references resolved from `environ`, default none)."""
    return parse_spec(document, environ=environ or {})


def write_spec(path: Path, document: Mapping[str, Any]) -> Path:
    """The document as a YAML file, for `./spark-submit.sh run --spec PATH`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(dict(document), sort_keys=False), encoding="utf-8")
    return path
