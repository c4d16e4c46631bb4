"""Fitted pipelines for the tests: typed access to their stages, and the pipeline shapes a data scientist brings."""

from __future__ import annotations

from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.classification import LogisticRegression, LogisticRegressionModel
from pyspark.ml.feature import (
    IDF,
    CountVectorizer,
    HashingTF,
    IndexToString,
    NGram,
    RegexTokenizer,
    StringIndexer,
    Tokenizer,
    VectorAssembler,
)
from pyspark.sql import SparkSession


def classifier(pipeline: PipelineModel) -> LogisticRegressionModel:
    stage = pipeline.stages[-1]
    assert isinstance(stage, LogisticRegressionModel), type(stage).__name__
    return stage


def tokenizer(pipeline: PipelineModel) -> Tokenizer | RegexTokenizer:
    stage = pipeline.stages[0]
    assert isinstance(stage, Tokenizer | RegexTokenizer), type(stage).__name__
    return stage


def hashing(pipeline: PipelineModel) -> HashingTF:
    stage = pipeline.stages[1]
    assert isinstance(stage, HashingTF), type(stage).__name__
    return stage


# --- pipelines someone else trained (issue 14): the shapes `job model publish` must take -----------------

# A few dozen labelled sentences, a dozen per class, that each pipeline below fits well enough to tell apart.
POSITIVE_TEXTS = [
    "i love this so much", "what a great happy day", "wonderful amazing love it", "so happy and glad",
    "great fun love", "best day ever happy", "lovely sunny morning great", "thank you so much love",
    "amazing game great win", "happy birthday wonderful party", "glad to see you happy", "love love love this",
]  # fmt: skip
NEGATIVE_TEXTS = [
    "i hate this so much", "what a terrible sad day", "awful horrible hate it", "so sad and angry",
    "bad boring hate", "worst day ever sad", "terrible rainy morning awful", "no thanks i hate it",
    "awful game bad loss", "sad news horrible week", "angry to see this mess", "hate hate hate this",
]  # fmt: skip
NEUTRAL_TEXTS = [
    "the meeting is at noon", "the bus leaves at five", "it is a tuesday today", "the report has ten pages",
    "the shop opens at nine", "the train is on platform two", "my desk is by the window", "the book has a cover",
    "the form asks for a date", "the road goes north", "the file is in the folder", "the box holds paper",
]  # fmt: skip
# (text, sentiment) rows, as a data scientist's training DataFrame would hold them.
BINARY_ROWS = [(t, "POSITIVE") for t in POSITIVE_TEXTS] + [(t, "NEGATIVE") for t in NEGATIVE_TEXTS]
THREE_CLASS_ROWS = BINARY_ROWS + [(t, "NEUTRAL") for t in NEUTRAL_TEXTS]
THREE_CLASS_LABELS = ("NEGATIVE", "NEUTRAL", "POSITIVE")
# Stars given with each binary row: mostly agreeing with the text, so the number carries weight in the model.
STARS = [
    5.0,
    4.0,
    4.5,
    5.0,
    3.0,
    4.0,
    4.5,
    5.0,
    2.0,
    4.0,
    5.0,
    4.5,
    1.0,
    2.0,
    1.5,
    1.0,
    3.0,
    2.0,
    1.0,
    1.5,
    4.0,
    1.0,
    2.0,
    1.0,
]


def hashing_lr(spark: SparkSession) -> PipelineModel:
    """Tokenizer (not regex) -> HashingTF -> LR on a numeric label (0.0 NEGATIVE, 1.0 POSITIVE): it names no labels."""
    rows = [(t, 1.0 if s == "POSITIVE" else 0.0) for t, s in BINARY_ROWS]
    train = spark.createDataFrame(rows, "text string, label double")
    return Pipeline(
        stages=[
            Tokenizer(inputCol="text", outputCol="words"),
            HashingTF(inputCol="words", outputCol="features", numFeatures=512),
            LogisticRegression(maxIter=20, regParam=0.01),
        ]
    ).fit(train)


def indexed_labels(spark: SparkSession) -> PipelineModel:
    """As the WML sample did: StringIndexer on `sentiment`, ..., LR, IndexToString(prediction -> predictedLabel)."""
    train = spark.createDataFrame(BINARY_ROWS, "text string, sentiment string")
    indexer = StringIndexer(inputCol="sentiment", outputCol="label").fit(train)
    return Pipeline(
        stages=[
            indexer,
            Tokenizer(inputCol="text", outputCol="words"),
            HashingTF(inputCol="words", outputCol="features", numFeatures=512),
            LogisticRegression(maxIter=20, regParam=0.01),
            IndexToString(inputCol="prediction", outputCol="predictedLabel", labels=indexer.labels),
        ]
    ).fit(train)


def ngram_idf(spark: SparkSession) -> PipelineModel:
    """Tokenizer -> NGram(2) -> CountVectorizer -> IDF -> LR on a numeric label."""
    rows = [(t, 1.0 if s == "POSITIVE" else 0.0) for t, s in BINARY_ROWS]
    train = spark.createDataFrame(rows, "text string, label double")
    return Pipeline(
        stages=[
            Tokenizer(inputCol="text", outputCol="words"),
            NGram(n=2, inputCol="words", outputCol="bigrams"),
            CountVectorizer(inputCol="bigrams", outputCol="counts"),
            IDF(inputCol="counts", outputCol="features"),
            LogisticRegression(maxIter=20, regParam=0.01),
        ]
    ).fit(train)


def three_class(spark: SparkSession) -> PipelineModel:
    """Tokenizer -> HashingTF -> multinomial LR over 0.0 NEGATIVE, 1.0 NEUTRAL, 2.0 POSITIVE."""
    rows = [(t, float(THREE_CLASS_LABELS.index(s))) for t, s in THREE_CLASS_ROWS]
    train = spark.createDataFrame(rows, "text string, label double")
    return Pipeline(
        stages=[
            Tokenizer(inputCol="text", outputCol="words"),
            HashingTF(inputCol="words", outputCol="features", numFeatures=512),
            LogisticRegression(maxIter=30, regParam=0.01, family="multinomial"),
        ]
    ).fit(train)


def with_stars(spark: SparkSession) -> PipelineModel:
    """A numeric field of the message beside the text: [HashingTF(text), stars] -> LR; labels from a StringIndexer."""
    rows = [(t, s, stars) for (t, s), stars in zip(BINARY_ROWS, STARS, strict=True)]
    train = spark.createDataFrame(rows, "text string, sentiment string, stars double")
    return Pipeline(
        stages=[
            StringIndexer(inputCol="sentiment", outputCol="label"),
            Tokenizer(inputCol="text", outputCol="words"),
            HashingTF(inputCol="words", outputCol="tf", numFeatures=512),
            VectorAssembler(inputCols=["tf", "stars"], outputCol="features"),
            LogisticRegression(maxIter=20, regParam=0.01),
        ]
    ).fit(train)
