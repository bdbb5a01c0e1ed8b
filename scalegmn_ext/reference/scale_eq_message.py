"""Pure-PyTorch reference of the fused ScaleGMN edge message (``scalegmn::scale_eq_message``)."""

from __future__ import annotations

import enum

import torch.nn.functional as F
from torch import Tensor

from .canonical import scale_normalize

__all__ = ["scale_eq_message", "MessageMode"]


class MessageMode(enum.IntEnum):
    """How the invariant ``Inv(x)`` canonicalises ``x`` (the op's ``mode`` argument)."""

    PLAIN = 0  #: no symmetry beyond permutations: ``u = x``
    SIGN_ABS = 1  #: sign group, ``u = |x|``
    SCALE = 2  #: positive-scale group, ``u = x / ||x||`` (max-scaled, exact)
    SIGN_SYMMETRIZE = 3  #: sign group, ``u = SiLU(LN1(W_1 x + b_1)) + SiLU(LN1(b_1 - W_1 x))``


def _ln(x: Tensor, w: Tensor | None, b: Tensor | None) -> Tensor:
    return x if w is None else F.layer_norm(x, (x.shape[-1],), w, b, 1e-5)


def scale_eq_message(edge, hv, w_e, w_in, b1, ln1_w, ln1_b, w_f, b_f, ln2_w, ln2_b, w_2, b_2, mode, eps, tile_edges=0):
    """``out[b, o] = sum_i (Gamma x) * Inv(x)`` with ``x = (W_e e[b, o, i]) * hv[b, i]`` (see the C++ op)."""
    x = (edge @ w_e.t()) * hv.unsqueeze(1)
    d_out = w_2.shape[0]
    gz = x @ w_in.t()
    g = gz[..., :d_out]
    if mode == MessageMode.SIGN_SYMMETRIZE:
        z = gz[..., d_out:]
        u = F.silu(_ln(z + b1, ln1_w, ln1_b)) + F.silu(_ln(b1 - z, ln1_w, ln1_b))
    elif mode == MessageMode.SIGN_ABS:
        u = x.abs()
    elif mode == MessageMode.SCALE:
        u = scale_normalize(x, eps)
    else:
        u = x
    inv = F.linear(F.silu(_ln(F.linear(u, w_f, b_f), ln2_w, ln2_b)), w_2, b_2)
    return (g * inv).sum(2)
