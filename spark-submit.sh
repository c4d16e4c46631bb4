#!/usr/bin/env bash
# Runs the stream-deployment job with spark-submit from the pinned pyspark, plus the matching Kafka connector.
#
#   ./spark-submit.sh [spark-submit options...] run|validate|skip --spec FILE [--spec FILE] [job options...]
#   ./spark-submit.sh --master spark://host:7077 --conf spark.executor.memory=2g run --spec config/local.yaml
#
# Everything before the job command (run, validate, skip) goes to spark-submit unchanged; everything from it on goes
# to the job (`job/runtime/main.py`). A literal `--` may also separate the two.
set -euo pipefail
# A SIGTERM or Ctrl-C before the job is launched (below) ends this script there, with nothing started.
stop_before_launch=""
trap 'stop_before_launch=yes' INT TERM

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="${STREAM_JOB_PYTHON:-}"
if [[ -z "$python" ]]; then
  if [[ -x "$here/.venv/bin/python" ]]; then python="$here/.venv/bin/python"; else python="$(command -v python3)"; fi
fi
if ! command -v java >/dev/null 2>&1 && [[ -z "${JAVA_HOME:-}" ]]; then
  echo "error: Java not found; install OpenJDK 17 (Spark 4 needs Java 17 or newer)" >&2
  exit 2
fi
if ! "$python" -c "import pyspark" 2>/dev/null; then
  echo "error: pyspark is not installed for $python; run 'make install' first" >&2
  exit 2
fi

submit_args=()
job_args=()
seen_command=""
for arg in "$@"; do
  if [[ -n "$seen_command" ]]; then
    job_args+=("$arg")
  elif [[ "$arg" == "--" ]]; then
    seen_command="yes"
  elif [[ "$arg" == "run" || "$arg" == "validate" || "$arg" == "skip" ]]; then
    seen_command="yes"
    job_args+=("$arg")
  else
    submit_args+=("$arg")
  fi
