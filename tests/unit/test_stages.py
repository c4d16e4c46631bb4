"""What a fitted pipeline tells about serving it: inputs, classifier, labels, for each shape a data scientist brings,
and each refusal with its sentence."""

from __future__ import annotations

import pytest
from pyspark.errors import AnalysisException
from pyspark.ml import PipelineModel
from pyspark.ml.classification import LogisticRegression
from pyspark.ml.feature import IndexToString, SQLTransformer, StringIndexer, VectorAssembler
from pyspark.sql import SparkSession

from job.runtime.stages import PipelineError, Stage, inspect_pipeline

LR_OUTPUTS = ("prediction", "probability", "rawPrediction")


def shape(pipeline: PipelineModel) -> list[tuple[str, tuple[str, ...], tuple[str, ...]]]:
    return [(s.name, s.inputs, s.outputs) for s in inspect_pipeline(pipeline).stages]


def test_tokenizer_hashing_lr_reads_text_and_names_no_labels(hashing_lr_model: PipelineModel) -> None:
    facts = inspect_pipeline(hashing_lr_model)
    assert shape(hashing_lr_model) == [
        ("Tokenizer", ("text",), ("words",)),
        ("HashingTF", ("words",), ("features",)),
        ("LogisticRegressionModel", ("features",), LR_OUTPUTS),
    ]
    assert facts.stages[0] == Stage(0, "Tokenizer", "org.apache.spark.ml.feature.Tokenizer", ("text",), ("words",))
    assert facts.input_columns == ("text",)
    assert dict(facts.input_types) == {"text": "string"}
    assert facts.classifier.index == 2
    assert facts.num_classes == 2
    assert (facts.classifier_label_column, facts.raw_label_column) == ("label", "label")
    assert (facts.prediction_column, facts.probability_column) == ("prediction", "probability")
    assert (facts.label_values, facts.label_source, facts.predicted_label_column) == (None, None, None)
    assert dict(facts.known_values) == {}


def test_string_indexer_and_index_to_string_give_the_pipelines_own_labels(indexed_model: PipelineModel) -> None:
    facts = inspect_pipeline(indexed_model, label_column="sentiment")
    indexer_labels = tuple(indexed_model.stages[0].labels)  # type: ignore[attr-defined]
    assert sorted(indexer_labels) == ["NEGATIVE", "POSITIVE"]
    assert shape(indexed_model) == [
        ("StringIndexerModel", ("sentiment",), ("label",)),
        ("Tokenizer", ("text",), ("words",)),
        ("HashingTF", ("words",), ("features",)),
        ("LogisticRegressionModel", ("features",), LR_OUTPUTS),
        ("IndexToString", ("prediction",), ("predictedLabel",)),
    ]
    # The label column is not an input: a message does not carry it, and Spark skips the indexer without it.
    assert facts.input_columns == ("text",)
    assert (facts.classifier_label_column, facts.raw_label_column) == ("label", "sentiment")
    assert facts.label_values == indexer_labels
    assert facts.label_source == "the labels of the IndexToString stage (predictedLabel)"
    assert facts.predicted_label_column == "predictedLabel"
    # The indexed name is accepted as the label column too.
    assert inspect_pipeline(indexed_model, label_column="label").raw_label_column == "sentiment"


def test_ngram_count_vectorizer_idf(ngram_model: PipelineModel) -> None:
    assert shape(ngram_model) == [
        ("Tokenizer", ("text",), ("words",)),
        ("NGram", ("words",), ("bigrams",)),
        ("CountVectorizerModel", ("bigrams",), ("counts",)),
        ("IDFModel", ("counts",), ("features",)),
        ("LogisticRegressionModel", ("features",), LR_OUTPUTS),
    ]
    assert inspect_pipeline(ngram_model).input_columns == ("text",)


def test_three_classes(three_class_model: PipelineModel) -> None:
    facts = inspect_pipeline(three_class_model)
    assert facts.num_classes == 3
    assert facts.label_values is None


def test_a_numeric_field_beside_the_text(stars_model: PipelineModel) -> None:
    facts = inspect_pipeline(stars_model)
    assert facts.input_columns == ("text", "stars")
    assert dict(facts.input_types) == {"text": "string", "stars": "double"}
    labels = tuple(stars_model.stages[0].labels)  # type: ignore[attr-defined]
    assert facts.label_values == labels
    assert facts.label_source == "the labels of the StringIndexerModel on 'sentiment' (stage 0)"
    assert facts.predicted_label_column is None


def test_a_categorical_input_gets_a_value_its_indexer_knows(spark: SparkSession) -> None:
    train = spark.createDataFrame([("fr", 1.0), ("de", 0.0), ("fr", 1.0), ("uk", 0.0)], "country string, label double")
    pipeline = PipelineModel(
        [
            StringIndexer(inputCol="country", outputCol="country_ix").fit(train),
            VectorAssembler(inputCols=["country_ix"], outputCol="features"),
        ]
    )
    model = PipelineModel([*pipeline.stages, LogisticRegression(maxIter=5).fit(pipeline.transform(train))])
    facts = inspect_pipeline(model)
    assert facts.input_columns == ("country",)
    assert dict(facts.input_types) == {"country": "string"}
    assert dict(facts.known_values) == {"country": "fr"}  # the most frequent value comes first


