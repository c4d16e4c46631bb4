"""Training: data reading, threshold tuning, evaluation figures, and job.training.train end to end on tiny data."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from chispa import assert_df_equality
from pyspark.ml.feature import RegexTokenizer
from pyspark.ml.linalg import Vectors
from pyspark.sql import SparkSession
from pyspark.sql import functions as F

from job.runtime.model import load_model
from job.training import train
from tests.paths import SHARED_DATA, SHIPPED_MODEL
from tests.pipelines import classifier

POSITIVE_WORDS = ["love", "great", "happy", "wonderful", "awesome", "glad"]
NEGATIVE_WORDS = ["hate", "awful", "sad", "terrible", "horrible", "angry"]
FILLER = ["today", "the game", "my phone", "this film", "the weather", "work"]

VALIDATION = [
    ("so happy with my new phone", "2"),
    ("the match was awful", "0"),
    ("going to work now", "1"),
    ("what a wonderful film", "2"),
    ("i hate this weather", "0"),
    ("great news today", "2"),
    ("the bus is late", "1"),
    ("terrible service again", "0"),
    ("awesome game last night", "2"),
]


def vader_lines() -> list[str]:
    # id<TAB>rating<TAB>text: 36 rated positive, 36 negative, 12 neutral, ids not in line order.
    lines = []
    for i, text in enumerate(tweets(POSITIVE_WORDS)):
        lines.append(f"{1000 + i}\t{1.0 + (i % 4) * 0.5}\thmm {text}")
    for i, text in enumerate(tweets(NEGATIVE_WORDS)):
        lines.append(f"{2000 + i}\t{-1.0 - (i % 4) * 0.5}\thmm {text}")
    for i, filler in enumerate(FILLER * 2):
        lines.append(f"{i + 1}\t{0.25 if i % 2 else -0.25}\t{filler} again")
    return lines


def tweets(words: list[str]) -> list[str]:
    # 36 lines per class: every word with every filler, e.g. "i love the game", "the game is love love".
    lines: list[str] = []
    for w in words:
        for f in FILLER:
            lines.append(f"i {w} {f}" if len(lines) % 2 == 0 else f"{f} is {w} {w}")
    return lines


def write_lines(path: Path, lines: list[str]) -> str:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return str(path)


@pytest.fixture
def data(tmp_path: Path) -> dict[str, str]:
    folder = tmp_path / "data"
    folder.mkdir()
    return {
        "positive": write_lines(folder / "positive.txt", tweets(POSITIVE_WORDS)),
        "negative": write_lines(folder / "negative.txt", tweets(NEGATIVE_WORDS)),
        "vader": write_lines(folder / "vader.tsv", vader_lines()),
        "validation_text": write_lines(folder / "text.txt", [t for t, _ in VALIDATION]),
        "validation_labels": write_lines(folder / "labels.txt", [label for _, label in VALIDATION]),
    }


def argv(data: dict[str, str], output: Path, *extra: str) -> list[str]:
    return [
        "--positive", data["positive"],
        "--negative", data["negative"],
        "--vader", data["vader"],
        "--validation-text", data["validation_text"],
        "--validation-labels", data["validation_labels"],
        "--output", str(output),
        "--num-features", "1024",
        "--holdout-fraction", "0.25",
        "--vader-test-fraction", "0.3",
        "--vader-dev-fraction", "0.3",
        "--vader-weight", "2",
        "--max-iter", "40",
        *extra,
    ]  # fmt: skip


def sha256(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


# --- pieces ----------------------------------------------------------------------------------------------


def test_read_lines_numbers_every_line_and_ignores_the_final_newline(spark: SparkSession, tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_text("first tweet\n\nthird, after a blank\r\nlast\n", encoding="utf-8")

    actual = train.read_lines(spark, str(path))

    expected = spark.createDataFrame(
        [(0, "first tweet"), (1, ""), (2, "third, after a blank"), (3, "last")], "id int, text string"
    )
    assert_df_equality(actual, expected, ignore_nullable=True, ignore_row_order=True)


def test_validation_set_pairs_lines_and_drops_neutral(spark: SparkSession) -> None:
    texts = spark.createDataFrame([(0, "bad"), (1, "meh"), (2, "good"), (3, "fine")], "id int, text string")
    labels = spark.createDataFrame([(0, "0"), (1, "1"), (2, "2"), (3, "2 ")], "id int, text string")

    actual = train.validation_set(texts, labels)

    expected = spark.createDataFrame(
        [(0, "bad", 0.0), (2, "good", 1.0), (3, "fine", 1.0)], "id int, text string, label double"
    )
    assert_df_equality(actual, expected, ignore_nullable=True, ignore_row_order=True)


def test_holdout_split_depends_only_on_text_and_seed(spark: SparkSession) -> None:
    df = spark.createDataFrame([(f"tweet number {i}",) for i in range(200)] + [("tweet number 7",)], "text string")
    flags = {
        s: {r.text: r.h for r in df.select("text", train.holdout_flag(0.25, s).alias("h")).collect()} for s in (1, 2)
    }

    reordered = df.orderBy(F.desc("text")).repartition(3)
    again = {r.text: r.h for r in reordered.select("text", train.holdout_flag(0.25, 1).alias("h")).collect()}
    assert again == flags[1]
    held = sum(flags[1].values())
    assert 30 <= held <= 70  # about a quarter of 200 distinct texts
    assert flags[1] != flags[2]


TOKENS = [
    # Negation pairs: one space only, the next word cut to 5 characters; a lone negation is a token.
    ("Not good, I don't like it :)", ["not good", "i", "don't like", "it", ":)"]),
    ("can't stop smiling!!", ["can't stop", "smili", "!", "!"]),
    ("no way, never again. don't!", ["no way", "never again", "don't", "!"]),
    ("not  bad, not\tbad", ["not", "bad", "not", "bad"]),
    # Negation words inside other words are not negations; words start only at a word start.
    ("nothing now knows cannot", ["nothi", "now", "knows", "canno"]),
    # Emoticons, lowercased; "://" is not ":/"; URL pieces after "/" are words.
    (":D :-( ;p =] :* http://t.co/x :/", [":d", ":-(", ";p", "=]", ":*", "http", "t", "co", "x", ":/"]),
    # No @mentions, nothing after an apostrophe (straight or curly), the heart.
    ("@user it\u2019s <3 WONDERFUL", ["it", "<3", "wonde"]),
]


def test_token_pattern_marks_negations_and_keeps_emoticons(spark: SparkSession) -> None:
    tokenizer = train.build_pipeline(train.TrainingParams()).getStages()[0]
    assert isinstance(tokenizer, RegexTokenizer)
    df = spark.createDataFrame([(i, t) for i, (t, _) in enumerate(TOKENS)], "id int, text string")

    actual = {r.id: list(r.words) for r in tokenizer.transform(df).collect()}

    assert actual == {i: tokens for i, (_, tokens) in enumerate(TOKENS)}


def test_read_vader_parses_id_rating_and_text_keeping_further_tabs(spark: SparkSession, tmp_path: Path) -> None:
    path = write_lines(tmp_path / "v.tsv", ["7\t2.5\tso good", "3\t-4\tawful\tday", "12\t0.0\t", "5\t4.0\t:)"])

    actual = train.read_vader(spark, path)

    expected = spark.createDataFrame(
        [(7, 2.5, "so good"), (3, -4.0, "awful\tday"), (12, 0.0, ""), (5, 4.0, ":)")],
        "id int, rating double, text string",
    )
    assert_df_equality(actual, expected, ignore_nullable=True, ignore_row_order=True)


@pytest.mark.parametrize(
    "bad_line",
    [
        "x1\t1.0\tnot an integer id",
        "8\tgreat\tnot a number",
        "8\t4.01\tabove the scale",
        "8\t-4.5\tbelow the scale",
        "8\tNaN\tnot a rating",
        "8\t1.0",
        "just text",
        "",
    ],
)
def test_read_vader_refuses_a_malformed_line_naming_it(spark: SparkSession, tmp_path: Path, bad_line: str) -> None:
    path = write_lines(tmp_path / "v.tsv", ["1\t1.0\tfine", "2\t-1.0\talso fine", bad_line, "9\t0.5\tok"])

    with pytest.raises(train.TrainingError) as error:
        train.read_vader(spark, path)

    assert str(error.value) == (
        f"{path}: line 3 is not id<TAB>rating<TAB>text with an integer id and a rating in [-4, 4]: {bad_line!r}"
    )


def test_read_vader_refuses_repeated_ids(spark: SparkSession, tmp_path: Path) -> None:
    path = write_lines(tmp_path / "v.tsv", ["1\t1.0\ta", "4\t-1.0\tb", "4\t2.0\tc", "4\t0.0\td"])

    with pytest.raises(train.TrainingError, match=r"v\.tsv: id 4 appears on 3 lines; ids must be unique"):
        train.read_vader(spark, path)


def test_vader_labels_follow_the_band_and_leave_the_middle_out(spark: SparkSession) -> None:
    ratings = [-4.0, -1.0, -0.99, -0.5, -0.49, 0.0, 0.49, 0.5, 0.99, 1.0, 4.0]
    df = spark.createDataFrame([(i, r, f"t{i}") for i, r in enumerate(ratings)], "id int, rating double, text string")

    labels = {band: {r.id: r.label for r in df.transform(train.vader_labelled(band)).collect()} for band in (0.5, 1.0)}

    assert labels[0.5] == {0: 0.0, 1: 0.0, 2: 0.0, 3: 0.0, 7: 1.0, 8: 1.0, 9: 1.0, 10: 1.0}
    assert labels[1.0] == {0: 0.0, 1: 0.0, 9: 1.0, 10: 1.0}


def test_vader_split_is_the_documented_hash_of_the_id(spark: SparkSession) -> None:
    df = spark.createDataFrame([(i, f"text {i % 7}") for i in range(1, 4201)], "id int, text string")
    bucket = F.pmod(F.xxhash64(F.lit(42), F.col("id")), F.lit(10_000))

    rows = df.select("id", bucket.alias("b"), train.vader_split(42, 0.2, 0.15).alias("part")).collect()

    for r in rows:
        assert r.part == ("test" if r.b < 2000 else "dev" if r.b < 3500 else "train"), r
    counts = {part: sum(r.part == part for r in rows) for part in ("train", "dev", "test")}
    assert 0.17 * 4200 < counts["test"] < 0.23 * 4200
    assert 0.12 * 4200 < counts["dev"] < 0.18 * 4200
    # Not row order, partitioning or the text: only the id and the seed.
    shuffled = df.withColumn("text", F.lit("other")).orderBy(F.desc("id")).repartition(3)
    again = {r.id: r.part for r in shuffled.select("id", train.vader_split(42, 0.2, 0.15).alias("part")).collect()}
    assert again == {r.id: r.part for r in rows}
    other_seed = {r.id: r.part for r in df.select("id", train.vader_split(7, 0.2, 0.15).alias("part")).collect()}
    assert other_seed != again


SCORES = [
    # label, prediction (at 0.5), P(POSITIVE)
    (0.0, 0.0, 0.10),
    (0.0, 0.0, 0.30),
    (0.0, 1.0, 0.60),
    (1.0, 0.0, 0.40),
    (1.0, 1.0, 0.70),
    (1.0, 1.0, 0.90),
    (1.0, 1.0, 0.95),
]


def scores_df(spark: SparkSession) -> Any:
    rows = [(label, pred, Vectors.dense([-p, p]), p) for label, pred, p in SCORES]
    return spark.createDataFrame(rows, ["label", "prediction", "rawPrediction", "p_positive"])


def test_tune_threshold_picks_best_balanced_accuracy_nearest_half(spark: SparkSession) -> None:
    # Thresholds in [0.60, 0.70) get 3/3 negatives and 3/4 positives right, the best there is;
    # [0.30, 0.40) gets 2/3 and 4/4. Of the best, 0.6 is nearest 0.5.
    assert train.tune_threshold(scores_df(spark)) == (0.6, 0.875)


def test_evaluate_gives_exact_figures(spark: SparkSession) -> None:
    result = train.evaluate(scores_df(spark))

    assert result["rows"] == {"NEGATIVE": 3, "POSITIVE": 4}
    assert result["confusion_matrix"] == {
        "NEGATIVE": {"NEGATIVE": 2, "POSITIVE": 1},
        "POSITIVE": {"NEGATIVE": 1, "POSITIVE": 3},
    }
    assert result["accuracy"] == pytest.approx(5 / 7)
    assert result["balanced_accuracy"] == pytest.approx((2 / 3 + 3 / 4) / 2)
    assert result["per_class"]["NEGATIVE"] == pytest.approx({"precision": 2 / 3, "recall": 2 / 3, "support": 3})
    assert result["per_class"]["POSITIVE"] == pytest.approx({"precision": 3 / 4, "recall": 3 / 4, "support": 4})
    # 12 positive/negative pairs, one inverted (0.40 < 0.60).
    assert result["roc_auc"] == pytest.approx(11 / 12)
    assert result["majority_class_baseline"] == {"label": "POSITIVE", "accuracy": 4 / 7, "balanced_accuracy": 0.5}


def test_model_version_is_content_derived() -> None:
    data = {
        "positive": {"path": "a", "sha256": "00", "lines": 3},
        "negative": {"path": "b", "sha256": "11", "lines": 4},
    }
    moved = {role: {**facts, "path": f"/elsewhere/{facts['path']}"} for role, facts in data.items()}
    params = {"reg_param": 0.1, "threshold": 0.5}

    version = train.model_version(params, data, "4.2.0")

    assert re.fullmatch(r"[0-9a-f]{12}", version)
    assert train.model_version(dict(params), moved, "4.2.0") == version  # paths do not matter, content does
    assert train.model_version({**params, "reg_param": 0.2}, data, "4.2.0") != version
    assert train.model_version(params, {**data, "negative": {"sha256": "12", "lines": 4}}, "4.2.0") != version


def test_params_refuse_more_than_2_to_the_18_features() -> None:
    with pytest.raises(train.TrainingError, match=r"num_features must be in 1\.\.262144, found 524288"):
        train.TrainingParams(num_features=1 << 19)


# --- end to end ------------------------------------------------------------------------------------------


def test_train_end_to_end_writes_a_loadable_model(
    spark: SparkSession, data: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "model"

    assert train.main(argv(data, output, "--seed", "7"), spark=spark) == 0

    assert sorted(p.name for p in output.iterdir()) == ["metadata", "model.json", "stages"]
    doc = json.loads((output / "model.json").read_text(encoding="utf-8"))
    assert doc["name"] == "Sentiment Prediction"
    assert re.fullmatch(r"[0-9a-f]{12}", doc["version"])
    assert datetime.strptime(doc["created_at"], "%Y-%m-%dT%H:%M:%SZ")
    assert doc["model_type"] == "sparkml-pipeline"
    assert doc["stages"] == [
        "org.apache.spark.ml.feature.RegexTokenizer",
        "org.apache.spark.ml.feature.HashingTF",
        "org.apache.spark.ml.classification.LogisticRegressionModel",
    ]
    assert doc["spark_version"] == spark.version
    assert doc["label_column"] == "label"
    assert doc["label_values"] == ["NEGATIVE", "POSITIVE"]
    assert doc["input_schema"] == [{"name": "id", "type": "integer"}, {"name": "text", "type": "string"}]
    assert [(f["name"], f["type"]) for f in doc["training_schema"]] == [
        ("id", "integer"),
        ("text", "string"),
        ("label", "double"),
        ("weight", "double"),
    ]
    assert doc["training_data"]["positive"] == {
        "path": data["positive"],
        "sha256": sha256(data["positive"]),
        "lines": 36,
    }
    assert doc["training_data"]["negative"] == {
        "path": data["negative"],
        "sha256": sha256(data["negative"]),
        "lines": 36,
    }
    assert doc["training_data"]["vader"] == {"path": data["vader"], "sha256": sha256(data["vader"]), "lines": 84}
    rows = doc["training_data"]["rows"]
    assert sum(rows["sentiment140"]["train"].values()) + sum(rows["sentiment140"]["holdout"].values()) == 72
    vader = rows["vader"]
    # 84 lines: 12 are neutral (|rating| 0.25) and left out everywhere; every polar line is in one part.
    assert sum(vader["lines_per_part"].values()) == 84
    assert sum(sum(vader[part].values()) for part in ("train", "dev", "test")) == 72
    assert all(min(vader[part].values()) > 0 for part in ("train", "dev", "test")), vader
    weights = doc["training_data"]["weights"]
    assert weights["sentiment140"] == {"POSITIVE": 1.0, "NEGATIVE": 1.0}
    assert weights["vader"] == {
        "POSITIVE": 2.0,
        "NEGATIVE": 2.0 * vader["train"]["POSITIVE"] / vader["train"]["NEGATIVE"],
    }
    hp = doc["hyperparameters"]
    assert (hp["num_features"], hp["seed"], hp["holdout_fraction"], hp["threshold_tuned"]) == (1024, 7, 0.25, True)
    assert (hp["vader_weight"], hp["vader_band"], hp["vader_test_fraction"], hp["vader_dev_fraction"]) == (
        2.0,
        0.5,
        0.3,
        0.3,
    )
    assert hp["token_pattern"] == train.TOKEN_PATTERN
    ev = doc["evaluation"]
    assert ev["rows"] == {"NEGATIVE": 3, "POSITIVE": 4}  # the 2 neutral lines are not used
    assert ev["confusion_matrix"] == {
        "NEGATIVE": {"NEGATIVE": 3, "POSITIVE": 0},
        "POSITIVE": {"NEGATIVE": 0, "POSITIVE": 4},
    }
    assert (ev["accuracy"], ev["balanced_accuracy"], ev["roc_auc"]) == (1.0, 1.0, 1.0)
    assert ev["majority_class_baseline"] == {"label": "POSITIVE", "accuracy": 4 / 7, "balanced_accuracy": 0.5}
    assert set(ev["per_class"]) == {"NEGATIVE", "POSITIVE"}
    for part in ("dev", "test"):
        assert ev[f"vader_{part}"]["rows"] == vader[part]
    assert ev["sentiment140_holdout"]["rows"] == rows["sentiment140"]["holdout"]
    assert ev["baseline"] is None
    out = capsys.readouterr().out
    assert f"version {doc['version']}" in out
    assert "TweetEval validation: balanced accuracy 1.0000, accuracy 1.0000, ROC AUC 1.0000" in out

    model = load_model(spark, str(output))
    assert model.metadata.version == doc["version"]
    assert classifier(model.pipeline).getThreshold() == hp["threshold"]
    texts = spark.createDataFrame([(1, "I LOVE the weather"), (2, "so sad, my phone")], "id int, text string")
    predictions = [r.prediction for r in model.pipeline.transform(texts).orderBy("id").collect()]
    assert predictions == [1.0, 0.0]


def test_train_refuses_to_overwrite_unless_asked_and_is_reproducible(
    spark: SparkSession, data: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "model"
    assert train.main(argv(data, output), spark=spark) == 0
    first = json.loads((output / "model.json").read_text(encoding="utf-8"))
    capsys.readouterr()

    assert train.main(argv(data, output), spark=spark) == 2
    assert f"error: output {output} already exists; pass --overwrite to replace it" in capsys.readouterr().err

    assert train.main(argv(data, output, "--overwrite"), spark=spark) == 0
    second = json.loads((output / "model.json").read_text(encoding="utf-8"))
    first.pop("created_at")
    second.pop("created_at")
    assert second == first  # same data, same parameters: same version, same figures


def test_train_never_replaces_a_folder_that_is_not_a_model(
    spark: SparkSession, data: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "notes"
    output.mkdir()
    (output / "todo.txt").write_text("keep me", encoding="utf-8")

    assert train.main(argv(data, output, "--overwrite"), spark=spark) == 2

    assert "holds ['todo.txt'], which a model folder does not; not replacing it" in capsys.readouterr().err
    assert (output / "todo.txt").read_text(encoding="utf-8") == "keep me"


def test_class_weights_are_needed_only_for_training(spark: SparkSession, data: dict[str, str], tmp_path: Path) -> None:
    output = tmp_path / "weighted"
    assert train.main(argv(data, output, "--positive-weight", "2.5", "--threshold", "0.5"), spark=spark) == 0

    model = load_model(spark, str(output))
    hp = model.metadata.raw["hyperparameters"]
    assert (hp["positive_weight"], hp["threshold"], hp["threshold_tuned"]) == (2.5, 0.5, False)
    texts = spark.createDataFrame([(1, "wonderful day"), (2, "horrible day")], "id int, text string")
    predictions = [r.prediction for r in model.pipeline.transform(texts).orderBy("id").collect()]
    assert predictions == [1.0, 0.0]


def test_train_refuses_validation_files_of_different_lengths(
    spark: SparkSession, data: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_lines(Path(data["validation_labels"]), ["0", "2"])

    assert train.main(argv(data, tmp_path / "m"), spark=spark) == 2

    assert f"{data['validation_text']} has 9 lines but {data['validation_labels']} has 2" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


FIGURES = ("rows", "accuracy", "balanced_accuracy", "roc_auc", "per_class", "confusion_matrix")


def test_baseline_model_is_scored_on_the_same_rows(
    spark: SparkSession, data: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    assert train.main(argv(data, first), spark=spark) == 0
    assert train.main(argv(data, second, "--vader-weight", "5", "--baseline-model", str(first)), spark=spark) == 0

    old = json.loads((first / "model.json").read_text(encoding="utf-8"))
    new = json.loads((second / "model.json").read_text(encoding="utf-8"))
    assert new["version"] != old["version"]
    baseline = new["evaluation"]["baseline"]
    assert baseline["model"] == {
        "name": "Sentiment Prediction",
        "version": old["version"],
        "location": str(first),
        "threshold": old["hyperparameters"]["threshold"],
    }
    # The same rows and the same code: the first model's figures on itself, to the last digit.
    assert {k: baseline["tweeteval"][k] for k in FIGURES} == {k: old["evaluation"][k] for k in FIGURES}
    assert {k: baseline["vader_test"][k] for k in FIGURES} == {k: old["evaluation"]["vader_test"][k] for k in FIGURES}
    assert f"baseline {old['version']} on TweetEval: balanced accuracy" in capsys.readouterr().out


def test_baseline_model_must_not_be_the_output(
    spark: SparkSession, data: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "m"

    assert train.main(argv(data, output, "--baseline-model", f"{output}/"), spark=spark) == 2

    assert f"error: --baseline-model and --output are both {output}" in capsys.readouterr().err
    assert not output.exists()


def test_missing_baseline_model_fails_before_training(
    spark: SparkSession, data: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "no-such-model"

    assert train.main(argv(data, tmp_path / "m", "--baseline-model", str(missing)), spark=spark) == 2

    assert f"error: baseline model: model location {missing}: no such folder" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


# --- the shipped model and the shared data ---------------------------------------------------------------


@pytest.mark.skipif(
    not (SHARED_DATA / "sentiment140-100k" / "positive.txt").exists(),
    reason=f"shared training data not found at {SHARED_DATA} (../shared is laid beside the project)",
)
def test_shipped_model_was_trained_on_the_shared_data(spark: SparkSession) -> None:
    doc = json.loads((SHIPPED_MODEL / "model.json").read_text(encoding="utf-8"))
    for role, name, lines in (
        ("positive", "sentiment140-100k/positive.txt", 50_000),
        ("negative", "sentiment140-100k/negative.txt", 50_000),
        ("vader", "vader-tweets/tweets_GroundTruth.tsv", 4_200),
    ):
        facts = train.file_facts(spark, str(SHARED_DATA / name))
        assert (facts["sha256"], facts["lines"]) == (doc["training_data"][role]["sha256"], lines)


def test_shipped_model_version_recomputes_from_its_metadata() -> None:
    doc = json.loads((SHIPPED_MODEL / "model.json").read_text(encoding="utf-8"))
    data = {role: doc["training_data"][role] for role in ("positive", "negative", "vader")}
    assert train.model_version(doc["hyperparameters"], data, doc["spark_version"]) == doc["version"]
