"""Versions and download locations of the JVM parts, all derived from the one pyspark pin."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pyspark

logger = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
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
    "org.scala-lang:scala-library",
    "org.apache.spark:spark-tags_2.13",
)


def ivy_settings() -> Path:
    """An Ivy settings file (written into the cache) that resolves from Maven Central alone."""
    path = CACHE_DIR / "ivysettings.xml"
    text = _IVY_SETTINGS.format(root=MAVEN_CENTRAL)
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return path


def connector_home() -> Path:
    return CACHE_DIR / f"spark-sql-kafka-{SPARK_VERSION}"


def connector_jars() -> list[Path]:
    """The Kafka connector and its own dependencies, fetched once into the cache (offline afterwards)."""
    group, artifact, version = connector_package().split(":")
    lib = fetch_jars(
        connector_home(),
        [(group, artifact, version)],
        excludes=PROVIDED_BY_PYSPARK,
        what=f"the Spark Kafka connector {version}",
    )
    return [lib / name for name in _marker(lib).read_text().split()]


def spark_package_conf() -> dict[str, str]:
    """Spark settings that add the Kafka connector: local jars, so start-up resolves nothing."""
    return {"spark.jars": ",".join(str(p) for p in connector_jars())}


def spark_submit_args() -> list[str]:
    """The spark-submit arguments that add the connector (used by spark-submit.sh)."""
    return ["--jars", spark_package_conf()["spark.jars"]]


# --------------------------------------------------------------------------------------------------------
# Fetching jars from Maven Central with the Ivy that Spark ships


class FetchError(RuntimeError):
    """Jars could not be fetched; the message names the artifacts, the cause and what must be reachable."""


def java_executable() -> str:
    """`java`: $JAVA_HOME/bin/java if present (as Kafka's and Spark's scripts do), else PATH."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidate = Path(java_home) / "bin" / "java"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("java")
    if found is None:
        raise FetchError(
            "java not found on PATH: Spark 4 and Kafka 4 need a Java 17+ runtime. "
            "Install OpenJDK 17 (Debian/Ubuntu: apt-get install openjdk-17-jre-headless; "
            "macOS: brew install openjdk@17) or set JAVA_HOME."
        )
    return found


def _marker(lib_dir: Path) -> Path:
    return lib_dir.parent / "lib.complete"


def jars_complete(lib_dir: Path) -> bool:
    """True when a retrieve finished and every jar it listed in the marker file is still there."""
    marker = _marker(lib_dir)
    if not marker.is_file():
        return False
    names = marker.read_text().split()
    return bool(names) and all((lib_dir / name).is_file() for name in names)


def _ivy_module_xml(artifacts: Sequence[tuple[str, str, str]], excludes: Sequence[str]) -> str:
    lines = [
        '<ivy-module version="2.0">',
        '  <info organisation="local" module="stream-job-fetch"/>',
        '  <configurations><conf name="default"/></configurations>',
        "  <dependencies>",
        *(
            f'    <dependency org="{org}" name="{name}" rev="{rev}" conf="default->default"/>'
            for org, name, rev in artifacts
        ),
        *(
            f'    <exclude org="{org}" module="{name}"/>'
            for org, name in (coordinates.split(":") for coordinates in excludes)
        ),
        "  </dependencies>",
        "</ivy-module>",
    ]
    return "\n".join(lines) + "\n"


