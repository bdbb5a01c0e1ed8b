"""Training many small networks at once: batched SIREN fitting and batched CNN training.

Both optimise the stacked per-layer tensors of B networks with ONE functional forward per step
(:func:`scalegmn_ext.functional.forward`), never a Python loop over networks. Each network's loss
is summed (not averaged) over the batch, so every network gets exactly the gradient it would get
if trained alone, and Adam's per-element statistics keep the networks independent.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from .arch import Architecture
from .functional import coordinate_grid, forward

__all__ = ["init_weights", "fit_inrs", "train_cnns", "evaluate_cnns", "psnr"]


def init_weights(
    arch: Architecture, batch_size: int, *, generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32, device="cpu", zero_bias: bool = False, init_scale: float = 1.0,
) -> tuple[list[Tensor], list[Tensor]]:
    """Random initial weights for B networks.

    SIREN (sine): first layer U(-1/in, 1/in), others U(-sqrt(6/in)/w0, sqrt(6/in)/w0) (Sitzmann
    et al.); other activations: PyTorch's default (Kaiming-uniform, bound 1/sqrt(fan_in)), times
    ``init_scale``. Biases U(-1/sqrt(fan_in), 1/sqrt(fan_in)) or zero.
    """
    ws, bs = [], []
    for l, spec in enumerate(arch.layers):
        fan_in = spec.in_features * spec.kernel_size[0] * spec.kernel_size[1]
        if arch.activation == "sine":
            bound = 1.0 / fan_in if l == 0 else math.sqrt(6.0 / fan_in) / arch.w0
        else:
            bound = 1.0 / math.sqrt(fan_in)
        bound *= init_scale
        w = (torch.rand(batch_size, *spec.weight_shape, generator=generator, dtype=dtype) * 2 - 1) * bound
        b = (torch.rand(batch_size, spec.out_features, generator=generator, dtype=dtype) * 2 - 1) / math.sqrt(fan_in)
        if zero_bias:
            b.zero_()
        ws.append(w.to(device))
        bs.append(b.to(device))
    return ws, bs


def psnr(pred: Tensor, target: Tensor) -> Tensor:
    """Per-item PSNR in dB for images in [0, 1]: ``[B, ...]`` -> ``[B]``."""
    mse = (pred - target).pow(2).flatten(1).mean(1)
    return -10.0 * torch.log10(mse.clamp_min(1e-12))


def fit_inrs(
    images: Tensor, arch: Architecture | None = None, *, steps: int = 1000, lr: float = 5e-4,
    target_psnr: float | None = 40.0, generator: torch.Generator | None = None, zero_bias: bool = False,
    progress: Callable[[int, Tensor], None] | None = None,
) -> tuple[list[Tensor], list[Tensor], Tensor, Tensor]:
    """Fit one SIREN per grayscale image, all at once (the published MNIST-INR recipe).

    Args:
        images: ``[B, H, W]`` in [0, 1].
        arch: INR architecture (default :meth:`Architecture.siren`: 2->32->32->1, w0 = 30, +0.5).
        steps, lr: Adam steps and learning rate (published: up to 1000 steps, 5e-4).
        target_psnr: an INR stops training (its weights are frozen) once it reaches this PSNR.
        progress: called as ``progress(step, psnr[B])`` every 50 steps.

    Returns:
        ``weights``, ``biases`` (per layer, ``[B, ...]``), final ``psnr`` ``[B]`` and the number of
        steps each INR trained ``[B]``.
    """
    if images.dim() != 3:
        raise ValueError(f"images must be [B, H, W], got shape {tuple(images.shape)}")
    arch = arch or Architecture.siren()
    if arch.layout[0] != 2 or arch.layout[-1] != 1:
        raise ValueError(f"arch must map 2-D coordinates to 1 channel, got layout {arch.layout}")
    B, H, W = images.shape
    ws, bs = init_weights(arch, B, generator=generator, dtype=images.dtype, device=images.device, zero_bias=zero_bias)
    params = [p.requires_grad_() for p in ws + bs]
    opt = torch.optim.Adam(params, lr=lr)
    coords = coordinate_grid(H, W, dtype=images.dtype, device=images.device)
    target = images.reshape(B, H * W, 1)
    active = torch.ones(B, dtype=torch.bool, device=images.device)
    trained = torch.zeros(B, dtype=torch.long, device=images.device)
    for step in range(steps):
        pred = forward(arch, ws, bs, coords)
        per_net = (pred - target).pow(2).mean(dim=(1, 2))
        with torch.no_grad():
            cur = -10.0 * torch.log10(per_net.clamp_min(1e-12))
            if target_psnr is not None:
                active &= cur < target_psnr
            if progress is not None and step % 50 == 0:
                progress(step, cur)
            if not active.any():
                break
        opt.zero_grad(set_to_none=False)
        (per_net * active).sum().backward()
        # freeze finished INRs exactly: Adam would still move them through its momentum
        frozen = [p.detach().clone() for p in params]
        opt.step()
        with torch.no_grad():
            for p, old in zip(params, frozen):
                mask = active.view(-1, *([1] * (p.dim() - 1)))
                p.copy_(torch.where(mask, p, old))
        trained += active.long()
    with torch.no_grad():
        final = psnr(forward(arch, ws, bs, coords).reshape(B, H, W), images)
    return [w.detach() for w in ws], [b.detach() for b in bs], final, trained


def train_cnns(
    arch: Architecture, images: Tensor, labels: Tensor, num_networks: int, *, epochs: int = 1,
    batch_size: int = 64, lr: float = 3e-3, weight_decay: float = 0.0, init_scale: float | Tensor = 1.0,
    generator: torch.Generator | None = None, progress: Callable[[int, int, float], None] | None = None,
) -> tuple[list[Tensor], list[Tensor]]:
    """Train ``num_networks`` CNNs of one architecture on the same image stream, all at once.

    Networks differ by their random initialisation (and ``init_scale`` if a ``[B]`` tensor).
    ``images`` is ``[n, C, H, W]``, ``labels`` ``[n]``. Returns the trained weights and biases.
    """
    if images.dim() != 4 or labels.shape != images.shape[:1]:
        raise ValueError(f"images must be [n, C, H, W] and labels [n], got {tuple(images.shape)}, {tuple(labels.shape)}")
    B = num_networks
    ws, bs = init_weights(arch, B, generator=generator, dtype=images.dtype, device=images.device)
    if isinstance(init_scale, Tensor):
        ws = [w * init_scale.view(-1, *([1] * (w.dim() - 1))).to(w) for w in ws]
    else:
        ws = [w * init_scale for w in ws]
    params = [p.requires_grad_() for p in ws + bs]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    n = images.shape[0]
    for epoch in range(epochs):
        order = torch.randperm(n, generator=generator)
        for i, start in enumerate(range(0, n, batch_size)):
            idx = order[start:start + batch_size]
            logits = forward(arch, ws, bs, images[idx])  # [B, P, classes]
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels[idx].repeat(B), reduction="sum")
            opt.zero_grad()
            (loss / idx.numel()).backward()
            opt.step()
            if progress is not None and i % 20 == 0:
                progress(epoch, start, loss.item() / (idx.numel() * B))
    return [w.detach() for w in ws], [b.detach() for b in bs]


def evaluate_cnns(arch: Architecture, weights, biases, images: Tensor, labels: Tensor, chunk: int = 512) -> Tensor:
    """Accuracy of each of the B CNNs on ``images``/``labels``: ``[B]``."""
    correct = 0
    with torch.no_grad():
        for s in range(0, images.shape[0], chunk):
            logits = forward(arch, weights, biases, images[s:s + chunk])
            correct = correct + (logits.argmax(-1) == labels[s:s + chunk]).sum(1)
    return correct.float() / max(images.shape[0], 1)


