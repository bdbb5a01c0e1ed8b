"""Helpers shared by the test-suite and the benchmarks: devices, dtypes, random networks."""

from __future__ import annotations

import torch
from torch import Tensor

from .weightspace.architecture import Architecture

__all__ = ["DEVICES", "FLOAT_DTYPES", "random_weights", "noncontiguous", "max_rel_diff", "flat_params"]

#: Devices to parametrise over: CPU always, CUDA when present (CUDA tests skip otherwise).
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
FLOAT_DTYPES = [torch.float32, torch.float64]


def random_weights(
    arch: Architecture,
    batch_size: int,
    *,
    dtype: torch.dtype = torch.float32,
    device="cpu",
    generator: torch.Generator | None = None,
    requires_grad: bool = False,
) -> tuple[list[Tensor], list[Tensor]]:
    """Gaussian weights ``[B, *weight_shape]`` and biases ``[B, out]`` for every layer."""
    ws, bs = [], []
    for spec in arch.layers:
        w = torch.randn(batch_size, *spec.weight_shape, generator=generator, dtype=dtype)
        b = torch.randn(batch_size, spec.out_features, generator=generator, dtype=dtype)
        ws.append(w.to(device).requires_grad_(requires_grad))
        bs.append(b.to(device).requires_grad_(requires_grad))
    return ws, bs


def noncontiguous(t: Tensor) -> Tensor:
    """The same values in a non-contiguous layout (every other element of a 2x larger buffer)."""
    buf = torch.empty(*t.shape[:-1], 2 * t.shape[-1], dtype=t.dtype, device=t.device)
    out = buf[..., ::2]
    out.copy_(t)
    return out.requires_grad_(t.requires_grad)


def max_rel_diff(a: Tensor, b: Tensor) -> float:
    """``max |a - b| / max |a|``: the symmetry tests' error measure."""
    return ((a - b).abs().max() / a.abs().max()).item()


def flat_params(weights, biases) -> Tensor:
    """Per-layer weights and biases ``[B, ...]`` as one ``[B, P]`` tensor (weights first)."""
    return torch.cat([t.flatten(1) for t in list(weights) + list(biases)], 1)
