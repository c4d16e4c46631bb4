"""Fixtures shared by the unit tests: a tiny fitted Tokenizer -> HashingTF -> LogisticRegression pipeline, and the
pipeline shapes a data scientist brings (tests/pipelines.py)."""

from __future__ import annotations

import pytest
from pyspark.ml import Pipeline, PipelineModel
from pyspark.ml.classification import LogisticRegression
from pyspark.ml.feature import HashingTF, Tokenizer
from pyspark.sql import SparkSession

from tests import pipelines

# A dozen labelled sentences that the tiny pipeline fits perfectly.
TRAIN = [
    ("i love this so much", 1.0),
    ("what a great happy day", 1.0),
    ("wonderful amazing love it", 1.0),
    ("so happy and glad", 1.0),
    ("great fun love", 1.0),
    ("best day ever happy", 1.0),
    ("i hate this so much", 0.0),
    ("what a terrible sad day", 0.0),
    ("awful horrible hate it", 0.0),
    ("so sad and angry", 0.0),
    ("bad boring hate", 0.0),
    ("worst day ever sad", 0.0),
]


@pytest.fixture(scope="session")
def tiny_pipeline(spark: SparkSession) -> PipelineModel:
    train = spark.createDataFrame(TRAIN, "text string, label double")
    pipeline = Pipeline(
        stages=[
            Tokenizer(inputCol="text", outputCol="words"),
            HashingTF(inputCol="words", outputCol="features", numFeatures=256),
            LogisticRegression(maxIter=50, regParam=0.01),
        ]
    )
    return pipeline.fit(train)


# The pipeline shapes of issue 14 (tests/pipelines.py), fitted once per session when a test asks for one.


@pytest.fixture(scope="session")
def hashing_lr_model(spark: SparkSession) -> PipelineModel:
    return pipelines.hashing_lr(spark)


@pytest.fixture(scope="session")
def indexed_model(spark: SparkSession) -> PipelineModel:
    return pipelines.indexed_labels(spark)


@pytest.fixture(scope="session")
def ngram_model(spark: SparkSession) -> PipelineModel:
    return pipelines.ngram_idf(spark)


@pytest.fixture(scope="session")
def three_class_model(spark: SparkSession) -> PipelineModel:
    return pipelines.three_class(spark)


@pytest.fixture(scope="session")
def stars_model(spark: SparkSession) -> PipelineModel:
    return pipelines.with_stars(spark)
