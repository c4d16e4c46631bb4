"""Publishing a pipeline someone else trained (`job model publish`), showing one (`job model show`), and the full
check a deployment runs on a model before it serves it (`load_serving_model`).

Publishing writes the model.json the job needs beside the saved PipelineModel (or copies the pipeline into
`--output` and writes it there). What goes into it comes, in this order of precedence, from the command line, a
metadata document (WML's published-model document, unchanged, or a model.json), a model.json already beside the
pipeline, and the pipeline itself; the pipeline is the judge of all of it (`model.check_agreement`), and one
message of each kind is scored through the job's own transforms before anything is written.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import pyspark
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from job.runtime import scoring, storage
from job.runtime.declared import Declared, from_document
from job.runtime.model import (
    ID_FIELD,
    INPUT_TYPES,
    METADATA_FILE,
    LoadedModel,
    ModelError,
    ModelMetadata,
    check_agreement,
    check_saved_pipeline,
    error_summary,
    inspect,
    load_model,
    load_pipeline,
    with_dense_coefficients,
)
from job.runtime.query import model_info
from job.runtime.session import local_session
from job.runtime.stages import PipelineFacts
from job.runtime.values import EXIT_FAILED, EXIT_OK, Options

logger = logging.getLogger(__name__)

MODEL_TYPE = "sparkml-pipeline"
# Kafka source columns and our own working columns (leading underscore) live beside the input fields.
_KAFKA_COLUMNS = (scoring.KEY, scoring.VALUE, scoring.TOPIC, scoring.PARTITION, scoring.OFFSET, scoring.TIMESTAMP)
# The generated messages of the scoring check go to these (never written anywhere: the check only collects).
_CHECK_TOPIC, _CHECK_DEAD_LETTERS = "model-check", "model-check.dead-letter"
# A value of each type for the valid generated message (a StringIndexerModel's input gets a value it knows).
_SAMPLES: dict[str, str | int | float | bool] = {
    "string": "generated text",
    "integer": 1,
    "long": 1,
    "double": 0.5,
    "float": 0.5,
    "boolean": True,
}


# ---------------------------------------------------------------------------------------------------------
# The full check of a model, as a deployment runs it


def field_name_problem(fields: Sequence[tuple[str, str]]) -> str | None:
    """Why an input field's name cannot be used (it would clash with a column or record field), or None."""
    for name, _ in fields:
        if name in _KAFKA_COLUMNS or name.startswith("_"):
            return (
                f"input field {name!r} clashes with the job's own columns (the Kafka source's {list(_KAFKA_COLUMNS)} "
                "and names starting with '_'); rename the column in the pipeline"
            )
        if name in scoring.RECORD_FIELDS:
            return f"input field {name!r} clashes with a field of the output record ({list(scoring.RECORD_FIELDS)})"
    return None


def _sample(name: str, kind: str, facts: PipelineFacts) -> str | int | float | bool:
    return facts.known_values.get(name, _SAMPLES[kind])


def _check_row(spark: SparkSession, value: bytes, offset: int) -> DataFrame:
    """One Kafka source row for `check_scoring`, all of it literals evaluated in the JVM."""
    return spark.range(1).select(
        F.lit(b"check").alias(scoring.KEY),
        F.lit(value).alias(scoring.VALUE),
        F.lit(_CHECK_TOPIC).alias(scoring.TOPIC),
        F.lit(0).alias(scoring.PARTITION),
        F.lit(offset).cast("long").alias(scoring.OFFSET),
        F.current_timestamp().alias(scoring.TIMESTAMP),
    )