def ivy_failure_summary(output: str, artifacts: Sequence[tuple[str, str, str]]) -> str:
    """Turn Ivy's output into 'which artifacts failed, and the first underlying error'."""
    failed = []
    for match in re.finditer(r"^\s*:: ([^\s#]+)#([^\s;]+);(\S+?): (.+)$", output, re.MULTILINE):
        org, name, rev, reason = match.groups()
        failed.append(f"{org}:{name}:{rev} ({reason.strip()})")
    for match in re.finditer(r"\[FAILED\s*\]\s+([^\s#]+)#([^\s;]+);([^\s!]+)!(\S+?):? (.*)$", output, re.MULTILINE):
        org, name, rev, artifact, reason = match.groups()
        failed.append(f"{org}:{name}:{rev} artifact {artifact} ({reason.strip()})")
    if not failed:
        failed = [f"{org}:{name}:{rev}" for org, name, rev in artifacts]
    cause = next(
        (
            line.strip()
            for line in output.splitlines()
            if ("error" in line.lower() or "exception" in line.lower()) and not line.strip().startswith("::")
        ),
        "",
    )
    summary = "unresolved: " + ", ".join(dict.fromkeys(failed))
    return summary + (f"; first error: {cause}" if cause else "")


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Serialise work across processes (pytest workers, a second terminal) with an flock on `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def fetch_jars(
    home: Path,
    artifacts: Sequence[tuple[str, str, str]],
    *,
    what: str,
    excludes: Sequence[str] = (),
    ivy_settings_file: Path | None = None,
    ivy_cache: Path | None = None,
) -> Path:
    """Download artifacts and their runtime dependencies once into `home/lib`; return that folder.

    Later calls only check the completeness marker, so they work offline. Ivy resolves from Maven
    Central alone (`ivy_settings()`) unless another settings file is given.
    """
    lib_dir = home / "lib"
    if jars_complete(lib_dir):
        return lib_dir
    java = java_executable()
    ivy = ivy_jar()
    home.mkdir(parents=True, exist_ok=True)
    with file_lock(home / "fetch.lock"):
        if jars_complete(lib_dir):  # another process fetched while we waited for the lock
            return lib_dir
        shutil.rmtree(lib_dir, ignore_errors=True)
        _marker(lib_dir).unlink(missing_ok=True)
        module = home / "ivy.xml"
        module.write_text(_ivy_module_xml(artifacts, excludes))
        cmd = [
            java,
            "-jar",
            str(ivy),
            "-settings",
            str(ivy_settings_file or ivy_settings()),
            "-ivy",
            str(module),
            "-confs",
            "default",
            "-cache",
            str(ivy_cache or IVY_DIR),
            "-retrieve",
            f"{lib_dir}/[artifact]-[revision](-[classifier]).[ext]",
        ]
        logger.info("Fetching %s from Maven Central into %s (first run only)", what, lib_dir)
        started = time.monotonic()
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        jars = sorted(p.name for p in lib_dir.glob("*.jar")) if lib_dir.is_dir() else []
        if proc.returncode != 0 or not jars:
            raise FetchError(
                f"could not fetch {what} ({ivy_failure_summary(proc.stdout + proc.stderr, artifacts)}). "
                f"The first run downloads them from Maven Central ({MAVEN_CENTRAL}), which must be reachable; "
                f"later runs start offline from {home}."
            )
        _marker(lib_dir).write_text("\n".join(jars) + "\n")
        logger.info("Fetched %d jars in %.1f s", len(jars), time.monotonic() - started)
    return lib_dir


def spark_home() -> Path:
    """The pinned pyspark installation doubles as SPARK_HOME (bin/spark-submit, jars/)."""
    return Path(pyspark.__file__).resolve().parent


def ivy_jar() -> Path:
    """Spark ships Apache Ivy; we reuse it to fetch jars (connector, Kafka broker) without extra tools."""
    jars = sorted((spark_home() / "jars").glob("ivy-*.jar"))
    if not jars:
        raise FileNotFoundError(f"no ivy-*.jar in {spark_home() / 'jars'}; is pyspark installed correctly?")
    return jars[-1]


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else "connector"
    commands = {
        "connector": connector_package,
        "spark-home": spark_home,
        "ivy-dir": lambda: IVY_DIR,
        "ivy-settings": ivy_settings,
        "submit-args": lambda: "\n".join(spark_submit_args()),
        "fetch": lambda: f"Spark Kafka connector jars in {connector_jars()[0].parent}",
    }
    try:
        print(commands[what]())
    except (FetchError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
