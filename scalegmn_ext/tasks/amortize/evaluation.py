"""Scoring held-out networks before and after each method, and the results table (paper's form).

For every method (before fine-tuning, each one-shot amortizer, SGD / Adam after k epochs) the
held-out networks are scored on the zoo's test images:

* mean / std / max test accuracy (%), the per-network accuracies (for the box plot);
* mean test cross-entropy and mean test objective (CE + lam * L1, the paper's "test loss");
* L1 reduction: ``100 * (1 - sum ||theta'||_1 / sum ||theta||_1)`` (the paper's "sparsity"), and
  the fraction of parameters with ``|theta'| < 1e-3`` (actual near-zeros);
* seconds per network: one-shot = one batched metanetwork forward / B; SGD / Adam = batched
  fine-tuning wall time / B (see :mod:`.baselines`); also the one-shot latency of a single
  network alone.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ...weightspace.architecture import Architecture
from ..zoo.cnn import evaluate as evaluate_classifiers
from .objective import check_lam, l1_norm

__all__ = ["score", "one_shot", "results_markdown", "NEAR_ZERO"]

#: |theta| below this counts as a zero in the near-zero fraction.
NEAR_ZERO = 1e-3


def score(
    arch: Architecture,
    weights: Sequence[Tensor],
    biases: Sequence[Tensor],
    x: Tensor,
    y: Tensor,
    *,
    lam: float = 0.0,
    reference_l1: Tensor | None = None,
) -> dict:
    """Test metrics of B networks (see the module doc); ``reference_l1`` ``[B]`` is the L1 norm
    of the networks before fine-tuning (for the L1 reduction)."""
    lam = check_lam(lam)
    ws = [w.detach().float() for w in weights]
    bs = [b.detach().float() for b in biases]
    acc, ce = evaluate_classifiers(arch, ws, bs, x.to(ws[0].dtype), y)
    finite = torch.stack([torch.isfinite(t).flatten(1).all(1) for t in (*ws, *bs)]).all(0)
    l1 = l1_norm(ws, bs).double()
    n_params = sum(t[0].numel() for t in (*ws, *bs))
    near_zero = sum((t.abs() < NEAR_ZERO).flatten(1).sum(1) for t in (*ws, *bs)).double() / n_params
    out = {
        "networks": int(acc.numel()),
        "non_finite_networks": int((~finite).sum()),
        "accuracies": [float(a) for a in acc * 100],
        "mean_acc": float(acc.mean() * 100),
        "std_acc": float(acc.std(unbiased=False) * 100),
        "max_acc": float(acc.max() * 100),
        "mean_ce": float(ce.mean()),
        "mean_objective": float((ce + lam * l1).mean()),
        "mean_l1": float(l1.mean()),
        "near_zero_frac": float(near_zero.mean()),
    }
    if reference_l1 is not None:
        out["l1_reduction_pct"] = float(100 * (1 - l1.sum() / reference_l1.double().sum()))
    return out


@torch.no_grad()
def one_shot(
    model: nn.Module, weights: Sequence[Tensor], biases: Sequence[Tensor], *, chunk: int = 64
) -> tuple[list[Tensor], list[Tensor], float, float]:
    """Apply the amortizer to every network (batches of ``chunk``): ``(weights', biases',
    seconds_per_network (batched), seconds for one network alone (median of 3))``."""
    was = model.training
    model.eval()
    B = weights[0].shape[0]
    outs_w, outs_b = [], []
    t0 = time.perf_counter()
    for s in range(0, B, chunk):
        w, b = model([t[s : s + chunk] for t in weights], [t[s : s + chunk] for t in biases])
        outs_w.append(w)
        outs_b.append(b)
    per_net = (time.perf_counter() - t0) / max(B, 1)
    single = []
    for _ in range(3):
        t0 = time.perf_counter()
        model([t[:1] for t in weights], [t[:1] for t in biases])
        single.append(time.perf_counter() - t0)
    model.train(was)
    L = len(weights)
    ws = [torch.cat([o[l] for o in outs_w]) for l in range(L)]
    bs = [torch.cat([o[l] for o in outs_b]) for l in range(L)]
    return ws, bs, per_net, float(np.median(single))


def _fmt(v, nd: int = 1) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v:.{nd}f}"


def _secs(v) -> str:
    if v is None:
        return "–"
    return f"{v:.2e}" if v < 0.01 else f"{v:.3g}"


def results_markdown(results: dict) -> str:
    """The table of :func:`~scalegmn_ext.tasks.amortize.run.evaluate_amortizers`' results (markdown)."""
    lam = results["lam"]
    ft = results["finetune"]
    lr = {k: "–" if ft[f"{k}_lr"] is None else f"{ft[f'{k}_lr']:g}" for k in ("sgd", "adam")}
    tuned = [
        f"{k.upper() if k == 'sgd' else 'Adam'} lr {t['chosen']:g} chosen from "
        + "/".join(f"{g}" for g in t["grid"])
        + f" on {t['networks']} validation networks ({t['epochs']} epochs on 80 % of the pool, "
        + ("best mean accuracy" if lam == 0 else "lowest objective")
        + " on the other 20 %)"
        for k, t in ft.get("tuning", {}).items()
    ]
    lines = [
        f"Held-out networks: {results['test_networks']} ({results['arch']}), scored on {results['test_images']} "
        f"test images; lam = {lam:g}. Accuracy in %, mean over networks (std; max). Fine-tuning pool: "
        f"{results['pool_images']} images, batch {ft['batch_size']}, constant lr: SGD {lr['sgd']} (momentum 0.9), "
        f"Adam {lr['adam']}." + (" " + "; ".join(tuned) + "." if tuned else ""),
        "",
        "| method | mean acc | std | max acc | test CE | test objective | L1 reduction % | near-zero % | s / network |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in results["rows"]:
        m = row["metrics"]
        lines.append(
            f"| {row['method']} | {_fmt(m['mean_acc'])} | {_fmt(m['std_acc'])} | {_fmt(m['max_acc'])} | "
            f"{_fmt(m['mean_ce'], 3)} | {_fmt(m['mean_objective'], 3)} | {_fmt(m.get('l1_reduction_pct'))} | "
            f"{_fmt(100 * m['near_zero_frac'])} | {_secs(row.get('seconds_per_network'))} |"
        )
    for agg in results.get("aggregates", []):
        lines.append(
            f"| {agg['method']}: mean ± std over {agg['runs']} seeds | "
            f"{agg['mean_acc']:.1f} ± {agg['mean_acc_std']:.1f} | – | {agg['max_acc']:.1f} ± {agg['max_acc_std']:.1f} | "
            f"{agg['mean_ce']:.3f} ± {agg['mean_ce_std']:.3f} | – | – | – | – |"
        )
    lines.append("")
    lines.append(
        "s / network: one-shot = one batched metanetwork forward over all held-out networks / their number "
        "(a single network alone: see one_shot_single_seconds in results.json); SGD/Adam = batched fine-tuning "
        "wall time / number of networks, evaluation excluded."
    )
    return "\n".join(lines) + "\n"