done
if [[ ${#job_args[@]} -eq 0 ]]; then
  echo "usage: $0 [spark-submit options...] run|validate|skip --spec FILE [job options...]" >&2
  exit 2
fi

deploy_mode=""
for ((i = 0; i < ${#submit_args[@]}; i++)); do
  case "${submit_args[i]}" in
    --deploy-mode) deploy_mode="${submit_args[i + 1]:-}" ;;
    --deploy-mode=*) deploy_mode="${submit_args[i]#--deploy-mode=}" ;;
    spark.submit.deployMode=*) deploy_mode="${submit_args[i]#spark.submit.deployMode=}" ;;
  esac
done

# The job's paths on the command line are the caller's: this script runs from the project folder (below), so a
# relative --spec, --model, --checkpoint or --state is made absolute against the caller's folder first. A URI
# (s3a://…, hdfs:…, file:…) is left as it is, and so are --model, --checkpoint and --state in cluster deploy mode,
# where they name places the driver sees on its cluster node.
absolute() {
  if [[ "$1" == /* || "$1" =~ ^[A-Za-z][A-Za-z0-9+.-]*: ]]; then printf '%s' "$1"; else printf '%s/%s' "$PWD" "$1"; fi
}
for ((i = 1; i < ${#job_args[@]}; i++)); do
  arg="${job_args[i]}"
  case "$arg" in
    --spec | --model | --checkpoint | --state)
      if ((i + 1 < ${#job_args[@]})); then
        i=$((i + 1))
        [[ "$arg" != "--spec" && "$deploy_mode" == "cluster" ]] || job_args[i]="$(absolute "${job_args[i]}")"
      fi
      ;;
    --spec=* | --model=* | --checkpoint=* | --state=*)
      [[ "$arg" != --spec=* && "$deploy_mode" == "cluster" ]] || job_args[i]="${arg%%=*}=$(absolute "${arg#*=}")"
      ;;
  esac
done

cd "$here"
export SPARK_HOME="$("$python" -m job.tools.deps spark-home)"
export PYSPARK_PYTHON="${PYSPARK_PYTHON:-$python}"
# Quiet Spark logging from the start (config/spark/log4j2.properties), unless you bring your own conf dir.
export SPARK_CONF_DIR="${SPARK_CONF_DIR:-$here/config/spark}"
export PYSPARK_DRIVER_PYTHON="${PYSPARK_DRIVER_PYTHON:-$python}"
# The connector jars (fetched into .cache/ on the first run, offline afterwards); exits here if that fails.
submit_lines="$("$python" -m job.tools.deps submit-args)"
mapfile -t connector_args <<<"$submit_lines"

# The job's runtime (job/runtime/, and job/__init__.py that makes it importable) travels as a zip so that a
# driver on a cluster node can import it as well. The tooling around it (job/tools, job/training, ...) does not.
mkdir -p .cache
"$python" - <<'PY'
import os, pathlib, tempfile, zipfile
root = pathlib.Path(".")
# Written beside and renamed, so two submits at the same moment never ship a half-written zip.
fd, tmp = tempfile.mkstemp(dir=".cache", suffix=".zip.tmp")
with os.fdopen(fd, "wb") as handle, zipfile.ZipFile(handle, "w", zipfile.ZIP_DEFLATED) as z:
    for path in [root / "job" / "__init__.py", *sorted((root / "job" / "runtime").glob("*.py"))]:
        z.write(path, path.as_posix())
os.replace(tmp, ".cache/job-py.zip")
PY

# Cluster deploy mode (YARN, Kubernetes): the driver starts on a cluster node, where the spec files named
# here do not exist. Ship them with --files (Spark puts them in the driver's working directory) and give
# the job their file names instead. Files a spec names itself (credentials_file, a CA) are yours to ship.
if [[ "$deploy_mode" == "cluster" ]]; then
  shipped=() names=" "
  for ((i = 1; i < ${#job_args[@]}; i++)); do
    arg="${job_args[i]}" spec="" prefix=""
    if [[ "$arg" == "--spec" && $((i + 1)) -lt ${#job_args[@]} ]]; then
      i=$((i + 1)) spec="${job_args[i]}"
    elif [[ "$arg" == --spec=* ]]; then
      spec="${arg#--spec=}" prefix="--spec="
    fi
    [[ -n "$spec" && -f "$spec" ]] || continue
    name="$(basename "$spec")"
    if [[ "$names" == *" $name "* ]]; then
      echo "error: two spec files are both called $name; cluster deploy mode ships them by file name" >&2
      exit 2
    fi
    names+="$name "
    shipped+=("$(cd "$(dirname "$spec")" && pwd)/$name")
    job_args[i]="$prefix$name"
  done
  if [[ ${#shipped[@]} -gt 0 ]]; then
    files="$(IFS=,; echo "${shipped[*]}")" merged=""
    for ((i = 0; i < ${#submit_args[@]}; i++)); do
      if [[ "${submit_args[i]}" == "--files" && $((i + 1)) -lt ${#submit_args[@]} ]]; then
        submit_args[i + 1]="${submit_args[i + 1]},$files" merged="yes"
      elif [[ "${submit_args[i]}" == --files=* ]]; then
        submit_args[i]="${submit_args[i]},$files" merged="yes"
      fi
    done
    [[ -n "$merged" ]] || submit_args+=(--files "$files")
  fi
  echo "cluster deploy mode: the driver runs on the cluster; stop it with 'job stop --spec ...' (Ctrl-C here only ends this client)" >&2
fi

# Graceful stop on SIGTERM and Ctrl-C. spark-submit's JVM is the parent of the Python driver; left alone it
# would answer SIGTERM/SIGINT with its shutdown hooks and kill the SparkContext under the micro-batch in
# flight. So the JVM starts with both signals ignored (it then installs no handler for them), and this
# script forwards them to the Python driver, which stops the query after the batch in flight and exits.
# The driver installs its handlers first thing and only then writes its pid into the pid file; a signal that
# comes before is kept and delivered as soon as the file names a live driver. The driver also watches this
# script's pid: when the script is killed (kill -9), the driver stops the job the same way and the JVM ends with it.
pid_file="$(mktemp "${TMPDIR:-/tmp}/stream-job-driver.XXXXXX")"
export STREAM_JOB_DRIVER_PID_FILE="$pid_file"
export STREAM_JOB_WRAPPER_PID="$$"
STREAM_JOB_WRAPPER_HOST="$(hostname)"
export STREAM_JOB_WRAPPER_HOST
child=""
pending=""
forward() {
  local driver
  if [[ "$deploy_mode" == "cluster" || "${job_args[0]}" != "run" ]]; then
    # validate has nothing in flight; in cluster mode the driver runs on the cluster: end this client.
    if [[ -n "$child" ]]; then kill -KILL "$child" 2>/dev/null || true; else stop_before_launch="yes"; fi
    return
  fi
  driver="$(cat "$pid_file" 2>/dev/null || true)"
  if [[ -n "$driver" ]] && kill -0 "$driver" 2>/dev/null; then
    kill -TERM "$driver" 2>/dev/null || true
    pending=""
  else
    pending="yes" # no driver yet (the JVM is starting it): delivered once it is there
  fi
}
trap forward INT TERM
if [[ -n "$stop_before_launch" ]]; then
  rm -f "$pid_file"
  echo "stopped before the job was launched" >&2
  exit 0
fi
(
  trap '' INT TERM
  exec "$SPARK_HOME/bin/spark-submit" \
    "${connector_args[@]}" \
    --py-files .cache/job-py.zip \
    "${submit_args[@]}" \
    job/runtime/main.py "${job_args[@]}"
) &
child=$!

while kill -0 "$child" 2>/dev/null; do
  if [[ -n "$pending" ]]; then
    forward
    sleep 0.2
  else
    wait "$child" || true
  fi
done
wait "$child" && status=0 || status=$?
rm -f "$pid_file"
exit "$status"