def check_scoring(spark: SparkSession, model: LoadedModel, options: Options | None = None) -> None:
    """Score one generated message with a value of its type in every input field, and one invalid message, through
    the job's own transforms; refuse the model (ModelError) when that fails or gives anything but a scored record
    with a known label and a probability in [0, 1], and a dead letter.
    """
    where = f"model location {model.location}"
    problem = field_name_problem(model.input_fields)
    if problem is not None:
        raise ModelError(f"{where}: {problem}")
    options = options or Options()
    sample = {name: _sample(name, kind, model.facts) for name, kind in model.input_fields}
    if isinstance(sample.get(scoring.TEXT_FIELD), str):
        sample[scoring.TEXT_FIELD] = str(sample[scoring.TEXT_FIELD])[: options.max_text_length]
    # Built from literals, not spark.createDataFrame of Python rows: that goes through a Python RDD, which would
    # start Python workers on a cluster's executors for this one check (the query itself needs none).
    source = _check_row(spark, json.dumps(sample).encode(), 0).unionByName(
        _check_row(spark, b"{}", 1)  # invalid: scored on the fillers, then dead-lettered
    )
    info = model_info(model)
    transform = scoring.scoring_pipeline(
        model.pipeline,
        info,
        "model-check",
        _CHECK_TOPIC,
        _CHECK_DEAD_LETTERS,
        options.max_text_length,
        options.max_message_bytes,
        # The generated text may hold no feature of the model's vocabulary (a bigram model, one word): that
        # says nothing about the model, so NO_FEATURES is not checked here.
        no_features=False,
    )
    try:
        records = source.transform(transform).collect()
    except Exception as exc:
        raise ModelError(f"{where}: scoring a generated message {sample} failed: {error_summary(exc)}") from exc
    scored, dead = records
    if scored["topic"] != _CHECK_TOPIC:
        raise ModelError(f"{where}: the generated message {sample} was refused: {bytes(scored['value']).decode()}")
    record = json.loads(bytes(scored["value"]))
    prediction = record["prediction"]
    if not isinstance(prediction, float) or not prediction.is_integer() or not 0 <= prediction < len(info.label_values):
        raise ModelError(f"{where}: the generated message got prediction {prediction!r}, not a class number")
    expected_label = info.label_values[int(prediction)]
    if record["predictedLabel"] != expected_label:
        raise ModelError(
            f"{where}: the generated message got the label {record['predictedLabel']!r} for prediction {prediction}, "
            f"but label_values[{int(prediction)}] is {expected_label!r}"
        )
    probability = record["probability"]
    if info.probability_column is not None and not (isinstance(probability, float) and 0.0 <= probability <= 1.0):
        raise ModelError(f"{where}: the generated message got probability {probability!r}, not in [0, 1]")
    if dead["topic"] != _CHECK_DEAD_LETTERS:
        raise ModelError(f"{where}: an invalid message came out as a scored record: {bytes(dead['value']).decode()}")


def load_serving_model(spark: SparkSession, location: str, options: Options | None = None) -> LoadedModel:
    """The model at `location`, loaded and fully checked: what a deployment serves, or a ModelError saying why not.

    No global state: a running deployment can call this for another version while the current one keeps
    scoring, and swap only when it returns. The LR coefficients are kept as saved (sparse) unless the trigger is
    available_now: every micro-batch serializes the model into its tasks (2.1 MiB dense against 94 KB for the
    sample model), which costs more per batch than the sparse dot costs per row at a steady rate; a backlog run
    has few, large batches.
    """
    dense = options is not None and options.trigger.kind == "available_now"
    model = load_model(spark, location, dense_coefficients=dense)
    check_scoring(spark, model, options)
    return model


# ---------------------------------------------------------------------------------------------------------
# Version


def _metadata_digest(text: str) -> str:
    """A Spark ML metadata file's digest without its `timestamp`, so re-saving the same model changes nothing."""
    lines = []
    for line in text.splitlines():
        try:
            doc = json.loads(line)
        except ValueError:
            lines.append(line)
            continue
        if isinstance(doc, dict):
            doc.pop("timestamp", None)
        lines.append(json.dumps(doc, sort_keys=True, separators=(",", ":")))
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()


