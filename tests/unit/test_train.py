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
        "validation_text": write_lines(folder / "text.txt", [t for t, _ in VALIDATION]),
        "validation_labels": write_lines(folder / "labels.txt", [label for _, label in VALIDATION]),
    }


def argv(data: dict[str, str], output: Path, *extra: str) -> list[str]:
    return [
        "--positive", data["positive"],
        "--negative", data["negative"],
        "--validation-text", data["validation_text"],
        "--validation-labels", data["validation_labels"],
        "--output", str(output),
        "--num-features", "1024",
        "--holdout-fraction", "0.25",
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
    rows = doc["training_data"]["rows"]
    assert sum(rows["train"].values()) + sum(rows["holdout"].values()) == 72
    assert doc["validation_data"]["labels"]["lines"] == 9
    hp = doc["hyperparameters"]
    assert (hp["num_features"], hp["seed"], hp["holdout_fraction"], hp["threshold_tuned"]) == (1024, 7, 0.25, True)
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
    assert f"version {doc['version']}" in capsys.readouterr().out

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


# --- the shipped model and the shared data ---------------------------------------------------------------


@pytest.mark.skipif(
    not (SHARED_DATA / "sentiment140-100k" / "positive.txt").exists(),
    reason=f"shared training data not found at {SHARED_DATA} (../shared is laid beside the project)",
)
def test_shipped_model_was_trained_on_the_shared_data(spark: SparkSession) -> None:
    doc = json.loads((SHIPPED_MODEL / "model.json").read_text(encoding="utf-8"))
    for role, name in (("positive", "positive.txt"), ("negative", "negative.txt")):
        facts = train.file_facts(spark, str(SHARED_DATA / "sentiment140-100k" / name))
        assert (facts["sha256"], facts["lines"]) == (doc["training_data"][role]["sha256"], 50_000)


def test_shipped_model_version_recomputes_from_its_metadata() -> None:
    doc = json.loads((SHIPPED_MODEL / "model.json").read_text(encoding="utf-8"))
    data = {role: doc["training_data"][role] for role in ("positive", "negative")}
    assert train.model_version(doc["hyperparameters"], data, doc["spark_version"]) == doc["version"]
