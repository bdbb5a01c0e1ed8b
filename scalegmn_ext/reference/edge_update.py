"""Pure-PyTorch reference of the fused ScaleGMN edge update (``scalegmn::edge_update``)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from .hash_dropout import hash_dropout

__all__ = ["edge_update"]


def edge_update(
    edge: Tensor,
    dst: Tensor,
    src: Tensor,
    ln_w,
    ln_b,
    w_2: Tensor,
    b_2: Tensor,
    w_g: Tensor,
    p: float = 0.0,
    seed: int = 0,
    tile_edges: int = 0,
) -> Tensor:
    """``drop((W_2 SiLU(LN(dst[b, o] + src[b, i])) + b_2) * (W_g e[b, o, i]))`` -> ``[B, out, in, d_out]``."""
    a = dst.unsqueeze(2) + src.unsqueeze(1)
    if ln_w is not None:
        a = F.layer_norm(a, (a.shape[-1],), ln_w, ln_b, 1e-5)
    out = F.linear(F.silu(a), w_2, b_2) * (edge @ w_g.t())
    return hash_dropout(out, p, seed, 0) if p > 0 else out
