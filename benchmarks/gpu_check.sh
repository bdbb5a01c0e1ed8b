#!/usr/bin/env bash
# One-call GPU validation for a session that has the `device` tool: run from the repository root
# on the GPU machine, e.g. run(command="bash benchmarks/gpu_check.sh", timeout_s=560).
#
# Builds the extension with its CUDA kernels (FORCE_CUDA=1, sm_90), runs the CUDA-parametrised
# tests, compute-sanitizer memcheck over the op tests, and the benchmarks on CUDA. Every log goes
# to $OUT (the device tool's output folder; default ./gpu_out); summary.txt collects the verdicts.
# Each step has its own time limit so that a hang cannot eat the whole device budget, and the
# steps run cheapest-first so that a cut-off run still returns the build and test verdicts.
# STEPS (default "test,sanitizer,bench") picks steps after the build, so that a second call can
# finish what the first had no time for. Not yet run on a GPU: no session has had one so far.
set -uo pipefail
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} MAX_JOBS=${MAX_JOBS:-16}
PY=${PYTHON:-python3}
STEPS=${STEPS:-test,sanitizer,bench}
S="$OUT/summary.txt"
step() { echo "== $* ($(date +%T))" | tee -a "$S"; }

step "device"
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1
$PY -c "import torch; print(torch.__version__, torch.cuda.get_device_name())" | tee -a "$S"

step "build (pip install --no-build-isolation -e .)"
if ! timeout 300 $PY -m pip install --no-build-isolation --no-deps -e . > "$OUT/build.log" 2>&1; then
  tail -40 "$OUT/build.log" | tee -a "$S"
  exit 1
fi
$PY -c "import scalegmn_ext as sx; assert sx.has_cuda_kernels(), 'no CUDA kernels'; print('CUDA kernels registered')" \
  2>&1 | tee -a "$S"

if [[ $STEPS == *test* ]]; then
step "pytest: CUDA-parametrised tests"
timeout 240 $PY -m pytest -q -p no:cacheprovider python_tests -k "cuda" > "$OUT/pytest_cuda.log" 2>&1
echo "pytest rc=$?; $(tail -1 "$OUT/pytest_cuda.log")" | tee -a "$S"
fi

if [[ $STEPS == *sanitizer* ]]; then
step "compute-sanitizer memcheck (op tests on CUDA)"
timeout 240 compute-sanitizer --tool memcheck --error-exitcode 9 $PY -m pytest -q -p no:cacheprovider \
  python_tests/test_graph.py python_tests/test_segment_gather_mul.py python_tests/test_canonical_segment_sum.py \
  python_tests/test_hash_dropout.py -k "cuda" > "$OUT/sanitizer.log" 2>&1
echo "sanitizer rc=$? (0 = clean, 9 = errors found); $(grep -c 'Invalid' "$OUT/sanitizer.log") invalid accesses" | tee -a "$S"
fi

[[ $STEPS == *bench* ]] || { step "done"; exit 0; }
step "benchmarks"
timeout 150 $PY benchmarks/bench_message.py --device cuda --big --no-readout --json "$OUT/bench_message.json" \
  > "$OUT/bench_message.txt" 2>&1; echo "bench_message rc=$?" | tee -a "$S"
timeout 120 $PY benchmarks/bench_fused.py --device cuda --repeats 5 > "$OUT/bench_fused.txt" 2>&1
echo "bench_fused rc=$?" | tee -a "$S"
timeout 200 $PY benchmarks/bench_scalegmn.py --device cuda --batch 128 --steps 5 > "$OUT/bench_scalegmn.txt" 2>&1
echo "bench_scalegmn rc=$?" | tee -a "$S"
timeout 120 $PY benchmarks/bench_graph.py --device cuda > "$OUT/bench_graph.txt" 2>&1
echo "bench_graph rc=$?" | tee -a "$S"
step "done"
