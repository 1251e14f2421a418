# joulegrid: two commands do everything on a fresh Debian / Python 3.11 machine.
#   make run    set up, run the default grid (config/config.yaml) end to end, print where the report is
#   make test   set up, lint (ruff check, ruff format --check), run the test suite (starts the local Slurm and
#               HTCondor test clusters if it can)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.joulegrid-installed
QUIET  := $(VENV)/.joulegrid-quiet
export PATH := $(abspath $(BIN)):$(PATH)

.PHONY: run test setup system-deps lock dry-run plan clean-results bench

run: setup
	$(BIN)/snakemake
	@echo "joulegrid: report at $(abspath results/report/index.html)"

test: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	tests/run-tests.sh

setup: $(STAMP) $(QUIET)

$(STAMP): pyproject.toml requirements/constraints.txt
	scripts/setup-system.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements/constraints.txt -e '.[test]'
	touch $(STAMP)

# No HTCondor pool on most hosts: a start-up filter keeps htcondor2 from warning on every
# snakemake call (src/joulegrid/quiet.py, a .pth file in the venv's site-packages).
$(QUIET): $(STAMP) src/joulegrid/quiet.py
	$(BIN)/python -m joulegrid.quiet --install
	touch $(QUIET)

dry-run: setup
	$(BIN)/snakemake -n

plan: setup
	$(BIN)/joulegrid plan

# Regenerate the exact pins after changing pyproject.toml (torch stays at the local CPU wheel).
lock: setup
	$(BIN)/python -m pip freeze --exclude-editable | sed 's/^torch==2.13.0+cpu/torch==2.13.0/' \
	  | cat requirements/constraints.header - > requirements/constraints.txt

bench: setup
	@for s in bench/bench_*.py; do echo "== $$s"; $(BIN)/python $$s || exit 1; done
