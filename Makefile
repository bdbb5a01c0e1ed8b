# Developer entry points. Quick start: `make demo`, `make test`.
# `setup` (run by demo/test/bench) creates .venv with torch 2.13 and builds the extension; it is
# idempotent and only rebuilds when setup.py/pyproject.toml/csrc/** or the torch change.
# SCALEGMN_VENV=/path/venv and TORCH_SPEC=... (see scripts/setup_env.sh) choose another venv/torch.
SHELL := /bin/bash
VENV := $(or $(SCALEGMN_VENV),.venv)
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
DEMO_ARGS ?=

.PHONY: all setup demo demo-checks test lint format fuzz bench cuda-check clean distclean

all: test

setup:
	bash scripts/setup_env.sh

# The main job: model merging end to end (scalegmn-ext merge-demo, ~7 min on 2 cores).
demo: setup
	$(VENV)/bin/scalegmn-ext merge-demo $(DEMO_ARGS)

# The exactness checks on real zoos (the previous main job, ~50 s).
demo-checks: setup
	$(VENV)/bin/scalegmn-ext demo $(DEMO_ARGS)

test: setup
	$(PY) -m pytest -q python_tests $(PYTEST_ARGS)

# Style checks (run by .ci/run before the tests): ruff lint + format, clang-format on csrc/.
CSRC := $(shell git ls-files 'csrc/*.h' 'csrc/*.cpp' 'csrc/*.cu' 'csrc/*.cuh' 2>/dev/null)
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/clang-format --style=file --dry-run --Werror $(CSRC)

# Applies both formatters in place.
format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .
	$(VENV)/bin/clang-format --style=file -i $(CSRC)

# Property-based fuzzing of every torch.ops.scalegmn op (python_tests/test_fuzz_ops.py) with
# SCALEGMN_FUZZ_CASES cases (default 12000; `make test` runs 2400); SCALEGMN_FUZZ_SEED=N for new cases.
SCALEGMN_FUZZ_CASES ?= 12000
fuzz: setup
	SCALEGMN_FUZZ_CASES=$(SCALEGMN_FUZZ_CASES) $(PY) -m pytest -q -s python_tests/test_fuzz_ops.py $(PYTEST_ARGS)

bench: setup
	$(PY) benchmarks/bench_graph.py

# Compile check of the CUDA kernels without a GPU (torch 2.14.1 CUDA build, nvcc in CUDA_HOME).
# Set VENV_CU=/path/to/venv to reuse a venv that already has torch 2.14.1.
cuda-check:
	bash scripts/cuda_build_check.sh

# Removes build outputs (including the in-tree scalegmn_ext/_C*.so); keeps .venv.
clean:
	rm -rf build dist *.egg-info .pytest_cache
	rm -f scalegmn_ext/_C*.so $(VENV)/.scalegmn_ext_stamp
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

# clean + remove .venv (never a venv named by SCALEGMN_VENV, which may be the user's own).
distclean: clean
	rm -rf .venv
