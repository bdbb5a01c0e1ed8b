"""Counter-based dropout ``scalegmn::hash_dropout``: wrapper, fake kernel, autograd, module.

``hash_dropout(x, p, seed, offset)`` keeps element ``k`` (row-major flat index) iff a 32-bit
integer hash of ``(seed, offset + k)`` clears ``p``, and scales kept elements by ``1 / (1 - p)``.
Because the mask is a function, not a draw:

* nothing is stored for backward -- the op is linear and its own adjoint (gradients of any order);
* a tile of a larger tensor can apply its slice of the mask (``offset``), which is how the fused
  :func:`~scalegmn_ext.ops.edge_update` applies dropout inside its tiles;
* CPU, CUDA and the pure-PyTorch reference give identical masks.

It is also several times faster than ``torch.nn.functional.dropout`` on CPU, whose Bernoulli
draw dominates (see benchmarks/RESULTS.md). The seed is a Python int: :class:`HashDropout` draws
one per call from torch's default generator, so ``torch.manual_seed`` makes runs repeatable
(under ``torch.compile`` that draw is a graph break, in training mode only).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .._library import INT64_MAX, register_op, use_compiled
from ..reference import hash_dropout as _ref

__all__ = ["hash_dropout", "HashDropout", "draw_seed"]

#: Seeds drawn by :func:`draw_seed` lie in ``[0, SEED_BOUND)`` (31 bits: a non-negative int32).
SEED_BOUND = 2**31 - 1


def _hash_dropout_fake(x, p, seed, offset):
    # the real kernels' checks (csrc/ops/hash_dropout.cpp)
    torch._check(x.is_floating_point(), lambda: f"hash_dropout: x must be a floating tensor, got {x.dtype}")
    torch._check(0.0 <= p < 1.0, lambda: f"hash_dropout: p must be in [0, 1), got {p}")
    torch._check(offset >= 0, lambda: f"hash_dropout: offset must be >= 0, got {offset}")
    torch._check(
        offset + x.numel() <= INT64_MAX,
        lambda: f"hash_dropout: last flat index offset + x.numel() = {offset} + {x.numel()} overflows int64",
    )
    return torch.empty_like(x, memory_format=torch.contiguous_format)


def _hash_dropout_backward(ctx, inputs, grad):
    # linear and self-adjoint: the same mask (seed, offset) applied to the gradient
    _, p, seed, offset = inputs
    return torch.ops.scalegmn.hash_dropout(grad, p, seed, offset), None, None, None


# Nothing saved: the mask is regenerated from (seed, offset).
register_op("hash_dropout", _hash_dropout_fake, _hash_dropout_backward, save=())


def check_drop_probability(p: float) -> None:
    """The drop probability of every hash-dropout user (this op, :class:`HashDropout`, the fused
    edge update): ``p`` in ``[0, 1)`` (``p = 1`` would scale kept elements by ``1 / 0``)."""
    if not 0.0 <= float(p) < 1.0:
        raise ValueError(f"p must be in [0, 1), got {p!r}")


def _check(x: Tensor, p: float, offset: int) -> None:
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, got {getattr(x, 'dtype', type(x).__name__)}")
    check_drop_probability(p)
    _ref.check_index_range(int(offset), x.numel())


def hash_dropout(x: Tensor, p: float, seed: int, offset: int = 0) -> Tensor:
    """Dropout with a counter-based mask (see module doc); ``p = 0`` returns ``x`` unchanged."""
    _check(x, p, offset)
    if p == 0:
        return x
    if use_compiled("hash_dropout", x):
        return torch.ops.scalegmn.hash_dropout(x, float(p), int(seed), int(offset))
    return _ref.hash_dropout(x, float(p), int(seed), int(offset))


def draw_seed() -> int:
    """A 31-bit seed from torch's default CPU generator (repeatable under ``torch.manual_seed``)."""
    return int(torch.randint(0, SEED_BOUND, (), dtype=torch.int64).item())


class HashDropout(nn.Module):
    """Drop-in for :class:`torch.nn.Dropout` that uses :func:`hash_dropout` (new seed per call)."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        check_drop_probability(p)
        self.p = float(p)

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0:
            return x
        return hash_dropout(x, self.p, draw_seed())

    def extra_repr(self) -> str:
        return f"p={self.p}"
