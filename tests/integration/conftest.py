"""A real Kafka broker for the integration tests: the project's own, or an external one if given."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from job.tools.broker import BrokerConfig, LocalBroker
from job.tools.processes import free_port

# Every test in this folder talks to a real broker.
pytestmark = pytest.mark.integration


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`KAFKA_BOOTSTRAP_SERVERS` if set (a broker someone else runs), else our own broker on free ports."""
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        yield external
        return
    broker = LocalBroker(
        BrokerConfig(run_dir=tmp_path_factory.mktemp("kafka"), port=free_port(), controller_port=free_port())
    )
    broker.start(timeout_s=120)
    try:
        yield broker.bootstrap_servers
    finally:
        broker.stop()