def content_version(spark: SparkSession, location: str, serving: Mapping[str, Any]) -> str:
    """12 hex digits of a digest of the saved pipeline's files and of the metadata that changes what is scored.

    Spark's part-file names (random) and the save `timestamp` are left out, so the same fitted pipeline saved
    twice, or published twice, gets the same version; a different coefficient, param, label or input field
    gives another. Name, description and author are not in it.
    """
    entries: list[list[str]] = []
    for relative in storage.list_files(spark, location):
        parts = relative.split("/")
        if parts[0] not in ("metadata", "stages") or parts[-1].startswith((".", "_")):
            continue  # model.json beside, _SUCCESS markers and Hadoop's .crc files
        uri = storage.join(location, relative)
        if len(parts) > 1 and parts[-2] == "metadata":
            digest = _metadata_digest(storage.read_text(spark, uri) or "")
        else:
            digest = storage.sha256(spark, uri)
        entries.append(["/".join(parts[:-1]), digest])
    canonical = json.dumps({"files": sorted(entries), "serving": serving}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:12]


# ---------------------------------------------------------------------------------------------------------
# Publish


@dataclass(frozen=True)
class PublishRequest:
    pipeline_location: str
    output: str | None = None
    metadata_location: str | None = None
    flags: Declared = field(default_factory=Declared)
    overwrite: bool = False


@dataclass(frozen=True)
class Published:
    model: LoadedModel
    # What was decided on the publisher's behalf (a field added or dropped, a default name), in sentences.
    notes: tuple[str, ...]
    # "new"; "same" (published exactly so already: nothing written); "updated" (the same version, other
    # descriptions: model.json rewritten); "replaced <version>" (another version was there: --overwrite).
    outcome: str


def _stage_reading(facts: PipelineFacts, column: str) -> str:
    return next(s.describe() for s in facts.stages if column in s.inputs)


def _labels(where: str, facts: PipelineFacts, declared: Declared, origin: str) -> tuple[str, ...]:
    """The labels in prediction order: the pipeline's own when it names them, else the declared ones."""
    if facts.label_values is not None:
        if declared.label_values is not None and declared.label_values != facts.label_values:
            raise ModelError(
                f"{where}: {origin} gives the labels {list(declared.label_values)} but the pipeline's own are "
                f"{list(facts.label_values)} ({facts.label_source}); leave them out, or give them in that order"
            )
        return facts.label_values
    if declared.label_values is None:
        raise ModelError(
            f"{where}: the pipeline does not name its labels (no StringIndexerModel on the label column, no "
            "IndexToString with labels): give them with --labels NEGATIVE,POSITIVE (label i is prediction i)"
        )
    if len(declared.label_values) != facts.num_classes:
        raise ModelError(
            f"{where}: {origin} gives {len(declared.label_values)} labels {list(declared.label_values)} but the "
            f"classifier ({facts.classifier.describe()}) predicts {facts.num_classes} classes"
        )
    if len(set(declared.label_values)) != len(declared.label_values):
        raise ModelError(f"{where}: {origin} gives the labels {list(declared.label_values)}, with duplicates")
    return declared.label_values


def _input_schema(
    where: str, facts: PipelineFacts, declared: Declared, origin: str, notes: list[str]
) -> tuple[tuple[str, str], ...]:
    """The fields each message must carry: declared (less the label column), or else read off the stages."""
    label_columns = {facts.raw_label_column, facts.classifier_label_column}
    if declared.input_schema is None:
        fields = []
        for column in facts.input_columns:
            kind = facts.input_types.get(column)
            if kind is None:
                raise ModelError(
                    f"{where}: cannot tell the type of the input column {column!r} ({_stage_reading(facts, column)} "
                    "reads it); give the input fields with --input NAME:TYPE or a --metadata document"
                )
            fields.append((column, kind))
        notes.append(f"input fields {', '.join(f'{n} {t}' for n, t in fields)}: read off the pipeline's stages")
    else:
        fields = [(n, t) for n, t in declared.input_schema if n not in label_columns]
        for name in [n for n, _ in declared.input_schema if n in label_columns]:
            notes.append(f"{origin} lists the label column {name!r}: not parsed from messages")
        for name, kind in declared.unsupported:
            if name in facts.input_columns:
                raise ModelError(
                    f"{where}: the pipeline reads {name!r} ({_stage_reading(facts, name)}), which {origin} types as "
                    f"{kind!r}; the job parses {list(INPUT_TYPES)} from a message's JSON"
                )
            notes.append(f"{origin} lists {name!r} of type {kind!r}, which the pipeline does not read: left out")
    names = [n for n, _ in fields]
    for column in facts.input_columns:
        if column not in names:
            raise ModelError(
                f"{where}: the pipeline reads column {column!r} ({_stage_reading(facts, column)}), which {origin} "
                f"does not have (it has {names})"
            )
    if ID_FIELD not in names:
        fields.insert(0, (ID_FIELD, "integer"))
        notes.append(f"added the field '{ID_FIELD}' (integer): every message needs it, it keys the output record")
    return tuple(fields)


