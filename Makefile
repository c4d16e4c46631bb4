# The front door. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
BROKER_PORT ?= 9092
PYTEST_ARGS ?=
# pytest-xdist workers for `make test`: 2 on this 2-core machine, where most integration tests wait on a JVM
# starting or a broker; TEST_WORKERS=0 runs the suite in one process.
TEST_WORKERS ?= 2

SPEC ?= config/local.yaml
VIEW_ARGS ?=
VIEW_DIR := job/view
VIEW_VENDOR := $(VIEW_DIR)/static/vendor/uPlot.iife.min.js

.PHONY: help install demo view browser test test-fast check lint typecheck format model bench broker-start broker-stop \
	broker-status clean

help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[1m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# An editable install: `.venv/bin/job` runs the checkout itself, so an edit needs no reinstall; only a change
# of pyproject.toml (dependencies, entry points) redoes it. PYTHONWARNINGS quiets setuptools' note that a
# folder named like the package sits in the working directory: here that folder is the package.
$(STAMP): pyproject.toml
	@test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	PYTHONWARNINGS=ignore $(PY) -m pip install --quiet --editable '.[dev]'
	@rm -rf build *.egg-info
	@touch $(STAMP)

install: $(STAMP) $(VIEW_VENDOR) ## Create .venv, install the job and its test tools, fetch the jars and the view's chart library
	$(PY) -m job.tools.deps fetch
	$(PY) -m job.tools.broker fetch

# The live view's charting library, from the npm registry at the version package-lock.json pins, copied next to the
# page so the browser never fetches anything at run time (git-ignored; part of the installed package data).
$(VIEW_VENDOR): $(VIEW_DIR)/package.json $(VIEW_DIR)/package-lock.json
	npm ci --prefix $(VIEW_DIR) --no-audit --no-fund --ignore-scripts --loglevel=error
	mkdir -p $(VIEW_DIR)/static/vendor
	cp $(VIEW_DIR)/node_modules/uplot/dist/uPlot.iife.min.js $(VIEW_DIR)/node_modules/uplot/dist/uPlot.min.css \
	  $(VIEW_DIR)/static/vendor/
	cp $(VIEW_DIR)/node_modules/uplot/LICENSE $(VIEW_DIR)/static/vendor/uPlot.LICENSE

# Debian's Chromium and its WebDriver, for the live view's browser tests; installed only when missing.
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; }

demo: install ## Start the local broker and the job, score a few dozen tweets live, then stop
	$(PY) -m job.tools.demo

view: install ## Serve the live web page of a deployment (SPEC=config/local.yaml; VIEW_ARGS="--since 6h --port 8050")
	$(VENV)/bin/job view --spec $(SPEC) $(VIEW_ARGS)

test: install browser ## Run the whole test suite (starts its own Kafka broker; installs Chromium for the view's test)
	$(PY) -m pytest -n $(TEST_WORKERS) --dist worksteal $(PYTEST_ARGS)

test-fast: install browser ## Run the suite without the slow integration tests
	$(PY) -m pytest -n $(TEST_WORKERS) --dist worksteal -m "not slow" $(PYTEST_ARGS)

check: lint typecheck ## Lint, format check and type check (CI runs this before the tests)

lint: $(STAMP) ## ruff: lint and format check
	$(VENV)/bin/ruff check job tests bench
	$(VENV)/bin/ruff format --check job tests bench

typecheck: $(STAMP) ## mypy: strict on the runtime (job/runtime), the rest checked too (pyproject.toml)
	$(VENV)/bin/mypy

format: $(STAMP) ## Format the code with ruff
	$(VENV)/bin/ruff format job tests bench
	$(VENV)/bin/ruff check --fix job tests bench

model: install ## Train the sample model into models/sentiment-prediction from ../shared/data
	$(PY) -m job.training.train \
	  --positive ../shared/data/sentiment140-100k/positive.txt \
	  --negative ../shared/data/sentiment140-100k/negative.txt \
	  --vader ../shared/data/vader-tweets/tweets_GroundTruth.tsv \
	  --validation-text ../shared/data/tweeteval-sentiment-val/text.txt \
	  --validation-labels ../shared/data/tweeteval-sentiment-val/labels.txt \
	  --baseline-model models/sentiment140-only \
	  --output models/sentiment-prediction --overwrite

bench: install ## Run the benchmarks (results in bench/results/)
	$(PY) -m bench.run $(BENCH_ARGS)

broker-start: install ## Start the local Kafka 4.x broker (KRaft) on localhost:$(BROKER_PORT)
	$(PY) -m job.tools.broker start --port $(BROKER_PORT)

broker-stop: ## Stop the local Kafka broker
	@if [ -x $(PY) ]; then $(PY) -m job.tools.broker stop; else echo "nothing installed, no broker running"; fi

broker-status: ## Is the local broker running?
	$(PY) -m job.tools.broker status

clean: broker-stop ## Remove local state (.state/); keeps the download cache (.cache/)
	rm -rf .state spark-warehouse metastore_db derby.log
