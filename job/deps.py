"""Versions and download locations of the JVM parts, all derived from the one pyspark pin."""

from __future__ import annotations

import os
from pathlib import Path

import pyspark

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Everything downloaded (Kafka broker jars, Ivy cache for the connector) lives here, git-ignored.
CACHE_DIR = Path(os.environ.get("STREAM_JOB_CACHE", PROJECT_ROOT / ".cache")).resolve()
IVY_DIR = CACHE_DIR / "ivy"

SPARK_VERSION = pyspark.__version__
SCALA_BINARY_VERSION = "2.13"  # every Spark 4.x build uses Scala 2.13


def connector_package() -> str:
    """Maven coordinates of the Spark Kafka connector matching the installed pyspark exactly."""
    return f"org.apache.spark:spark-sql-kafka-0-10_{SCALA_BINARY_VERSION}:{SPARK_VERSION}"


def spark_home() -> Path:
    """The pinned pyspark installation doubles as SPARK_HOME (bin/spark-submit, jars/)."""
    return Path(pyspark.__file__).resolve().parent


def ivy_jar() -> Path:
    """Spark ships Apache Ivy; we reuse it to fetch the Kafka broker jars without extra tools."""
    jars = sorted((spark_home() / "jars").glob("ivy-*.jar"))
    if not jars:
        raise FileNotFoundError(f"no ivy-*.jar in {spark_home() / 'jars'}; is pyspark installed correctly?")
    return jars[-1]


if __name__ == "__main__":
    import sys

    what = sys.argv[1] if len(sys.argv) > 1 else "connector"
    print({"connector": connector_package, "spark-home": spark_home, "ivy-dir": lambda: IVY_DIR}[what]())
