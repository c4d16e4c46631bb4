"""Files at any location Spark reads: local paths through the OS, other URIs through Spark's Hadoop file system.

Locations are used exactly as given (scheme, authority, query): nothing here rewrites a URI into a local
path except a scheme-less path or a `file:` URI, which the OS reads directly. Hadoop is what Spark itself
reads through, so any URI Spark can load (hdfs, s3a, abfs, viewfs, ...) works here the same way; PySpark has
no public API for it, so it is reached through the session's JVM.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from pyspark.sql import SparkSession


def is_local(location: str) -> bool:
    """Whether a location is a path on this machine (no scheme, or file:), which the OS reads directly."""
    return urlparse(location).scheme in ("", "file")


def local_path(location: str) -> Path:
    """The path of a local location (a plain path or a file: URI)."""
    parsed = urlparse(location)
    return Path(parsed.path if parsed.scheme == "file" else location)


def join(location: str, name: str) -> str:
    """`name` inside the folder at `location`, by plain string join so the URI stays as given."""
    return f"{location.rstrip('/')}/{name}"


def jvm(spark: SparkSession) -> Any:
    """The session's py4j view of the driver's JVM (classes by their Java names)."""
    view = spark.sparkContext._jvm
    if view is None:
        raise RuntimeError("the SparkSession has no JVM (stopped?)")
    return view


def _session(spark: SparkSession | None, uri: str) -> SparkSession:
    if spark is None:
        raise ValueError(f"{uri!r} is not a local path; reaching it needs a SparkSession")
    return spark


def _hadoop(spark: SparkSession | None, uri: str) -> tuple[Any, Any]:
    """(FileSystem, Path) of a non-local URI."""
    session = _session(spark, uri)
    path = jvm(session).org.apache.hadoop.fs.Path(uri)
    return path.getFileSystem(session.sparkContext._jsc.hadoopConfiguration()), path


def exists(spark: SparkSession | None, uri: str) -> bool:
    if is_local(uri):
        return local_path(uri).exists()
    fs, path = _hadoop(spark, uri)
    return bool(fs.exists(path))


def is_directory(spark: SparkSession | None, uri: str) -> bool:
    if is_local(uri):
        return local_path(uri).is_dir()
    fs, path = _hadoop(spark, uri)
    return bool(fs.exists(path)) and bool(fs.getFileStatus(path).isDirectory())


def list_names(spark: SparkSession | None, uri: str) -> list[str]:
    """Names of the entries directly inside the folder at `uri`."""
    if is_local(uri):
        return sorted(entry.name for entry in local_path(uri).iterdir())
    fs, path = _hadoop(spark, uri)
    return sorted(str(status.getPath().getName()) for status in fs.listStatus(path))


def read_text(spark: SparkSession | None, uri: str) -> str | None:
    """The whole UTF-8 content of one file, or None when there is no file there."""
    if is_local(uri):
        path = local_path(uri)
        return path.read_text(encoding="utf-8") if path.is_file() else None
    fs, path = _hadoop(spark, uri)
    if not fs.exists(path) or not fs.getFileStatus(path).isFile():
        return None
    stream = fs.open(path)
    try:
        return str(jvm(_session(spark, uri)).org.apache.commons.io.IOUtils.toString(stream, "UTF-8"))
    finally:
        stream.close()


def write_text(spark: SparkSession | None, uri: str, text: str) -> None:
    """Write or replace one small UTF-8 file, atomically: readers see the old content or the new, never half.

    Written beside under a temporary name, then renamed over the target (creating parent folders).
    """
    if is_local(uri):
        path = local_path(uri)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
        return
    spark = _session(spark, uri)
    hadoop = jvm(spark).org.apache.hadoop.fs
    target = hadoop.Path(uri)
    tmp = hadoop.Path(target.getParent(), f".{target.getName()}.{uuid.uuid4().hex}.tmp")
    context = hadoop.FileContext.getFileContext(target.toUri(), spark.sparkContext._jsc.hadoopConfiguration())
    gateway = spark.sparkContext._gateway
    assert gateway is not None
    create_options = gateway.new_array(hadoop.Options.CreateOpts, 1)
    create_options[0] = hadoop.Options.CreateOpts.createParent()
    stream = context.create(tmp, jvm(spark).java.util.EnumSet.of(hadoop.CreateFlag.CREATE), create_options)
    try:
        stream.write(bytearray(text.encode("utf-8")))
    finally:
        stream.close()
    rename_options = gateway.new_array(hadoop.Options.Rename, 1)
    rename_options[0] = hadoop.Options.Rename.OVERWRITE
    context.rename(tmp, target, rename_options)


def delete(spark: SparkSession | None, uri: str, recursive: bool = False) -> bool:
    """Remove a file (or with `recursive`, a folder and all in it); True if something was there."""
    if is_local(uri):
        path = local_path(uri)
        if path.is_dir() and not path.is_symlink():
            if not recursive:
                raise IsADirectoryError(f"{uri} is a folder")
            shutil.rmtree(path)
            return True
        if not path.exists() and not path.is_symlink():
            return False
        path.unlink()
        return True
    fs, path = _hadoop(spark, uri)
    return bool(fs.exists(path) and fs.delete(path, recursive))


def list_files(spark: SparkSession | None, uri: str) -> list[str]:
    """Paths, relative to the folder at `uri` and '/'-separated, of every file under it (recursively), sorted."""
    if is_local(uri):
        root = local_path(uri)
        return sorted(path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file())
    fs, path = _hadoop(spark, uri)
    base = str(fs.makeQualified(path).toUri().getPath()).rstrip("/")
    found = []
    files = fs.listFiles(path, True)
    while files.hasNext():
        file_path = str(files.next().getPath().toUri().getPath())
        found.append(file_path[len(base) + 1 :])
    return sorted(found)


def sha256(spark: SparkSession | None, uri: str) -> str:
    """The hex SHA-256 digest of one file's bytes (computed in the JVM for a Hadoop URI: no bytes cross py4j)."""
    if is_local(uri):
        digest = hashlib.sha256()
        with local_path(uri).open("rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()
    fs, path = _hadoop(spark, uri)
    stream = fs.open(path)
    try:
        return str(jvm(_session(spark, uri)).org.apache.commons.codec.digest.DigestUtils.sha256Hex(stream))
    finally:
        stream.close()


def copy_tree(spark: SparkSession | None, source: str, target: str) -> None:
    """Copy the folder at `source` to `target` (which must not exist), byte for byte, across file systems."""
    if is_local(source) and is_local(target):
        shutil.copytree(local_path(source), local_path(target))
        return
    session = _session(spark, source if not is_local(source) else target)
    conf = session.sparkContext._jsc.hadoopConfiguration()
    hadoop = jvm(session).org.apache.hadoop.fs
    source_path, target_path = hadoop.Path(source), hadoop.Path(target)
    copied = hadoop.FileUtil.copy(
        source_path.getFileSystem(conf), source_path, target_path.getFileSystem(conf), target_path, False, conf
    )
    if not copied:
        raise OSError(f"copying {source} to {target} failed")
