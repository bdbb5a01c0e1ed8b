#!/usr/bin/env bash
# CI proof that the set-up works with a CUDA build of torch (what pip picks for `torch==X` on a
# plain package index), without FORCE_CUDA:
#   1. copies the repo's sources to a temp dir (the editable build there must not replace this
#      checkout's scalegmn_ext/_C*.so, which belongs to .venv's torch);
#   2. runs scripts/setup_env.sh there with SCALEGMN_VENV=$SCALEGMN_VENV and
#      TORCH_SPEC=torch==2.14.1 (CUDA 13 build);
#   3. checks the build mode setup.py picked: CPU+CUDA when nvcc is found and a GPU is visible,
#      else CPU-only (the case on a GPU-less CI machine, even with nvcc installed);
#   4. runs a short test subset (77 tests, ~1-2 min on 2 cores) against that build;
#   5. runs the set-up again and checks that it is a no-op.
#
# Environment:
#   SCALEGMN_VENV  the venv to use (created if missing; kept afterwards, so .ci/run hands it to
#                  `make cuda-check` as VENV_CU); default: a venv in the temp dir, deleted
#   TORCH_SPEC     default torch==2.14.1
#   MAX_JOBS       default 2
#   KEEP_TMP=1     keep the temp dir (printed)
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck source=scripts/copy_sources.sh
source "$REPO/scripts/copy_sources.sh"
export TORCH_SPEC="${TORCH_SPEC:-torch==2.14.1}"
export MAX_JOBS="${MAX_JOBS:-2}"
unset FORCE_CUDA FORCE_ONLY_CPU || true  # setup.py's own detection is what is being tested

log() { printf '[cuda-torch-setup] %s\n' "$*"; }
die() { printf '[cuda-torch-setup] ERROR: %s\n' "$*" >&2; exit 1; }
t_start=$SECONDS

TMP="$(mktemp -d "${TMPDIR:-/tmp}/scalegmn-cuda-torch.XXXXXX")"
cleanup() {
  if [ "${KEEP_TMP:-0}" = 1 ]; then log "kept $TMP"; else rm -rf "$TMP"; fi
}
trap cleanup EXIT
export SCALEGMN_VENV="${SCALEGMN_VENV:-$TMP/venv}"

SRC="$TMP/src"
copy_sources "$REPO" "$SRC"
log "copied $(find "$SRC" -type f | wc -l) source files to $SRC; venv $SCALEGMN_VENV; TORCH_SPEC=$TORCH_SPEC"

# 1. Set-up (torch install + build).
t0=$SECONDS
bash "$SRC/scripts/setup_env.sh"
setup_s=$((SECONDS - t0))
PY="$SCALEGMN_VENV/bin/python"

# 2. The build mode must be the one setup.py's detection implies for this machine.
(cd "$TMP" && "$PY" - "$SRC" <<'EOF') || die "build mode check failed"
import os, sys
import torch
from torch.utils import cpp_extension
import scalegmn_ext

src = os.path.realpath(sys.argv[1])
where = os.path.realpath(os.path.dirname(scalegmn_ext.__file__))
assert where == os.path.join(src, "scalegmn_ext"), f"imported {where}, not the copy's editable install"
assert torch.version.cuda is not None, f"torch {torch.__version__} is not a CUDA build"
assert scalegmn_ext.HAS_EXTENSION, "scalegmn_ext._C failed to load"
expect_cuda = cpp_extension.CUDA_HOME is not None and torch.cuda.is_available()
print(f"[cuda-torch-setup] torch {torch.__version__} (CUDA {torch.version.cuda}), "
      f"nvcc: {cpp_extension.CUDA_HOME}, GPU visible: {torch.cuda.is_available()}, "
      f"CUDA kernels built: {scalegmn_ext.has_cuda_kernels()}")
assert scalegmn_ext.has_cuda_kernels() == expect_cuda, \
    f"expected a {'CPU+CUDA' if expect_cuda else 'CPU-only'} build"
EOF

# 3. Short test subset against the CUDA torch build.
t0=$SECONDS
# The graph ops (reference match, opcheck, gradcheck, torch.compile, input errors) and one
# readout of the model's fast-vs-reference + invariance test; gradgrad and the full_graph half
# add a minute on 2 cores and nothing about the set-up.
(cd "$SRC" && "$PY" -m pytest -q -p no:cacheprovider -k "not gradgrad and not full_graph" \
  python_tests/test_graph.py \
  python_tests/test_scalegmn_models.py::test_fast_matches_reference_and_is_invariant) \
  || die "tests failed against torch $TORCH_SPEC"
tests_s=$((SECONDS - t0))

# 4. A second run must change nothing.
t0=$SECONDS
out="$(bash "$SRC/scripts/setup_env.sh")"
printf '%s\n' "$out"
rerun_s=$((SECONDS - t0))
grep -q 'dependencies up to date' <<<"$out" && grep -q 'extension up to date' <<<"$out" \
  || die "the second set-up run was not a no-op"

log "OK: set-up ${setup_s} s, tests ${tests_s} s, no-op re-run ${rerun_s} s, total $((SECONDS - t_start)) s"
