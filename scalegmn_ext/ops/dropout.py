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

from .._library import HAS_EXTENSION, compiled_ok, cuda_kernels_for
from ..reference import dropout as _ref

__all__ = ["hash_dropout", "HashDropout", "draw_seed"]

_HAS_CUDA_KERNELS = cuda_kernels_for("hash_dropout")

if HAS_EXTENSION:

    @torch.library.register_fake("scalegmn::hash_dropout")
    def _fake(x, p, seed, offset):
        # the real kernels' checks (csrc/ops/dropout_meta.cpp)
        torch._check(x.is_floating_point(), lambda: f"hash_dropout: x must be a floating tensor, got {x.dtype}")
        torch._check(0.0 <= p < 1.0, lambda: f"hash_dropout: p must be in [0, 1), got {p}")
        torch._check(offset >= 0, lambda: f"hash_dropout: offset must be >= 0, got {offset}")
        torch._check(offset + x.numel() <= 2**63 - 1,
                     lambda: f"hash_dropout: last flat index offset + x.numel() = {offset} + {x.numel()} overflows int64")
        return torch.empty_like(x, memory_format=torch.contiguous_format)

    def _setup(ctx, inputs, output):
        ctx.args = inputs[1:]

    def _backward(ctx, grad):
        return torch.ops.scalegmn.hash_dropout(grad, *ctx.args), None, None, None

    torch.library.register_autograd("scalegmn::hash_dropout", _backward, setup_context=_setup)


def _check(x: Tensor, p: float, offset: int) -> None:
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, got {getattr(x, 'dtype', type(x).__name__)}")
    if not 0.0 <= float(p) < 1.0:
        raise ValueError(f"p must be in [0, 1), got {p!r}")
    _ref.check_index_range(int(offset), x.numel())


def hash_dropout(x: Tensor, p: float, seed: int, offset: int = 0) -> Tensor:
    """Dropout with a counter-based mask (see module doc); ``p = 0`` returns ``x`` unchanged."""
    _check(x, p, offset)
    if p == 0:
        return x
    if compiled_ok(x, _HAS_CUDA_KERNELS):
        return torch.ops.scalegmn.hash_dropout(x, float(p), int(seed), int(offset))
    return _ref.hash_dropout(x, float(p), int(seed), int(offset))


def draw_seed() -> int:
    """A 31-bit seed from torch's default CPU generator (repeatable under ``torch.manual_seed``)."""
    return int(torch.randint(0, 2**31 - 1, (), dtype=torch.int64).item())


class HashDropout(nn.Module):
    """Drop-in for :class:`torch.nn.Dropout` that uses :func:`hash_dropout` (new seed per call)."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        if not 0.0 <= float(p) < 1.0:
            raise ValueError(f"p must be in [0, 1), got {p!r}")
        self.p = float(p)

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.p == 0:
            return x
        return hash_dropout(x, self.p, draw_seed())

    def extra_repr(self) -> str:
        return f"p={self.p}"
