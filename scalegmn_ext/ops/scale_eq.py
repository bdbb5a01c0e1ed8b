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

from .._library import HAS_EXTENSION, compiled_ok, cuda_kernels_for, register_recompute_autograd
from ..reference import scale_eq as _ref
from ..reference.scale_eq import MessageMode

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

#: Edges per tile (whole networks per tile): small enough to stay in cache, big enough for BLAS.
DEFAULT_TILE_EDGES = 4096
_N_TENSORS = 13  # edge, hv, w_e, w_in, b1, ln1_w, ln1_b, w_f, b_f, ln2_w, ln2_b, w_2, b_2

# CPU-only builds must fall back to the reference for CUDA tensors.
_HAS_CUDA_KERNELS = cuda_kernels_for("scale_eq_message", "scale_eq_message_backward")

if HAS_EXTENSION:

    @torch.library.register_fake("scalegmn::scale_eq_message")
    def _fake(edge, hv, w_e, w_in, b1, ln1_w, ln1_b, w_f, b_f, ln2_w, ln2_b, w_2, b_2, mode, eps, tile_edges, save):
        width = hv.shape[2] + w_in.shape[0] + w_f.shape[0] + w_2.shape[0]
        rows = edge.shape[0] * edge.shape[1] * edge.shape[2] if save else 0
        return hv.new_empty(edge.shape[0], edge.shape[1], w_2.shape[0]), hv.new_empty(rows, width)

    @torch.library.register_fake("scalegmn::scale_eq_message_backward")
    def _fake_bw(grad, edge, hv, w_e, w_in, b1, ln1_w, ln1_b, w_f, b_f, ln2_w, ln2_b, w_2, b_2, mode, eps, tile_edges,
                 saved):
        ts = [edge, hv, w_e, w_in, b1, ln1_w, ln1_b, w_f, b_f, ln2_w, ln2_b, w_2, b_2]
        return [t.new_empty(t.shape) if t is not None else hv.new_empty(0) for t in ts]

    register_recompute_autograd("scale_eq_message", torch.ops.scalegmn.scale_eq_message_backward, _N_TENSORS,
                                multi_output=True)


def scale_eq_message(edge: Tensor, hv: Tensor, params: ScaleEqMessageParams, *,
                     tile_edges: int = DEFAULT_TILE_EDGES, save: bool = False) -> Tensor:
    """Fused ``sum_i ScaleEq((W_e e[b, o, i]) * hv[b, i])`` -> ``[B, out, d_out]`` (see module doc).

    ``save=True`` keeps the per-edge GEMM outputs (``d + |w_in| + d_h + d_out`` values per edge,
    ~5 d) for backward, which then skips a third of its GEMMs: faster training for memory.
    Default: keep nothing per edge and recompute."""
    if edge.dim() != 4:
        raise ValueError(f"edge must be [B, out, in, d_e], got shape {tuple(edge.shape)}")
    if hv.dim() != 3 or hv.shape[0] != edge.shape[0] or hv.shape[1] != edge.shape[2]:
        raise ValueError(f"hv must be [B, in, d] = [{edge.shape[0]}, {edge.shape[2]}, d], got shape {tuple(hv.shape)}")
    if not isinstance(params, ScaleEqMessageParams):
        raise TypeError(f"params must be a ScaleEqMessageParams (e.g. ScaleEq.message_params(w_e)), "
                        f"got {type(params).__name__}")
    args = tuple(params)
    if not compiled_ok(edge, _HAS_CUDA_KERNELS):
        return _ref.scale_eq_message(edge, hv, *args)
    return torch.ops.scalegmn.scale_eq_message(edge.contiguous(), hv.contiguous(), *args, int(tile_edges), bool(save))[0]
