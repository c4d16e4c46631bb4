"""Shared fixtures: one local Spark session for the whole test run."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pyspark.sql import SparkSession

from job.runtime.session import local_session
from job.tools.deps import spark_package_conf


@pytest.fixture(scope="session")
def spark() -> Iterator[SparkSession]:
    # The Kafka connector matching the pinned pyspark, resolved once into the project's cache.
    session = local_session(
        "stream-deployment-tests",
        conf={**spark_package_conf(), "spark.driver.memory": "2g", "spark.sql.streaming.stopTimeout": "60s"},
    )
    yield session
    session.stop()
