"""Benchmark: the fused CSR message op and the canonical readout vs unfused PyTorch.

Message passing on B batched INR graphs (Architecture.siren(): 67 nodes / 1120 edges per
network; CSR from ``CSR.for_graph(graph_structure(arch), B)``), C channels:

  * ``op``  -- ``segment_gather_mul(x, edge, csr)``: gather * edge -> segment sum in one kernel,
               backward = segment_gather_mul on the transposed CSR (dx) + gather_mul_csr (dedge)
  * ``ref`` -- ``zeros(N, C).index_add_(0, dst, x[src] * edge)`` and its autograd backward

fwd = forward only (no_grad); fwd+bwd = forward + ``torch.autograd.grad`` w.r.t. x and edge.
GB/s counts the bytes that must move: x rows gathered + edge read + output written (fwd), plus
the same for the backward w.r.t. x and 2 gathered rows + the written [E, C] gradient for the
backward w.r.t. edge. Outputs and gradients are checked against the reference before timing.
Times are the best of --repeats interleaved ``blocked_autorange`` medians (median of them in
parentheses): other processes on a shared machine make single runs noisy.

A second table relates the op's forward GB/s to the device's measured copy bandwidth (the GPU
target is >= 70 % at B >= 1024; run with --big). The readout table times canonical_segment_sum (hidden neurons, one segment per network) vs the
reference (canonicalise the [N, C] rows, mask, index_add).

Usage:
    python benchmarks/bench_message.py              # the RESULTS table (CPU; CUDA too if present)
    python benchmarks/bench_message.py --big        # also B=1024, C=128 (~0.6 GB edge tensors)
    python benchmarks/bench_message.py --smoke      # tiny sizes, seconds
    python benchmarks/bench_message.py --threads 1  # single-threaded (least noisy on a busy machine)
"""

from __future__ import annotations

import argparse
import platform
import sys

import torch

import scalegmn_ext as sx
from scalegmn_ext._io import atomic_write_json
from scalegmn_ext.tasks.bench import (
    MESSAGE_CASES,
    MESSAGE_CASES_BIG,
    MESSAGE_SMOKE,
    copy_bandwidth,
    message_table,
    readout_table,
    run_message_case,
    run_readout_case,
)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", action="append", help="cpu and/or cuda (default: cpu, plus cuda if available)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64", "float16", "bfloat16"])
    p.add_argument("--smoke", action="store_true", help="tiny sizes (seconds)")
    p.add_argument("--big", action="store_true", help="also B=1024, C=128")
    p.add_argument("--no-readout", action="store_true", help="skip the readout table")
    p.add_argument("--min-run-time", type=float, default=0.5, help="seconds per blocked_autorange")
    p.add_argument("--repeats", type=int, default=3, help="interleaved timing rounds (best and median reported)")
    p.add_argument(
        "--threads",
        type=int,
        help="torch.set_num_threads (default: torch's default). On a shared "
        "machine 1 thread is the least noisy: a descheduled OpenMP thread stalls the others' barrier",
    )
    p.add_argument("--json", help="also write the rows to this JSON file (atomically)")
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    sx._library.require_extension()
    devices = a.device or (["cpu"] + (["cuda"] if torch.cuda.is_available() and sx.has_cuda_kernels() else []))
    dtype = getattr(torch, a.dtype)
    cases = MESSAGE_SMOKE if a.smoke else MESSAGE_CASES + (MESSAGE_CASES_BIG if a.big else [])
    mrt, reps = (0.05, 1) if a.smoke else (a.min_run_time, a.repeats)
    print(
        f"# bench_message: torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads, dtype {a.dtype}",
        flush=True,
    )
    rows, rrows = [], []
    for dev in devices:
        for B, C in cases:
            r = run_message_case(B, C, dev, dtype, mrt, reps)
            rows.append(r)
            print(
                f"  B={B} C={C} {dev}: op fwd+bwd {r['op_fb'] * 1e3:.2f} ms, ref {r['ref_fb'] * 1e3:.2f} ms "
                f"({r['ref_fb'] / r['op_fb']:.1f}x)",
                file=sys.stderr,
                flush=True,
            )
        if not a.no_readout:
            for B, C in [(4, 16)] if a.smoke else [(128, 128), (1024, 32)]:
                for mode in ("abs", "l2"):
                    rrows.append(run_readout_case(B, C, mode, dev, dtype, mrt, reps))
    print("\n## segment_gather_mul vs index_add reference (best (median) of repeats)\n")
    print(message_table(rows))
    copy = {dev: copy_bandwidth(dev, 16 * 2**20 if a.smoke else 256 * 2**20, mrt) for dev in devices}
    print("\n## op forward bandwidth as a fraction of the measured copy bandwidth\n")
    print("| device | B | C | copy GB/s | op fwd GB/s | fraction |\n|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['device']} | {r['B']} | {r['C']} | {copy[r['device']]:.1f} | {r['op_fwd_GBps']:.1f} | "
            f"{r['op_fwd_GBps'] / copy[r['device']]:.0%} |"
        )
    if rrows:
        print("\n## canonical_segment_sum vs reference (best of repeats)\n")
        print(readout_table(rrows))
    if a.json:
        atomic_write_json(a.json, {"message": rows, "readout": rrows, "copy_GBps": copy})
    return rows, rrows


if __name__ == "__main__":
    main()
