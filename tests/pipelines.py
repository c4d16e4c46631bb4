"""Typed access to the stages of a fitted pipeline (PipelineModel.stages is typed as plain Transformers)."""

from __future__ import annotations

from pyspark.ml import PipelineModel
from pyspark.ml.classification import LogisticRegressionModel
from pyspark.ml.feature import HashingTF, RegexTokenizer, Tokenizer


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
