"""Benchmark: one ScaleGMN training step (forward, backward, AdamW), fast path vs per-edge reference.

Configuration = the public MNIST-INR classification setup: sign symmetry, hidden 128, 4 layers,
forward direction, last-layer readout, dropout 0.2 (--dropout), SIREN 2-32-32-1 inputs, batch 128. Both
implementations share one state_dict (the reference is the straightforward per-edge computation
of the public code base). Each implementation runs in its own subprocess so that peak RSS is its
own; the activations saved for backward are counted exactly with saved_tensors_hooks.

Usage:
    python benchmarks/bench_scalegmn.py                       # B=128, 2 timed steps each
    python benchmarks/bench_scalegmn.py --batch 32 --steps 1  # quicker
    python benchmarks/bench_scalegmn.py --json out.json
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


def child(
    impl: str,
    batch: int,
    steps: int,
    d_hid: int,
    layers: int,
    device: str,
    dropout: float = 0.2,
    mixed: bool = False,
    generic: bool = False,
) -> dict:
    import torch

    import scalegmn_ext as sx
    from scalegmn_ext.models import ScaleGMN, ScaleGMNConfig
    from scalegmn_ext.testing import random_weights

    torch.manual_seed(0)
    arch = sx.Architecture.siren()
    cfg = ScaleGMNConfig(
        symmetry="sign",
        d_hid=d_hid,
        num_layers=layers,
        direction="forward",
        readout="last_layer",
        d_out=10,
        dropout=dropout,
    )
    model = ScaleGMN(arch, cfg, impl=impl).to(device)
    if generic:  # mixed batches through the generic graph path even for large groups
        model.mixed_dense_min_group = 2**62
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    ws, bs = random_weights(arch, batch, device=device, generator=torch.Generator().manual_seed(1))
    y = torch.randint(0, 10, (batch,), generator=torch.Generator().manual_seed(2)).to(device)
    if mixed:  # half 2-32-32-1, half 2-16-48-1 as one MixedGraphBatch
        other = sx.Architecture.siren([2, 16, 48, 1])
        wo, bo = random_weights(other, batch - batch // 2, device=device, generator=torch.Generator().manual_seed(3))
        ws = sx.MixedGraphBatch.from_graphs(
            [
                sx.WeightGraph.from_weights(arch, [w[: batch // 2] for w in ws], [b[: batch // 2] for b in bs]),
                sx.WeightGraph.from_weights(other, wo, bo),
            ]
        )
        bs = None

    def step():
        loss = torch.nn.functional.cross_entropy(model(ws, bs), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()
        if device == "cuda":
            torch.cuda.synchronize()
        return loss.item()

    # activations kept for backward (unique storages), one forward
    seen, saved = set(), [0]

    def pack(t):
        try:
            key = t.untyped_storage().data_ptr()
            if key not in seen:
                seen.add(key)
                saved[0] += t.untyped_storage().nbytes()
        except Exception:
            pass
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = torch.nn.functional.cross_entropy(model(ws, bs), y)
    del loss
    step()  # warm-up
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    extra = {"peak_cuda_GiB": torch.cuda.max_memory_allocated() / 2**30} if device == "cuda" else {}
    return {
        **extra,
        "impl": impl,
        "batch": batch,
        "device": device,
        "threads": torch.get_num_threads(),
        "step_s": min(times),
        "steps": steps,
        "saved_activation_GiB": saved[0] / 2**30,
        "peak_rss_GiB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=2, help="timed steps per implementation (best is reported)")
    p.add_argument("--d-hid", type=int, default=128)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--device", default="cpu")
    p.add_argument("--impls", default="fast,reference")
    p.add_argument("--dropout", type=float, default=0.2, help="the public config's 0.2; 0 isolates dropout's share")
    p.add_argument(
        "--mixed",
        action="store_true",
        help="a mixed-architecture batch (2-32-32-1 and 2-16-48-1 SIRENs; the fast model runs it group by group)",
    )
    p.add_argument("--generic", action="store_true", help="with --mixed: the generic graph path instead")
    p.add_argument("--json")
    p.add_argument("--child", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        print(json.dumps(child(a.child, a.batch, a.steps, a.d_hid, a.layers, a.device, a.dropout, a.mixed, a.generic)))
        return
    rows = []
    for impl in a.impls.split(","):
        cmd = [
            sys.executable,
            os.path.abspath(__file__),
            "--child",
            impl,
            "--batch",
            str(a.batch),
            "--steps",
            str(a.steps),
            "--d-hid",
            str(a.d_hid),
            "--layers",
            str(a.layers),
            "--device",
            a.device,
            "--dropout",
            str(a.dropout),
        ]
        cmd += (["--mixed"] if a.mixed else []) + (["--generic"] if a.generic else [])
        print(f"running {impl} ...", file=sys.stderr, flush=True)
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    base = next((r for r in rows if r["impl"] == "reference"), None)
    print(
        f"ScaleGMN training step, MNIST-INR config (sign, d={a.d_hid}, {a.layers} layers, forward), "
        f"batch {a.batch}{' (mixed architectures)' if a.mixed else ''}{', generic path' if a.generic else ''}, "
        f"dropout {a.dropout}, {a.device}, "
        f"{rows[0]['threads']} threads"
    )
    print("| impl | step (s) | speed-up vs reference | saved activations (GiB) | peak RSS (GiB) |")
    print("|---|---|---|---|---|")
    for r in rows:
        sp = f"{base['step_s'] / r['step_s']:.2f}x" if base else "-"
        print(f"| {r['impl']} | {r['step_s']:.2f} | {sp} | {r['saved_activation_GiB']:.2f} | {r['peak_rss_GiB']:.2f} |")
    if a.json:
        atomic_write_json(a.json, rows)


if __name__ == "__main__":
    main()
