"""The amortized-optimization objective (Kuipers et al. 2025, eq. 4), one value per network:

    L(theta') = mean_{(x, y) in batch} CE(u_{theta'}(x), y)  +  lam * ||theta'||_1

``theta'`` are the updated networks' weights and biases (all of them, as in the paper's code),
``u`` the batched functional forward (:func:`scalegmn_ext.weightspace.functional.forward`), so B
networks cost one call. ``lam = 0`` is pure one-shot fine-tuning; ``lam > 0`` also sparsifies.

:class:`AmortizedLoss` is the Trainer's ``loss_fn``: it runs the metanetwork on a batch of zoo
networks and scores the networks it proposes on a freshly sampled image batch. The same
:func:`objective` scores the SGD / Adam baselines, so every method optimises the same thing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...weightspace.architecture import Architecture
from ...weightspace.functional import forward

__all__ = ["check_lam", "l1_norm", "objective", "AmortizedLoss"]


def check_lam(lam) -> float:
    """``lam`` as a float, or a ValueError: the L1 weight must be a finite number >= 0."""
    try:
        v = float(lam)
    except (TypeError, ValueError):
        raise ValueError(f"lam (the L1 weight) must be a number >= 0, got {lam!r}") from None
    if not (v >= 0 and math.isfinite(v)):
        raise ValueError(f"lam (the L1 weight) must be a finite number >= 0 (0 = pure fine-tuning), got {lam!r}")
    return v


def l1_norm(weights: Sequence[Tensor], biases: Sequence[Tensor]) -> Tensor:
    """``||theta||_1`` per network: the sum of |w| and |b| over all layers, ``[B]``."""
    total = 0
    for t in (*weights, *biases):
        total = total + t.abs().flatten(1).sum(1)
    return total


def _inputs(arch: Architecture, x: Tensor) -> Tensor:
    """Images ``[P, 1, 28, 28]`` for a CNN, ``[P, features]`` (already flattened) for an MLP."""
    if arch.is_cnn:
        return x
    return x.flatten(1) if x.dim() > 2 else x


def objective(
    arch: Architecture, weights: Sequence[Tensor], biases: Sequence[Tensor], x: Tensor, y: Tensor, lam: float = 0.0
) -> tuple[Tensor, Tensor, Tensor]:
    """``(objective, cross_entropy, l1)`` per network, each ``[B]``: mean CE of the B networks on
    the shared batch ``x``/``y`` plus ``lam`` times their L1 norm (differentiable)."""
    lam = check_lam(lam)
    x = _inputs(arch, x).to(device=weights[0].device, dtype=weights[0].dtype)
    if y.dim() != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"labels must be [P] for P={x.shape[0]} images, got shape {tuple(y.shape)}")
    logits = forward(arch, weights, biases, x)  # [B, P, classes]
    B, P, C = logits.shape
    ce = F.cross_entropy(logits.reshape(B * P, C), y.to(logits.device).repeat(B), reduction="none").view(B, P).mean(1)
    l1 = l1_norm(weights, biases)
    return ce + lam * l1, ce, l1


class AmortizedLoss:
    """Trainer ``loss_fn``: the objective of the networks that ``model`` proposes for a batch.

    Args:
        arch: the zoo's architecture (the model's input and output).
        images, labels: the image pool (``[N, 1, 28, 28]`` for CNNs, ``[N, features]`` for MLPs);
            every call draws ``n_images`` of them with a generator seeded by ``(seed, calls)``, so
            the draw is the same on every DDP rank and, with ``calls`` restored, on resume.
        lam: the L1 weight (>= 0).

    Networks whose updated weights are not finite get a NaN objective, so the Trainer stops with
    :class:`~scalegmn_ext.tasks.train.TrainingDiverged` and keeps the last good checkpoint.
    """

    def __init__(
        self,
        arch: Architecture,
        images: Tensor,
        labels: Tensor,
        *,
        lam: float = 0.0,
        n_images: int = 256,
        seed: int = 0,
    ):
        self.lam = check_lam(lam)
        if not isinstance(arch, Architecture):
            raise TypeError(f"arch must be an Architecture, got {type(arch).__name__}")
        n_in = arch.layout[0]
        ok = images.dim() == 4 and images.shape[1] == n_in if arch.is_cnn else images.flatten(1).shape[1] == n_in
        if not ok or labels.shape != images.shape[:1]:
            want = f"[N, {n_in}, H, W]" if arch.is_cnn else f"[N, {n_in}]"
            raise ValueError(
                f"images must be {want} with labels [N] for {arch}, got {tuple(images.shape)} and {tuple(labels.shape)}"
            )
        if isinstance(n_images, bool) or not isinstance(n_images, int) or n_images < 1:
            raise ValueError(f"n_images must be a positive int, got {n_images!r}")
        self.arch, self.images, self.labels = arch, images, labels
        self.n_images, self.seed, self.calls = min(n_images, images.shape[0]), int(seed), 0

    def sample(self) -> tuple[Tensor, Tensor]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.calls)
        self.calls += 1
        idx = torch.randperm(self.images.shape[0], generator=g)[: self.n_images]
        return self.images[idx], self.labels[idx]

    def __call__(self, model: nn.Module, weights: list[Tensor], biases: list[Tensor]) -> Tensor:
        x, y = self.sample()
        new_w, new_b = model(weights, biases)
        value, _, _ = objective(self.arch, new_w, new_b, x, y, self.lam)
        finite = torch.stack([torch.isfinite(t).flatten(1).all(1) for t in (*new_w, *new_b)]).all(0)
        return torch.where(finite, value, torch.full_like(value, math.nan))