def _existing(spark: SparkSession, location: str) -> ModelMetadata | None:
    """The model.json at a location, or None when there is none (or none this job can read)."""
    text = storage.read_text(spark, storage.join(location, METADATA_FILE))
    if text is None:
        return None
    try:
        return ModelMetadata.from_json(text, source=storage.join(location, METADATA_FILE))
    except ModelError:
        return None


def _check_output(spark: SparkSession, request: PublishRequest, output: str) -> None:
    """Refuse to replace an output unless asked, and never replace something that is not a model folder."""
    if not storage.exists(spark, output):
        return
    if not request.overwrite:
        raise ModelError(f"output {output} already exists; pass --overwrite to replace it")
    if not storage.is_directory(spark, output):
        raise ModelError(f"output {output} is a file, not a model folder; not replacing it")
    unexpected = set(storage.list_names(spark, output)) - {"metadata", "stages", METADATA_FILE}
    if unexpected:
        raise ModelError(f"output {output} holds {sorted(unexpected)}, which a model folder does not; not replacing it")


def publish(spark: SparkSession, request: PublishRequest) -> Published:
    """Check the pipeline at `request.pipeline_location` and write its model.json (see the module docstring)."""
    source = request.pipeline_location
    where = f"model location {source}"
    if request.output is not None and request.output.rstrip("/") == source.rstrip("/"):
        raise ModelError(
            f"--output {request.output} is the pipeline's own location; leave --output out to publish in place"
        )
    check_saved_pipeline(spark, source)
    beside_uri = storage.join(source, METADATA_FILE)
    beside_text = storage.read_text(spark, beside_uri)
    beside = Declared() if beside_text is None else from_document(beside_text, beside_uri)
    document = Declared()
    if request.metadata_location is not None:
        text = storage.read_text(spark, request.metadata_location)
        if text is None:
            raise ModelError(f"--metadata {request.metadata_location}: no such file")
        document = from_document(text, request.metadata_location)
    declared = request.flags.over(document.over(beside))

    def origin(attribute: str, flag: str) -> str:
        """Which source a declaration came from, for the refusal that questions it."""
        if getattr(request.flags, attribute) is not None:
            return flag
        if getattr(document, attribute) is not None:
            return f"--metadata {request.metadata_location}"
        return beside_uri

    pipeline = load_pipeline(spark, source)
    facts = inspect(source, pipeline, declared.label_column)
    notes: list[str] = []
    labels = _labels(where, facts, declared, origin("label_values", "--labels"))
    schema = _input_schema(where, facts, declared, origin("input_schema", "--input"), notes)
    problem = field_name_problem(schema)
    if problem is not None:
        raise ModelError(f"{where}: {problem}")

    name = declared.name
    if name is None:
        name = source.rstrip("/").rsplit("/", 1)[-1]
        notes.append(f"named {name!r} after its folder (--name sets it)")
    serving = {
        "label_column": declared.label_column or facts.raw_label_column,
        "label_values": list(labels),
        "input_schema": [{"name": n, "type": t} for n, t in schema],
        "output_columns": {
            "prediction": facts.prediction_column,
            "probability": facts.probability_column,
            "predicted_label": facts.predicted_label_column,
        },
    }
    version = content_version(spark, source, serving)
    target = request.output or source
    previous = _existing(spark, target)
    # Already there, files and all: a publish that changes nothing writes nothing (and keeps created_at).
    same_content = (
        previous is not None
        and previous.version == version
        and (request.output is None or content_version(spark, target, serving) == version)
    )
    doc: dict[str, Any] = {
        "name": name,
        "description": declared.description,
        "author": declared.author,
        "version": version,
        "created_at": (
            str(previous.raw.get("created_at"))
            if same_content and previous is not None and previous.raw.get("created_at")
            else datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        ),
        "model_type": MODEL_TYPE,
        "stages": [s.java_class for s in facts.stages],
        "spark_version": spark.version,
        "pyspark_version": pyspark.__version__,
        **serving,
        "training_schema": list(declared.training_schema) if declared.training_schema is not None else None,
        "published": {"from": source, "metadata": request.metadata_location},
    }
    doc.update({k: v for k, v in declared.extra.items() if k not in doc})  # the rest of what was declared, as it was
    metadata = ModelMetadata.from_json(json.dumps({k: v for k, v in doc.items() if v is not None}), source=where)
    check_agreement(target, metadata, facts)
    model = LoadedModel(
        pipeline=with_dense_coefficients(spark, pipeline), metadata=metadata, location=target, facts=facts
    )
    check_scoring(spark, model)

    if request.output is not None and not same_content:
        _check_output(spark, request, request.output)
    elif previous is not None and not same_content and not request.overwrite:
        raise ModelError(
            f"model location {target}: its {METADATA_FILE} describes version {previous.version} "
            f"({previous.name!r}); publishing gives version {version}; pass --overwrite to replace it"
        )
    if same_content and previous is not None and previous.to_json() == metadata.to_json():
        return Published(model=model, notes=tuple(notes), outcome="same")
    if request.output is not None and not same_content:
        if storage.exists(spark, request.output):
            storage.delete(spark, request.output, recursive=True)
        storage.copy_tree(spark, source, request.output)
    storage.write_text(spark, storage.join(target, METADATA_FILE), metadata.to_json())
    outcome = "new" if previous is None else "updated" if same_content else f"replaced {previous.version}"
    return Published(model=model, notes=tuple(notes), outcome=outcome)