def test_a_nested_pipeline_is_read_as_its_stages(hashing_lr_model: PipelineModel) -> None:
    nested = PipelineModel([PipelineModel(hashing_lr_model.stages[:2]), hashing_lr_model.stages[2]])
    assert inspect_pipeline(nested) == inspect_pipeline(hashing_lr_model)


# --- refusals --------------------------------------------------------------------------------------------


def refusal(pipeline: PipelineModel, label_column: str | None = None) -> str:
    with pytest.raises(PipelineError) as error:
        inspect_pipeline(pipeline, label_column)
    return str(error.value)


def test_refuses_an_empty_pipeline() -> None:
    assert refusal(PipelineModel([])) == "the PipelineModel has no stages"


def test_refuses_a_pipeline_without_a_classifier(hashing_lr_model: PipelineModel) -> None:
    assert refusal(PipelineModel(hashing_lr_model.stages[:2])) == (
        "no classification model among the stages ['Tokenizer', 'HashingTF']; the job serves a pipeline whose last "
        "model is a classifier (LogisticRegressionModel, NaiveBayesModel, RandomForestClassificationModel, ...)"
    )


def test_refuses_a_stage_after_the_classifier_other_than_index_to_string(hashing_lr_model: PipelineModel) -> None:
    extra = SQLTransformer(statement="SELECT * FROM __THIS__")
    assert refusal(PipelineModel([*hashing_lr_model.stages, extra])) == (
        "stage 3 (SQLTransformer) comes after the classifier (stage 2 (LogisticRegressionModel)); only an "
        "IndexToString that turns its 'prediction' column into labels may follow it, as the job takes the "
        "classifier's prediction as the pipeline's result"
    )
    other_column = IndexToString(inputCol="label", outputCol="labelText", labels=["A", "B"])
    assert "stage 3 (IndexToString) comes after the classifier" in refusal(
        PipelineModel([*hashing_lr_model.stages, other_column])
    )


def test_refuses_index_to_string_without_labels(hashing_lr_model: PipelineModel) -> None:
    unlabelled = IndexToString(inputCol="prediction", outputCol="predictedLabel")
    assert refusal(PipelineModel([*hashing_lr_model.stages, unlabelled])) == (
        "stage 3 (IndexToString) turns 'prediction' into labels but has no labels param; at scoring time the "
        "prediction column carries no label names, so build it with labels=<the StringIndexerModel's labels>"
    )


def test_refuses_labels_that_do_not_match_the_classes(hashing_lr_model: PipelineModel) -> None:
    three = IndexToString(inputCol="prediction", outputCol="predictedLabel", labels=["A", "B", "C"])
    assert refusal(PipelineModel([*hashing_lr_model.stages, three])) == (
        "the labels of the IndexToString stage (predictedLabel) are 3 ['A', 'B', 'C'] but the classifier "
        "(stage 2 (LogisticRegressionModel)) predicts 2 classes"
    )


def test_refuses_a_label_column_the_classifier_did_not_learn_from(
    indexed_model: PipelineModel, hashing_lr_model: PipelineModel
) -> None:
    assert refusal(indexed_model, "mood") == (
        "the metadata names the label column 'mood', but the classifier learnt from 'sentiment' (indexed into 'label')"
    )
    assert refusal(hashing_lr_model, "sentiment") == (
        "the metadata names the label column 'sentiment', but the classifier learnt from 'label'"
    )


def test_refuses_a_classifier_reading_a_vector_from_the_message(hashing_lr_model: PipelineModel) -> None:
    assert refusal(PipelineModel(hashing_lr_model.stages[2:])) == (
        "the classifier (stage 0 (LogisticRegressionModel)) reads the vector column 'features', which no earlier "
        "stage writes; a message cannot carry a vector, so the pipeline must build it from the message's fields"
    )


def test_refuses_a_stage_that_would_drop_rows(spark: SparkSession, stars_model: PipelineModel) -> None:
    assembler = stars_model.stages[3].copy()
    assembler.setHandleInvalid("skip")  # type: ignore[attr-defined]
    pipeline = PipelineModel([*stars_model.stages[:3], assembler, stars_model.stages[4]])
    assert refusal(pipeline) == (
        "stage 3 (VectorAssembler) has handleInvalid='skip': it drops the rows it cannot handle, so a message would "
        "get no record at all; refit it with 'keep' (or 'error')"
    )
    # On the label indexer 'skip' fails too: Spark filters on the label column, which a message does not carry.
    indexer = stars_model.stages[0].copy()
    indexer.setHandleInvalid("skip")  # type: ignore[attr-defined]
    skipping = PipelineModel([indexer, *stars_model.stages[1:]])
    assert refusal(skipping) == (
        "stage 0 (StringIndexerModel) indexes the label column 'sentiment' with handleInvalid='skip', which makes "
        "Spark read that column when scoring, and a message does not carry it; refit the indexer with 'error' (the "
        "default) or 'keep'"
    )
    message = spark.createDataFrame([("great", 4.5)], "text string, stars double")
    with pytest.raises(AnalysisException):
        skipping.transform(message).collect()
    assert stars_model.transform(message).count() == 1
