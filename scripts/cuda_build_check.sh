#!/usr/bin/env bash
# Compile check of the CUDA kernels without a GPU.
#
# Copies the repo's sources (tracked + untracked, not ignored; never build/, *.so, .venv) to a
# temp dir, builds the extension there with FORCE_CUDA=1 against a CUDA build of torch
# (torch==2.14.1, CUDA 13, nvcc from CUDA_HOME), installs it into a venv, then imports
# scalegmn_ext from outside any source tree and asserts the dispatcher has a CUDA kernel for
# scalegmn::weights_to_graph. Nothing is run on a GPU.
#
# Environment:
#   VENV_CU=/path    reuse this venv (must hold torch 2.14.x CUDA build); default: a fresh
#                    venv in the temp dir (downloads/installs ~5.5 GB; deleted afterwards)
#   CUDA_HOME        default /usr/local/cuda
#   TORCH_CUDA_ARCH_LIST  default 9.0 (H100/H200)
#   MAX_JOBS         default 2
#   KEEP_TMP=1       keep the temp dir (printed) for inspection
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/copy_sources.sh
source "$REPO/scripts/copy_sources.sh"
TORCH_CU_VERSION="${TORCH_CU_VERSION:-2.14.1}"
export CUDA_HOME="${CUDA_HOME:-/usr/local/cuda}"
export TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0}"
export MAX_JOBS="${MAX_JOBS:-2}"
export FORCE_CUDA=1
unset FORCE_ONLY_CPU || true
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

log() { printf '[cuda-check] %s\n' "$*"; }
die() { printf '[cuda-check] ERROR: %s\n' "$*" >&2; exit 1; }

t_start=$SECONDS
[ -x "$CUDA_HOME/bin/nvcc" ] || die "no nvcc at $CUDA_HOME/bin/nvcc (set CUDA_HOME)"
log "nvcc: $("$CUDA_HOME/bin/nvcc" --version | tail -n 2 | head -n 1)"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/scalegmn-cuda-check.XXXXXX")"
cleanup() {
  if [ "${KEEP_TMP:-0}" = 1 ]; then log "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT

# 1. Copy the sources.
SRC="$TMP/src"
copy_sources "$REPO" "$SRC"
log "copied $(find "$SRC" -type f | wc -l) source files to $SRC"

# 2. The venv with the CUDA build of torch.
if [ -n "${VENV_CU:-}" ]; then
  VENV="$VENV_CU"
  [ -x "$VENV/bin/python" ] || die "VENV_CU=$VENV has no bin/python"
  log "reusing venv $VENV"
else
  VENV="$TMP/venv"
  log "creating venv $VENV"
  python3 -m venv "$VENV"
  t0=$SECONDS
  log "installing torch==$TORCH_CU_VERSION (CUDA build) + build deps ..."
  "$VENV/bin/pip" install -q "torch==$TORCH_CU_VERSION"
  log "  torch installed in $((SECONDS - t0)) s"
fi
PY="$VENV/bin/python"
# Build deps (no-op when present); scipy is an install_requires of the package.
"$VENV/bin/pip" install -q numpy ninja pybind11 setuptools wheel scipy
"$PY" - <<'EOF' || die "the venv's torch is not a CUDA build"
import torch
print(f"[cuda-check] torch {torch.__version__}, torch.version.cuda={torch.version.cuda}, "
      f"cuda available={torch.cuda.is_available()}")
assert torch.version.cuda is not None
EOF

# 3. cuBLAS/cuSPARSE headers (torch's CUDA headers include them) come with the nvidia wheels.
SITE="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
NV_INC="$SITE/nvidia/cu13/include"
[ -d "$NV_INC" ] || die "missing $NV_INC (cuBLAS/cuSPARSE headers of the nvidia cu13 wheels)"
export CPATH="$NV_INC${CPATH:+:$CPATH}"

# 4. Build + install (non-editable) from the temp copy.
log "building with FORCE_CUDA=1 CUDA_HOME=$CUDA_HOME TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST MAX_JOBS=$MAX_JOBS"
t0=$SECONDS
if ! (cd "$SRC" && "$VENV/bin/pip" install --no-build-isolation --no-deps -v . >"$TMP/build.log" 2>&1); then
  grep -nE 'error|Error|FAILED' "$TMP/build.log" | head -n 60 >&2 || true
  echo "----- last 80 lines of the build log -----" >&2
  tail -n 80 "$TMP/build.log" >&2
  die "build failed"
fi
build_s=$((SECONDS - t0))
grep -F '[scalegmn_ext] building' "$TMP/build.log" | head -n 1 || true
grep -q 'graph_kernel.cu' "$TMP/build.log" || die "the build log never mentions graph_kernel.cu"
log "build + install: ${build_s} s"

# 5. Import from outside the source tree and check the dispatcher.
mkdir -p "$TMP/run"
(cd "$TMP/run" && "$PY" - "$SRC" <<'EOF') || die "import / dispatch check failed"
import os, sys
import torch
import scalegmn_ext

src = os.path.realpath(sys.argv[1])
where = os.path.realpath(os.path.dirname(scalegmn_ext.__file__))
print(f"[cuda-check] imported scalegmn_ext from {where}")
assert not where.startswith(src + os.sep), "imported the source copy, not the installed package"
assert scalegmn_ext.HAS_EXTENSION, "scalegmn_ext._C failed to load"
keys = ["CPU", "CUDA", "Meta", "Autograd", "AutogradCPU", "AutogradCUDA",
        "CompositeImplicitAutograd", "CompositeExplicitAutograd"]
for op in ("scalegmn::weights_to_graph", "scalegmn::graph_to_weights"):
    have = [k for k in keys if torch._C._dispatch_has_kernel_for_dispatch_key(op, k)]
    print(f"[cuda-check] {op}: registered dispatch keys: {', '.join(have)}")
print(torch._C._dispatch_dump("scalegmn::weights_to_graph"))
assert torch._C._dispatch_has_kernel_for_dispatch_key("scalegmn::graph_to_weights", "CUDA"), \
    "no CUDA kernel for scalegmn::graph_to_weights"
assert scalegmn_ext.has_cuda_kernels(), "no CUDA kernel for scalegmn::weights_to_graph"
print("[cuda-check] has_cuda_kernels() = True")
EOF

log "OK: CUDA kernels compile and register (build ${build_s} s, total $((SECONDS - t_start)) s)"