# ---------------------------------------------------------------------------------------------------------
# Show


def describe_model(model: LoadedModel) -> dict[str, Any]:
    """What a deployment would use, as a JSON document (`job model show --json`)."""
    meta = model.metadata
    return {
        "name": meta.name,
        "version": meta.version,
        "location": model.location,
        "description": meta.raw.get("description"),
        "author": meta.raw.get("author"),
        "created_at": meta.raw.get("created_at"),
        "labels": list(meta.label_values),
        "label_column": meta.label_column,
        "predicted_label": (
            {"from": "pipeline", "column": model.predicted_label_column}
            if model.predicted_label_column
            else {"from": "label_values"}
        ),
        "input_schema": [{"name": n, "type": t} for n, t in model.input_fields],
        "prediction_column": model.prediction_column,
        "probability_column": model.probability_column,
        "num_classes": model.facts.num_classes,
        "stages": [
            {"index": s.index, "class": s.java_class, "inputs": list(s.inputs), "outputs": list(s.outputs)}
            for s in model.facts.stages
        ],
    }


def show_lines(model: LoadedModel) -> list[str]:
    """`job model show`: what a deployment would use, for a person."""
    meta = model.metadata
    labels = ", ".join(f"{i} {label}" for i, label in enumerate(meta.label_values))
    label_from = (
        f"the pipeline's column '{model.predicted_label_column}' (IndexToString)"
        if model.predicted_label_column
        else f"label_values[{model.prediction_column}]"
    )
    fields = ", ".join(f"{n} {t}" + (" (the record key)" if n == ID_FIELD else "") for n, t in model.input_fields)
    lines = [
        f"{meta.name}, version {meta.version}",
        f"  location        {model.location}",
        f"  labels          {labels}",
        f"  predictedLabel  {label_from}",
        "  probability     "
        + (f"{model.probability_column}[{model.prediction_column}]" if model.probability_column else "none (null)"),
        f"  input fields    {fields}  (parsed from each message's JSON)",
    ]
    for key in ("description", "author", "created_at"):
        value = meta.raw.get(key)
        if value:
            shown = value if isinstance(value, str) else json.dumps(value)
            lines.append(f"  {key.replace('_', ' '):<15} {shown}")
    lines.append("  stages")
    for s in model.facts.stages:
        arrow = f"{', '.join(s.inputs)} -> {', '.join(s.outputs)}"
        extra = f"; {model.facts.num_classes} classes" if s == model.facts.classifier else ""
        lines.append(f"    {s.index} {s.name} ({arrow}{extra})")
    return lines


