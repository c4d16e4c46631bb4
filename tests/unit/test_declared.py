"""Metadata documents a publisher brings: the WML published-model document loads unchanged (whole, entity, list of
one), our own model.json reads as declarations, and every malformed document is refused with its sentence."""

from __future__ import annotations

import json
from typing import Any

import pytest

from job.runtime.declared import Declared, from_document, struct_fields
from job.runtime.model import ModelError
from tests.paths import SHIPPED_MODEL, WML_DOCUMENT

SOURCE = "wml-model.json"


def wml() -> dict[str, Any]:
    return json.loads(WML_DOCUMENT.read_text(encoding="utf-8"))


def entity(**changes: Any) -> dict[str, Any]:
    doc = wml()["entity"]
    doc.update(changes)
    return doc


def declared(doc: Any) -> Declared:
    return from_document(json.dumps(doc), SOURCE)


def test_the_whole_get_response_loads_unchanged() -> None:
    doc = wml()
    got = from_document(WML_DOCUMENT.read_text(encoding="utf-8"), str(WML_DOCUMENT))
    kept = {k: v for k, v in doc["entity"].items() if k not in ("name", "description", "author", "label_col")}
    del kept["input_data_schema"], kept["training_data_schema"]
    assert got == Declared(
        name="Sentiment Prediction",
        description="Sentiment of a tweet from its text",
        author={"name": "Jane Doe", "email": "jane.doe@example.com"},
        label_column="sentiment",
        label_values=None,  # WML's document does not list them: the pipeline's StringIndexer does
        input_schema=(("id", "integer"), ("text", "string")),
        unsupported=(),
        training_schema=(
            {"name": "id", "type": "integer"},
            {"name": "text", "type": "string"},
            {"name": "sentiment", "type": "string"},
        ),
        extra={
            "wml": {
                **kept,
                "guid": "5b3f2a1e-8c4d-4e6f-9a0b-1c2d3e4f5a6b",
                "url": doc["metadata"]["url"],
                "created_at": "2017-08-14T09:21:37.119Z",
                "modified_at": "2017-08-14T09:21:38.204Z",
            }
        },
    )
    assert got.extra["wml"]["model_type"] == "sparkml-model-2.0"
    assert got.extra["wml"]["runtime_environment"] == "spark-2.0"
    assert got.extra["wml"]["latest_version"]["guid"] == "9d8c7b6a-5f4e-4d3c-8b2a-19f0e1d2c3b4"


def test_the_entity_alone_and_a_list_of_one_load_the_same() -> None:
    whole = declared(wml())
    alone = declared(wml()["entity"])
    envelope_only = ("guid", "url", "created_at", "modified_at")
    assert alone == Declared(
        **{**whole.__dict__, "extra": {"wml": {k: v for k, v in whole.extra["wml"].items() if k not in envelope_only}}}
    )
    assert declared({"resources": [wml()]}) == whole


def test_types_map_to_what_the_job_parses_and_other_types_are_set_apart() -> None:
    schema = {
        "type": "struct",
        "fields": [
            {"name": "id", "type": "long", "nullable": True, "metadata": {}},
            {"name": "text", "type": "string", "nullable": True, "metadata": {}},
            {"name": "stars", "type": "float", "nullable": True, "metadata": {}},
            {"name": "retweets", "type": "short", "nullable": True, "metadata": {}},
            {"name": "verified", "type": "boolean", "nullable": True, "metadata": {}},
            {"name": "created", "type": "timestamp", "nullable": True, "metadata": {}},
            {"name": "tags", "type": {"type": "array", "elementType": "string", "containsNull": True}},
        ],
    }
    got = declared(entity(input_data_schema=schema))
    assert got.input_schema == (
        ("id", "long"),
        ("text", "string"),
        ("stars", "float"),
        ("retweets", "integer"),
        ("verified", "boolean"),
    )
    assert got.unsupported == (("created", "timestamp"), ("tags", "array"))


