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

from ..reference import graph as ref
from ..testing import random_weights
from ..weightspace.architecture import Architecture

CASES = [
    ("INR 2-32-32-1", "siren", 128),
    ("INR 2-32-32-1", "siren", 1024),
    ("INR 2-32-32-1", "siren", 8192),
    ("Small CNN Zoo", "cnn", 1024),
]
SMOKE = [("INR 2-32-32-1", "siren", 16), ("Small CNN Zoo", "cnn", 8)]


def _arch(kind):
    return Architecture.siren() if kind == "siren" else Architecture.small_cnn_zoo()


def _sync(device):
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _autorange_median(fn, min_run_time) -> float:
    return (
        tb.Timer("fn()", globals={"fn": fn}, num_threads=torch.get_num_threads())
        .blocked_autorange(min_run_time=min_run_time)
        .median
    )


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
    return _autorange_median(fn, min_run_time)


def run_graph_case(label, kind, B, device, dtype, min_run_time, per_net_max):
    arch = _arch(kind)
    Kh, Kw = arch.max_kernel_size
    meta = (
        list(arch.layout),
        [l.kernel_size[0] for l in arch.layers],
        [l.kernel_size[1] for l in arch.layers],
        [l.is_conv for l in arch.layers],
        Kh,
        Kw,
        True,
    )
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
    row = {
        "case": label,
        "B": B,
        "device": device,
        "dtype": str(dtype).replace("torch.", ""),
        "E": arch.num_edges,
        "K": arch.edge_dim,
        "per_net_batch": Bp,
    }
    for name, fn, scale in (
        ("op_fwd", op_fwd, 1),
        ("ref_fwd", ref_fwd, 1),
        ("pernet_fwd", pn_fwd, B / Bp),
        ("op_inv", op_inv, 1),
        ("ref_inv", ref_inv, 1),
        ("pernet_inv", pn_inv, B / Bp),
    ):
        row[name] = _time(fn, device, min_run_time) * scale
    moved = 2 * (node.numel() + edge.numel()) * node.element_size()  # read weights + write graph (approx.)
    row["op_fwd_GBps"] = moved / row["op_fwd"] / 1e9
    return row


def graph_table(rows):
    head = (
        "| case | B | device | op fwd (ms) | ref fwd (ms) | per-net fwd (ms) | op vs per-net | op vs ref "
        "| op inv (ms) | ref inv (ms) | per-net inv (ms) | inv: op vs per-net | op fwd GB/s |"
    )
    lines = [head, "|" + "---|" * 13]
    for r in rows:
        lines.append(
            f"| {r['case']} | {r['B']} | {r['device']} | {r['op_fwd'] * 1e3:.3f} | {r['ref_fwd'] * 1e3:.3f} | "
            f"{r['pernet_fwd'] * 1e3:.1f}{'*' if r['per_net_batch'] < r['B'] else ''} | "
            f"{r['pernet_fwd'] / r['op_fwd']:.0f}x | {r['ref_fwd'] / r['op_fwd']:.1f}x | {r['op_inv'] * 1e3:.3f} | "
            f"{r['ref_inv'] * 1e3:.3f} | {r['pernet_inv'] * 1e3:.1f}{'*' if r['per_net_batch'] < r['B'] else ''} | "
            f"{r['pernet_inv'] / r['op_inv']:.0f}x | {r['op_fwd_GBps']:.2f} |"
        )
    return "\n".join(lines)


# Copy-bandwidth mode of bench_graph.py (--vs-copy): compiled op vs reference vs a clone of the
# same bytes, both directions, without the (slow) per-network baseline.
COPY_CASES = [("INR 2-32-32-1", "siren", B) for B in (1, 8, 128, 1024, 8192)] + [
    ("Small CNN Zoo", "cnn", B) for B in (1, 8, 128, 1024, 8192)
]
COPY_SMOKE = [("INR 2-32-32-1", "siren", 4), ("Small CNN Zoo", "cnn", 2)]


