"""Train the sample "Sentiment Prediction" model: Tokenizer -> HashingTF -> LogisticRegression, plus model.json."""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import pyspark
from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.classification import LogisticRegression
from pyspark.ml.evaluation import BinaryClassificationEvaluator
from pyspark.ml.feature import HashingTF, RegexTokenizer
from pyspark.ml.functions import vector_to_array
from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from job.runtime import storage
from job.runtime.model import METADATA_FILE, LoadedModel, ModelError, ModelMetadata, load_model
from job.runtime.session import local_session

logger = logging.getLogger(__name__)

MODEL_NAME = "Sentiment Prediction"
DEFAULT_DESCRIPTION = (
    "Binary tweet sentiment (NEGATIVE / POSITIVE) from raw tweet text. Trained on Sentiment140 "
    "(distant supervision by emoticons) and the human-rated VADER tweets (Hutto and Gilbert, ICWSM 2014), "
    "validated on the TweetEval sentiment validation set."
)
DEFAULT_AUTHOR = "spark-stream-deployment"

ID = "id"
TEXT = "text"
LABEL = "label"
WEIGHT = "weight"
RATING = "rating"
SPLIT = "split"
WORDS = "words"
FEATURES = "features"
PREDICTION = "prediction"
PROBABILITY = "probability"
RAW_PREDICTION = "rawPrediction"
P_POSITIVE = "p_positive"

# Index i of this tuple is the label of prediction i.0 (what the numeric `label` column means in training).
LABEL_VALUES = ("NEGATIVE", "POSITIVE")
NEGATIVE, POSITIVE = 0.0, 1.0
# TweetEval sentiment labels: 0 negative, 1 neutral, 2 positive. Neutral lines are not used.
TWEETEVAL_LABELS = {"0": NEGATIVE, "2": POSITIVE}
TWEETEVAL_NEUTRAL = "1"

# VADER's tweets_GroundTruth.tsv: `id<TAB>mean rating<TAB>text`, ratings from -4 to +4.
VADER_RATING_RANGE = (-4.0, 4.0)
# A VADER text evaluated (dev, test) is POSITIVE at a mean rating >= +0.5 and NEGATIVE at <= -0.5, the
# dataset's own cut; texts in between are neutral and not evaluated. Fixed, whatever the training band.
VADER_EVAL_BAND = 0.5
# The VADER split, by a seeded hash of the text's VADER id: buckets 0..9999, the first `test` share is the
# test part (never trained on, never used to choose anything), the next `dev` share tunes the threshold.
SPLIT_TRAIN, SPLIT_DEV, SPLIT_TEST = "train", "dev", "test"
SPLIT_PARTS = (SPLIT_TRAIN, SPLIT_DEV, SPLIT_TEST)

INPUT_SCHEMA = [{"name": ID, "type": "integer"}, {"name": TEXT, "type": "string"}]
TRAINING_SCHEMA = [
    {
        "name": ID,
        "type": "integer",
        "description": "Sentiment140: 0-based line number of the tweet in its file; VADER: the text's VADER id",
    },
    {"name": TEXT, "type": "string", "description": "the tweet, one line of the file"},
    {"name": LABEL, "type": "double", "description": "index into label_values (0.0 NEGATIVE, 1.0 POSITIVE)"},
    {"name": WEIGHT, "type": "double", "description": "the row's weight in the fit (training_data.weights)"},
]

# Lowercased words cut to their first 5 characters (a crude stemmer: wonderful/wonderfully -> "wonde");
# a negation (not, no, never, cannot, any "n't" word) and the first 5 characters of the word after it,
# one space apart, as one token ("not good", "can't stop", "don't like"): negation marking, within the
# tokenizer. A negation not followed by a space and a word stays a token of its own ("don't!"). The
# negation alternatives come first, as the regex takes the first alternative that matches. Tokens start
# only at a word start and never after "@" or an apostrophe, so "@user" yields nothing and "it's" yields
# "it". ! and ? are tokens, and so are emoticons: eyes : ; = , an optional nose - or ', a mouth
# ) ( ] [ d p | * (":D" is ":d" once lowercased), ":/" unless it starts "://" (a URL), and the heart <3.
# Sentiment140 had its emoticons stripped (they were its labels); the human-rated VADER texts keep theirs.
TOKEN_PATTERN = (
    r"(?<![@\w'\u2019])(?:(?:not|no|never|cannot|[a-z]+n't) [a-z0-9]{1,5}|[a-z]+n't|[a-z0-9]{1,5})|[!?]"
    r"|[:;=][-']?[)(\]\[dp|*]|:/(?!/)|<3"
)

