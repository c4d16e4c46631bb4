"""Static scoring: `PipelineModel.transform` rows/s on a cached DataFrame, per stage, and why LR is slow.

Every timing forces the work with a write to Spark's `noop` sink of just the columns under test: the
sink consumes every row of those columns, so nothing is pruned away, and nothing is written anywhere.
Prefixes of the pipeline are timed on the same cached input and differenced into a per-stage breakdown;
each stage is also timed alone on a cached copy of its input. The investigation then compares the
LogisticRegressionModel as loaded (sparse coefficients) with the same model made dense.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from pyspark.ml import PipelineModel
from pyspark.ml.functions import vector_to_array
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from bench.baseline import Scorer, ScorerParams
from bench.codegen import CodegenCounter, plan_method_sizes
from bench.kafka_io import tweets_frame
from bench.queries import constant_scores
from job.runtime import scoring
from job.runtime.model import with_dense_coefficients
from job.runtime.query import model_info, model_input_fields
from job.runtime.values import DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_MAX_TEXT_LENGTH

logger = logging.getLogger(__name__)

# Names of the parts timed alone (keys of the results' "alone" table; the report refers to them).
TOKENIZER_ALONE = "tokenizer (first stage) on cached text"
HASHING_ALONE = "HashingTF on cached tokens"
LR_SPARSE = "LR as loaded (sparse coefficients) on cached features"
LR_PREDICTION_ONLY = "LR as loaded, prediction column only (no raw, no probability)"
LR_DENSE = "LR with dense coefficients on cached features"
LR_DENSE_ARRAY = "LR with dense coefficients + vector_to_array(probability)"
FEATURES_SCAN = "scan of the cached features"
PARSE = "JSON parse only (scoring.parse_messages)"
PARSE_REFERENCE = "reference: try_parse_json once + the fields, no checks"
PARSE_AND_SHAPE = "JSON parse + shape output records, no model"
JOB_SPARSE = "the job's scoring transforms, model as loaded"
JOB_DENSE = "the job's scoring transforms, dense LR"
LR_RAW_ONLY = "LR as loaded, rawPrediction only (the margins)"


def time_noop(df: DataFrame, repeats: int = 1) -> float:
    """Median seconds to run `df` into the noop sink."""
    times = []
    for _ in range(max(repeats, 1)):
        started = time.perf_counter()
        df.write.format("noop").mode("overwrite").save()
        times.append(time.perf_counter() - started)
    return float(np.median(times))


def stage_breakdown(prefix_seconds: Mapping[str, float], rows: int) -> list[dict[str, Any]]:
    """Per-stage seconds from cumulative prefix times (stage name -> seconds of stages up to it)."""
    out = []
    previous = 0.0
    total = list(prefix_seconds.values())[-1]
    for stage, cumulative in prefix_seconds.items():
        seconds = cumulative - previous
        out.append({"stage": stage, "seconds": seconds, "us_per_row": seconds * 1e6 / rows, "share": seconds / total})
        previous = cumulative
    return out


def sparse_dot_steps(coefficient_indices: np.ndarray, doc: np.ndarray, index: np.ndarray, rows: int) -> np.ndarray:
    """Loop steps of Spark's `BLAS.dot(SparseVector, SparseVector)` per row: the row's own entries plus the
    coefficient entries it walks past, i.e. those at or below the row's largest feature index."""
    last = np.full(rows, -1, dtype=np.int64)
    np.maximum.at(last, doc, index)
    walked = np.searchsorted(coefficient_indices, last, side="right")
    return walked + np.bincount(doc, minlength=rows)


def reference_parse(df: DataFrame, fields: Sequence[scoring.InputField]) -> DataFrame:
    """JSON parsed once into a variant column, then each field taken from it: no validation at all.

    A yardstick for `scoring.parse_messages`, not a replacement (it accepts anything).
    """
    parsed = df.select(F.try_parse_json(F.col(scoring.VALUE).cast("string")).alias("_variant"))
    return parsed.select(*[F.try_variant_get("_variant", f"$.{f.name}", f.type).alias(f.name) for f in fields])