def run_graph_copy_case(label, kind, B, device, dtype, min_run_time, repeats):
    """weights_to_graph / graph_to_weights: compiled op vs the pure-PyTorch reference vs ``clone()``
    of a flat buffer as large as the op's output (fresh allocation, like the op's).

    GB/s = (bytes read + bytes written) / time: forward reads weights + biases and writes node +
    edge; the inverse reads node + edge and writes weights + biases; a clone of n bytes moves 2n.
    ``*_vs_copy`` is the op's (or reference's) GB/s as a fraction of the clone's.
    """
    arch = _arch(kind)
    Kh, Kw = arch.max_kernel_size
    meta = (
        list(arch.layout),
        [l.kernel_size[0] for l in arch.layers],
        [l.kernel_size[1] for l in arch.layers],
        [l.is_conv for l in arch.layers],
        Kh,
        Kw,
        True,
    )
    ws, bs = random_weights(arch, B, dtype=dtype, device=device, generator=torch.Generator().manual_seed(B))
    node, edge = torch.ops.scalegmn.weights_to_graph(ws, bs, Kh, Kw, True, 1.0)
    rn, re = ref.weights_to_graph(ws, bs, Kh, Kw, True, 1.0)
    assert torch.equal(node, rn) and torch.equal(edge, re), "weights_to_graph differs from the reference"
    w2, b2 = torch.ops.scalegmn.graph_to_weights(node, edge, *meta)
    rw, rb = ref.graph_to_weights(node, edge, *meta)
    assert all(torch.equal(a, b) and torch.equal(a, c) for a, b, c in zip(w2 + b2, ws + bs, rw + rb)), (
        "graph_to_weights differs from the reference or the weights"
    )
    el = node.element_size()
    w_bytes = sum(t.numel() for t in ws + bs) * el
    g_bytes = (node.numel() + edge.numel()) * el
    fwd_buf = torch.empty(g_bytes // el, dtype=dtype, device=device).uniform_()
    inv_buf = torch.empty(w_bytes // el, dtype=dtype, device=device).uniform_()
    fns = {
        "op_fwd": lambda: torch.ops.scalegmn.weights_to_graph(ws, bs, Kh, Kw, True, 1.0),
        "ref_fwd": lambda: ref.weights_to_graph(ws, bs, Kh, Kw, True, 1.0),
        "copy_fwd": lambda: fwd_buf.clone(),
        "op_inv": lambda: torch.ops.scalegmn.graph_to_weights(node, edge, *meta),
        "ref_inv": lambda: ref.graph_to_weights(node, edge, *meta),
        "copy_inv": lambda: inv_buf.clone(),
    }
    t = _best_and_median(fns, device, min_run_time, repeats)
    row = {
        "case": label,
        "B": B,
        "device": device,
        "dtype": str(dtype).replace("torch.", ""),
        "threads": torch.get_num_threads(),
        "fwd_bytes": w_bytes + g_bytes,
        "inv_bytes": w_bytes + g_bytes,
        "fwd_copy_bytes": 2 * g_bytes,
        "inv_copy_bytes": 2 * w_bytes,
    }
    for k, (best, med) in t.items():
        row[k], row[k + "_median"] = best, med
    for d in ("fwd", "inv"):
        copy_gbps = row[f"{d}_copy_bytes"] / row[f"copy_{d}"] / 1e9
        row[f"copy_{d}_GBps"] = copy_gbps
        for impl in ("op", "ref"):
            row[f"{impl}_{d}_GBps"] = row[f"{d}_bytes"] / row[f"{impl}_{d}"] / 1e9
            row[f"{impl}_{d}_vs_copy"] = row[f"{impl}_{d}_GBps"] / copy_gbps
    return row


def graph_copy_table(rows):
    """One line per (case, B, threads, direction): times (best, median), ref/op, GB/s, % of clone."""
    head = (
        "| case | B | threads | dir | op (ms) | ref (ms) | clone (ms) | ref / op | op GB/s | ref GB/s "
        "| clone GB/s | op % of clone |"
    )
    lines = [head, "|" + "---|" * 12]
    for r in rows:
        for d, name in (("fwd", "weights_to_graph"), ("inv", "graph_to_weights")):
            lines.append(
                f"| {r['case']} | {r['B']} | {r['threads']} | {name} | {r[f'op_{d}'] * 1e3:.4g} ({r[f'op_{d}_median'] * 1e3:.4g}) | "
                f"{r[f'ref_{d}'] * 1e3:.4g} ({r[f'ref_{d}_median'] * 1e3:.4g}) | {r[f'copy_{d}'] * 1e3:.4g} | "
                f"{r[f'ref_{d}'] / r[f'op_{d}']:.2f}x | {r[f'op_{d}_GBps']:.2f} | {r[f'ref_{d}_GBps']:.2f} | "
                f"{r[f'copy_{d}_GBps']:.2f} | {100 * r[f'op_{d}_vs_copy']:.0f} % |"
            )
    return "\n".join(lines)


# ================================================================ message / readout ops =========
# Used by benchmarks/bench_message.py: the fused CSR message op (segment_gather_mul) and the
# canonical readout (canonical_segment_sum) vs their unfused pure-PyTorch formulations, on
# batches of INR graphs (Architecture.siren(): 67 nodes / 1120 edges per network).

MESSAGE_CASES = [(128, 128), (128, 32), (1024, 32)]  # (B, C)
MESSAGE_CASES_BIG = [(1024, 128)]
MESSAGE_SMOKE = [(4, 16)]


def _best_and_median(fns, device, min_run_time, repeats):
    """{name: (best, median)} of `repeats` interleaved blocked_autorange medians per function."""
    samples = {k: [] for k in fns}
    for fn in fns.values():  # warm-up (allocator, threads)
        fn()
    _sync(device)
    for _ in range(repeats):
        for k, fn in fns.items():
            samples[k].append(_autorange_median(fn, min_run_time))
    return {k: (min(v), sorted(v)[len(v) // 2]) for k, v in samples.items()}


def run_message_case(B, C, device="cpu", dtype=torch.float32, min_run_time=0.5, repeats=3):
    """segment_gather_mul (fwd, fwd+bwd w.r.t. x and edge) vs
    ``zeros(N, C).index_add_(0, dst, x[src] * edge)`` and its autograd backward."""
    from ..ops import CSR, segment_gather_mul
    from ..weightspace.graph import graph_structure

    s = graph_structure(Architecture.siren())
    csr = CSR.for_graph(s, B).to(device)
    ei, _, _ = s.batch(B)
    src, dst = ei[0].to(device), ei[1].to(device)
    N, E = csr.num_dst, csr.num_edges
    g = torch.Generator().manual_seed(B * 1000 + C)
    x = torch.randn(N, C, generator=g).to(device=device, dtype=dtype).requires_grad_()
    edge = torch.randn(E, C, generator=g).to(device=device, dtype=dtype).requires_grad_()
    gout = torch.randn(N, C, generator=g).to(device=device, dtype=dtype)

    def ref_fwd():
        with torch.no_grad():
            return x.new_zeros(N, C).index_add_(0, dst, x[src] * edge)

    def op_fwd():
        with torch.no_grad():
            return segment_gather_mul(x, edge, csr)

    def ref_fb():
        out = x.new_zeros(N, C).index_add_(0, dst, x[src] * edge)
        return torch.autograd.grad(out, (x, edge), gout)

    def op_fb():
        return torch.autograd.grad(segment_gather_mul(x, edge, csr), (x, edge), gout)

    # correctness before timing
    tol = dict(rtol=1e-4, atol=1e-4) if dtype == torch.float32 else dict(rtol=1e-2, atol=1e-2)
    torch.testing.assert_close(op_fwd(), ref_fwd(), **tol)
    for a, b in zip(op_fb(), ref_fb()):
        torch.testing.assert_close(a, b, **tol)
    t = _best_and_median(
        {"op_fwd": op_fwd, "ref_fwd": ref_fwd, "op_fb": op_fb, "ref_fb": ref_fb}, device, min_run_time, repeats
    )
    el = x.element_size()
    fwd_bytes = (2 * E * C + N * C) * el  # x rows gathered + edge read + out written
    # + bwd x: grad rows gathered + edge read + grad_x written; bwd edge: 2 rows gathered + grad_edge written
    fb_bytes = fwd_bytes + (2 * E * C + N * C) * el + 3 * E * C * el
    row = {
        "B": B,
        "C": C,
        "N": N,
        "E": E,
        "device": device,
        "dtype": str(dtype).replace("torch.", ""),
        "fwd_bytes": fwd_bytes,
        "fb_bytes": fb_bytes,
        "threads": torch.get_num_threads(),
    }
    for k, (best, med) in t.items():
        row[k], row[k + "_median"] = best, med
    row["op_fwd_GBps"] = fwd_bytes / row["op_fwd"] / 1e9
    row["op_fb_GBps"] = fb_bytes / row["op_fb"] / 1e9
    return row


def copy_bandwidth(device="cpu", nbytes=256 * 2**20, min_run_time=0.5) -> float:
    """Measured device copy bandwidth in GB/s (bytes read + written by ``dst.copy_(src)``): the
    ceiling that the message op's GB/s is compared with."""
    src = torch.empty(nbytes // 4, dtype=torch.float32, device=device).uniform_()
    dst = torch.empty_like(src)
    t = _best_and_median({"copy": lambda: dst.copy_(src)}, device, min_run_time, 3)["copy"][0]
    return 2 * nbytes / t / 1e9


def message_table(rows):
    head = (
        "| B | C | E | device | op fwd (ms) | ref fwd (ms) | fwd speed-up | op fwd+bwd (ms) | ref fwd+bwd (ms) "
        "| fwd+bwd speed-up | op fwd GB/s | op fwd+bwd GB/s |"
    )
    lines = [head, "|" + "---|" * 12]
    for r in rows:
        lines.append(
            f"| {r['B']} | {r['C']} | {r['E']} | {r['device']} | {r['op_fwd'] * 1e3:.2f} ({r['op_fwd_median'] * 1e3:.2f}) | "
            f"{r['ref_fwd'] * 1e3:.2f} ({r['ref_fwd_median'] * 1e3:.2f}) | {r['ref_fwd'] / r['op_fwd']:.1f}x | "
            f"{r['op_fb'] * 1e3:.2f} ({r['op_fb_median'] * 1e3:.2f}) | {r['ref_fb'] * 1e3:.2f} ({r['ref_fb_median'] * 1e3:.2f}) | "
            f"{r['ref_fb'] / r['op_fb']:.1f}x | {r['op_fwd_GBps']:.1f} | {r['op_fb_GBps']:.1f} |"
        )
    return "\n".join(lines)


def run_readout_case(B, C, mode, device="cpu", dtype=torch.float32, min_run_time=0.5, repeats=3):
    """canonical_segment_sum over the hidden neurons of B INR graphs (one segment per network)
    vs the unfused reference (canonicalise [N, C], mask, index_add), fwd and fwd+bwd."""
    from ..ops import canonical_segment_sum
    from ..reference import canonical_segment_sum as ref_readout
    from ..weightspace.graph import graph_structure

    s = graph_structure(Architecture.siren())
    n = s.num_nodes
    ptr = (torch.arange(B + 1) * n).to(device)
    mask = s.hidden_mask.repeat(B).to(device)
    m = {"identity": 0, "abs": 1, "l2": 2}[mode]
    g = torch.Generator().manual_seed(B + C)
    h = torch.randn(B * n, C, generator=g).to(device=device, dtype=dtype).requires_grad_()
    gout = torch.randn(B, C, generator=g).to(device=device, dtype=dtype)
    eps = 1e-6

    def op_fwd():
        with torch.no_grad():
            return canonical_segment_sum(h, ptr, mask, mode, eps)

    def ref_fwd():
        with torch.no_grad():
            return ref_readout.canonical_segment_sum(h, ptr, mask, m, eps)

    def op_fb():
        return torch.autograd.grad(canonical_segment_sum(h, ptr, mask, mode, eps), h, gout)

    def ref_fb():
        return torch.autograd.grad(ref_readout.canonical_segment_sum(h, ptr, mask, m, eps), h, gout)

    torch.testing.assert_close(op_fwd(), ref_fwd(), rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(op_fb()[0], ref_fb()[0], rtol=1e-4, atol=1e-4)
    t = _best_and_median(
        {"op_fwd": op_fwd, "ref_fwd": ref_fwd, "op_fb": op_fb, "ref_fb": ref_fb}, device, min_run_time, repeats
    )
    row = {"B": B, "C": C, "N": B * n, "mode": mode, "device": device}
    for k, (best, med) in t.items():
        row[k], row[k + "_median"] = best, med
    return row


def readout_table(rows):
    head = (
        "| B | C | N | mode | device | op fwd (ms) | ref fwd (ms) | fwd speed-up | op fwd+bwd (ms) "
        "| ref fwd+bwd (ms) | fwd+bwd speed-up |"
    )
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        lines.append(
            f"| {r['B']} | {r['C']} | {r['N']} | {r['mode']} | {r['device']} | {r['op_fwd'] * 1e3:.3f} | "
            f"{r['ref_fwd'] * 1e3:.3f} | {r['ref_fwd'] / r['op_fwd']:.1f}x | {r['op_fb'] * 1e3:.3f} | "
            f"{r['ref_fb'] * 1e3:.3f} | {r['ref_fb'] / r['op_fb']:.1f}x |"
        )
    return "\n".join(lines)
