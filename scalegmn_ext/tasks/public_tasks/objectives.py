"""Losses and metrics of the three public ScaleGMN tasks (as the public training scripts define them).

* ``inr-cls``: cross-entropy of the invariant model's logits; metric: accuracy.
* ``cnn-gen``: MSE between ``sigmoid(model output)`` and the test accuracy in [0, 1]; metric:
  Kendall's tau (``scipy.stats.kendalltau``, tau-b) between predicted and true accuracy, also
  R^2 and the mean absolute error.
* ``inr-edit``: MSE between the rendering of the edited INR (``theta + f(theta)``, the residual
  equivariant model, rendered on the 28x28 grid by the batched functional forward) and the
  target image; metric: the mean of the per-INR MSEs.

Every loss is per network (``[b]``), the Trainer's contract; :func:`predict` runs a model over a
whole :class:`~scalegmn_ext.tasks.train.NetworkSet` in chunks and :func:`score` turns the
predictions into the task's metrics.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...weightspace.architecture import Architecture
from ...weightspace.functional import render_inr
from ..train import NetworkSet

__all__ = [
    "ClassificationLoss",
    "GeneralizationLoss",
    "EditLoss",
    "make_loss",
    "predict",
    "score",
    "kendall_tau",
    "PRIMARY",
    "val_objective",
]

#: the metric each task reports first, and whether larger is better
PRIMARY = {"inr-cls": ("accuracy", True), "cnn-gen": ("kendall_tau", True), "inr-edit": ("mse", False)}


class ClassificationLoss:
    def __call__(self, model: nn.Module, weights, biases, labels: Tensor) -> Tensor:
        return F.cross_entropy(model(weights, biases), labels, reduction="none")


class GeneralizationLoss:
    def __call__(self, model: nn.Module, weights, biases, acc: Tensor) -> Tensor:
        pred = torch.sigmoid(model(weights, biases)[:, 0])
        return (pred - acc.to(pred.dtype)).pow(2)


class EditLoss:
    """Per-INR render MSE of the edited INR against the target image ``[b, size, size]``."""

    def __init__(self, arch: Architecture):
        if arch.is_cnn or arch.layout[0] != 2:
            raise ValueError(f"INR editing needs a 2-D INR architecture (2 inputs), got {arch}")
        self.arch = arch

    def __call__(self, model: nn.Module, weights, biases, target: Tensor) -> Tensor:
        ws, bs = model(weights, biases)
        img = render_inr(self.arch, ws, bs, target.shape[-2], target.shape[-1])
        return (img - target.to(img.dtype)).pow(2).flatten(1).mean(1)


def make_loss(task: str, arch: Architecture):
    if task == "inr-cls":
        return ClassificationLoss()
    if task == "cnn-gen":
        return GeneralizationLoss()
    if task == "inr-edit":
        return EditLoss(arch)
    raise ValueError(f"unknown task {task!r}")


def predict(task: str, model: nn.Module, data: NetworkSet, arch: Architecture, *, chunk: int = 128) -> Tensor:
    """Eval-mode predictions for every network of ``data``: logits ``[n, C]`` (inr-cls), predicted
    accuracies ``[n]`` (cnn-gen) or renderings of the edited INRs ``[n, H, W]`` (inr-edit)."""
    p = next(model.parameters())
    was = model.training
    model.eval()
    outs = []
    try:
        with torch.no_grad():
            for s in range(0, len(data), chunk):
                idx = torch.arange(s, min(len(data), s + chunk))
                ws, bs = data.take(idx, p.device, p.dtype)
                if task == "inr-cls":
                    outs.append(model(ws, bs).float().cpu())
                elif task == "cnn-gen":
                    outs.append(torch.sigmoid(model(ws, bs)[:, 0]).float().cpu())
                else:
                    nw, nb = model(ws, bs)
                    h, w = data.targets.shape[-2:]
                    outs.append(render_inr(arch, nw, nb, h, w).float().cpu())
    finally:
        model.train(was)
    return torch.cat(outs)


def kendall_tau(true, pred) -> float:
    """Kendall's tau-b (scipy); NaN when either side is constant."""
    from scipy.stats import kendalltau

    t, p = np.asarray(true, dtype=np.float64), np.asarray(pred, dtype=np.float64)
    if t.size < 2 or np.all(t == t[0]) or np.all(p == p[0]):
        return math.nan
    return float(kendalltau(t, p).statistic)


def score(task: str, pred: Tensor, targets: Tensor) -> dict:
    """The task's metrics for predictions ``pred`` (see :func:`predict`) against ``targets``."""
    n = int(targets.shape[0])
    if task == "inr-cls":
        return {"accuracy": float((pred.argmax(-1) == targets).double().mean()), "n": n}
    if task == "cnn-gen":
        t, p = targets.double(), pred.double()
        ss_res = float((t - p).pow(2).sum())
        ss_tot = float((t - t.mean()).pow(2).sum())
        return {
            "kendall_tau": kendall_tau(t.numpy(), p.numpy()),
            "r2": 1.0 - ss_res / ss_tot if ss_tot > 0 else math.nan,
            "l1_error": float((t - p).abs().mean()),
            "n": n,
        }
    if task == "inr-edit":
        per = (pred.double() - targets.double()).pow(2).flatten(1).mean(1)
        return {"mse": float(per.mean()), "n": n}
    raise ValueError(f"unknown task {task!r}")


def val_objective(task: str, arch: Architecture, chunk: int = 128):
    """The Trainer's ``val_metric`` (lower is better): 1 - accuracy, -tau or the MSE."""
    name, larger = PRIMARY[task]

    def metric(model: nn.Module, val: NetworkSet) -> float:
        m = score(task, predict(task, model, val, arch, chunk=chunk), val.targets)[name]
        if math.isnan(m):
            return math.inf
        return (1.0 - m) if task == "inr-cls" else (-m if larger else m)

    return metric
