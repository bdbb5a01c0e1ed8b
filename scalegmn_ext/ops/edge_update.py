"""Fused ScaleGMN edge update: wrapper, fake kernels and autograd of ``scalegmn::edge_update``.

For one weight layer in the dense-layer layout (edge states ``[B, out, in, d_e]``) it computes

    out[b, o, i] = drop((W_2 SiLU(LN(dst[b, o] + src[b, i])) + b_2) * (W_g e[b, o, i]))

where ``dst`` / ``src`` are the per-node halves of the edge MLP's first layer (``[B, out, d]`` /
``[B, in, d]``, computed once per node) and ``drop`` is :func:`~scalegmn_ext.ops.hash_dropout`
over the output's flat indices. Tiles of whole networks; only the inputs are saved, the backward
recomputes each tile and regenerates the dropout mask. Double backward is not supported.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._library import DEFAULT_TILE_EDGES, register_op, use_compiled
from ..reference import edge_update as _ref
from .hash_dropout import check_drop_probability

__all__ = ["edge_update", "DEFAULT_TILE_EDGES"]

_N_TENSORS = 8  # edge, dst, src, ln_w, ln_b, w_2, b_2, w_g


def _edge_update_fake(edge, dst, src, ln_w, ln_b, w_2, b_2, w_g, p, seed, tile_edges):
    return dst.new_empty(edge.shape[0], edge.shape[1], edge.shape[2], w_2.shape[0])


def _edge_update_backward_fake(grad, edge, dst, src, ln_w, ln_b, w_2, b_2, w_g, p, seed, tile_edges):
    ts = [edge, dst, src, ln_w, ln_b, w_2, b_2, w_g]
    return [t.new_empty(t.shape) if t is not None else dst.new_empty(0) for t in ts]


def _edge_update_autograd(ctx, inputs, grad):
    # tiled recompute: the backward op reruns each tile from the saved inputs and regenerates the
    # dropout mask; double backward is not supported
    tensors, rest = inputs[:_N_TENSORS], inputs[_N_TENSORS:]
    grads = torch.ops.scalegmn.edge_update_backward(grad.contiguous(), *tensors, *rest)
    return (*[None if t is None else g for g, t in zip(grads, tensors)], *([None] * len(rest)))


register_op("edge_update", _edge_update_fake, _edge_update_autograd)
register_op("edge_update_backward", _edge_update_backward_fake)


def _shape_error(name: str, want: str, t: Tensor) -> ValueError:
    return ValueError(f"{name} must be {want}, got shape {tuple(t.shape)}")


def edge_update(
    edge: Tensor,
    dst: Tensor,
    src: Tensor,
    w_2: Tensor,
    b_2: Tensor,
    w_g: Tensor,
    ln_w: Tensor | None = None,
    ln_b: Tensor | None = None,
    *,
    p: float = 0.0,
    seed: int = 0,
    tile_edges: int = DEFAULT_TILE_EDGES,
) -> Tensor:
    """Fused edge update -> ``[B, out, in, d_out]`` (see module doc).

    Args:
        edge: edge states ``[B, out, in, d_e]``.
        dst: receiver part of the first layer incl. its bias, ``[B, out, d]``.
        src: sender part, ``[B, in, d]``.
        w_2, b_2: second layer ``[d_out, d]``, ``[d_out]``.
        w_g: bias-free edge projection ``[d_out, d_e]``.
        ln_w, ln_b: LayerNorm affine parameters ``[d]`` (both or neither; eps 1e-5).
        p, seed: hash dropout of the output (``p = 0``: none).
    """
    if edge.dim() != 4:
        raise _shape_error("edge", "[B, out, in, d_e]", edge)
    B, O, I, de = edge.shape
    if dst.dim() != 3 or dst.shape[:2] != (B, O):
        raise _shape_error("dst", f"[B, out, d] = [{B}, {O}, d]", dst)
    d = dst.shape[2]
    if src.shape != (B, I, d):
        raise _shape_error("src", f"[B, in, d] = [{B}, {I}, {d}]", src)
    if w_2.dim() != 2 or w_2.shape[1] != d:
        raise _shape_error("w_2", f"[d_out, {d}]", w_2)
    if b_2.shape != (w_2.shape[0],):
        raise _shape_error("b_2", f"[{w_2.shape[0]}]", b_2)
    if w_g.shape != (w_2.shape[0], de):
        raise _shape_error("w_g", f"[{w_2.shape[0]}, {de}]", w_g)
    if (ln_w is None) != (ln_b is None):
        raise ValueError("pass both ln_w and ln_b or neither")
    check_drop_probability(p)
    for name, t in (
        ("dst", dst),
        ("src", src),
        ("w_2", w_2),
        ("b_2", b_2),
        ("w_g", w_g),
        ("ln_w", ln_w),
        ("ln_b", ln_b),
    ):
        if t is not None and (t.dtype != edge.dtype or t.device != edge.device):
            raise TypeError(
                f"{name} must have edge's dtype and device ({edge.dtype}, {edge.device}), got {t.dtype} on {t.device}"
            )
    fn = torch.ops.scalegmn.edge_update if use_compiled("edge_update", edge) else _ref.edge_update
    return fn(
        edge.contiguous(),
        dst.contiguous(),
        src.contiguous(),
        ln_w,
        ln_b,
        w_2,
        b_2,
        w_g,
        float(p),
        int(seed),
        int(tile_edges),
    )
