"""Pure-PyTorch reference of ``scalegmn::hash_dropout``: the same counter-based mask, bit for bit.

Mirrors csrc/common/dropout_hash.h with int64 tensor arithmetic (every product stays below 2^63:
32-bit values times multipliers below 2^31).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._library import INT64_MAX

__all__ = ["hash_dropout", "dropout_keep_mask", "dropout_threshold"]

_M32 = 0xFFFFFFFF


def check_index_range(offset: int, numel: int) -> None:
    """Element indices ``offset + k`` (``k < numel``) are int64 in the kernels and here: reject
    ``offset < 0`` and ``offset + numel > 2^63 - 1`` (the op's own check, same message)."""
    if offset < 0:
        raise ValueError(f"hash_dropout: offset must be >= 0, got {offset}")
    if offset + numel > INT64_MAX:
        raise ValueError(f"hash_dropout: last flat index offset + x.numel() = {offset} + {numel} overflows int64")


def _hash32(x: Tensor) -> Tensor:
    x = x ^ (x >> 16)
    x = (x * 0x7FEB352D) & _M32
    x = x ^ (x >> 15)
    x = (x * 0x2C1B3C6D) & _M32
    return x ^ (x >> 16)


def dropout_threshold(p: float) -> int:
    """Draws below ``round(p * 2^24)`` (24-bit uniform) are dropped."""
    return int(p * 16777216.0 + 0.5)


def dropout_keep_mask(shape, p: float, seed: int, offset: int = 0, device=None) -> Tensor:
    """Boolean keep-mask of ``hash_dropout`` for a tensor of ``shape`` (flat indices from ``offset``)."""
    n = 1
    for s in shape:
        n *= int(s)
    check_index_range(int(offset), n)
    k = torch.arange(n, dtype=torch.int64, device=device) + int(offset)
    s = int(seed) & _M32
    hi = _hash32((k >> 32) ^ s)
    draw = _hash32((_hash32((k & _M32) ^ hi) + s) & _M32) >> 8
    return (draw >= dropout_threshold(p)).reshape(shape)


def hash_dropout(x: Tensor, p: float, seed: int, offset: int = 0) -> Tensor:
    """``x * (keep(offset + k) / (1 - p))`` with ``k`` the row-major flat index of each element."""
    keep = dropout_keep_mask(x.shape, p, seed, offset, x.device)
    acc = torch.float32 if x.dtype in (torch.float16, torch.bfloat16) else x.dtype  # the kernels' opmath type
    # a product, like F.dropout: NaN stays NaN
    return (x.to(acc) * (keep.to(acc) * (1.0 / (1.0 - p)))).to(x.dtype)
