"""Hand-written baseline: a kafka-python consumer that scores tweets with NumPy, using the job's own model.

The scorer reproduces the shipped PipelineModel exactly, so that the throughput comparison is fair:
  * tokenizing as Spark's Tokenizer (Java `toLowerCase` + `String.split("\\s")`) or RegexTokenizer
    (its pattern, gaps, toLowercase and minTokenLength, with Java's split semantics);
  * hashing as Spark's HashingTF (MurmurHash3_x86_32 of the UTF-8 bytes with seed 42, then
    `nonNegativeMod(hash, numFeatures)`; term frequencies, or 1.0 when `binary`);
  * LogisticRegression from the model's own coefficients, intercept and threshold, summed in the same
    order as Spark's sparse dot product, so margins agree to the last bit or so.

`python -m bench.baseline` runs one worker process: it reads its partitions of the input topic from the
start to the end offsets seen at start-up, scores each polled batch and produces JSON records shaped like
the job's. It needs no Spark (the model's parameters come from a file written by `ScorerParams.save`).
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import math
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from pyspark.ml import PipelineModel

logger = logging.getLogger(__name__)

MURMUR3_SEED = 42  # Spark's HashingTF seed
_C1 = np.uint32(0xCC9E2D51)
_C2 = np.uint32(0x1B873593)
_N = np.uint32(0xE6546B64)
_F1 = np.uint32(0x85EBCA6B)
_F2 = np.uint32(0xC2B2AE35)

# Java's `\s` without UNICODE_CHARACTER_CLASS is [ \t\n\x0B\f\r]; Python's re.ASCII `\s` is the same set
# (and re.ASCII makes `\w`, `\d`, `\b` ASCII-only, as in Java). Python's default `\s` is Unicode-wide.
_JAVA_WHITESPACE = re.compile(r"\s", re.ASCII)
PREDICTION_PATHS = ("raw", "probability", "score")
# The token -> feature index cache is cleared past this size (tweets have a Zipfian vocabulary).
MAX_CACHED_TERMS = 2_000_000


# --------------------------------------------------------------------------------------------- hashing


def _rotl(x: np.ndarray, r: int) -> np.ndarray:
    return (x << np.uint32(r)) | (x >> np.uint32(32 - r))


def _mix_k1(k: np.ndarray) -> np.ndarray:
    return _rotl(k * _C1, 15) * _C2


def murmur3_32(terms: Sequence[bytes], seed: int = MURMUR3_SEED) -> np.ndarray:
    """MurmurHash3_x86_32 of each byte string, as signed 32-bit ints (Spark's `hashUnsafeBytes2`).

    Vectorised over the terms: the terms are sorted by number of 4-byte blocks, so block i is mixed
    into the prefix of terms that have more than i blocks.
    """
    n = len(terms)
    if n == 0:
        return np.zeros(0, dtype=np.int32)
    lengths = np.fromiter(map(len, terms), dtype=np.int64, count=n)
    data = np.frombuffer(b"".join(terms) + b"\0\0\0\0", dtype=np.uint8).astype(np.uint32)
    starts = np.zeros(n, dtype=np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    blocks = lengths // 4
    order = np.argsort(-blocks, kind="stable")
    sorted_blocks = blocks[order]
    sorted_starts = starts[order]
    h = np.full(n, np.uint32(seed & 0xFFFFFFFF), dtype=np.uint32)
    with np.errstate(over="ignore"):
        for i in range(int(sorted_blocks[0]) if n else 0):
            active = int(np.searchsorted(-sorted_blocks, -i, side="left"))
            pos = sorted_starts[:active] + 4 * i
            k = data[pos] | (data[pos + 1] << np.uint32(8)) | (data[pos + 2] << np.uint32(16))
            k |= data[pos + 3] << np.uint32(24)
            hh = h[:active] ^ _mix_k1(k)
            h[:active] = _rotl(hh, 13) * np.uint32(5) + _N
        h_terms = np.empty(n, dtype=np.uint32)
        h_terms[order] = h
        tail = lengths & 3
        tail_start = starts + 4 * blocks
        k1 = np.where(tail >= 1, data[tail_start], np.uint32(0)).astype(np.uint32)
        k1 |= np.where(tail >= 2, data[tail_start + 1] << np.uint32(8), np.uint32(0)).astype(np.uint32)
        k1 |= np.where(tail >= 3, data[tail_start + 2] << np.uint32(16), np.uint32(0)).astype(np.uint32)
        h_terms ^= _mix_k1(k1)  # mixK1(0) == 0, so terms without a tail are unchanged
        h_terms ^= lengths.astype(np.uint32)
        h_terms ^= h_terms >> np.uint32(16)
        h_terms *= _F1
        h_terms ^= h_terms >> np.uint32(13)
        h_terms *= _F2
        h_terms ^= h_terms >> np.uint32(16)
    return h_terms.view(np.int32)


def term_bytes(term: str) -> bytes:
    """UTF-8 bytes as Java's `String.getBytes(UTF_8)` gives them (a lone surrogate becomes '?')."""
    return term.encode("utf-8", "replace")


def feature_indices(terms: Sequence[str], num_features: int) -> np.ndarray:
    """HashingTF's index of each term: `nonNegativeMod(murmur3(utf8(term), 42), numFeatures)`."""
    hashes = murmur3_32([term_bytes(t) for t in terms]).astype(np.int64)
    return np.mod(hashes, num_features)  # NumPy's mod takes the sign of the divisor, as nonNegativeMod


# ------------------------------------------------------------------------------------------ tokenizing


def java_split(pattern: re.Pattern[str], text: str) -> list[str]:
    """`Pattern.split(text)` with Java's rules: trailing empty strings removed, no leading empty string
    for a zero-width match at the start, and the whole input when nothing matched."""
    parts: list[str] = []
    index = 0
    for match in pattern.finditer(text):
        if index == 0 and match.start() == 0 and match.end() == 0:
            continue
        parts.append(text[index : match.start()])
        index = match.end()
    if index == 0:
        return [text]
    parts.append(text[index:])
    while parts and parts[-1] == "":
        parts.pop()
    return parts


def java_length(text: str) -> int:
    """`String.length()`: UTF-16 code units, so an emoji counts 2."""
    return len(text) if text.isascii() else len(text.encode("utf-16-le", "surrogatepass")) // 2


@dataclass(frozen=True)
class TokenizerSpec:
    """The model's tokenizer: `whitespace` (Spark's Tokenizer) or `regex` (Spark's RegexTokenizer)."""

    kind: str = "whitespace"
    pattern: str = r"\s+"
    gaps: bool = True
    to_lowercase: bool = True
    min_token_length: int = 1
    _compiled: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in ("whitespace", "regex"):
            raise ValueError(f"tokenizer kind must be 'whitespace' or 'regex', got {self.kind!r}")
        compiled = _JAVA_WHITESPACE if self.kind == "whitespace" else re.compile(self.pattern, re.ASCII)
        object.__setattr__(self, "_compiled", compiled)

    def tokenize(self, text: str) -> list[str]:
        if self.kind == "whitespace":
            # Tokenizer: text.toLowerCase.split("\\s"); every match has positive width.
            parts = _JAVA_WHITESPACE.split(text.lower())
            if len(parts) > 1:
                while parts and parts[-1] == "":
                    parts.pop()
            return parts
        source = text.lower() if self.to_lowercase else text
        tokens = (
            java_split(self._compiled, source) if self.gaps else [m.group(0) for m in self._compiled.finditer(source)]
        )
        minimum = self.min_token_length
        return [t for t in tokens if java_length(t) >= minimum] if minimum > 0 else tokens


# ------------------------------------------------------------------------------------------- the model


@dataclass(frozen=True)
class ScorerParams:
    """Everything the NumPy scorer needs from the PipelineModel, and what the output records say."""

    tokenizer: TokenizerSpec
    num_features: int
    binary: bool
    coefficients: np.ndarray  # (classes or 1, num_features), dense
    intercepts: np.ndarray  # (classes or 1,)
    multinomial: bool
    threshold: float  # binomial models only
    prediction_from: str  # which column Spark derives the prediction from: raw, probability or score
    label_values: tuple[str, ...]
    model_name: str
    model_version: str

    def __post_init__(self) -> None:
        if self.prediction_from not in PREDICTION_PATHS:
            raise ValueError(f"prediction_from must be one of {PREDICTION_PATHS}, got {self.prediction_from!r}")
        if self.coefficients.shape != (len(self.intercepts), self.num_features):
            raise ValueError(
                f"coefficients have shape {self.coefficients.shape}, "
                f"expected ({len(self.intercepts)}, {self.num_features})"
            )

    @classmethod
    def from_pipeline(
        cls, pipeline: PipelineModel, label_values: Sequence[str], model_name: str = "", model_version: str = ""
    ) -> ScorerParams:
        """Read the tokenizer, HashingTF and LogisticRegression parameters out of a fitted PipelineModel.

        Refuses any other pipeline shape, and checks the hashing against Spark's own `indexOf` on probe
        terms (a model saved by Spark 2 hashes differently).
        """
        from pyspark.ml.classification import LogisticRegressionModel
        from pyspark.ml.feature import HashingTF, RegexTokenizer, Tokenizer

        # Typed loosely: each stage is checked for its class just below, then used through its own params.
        stages: list[Any] = list(pipeline.stages)
        kinds = [type(s).__name__ for s in stages]
        if (
            len(stages) != 3
            or not isinstance(stages[0], (Tokenizer, RegexTokenizer))
            or not isinstance(stages[1], HashingTF)
            or not isinstance(stages[2], LogisticRegressionModel)
        ):
            raise ValueError(
                f"the baseline handles Tokenizer|RegexTokenizer -> HashingTF -> LogisticRegressionModel, got {kinds}"
            )
        tok, hashing, lr = stages
        if hashing.getInputCol() != tok.getOutputCol() or lr.getFeaturesCol() != hashing.getOutputCol():
            raise ValueError(
                "the pipeline's stages are not chained: "
                f"{tok.getOutputCol()} -> {hashing.getInputCol()}, {hashing.getOutputCol()} -> {lr.getFeaturesCol()}"
            )
        if isinstance(tok, RegexTokenizer):
            tokenizer = TokenizerSpec(
                "regex", tok.getPattern(), tok.getGaps(), tok.getToLowercase(), tok.getMinTokenLength()
            )
        else:
            tokenizer = TokenizerSpec("whitespace")
        matrix = np.ascontiguousarray(lr.coefficientMatrix.toArray(), dtype=np.float64)
        intercepts = np.asarray(lr.interceptVector.toArray(), dtype=np.float64)
        multinomial = matrix.shape[0] > 1
        if multinomial and lr.isSet(lr.thresholds):
            raise ValueError("the baseline does not handle a multinomial model with 'thresholds' set")
        if lr.getRawPredictionCol():
            prediction_from = "raw"
        elif lr.getProbabilityCol():
            prediction_from = "probability"
        else:
            prediction_from = "score"
        params = cls(
            tokenizer=tokenizer,
            num_features=hashing.getNumFeatures(),
            binary=hashing.getBinary(),
            coefficients=matrix,
            intercepts=intercepts,
            multinomial=multinomial,
            threshold=float(lr.getThreshold()) if not multinomial else math.nan,
            prediction_from=prediction_from,
            label_values=tuple(label_values),
            model_name=model_name,
            model_version=model_version,
        )
        probes = ["a", "love", "héllo", "日本語", "😀", "http://t.co/xyz123"]
        ours = feature_indices(probes, params.num_features).tolist()
        spark_indices = [hashing.indexOf(p) for p in probes]
        if ours != spark_indices:
            raise ValueError(f"HashingTF hashes differently from MurmurHash3 seed 42: {spark_indices} vs {ours}")
        return params

    def save(self, path: Path) -> None:
        meta = {
            "tokenizer": {
                "kind": self.tokenizer.kind,
                "pattern": self.tokenizer.pattern,
                "gaps": self.tokenizer.gaps,
                "to_lowercase": self.tokenizer.to_lowercase,
                "min_token_length": self.tokenizer.min_token_length,
            },
            "num_features": self.num_features,
            "binary": self.binary,
            "multinomial": self.multinomial,
            "threshold": self.threshold,
            "prediction_from": self.prediction_from,
            "label_values": list(self.label_values),
            "model_name": self.model_name,
            "model_version": self.model_version,
        }
        with Path(path).open("wb") as handle:
            np.savez(
                handle, coefficients=self.coefficients, intercepts=self.intercepts, meta=np.array(json.dumps(meta))
            )

    @classmethod
    def load(cls, path: Path) -> ScorerParams:
        with np.load(Path(path), allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            return cls(
                tokenizer=TokenizerSpec(**meta["tokenizer"]),
                num_features=meta["num_features"],
                binary=meta["binary"],
                coefficients=data["coefficients"],
                intercepts=data["intercepts"],
                multinomial=meta["multinomial"],
                threshold=meta["threshold"],
                prediction_from=meta["prediction_from"],
                label_values=tuple(meta["label_values"]),
                model_name=meta["model_name"],
                model_version=meta["model_version"],
            )

    def nonzero_coefficients(self) -> int:
        return int(np.count_nonzero(self.coefficients))


@dataclass(frozen=True)
class Features:
    """A batch of HashingTF vectors in coordinate form, each document's entries in index order."""

    size: int
    doc: np.ndarray  # int64, document number of each entry, ascending
    index: np.ndarray  # int64, feature index, ascending within a document
    value: np.ndarray  # float64, term frequency (or 1.0 when binary)


@dataclass(frozen=True)
class Scores:
    prediction: np.ndarray  # float64 class number per document
    probability: np.ndarray  # (documents, classes)

    def predicted_probability(self) -> np.ndarray:
        """Probability of the predicted class: what the job writes as `probability`."""
        rows = np.arange(len(self.prediction))
        return self.probability[rows, self.prediction.astype(np.int64)]


class Scorer:
    """Tokenize, hash and score batches of texts exactly as the PipelineModel does."""

    def __init__(self, params: ScorerParams) -> None:
        self.params = params
        self._cache: dict[str, int] = {}
        p = params
        if p.multinomial:
            self._raw_threshold = math.nan
        elif p.threshold == 0.0:
            self._raw_threshold = -math.inf
        elif p.threshold == 1.0:
            self._raw_threshold = math.inf
        else:
            self._raw_threshold = math.log(p.threshold / (1.0 - p.threshold))

    def indices(self, terms: Sequence[str]) -> np.ndarray:
        """Feature index of each term; hashes of new terms are computed in one vectorised call."""
        cache = self._cache
        missing = [t for t in set(terms) if t not in cache]
        if missing:
            if len(cache) + len(missing) > MAX_CACHED_TERMS:
                cache.clear()
            cache.update(zip(missing, feature_indices(missing, self.params.num_features).tolist(), strict=True))
        return np.fromiter(map(cache.__getitem__, terms), dtype=np.int64, count=len(terms))

    def features(self, texts: Sequence[str]) -> Features:
        tokenize = self.params.tokenizer.tokenize
        token_lists = [tokenize(t) for t in texts]
        n = len(token_lists)
        counts = np.fromiter(map(len, token_lists), dtype=np.int64, count=n)
        terms = list(itertools.chain.from_iterable(token_lists))
        nf = self.params.num_features
        keys = np.repeat(np.arange(n, dtype=np.int64), counts) * nf + self.indices(terms)
        unique, tf = np.unique(keys, return_counts=True)
        value = np.ones(len(unique)) if self.params.binary else tf.astype(np.float64)
        return Features(n, unique // nf, unique % nf, value)

    def score_features(self, features: Features) -> Scores:
        p = self.params
        n = features.size
        # bincount adds the weights in input order, i.e. each document's entries in index order from 0.0,
        # like BLAS.dot(sparse features, coefficients); the intercept is added last, as in Spark.
        margins = np.stack(
            [
                np.bincount(features.doc, weights=features.value * p.coefficients[k, features.index], minlength=n)
                + p.intercepts[k]
                for k in range(len(p.intercepts))
            ],
            axis=1,
        )
        if not p.multinomial:
            m = margins[:, 0]
            with np.errstate(over="ignore"):
                p0 = 1.0 / (1.0 + np.exp(m))
            p1 = 1.0 - p0
            probability = np.stack([p0, p1], axis=1)
            if p.prediction_from == "raw":
                positive = m > self._raw_threshold
            elif p.prediction_from == "probability":
                positive = p1 > p.threshold
            else:
                with np.errstate(over="ignore"):
                    positive = 1.0 / (1.0 + np.exp(-m)) > p.threshold
            return Scores(positive.astype(np.float64), probability)
        # Multinomial: Spark's softmax subtracts the largest margin only when it is positive.
        max_margin = margins.max(axis=1, keepdims=True)
        shifted = np.where(max_margin > 0, margins - max_margin, margins)
        with np.errstate(over="ignore"):
            e = np.exp(shifted)
        probability = e * (1.0 / e.sum(axis=1, keepdims=True))
        return Scores(np.argmax(margins, axis=1).astype(np.float64), probability)

    def score(self, texts: Sequence[str]) -> Scores:
        return self.score_features(self.features(texts))

    def score_found(self, texts: Sequence[str]) -> tuple[list[int], Scores]:
        """Scores of the texts in which the model finds a feature, and their positions. The job dead-letters the
        others as NO_FEATURES (a prediction from no feature would be only the model's bias); so does this."""
        features = self.features(texts)
        present = np.bincount(features.doc[features.value != 0.0], minlength=features.size) > 0
        if present.all():
            return list(range(len(texts))), self.score_features(features)
        found = np.flatnonzero(present).tolist()  # rare: hash the few texts again rather than slice coordinates
        return found, self.score([texts[j] for j in found])


# ------------------------------------------------------------------------------------------- the worker


@dataclass
class WorkerReport:
    """What one worker did, and where its time went (seconds of wall time in each step)."""

    consumed: int = 0
    produced: int = 0
    rejected: int = 0
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(("poll", "parse", "score", "produce"), 0.0))


def _parse(values: Sequence[bytes | None]) -> tuple[list[int], list[int], list[str]]:
    """Keep the messages that are JSON objects with an integer id and a non-blank string text."""
    keep: list[int] = []
    ids: list[int] = []
    texts: list[str] = []
    loads = json.loads
    for i, raw in enumerate(values):
        try:
            doc = loads(raw) if raw is not None else None
        except ValueError:
            continue
        if not isinstance(doc, dict):
            continue
        ident, text = doc.get("id"), doc.get("text")
        if type(ident) is int and isinstance(text, str) and text.strip():
            keep.append(i)
            ids.append(ident)
            texts.append(text)
    return keep, ids, texts


def run_worker(
    bootstrap: str, input_topic: str, output_topic: str, params: ScorerParams, partitions: Sequence[int]
) -> WorkerReport:
    """Score the input partitions from the beginning up to their end offsets at start-up, then return."""
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    scorer = Scorer(params)
    labels = params.label_values
    report = WorkerReport()
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        fetch_max_wait_ms=100,
        max_partition_fetch_bytes=8 * 1024 * 1024,
        # The pure-Python CRC32C check costs more than the scoring; the JVM client checks in hardware.
        check_crcs=False,
    )
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, batch_size=512 * 1024)
    try:
        assigned = [TopicPartition(input_topic, p) for p in partitions]
        consumer.assign(assigned)
        consumer.seek_to_beginning(*assigned)
        end = consumer.end_offsets(assigned)
        remaining = {tp for tp in assigned if end[tp] > 0}
        clock = time.perf_counter
        while remaining:
            t0 = clock()
            polled = consumer.poll(timeout_ms=200, max_records=20_000)
            t1 = clock()
            report.seconds["poll"] += t1 - t0
            for tp, records in polled.items():
                if not records:
                    continue
                report.consumed += len(records)
                t1 = clock()
                keep, ids, texts = _parse([r.value for r in records])
                t2 = clock()
                found, scores = scorer.score_found(texts)
                if len(found) < len(keep):
                    keep, ids, texts = [keep[j] for j in found], [ids[j] for j in found], [texts[j] for j in found]
                report.rejected += len(records) - len(keep)
                predictions = scores.prediction.tolist()
                probabilities = scores.predicted_probability().tolist()
                t3 = clock()
                scored_at = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
                dumps = json.dumps
                send = producer.send
                for j, i in enumerate(keep):
                    record = records[i]
                    prediction = predictions[j]
                    value = {
                        "id": ids[j],
                        "text": texts[j],
                        "prediction": prediction,
                        "predictedLabel": labels[int(prediction)],
                        "probability": probabilities[j],
                        "modelName": params.model_name,
                        "modelVersion": params.model_version,
                        "scoredAt": scored_at,
                        "sourceTopic": tp.topic,
                        "sourcePartition": tp.partition,
                        "sourceOffset": record.offset,
                    }
                    send(
                        output_topic,
                        key=str(ids[j]).encode(),
                        value=dumps(value, separators=(",", ":"), ensure_ascii=False).encode(),
                    )
                report.produced += len(keep)
                report.seconds["parse"] += t2 - t1
                report.seconds["score"] += t3 - t2
                report.seconds["produce"] += clock() - t3
                if records[-1].offset + 1 >= end[tp]:
                    remaining.discard(tp)
        t0 = clock()
        producer.flush()
        report.seconds["produce"] += clock() - t0
    finally:
        producer.close()
        consumer.close()
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.baseline", description=__doc__.splitlines()[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--input-topic", required=True)
    parser.add_argument("--output-topic", required=True)
    parser.add_argument("--params", required=True, type=Path, help="file written by ScorerParams.save")
    parser.add_argument("--partitions", required=True, help="comma-separated input partitions for this worker")
    parser.add_argument("--report", required=True, type=Path, help="where to write the worker's JSON report")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    params = ScorerParams.load(args.params)
    partitions = [int(p) for p in args.partitions.split(",") if p.strip()]
    report = run_worker(args.bootstrap, args.input_topic, args.output_topic, params, partitions)
    args.report.write_text(json.dumps(report.__dict__, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