# Candidate decision thresholds on P(POSITIVE), tried on the VADER dev part.
THRESHOLD_GRID = tuple(round(0.2 + 0.005 * i, 3) for i in range(121))  # 0.200 .. 0.800


class TrainingError(Exception):
    """Training cannot go ahead: bad input data or an output folder it may not replace."""


@dataclass(frozen=True)
class TrainingParams:
    """Everything that decides the fitted model, besides the data. Hashed into the model version."""

    token_pattern: str = TOKEN_PATTERN
    to_lowercase: bool = True
    min_token_length: int = 1
    num_features: int = 1 << 18
    binary: bool = True
    reg_param: float = 1e-4
    elastic_net_param: float = 0.1
    standardization: bool = False
    max_iter: int = 300
    tol: float = 1e-6
    negative_weight: float = 1.0  # Sentiment140 rows
    positive_weight: float = 1.0  # Sentiment140 rows
    vader_weight: float = 20.0  # a VADER POSITIVE row; a VADER NEGATIVE row is scaled up to balance the classes
    vader_band: float = 0.5  # VADER training rows: POSITIVE at a rating >= band, NEGATIVE at <= -band
    vader_test_fraction: float = 0.2
    vader_dev_fraction: float = 0.15
    holdout_fraction: float = 0.1  # Sentiment140 hold-out, for reporting
    threshold: float | None = None  # None: tune on the VADER dev part
    seed: int = 42

    def __post_init__(self) -> None:
        if not 1 <= self.num_features <= 1 << 18:
            raise TrainingError(f"num_features must be in 1..{1 << 18}, found {self.num_features}")
        if not 0.0 <= self.holdout_fraction < 1.0:
            raise TrainingError(f"holdout_fraction must be in [0, 1), found {self.holdout_fraction}")
        for name in ("vader_test_fraction", "vader_dev_fraction"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise TrainingError(f"{name} must be in [0, 1), found {getattr(self, name)}")
        if self.vader_test_fraction + self.vader_dev_fraction >= 1.0:
            raise TrainingError(
                "vader_test_fraction + vader_dev_fraction must leave VADER rows to train on, found "
                f"{self.vader_test_fraction} + {self.vader_dev_fraction}"
            )
        if not 0.0 < self.vader_band <= VADER_RATING_RANGE[1]:
            raise TrainingError(f"vader_band must be in (0, {VADER_RATING_RANGE[1]}], found {self.vader_band}")
        if self.threshold is None and self.vader_dev_fraction == 0.0:
            raise TrainingError("a threshold must be given when there is no VADER dev part to tune it on")
        if self.threshold is not None and not 0.0 < self.threshold < 1.0:
            raise TrainingError(f"threshold must be in (0, 1), found {self.threshold}")
        if self.negative_weight <= 0 or self.positive_weight <= 0 or self.vader_weight <= 0:
            raise TrainingError("class weights and the VADER weight must be positive")


@dataclass(frozen=True)
class DataPaths:
    positive: str
    negative: str
    vader: str
    validation_text: str
    validation_labels: str


# ---------------------------------------------------------------------------------------------------------
# Reading the data


def read_lines(spark: SparkSession, path: str) -> DataFrame:
    """One row per line of a text file: `id` (0-based line number) and `text`.

    The file is read whole so the line number is exact (needed to pair TweetEval texts with labels);
    the final newline does not make an extra empty line.
    """
    whole = spark.read.text(path, wholetext=True)
    lines = whole.select(F.split(F.col("value"), r"\r?\n").alias("lines"))
    return (
        lines.select(F.posexplode("lines").alias(ID, TEXT), F.size("lines").alias("n"))
        .where((F.col(ID) < F.col("n") - 1) | (F.col(TEXT) != ""))
        .select(F.col(ID).cast("int").alias(ID), TEXT)
    )


def with_label(label: float) -> Callable[[DataFrame], DataFrame]:
    def transform(df: DataFrame) -> DataFrame:
        return df.select(ID, TEXT, F.lit(label).alias(LABEL))

    return transform


def drop_blank(df: DataFrame) -> DataFrame:
    """Blank lines carry no signal for training or evaluation."""
    return df.where(F.trim(F.col(TEXT)) != "")


def validation_set(texts: DataFrame, labels: DataFrame) -> DataFrame:
    """TweetEval lines labelled negative (0) or positive (2), as (id, text, label); neutral lines dropped."""
    mapping = F.create_map(*[x for k, v in TWEETEVAL_LABELS.items() for x in (F.lit(k), F.lit(v))])
    paired = texts.join(labels.select(F.col(ID), F.trim(F.col(TEXT)).alias("raw_label")), on=ID, how="inner")
    return paired.where(F.col("raw_label") != TWEETEVAL_NEUTRAL).select(
        ID, TEXT, mapping[F.col("raw_label")].alias(LABEL)
    )


def read_vader(spark: SparkSession, path: str) -> DataFrame:
    """VADER's `tweets_GroundTruth.tsv` as (id, rating, text), one row per line.

    Refuses, naming the first offending line, a line that is not `id<TAB>rating<TAB>text` with an integer
    id and a rating in [-4, 4], and ids that repeat (the split is drawn by id). The text keeps any further tabs.
    """
    fields = F.split(F.col(TEXT), "\t", 3)
    # try_cast and F.get give null rather than failing the whole read (ANSI mode), so the bad line can be named.
    parsed = read_lines(spark, path).select(
        F.col(ID).alias("line"),
        F.col(TEXT).alias("raw"),
        F.get(fields, 0).try_cast("int").alias(ID),
        F.get(fields, 1).try_cast("double").alias(RATING),
        F.get(fields, 2).alias(TEXT),
    )
    low, high = VADER_RATING_RANGE
    bad = (
        F.col(ID).isNull()
        | F.col(RATING).isNull()
        | F.isnan(F.col(RATING))
        | ~F.col(RATING).between(low, high)
        | F.col(TEXT).isNull()
    )
    first_bad = parsed.where(bad).orderBy("line").limit(1).collect()
    if first_bad:
        row = first_bad[0]
        raise TrainingError(
            f"{path}: line {row.line + 1} is not id<TAB>rating<TAB>text with an integer id and a rating in "
            f"[{low:g}, {high:g}]: {row.raw[:80]!r}"
        )
    repeated = parsed.groupBy(ID).count().where(F.col("count") > 1).orderBy(ID).limit(1).collect()
    if repeated:
        raise TrainingError(f"{path}: id {repeated[0][ID]} appears on {repeated[0]['count']} lines; ids must be unique")
    return parsed.select(ID, RATING, TEXT)


def vader_split(seed: int, test_fraction: float, dev_fraction: float) -> Column:
    """`test`, `dev` or `train` for each VADER row, from a seeded hash of its VADER id (an int column).

    Fixed by the seed and the fractions alone: not by partitioning, row order, or the ratings.
    """
    bucket = F.pmod(F.xxhash64(F.lit(seed), F.col(ID)), F.lit(10_000))
    test_end = round(test_fraction * 10_000)
    dev_end = test_end + round(dev_fraction * 10_000)
    return (
        F.when(bucket < F.lit(test_end), F.lit(SPLIT_TEST))
        .when(bucket < F.lit(dev_end), F.lit(SPLIT_DEV))
        .otherwise(F.lit(SPLIT_TRAIN))
    )


def vader_labelled(band: float) -> Callable[[DataFrame], DataFrame]:
    """(id, text, label) for the VADER rows rated at least `band` away from 0; the rest are neutral, left out."""

    def transform(df: DataFrame) -> DataFrame:
        polar = df.where(F.abs(F.col(RATING)) >= F.lit(band))
        label = F.when(F.col(RATING) > 0, F.lit(POSITIVE)).otherwise(F.lit(NEGATIVE))
        return polar.select(ID, TEXT, label.alias(LABEL))

    return transform


def holdout_flag(fraction: float, seed: int) -> Column:
    """True for the Sentiment140 rows held out of training (reported on): a seeded hash of the text, so the
    split does not depend on partitioning or row order, and duplicate tweets always fall on the same side."""
    bucket = F.pmod(F.xxhash64(F.lit(seed), F.col(TEXT)), F.lit(10_000))
    return bucket < F.lit(round(fraction * 10_000))


def file_facts(spark: SparkSession, path: str) -> dict[str, Any]:
    """Path as given, sha256 (computed in the JVM from the file's bytes) and line count."""
    digest = spark.read.format("binaryFile").load(path).select(F.sha2("content", 256).alias("d")).collect()
    if len(digest) != 1:
        raise TrainingError(f"{path}: expected exactly one file, found {len(digest)}")
    return {"path": path, "sha256": digest[0].d, "lines": read_lines(spark, path).count()}


# ---------------------------------------------------------------------------------------------------------
# The pipeline, threshold and evaluation


def build_pipeline(params: TrainingParams) -> Pipeline:
    tokenizer = RegexTokenizer(
        inputCol=TEXT,
        outputCol=WORDS,
        pattern=params.token_pattern,
        gaps=False,
        toLowercase=params.to_lowercase,
        minTokenLength=params.min_token_length,
    )
    hashing = HashingTF(inputCol=WORDS, outputCol=FEATURES, numFeatures=params.num_features, binary=params.binary)
    lr = LogisticRegression(
        featuresCol=FEATURES,
        labelCol=LABEL,
        family="binomial",
        regParam=params.reg_param,
        elasticNetParam=params.elastic_net_param,
        standardization=params.standardization,
        maxIter=params.max_iter,
        tol=params.tol,
        # Only the fit reads the weight column; the fitted model scores rows without it.
        weightCol=WEIGHT,
    )
    return Pipeline(stages=[tokenizer, hashing, lr])


def with_class_weights(positive_weight: float, negative_weight: float) -> Callable[[DataFrame], DataFrame]:
    def transform(df: DataFrame) -> DataFrame:
        weight = F.when(F.col(LABEL) == POSITIVE, F.lit(positive_weight)).otherwise(F.lit(negative_weight))
        return df.select(ID, TEXT, LABEL, weight.alias(WEIGHT))

    return transform


def scored(model: PipelineModel, df: DataFrame) -> DataFrame:
    """(label, prediction, rawPrediction, p_positive) for each row of a labelled DataFrame."""
    out = model.transform(df)
    return out.select(
        LABEL,
        PREDICTION,
        RAW_PREDICTION,
        F.get(vector_to_array(F.col(PROBABILITY)), 1).alias(P_POSITIVE),
    )


def tune_threshold(scores: DataFrame) -> tuple[float, float]:
    """The threshold on P(POSITIVE) with the best balanced accuracy on `scores`, and that accuracy.

    Exact counts: each row is keyed by how many candidate thresholds lie strictly below its probability
    (it is predicted POSITIVE at exactly those), so one small group-by serves every candidate.
    Ties go to the candidate nearest 0.5.
    """
    grid = F.array(*[F.lit(t) for t in THRESHOLD_GRID])
    below = F.size(F.filter(grid, lambda t: F.col(P_POSITIVE) > t)).alias("below")
    counts = scores.groupBy(F.col(LABEL), below).count().collect()
    pos = sum(r["count"] for r in counts if r[LABEL] == POSITIVE)
    neg = sum(r["count"] for r in counts if r[LABEL] != POSITIVE)
    if not pos or not neg:
        raise TrainingError("the VADER dev part needs rows of both classes to tune the threshold")
    best: tuple[float, float, float] | None = None  # (balanced accuracy, -distance from 0.5, threshold)
    for i, t in enumerate(THRESHOLD_GRID):
        # Predicted POSITIVE at threshold i iff more than i candidates lie below the probability.
        tp = sum(r["count"] for r in counts if r[LABEL] == POSITIVE and r["below"] > i)
        tn = sum(r["count"] for r in counts if r[LABEL] != POSITIVE and r["below"] <= i)
        key = ((tp / pos + tn / neg) / 2, -abs(t - 0.5), t)
        if best is None or key > best:
            best = key
    assert best is not None
    return best[2], best[0]


def evaluate(scores: DataFrame, label_values: Sequence[str] = LABEL_VALUES) -> dict[str, Any]:
    """Binary metrics from exact counts, and ROC AUC from Spark's evaluator (numBins=0: no down-sampling)."""
    counts = {
        (int(r[LABEL]), int(r[PREDICTION])): r["count"] for r in scores.groupBy(LABEL, PREDICTION).count().collect()
    }
    n = len(label_values)
    support = [sum(counts.get((a, p), 0) for p in range(n)) for a in range(n)]
    predicted = [sum(counts.get((a, p), 0) for a in range(n)) for p in range(n)]
    total = sum(support)
    if total == 0 or min(support) == 0:
        found = dict(zip(label_values, support, strict=True))
        raise TrainingError(f"evaluation needs rows of every class, found {found}")
    correct = sum(counts.get((c, c), 0) for c in range(n))
    recall = [counts.get((c, c), 0) / support[c] for c in range(n)]
    precision = [counts.get((c, c), 0) / predicted[c] if predicted[c] else 0.0 for c in range(n)]
    majority = max(range(n), key=lambda c: support[c])
    auc = BinaryClassificationEvaluator(
        rawPredictionCol=RAW_PREDICTION, labelCol=LABEL, metricName="areaUnderROC", numBins=0
    ).evaluate(scores)
    return {
        "rows": {label_values[c]: support[c] for c in range(n)},
        "accuracy": correct / total,
        "balanced_accuracy": sum(recall) / n,
        "roc_auc": auc,
        "per_class": {
            label_values[c]: {"precision": precision[c], "recall": recall[c], "support": support[c]} for c in range(n)
        },
        "confusion_matrix": {
            label_values[a]: {label_values[p]: counts.get((a, p), 0) for p in range(n)} for a in range(n)
        },
        "majority_class_baseline": {
            "label": label_values[majority],
            "accuracy": support[majority] / total,
            "balanced_accuracy": 1.0 / n,
        },
    }


def model_version(params: dict[str, Any], training_data: dict[str, Any], spark_version: str) -> str:
    """Content-derived id: the same parameters on the same data with the same Spark give the same id."""
    digests = {role: {"sha256": f["sha256"], "lines": f["lines"]} for role, f in training_data.items()}
    canonical = json.dumps(
        {"hyperparameters": params, "training_data": digests, "spark_version": spark_version},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:12]


# ---------------------------------------------------------------------------------------------------------
# Training end to end


@dataclass(frozen=True)
class TrainingResult:
    model: PipelineModel
    metadata: ModelMetadata
    seconds: float


def class_counts(df: DataFrame) -> dict[str, int]:
    """Rows per label, both labels always present (0 when absent), in label order."""
    found = {int(r[LABEL]): r["count"] for r in df.groupBy(LABEL).count().collect()}
    return {name: found.get(i, 0) for i, name in enumerate(LABEL_VALUES)}


def read_validation(spark: SparkSession, paths: DataPaths) -> DataFrame:
    """The TweetEval negative and positive lines, checked: as many labels as texts, labels 0, 1 or 2."""
    val_text = read_lines(spark, paths.validation_text)
    val_labels = read_lines(spark, paths.validation_labels)
    text_lines, label_lines = val_text.count(), val_labels.count()
    if text_lines != label_lines:
        raise TrainingError(
            f"{paths.validation_text} has {text_lines} lines but {paths.validation_labels} has {label_lines}"
        )
    bad = val_labels.where(~F.trim(F.col(TEXT)).isin("0", "1", "2")).limit(3).collect()
    if bad:
        raise TrainingError(
            f"{paths.validation_labels}: labels must be 0, 1 or 2; line {bad[0][ID] + 1} has {bad[0][TEXT]!r}"
        )
    return validation_set(val_text, val_labels).transform(drop_blank)


def load_baseline(spark: SparkSession, location: str) -> LoadedModel:
    """A previously trained model to compare with: loaded and checked as the job would, same labels as ours."""
    try:
        baseline = load_model(spark, location)
    except ModelError as exc:
        raise TrainingError(f"baseline model: {exc}") from None
    if baseline.metadata.label_values != LABEL_VALUES:
        raise TrainingError(
            f"baseline model {location}: label_values {list(baseline.metadata.label_values)} differ from "
            f"{list(LABEL_VALUES)}, so its figures would not compare"
        )
    return baseline


def log_figures(name: str, figures: dict[str, Any]) -> None:
    logger.info(
        "%s: balanced accuracy %.4f, accuracy %.4f, ROC AUC %.4f, rows %s",
        name,
        figures["balanced_accuracy"],
        figures["accuracy"],
        figures["roc_auc"],
        figures["rows"],
    )


def train(
    spark: SparkSession,
    paths: DataPaths,
    params: TrainingParams,
    author: str = DEFAULT_AUTHOR,
    description: str = DEFAULT_DESCRIPTION,
    baseline_location: str | None = None,
) -> TrainingResult:
    """Fit on Sentiment140 and VADER's train part, tune the threshold on VADER's dev part, evaluate on the
    Sentiment140 hold-out and VADER's test part, and only then read TweetEval, once, to report on it."""
    started = time.monotonic()
    # A baseline that cannot be loaded should fail the run before the fit, not after.
    baseline = load_baseline(spark, baseline_location) if baseline_location else None

    positive = read_lines(spark, paths.positive).transform(with_label(POSITIVE))
    negative = read_lines(spark, paths.negative).transform(with_label(NEGATIVE))
    # Cached once, so the counts, the split and the fit do not each re-read and re-split the files.
    s140 = positive.unionByName(negative).transform(drop_blank).cache()
    held = holdout_flag(params.holdout_fraction, params.seed)
    s140_train = s140.where(~held).transform(with_class_weights(params.positive_weight, params.negative_weight))
    s140_holdout = s140.where(held).cache()

    split = vader_split(params.seed, params.vader_test_fraction, params.vader_dev_fraction)
    vader = read_vader(spark, paths.vader).transform(drop_blank).withColumn(SPLIT, split).cache()
    vader_train = vader.where(F.col(SPLIT) == SPLIT_TRAIN).transform(vader_labelled(params.vader_band)).cache()
    vader_dev = vader.where(F.col(SPLIT) == SPLIT_DEV).transform(vader_labelled(VADER_EVAL_BAND)).cache()
    vader_test = vader.where(F.col(SPLIT) == SPLIT_TEST).transform(vader_labelled(VADER_EVAL_BAND)).cache()
    vader_split_rows = {r[SPLIT]: r["count"] for r in vader.groupBy(SPLIT).count().collect()}

    s140_rows = class_counts(s140_train)
    vader_rows = {"train": class_counts(vader_train), "dev": class_counts(vader_dev), "test": class_counts(vader_test)}
    logger.info("Sentiment140 training rows %s; VADER rows %s", s140_rows, vader_rows)
    if min(s140_rows.values()) == 0 or min(vader_rows["train"].values()) == 0:
        raise TrainingError(
            f"training needs rows of both classes from each source, found Sentiment140 {s140_rows}, "
            f"VADER {vader_rows['train']}"
        )
    # Both VADER classes carry the same total weight: VADER has twice as many positives as negatives.
    vader_weights = {
        "POSITIVE": params.vader_weight,
        "NEGATIVE": params.vader_weight * vader_rows["train"]["POSITIVE"] / vader_rows["train"]["NEGATIVE"],
    }
    train_df = s140_train.unionByName(
        vader_train.transform(with_class_weights(vader_weights["POSITIVE"], vader_weights["NEGATIVE"]))
    ).cache()

    fit_started = time.monotonic()
    model = build_pipeline(params).fit(train_df)
    fit_seconds = time.monotonic() - fit_started
    lr_model: Any = model.stages[-1]
    logger.info(
        "fitted in %.1fs: %d iterations, %d non-zero coefficients",
        fit_seconds,
        lr_model.summary.totalIterations,
        lr_model.coefficients.numNonzeros(),
    )

    if params.threshold is None:
        threshold, dev_ba = tune_threshold(scored(model, vader_dev))
        logger.info("threshold %.3f: balanced accuracy %.4f on the VADER dev part", threshold, dev_ba)
    else:
        threshold = params.threshold
    lr_model.setThreshold(threshold)

    def figures(df: DataFrame) -> dict[str, Any] | None:
        # An empty part (fraction 0, or tiny data) has no figures rather than failing the run.
        return evaluate(scored(model, df)) if min(class_counts(df).values()) > 0 else None

    s140_eval = figures(s140_holdout)
    vader_dev_eval = figures(vader_dev)
    vader_test_eval = figures(vader_test)

    # Everything above is fixed; TweetEval is read here, once, only to report on.
    validation_df = read_validation(spark, paths).cache()
    validation_eval = evaluate(scored(model, validation_df))
    for name, result in (
        ("Sentiment140 hold-out", s140_eval),
        ("VADER dev", vader_dev_eval),
        ("VADER test", vader_test_eval),
        ("TweetEval validation", validation_eval),
    ):
        if result is not None:
            log_figures(name, result)
    baseline_eval: dict[str, Any] | None = None
    if baseline is not None:
        baseline_eval = {
            "model": {
                "name": baseline.metadata.name,
                "version": baseline.metadata.version,
                "location": baseline_location,
                "threshold": baseline.pipeline.stages[-1].getOrDefault("threshold"),
            },
            "tweeteval": evaluate(scored(baseline.pipeline, validation_df)),
            "vader_test": evaluate(scored(baseline.pipeline, vader_test))
            if min(vader_rows["test"].values()) > 0
            else None,
        }
        log_figures("baseline on TweetEval validation", baseline_eval["tweeteval"])

    training_data = {
        "positive": file_facts(spark, paths.positive),
        "negative": file_facts(spark, paths.negative),
        "vader": file_facts(spark, paths.vader),
    }
    validation_data = {
        "text": file_facts(spark, paths.validation_text),
        "labels": file_facts(spark, paths.validation_labels),
    }
    hyperparameters = {**asdict(params), "threshold": threshold, "threshold_tuned": params.threshold is None}
    spark_version = spark.version
    version = model_version(hyperparameters, training_data, spark_version)
    doc: dict[str, Any] = {
        "name": MODEL_NAME,
        "description": description,
        "author": author,
        "version": version,
        "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "model_type": "sparkml-pipeline",
        "stages": [stage._java_obj.getClass().getName() for stage in model.stages],  # type: ignore[attr-defined]
        "spark_version": spark_version,
        "pyspark_version": pyspark.__version__,
        "label_column": LABEL,
        "label_values": list(LABEL_VALUES),
        "input_schema": INPUT_SCHEMA,
        "output_columns": {"prediction": PREDICTION, "probability": PROBABILITY, "raw_prediction": RAW_PREDICTION},
        "training_schema": TRAINING_SCHEMA,
        "training_data": {
            **training_data,
            "rows": {
                "sentiment140": {"train": s140_rows, "holdout": class_counts(s140_holdout)},
                "vader": {**vader_rows, "lines_per_part": {k: vader_split_rows.get(k, 0) for k in SPLIT_PARTS}},
            },
            "weights": {
                "sentiment140": {"POSITIVE": params.positive_weight, "NEGATIVE": params.negative_weight},
                "vader": vader_weights,
            },
            "holdout": "Sentiment140 rows whose pmod(xxhash64(seed, text), 10000) < holdout_fraction * 10000",
            "vader_split": "by b = pmod(xxhash64(seed, VADER id), 10000): test when b < vader_test_fraction * "
            "10000, dev when below (vader_test_fraction + vader_dev_fraction) * 10000, else train",
            "vader_labels": "train: POSITIVE at a mean rating >= vader_band, NEGATIVE at <= -vader_band; dev and "
            f"test: the same at +-{VADER_EVAL_BAND}; texts in between are neutral and left out",
        },
        "validation_data": {
            **validation_data,
            "used": "lines labelled 0 (NEGATIVE) or 2 (POSITIVE); neutral (1) lines dropped",
        },
        "hyperparameters": hyperparameters,
        "evaluation": {
            "dataset": "TweetEval sentiment validation, negative and positive lines: never trained on and read "
            "only after the model and threshold were fixed (threshold tuned on the VADER dev part; "
            "models/README.md says how the rest was chosen)",
            **validation_eval,
            "sentiment140_holdout": s140_eval,
            "vader_dev": vader_dev_eval,
            "vader_test": vader_test_eval,
            "baseline": baseline_eval,
        },
    }
    metadata = ModelMetadata.from_json(json.dumps(doc), source="job.training.train")
    for df in (train_df, s140, s140_holdout, vader, vader_train, vader_dev, vader_test, validation_df):
        df.unpersist()
    return TrainingResult(model=model, metadata=metadata, seconds=time.monotonic() - started)


def check_output(spark: SparkSession, output: str, overwrite: bool) -> None:
    """Refuse to replace an existing output unless asked, and never replace something that is not a model."""
    if not storage.exists(spark, output):
        return
    if not overwrite:
        raise TrainingError(f"output {output} already exists; pass --overwrite to replace it")
    if not storage.is_directory(spark, output):
        raise TrainingError(f"output {output} is a file, not a model folder; not replacing it")
    unexpected = set(storage.list_names(spark, output)) - {"metadata", "stages", METADATA_FILE}
    if unexpected:
        raise TrainingError(
            f"output {output} holds {sorted(unexpected)}, which a model folder does not; not replacing it"
        )


def save(spark: SparkSession, result: TrainingResult, output: str, overwrite: bool) -> None:
    """Write the PipelineModel (metadata/, stages/) and model.json beside them."""
    check_output(spark, output, overwrite)
    if storage.exists(spark, output):
        storage.delete(spark, output, recursive=True)
    result.model.write().save(output)
    storage.write_text(spark, storage.join(output, METADATA_FILE), result.metadata.to_json())


# ---------------------------------------------------------------------------------------------------------
# Command line


def build_parser() -> argparse.ArgumentParser:
    defaults = TrainingParams()
    p = argparse.ArgumentParser(prog="python -m job.training.train", description=__doc__)
    data = p.add_argument_group("data (any path or URI Spark reads)")
    data.add_argument("--positive", required=True, help="positive tweets, one per line")
    data.add_argument("--negative", required=True, help="negative tweets, one per line")
    data.add_argument("--vader", required=True, help="VADER tweets_GroundTruth.tsv: id<TAB>mean rating<TAB>text")
    data.add_argument("--validation-text", required=True, help="validation tweets, one per line")
    data.add_argument("--validation-labels", required=True, help="validation labels: 0 neg, 1 neutral, 2 pos")
    out = p.add_argument_group("output")
    out.add_argument("--output", required=True, help="model folder to write (PipelineModel + model.json)")
    out.add_argument("--overwrite", action="store_true", help="replace an existing model folder")
    out.add_argument("--author", default=DEFAULT_AUTHOR)
    out.add_argument("--description", default=DEFAULT_DESCRIPTION)
    out.add_argument(
        "--baseline-model", default=None, help="a saved model to evaluate on the same rows, for comparison"
    )
    hp = p.add_argument_group("hyperparameters")
    hp.add_argument("--seed", type=int, default=defaults.seed, help="seed of the hold-out split")
    hp.add_argument("--token-pattern", default=defaults.token_pattern, help="RegexTokenizer pattern (gaps=false)")
    hp.add_argument("--num-features", type=int, default=defaults.num_features, help="HashingTF size, <= 2^18")
    hp.add_argument("--binary", action=argparse.BooleanOptionalAction, default=defaults.binary)
    hp.add_argument("--reg-param", type=float, default=defaults.reg_param)
    hp.add_argument("--elastic-net-param", type=float, default=defaults.elastic_net_param)
    hp.add_argument("--standardization", action=argparse.BooleanOptionalAction, default=defaults.standardization)
    hp.add_argument("--max-iter", type=int, default=defaults.max_iter)
    hp.add_argument("--negative-weight", type=float, default=defaults.negative_weight)
    hp.add_argument("--positive-weight", type=float, default=defaults.positive_weight)
    hp.add_argument("--vader-weight", type=float, default=defaults.vader_weight, help="weight of a VADER positive")
    hp.add_argument("--vader-band", type=float, default=defaults.vader_band, help="|rating| a VADER row needs")
    hp.add_argument("--vader-test-fraction", type=float, default=defaults.vader_test_fraction)
    hp.add_argument("--vader-dev-fraction", type=float, default=defaults.vader_dev_fraction)
    hp.add_argument("--holdout-fraction", type=float, default=defaults.holdout_fraction)
    hp.add_argument("--threshold", type=float, default=None, help="fixed threshold (default: tune on VADER dev)")
    spark = p.add_argument_group("spark")
    spark.add_argument("--master", default="local[2]")
    spark.add_argument("--driver-memory", default="4g")
    return p


def params_from_args(args: argparse.Namespace) -> TrainingParams:
    return TrainingParams(
        token_pattern=args.token_pattern,
        num_features=args.num_features,
        binary=args.binary,
        reg_param=args.reg_param,
        elastic_net_param=args.elastic_net_param,
        standardization=args.standardization,
        max_iter=args.max_iter,
        negative_weight=args.negative_weight,
        positive_weight=args.positive_weight,
        vader_weight=args.vader_weight,
        vader_band=args.vader_band,
        vader_test_fraction=args.vader_test_fraction,
        vader_dev_fraction=args.vader_dev_fraction,
        holdout_fraction=args.holdout_fraction,
        threshold=args.threshold,
        seed=args.seed,
    )


def main(argv: Sequence[str] | None = None, spark: SparkSession | None = None) -> int:
    """Train and save; with `spark` given (tests), that session is used and left running."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        params = params_from_args(args)
        if args.baseline_model and args.baseline_model.rstrip("/") == args.output.rstrip("/"):
            raise TrainingError(
                f"--baseline-model and --output are both {args.output}: the model being replaced would be "
                "compared with itself on the next run; keep the baseline in a folder of its own"
            )
    except TrainingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    own_session = spark is None
    session = spark or local_session("job.training.train", args.master, {"spark.driver.memory": args.driver_memory})
    if own_session:
        session.sparkContext.setLogLevel("WARN")
    try:
        check_output(session, args.output, args.overwrite)
        paths = DataPaths(args.positive, args.negative, args.vader, args.validation_text, args.validation_labels)
        result = train(
            session,
            paths,
            params,
            author=args.author,
            description=args.description,
            baseline_location=args.baseline_model,
        )
        save(session, result, args.output, args.overwrite)
    except TrainingError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        if own_session:
            session.stop()
    ev = result.metadata.raw["evaluation"]
    print(f"saved {MODEL_NAME!r} version {result.metadata.version} to {args.output} in {result.seconds:.0f}s")
    print(f"threshold {result.metadata.raw['hyperparameters']['threshold']} (tuned on the VADER dev part)")
    print(f"TweetEval validation: {summary(ev)}")
    if ev["vader_test"] is not None:
        print(f"VADER test part:      {summary(ev['vader_test'])}")
    if ev["baseline"] is not None:
        print(f"baseline {ev['baseline']['model']['version']} on TweetEval: {summary(ev['baseline']['tweeteval'])}")
    return 0


def summary(figures: dict[str, Any]) -> str:
    return (
        f"balanced accuracy {figures['balanced_accuracy']:.4f}, accuracy {figures['accuracy']:.4f}, "
        f"ROC AUC {figures['roc_auc']:.4f}, rows {figures['rows']}"
    )


if __name__ == "__main__":
    sys.exit(main())
