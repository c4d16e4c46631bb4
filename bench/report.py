"""Write the results: `results.json` (everything), `results.md` (tables and findings) and PNG plots."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

THROUGHPUT_ORDER = ("job", "io_ceiling", "baseline", "job_sparse_lr")
LABELS = {
    "job": "job as shipped",
    "io_ceiling": "job without model (I/O ceiling)",
    "baseline": "kafka-python + NumPy baseline",
    "job_sparse_lr": "job, LR coefficients as saved (sparse)",
}


def _num(value: Any, digits: int = 0) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and np.isnan(value):
        return "-"
    return f"{value:,.{digits}f}"


def write_json(results: Mapping[str, Any], path: Path) -> None:
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")


def link_latest(results_root: Path, run_dir: Path) -> None:
    """`results/latest` -> this run's folder (a relative symlink, replaced atomically)."""
    link = results_root / "latest"
    tmp = results_root / f".latest.{os.getpid()}"
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(run_dir.name, target_is_directory=True)
    os.replace(tmp, link)


# ------------------------------------------------------------------------------------------- markdown


def markdown(results: Mapping[str, Any]) -> str:
    lines: list[str] = [f"# Benchmark results, {results['started_at']}", ""]
    env = results.get("environment", {})
    params = results.get("parameters", {})
    model = results.get("model", {})
    described = (
        f" ({model['name']} {model['version']}, stages {', '.join(model.get('stages', []))})" if "name" in model else ""
    )
    lines += [
        f"Machine: {env.get('cpus')} CPUs, {env.get('memory_gib')} GiB; load average "
        f"{env.get('load_average_start')} at the start, {env.get('load_average_end')} at the end. "
        f"Python {env.get('python')}, pyspark {env.get('pyspark')}, {env.get('java')}, Kafka {env.get('kafka')} "
        f"(the project's local broker, on this machine). Commit {env.get('git_commit')}.",
        "",
        f"Model: `{model.get('location')}`{described}. Tweets: {results.get('tweets')}.",
        "",
        "Parameters: " + ", ".join(f"`{k}={v}`" for k, v in params.items()) + f". Run took {results.get('seconds')} s.",
        "",
    ]
    if "throughput" in results:
        lines += _throughput_md(results["throughput"], params)
    if "latency" in results:
        lines += _latency_md(results["latency"])
    if "user_latency" in results:
        lines += _user_latency_md(results["user_latency"])
    if "static" in results:
        lines += _static_md(results["static"])
    if "startup" in results:
        lines += _startup_md(results["startup"])
    if "backlog" in results:
        lines += _backlog_md(results["backlog"])
    if "model_change" in results:
        lines += _model_change_md(results["model_change"])
    if results.get("errors"):
        lines += ["## Sections that failed", ""]
        lines += [f"- **{k}**: `{v}`" for k, v in results["errors"].items()]
        lines.append("")
    if results.get("plots"):
        lines += ["## Plots", ""] + [f"![{p}]({p})" for p in results["plots"]] + [""]
    return "\n".join(lines)


