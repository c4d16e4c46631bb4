"""Per-micro-batch costs from Spark's own event log: the task binary each batch ships, and its tasks' times.

The bench's SparkSession writes an event log with block updates (`spark.eventLog.logBlockUpdates.enabled`).
A block is reported when stored and again when removed (then with replication 0): the first report counts.
Every job of a streaming batch carries the batch's id and the query's id in its properties; a stage's
task binary is a broadcast (`broadcast_N`) whose pieces the driver stores (compressed by
`spark.broadcast.compress`, lz4 by default) and reports as block updates. A broadcast is counted for the
batch whose job started last before it in the log (the listener bus keeps the driver's order). Task end
events carry the executor's deserialize time (reading the task binary: the closure, the model inside it)
and its run and CPU times.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

BATCH_ID = "streaming.sql.batchId"
QUERY_ID = "sql.streaming.queryId"
_PIECE = re.compile(r"broadcast_(\d+)_piece\d+")


@dataclass
class BatchCosts:
    """What one micro-batch's jobs cost the executors, and the broadcasts they shipped."""

    broadcast_bytes: dict[int, int] = field(default_factory=dict)  # broadcast id -> bytes of its pieces
    tasks: int = 0
    deserialize_ms: float = 0.0
    deserialize_cpu_ms: float = 0.0
    run_ms: float = 0.0
    cpu_ms: float = 0.0


def events(path: Path) -> Iterator[dict[str, Any]]:
    """The events of an uncompressed event log (one JSON object a line); a half-written last line is skipped."""
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue


def batch_costs(log: Iterable[dict[str, Any]], query_id: str) -> dict[int, BatchCosts]:
    """Batch id -> its costs, for the jobs of one streaming query."""
    stage_batch: dict[int, int] = {}
    current: int | None = None  # the batch of the last job started, of this query or not
    batches: dict[int, BatchCosts] = defaultdict(BatchCosts)
    seen: set[str] = set()  # pieces already counted: a piece is reported again when it is removed
    for event in log:
        kind = event.get("Event")
        if kind == "SparkListenerJobStart":
            props = event.get("Properties") or {}
            current = None
            if props.get(QUERY_ID) == query_id and props.get(BATCH_ID) is not None:
                current = int(props[BATCH_ID])
                for stage in event.get("Stage IDs", []):
                    stage_batch[int(stage)] = current
        elif kind == "SparkListenerBlockUpdated":
            info = event.get("Block Updated Info") or {}
            if (info.get("Block Manager ID") or {}).get("Executor ID") != "driver":
                continue  # an executor's copy of a piece it fetched: shipped once, counted once
            block = str(info.get("Block ID", ""))
            match = _PIECE.fullmatch(block)
            size = int(info.get("Memory Size", 0)) + int(info.get("Disk Size", 0))
            removed = int((info.get("Storage Level") or {}).get("Replication", 1)) == 0
            if not match or size <= 0 or removed or block in seen:
                continue
            seen.add(block)
            if current is not None:
                piece_sizes = batches[current].broadcast_bytes
                broadcast = int(match.group(1))
                # The sum over a broadcast's pieces (4 MiB each by default) is its size as shipped.
                piece_sizes[broadcast] = piece_sizes.get(broadcast, 0) + size
        elif kind == "SparkListenerTaskEnd" and int(event.get("Stage ID", -1)) in stage_batch:
            metrics = event.get("Task Metrics") or {}
            costs = batches[stage_batch[int(event["Stage ID"])]]
            costs.tasks += 1
            costs.deserialize_ms += float(metrics.get("Executor Deserialize Time", 0))
            costs.deserialize_cpu_ms += float(metrics.get("Executor Deserialize CPU Time", 0)) / 1e6
            costs.run_ms += float(metrics.get("Executor Run Time", 0))
            costs.cpu_ms += float(metrics.get("Executor CPU Time", 0)) / 1e6
    return dict(batches)


def summary(batches: dict[int, BatchCosts], skip_first: int = 0) -> dict[str, Any]:
    """Medians per batch over the batches after the first `skip_first` (the warm-up), in batch order."""
    kept = [batches[b] for b in sorted(batches)][skip_first:]
    if not kept:
        return {"batches": 0}

    def median(values: Sequence[float]) -> float:
        return round(float(np.median(values)), 2)

    shipped = [sum(b.broadcast_bytes.values()) for b in kept]
    return {
        "batches": len(kept),
        "broadcasts_per_batch": median([len(b.broadcast_bytes) for b in kept]),
        "task_binary_bytes_per_batch": median(shipped),
        "largest_task_binary_bytes": max(max(b.broadcast_bytes.values(), default=0) for b in kept),
        "tasks_per_batch": median([b.tasks for b in kept]),
        "deserialize_ms_per_batch": median([b.deserialize_ms for b in kept]),
        "deserialize_cpu_ms_per_batch": median([b.deserialize_cpu_ms for b in kept]),
        "task_run_ms_per_batch": median([b.run_ms for b in kept]),
        "task_cpu_ms_per_batch": median([b.cpu_ms for b in kept]),
    }


def newest_log(directory: Path) -> Path | None:
    """The event log Spark writes in `directory` (an `.inprogress` file while the application runs)."""
    files = [p for p in directory.iterdir() if p.is_file()] if directory.is_dir() else []
    return max(files, key=lambda p: p.stat().st_mtime, default=None)


def java_serialized_bytes(spark: Any, pipeline: Any) -> dict[str, int]:
    """Each stage of a pipeline model as Java serialization writes it: what a batch's closure carries of it.

    A model stage's transform is a UDF that holds the stage, and the task binary is the Java-serialized plan
    with its closures, so this is the model's share of every batch's task binary (before compression).
    """
    jvm = spark._jvm
    sizes: dict[str, int] = {}
    for index, stage in enumerate(pipeline.stages):
        buffer = jvm.java.io.ByteArrayOutputStream()
        out = jvm.java.io.ObjectOutputStream(buffer)
        out.writeObject(stage._java_obj)
        out.close()
        sizes[f"{index}_{type(stage).__name__}"] = int(buffer.size())
    return sizes