def _count_in_plan(df: DataFrame, name: str) -> int:
    """How often an expression appears in the optimized plan (each copy may be evaluated per row)."""
    return df._jdf.queryExecution().optimizedPlan().toString().count(name)


def _rate(rows: int, seconds: float) -> dict[str, float]:
    return {"seconds": round(seconds, 3), "rows_per_s": round(rows / seconds, 1)}


def _cached(df: DataFrame) -> DataFrame:
    df = df.cache()
    df.count()  # the cache holds every column of df once an action has gone through it
    return df


def _kafka_rows(df: DataFrame) -> DataFrame:
    """Rows shaped like the Kafka source's, with the tweet as the JSON value."""
    return df.select(
        F.lit(None).cast("binary").alias(scoring.KEY),
        F.to_json(F.struct("id", "text")).cast("binary").alias(scoring.VALUE),
        F.lit("tweets").alias(scoring.TOPIC),
        F.lit(0).alias(scoring.PARTITION),
        F.col("id").cast("long").alias(scoring.OFFSET),
        F.current_timestamp().alias(scoring.TIMESTAMP),
    )


def run_static(
    spark: SparkSession,
    model: Any,
    texts: Sequence[str],
    rows: int,
    investigation_rows: int,
    repeats: int,
    log: Callable[[str], None] = logger.info,
) -> dict[str, Any]:
    """All static figures; `model` is the job's LoadedModel (pipeline + metadata)."""
    pipeline: PipelineModel = model.pipeline
    # Typed loosely: each stage is used through the params of its own class (outputCol, predictionCol, ...).
    stages: list[Any] = list(pipeline.stages)
    names = [type(s).__name__ for s in stages]
    lr = stages[-1]
    result: dict[str, Any] = {"rows": rows, "investigation_rows": investigation_rows, "stages": names}
    info = model_info(model)

    base = _cached(tweets_frame(spark, texts, rows, partitions=spark.sparkContext.defaultParallelism))
    log(f"static: {rows} tweets cached")
    # Warm the JIT on a slice, so the first timing does not pay for compiling the UDF paths.
    time_noop(pipeline.transform(base.limit(20_000)).select("prediction", "probability"))

    prefix: dict[str, float] = {"(scan of the cached input)": time_noop(base.select("text"), repeats)}
    for k, name in enumerate(names, start=1):
        output = stages[k - 1].getOutputCol() if k < len(stages) else None
        cols = [output] if output else [lr.getPredictionCol(), lr.getProbabilityCol()]
        prefix[name] = time_noop(PipelineModel(stages[:k]).transform(base).select(*cols), repeats)
        log(f"static: prefix up to {name}: {rows / prefix[name]:,.0f} rows/s")
    full = prefix[names[-1]]
    result["pipeline"] = _rate(rows, full)
    result["prefix_seconds"] = {k: round(v, 3) for k, v in prefix.items()}
    result["breakdown"] = [
        {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()}
        for row in stage_breakdown({n: prefix[n] for n in names}, rows)
    ]

    dense_pipeline = with_dense_coefficients(spark, pipeline)
    result["pipeline_dense_lr"] = _rate(
        rows, time_noop(dense_pipeline.transform(base).select(lr.getPredictionCol(), lr.getProbabilityCol()), repeats)
    )
    log(f"static: pipeline with dense LR coefficients: {result['pipeline_dense_lr']['rows_per_s']:,.0f} rows/s")

    # Each stage alone, on a cached copy of its input (a smaller slice: the slow variants take long).
    m = min(investigation_rows, rows)
    small = _cached(base.limit(m))
    words = _cached(PipelineModel(stages[:1]).transform(small).select(stages[0].getOutputCol()))
    features = _cached(PipelineModel(stages[:2]).transform(small).select(stages[1].getOutputCol()))
    pred, prob, raw = lr.getPredictionCol(), lr.getProbabilityCol(), lr.getRawPredictionCol()
    dense_lr: Any = dense_pipeline.stages[-1]
    kafka_rows = _cached(_kafka_rows(small))
    fields = model_input_fields(model)
    parse = scoring.parse_messages(fields, DEFAULT_MAX_TEXT_LENGTH, DEFAULT_MAX_MESSAGE_BYTES)

    def job_transforms(p: PipelineModel) -> Callable[[DataFrame], DataFrame]:
        return scoring.scoring_pipeline(
            p, info, "bench", "out", "dlq", DEFAULT_MAX_TEXT_LENGTH, DEFAULT_MAX_MESSAGE_BYTES
        )

    parts: dict[str, DataFrame] = {
        TOKENIZER_ALONE: stages[0].transform(small).select(stages[0].getOutputCol()),
        HASHING_ALONE: stages[1].transform(words).select(stages[1].getOutputCol()),
        LR_SPARSE: lr.transform(features).select(pred, prob),
        LR_PREDICTION_ONLY: lr.copy({lr.rawPredictionCol: "", lr.probabilityCol: ""}).transform(features).select(pred),
        LR_DENSE: dense_lr.transform(features).select(pred, prob),
        LR_DENSE_ARRAY: dense_lr.transform(features).select(pred, vector_to_array(prob)),
        FEATURES_SCAN: features,
        PARSE: kafka_rows.transform(parse),
        PARSE_REFERENCE: reference_parse(kafka_rows, fields),
        PARSE_AND_SHAPE: kafka_rows.transform(parse)
        .transform(constant_scores(info))
        .transform(scoring.to_kafka_records("bench", info, "out", "dlq")),
        JOB_SPARSE: kafka_rows.transform(job_transforms(pipeline)),
        JOB_DENSE: kafka_rows.transform(job_transforms(dense_pipeline)),
    }
    if raw:
        parts[LR_RAW_ONLY] = lr.copy({lr.probabilityCol: "", lr.predictionCol: ""}).transform(features).select(raw)
    result["alone"] = {}
    for name, df in parts.items():
        counter = CodegenCounter(spark)
        seconds = time_noop(df, repeats)
        result["alone"][name] = {**_rate(m, seconds), "codegen_compilations": counter.result()["compilations"]}
        log(f"static: {name}: {m / seconds:,.0f} rows/s")
    result["codegen"] = {
        "parse_messages": {
            **plan_method_sizes(kafka_rows.transform(parse)),
            "parse_json_calls_in_optimized_plan": _count_in_plan(kafka_rows.transform(parse), "parseJson"),
        },
        "job_scoring_transforms": plan_method_sizes(kafka_rows.transform(job_transforms(pipeline))),
        "pipeline_model": plan_method_sizes(pipeline.transform(small)),
    }
    for df in (kafka_rows, features, words, small, base):
        df.unpersist()

    result["lr_model"] = _lr_facts(pipeline, texts, model.metadata.label_values)
    return result


def _lr_facts(pipeline: PipelineModel, texts: Sequence[str], labels: Sequence[str]) -> dict[str, Any]:
    """Sizes that explain the LR cost: stored coefficients, features per row, sparse-dot loop steps."""
    lr: Any = pipeline.stages[-1]
    matrix = lr.coefficientMatrix
    params = ScorerParams.from_pipeline(pipeline, labels)
    sample = list(texts[: min(len(texts), 20_000)])
    features = Scorer(params).features(sample)
    nnz = np.bincount(features.doc, minlength=len(sample))
    coefficient_indices = np.flatnonzero(params.coefficients[0])
    steps = sparse_dot_steps(coefficient_indices, features.doc, features.index, len(sample))
    return {
        "coefficient_storage": type(matrix).__name__,
        "num_features": params.num_features,
        "nonzero_coefficients": len(coefficient_indices),
        "sample_rows": len(sample),
        "mean_features_per_row": round(float(nnz.mean()), 2),
        "mean_sparse_dot_steps_per_row": round(float(steps.mean()), 1),
        "mean_dense_dot_steps_per_row": round(float(nnz.mean()), 2),
    }