def test_our_own_model_json_reads_as_declarations() -> None:
    doc = json.loads((SHIPPED_MODEL / "model.json").read_text(encoding="utf-8"))
    got = declared(doc)
    assert (got.name, got.author, got.label_column) == ("Sentiment Prediction", "spark-stream-deployment", "label")
    assert got.label_values == ("NEGATIVE", "POSITIVE")
    assert got.input_schema == (("id", "integer"), ("text", "string"))
    # What publishing computes again is not carried over; the training record is.
    assert sorted(got.extra) == ["evaluation", "hyperparameters", "model_type", "training_data", "validation_data"]


def test_flags_win_over_a_document_which_wins_over_what_lies_beside() -> None:
    beside = Declared(name="old", label_values=("A", "B"), input_schema=(("id", "integer"),), extra={"x": 1, "y": 1})
    document = Declared(name="wml", description="from WML", extra={"y": 2})
    flags = Declared(name="flag")
    got = flags.over(document.over(beside))
    assert got == Declared(
        name="flag",
        description="from WML",
        label_values=("A", "B"),
        input_schema=(("id", "integer"),),
        extra={"x": 1, "y": 2},
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{oops", f"{SOURCE}: not valid JSON ("),
        ("[]", f"{SOURCE}: expected a JSON object, found list"),
        (
            json.dumps({"resources": [wml(), wml()]}),
            f"{SOURCE}: a list of 2 published models ('resources'); save the one to publish (GET …/published_models/{{id}}) and give that",
        ),
        (json.dumps({"resources": {}}), f"{SOURCE}: a list of no published models ('resources')"),
        (json.dumps({"metadata": [], "entity": {}}), f"{SOURCE}: field 'metadata' must be an object, found []"),
        (json.dumps({"entity": "x"}), f"{SOURCE}: entity must be an object, found 'x'"),
        (
            json.dumps({"entity": entity(model_type="scikit-learn-0.17")}),
            f"{SOURCE}: entity: model_type 'scikit-learn-0.17' is not a Spark ML model (sparkml-model-…); this job serves Spark ML pipelines only",
        ),
        (json.dumps(entity(name="")), f"{SOURCE}: field 'name' must be a non-empty string, found ''"),
        (json.dumps(entity(label_col=3)), f"{SOURCE}: field 'label_col' must be a non-empty string, found 3"),
        (json.dumps(entity(author=["x"])), f"{SOURCE}: field 'author' must be an object {{name, email}} or a string"),
        (
            json.dumps(entity(input_data_schema={"fields": []})),
            f"{SOURCE}: input_data_schema must be a Spark StructType as JSON ({{'type': 'struct', 'fields': [...]}})",
        ),
        (
            json.dumps(entity(input_data_schema={"type": "struct", "fields": [{"type": "string"}]})),
            f"{SOURCE}: input_data_schema.fields[0] must be an object with a non-empty 'name'",
        ),
        (
            json.dumps(entity(input_data_schema={"type": "struct", "fields": [{"name": "a", "type": 7}]})),
            f"{SOURCE}: input_data_schema.fields[0] ('a') has no type name, found 7",
        ),
        (
            json.dumps(
                {
                    "entity": entity(
                        training_data_schema={"type": "struct", "fields": [{"name": "a", "type": "string"}] * 2}
                    )
                }
            ),
            f"{SOURCE}: entity: training_data_schema names a field twice: ['a', 'a']",
        ),
        (json.dumps({"label_values": "A,B"}), f"{SOURCE}: field 'label_values' must be a list of non-empty strings"),
        (
            json.dumps({"input_schema": [{"name": "a"}]}),
            f"{SOURCE}: field 'input_schema' must be a list of {{'name', 'type'}} objects",
        ),
    ],
)
def test_refuses_malformed_documents_naming_the_field(text: str, message: str) -> None:
    with pytest.raises(ModelError) as error:
        from_document(text, SOURCE)
    assert str(error.value).startswith(message), str(error.value)


def test_struct_fields_reads_spark_json_as_spark_writes_it() -> None:
    from pyspark.sql.types import IntegerType, StringType, StructField, StructType

    schema = StructType([StructField("id", IntegerType()), StructField("text", StringType())])
    assert struct_fields(json.loads(schema.json()), "schema") == (("id", "integer"), ("text", "string"))
