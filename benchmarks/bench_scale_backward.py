"""Compare the backward-message constructions of the bidirectional ``scale`` ScaleGMN.

* ``gated`` (default): receiver state x bounded joint canonicalisation of (edge*receiver, sender).
* ``inverse``: the inverse edge feature ``e / ||e||^2`` (0 at e = 0), exact but gain ``1/||e||``.
* ``clamped``: the construction this package used before: ``e / max(||e||^2, 1e-12)`` (emulated
  by patching the layers) -- the one that failed the demo on a real ReLU CNN.

Accuracy: invariance error of the encoder (float64, bidirectional, full-graph readout) on ReLU
Small-CNN-Zoo CNNs trained on real digits, with a fraction of weights set to a given magnitude,
under random group elements with scales log-uniform on [1e-3, 1e3]. Speed: one training step
(forward + backward + AdamW) of the fast path at float32.

Usage:
    python benchmarks/bench_scale_backward.py                 # table to stdout
    python benchmarks/bench_scale_backward.py --batch 32 --d-hid 64 --json out.json
"""

from __future__ import annotations

import argparse
import time

import torch

from scalegmn_ext._io import atomic_write_json
from scalegmn_ext.models import ScaleGMN, ScaleGMNConfig
from scalegmn_ext.tasks import fit
from scalegmn_ext.tasks.data import load_mnist_5k
from scalegmn_ext.weightspace import symmetry
from scalegmn_ext.weightspace.architecture import Architecture

MAGNITUDES = (1e-2, 1e-6, 1e-8, 1e-12, 1e-100, 2.0**-1060)


def _clamped_edge(e):
    return e / e.pow(2).sum(-1, keepdim=True).clamp_min(1e-12)


def _model(arch, variant: str, d_hid: int, dtype) -> ScaleGMN:
    torch.manual_seed(0)
    cfg = ScaleGMNConfig(
        d_hid=d_hid,
        num_layers=3,
        d_out=10,
        direction="bidirectional",
        input_value=0.0,
        scale_backward="gated" if variant == "gated" else "inverse",
    )
    m = ScaleGMN(arch, cfg).to(dtype)
    if variant == "clamped":
        for layer in m.layers:
            layer.backward_edge = _clamped_edge
    return m


def accuracy(nets: int, d_hid: int) -> dict:
    arch = Architecture.small_cnn_zoo("relu")
    images, labels = load_mnist_5k()
    g = torch.Generator().manual_seed(0)
    ws, bs = fit.train_cnns(arch, images[:2000].unsqueeze(1), labels[:2000], nets, epochs=1, generator=g)
    ws, bs = [w.double() for w in ws], [b.double() for b in bs]
    out = {}
    for variant in ("gated", "inverse", "clamped"):
        m = _model(arch, variant, d_hid, torch.float64).eval()
        row = {}
        for mag in MAGNITUDES:
            u = [torch.rand(w.shape, generator=torch.Generator().manual_seed(1), dtype=w.dtype) for w in ws]
            wm = [torch.where(r < 0.05, mag * torch.where(w < 0, -1.0, 1.0).to(w), w) for r, w in zip(u, ws)]
            w2, b2, _ = symmetry.transform(
                arch, wm, bs, generator=torch.Generator().manual_seed(2), scale_range=(1e-3, 1e3)
            )
            with torch.no_grad():
                z, z2 = m(wm, bs), m(w2, b2)
            err = ((z - z2).abs().max() / z.abs().max()).item()
            row[f"{mag:.0e}"] = err if torch.isfinite(z).all() and torch.isfinite(z2).all() else float("nan")
        out[variant] = row
    return out


def speed(batch: int, d_hid: int, steps: int) -> dict:
    arch = Architecture.small_cnn_zoo("relu")
    g = torch.Generator().manual_seed(0)
    ws = [torch.randn(batch, *s.weight_shape, generator=g) for s in arch.layers]
    bs = [torch.randn(batch, s.out_features, generator=g) for s in arch.layers]
    y = torch.randint(0, 10, (batch,), generator=g)
    out = {}
    for variant in ("gated", "inverse"):
        m = _model(arch, variant, d_hid, torch.float32)
        opt = torch.optim.AdamW(m.parameters(), lr=1e-3)

        def step():
            loss = torch.nn.functional.cross_entropy(m(ws, bs), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        step()  # warm-up
        times = []
        for _ in range(steps):
            t = time.perf_counter()
            step()
            times.append(time.perf_counter() - t)
        out[variant] = {
            "min_s": min(times),
            "median_s": sorted(times)[len(times) // 2],
            "params": sum(p.numel() for p in m.parameters()),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nets", type=int, default=4)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--d-hid", type=int, default=64)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    acc = accuracy(a.nets, 16)
    print("invariance error (float64, max rel) vs magnitude of 5 % of the weights, scales in [1e-3, 1e3]")
    print("| construction | " + " | ".join(f"{m:.0e}" for m in MAGNITUDES) + " |")
    print("|---|" + "---|" * len(MAGNITUDES))
    for v, row in acc.items():
        print(f"| {v} | " + " | ".join(f"{e:.1e}" for e in row.values()) + " |")
    sp = speed(a.batch, a.d_hid, a.steps)
    print(
        f"\ntraining step, ReLU Small CNN, B={a.batch}, d_hid={a.d_hid}, 3 layers, float32, "
        f"{torch.get_num_threads()} threads"
    )
    print("| construction | min s | median s | parameters |\n|---|---|---|---|")
    for v, r in sp.items():
        print(f"| {v} | {r['min_s']:.3f} | {r['median_s']:.3f} | {r['params']:,} |")
    if a.json:
        atomic_write_json(a.json, {"accuracy": acc, "speed": sp, "args": vars(a)}, indent=2)


if __name__ == "__main__":
    main()
