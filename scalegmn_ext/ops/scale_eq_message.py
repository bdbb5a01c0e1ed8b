"""Fused ScaleGMN edge message: wrapper, fake kernels and autograd of ``scalegmn::scale_eq_message``.

For one weight layer in the dense-layer layout (edges ``[B, out, in, d_e]``, sender projections
``hv = Gamma_v h`` ``[B, in, d]``) it computes, per receiver, the sum over incoming edges of the
ScaleEq message ``Gamma x * Inv(x)`` with ``x = (W_e e) * hv`` -- tile by tile, never keeping an
``[E, d]`` intermediate, and recomputing tiles in backward (optionally only their element-wise
parts: ``save=True``). Double backward is not supported.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from .._library import DEFAULT_TILE_EDGES, register_op, use_compiled
from ..reference import scale_eq_message as _ref
from ..reference.scale_eq_message import MessageMode

__all__ = ["scale_eq_message", "ScaleEqMessageParams", "MessageMode", "DEFAULT_TILE_EDGES"]


class ScaleEqMessageParams(NamedTuple):
    """The op's weights, in its argument order. ``w_in`` stacks ``Gamma`` (first ``d_out`` rows)
    with ``W_1`` in :attr:`MessageMode.SIGN_SYMMETRIZE`; ``w_f``/``b_f`` is the first layer of
    ``phi`` (merged with ``rho``'s last layer in that mode). Built from a model block by
    :meth:`scalegmn_ext.models.layers.ScaleEq.message_params`."""

    w_e: Tensor
    w_in: Tensor
    b1: Tensor | None
    ln1_w: Tensor | None
    ln1_b: Tensor | None
    w_f: Tensor
    b_f: Tensor
    ln2_w: Tensor | None
    ln2_b: Tensor | None
    w_2: Tensor
    b_2: Tensor
    mode: int
    eps: float


_N_TENSORS = 13  # edge, hv, w_e, w_in, b1, ln1_w, ln1_b, w_f, b_f, ln2_w, ln2_b, w_2, b_2


def _scale_eq_message_fake(
    edge, hv, w_e, w_in, b1, ln1_w, ln1_b, w_f, b_f, ln2_w, ln2_b, w_2, b_2, mode, eps, tile_edges, save
):
    width = hv.shape[2] + w_in.shape[0] + w_f.shape[0] + w_2.shape[0]
    rows = edge.shape[0] * edge.shape[1] * edge.shape[2] if save else 0
    return hv.new_empty(edge.shape[0], edge.shape[1], w_2.shape[0]), hv.new_empty(rows, width)


def _scale_eq_message_backward_fake(
    grad, edge, hv, w_e, w_in, b1, ln1_w, ln1_b, w_f, b_f, ln2_w, ln2_b, w_2, b_2, mode, eps, tile_edges, saved
):
    ts = [edge, hv, w_e, w_in, b1, ln1_w, ln1_b, w_f, b_f, ln2_w, ln2_b, w_2, b_2]
    return [t.new_empty(t.shape) if t is not None else hv.new_empty(0) for t in ts]


def _scale_eq_message_autograd(ctx, inputs, grad, _workspace_grad):
    # tiled recompute: the backward op reruns each tile from the saved inputs (and the forward's
    # workspace of GEMM outputs when it kept one); double backward is not supported
    if grad is None:  # gradients are not materialised: out was unused
        return (None,) * len(inputs)
    tensors, (mode, eps, tile_edges, _save) = inputs[:_N_TENSORS], inputs[_N_TENSORS:]
    grads = torch.ops.scalegmn.scale_eq_message_backward(
        grad.contiguous(), *tensors, mode, eps, tile_edges, ctx.workspace
    )
    return (*[None if t is None else g for g, t in zip(grads, tensors)], None, None, None, None)


register_op("scale_eq_message", _scale_eq_message_fake, _scale_eq_message_autograd, workspace_output=True)
register_op("scale_eq_message_backward", _scale_eq_message_backward_fake)


def scale_eq_message(
    edge: Tensor, hv: Tensor, params: ScaleEqMessageParams, *, tile_edges: int = DEFAULT_TILE_EDGES, save: bool = False
) -> Tensor:
    """Fused ``sum_i ScaleEq((W_e e[b, o, i]) * hv[b, i])`` -> ``[B, out, d_out]`` (see module doc).

    ``save=True`` keeps the per-edge GEMM outputs (``d + |w_in| + d_h + d_out`` values per edge,
    ~5 d) for backward, which then skips a third of its GEMMs: faster training for memory.
    Default: keep nothing per edge and recompute."""
    if edge.dim() != 4:
        raise ValueError(f"edge must be [B, out, in, d_e], got shape {tuple(edge.shape)}")
    if hv.dim() != 3 or hv.shape[0] != edge.shape[0] or hv.shape[1] != edge.shape[2]:
        raise ValueError(f"hv must be [B, in, d] = [{edge.shape[0]}, {edge.shape[2]}, d], got shape {tuple(hv.shape)}")
    if not isinstance(params, ScaleEqMessageParams):
        raise TypeError(
            f"params must be a ScaleEqMessageParams (e.g. ScaleEq.message_params(w_e)), got {type(params).__name__}"
        )
    args = tuple(params)
    if not use_compiled("scale_eq_message", edge):
        return _ref.scale_eq_message(edge, hv, *args)
    return torch.ops.scalegmn.scale_eq_message(edge.contiguous(), hv.contiguous(), *args, int(tile_edges), bool(save))[
        0
    ]
