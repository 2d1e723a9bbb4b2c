# Every target bootstraps .venv on first use, so a fresh clone needs nothing but python3 (3.11+).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
CONFIG ?= experiments/default.toml
# results/NAME for experiments/NAME.toml
OUT    ?= results/$(basename $(notdir $(CONFIG)))
# The accelerator build of jax: cuda where nvidia-smi sees a GPU, tpu on a TPU VM, else the CPU build.
ACCEL  ?= $(shell if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then echo cuda; \
                  elif [ -e /dev/accel0 ] || [ -n "$$TPU_NAME" ]; then echo tpu; fi)
comma  := ,
EXTRAS := dev$(if $(ACCEL),$(comma)$(ACCEL))
STAMP  := $(VENV)/.installed-$(or $(ACCEL),cpu)

.PHONY: sweep analyze test lint bench profile profile-compile clean venv readme-figure device-check bench-cluster

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -e '.[$(EXTRAS)]'
	@touch $@

sweep: $(STAMP)
	$(BIN)/scaling sweep $(CONFIG) --out $(OUT) $(if $(FRESH),--fresh)
	$(BIN)/scaling analyze $(OUT)

analyze: $(STAMP)
	$(BIN)/scaling analyze $(OUT)

test: $(STAMP)
	$(BIN)/python -m pytest -q

# The lint rules live in pyproject.toml ([tool.ruff]).
lint: $(STAMP)
	$(BIN)/ruff check .

# The engine against its baselines (bench.json), then the cluster bench where there are two cores to pin.
bench: $(STAMP)
	$(BIN)/scaling bench --out bench.json
	@if [ "$$($(BIN)/python -c 'import os; print(len(os.sched_getaffinity(0)))')" -ge 2 ]; then \
		$(BIN)/scaling bench --processes 2 --out bench-cluster.json; \
	else echo "bench-cluster skipped: it pins two processes to a core each, and this machine lets it use one"; fi

# Two local processes of one cluster, one core each, against one process on one core (the bench workload
# and a study of 8 cells).
bench-cluster: $(STAMP)
	$(BIN)/scaling bench --processes 2 --out bench-cluster.json

# Where a training step's time goes, and how well the cost model predicts it (a few minutes).
profile: $(STAMP)
	$(BIN)/python -m scaling.benchmarks.profile

# On a machine with a GPU or TPU: the default sweep cold, a measured subset of paper.toml against its forecast,
# and that subset against a CPU run; every figure in one JSON file, in at most 8 minutes; never part of CI.
# By default in .venv with the accelerator build of jax; VENV=none runs on $(PYTHON) as it is, installing
# nothing (a machine with jax and its plugin but no package registry): make device-check PYTHON=python3 VENV=none
# CHECK=FILE names the JSON file, KEEP=DIR also keeps each sweep's store and log there, MINUTES=M sets the budget.
CHECK ?= device-check.json
CHECK_ARGS = --out $(CHECK) $(if $(KEEP),--keep $(KEEP)) $(if $(MINUTES),--minutes $(MINUTES))
ifeq ($(VENV),none)
device-check:
	PYTHONPATH=$(CURDIR)$${PYTHONPATH:+:$$PYTHONPATH} $(PYTHON) -m scaling.benchmarks.device_check $(CHECK_ARGS)
else
device-check: $(STAMP)
	$(BIN)/python -m scaling.benchmarks.device_check $(CHECK_ARGS)
endif

# Where the engine's compile time goes: lowering and XLA compile seconds per program kind and shape.
profile-compile: $(STAMP)
	$(BIN)/python -m scaling.benchmarks.compile_profile --out compile-profile.json

# The README's figure: copied from a real `make sweep` (never edited by hand).
# The README's figures: units_vs_bits of the default run, and tc_vs_n of a sparse-parity run
# (make readme-figure CONFIG=experiments/sparse_parity.toml FIGURE=tc_vs_n).
FIGURE ?= units_vs_bits
readme-figure:
	@test -f $(OUT)/figures/$(FIGURE).png || { echo "no $(OUT)/figures/$(FIGURE).png: run make sweep first"; exit 2; }
	mkdir -p experiments/figures
	cp $(OUT)/figures/$(FIGURE).png experiments/figures/$(FIGURE).png

clean:
	rm -rf results bench.json .pytest_cache
