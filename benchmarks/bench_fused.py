"""Benchmark: the fused, tiled ScaleGMN ops vs the per-edge computation, fwd+bwd time and memory.

For B networks of the MNIST-INR shape (2-32-32-1 SIRENs) and width C (= d):

  * message -- ``scale_eq_message`` (``op``: recompute everything in backward; ``op_save``: keep
    the per-edge GEMM outputs, recompute only element-wise parts) over the two blocks whose receivers are hidden neurons
    ([B, 32, 2, C] and [B, 32, 32, C] edge states: 1088 edges per network), sign symmetry with
    symmetrisation and LayerNorm (the ScaleGMN default). ``ref``: the per-edge computation with
    autograd as the public implementation does it (ScaleEq.forward_reference: four GEMMs for
    rho(x) + rho(-x)); ``unfused``: this package's efficient per-edge formulation (two GEMMs,
    merged layers) with autograd, i.e. the fast model with fused_message=False.
  * edge update -- ``edge_update`` over all three blocks (1120 edges per network) with dropout
    0.2; ``ref``: psi(cat[c(h_src), c(h_dst)]) * gamma(e) per edge + F.dropout, with autograd;
    ``unfused``: per-node first layer, per-edge rest, autograd + hash dropout.

Each (op, implementation) runs in its own process. ``peak (MiB)`` is the growth of the process's
peak RSS over one forward + backward, measured from the RSS after the inputs exist; ``saved`` the
bytes autograd keeps between forward and backward. Time: best of --repeats fwd+bwd runs.
A last table times torch's dropout against ``hash_dropout`` on an edge-state-sized tensor.

Usage:
    python benchmarks/bench_fused.py                 # B=128, C=128 (the issue's size)
    python benchmarks/bench_fused.py --batch 32 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

from scalegmn_ext._io import atomic_write_json

IMPLS = ("op", "op_save", "unfused", "ref")


def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def child(kind: str, impl: str, B: int, C: int, repeats: int, device: str = "cpu") -> dict:
    import torch
    import torch.nn.functional as F

    from scalegmn_ext.models.layers import MLP, Canonicalizer, ScaleEq
    from scalegmn_ext.ops import edge_update, hash_dropout, scale_eq_message

    torch.manual_seed(0)
    blocks = [(32, 2), (32, 32)] if kind == "message" else [(32, 2), (32, 32), (1, 32)]
    E = [torch.randn(B, o, i, C, device=device, requires_grad=True) for o, i in blocks]
    H = [torch.randn(B, n, C, device=device, requires_grad=True) for n in (2, 32, 32, 1)]
    if kind == "message":
        se = ScaleEq("sign", C, C, C, "symmetrize", True).to(device)
        w_e, w_v = torch.nn.Linear(C, C, bias=False).to(device), torch.nn.Linear(C, C, bias=False).to(device)
        params = [*se.parameters(), w_e.weight, w_v.weight]

        def run():
            outs = []
            for (_o, i), e in zip(blocks, E):
                hv = w_v(H[0] if i == 2 else H[1])
                if impl in ("op", "op_save"):
                    outs.append(scale_eq_message(e, hv, se.message_params(w_e.weight), save=impl == "op_save"))
                else:
                    x = w_e(e) * hv.unsqueeze(1)
                    outs.append((se(x) if impl == "unfused" else se.forward_reference(x)).sum(2))
            return outs
    else:
        canon = Canonicalizer("sign", C, "symmetrize", True).to(device)
        psi, gamma = MLP(2 * C, C, C, True).to(device), torch.nn.Linear(C, C, bias=False).to(device)
        params = [*canon.parameters(), *psi.parameters(), gamma.weight]

        def run():
            cn = [H[0]] + [canon(h) if impl != "ref" else canon.forward_reference(h) for h in H[1:3]] + [H[3]]
            outs = []
            for l, ((o, i), e) in enumerate(zip(blocks, E)):
                if impl == "ref":  # per edge: gather both ends, concatenate, full MLP
                    cat = torch.cat(
                        [cn[l].unsqueeze(1).expand(B, o, i, C), cn[l + 1].unsqueeze(2).expand(B, o, i, C)], -1
                    )
                    outs.append(F.dropout(psi(cat) * gamma(e), 0.2, True))
                    continue
                w = psi.lin1.weight
                src, dst = F.linear(cn[l], w[:, :C]), F.linear(cn[l + 1], w[:, C:], psi.lin1.bias)
                if impl in ("op", "op_save"):  # (the edge update has no save mode)
                    outs.append(
                        edge_update(
                            e,
                            dst,
                            src,
                            psi.lin2.weight,
                            psi.lin2.bias,
                            gamma.weight,
                            psi.norm.weight,
                            psi.norm.bias,
                            p=0.2,
                            seed=l,
                        )
                    )
                else:
                    y = psi.lin2(psi.hidden(dst.unsqueeze(2) + src.unsqueeze(1))) * gamma(e)
                    outs.append(hash_dropout(y, 0.2, l))
            return outs

    inputs = E + H + params
    grads_out = None

    def fwd_bwd():
        nonlocal grads_out
        outs = run()
        if grads_out is None:
            grads_out = [torch.randn_like(o) for o in outs]
        torch.autograd.grad(outs, inputs, grads_out, allow_unused=True)
        if device == "cuda":
            torch.cuda.synchronize()

    if device == "cuda":  # device memory: peak allocated above what the inputs take
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated() / 2**20
        torch.cuda.reset_peak_memory_stats()
        fwd_bwd()
        peak = torch.cuda.max_memory_allocated() / 2**20 - base
    else:
        base = _rss_mib()  # inputs and parameters exist; nothing else has run
        fwd_bwd()
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10 - base
    saved = [0]
    with torch.autograd.graph.saved_tensors_hooks(
        lambda t: saved.__setitem__(0, saved[0] + t.untyped_storage().nbytes()) or t, lambda t: t
    ):
        run()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fwd_bwd()
        times.append(time.perf_counter() - t)
    return {
        "kind": kind,
        "impl": impl,
        "B": B,
        "C": C,
        "device": device,
        "threads": torch.get_num_threads(),
        "fwd_bwd_s": min(times),
        "peak_MiB": peak,
        "saved_MiB": saved[0] / 2**20,
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--channels", type=int, default=128)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--kinds", default="message,edge_update")
    p.add_argument("--device", default="cpu", help="cpu or cuda (peak = device memory allocated on cuda)")
    p.add_argument("--json")
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        print(json.dumps(child(a.child[0], a.child[1], a.batch, a.channels, a.repeats, a.device)))
        return
    rows = []
    for kind in a.kinds.split(","):
        for impl in IMPLS:
            if kind == "edge_update" and impl == "op_save":
                continue
            print(f"running {kind} / {impl} ...", file=sys.stderr, flush=True)
            cmd = [
                sys.executable,
                os.path.abspath(__file__),
                "--child",
                kind,
                impl,
                "--batch",
                str(a.batch),
                "--channels",
                str(a.channels),
                "--repeats",
                str(a.repeats),
                "--device",
                a.device,
            ]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            rows.append(json.loads(out.strip().splitlines()[-1]))
    print(
        f"Fused ScaleGMN ops, fwd+bwd, B={a.batch} INRs (2-32-32-1), C={a.channels}, {a.device}, "
        f"{rows[0]['threads']} threads"
    )
    print("| op | impl | fwd+bwd (ms) | speed-up vs ref | peak (MiB) | peak vs ref | saved for backward (MiB) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        ref = next(x for x in rows if x["kind"] == r["kind"] and x["impl"] == "ref")
        print(
            f"| {r['kind']} | {r['impl']} | {r['fwd_bwd_s'] * 1e3:.0f} | {ref['fwd_bwd_s'] / r['fwd_bwd_s']:.2f}x | "
            f"{r['peak_MiB']:.0f} | {r['peak_MiB'] / max(ref['peak_MiB'], 1e-9):.2f} | {r['saved_MiB']:.0f} |"
        )
    drop = dropout_table(a.batch, a.channels, a.repeats, a.device)
    print(f"\nDropout p=0.2 on the [B*1120, C] edge states ({drop['numel']:,} floats), forward, best of {a.repeats}")
    print("| F.dropout (ms) | hash_dropout (ms) | speed-up |")
    print("|---|---|---|")
    print(f"| {drop['torch_ms']:.1f} | {drop['hash_ms']:.1f} | {drop['torch_ms'] / drop['hash_ms']:.1f}x |")
    if a.json:
        atomic_write_json(a.json, {"ops": rows, "dropout": drop})


def dropout_table(B: int, C: int, repeats: int, device: str = "cpu") -> dict:
    import torch

    from scalegmn_ext.ops import hash_dropout

    x = torch.randn(B * 1120, C, device=device)
    fns = {"torch_ms": lambda: torch.nn.functional.dropout(x, 0.2, True), "hash_ms": lambda: hash_dropout(x, 0.2, 1)}
    out = {"numel": x.numel()}
    for k, fn in fns.items():
        fn()
        ts = []
        for _ in range(max(repeats, 3)):
            t = time.perf_counter()
            fn()
            if device == "cuda":
                torch.cuda.synchronize()
            ts.append(time.perf_counter() - t)
        out[k] = min(ts) * 1e3
    return out


if __name__ == "__main__":
    main()
