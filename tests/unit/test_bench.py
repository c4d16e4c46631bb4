"""The benchmark's own correctness: the NumPy baseline scores exactly like the PipelineModel, and the
latency percentiles are computed right. No broker, and no assertion on time."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pyspark.ml import Pipeline, PipelineModel, Transformer
from pyspark.ml.classification import LogisticRegression
from pyspark.ml.feature import HashingTF, RegexTokenizer, Tokenizer
from pyspark.ml.functions import vector_to_array
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from bench.baseline import Scorer, ScorerParams, TokenizerSpec, feature_indices, murmur3_32
from bench.latency import caught_up_after, latency_stats, percentile
from bench.model_change import restart_gap_s, version_runs
from bench.throughput import compare_outputs, expected_from_baseline
from bench.user_path import kind_of
from job.tools.deps import PROJECT_ROOT
from tests.pipelines import classifier, tokenizer

# Unicode on purpose: accents, CJK, emoji (4 UTF-8 bytes, 2 UTF-16 units), Turkish dotted I (lower-cases to
# two characters), Greek final sigma, German sharp s, and terms of 0 to 9 bytes (every murmur3 tail length).
TERMS = ["", "a", "ab", "abc", "abcd", "abcde", "love", "héllo", "naïve", "日本語", "😀", "👍🏽", "İstanbul", "ΟΔΟΣ",
         "straße", "http://t.co/xyz123", "#spark", "@user_1", "ÅÄÖ", "x" * 37]  # fmt: skip

TEXTS = [
    "I LOVE this new phone, best purchase ever!",
    "Worst  customer service I have ever had.  Never again.",
    "  leading spaces and trailing spaces   ",
    "tabs\tand\nnewlines\r\nand\x0bvertical\x0cfeeds",
    "Emoji 😀😀 and 👍🏽 thumbs, ça va? Ünïcödé ÀÉÎ",
    "ΟΔΟΣ ΣΟΦΟΣ and İstanbul and STRASSE straße",
    "no\u00a0break\u2003em-space stays one token in Java",
    "x",
    "@someone http://t.co/abc #tag :) :( !!!",
    "日本語のテキスト 中文 한국어",
]

TRAIN = [
    ("i love this so much", 1.0),
    ("what a great happy day 😀", 1.0),
    ("wonderful amazing love it", 1.0),
    ("so happy and glad", 1.0),
    ("great fun love ça va", 1.0),
    ("best day ever happy", 1.0),
    ("i hate this so much", 0.0),
    ("what a terrible sad day", 0.0),
    ("awful horrible hate it", 0.0),
    ("so sad and angry", 0.0),
    ("bad boring hate", 0.0),
    ("worst day ever sad 👎", 0.0),
]
LABELS = ("NEGATIVE", "POSITIVE")
SHIPPED_MODEL = PROJECT_ROOT / "models" / "sentiment-prediction"


def test_murmur3_matches_the_reference_vectors() -> None:
    # Published MurmurHash3_x86_32 test vectors (SMHasher), one batch so the vectorised path is exercised.
    data = [b"", b"\0\0\0\0", b"aaaa", b"Hello, world!", b"The quick brown fox jumps over the lazy dog"]
    assert [h & 0xFFFFFFFF for h in murmur3_32(data, seed=0x9747B28C).tolist()][2:] == [
        0x5A97808A,
        0x24884CBA,
        0x2FA826CD,
    ]
    assert murmur3_32([b""], seed=1).tolist() == [0x514E28B7]
    assert murmur3_32([b"\0\0\0\0"], seed=0).tolist() == [0x2362F9DE]


@pytest.mark.parametrize("num_features", [1 << 18, 1000, 7])
def test_feature_indices_equal_spark_hashingtf(spark: SparkSession, num_features: int) -> None:
    df = spark.createDataFrame([(i, [t]) for i, t in enumerate(TERMS)], "i int, words array<string>")
    hashed = HashingTF(inputCol="words", outputCol="features", numFeatures=num_features).transform(df)
    spark_indices = {r.i: r.features.indices.tolist() for r in hashed.collect()}
    expected = [spark_indices[i][0] for i in range(len(TERMS))]
    assert feature_indices(TERMS, num_features).tolist() == expected


def test_whitespace_tokenizer_equals_spark_tokenizer(spark: SparkSession) -> None:
    df = spark.createDataFrame([(i, t) for i, t in enumerate(TEXTS)], "i int, text string")
    words = Tokenizer(inputCol="text", outputCol="words").transform(df)
    expected = {r.i: list(r.words) for r in words.collect()}
    spec = TokenizerSpec("whitespace")
    assert {i: spec.tokenize(t) for i, t in enumerate(TEXTS)} == expected


@pytest.mark.parametrize(
    ("pattern", "gaps", "lower", "min_length"),
    [(r"\s+", True, True, 1), (r"\W+", True, False, 2), (r"\w+|[^\w\s]+", False, True, 1), (r"\s", True, True, 0)],
)
def test_regex_tokenizer_equals_spark_regex_tokenizer(
    spark: SparkSession, pattern: str, gaps: bool, lower: bool, min_length: int
) -> None:
    df = spark.createDataFrame([(i, t) for i, t in enumerate(TEXTS)], "i int, text string")
    tokenizer = RegexTokenizer(
        inputCol="text", outputCol="words", pattern=pattern, gaps=gaps, toLowercase=lower, minTokenLength=min_length
    )
    expected = {r.i: list(r.words) for r in tokenizer.transform(df).collect()}
    spec = TokenizerSpec("regex", pattern, gaps, lower, min_length)
    assert {i: spec.tokenize(t) for i, t in enumerate(TEXTS)} == expected


def _fit(spark: SparkSession, tokenizer: Transformer, hashing: HashingTF, tmp_path: Path, **lr: Any) -> PipelineModel:
    train = spark.createDataFrame(TRAIN, "text string, label double")
    model = Pipeline(stages=[tokenizer, hashing, LogisticRegression(maxIter=50, regParam=0.01, **lr)]).fit(train)
    # Saved and loaded back, as the job gets it; the loaded coefficients are a sparse matrix when
    # most hash buckets never occurred in training.
    model.write().overwrite().save(str(tmp_path / "model"))
    return PipelineModel.load(str(tmp_path / "model"))


def _assert_scores_equal(spark: SparkSession, model: PipelineModel, params: ScorerParams) -> None:
    texts = TEXTS + [t for t, _ in TRAIN]
    df = spark.createDataFrame([(i, t) for i, t in enumerate(texts)], "id int, text string")
    rows = model.transform(df).select("id", "prediction", vector_to_array(F.col("probability")).alias("p")).collect()
    by_id = {r.id: r for r in rows}
    scores = Scorer(params).score(texts)
    expected_predictions = [by_id[i].prediction for i in range(len(texts))]
    assert scores.prediction.tolist() == expected_predictions
    assert {LABELS[int(p)] for p in expected_predictions} == set(LABELS), "the sample should have both classes"
    expected_probability = np.array([by_id[i].p for i in range(len(texts))])
    np.testing.assert_allclose(scores.probability, expected_probability, rtol=0, atol=1e-9)
    chosen = expected_probability[np.arange(len(texts)), np.array(expected_predictions, dtype=int)]
    np.testing.assert_allclose(scores.predicted_probability(), chosen, rtol=0, atol=1e-9)


def test_scorer_equals_pipeline_model_with_sparse_coefficients(spark: SparkSession, tmp_path: Path) -> None:
    model = _fit(spark, Tokenizer(inputCol="text", outputCol="words"), HashingTF(inputCol="words", outputCol="tf"),
                 tmp_path, featuresCol="tf")  # fmt: skip
    assert type(classifier(model).coefficientMatrix).__name__ == "SparseMatrix"
    params = ScorerParams.from_pipeline(model, LABELS, "tiny", "1")
    assert (params.tokenizer.kind, params.num_features, params.binary) == ("whitespace", 1 << 18, False)
    _assert_scores_equal(spark, model, params)
    # What the worker processes read back from disk scores the same.
    params.save(tmp_path / "params.npz")
    _assert_scores_equal(spark, model, ScorerParams.load(tmp_path / "params.npz"))


def test_scorer_equals_pipeline_model_with_regex_tokenizer_and_binary_counts(
    spark: SparkSession, tmp_path: Path
) -> None:
    tokenizer = RegexTokenizer(inputCol="text", outputCol="words", pattern=r"\W+", minTokenLength=2)
    hashing = HashingTF(inputCol="words", outputCol="features", numFeatures=64, binary=True)
    model = _fit(spark, tokenizer, hashing, tmp_path)
    classifier(model).setThreshold(0.4)
    params = ScorerParams.from_pipeline(model, LABELS)
    assert (params.tokenizer.kind, params.tokenizer.pattern, params.binary, params.threshold) == (
        "regex",
        r"\W+",
        True,
        0.4,
    )
    _assert_scores_equal(spark, model, params)


def test_scorer_equals_pipeline_model_for_a_multinomial_model(spark: SparkSession, tmp_path: Path) -> None:
    model = _fit(spark, Tokenizer(inputCol="text", outputCol="words"),
                 HashingTF(inputCol="words", outputCol="features", numFeatures=128), tmp_path, family="multinomial")  # fmt: skip
    params = ScorerParams.from_pipeline(model, LABELS)
    assert params.multinomial
    _assert_scores_equal(spark, model, params)


# Texts that poke at each alternative of the shipped tokenizer pattern and at Java/Python regex differences:
# negation pairs across one space only, "://" not a ":/" emoticon, curly apostrophes, "<3" and "&lt;3".
PATTERN_PROBES = [
    "I don't like it!!",
    "can't wait for the weekend",
    "it\u2019s @fun 123456 abc",
    "not good, not  bad, not\tgreat, no way, never again, cannot believe it, don\u2019t go",
    "nothing now knows no. not! don't!",
    "so happy :) :-) :D ;p =] :( :'( :| :* :/ <3 &lt;3",
    "see http://t.co/abc and https://x.io/:/ :/ now",
    "NOT GOOD :P XD",
]


def test_scorer_equals_the_shipped_model(spark: SparkSession) -> None:
    # The committed model: a RegexTokenizer with look-behinds, negation pairs and emoticons, binary HashingTF,
    # elastic-net LR with a tuned threshold.
    model = PipelineModel.load(str(SHIPPED_MODEL))
    labels = tuple(json.loads((SHIPPED_MODEL / "model.json").read_text())["label_values"])
    params = ScorerParams.from_pipeline(model, labels)
    assert params.tokenizer.kind == "regex"
    texts = TEXTS + [t for t, _ in TRAIN] + PATTERN_PROBES
    df = spark.createDataFrame(list(enumerate(texts)), "id int, text string")
    tokens = {r.id: list(r[tokenizer(model).getOutputCol()]) for r in model.stages[0].transform(df).collect()}
    assert [params.tokenizer.tokenize(t) for t in texts] == [tokens[i] for i in range(len(texts))]
    rows = model.transform(df).select("id", "prediction", vector_to_array(F.col("probability")).alias("p")).collect()
    by_id = {r.id: r for r in rows}
    scores = Scorer(params).score(texts)
    assert scores.prediction.tolist() == [by_id[i].prediction for i in range(len(texts))]
    np.testing.assert_allclose(scores.probability, np.array([by_id[i].p for i in range(len(texts))]), rtol=0, atol=1e-9)


def test_baseline_skips_exactly_the_texts_the_job_finds_no_feature_in(spark: SparkSession) -> None:
    # The job dead-letters these as NO_FEATURES; a baseline that scored them would do work the job does not.
    model = PipelineModel.load(str(SHIPPED_MODEL))
    labels = tuple(json.loads((SHIPPED_MODEL / "model.json").read_text())["label_values"])
    texts = [*TEXTS, "😀😀", "こんにちは", "... --", "ok", "\u00a0", "!"]
    df = spark.createDataFrame(list(enumerate(texts)), "id int, text string")
    hashing = model.stages[1]
    assert isinstance(hashing, HashingTF)
    vectors = hashing.transform(model.stages[0].transform(df)).select("id", hashing.getOutputCol()).collect()
    with_features = sorted(r.id for r in vectors if r[hashing.getOutputCol()].numNonzeros() > 0)
    assert len(with_features) < len(texts) - 3  # the probes above do find nothing

    found, scores = Scorer(ScorerParams.from_pipeline(model, labels)).score_found(texts)

    assert found == with_features
    expected = Scorer(ScorerParams.from_pipeline(model, labels)).score([texts[i] for i in with_features])
    assert scores.prediction.tolist() == expected.prediction.tolist()
    assert scores.probability.tolist() == expected.probability.tolist()


def test_scorer_refuses_another_pipeline_shape(spark: SparkSession, tmp_path: Path) -> None:
    train = spark.createDataFrame(TRAIN, "text string, label double")
    model = Pipeline(stages=[Tokenizer(inputCol="text", outputCol="words")]).fit(train)
    with pytest.raises(ValueError, match="Tokenizer\\|RegexTokenizer -> HashingTF -> LogisticRegressionModel"):
        ScorerParams.from_pipeline(model, LABELS)


def test_features_count_terms_or_mark_them_binary() -> None:
    coefficients = np.zeros((1, 16))
    params = ScorerParams(TokenizerSpec(), 16, False, coefficients, np.zeros(1), False, 0.5, "raw", LABELS, "", "")
    features = Scorer(params).features(["b a b", "", "a"])
    index_a, index_b = feature_indices(["a", "b"], 16).tolist()
    empty = feature_indices([""], 16).tolist()[0]
    expected = sorted([(0, index_a, 1.0), (0, index_b, 2.0), (1, empty, 1.0), (2, index_a, 1.0)])
    assert list(zip(features.doc.tolist(), features.index.tolist(), features.value.tolist(), strict=True)) == expected


def test_percentile_is_the_nearest_rank() -> None:
    values = np.arange(1, 1001, dtype=np.float64)
    assert [percentile(values, p) for p in (50, 95, 99, 100)] == [500.0, 950.0, 990.0, 1000.0]
    assert percentile(np.array([7.0]), 99) == 7.0


def test_latency_stats_drop_the_warm_up_and_count_what_never_arrived() -> None:
    ms = 1_000_000
    start = 5_000 * ms
    # 1,101 messages one millisecond apart; the first 100 ms are warm-up.
    sent = {i: start + i * ms for i in range(1101)}
    # Message i (after the warm-up) takes i - 99 ms: 1, 2, ..., 1000 ms; message 1100 never arrives;
    # warm-up messages arrive too but are not counted; a duplicate keeps its first arrival.
    received = {i: sent[i] + max(i - 99, 0) * ms + 3 * ms * (i < 100) for i in range(1100)}
    duplicates = [(150, received[150] + 500 * ms)]
    stats = latency_stats(sent, list(received.items()) + duplicates, start_ns=start, warmup_s=0.1)
    assert stats["measured"] == 1000
    assert stats["missing"] == 1
    assert stats["warmup_messages"] == 100
    assert (stats["p50_ms"], stats["p95_ms"], stats["p99_ms"], stats["max_ms"]) == (500.0, 950.0, 990.0, 1000.0)
    assert stats["min_ms"] == 1.0
    assert stats["mean_ms"] == pytest.approx(500.5)


def test_latency_stats_of_nothing_received() -> None:
    stats = latency_stats({1: 10, 2: 20}, [], start_ns=0, warmup_s=0.0)
    assert stats["measured"] == 0
    assert stats["missing"] == 2
    assert stats["p99_ms"] is None


def test_kept_up_after_is_the_send_time_after_the_last_late_answer() -> None:
    ms = 1_000_000
    start = 7_000 * ms
    sent = {i: start + i * 10 * ms for i in range(100)}  # one every 10 ms
    # Late (over 1 s) up to message 39, message 45 exactly at the bound (on time), the rest quick.
    received = [(i, sent[i] + (1500 if i <= 39 else 1000 if i == 45 else 20) * ms) for i in range(100)]
    assert caught_up_after(sent, received, start) == pytest.approx(0.4)  # message 40 was sent 400 ms in

    # A message that never came counts as late, wherever it is.
    without_60 = [r for r in received if r[0] != 60]
    assert caught_up_after(sent, without_60, start) == pytest.approx(0.61)
    # Late to the end: never kept up. Never late: from the start.
    assert caught_up_after(sent, received[:-1], start) is None
    assert caught_up_after(sent, [(i, at + 5 * ms) for i, at in sent.items()], start) == 0.0
    # A replayed answer that came later does not make an id late; the first answer counts.
    replayed = [*received, (80, sent[80] + 5000 * ms)]
    assert caught_up_after(sent, replayed, start) == pytest.approx(0.4)


@pytest.mark.parametrize(
    ("cmdline", "kind"),
    [
        ([b"/usr/lib/jvm/java-17-openjdk-amd64/bin/java", b"-cp", b"x"], "jvm"),
        ([b"/work/main/.venv/bin/python", b"job/runtime/main.py"], "python"),
        ([b"python3.11", b"-m", b"pyspark.daemon"], "python"),
        ([b"/bin/bash", b"./spark-submit.sh"], None),
        ([], None),
    ],
)
def test_peak_rss_sorts_processes_by_kind(cmdline: list[bytes], kind: str | None) -> None:
    assert kind_of(cmdline) == kind


def test_stage_breakdown_differences_prefix_times() -> None:
    from bench.static import stage_breakdown

    rows = stage_breakdown({"Tokenizer": 2.0, "HashingTF": 5.0, "LogisticRegressionModel": 20.0}, rows=1_000_000)
    assert [(r["stage"], r["seconds"], r["us_per_row"], r["share"]) for r in rows] == [
        ("Tokenizer", 2.0, 2.0, 0.1),
        ("HashingTF", 3.0, 3.0, 0.15),
        ("LogisticRegressionModel", 15.0, 15.0, 0.75),
    ]


def test_sparse_dot_work_counts_coefficients_below_the_last_feature() -> None:
    from bench.static import sparse_dot_steps

    coefficient_indices = np.array([1, 3, 5, 7, 9])
    doc = np.array([0, 0, 1, 2, 2])
    index = np.array([2, 6, 0, 9, 4])
    # Spark's sparse-sparse dot walks the coefficients up to each row's largest feature index, and the
    # row's own entries.
    assert sparse_dot_steps(coefficient_indices, doc, index, rows=3).tolist() == [3 + 2, 0 + 1, 5 + 2]


def _scored(ids: list[int], probability: float = 0.75) -> dict[int, dict]:
    return {
        i: {"id": i, "text": f"t{i}", "prediction": 1.0, "predictedLabel": "POSITIVE", "probability": probability}
        for i in ids
    }


def test_agreement_expects_no_featureless_text_from_either_side() -> None:
    result = compare_outputs(_scored([0, 2, 3]), _scored([0, 2, 3]), 4, {1: "NO_FEATURES"})
    assert result["agree"] is True
    assert (result["compared"], result["no_features_on_both_sides"], result["unexpected_records"]) == (3, 1, 0)
    assert result["probabilities_bit_identical"] == 3


@pytest.mark.parametrize(
    ("job_ids", "other_ids", "job_dead", "other_dead", "field", "count"),
    [
        ([0, 2, 3], [0, 1, 2, 3], {1: "NO_FEATURES"}, None, "unexpected_records", 1),  # the baseline scored it
        ([0, 2, 3], [0, 2, 3], {1: "NOT_JSON"}, None, "other_dead_letters", 1),  # a sample tweet the job refused
        ([0, 1, 2], [0, 1, 2, 3], {}, None, "missing_from_job", 1),
        ([0, 1, 2, 3], [0, 1, 3], {}, None, "missing_from_baseline", 1),
        ([0, 2, 3], [0, 2, 3], {1: "NO_FEATURES"}, {}, "dead_letters_differ", True),  # the other job scored it
    ],
)
def test_agreement_fails_on_any_record_too_many_or_too_few(
    job_ids: list[int],
    other_ids: list[int],
    job_dead: dict[int, str],
    other_dead: dict[int, str] | None,
    field: str,
    count: object,
) -> None:
    result = compare_outputs(_scored(job_ids), _scored(other_ids), 4, job_dead, other_dead)
    assert result[field] == count
    assert result["agree"] is False


def test_agreement_fails_on_a_probability_beyond_1e_9() -> None:
    assert compare_outputs(_scored([0]), _scored([0], 0.75 + 1e-9 / 2), 1)["agree"] is True
    assert compare_outputs(_scored([0]), _scored([0], 0.75 + 2e-9), 1)["agree"] is False


def test_version_runs_split_the_output_where_the_version_changes() -> None:
    records = [(105, "b"), (100, "a"), (101, "a"), (107, "b"), (110, "a"), (104, "a")]  # any order: sorted by time
    assert version_runs(records) == [("a", 100, 104), ("b", 105, 107), ("a", 110, 110)]
    assert version_runs([]) == []


def test_restart_gap_runs_from_the_last_record_before_the_stop_to_the_first_after_the_launch() -> None:
    timestamps = [1_000, 2_000, 2_500, 9_000, 9_100]
    assert restart_gap_s(timestamps, stopped_at_ms=3_000, relaunched_at_ms=3_100) == 6.5
    with pytest.raises(ValueError, match="no record on one side"):
        restart_gap_s(timestamps, stopped_at_ms=9_500, relaunched_at_ms=9_600)


def test_the_baseline_is_expected_to_write_the_backlog_but_its_featureless_texts(
    spark: SparkSession, tmp_path: Path
) -> None:
    model = PipelineModel.load(str(SHIPPED_MODEL))
    params_path = tmp_path / "params.npz"
    ScorerParams.from_pipeline(model, LABELS).save(params_path)
    # Ids 0..6 carry texts 0, 1, 2, 0, 1, 2, 0 (kafka_io.fill_topic); text 1 has no feature.
    assert expected_from_baseline(params_path, ["good day", "😀😀", "bad day"], 7) == 5
    assert expected_from_baseline(params_path, ["good day", "😀😀", "bad day"], 2) == 1
