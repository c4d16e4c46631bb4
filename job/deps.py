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


MAVEN_CENTRAL = os.environ.get("STREAM_JOB_MAVEN_REPO", "https://repo1.maven.org/maven2/")

_IVY_SETTINGS = """<ivysettings>
  <!-- Maven Central only: Spark's default chain also reads ~/.m2, where a half-finished Maven
       download (a .pom without its .jar) makes the whole resolution fail. -->
  <settings defaultResolver="central"/>
  <resolvers>
    <ibiblio name="central" m2compatible="true" root="{root}"/>
  </resolvers>
</ivysettings>
"""


PROVIDED_BY_PYSPARK = (
    "org.apache.hadoop:hadoop-client-api",
    "org.apache.hadoop:hadoop-client-runtime",
    "at.yawk.lz4:lz4-java",
    "org.xerial.snappy:snappy-java",
    "org.slf4j:slf4j-api",
    "com.google.code.findbugs:jsr305",
    "org.scala-lang.modules:scala-parallel-collections_2.13",
)


def ivy_settings() -> Path:
    """An Ivy settings file (written into the cache) that resolves from Maven Central alone."""
    path = CACHE_DIR / "ivysettings.xml"
    text = _IVY_SETTINGS.format(root=MAVEN_CENTRAL)
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return path


def spark_package_conf() -> dict[str, str]:
    """Spark settings that add the Kafka connector, resolved once into the project's cache."""
    return {
        "spark.jars.packages": connector_package(),
        "spark.jars.ivy": str(IVY_DIR),
        "spark.jars.ivySettings": str(ivy_settings()),
        # Already in pyspark's own jars/; a second copy on the class path only costs start-up time.
        "spark.jars.excludes": ",".join(PROVIDED_BY_PYSPARK),
    }


def spark_submit_args() -> list[str]:
    """The spark-submit arguments that add the connector (used by spark-submit.sh)."""
    conf = spark_package_conf()
    args = ["--packages", conf.pop("spark.jars.packages")]
    for key, value in conf.items():
        args += ["--conf", f"{key}={value}"]
    return args


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
    commands = {
        "connector": connector_package,
        "spark-home": spark_home,
        "ivy-dir": lambda: IVY_DIR,
        "ivy-settings": ivy_settings,
        "submit-args": lambda: "\n".join(spark_submit_args()),
    }
    print(commands[what]())
