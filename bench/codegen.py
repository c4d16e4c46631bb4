"""Spark's code-generation counters (Janino compilations, generated method sizes) around a measurement.

They show two costs the timings alone hide: a stage whose generated code changes every micro-batch is
compiled again every batch, and a generated method over HotSpot's 8,000-byte limit is never JIT-compiled
(`-XX:+DontCompileHugeMethods`, the default), so it runs in the bytecode interpreter.
"""

from __future__ import annotations

from typing import Any

HOTSPOT_HUGE_METHOD_BYTES = 8000


def _metrics(spark: Any) -> Any:
    return spark._jvm.org.apache.spark.metrics.source.CodegenMetrics


def compilations(spark: Any) -> int:
    """Janino compilations so far in this JVM (cache hits are not counted)."""
    return int(_metrics(spark).METRIC_COMPILATION_TIME().getCount())


class CodegenCounter:
    """Compilations during a measurement, their recent mean time, and the largest generated method."""

    def __init__(self, spark: Any) -> None:
        self._spark = spark
        self._start = compilations(spark)

    def result(self) -> dict[str, Any]:
        metrics = _metrics(self._spark)
        compile_time = metrics.METRIC_COMPILATION_TIME().getSnapshot()
        method = metrics.METRIC_GENERATED_METHOD_BYTECODE_SIZE().getSnapshot()
        largest = int(method.getMax())
        return {
            "compilations": compilations(self._spark) - self._start,
            # The histogram keeps a decaying sample of recent compilations, so this is a recent mean.
            "recent_mean_compile_ms": round(float(compile_time.getMean()), 1),
            "largest_generated_method_bytes": largest,
            "largest_method_over_jit_limit": largest > HOTSPOT_HUGE_METHOD_BYTES,
        }


def plan_method_sizes(df: Any) -> dict[str, Any]:
    """Largest generated method (bytecode bytes) of each whole-stage-codegen subtree of df's plan.

    Compiles df's code without running it (Spark's `debug.codegenStringSeq`). Adaptive execution is
    switched off while the plan is made: an adaptive plan has no codegen stages until it has run.
    """
    spark = df.sparkSession
    adaptive = spark.conf.get("spark.sql.adaptive.enabled")
    spark.conf.set("spark.sql.adaptive.enabled", "false")
    try:
        plan = df.select("*")._jdf.queryExecution().executedPlan()  # a new Dataset plans with the setting
    finally:
        spark.conf.set("spark.sql.adaptive.enabled", adaptive)
    stages = spark._jvm.org.apache.spark.sql.execution.debug.package.codegenStringSeq(plan)
    sizes = [int(stages.apply(i)._3().maxMethodCodeSize()) for i in range(stages.size())]
    source = sum(len(stages.apply(i)._2()) for i in range(stages.size()))
    return {
        "codegen_stages": len(sizes),
        "largest_method_bytes": max(sizes, default=0),
        "over_jit_limit": any(s > HOTSPOT_HUGE_METHOD_BYTES for s in sizes),
        "generated_source_chars": source,
    }
