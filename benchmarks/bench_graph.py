"""Benchmark: batched weights <-> graph ops vs the per-network dense-adjacency path.

For each case it times, on the same inputs (outputs checked equal before timing):
  * ``op``        -- torch.ops.scalegmn.weights_to_graph / graph_to_weights (compiled kernels)
  * ``reference`` -- the package's vectorised pure-PyTorch reference (pad + cat / slicing)
  * ``per-net``   -- the public code bases' method: a Python loop over networks, each through a
                     dense [N, N, K] edge matrix gathered at the edge list (inverse: scattered
                     into it and sliced)

``--vs-copy`` instead times, in one run and per thread count, the compiled op vs the reference vs
``clone()`` of a buffer as large as the op's output (both directions, B = 1 ... 8192, INR and
Small CNN Zoo), and reports GB/s = (bytes read + written) / time and the op's fraction of the
clone's GB/s. Times are the best of --repeats interleaved blocked_autorange medians (median of
them in parentheses), so that another process on a shared machine does not decide the result.

Usage:
    python benchmarks/bench_graph.py                 # the RESULTS.md table (CPU; CUDA if present)
    python benchmarks/bench_graph.py --smoke         # tiny sizes, seconds
    python benchmarks/bench_graph.py --vs-copy --threads 1 2   # op vs reference vs clone
    python benchmarks/bench_graph.py --device cuda --json out.json
"""

from __future__ import annotations

import argparse
import platform
import sys

import torch

import scalegmn_ext as sx
from scalegmn_ext._io import atomic_write_json
from scalegmn_ext.tasks.bench import (
    CASES,
    COPY_CASES,
    COPY_SMOKE,
    SMOKE,
    graph_copy_table,
    graph_table,
    run_graph_case,
    run_graph_copy_case,
)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", action="append", help="cpu and/or cuda (default: cpu, plus cuda if available)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64", "float16", "bfloat16"])
    p.add_argument("--smoke", action="store_true", help="tiny sizes (seconds)")
    p.add_argument("--min-run-time", type=float, default=0.5, help="seconds of timing per measurement")
    p.add_argument(
        "--per-net-max",
        type=int,
        default=1024,
        help="time the per-network baseline on at most this many networks and scale linearly (*)",
    )
    p.add_argument("--vs-copy", action="store_true", help="op vs reference vs clone of the same bytes, GB/s")
    p.add_argument(
        "--threads",
        type=int,
        nargs="+",
        help="--vs-copy: torch.set_num_threads values to run (default: torch's default)",
    )
    p.add_argument("--repeats", type=int, default=5, help="--vs-copy: interleaved timing rounds")
    p.add_argument("--json", help="also write the rows to this JSON file (atomically)")
    a = p.parse_args(argv)
    sx._library.require_extension()
    devices = a.device or (["cpu"] + (["cuda"] if torch.cuda.is_available() and sx.has_cuda_kernels() else []))
    dtype = getattr(torch, a.dtype)
    if a.vs_copy:
        return _vs_copy(a, devices, dtype)
    cases = SMOKE if a.smoke else CASES
    rows = []
    print(
        f"# bench_graph: torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads, dtype {a.dtype}",
        flush=True,
    )
    for dev in devices:
        for label, kind, B in cases:
            r = run_graph_case(label, kind, B, dev, dtype, 0.05 if a.smoke else a.min_run_time, a.per_net_max)
            rows.append(r)
            print(
                f"  {label} B={B} {dev}: op {r['op_fwd'] * 1e3:.3f} ms, per-net {r['pernet_fwd'] * 1e3:.1f} ms "
                f"({r['pernet_fwd'] / r['op_fwd']:.0f}x)",
                file=sys.stderr,
                flush=True,
            )
    print(graph_table(rows))
    if any(r["per_net_batch"] < r["B"] for r in rows):
        print("\n(*) per-network time measured on the first --per-net-max networks and scaled linearly to B.")
    if a.json:
        atomic_write_json(a.json, rows)
    return rows


def _vs_copy(a, devices, dtype):
    rows = []
    for threads in a.threads or [torch.get_num_threads()]:
        torch.set_num_threads(threads)
        print(
            f"# bench_graph --vs-copy: torch {torch.__version__}, {platform.processor() or platform.machine()}, "
            f"{threads} threads, dtype {a.dtype}",
            file=sys.stderr,
            flush=True,
        )
        for dev in devices:
            for label, kind, B in COPY_SMOKE if a.smoke else COPY_CASES:
                r = run_graph_copy_case(
                    label, kind, B, dev, dtype, 0.02 if a.smoke else a.min_run_time, 1 if a.smoke else a.repeats
                )
                rows.append(r)
                print(
                    f"  {label} B={B} {dev} {threads}t: fwd op/ref/clone {r['op_fwd'] * 1e3:.3f}/{r['ref_fwd'] * 1e3:.3f}/"
                    f"{r['copy_fwd'] * 1e3:.3f} ms, inv {r['op_inv'] * 1e3:.3f}/{r['ref_inv'] * 1e3:.3f}/"
                    f"{r['copy_inv'] * 1e3:.3f} ms",
                    file=sys.stderr,
                    flush=True,
                )
    print(graph_copy_table(rows))
    if a.json:
        atomic_write_json(a.json, rows)
    return rows


if __name__ == "__main__":
    main()
