# The front door. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
BROKER_PORT ?= 9092
PYTEST_ARGS ?=

.PHONY: help install demo test test-fast lint format model bench broker-start broker-stop broker-status clean

help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[1m%-14s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# A regular (not editable) install: it gives the `job` command without setuptools' editable-mode warnings,
# and it is redone whenever the job's code changes. Commands run from here import the checkout itself.
$(STAMP): pyproject.toml $(wildcard job/*.py)
	@test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet '.[dev]'
	@rm -rf build *.egg-info
	@touch $(STAMP)

install: $(STAMP) ## Create .venv, install the job and its test tools, fetch the connector and broker jars
	$(PY) -m job.deps fetch
	$(PY) -m job.broker fetch

demo: install ## Start the local broker and the job, score a few dozen tweets live, then stop
	$(PY) -m job.demo

test: install ## Run the whole test suite (starts its own Kafka broker)
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: install ## Run the suite without the slow integration tests
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

lint: install ## ruff check and format check
	$(VENV)/bin/ruff check job tests bench
	$(VENV)/bin/ruff format --check job tests bench

format: install ## Format the code with ruff
	$(VENV)/bin/ruff format job tests bench
	$(VENV)/bin/ruff check --fix job tests bench

model: install ## Train the sample model into models/sentiment-prediction from ../shared/data
	$(PY) -m job.train \
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
	$(PY) -m job.broker start --port $(BROKER_PORT)

broker-stop: ## Stop the local Kafka broker
	@if [ -x $(PY) ]; then $(PY) -m job.broker stop; else echo "nothing installed, no broker running"; fi

broker-status: ## Is the local broker running?
	$(PY) -m job.broker status

clean: broker-stop ## Remove local state (.state/); keeps the download cache (.cache/)
	rm -rf .state spark-warehouse metastore_db derby.log
