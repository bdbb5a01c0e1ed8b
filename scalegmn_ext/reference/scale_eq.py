"""Pure-PyTorch reference of the fused ScaleGMN edge message (``scalegmn::scale_eq_message``)."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from .canonical import scale_normalize

__all__ = ["scale_eq_message"]


def _ln(x: Tensor, w: Tensor | None, b: Tensor | None) -> Tensor:
    return x if w is None else F.layer_norm(x, (x.shape[-1],), w, b, 1e-5)


def scale_eq_message(edge, hv, w_e, w_in, b1, ln1_w, ln1_b, w_f, b_f, ln2_w, ln2_b, w_2, b_2, mode, eps, tile_edges=0):
    """``out[b, o] = sum_i (Gamma x) * Inv(x)`` with ``x = (W_e e[b, o, i]) * hv[b, i]`` (see the C++ op)."""
    x = (edge @ w_e.t()) * hv.unsqueeze(1)
    d_out = w_2.shape[0]
    gz = x @ w_in.t()
    g = gz[..., :d_out]
    if mode == 3:
        z = gz[..., d_out:]
        u = F.silu(_ln(z + b1, ln1_w, ln1_b)) + F.silu(_ln(b1 - z, ln1_w, ln1_b))
    elif mode == 1:
        u = x.abs()
    elif mode == 2:
        u = scale_normalize(x, eps)
    else:
        u = x
    inv = F.linear(F.silu(_ln(F.linear(u, w_f, b_f), ln2_w, ln2_b)), w_2, b_2)
    return (g * inv).sum(2)
