"""Model metadata a publisher brings: a WML published-model document, unchanged, or a model.json of ours.

The original service described a published model with a document like this (the `entity` of
`GET /v3/wml_instances/{instance}/published_models/{id}`, or the whole response around it):

    {"metadata": {"guid": "…", "url": "…", "created_at": "…", "modified_at": "…"},
     "entity": {"name": "…", "description": "…", "author": {"name": "…", "email": "…"}, "label_col": "sentiment",
                "model_type": "sparkml-model-2.0", "runtime_environment": "spark-2.0",
                "input_data_schema": {"type": "struct", "fields": [{"name": "id", "type": "integer", …}, …]},
                "training_data_schema": {"type": "struct", "fields": […]},
                "latest_version": {"guid": "…", "url": "…", "created_at": "…"}, …}}

Either form loads as it is; fields the job does not use are kept under `wml` in the written model.json.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from job.runtime.model import ModelError

# Spark SQL type names (StructType JSON) -> the input types the job parses; byte and short widen to integer.
SPARK_TYPES = {
    "string": "string",
    "integer": "integer",
    "long": "long",
    "double": "double",
    "float": "float",
    "boolean": "boolean",
    "short": "integer",
    "byte": "integer",
}
# Keys of the WML entity the job uses; the rest is kept as it was.
_WML_USED = ("name", "description", "author", "label_col", "input_data_schema", "training_data_schema")
# Keys of our model.json that publishing computes again, so a declaration never carries them over.
COMPUTED_KEYS = ("version", "created_at", "stages", "spark_version", "pyspark_version", "output_columns", "published")


@dataclass(frozen=True)
class Declared:
    """What a metadata document or the command line says about a model; None where it says nothing."""

    name: str | None = None
    description: str | None = None
    author: Any = None  # WML's {"name", "email"}, or a plain string
    label_column: str | None = None
    label_values: tuple[str, ...] | None = None
    # (name, type) per field, types among model.INPUT_TYPES; `unsupported` lists fields of other types.
    input_schema: tuple[tuple[str, str], ...] | None = None
    unsupported: tuple[tuple[str, str], ...] = ()
    training_schema: tuple[Mapping[str, Any], ...] | None = None
    # Fields carried into model.json as they were (a WML document's under `wml`, our model.json's own extras).
    extra: Mapping[str, Any] = field(default_factory=dict)

    def over(self, base: Declared) -> Declared:
        """These declarations, with `base` filling what these leave unsaid."""

        def pick(mine: Any, theirs: Any) -> Any:
            return theirs if mine is None else mine

        return Declared(
            name=pick(self.name, base.name),
            description=pick(self.description, base.description),
            author=pick(self.author, base.author),
            label_column=pick(self.label_column, base.label_column),
            label_values=pick(self.label_values, base.label_values),
            input_schema=pick(self.input_schema, base.input_schema),
            unsupported=self.unsupported if self.input_schema is not None else base.unsupported,
            training_schema=pick(self.training_schema, base.training_schema),
            extra={**base.extra, **self.extra},
        )


def _text(doc: Mapping[str, Any], key: str, source: str) -> str | None:
    value = doc.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ModelError(f"{source}: field {key!r} must be a non-empty string, found {value!r}")
    return value.strip()


def struct_fields(schema: Any, where: str) -> tuple[tuple[str, str], ...]:
    """(name, Spark type) of each field of a Spark StructType in its JSON form ({"type": "struct", "fields": …}).

    A nested type (array, map, struct) is given as its JSON, e.g. {"type": "array", …}, shown by its `type`.
    """
    if not isinstance(schema, Mapping) or schema.get("type") != "struct" or not isinstance(schema.get("fields"), list):
        raise ModelError(
            f"{where} must be a Spark StructType as JSON ({{'type': 'struct', 'fields': [...]}}), found {schema!r}"
        )
    found: list[tuple[str, str]] = []
    for i, item in enumerate(schema["fields"]):
        if not isinstance(item, Mapping) or not isinstance(item.get("name"), str) or not item["name"]:
            raise ModelError(f"{where}.fields[{i}] must be an object with a non-empty 'name', found {item!r}")
        kind = item.get("type")
        if isinstance(kind, Mapping):
            kind = kind.get("type")
        if not isinstance(kind, str):
            raise ModelError(f"{where}.fields[{i}] ({item['name']!r}) has no type name, found {item.get('type')!r}")
        found.append((item["name"], kind))
    names = [n for n, _ in found]
    if len(set(names)) != len(names):
        raise ModelError(f"{where} names a field twice: {names}")
    return tuple(found)


def _input_schema(
    fields: tuple[tuple[str, str], ...],
) -> tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]:
    """The fields the job can parse (types mapped), and the others with their Spark type."""
    supported = tuple((n, SPARK_TYPES[t]) for n, t in fields if t in SPARK_TYPES)
    unsupported = tuple((n, t) for n, t in fields if t not in SPARK_TYPES)
    return supported, unsupported


def from_wml(doc: Mapping[str, Any], source: str) -> Declared:
    """A WML published-model document: the whole GET response ({metadata, entity}), its entity, or a list of one."""
    if "resources" in doc:
        resources = doc["resources"]
        if not isinstance(resources, list) or len(resources) != 1:
            count = len(resources) if isinstance(resources, list) else "no"
            raise ModelError(
                f"{source}: a list of {count} published models ('resources'); save the one to publish "
                "(GET …/published_models/{id}) and give that"
            )
        doc = resources[0]
        if not isinstance(doc, Mapping):
            raise ModelError(f"{source}: 'resources[0]' must be an object, found {doc!r}")
    envelope: Mapping[str, Any] = {}
    if "entity" in doc:
        envelope = doc.get("metadata", {}) if doc.get("metadata") is not None else {}
        if not isinstance(envelope, Mapping):
            raise ModelError(f"{source}: field 'metadata' must be an object, found {envelope!r}")
        entity = doc["entity"]
        where = f"{source}: entity"
    else:
        entity = doc
        where = source
    if not isinstance(entity, Mapping):
        raise ModelError(f"{where} must be an object, found {entity!r}")

    model_type = entity.get("model_type")
    if model_type is not None and not (isinstance(model_type, str) and model_type.startswith("sparkml")):
        raise ModelError(
            f"{where}: model_type {model_type!r} is not a Spark ML model (sparkml-model-…); this job serves "
            "Spark ML pipelines only"
        )
    author = entity.get("author")
    if author is not None and not isinstance(author, str | Mapping):
        raise ModelError(f"{where}: field 'author' must be an object {{name, email}} or a string, found {author!r}")

    input_schema: tuple[tuple[str, str], ...] | None = None
    unsupported: tuple[tuple[str, str], ...] = ()
    if entity.get("input_data_schema") is not None:
        fields = struct_fields(entity["input_data_schema"], f"{where}: input_data_schema")
        input_schema, unsupported = _input_schema(fields)
    training_schema: tuple[Mapping[str, Any], ...] | None = None
    if entity.get("training_data_schema") is not None:
        fields = struct_fields(entity["training_data_schema"], f"{where}: training_data_schema")
        training_schema = tuple({"name": n, "type": t} for n, t in fields)

    wml: dict[str, Any] = {k: v for k, v in entity.items() if k not in _WML_USED}
    wml.update({k: v for k, v in envelope.items() if k in ("guid", "url", "created_at", "modified_at")})
    return Declared(
        name=_text(entity, "name", where),
        description=entity.get("description") if isinstance(entity.get("description"), str) else None,
        author=author,
        label_column=_text(entity, "label_col", where),
        input_schema=input_schema,
        unsupported=unsupported,
        training_schema=training_schema,
        extra={"wml": wml} if wml else {},
    )


def from_model_json(doc: Mapping[str, Any], source: str) -> Declared:
    """A model.json of ours (e.g. the one `make model` writes), as declarations: every field optional."""
    labels = doc.get("label_values")
    if labels is not None and (
        not isinstance(labels, list) or not all(isinstance(v, str) and v.strip() for v in labels)
    ):
        raise ModelError(f"{source}: field 'label_values' must be a list of non-empty strings, found {labels!r}")
    schema = doc.get("input_schema")
    input_schema: tuple[tuple[str, str], ...] | None = None
    unsupported: tuple[tuple[str, str], ...] = ()
    if schema is not None:
        if not isinstance(schema, list) or not all(
            isinstance(f, Mapping) and isinstance(f.get("name"), str) and isinstance(f.get("type"), str) for f in schema
        ):
            raise ModelError(
                f"{source}: field 'input_schema' must be a list of {{'name', 'type'}} objects, found {schema!r}"
            )
        input_schema, unsupported = _input_schema(tuple((f["name"], f["type"]) for f in schema))
    training = doc.get("training_schema")
    used = ("name", "description", "author", "label_column", "label_values", "input_schema", "training_schema")
    return Declared(
        name=_text(doc, "name", source),
        description=doc.get("description") if isinstance(doc.get("description"), str) else None,
        author=doc.get("author"),
        label_column=_text(doc, "label_column", source),
        label_values=tuple(labels) if labels is not None else None,
        input_schema=input_schema,
        unsupported=unsupported,
        training_schema=tuple(training) if isinstance(training, list) else None,
        extra={k: v for k, v in doc.items() if k not in used and k not in COMPUTED_KEYS},
    )


def is_wml(doc: Mapping[str, Any]) -> bool:
    """Whether a metadata document is WML's (an envelope, a list, or an entity's own keys) rather than ours."""
    return any(key in doc for key in ("entity", "resources", "label_col", "input_data_schema", "training_data_schema"))


def from_document(text: str, source: str) -> Declared:
    """A metadata document as given to `job model publish --metadata`: WML's or a model.json of ours."""
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise ModelError(f"{source}: not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise ModelError(f"{source}: expected a JSON object, found {type(doc).__name__}")
    return from_wml(doc, source) if is_wml(doc) else from_model_json(doc, source)