def _throughput_md(t: Mapping[str, Any], params: Mapping[str, Any]) -> list[str]:
    summary = t.get("summary", {})
    lines = [
        f"## Throughput: a backlog of {params.get('messages'):,} messages in {params.get('partitions')} partitions",
        "",
        (
            f"Medians of {params.get('repeats')} runs, interleaved. "
            if params.get("repeats", 1) > 1
            else "One run each. "
        )
        + "Clock: from starting the query (or the baseline's "
        "worker processes) until the output topic holds every message. CPU is the JVM's user+system time "
        "(the Python driver is idle during a query) or the baseline workers' own (from `wait4`); peak RSS is "
        "the JVM's, sampled every 50 ms, or the sum of the workers' peaks. The broker's CPU is apart.",
        "",
        "| run | msgs/s | ratio to job | seconds | first record after s | msgs/s from first record | CPU s | "
        "CPU µs/msg | peak RSS MB | broker CPU s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in THROUGHPUT_ORDER:
        if name in summary:
            s = summary[name]
            lines.append(
                f"| {LABELS[name]} | {_num(s['median_msgs_per_s'])} | {_num(s['ratio_to_job'], 2)} | "
                f"{_num(s['median_seconds'], 1)} | {_num(s.get('median_seconds_to_first_record'), 1)} | "
                f"{_num(s.get('median_steady_msgs_per_s'))} | {_num(s['median_cpu_s'], 1)} | "
                f"{_num(s['cpu_us_per_msg'], 1)} | "
                f"{_num(s['max_peak_rss_mb'])} | {_num(s['median_broker_cpu_s'], 1)} |"
            )
    lines.append("")
    lines += [f"- **{LABELS[n]}**: {summary[n]['description']}." for n in THROUGHPUT_ORDER if n in summary]
    fill = t.get("fill")
    if fill:
        lines.append(
            f"- Filling the input topic (not part of the figures): {fill['messages']:,} messages in "
            f"{fill['seconds']} s ({_num(fill['messages_per_s'])} msgs/s) with a Spark batch write "
            f"(`df.write.format('kafka')`); for comparison kafka-python produced "
            f"{_num(t.get('kafka_python_produce_msgs_per_s'))} msgs/s."
        )
    trigger = t.get("trigger")
    if trigger:
        lines.append(f"- Spark runs: {trigger}.")
    baseline = summary.get("baseline")
    if baseline and t.get("runs", {}).get("baseline"):
        steps = t["runs"]["baseline"][0].get("worker_seconds", {})
        lines.append(
            "- Where the baseline's time goes (first run, seconds summed over workers): "
            + ", ".join(f"{k} {v:.1f}" for k, v in steps.items())
            + "."
        )
    agreement = t.get("agreement")
    if agreement:
        a = agreement.get("baseline_vs_job", {})
        lines.append(
            f"- Fairness check on {a.get('sample')} tweets sent through both (incl. emoji and odd whitespace): "
            f"{'**agree**' if a.get('agree') else '**DISAGREE**'}: {a.get('label_mismatches')} label and "
            f"{a.get('prediction_mismatches')} prediction mismatches, largest probability difference "
            f"{a.get('max_abs_probability_diff'):.3g} ({a.get('probabilities_bit_identical')} of "
            f"{a.get('compared')} bit-identical), {a.get('missing_from_job')} / {a.get('missing_from_baseline')} "
            f"missing from job / baseline, {a.get('unexpected_records', 0)} unexpected; "
            f"{a.get('no_features_on_both_sides', 0)} texts without a feature skipped by both (the job's "
            f"NO_FEATURES dead letters), {a.get('other_dead_letters', 0)} other dead letters."
        )
        d = agreement.get("sparse_vs_job")
        if d:
            lines.append(
                f"- The job with the coefficients as saved (sparse) against the job (dense) on the same sample: "
                f"{d.get('label_mismatches')} label mismatches, largest probability difference "
                f"{d.get('max_abs_probability_diff'):.3g} ({d.get('probabilities_bit_identical')} of "
                f"{d.get('compared')} bit-identical)."
            )
    lines.append("")
    return lines


def _latency_md(lat: Mapping[str, Any]) -> list[str]:
    lines = [
        "## Latency at a steady rate",
        "",
        "From the producer's send call to the consumer's poll returning the scored record, per message "
        "(CLOCK_MONOTONIC in one driver process); messages sent during the warm-up are not counted. "
        "Compilations: Janino compilations of generated code during the run (Spark's CodegenMetrics).",
        "",
        "| mode | query | rate sent | p50 ms | p95 ms | p99 ms | max ms | measured | missing | dead letters | "
        "batches | median batch ms | compilations |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for mode in latency_modes(lat):
        m = lat.get(mode)
        if not m or "p50_ms" not in m:
            continue
        lines.append(
            f"| {m.get('trigger')} | {m.get('query')} | {_num(m.get('achieved_rate'))}/s | {_num(m['p50_ms'], 1)} | "
            f"{_num(m['p95_ms'], 1)} | {_num(m['p99_ms'], 1)} | {_num(m['max_ms'], 1)} | {m['measured']:,} | "
            f"{m['missing']:,} | {m.get('dead_lettered', '-')} | {m.get('batches')} | "
            f"{_num(m.get('median_batch_ms'))} | "
            f"{m.get('codegen', {}).get('compilations', '-')} |"
        )
    lines += [f"- {m.get('trigger')}: failed: `{m['error']}`" for m in lat.values() if m.get("error")]
    lines.append("")
    micro = lat.get("micro_batch", {})
    if micro.get("p50_ms") is not None:
        lines += [explain_micro_batch(micro), ""]
    lines += _per_batch_md(lat)
    return lines


def latency_modes(lat: Mapping[str, Any]) -> list[str]:
    """The latency section's runs, in the order they ran: micro-batch, then each real-time interval."""
    return [k for k, v in lat.items() if isinstance(v, Mapping) and (k == "micro_batch" or k.startswith("real_time"))]


def _per_batch_md(lat: Mapping[str, Any]) -> list[str]:
    """Each batch's fixed costs after the warm-up: from the query's progress, Spark's event log, the listener."""
    runs = [lat[k] for k in latency_modes(lat) if isinstance(lat[k].get("per_batch"), Mapping)]
    if not runs:
        return []
    lines = [
        "### What each batch costs, after the warm-up",
        "",
        "Medians per batch. Task binary: the bytes of the broadcasts each batch's jobs shipped to the executors "
        "(the stages' serialized plans and closures, the model's UDFs inside them, as stored after Spark's broadcast "
        "compression; from Spark's event log, block updates). Deserialize: the executors' time reading them, "
        "summed over the batch's tasks. Planning, offset log, execution (addBatch) and commit log: the query's "
        "progress (`durationMs`). Listener: the status listener's handler per progress event, on Spark's listener "
        "thread (asynchronous: no part of the batch's time).",
        "",
        "| trigger | batches | compilations / batch | task binary KB | broadcasts | deserialize ms | task run ms | "
        "task CPU ms | planning ms | offset log ms | execution ms | commit log ms | listener ms (p99) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for m in runs:
        b, d = m["per_batch"], m.get("median_duration_ms", {})
        listener = b.get("status_listener_ms", {})
        batches = max(m.get("batches") or 0, 1)
        per_batch = m.get("codegen", {}).get("compilations", 0) / batches
        lines.append(
            f"| {m.get('trigger')} | {b.get('batches')} | {per_batch:.2f} | "
            f"{_num((b.get('task_binary_bytes_per_batch') or 0) / 1000, 1)} | {_num(b.get('broadcasts_per_batch'))} | "
            f"{_num(b.get('deserialize_ms_per_batch'), 1)} | {_num(b.get('task_run_ms_per_batch'), 1)} | "
            f"{_num(b.get('task_cpu_ms_per_batch'), 1)} | {_num(d.get('queryPlanning'))} | "
            f"{_num(d.get('walCommit'))} | {_num(d.get('addBatch'))} | {_num(d.get('commitOffsets'))} | "
            f"{_num(listener.get('median_ms'), 1)} ({_num(listener.get('p99_ms'), 1)}) |"
        )
    model_bytes = lat.get("model_bytes", {})
    for trigger, stages in model_bytes.items():
        listed = ", ".join(f"{name.split('_', 1)[-1]} {size / 1000:,.1f} KB" for name, size in stages.items())
        lines.append(f"- The model's stages as Java serialization writes them ({trigger}): {listed}.")
    lines.append("")
    return lines


def _user_latency_md(u: Mapping[str, Any]) -> list[str]:
    runs = {k: v for k, v in u.items() if isinstance(v, Mapping)}
    lines = [
        "## Latency on the user's path",
        "",
        f"The job launched as `{u.get('command')}`; the same driver as above (send to answer, the answer being the "
        "scored record or the dead letter) in a process of its own. `kept up after`: seconds from the first message "
        "sent until every later message was answered within 1 s (the warm-up; `never` when the last ones were "
        "late too). The percentiles leave out the messages of the first `warm-up` seconds of sending, and count "
        "every later one.",
        "",
        "| run | partitions | trigger | rate sent | sent for s | warm-up s | kept up after s | p50 ms | p95 ms | "
        "p99 ms | max ms | measured | missing | dead letters | launch to sending s |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for tag, m in runs.items():
        if "p50_ms" not in m:
            continue
        kept = "never" if m.get("kept_up_after_s") is None else _num(m["kept_up_after_s"], 1)
        lines.append(
            f"| {tag} | {m.get('partitions')} | {m.get('trigger')} | {_num(m.get('achieved_rate'))}/s | "
            f"{_num(m.get('duration_s'))} | {_num(m.get('warmup_s'))} | {kept} | "
            f"{_num(m['p50_ms'], 1)} | {_num(m['p95_ms'], 1)} | {_num(m['p99_ms'], 1)} | {_num(m['max_ms'], 1)} | "
            f"{m['measured']:,} | {m['missing']:,} | {m.get('dead_lettered')} | "
            f"{_num(m.get('seconds_from_launch_to_sending'), 1)} |"
        )
    lines += [f"- {tag}: failed: `{m['error'][:300]}`" for tag, m in runs.items() if m.get("error")]
    lines.append("")
    return lines


def _backlog_md(b: Mapping[str, Any]) -> list[str]:
    rss = ", ".join(f"{kind} {mib:,.0f} MiB" for kind, mib in b.get("peak_rss_mib", {}).items())
    return [
        "## A backlog drained through spark-submit.sh",
        "",
        f"`{b.get('command')}`, trigger available_now, {b.get('messages'):,} messages on {b.get('partitions')} "
        f"partitions: {b.get('scored'):,} scored and {b.get('dead_lettered'):,} dead-lettered; "
        f"**{_num(b.get('msgs_per_s_first_to_last'))} msgs/s** from the first record written to the last "
        f"({_num(b.get('seconds_first_to_last_record'), 1)} s), {_num(b.get('seconds_launch_to_exit'), 1)} s from "
        f"launch to exit (exit code {b.get('exit_code')}). Peak resident memory (VmHWM, largest process of each "
        f"kind; in local mode the driver and the executor are one JVM): {rss}.",
        "",
    ]


def _model_change_md(c: Mapping[str, Any]) -> list[str]:
    def listed(values: Sequence[float]) -> str:
        return ", ".join(f"{v:.2f}" for v in values)

    return [
        "## Changing the model of a running deployment",
        "",
        f"`job update` {c.get('changes')} times, back and forth between `{Path(c['models'][0]).name}` and "
        f"`{Path(c['models'][1]).name}`, while {_num(c.get('rate'))} msgs/s stream through {c.get('partitions')} "
        "partitions (the job launched by spark-submit.sh, trigger 0 seconds). Gap: from the last scored record of "
        "the old version to the first of the new on the output topic (Kafka timestamps): "
        f"**median {c.get('median_gap_s'):.2f} s** ({listed(c.get('gaps_s', []))}). `job update` answered after "
        f"{listed(c.get('job_update_answered_s', []))} s; from the request to the first record of the new version "
        f"{listed(c.get('request_to_first_new_record_s', []))} s (the model is checked first, while the old one "
        f"scores). Beside it, `job stop` ({c.get('stop_s')} s) and a new launch: **{c.get('restart_gap_s'):.1f} s** "
        f"without scoring, {c.get('ratio_restart_to_median_gap')} times the median gap of a change. "
        f"{c.get('sent'):,} messages sent, {c.get('missing')} missing, {c.get('dead_lettered')} dead-lettered.",
        "",
    ]


def explain_micro_batch(m: Mapping[str, Any]) -> str:
    """Where a micro-batch's time goes, from the query's progress reports and the codegen counters."""
    parts = m.get("median_duration_ms", {})
    batches = max(m.get("batches") or 0, 1)
    compiled = m.get("codegen", {})
    per_batch = compiled.get("compilations", 0) / batches
    text = (
        f"Micro-batch: a median batch of {_num(m.get('median_rows_per_batch'))} rows took "
        f"{_num(m.get('median_batch_ms'))} ms (addBatch {_num(parts.get('addBatch'))} ms, queryPlanning "
        f"{_num(parts.get('queryPlanning'))} ms, offset log {_num(parts.get('walCommit'))} ms, commit log "
        f"{_num(parts.get('commitOffsets'))} ms), and a message waits on average for half a batch before its "
        "batch starts, plus its own batch."
    )
    if per_batch >= 0.9:
        text += (
            f" Spark compiled generated code {compiled.get('compilations')} times in {batches} batches "
            f"({per_batch:.1f} per batch, recently {_num(compiled.get('recent_mean_compile_ms'))} ms each): the "
            "output records' `scoredAt`/`rejectedAt` come from `current_timestamp()`, which the streaming engine "
            "replaces by a literal of the batch's timestamp, and a timestamp literal is written into the "
            "generated Java source; the source differs every batch, so Spark's code cache misses and the whole "
            "stage (parsing, scoring, shaping) is compiled again. Job change (job/scoring.py "
            "`to_kafka_records`): format the time as a string, `F.date_format(F.current_timestamp(), "
            "\"yyyy-MM-dd'T'HH:mm:ss.SSSXXX\")`, the same text `to_json` writes; the optimizer folds it to a "
            "string literal, which generated code references instead of inlining (checked on a batch query: "
            "2 compilations per run before, none after)."
        )
    return text


def _static_md(s: Mapping[str, Any]) -> list[str]:
    rows = s["rows"]
    lines = [
        f"## Static scoring: `PipelineModel.transform` on {rows:,} cached tweets",
        "",
        f"The whole pipeline (prediction and probability): **{_num(s['pipeline']['rows_per_s'])} rows/s**; "
        f"with the LogisticRegression coefficients made dense: **{_num(s['pipeline_dense_lr']['rows_per_s'])} "
        "rows/s**. Each figure is a write of the columns under test to Spark's `noop` sink (every row "
        "computed, nothing pruned, nothing stored), after a warm-up.",
        "",
        "Breakdown by stage (pipeline prefixes timed on the same cached input, then differenced):",
        "",
        "| stage | seconds | µs/row | share |",
        "|---|---:|---:|---:|",
    ]
    for b in s["breakdown"]:
        lines.append(f"| {b['stage']} | {b['seconds']:.2f} | {b['us_per_row']:.1f} | {b['share']:.0%} |")
    if any(b["seconds"] <= 0 for b in s["breakdown"]):
        lines += ["", "A stage shows no time or less: the prefixes were too short to difference; use more rows."]
    lines += [
        "",
        f"Each part alone, on a cached copy of its input ({s['investigation_rows']:,} rows):",
        "",
        "| what | rows/s | compilations |",
        "|---|---:|---:|",
    ]
    lines += [
        f"| {k} | {_num(v['rows_per_s'])} | {v.get('codegen_compilations', '-')} |" for k, v in s["alone"].items()
    ]
    lines += ["", "### Where the time goes", "", explain_static(s), ""]
    return lines


def explain_static(s: Mapping[str, Any]) -> str:
    """The findings, in words, with this run's figures (the wording follows what was measured)."""
    from bench import static as st

    facts = s["lr_model"]
    alone = {k: v["rows_per_s"] for k, v in s["alone"].items()}
    breakdown = s["breakdown"]
    top = max(breakdown, key=lambda b: b["seconds"])
    lr = next((b for b in breakdown if b["stage"] == "LogisticRegressionModel"), None)
    sparse, dense = alone[st.LR_SPARSE], alone[st.LR_DENSE]
    solo = ", ".join(f"{k} {_num(alone[k])} rows/s" for k in (st.TOKENIZER_ALONE, st.HASHING_ALONE, st.LR_SPARSE))
    paragraphs = [
        f"**Stages.** With this model the largest stage is {top['stage']} ({top['share']:.0%} of the pipeline's "
        f"time, {top['us_per_row']:.1f} µs per row on 2 cores)"
        + (f"; LogisticRegression takes {lr['share']:.0%}." if lr and lr is not top else ".")
        + f" Alone on cached input: {solo}."
    ]
    lr_text = [
        "**LogisticRegression.** Its cost comes from how the model stores its coefficients.",
        "`LogisticRegression.fit` compresses the coefficient matrix, and the compressed form of "
        f"{facts['nonzero_coefficients']:,} non-zero weights in {facts['num_features']:,} hash buckets is a "
        f"`{facts['coefficient_storage']}` (saving and loading keep it).",
        "Each row's margin is `BLAS.dot(features, coefficients)`; with both vectors sparse, Spark runs a merge "
        "loop that walks the coefficients' indices up to the row's largest feature index.",
        f"A tweet has {facts['mean_features_per_row']} features on average, spread over the whole hash space, "
        f"so the loop takes {facts['mean_sparse_dot_steps_per_row']:,.0f} steps per row (counted on "
        f"{facts['sample_rows']:,} tweets) where a dense coefficient array needs "
        f"{facts['mean_dense_dot_steps_per_row']} multiply-adds: the work grows with the number of non-zero "
        "weights, so a model with more of them (less L1 regularization, or a larger vocabulary) is slower.",
        f"On cached features the LR stage as loaded runs at {_num(sparse)} rows/s, and at {_num(dense)} rows/s "
        f"with the same coefficients stored dense ({dense / sparse:.1f} times).",
        f"Asking only for the prediction (no rawPrediction or probability column) gives "
        f"{_num(alone[st.LR_PREDICTION_ONLY])} rows/s"
        + (
            ": the per-row UDFs, the vector-to-probability conversion and `vector_to_array` are not where the "
            "LR time goes."
            if alone[st.LR_PREDICTION_ONLY] < 1.5 * sparse
            else ", so the extra output columns cost a part of it too."
        ),
        "The dense model gives the same predictions and probabilities to the bit: the dense dot adds the same "
        "products in the same order (the fairness check under Throughput compares them record by record).",
        "Job change: when loading the model (job/runtime/model.py), replace the LogisticRegressionModel by one whose "
        "coefficient matrix is `coefficientMatrix.toDense` (as `bench.static.densify_logistic_regression` "
        "does); it costs 8 bytes per feature (2 MiB for 2^18 features)"
        + (
            "."
            if dense >= 1.5 * sparse
            else "; with this model's few non-zero weights the gain is small, but it removes the dependence on "
            "their number."
        ),
    ]
    paragraphs.append(" ".join(lr_text))
    paragraphs.append(
        f"**Tokenizing and hashing.** {st.TOKENIZER_ALONE}: {_num(alone[st.TOKENIZER_ALONE])} rows/s; "
        f"{st.HASHING_ALONE}: {_num(alone[st.HASHING_ALONE])} rows/s. Both are Scala UDFs: the tokenizer runs a "
        "Java regex over each lower-cased text (a RegexTokenizer with look-behinds costs more than a split on "
        "whitespace); HashingTF turns each token of the array back into a Java String, encodes it to UTF-8 "
        "again to hash it, updates a boxed hash map per row and sorts the map into a SparseVector."
    )
    parse = s.get("codegen", {}).get("parse_messages", {})
    if st.PARSE in alone and parse:
        over = parse.get("over_jit_limit")
        paragraphs.append(
            " ".join(
                [
                    "**JSON parsing.**",
                    (
                        "The job's own parsing is not the fast part: "
                        if alone[st.PARSE] * 3 < alone[st.PARSE_REFERENCE]
                        else ""
                    )
                    + f"`scoring.parse_messages` alone runs at {_num(alone[st.PARSE])} rows/s, while parsing each "
                    f"value once into a variant and taking the two fields runs at "
                    f"{_num(alone[st.PARSE_REFERENCE])} rows/s (no checks, a yardstick only).",
                    f"Its optimized plan holds {parse.get('parse_json_calls_in_optimized_plan')} copies of the JSON "
                    "parse: every use of the `variant` Column in a check, a field or the error code copies "
                    "`try_parse_json(value)` into the expression tree, and subexpression elimination shares only "
                    "part of it across the nested CASE WHENs.",
                    f"Its generated code is {parse.get('generated_source_chars', 0):,} characters of Java with a "
                    f"largest method of {parse.get('largest_method_bytes', 0):,} bytes of bytecode"
                    + (
                        ", over HotSpot's 8,000-byte limit, so the JIT never compiles that method "
                        "(`-XX:+DontCompileHugeMethods` is the default) and it runs in the bytecode interpreter."
                        if over
                        else "."
                    ),
                    f"Parsing plus shaping the output records without a model runs at "
                    f"{_num(alone[st.PARSE_AND_SHAPE])} rows/s; the job's whole scoring transform at "
                    f"{_num(alone[st.JOB_SPARSE])} rows/s (model as loaded) and {_num(alone[st.JOB_DENSE])} rows/s "
                    f"(dense LR), against {_num(s['pipeline']['rows_per_s'])} rows/s for the PipelineModel alone.",
                    "Job change (job/scoring.py `parse_messages`): parse in steps, each a `select`: first "
                    "`try_parse_json(value)` into a column, then each field's `try_variant_get` and "
                    "`schema_of_variant` into columns, then the error code from those columns. Spark does not "
                    "inline a non-trivial expression that a later projection uses more than once, so each is "
                    "computed once per row, and the generated methods stay small.",
                ]
            )
        )
    return "\n\n".join(paragraphs)


def _startup_md(s: Mapping[str, Any]) -> list[str]:
    runs = s.get("runs", [])
    lines = [
        "## Start-up",
        "",
        f"From launching `{runs[0]['command'] if runs else './spark-submit.sh'}` (local[2], a few messages "
        f"waiting) to the first scored record in the output topic: **{_num(s.get('median_seconds'), 1)} s** "
        f"(median of {len(runs)}; runs: {', '.join(str(r['seconds_to_first_scored_record']) for r in runs)}).",
    ]
    if runs:
        statuses = ", ".join(f"{k} after {v} s" for k, v in runs[0].get("seconds_to_status", {}).items())
        lines.append(f"The status document of the first run said {statuses}.")
    if s.get("bare_spark_submit_median_seconds") is not None:
        floors = ", ".join(str(f["seconds"]) for f in s.get("bare_spark_submit", []))
        lines.append(
            f"The floor, a bare `spark-submit --master local[2]` of a script that starts a SparkSession and stops it, "
            f"launched just before each: **{_num(s['bare_spark_submit_median_seconds'], 1)} s** (runs: {floors}); "
            f"the job's start-up is **{s.get('ratio_to_bare_spark_submit')} times** the floor."
        )
    lines.append("")
    return lines


# ---------------------------------------------------------------------------------------------- plots


def plots(results: Mapping[str, Any], series: Mapping[str, np.ndarray], out_dir: Path) -> list[str]:
    """PNG plots; an empty list (and a warning) when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning("matplotlib is not installed: no plots (pip install matplotlib)")
        return []
    written: list[str] = []
    if "throughput" in results and results["throughput"].get("summary"):
        written.append(_plot_throughput(plt, results["throughput"], out_dir))
    if series:
        written.append(_plot_latency(plt, results.get("latency", {}), series, out_dir))
    if "static" in results:
        written.append(_plot_static(plt, results["static"], out_dir))
    return written


def _plot_throughput(plt: Any, t: Mapping[str, Any], out_dir: Path) -> str:
    names = [n for n in THROUGHPUT_ORDER if n in t["summary"]]
    fig, ax = plt.subplots(figsize=(8, 3.5))
    medians = [t["summary"][n]["median_msgs_per_s"] for n in names]
    ax.barh(range(len(names)), medians, color="#4c72b0")
    for i, n in enumerate(names):
        runs = [r["msgs_per_s"] for r in t["runs"].get(n, [])]
        ax.plot(runs, [i] * len(runs), "k.", markersize=6)
        ratio = t["summary"][n]["ratio_to_job"]
        ax.text(medians[i], i, f"  {medians[i]:,.0f}/s (x{ratio:.2f})", va="center")
    ax.set_yticks(range(len(names)), [LABELS[n] for n in names])
    ax.invert_yaxis()
    ax.set_xlabel("messages per second (bar: median, dots: runs)")
    ax.set_xlim(0, max(medians) * 1.45)
    ax.set_title("Throughput on a backlog")
    fig.tight_layout()
    fig.savefig(out_dir / "throughput.png", dpi=120)
    plt.close(fig)
    return "throughput.png"


def _plot_latency(plt: Any, lat: Mapping[str, Any], series: Mapping[str, np.ndarray], out_dir: Path) -> str:
    fig, (cdf, timeline) = plt.subplots(1, 2, figsize=(11, 4))
    for mode, data in series.items():
        if len(data) == 0:
            continue
        info = lat.get(mode, {})
        warmup = info.get("warmup_s", 0.0)
        label = info.get("trigger", mode)
        kept = np.sort(data[data[:, 0] >= warmup, 1])
        if len(kept):
            cdf.plot(kept, np.arange(1, len(kept) + 1) / len(kept), label=label)
        timeline.plot(data[:, 0], data[:, 1], ".", markersize=1.5, label=label)
        timeline.axvspan(0, warmup, color="0.9", zorder=0)
    cdf.set_xscale("log")
    cdf.set_xlabel("latency, ms (log)")
    cdf.set_ylabel("fraction of messages")
    cdf.set_title("Latency CDF after warm-up")
    cdf.grid(True, which="both", alpha=0.3)
    cdf.legend()
    timeline.set_yscale("log")
    timeline.set_xlabel("send time, s since start")
    timeline.set_ylabel("latency, ms (log)")
    timeline.set_title("Latency of each message (grey: warm-up, not counted)")
    timeline.legend(markerscale=6)
    fig.tight_layout()
    fig.savefig(out_dir / "latency.png", dpi=120)
    plt.close(fig)
    return "latency.png"


def _plot_static(plt: Any, s: Mapping[str, Any], out_dir: Path) -> str:
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [1, 2]})
    stages = [b["stage"] for b in s["breakdown"]]
    values = [b["us_per_row"] for b in s["breakdown"]]
    left.bar(range(len(stages)), values, color=["#55a868", "#c44e52", "#8172b2"][: len(stages)])
    left.set_xticks(range(len(stages)), [n.replace("Model", "") for n in stages], rotation=15)
    left.set_ylabel("µs of wall time per row (2 cores)")
    left.set_title(f"Pipeline stages, {s['rows']:,} rows")
    names = list(s["alone"])
    rates = [s["alone"][n]["rows_per_s"] for n in names]
    right.barh(range(len(names)), rates, color="#4c72b0")
    right.set_yticks(range(len(names)), names, fontsize=7)
    right.invert_yaxis()
    right.set_xscale("log")
    right.set_xlabel("rows per second (log)")
    right.set_title(f"Each part alone, {s['investigation_rows']:,} cached rows")
    fig.tight_layout()
    fig.savefig(out_dir / "static.png", dpi=120)
    plt.close(fig)
    return "static.png"


def console_summary(results: Mapping[str, Any]) -> Sequence[str]:
    """A few lines for the terminal."""
    out = []
    t = results.get("throughput", {}).get("summary", {})
    for name in THROUGHPUT_ORDER:
        if name in t:
            s = t[name]
            out.append(
                f"throughput  {LABELS[name]:<34} {s['median_msgs_per_s']:>10,.0f} msgs/s  x{s['ratio_to_job']:.2f}"
            )
    for mode in latency_modes(results.get("latency", {})):
        m = results["latency"][mode]
        if m.get("p50_ms") is not None:
            out.append(
                f"latency     {m['trigger']:<34} p50 {m['p50_ms']:.0f} ms, p95 {m['p95_ms']:.0f} ms, "
                f"p99 {m['p99_ms']:.0f} ms, max {m['max_ms']:.0f} ms"
            )
        elif m.get("error"):
            out.append(f"latency     {mode}: failed: {m['error'][:150]}")
    s = results.get("static")
    if s:
        out.append(
            f"static      pipeline {s['pipeline']['rows_per_s']:,.0f} rows/s, dense LR "
            f"{s['pipeline_dense_lr']['rows_per_s']:,.0f} rows/s"
        )
    for tag, m in results.get("user_latency", {}).items():
        if isinstance(m, Mapping) and m.get("p50_ms") is not None:
            kept = "never" if m.get("kept_up_after_s") is None else f"{m['kept_up_after_s']:.1f} s"
            out.append(
                f"user path   {tag:<34} p50 {m['p50_ms']:.0f} ms, p99 {m['p99_ms']:.0f} ms, "
                f"missing {m['missing']}, kept up after {kept}"
            )
        elif isinstance(m, Mapping) and m.get("error"):
            out.append(f"user path   {tag}: failed: {m['error'][:150]}")
    st = results.get("startup")
    if st and st.get("median_seconds") is not None:
        floor = st.get("bare_spark_submit_median_seconds")
        beside = f" (bare spark-submit {floor:.1f} s, x{st['ratio_to_bare_spark_submit']})" if floor else ""
        out.append(f"startup     {st['median_seconds']:.1f} s to the first scored record{beside}")
    c = results.get("model_change")
    if c:
        out.append(
            f"model change median gap {c['median_gap_s']:.2f} s over {c['changes']} changes; stop and start "
            f"{c['restart_gap_s']:.1f} s; missing {c['missing']}"
        )
    b = results.get("backlog")
    if b:
        out.append(
            f"backlog     {b['messages']:,} msgs via spark-submit.sh: {b['msgs_per_s_first_to_last']:,} msgs/s, "
            f"peak RSS {b['peak_rss_mib']}"
        )
    for section, error in results.get("errors", {}).items():
        out.append(f"FAILED      {section}: {error[:200]}")
    return out
