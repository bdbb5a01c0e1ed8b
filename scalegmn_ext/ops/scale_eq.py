"""Fused ScaleGMN edge message: wrapper, fake kernels and autograd of ``scalegmn::scale_eq_message``.

For one weight layer in the dense-layer layout (edges ``[B, out, in, d_e]``, sender projections
``hv = Gamma_v h`` ``[B, in, d]``) it computes, per receiver, the sum over incoming edges of the
ScaleEq message ``Gamma x * Inv(x)`` with ``x = (W_e e) * hv`` -- tile by tile, never keeping an
``[E, d]`` intermediate, and recomputing tiles in backward (optionally only their element-wise
parts: ``save=True``). Double backward is not supported.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .._library import HAS_EXTENSION, compiled_ok, cuda_kernels_for, register_recompute_autograd
from ..reference import scale_eq as _ref

__all__ = ["scale_eq_message", "scale_eq_message_args", "DEFAULT_TILE_EDGES"]

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


def scale_eq_message_args(scale_eq, msg_e_weight: Tensor) -> tuple:
    """Flattens a :class:`~scalegmn_ext.models.layers.ScaleEq` (+ the edge projection ``W_e``)
    into the op's arguments: ``(w_e, w_in, b1, ln1_w, ln1_b, w_f, b_f, ln2_w, ln2_b, w_2, b_2, mode, eps)``.

    For sign symmetrisation ``Gamma`` is stacked with ``rho``'s first layer and ``phi``'s first
    layer is merged with ``rho``'s last (no non-linearity between them)."""
    inv, canon = scale_eq.inv, scale_eq.inv.canon
    phi = inv.phi
    ln2 = phi.norm if isinstance(phi.norm, torch.nn.LayerNorm) else None
    ln2_w, ln2_b = (ln2.weight, ln2.bias) if ln2 is not None else (None, None)
    if canon.rho is not None:
        rho = canon.rho
        ln1 = rho.norm if isinstance(rho.norm, torch.nn.LayerNorm) else None
        w_in = torch.cat([scale_eq.gamma.weight, rho.lin1.weight], 0)
        w_f = phi.lin1.weight @ rho.lin2.weight
        b_f = phi.lin1.bias + 2 * (phi.lin1.weight @ rho.lin2.bias)
        return (msg_e_weight, w_in, rho.lin1.bias, ln1.weight if ln1 is not None else None,
                ln1.bias if ln1 is not None else None, w_f, b_f, ln2_w, ln2_b, phi.lin2.weight, phi.lin2.bias, 3, canon.eps)
    mode = {"sign": 1, "scale": 2}.get(canon.symmetry, 0)
    return (msg_e_weight, scale_eq.gamma.weight, None, None, None, phi.lin1.weight, phi.lin1.bias,
            ln2_w, ln2_b, phi.lin2.weight, phi.lin2.bias, mode, canon.eps)


def scale_eq_message(edge: Tensor, hv: Tensor, scale_eq, msg_e_weight: Tensor, *,
                     tile_edges: int = DEFAULT_TILE_EDGES, save: bool = False) -> Tensor:
    """Fused ``sum_i ScaleEq((W_e e[b, o, i]) * hv[b, i])`` -> ``[B, out, d_out]`` (see module doc).

    ``save=True`` keeps the per-edge GEMM outputs (``d + |w_in| + d_h + d_out`` values per edge,
    ~5 d) for backward, which then skips a third of its GEMMs: faster training for memory.
    Default: keep nothing per edge and recompute."""
    if edge.dim() != 4:
        raise ValueError(f"edge must be [B, out, in, d_e], got shape {tuple(edge.shape)}")
    if hv.dim() != 3 or hv.shape[0] != edge.shape[0] or hv.shape[1] != edge.shape[2]:
        raise ValueError(f"hv must be [B, in, d] = [{edge.shape[0]}, {edge.shape[2]}, d], got shape {tuple(hv.shape)}")
    args = scale_eq_message_args(scale_eq, msg_e_weight)
    if not compiled_ok(edge, _HAS_CUDA_KERNELS):
        return _ref.scale_eq_message(edge, hv, *args)
    return torch.ops.scalegmn.scale_eq_message(edge.contiguous(), hv.contiguous(), *args, int(tile_edges), bool(save))[0]