# ---------------------------------------------------------------------------------------------------------
# Commands (`job model publish`, `job model show`); main.py parses the arguments


def parse_input_field(text: str) -> tuple[str, str]:
    """NAME:TYPE of `--input`, refused with a sentence when malformed."""
    name, _, kind = text.partition(":")
    if not name or kind not in INPUT_TYPES:
        raise ModelError(f"--input {text!r}: expected NAME:TYPE with TYPE one of {list(INPUT_TYPES)}")
    return name, kind


def flags_of(args: argparse.Namespace) -> Declared:
    """The declarations made on the command line."""
    inputs = tuple(parse_input_field(text) for text in args.input) if args.input else None
    if inputs is not None and len({n for n, _ in inputs}) != len(inputs):
        raise ModelError(f"--input names a field twice: {[n for n, _ in inputs]}")
    labels = tuple(v.strip() for v in args.labels.split(",")) if args.labels is not None else None
    if labels is not None and (len(labels) < 2 or not all(labels)):
        raise ModelError(f"--labels {args.labels!r}: expected at least two comma-separated non-empty labels")
    return Declared(
        name=args.name,
        description=args.description,
        author=args.author,
        label_column=args.label_column,
        label_values=labels,
        input_schema=inputs,
    )


def _with_session(run: Callable[[SparkSession], int]) -> int:
    """Run `run(spark)` in the session already active in this process (a notebook, a test), else a small local one."""
    active = SparkSession.getActiveSession()
    spark = active or local_session("job model", master="local[1]")
    try:
        return run(spark)
    finally:
        if active is None:
            spark.stop()


def model_command(args: argparse.Namespace) -> int:
    """`job model publish` and `job model show`: print the outcome, or `error: …` and exit non-zero."""

    def publish_run(spark: SparkSession) -> int:
        published = publish(
            spark,
            PublishRequest(
                pipeline_location=args.pipeline,
                output=args.output,
                metadata_location=args.metadata,
                flags=flags_of(args),
                overwrite=args.overwrite,
            ),
        )
        model = published.model
        said = {
            "new": "published",
            "same": "already published exactly so (nothing written):",
            "updated": "updated the description of",
        }.get(published.outcome, f"published (replacing version {published.outcome.removeprefix('replaced ')})")
        print(f"{said} {model.name!r} version {model.version} at {model.location}")
        for note in published.notes:
            print(f"  note: {note}")
        print("\n".join(show_lines(model)))
        print(f"\nDeploy it with `model: {{location: {model.location}}}` in the spec (or --model {model.location}).")
        return EXIT_OK

    def show_run(spark: SparkSession) -> int:
        model = load_serving_model(spark, args.location)
        print(json.dumps(describe_model(model), indent=2) if args.json else "\n".join(show_lines(model)))
        return EXIT_OK

    try:
        return _with_session(publish_run if args.model_command == "publish" else show_run)
    except ModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
