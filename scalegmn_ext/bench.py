"""Graph-op benchmark core (used by benchmarks/bench_graph.py and the demo).

Batched weights <-> graph ops vs the per-network dense-adjacency path.

For each case it times, on the same inputs (outputs checked equal before timing):
  * ``op``        -- torch.ops.scalegmn.weights_to_graph / graph_to_weights (compiled kernels)
  * ``reference`` -- the package's vectorised pure-PyTorch reference (pad + cat / slicing)
  * ``per-net``   -- the public code bases' method: a Python loop over networks, each through a
                     dense [N, N, K] edge matrix gathered at the edge list (inverse: scattered
                     into it and sliced)

"""
from __future__ import annotations

import time

import torch
from torch.utils import benchmark as tb

from .arch import Architecture
from .reference import graph as ref
from .testing import random_weights

CASES = [("INR 2-32-32-1", "siren", 128), ("INR 2-32-32-1", "siren", 1024), ("INR 2-32-32-1", "siren", 8192),
         ("Small CNN Zoo", "cnn", 1024)]
SMOKE = [("INR 2-32-32-1", "siren", 16), ("Small CNN Zoo", "cnn", 8)]


def _arch(kind):
    return Architecture.siren() if kind == "siren" else Architecture.small_cnn_zoo()


def _sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _time(fn, device, min_run_time):
    """Median seconds per call (torch.utils.benchmark; one timed call for very slow functions)."""
    fn()
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    once = time.perf_counter() - t0
    if once > min_run_time:
        return once
    m = tb.Timer("fn()", globals={"fn": fn}, num_threads=torch.get_num_threads()).blocked_autorange(min_run_time=min_run_time)
    return m.median


def run_graph_case(label, kind, B, device, dtype, min_run_time, per_net_max):
    arch = _arch(kind)
    Kh, Kw = arch.max_kernel_size
    meta = (list(arch.layout), [l.kernel_size[0] for l in arch.layers], [l.kernel_size[1] for l in arch.layers],
            [l.is_conv for l in arch.layers], Kh, Kw, True)
    ws, bs = random_weights(arch, B, dtype=dtype, device=device, generator=torch.Generator().manual_seed(B))
    op_fwd = lambda: torch.ops.scalegmn.weights_to_graph(ws, bs, Kh, Kw, True, 1.0)
    ref_fwd = lambda: ref.weights_to_graph(ws, bs, Kh, Kw, True, 1.0)
    node, edge = op_fwd()
    op_inv = lambda: torch.ops.scalegmn.graph_to_weights(node, edge, *meta)
    ref_inv = lambda: ref.graph_to_weights(node, edge, *meta)
    # per-network baseline on a slice when B is huge (it is linear in B): time, then scale
    Bp = min(B, per_net_max)
    wsp, bsp = [w[:Bp] for w in ws], [b[:Bp] for b in bs]
    pn_fwd = lambda: ref.dense_adjacency_graph(wsp, bsp, Kh, Kw, True, 1.0)
    pn_inv = lambda: ref.dense_adjacency_inverse(node[:Bp], edge[:Bp], *meta)
    # correctness before timing
    rn, re = ref_fwd()
    assert torch.equal(node, rn) and torch.equal(edge, re)
    pn, pe = pn_fwd()
    assert torch.equal(pn.to(device), node[:Bp]) and torch.equal(pe.to(device), edge[:Bp])
    w2, _ = op_inv()
    assert all(torch.equal(a, b) for a, b in zip(w2, ws))
    pw, _ = pn_inv()
    assert all(torch.equal(a, b[:Bp]) for a, b in zip(pw, ws))
    row = {"case": label, "B": B, "device": device, "dtype": str(dtype).replace("torch.", ""),
           "E": arch.num_edges, "K": arch.edge_dim, "per_net_batch": Bp}
    for name, fn, scale in (("op_fwd", op_fwd, 1), ("ref_fwd", ref_fwd, 1), ("pernet_fwd", pn_fwd, B / Bp),
                            ("op_inv", op_inv, 1), ("ref_inv", ref_inv, 1), ("pernet_inv", pn_inv, B / Bp)):
        row[name] = _time(fn, device, min_run_time) * scale
    moved = 2 * (node.numel() + edge.numel()) * node.element_size()  # read weights + write graph (approx.)
    row["op_fwd_GBps"] = moved / row["op_fwd"] / 1e9
    return row


def graph_table(rows):
    head = ("| case | B | device | op fwd (ms) | ref fwd (ms) | per-net fwd (ms) | op vs per-net | op vs ref "
            "| op inv (ms) | ref inv (ms) | per-net inv (ms) | inv: op vs per-net | op fwd GB/s |")
    lines = [head, "|" + "---|" * 13]
    for r in rows:
        lines.append(
            f"| {r['case']} | {r['B']} | {r['device']} | {r['op_fwd']*1e3:.3f} | {r['ref_fwd']*1e3:.3f} | "
            f"{r['pernet_fwd']*1e3:.1f}{'*' if r['per_net_batch'] < r['B'] else ''} | "
            f"{r['pernet_fwd']/r['op_fwd']:.0f}x | {r['ref_fwd']/r['op_fwd']:.1f}x | {r['op_inv']*1e3:.3f} | "
            f"{r['ref_inv']*1e3:.3f} | {r['pernet_inv']*1e3:.1f}{'*' if r['per_net_batch'] < r['B'] else ''} | "
            f"{r['pernet_inv']/r['op_inv']:.0f}x | {r['op_fwd_GBps']:.2f} |")
    return "\n".join(lines)
