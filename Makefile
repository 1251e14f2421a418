# joulegrid: two commands do everything on a fresh Debian / Python 3.11 machine.
#   make run    set up, run the default grid (config/config.yaml) end to end, print where the report is
#   make test   set up, lint (ruff check, ruff format --check), run the test suite (starts the local Slurm and
#               HTCondor test clusters if it can)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Which torch build the venv gets (docs/sites.md, "CPU-only or CUDA environments"):
#   TORCH=       the pins as they are (torch==2.13.0): on this project's build machines the local CPU
#                wheel 2.13.0+cpu (pip's find-links) satisfies them; on a host with only the public index
#                that is PyPI's torch 2.13.0, the CUDA 13 build with ~2.7 GB of CUDA wheels
#   TORCH=cpu    torch 2.13.0+cpu, from PyTorch's CPU wheel index (TORCH_CPU_INDEX): no CUDA libraries;
#                for laptops and batch nodes without a GPU (lxbatch, Blackett's CPU workers)
#   TORCH=cuda   torch 2.13.0 from PyPI, the CUDA 13 build (never the +cpu wheel): for GPU nodes
# EXTRAS=test (default) adds the test tools; EXTRAS= installs what jobs need only (e.g. for joulegrid pack-env).
TORCH  ?=
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
EXTRAS ?= test
ifneq ($(filter-out cpu cuda,$(TORCH)),)
$(error TORCH=$(TORCH): use TORCH=cpu, TORCH=cuda or leave TORCH unset)
endif
PIP_TORCH_cpu  := -c requirements/torch-cpu.txt --extra-index-url $(TORCH_CPU_INDEX)
PIP_TORCH_cuda := -c requirements/torch-cuda.txt
STAMP  := $(VENV)/.joulegrid-installed$(if $(TORCH),-$(TORCH))
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

$(STAMP): pyproject.toml requirements/constraints.txt $(if $(TORCH),requirements/torch-$(TORCH).txt)
	scripts/setup-system.sh
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements/constraints.txt $(PIP_TORCH_$(TORCH)) -e '.$(if $(EXTRAS),[$(EXTRAS)])'
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
