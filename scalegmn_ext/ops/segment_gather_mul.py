"""Typed wrappers, fake kernels and autograd of the CSR message ops.

* :func:`segment_gather_mul` -- fused gather * edge -> segment sum (the message-passing step
  ``out[i] = sum_{e: dst(e) = i} x[src(e)] * edge[e]``) without materialising the ``[E, C]``
  per-edge product.
* :func:`gather_mul_csr` -- the per-edge product ``out[e] = a[dst(e)] * b[src(e)]`` ``[E, C]``
  (the gradient of ``segment_gather_mul`` w.r.t. ``edge``).
* :func:`gather_dot_csr` -- the per-edge dot product ``out[e] = <a[dst(e)], b[src(e)]>``
  ``[E, 1]`` (that gradient when ``edge`` is a scalar weight per edge, ``[E, 1]``).

Autograd closes over the three ops (each backward calls the others, on the CSR or its
transpose), so gradients of any order run on the compiled kernels:

* ``d segment_gather_mul / dx``    = ``segment_gather_mul(grad, edge, <transposed CSR>)``
* ``d segment_gather_mul / dedge`` = ``gather_mul_csr(grad, x, <CSR>)`` (``gather_dot_csr`` for ``[E, 1]``)
* ``d gather_mul_csr / da`` = ``segment_gather_mul(b, grad, <CSR>)``,
  ``d gather_mul_csr / db`` = ``segment_gather_mul(a, grad, <transposed CSR>)`` (same for gather_dot).

The transposed CSR (``t_rowptr, t_col, t_perm``) is passed in by :class:`CSR`; when a raw op
call leaves it None, the backward rebuilds it with one stable sort of ``col`` per backward call
(O(E log E): :func:`scalegmn_ext.reference.segment_gather_mul.transpose_csr`) -- pass it to avoid that.

All ops are deterministic on CPU and CUDA (each output element is summed by one thread in CSR
order; no atomics) and accumulate in float32 for half/bfloat16 inputs.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._library import FLOAT_DTYPES, register_op, use_compiled
from ..reference import segment_gather_mul as _ref
from .csr import CSR

__all__ = ["segment_gather_mul", "gather_mul_csr", "gather_dot_csr", "CSR"]


def _transposed(rowptr, col, perm, t_rowptr, t_col, t_perm, num_src):
    if t_rowptr is None:
        return _ref.transpose_csr(rowptr, col, perm, num_src)
    return t_rowptr, t_col, t_perm


def _fake_csr_checks(name, rowptr, col, perm):
    torch._check(rowptr.dim() == 1 and col.dim() == 1, lambda: f"{name}: rowptr and col must be 1-D")
    if perm is not None:
        torch._check(perm.shape[0] == col.shape[0], lambda: f"{name}: perm must have E entries")


def _segment_gather_mul_fake(x, edge, rowptr, col, perm, t_rowptr, t_col, t_perm):
    _fake_csr_checks("segment_gather_mul", rowptr, col, perm)
    torch._check(x.dim() == 2 and edge.dim() == 2, lambda: "segment_gather_mul: x and edge must be 2-D")
    torch._check(edge.shape[0] == col.shape[0], lambda: "segment_gather_mul: edge must have E = col.numel() rows")
    torch._check(edge.dtype == x.dtype, lambda: "segment_gather_mul: edge must have x's dtype")
    return x.new_empty(rowptr.shape[0] - 1, x.shape[1])


def _gather_mul_csr_fake(a, b, rowptr, col, perm, t_rowptr, t_col, t_perm):
    _fake_csr_checks("gather_mul_csr", rowptr, col, perm)
    torch._check(a.dim() == 2 and b.dim() == 2 and b.dtype == a.dtype, lambda: "gather_mul_csr: bad a/b")
    return a.new_empty(col.shape[0], a.shape[1])


def _gather_dot_csr_fake(a, b, rowptr, col, perm, t_rowptr, t_col, t_perm):
    _fake_csr_checks("gather_dot_csr", rowptr, col, perm)
    torch._check(a.dim() == 2 and b.dim() == 2 and b.dtype == a.dtype, lambda: "gather_dot_csr: bad a/b")
    return a.new_empty(col.shape[0], 1)


def _segment_gather_mul_backward(ctx, inputs, grad):
    x, edge, rowptr, col, perm, t_rowptr, t_col, t_perm = inputs
    gx = ge = None
    if ctx.needs_input_grad[0]:
        t_rowptr, t_col, t_perm = _transposed(rowptr, col, perm, t_rowptr, t_col, t_perm, x.shape[0])
        gx = torch.ops.scalegmn.segment_gather_mul(grad, edge, t_rowptr, t_col, t_perm, rowptr, col, perm)
    if ctx.needs_input_grad[1]:
        op = torch.ops.scalegmn.gather_mul_csr if edge.shape[1] == x.shape[1] else torch.ops.scalegmn.gather_dot_csr
        ge = op(grad, x, rowptr, col, perm, t_rowptr, t_col, t_perm)
    return gx, ge, None, None, None, None, None, None


def _pair_backward(ctx, inputs, grad):
    # gather_mul_csr (grad [E, C]) and gather_dot_csr (grad [E, 1], broadcast by segment_gather_mul)
    a, b, rowptr, col, perm, t_rowptr, t_col, t_perm = inputs
    ga = gb = None
    if ctx.needs_input_grad[0]:
        ga = torch.ops.scalegmn.segment_gather_mul(b, grad, rowptr, col, perm, t_rowptr, t_col, t_perm)
    if ctx.needs_input_grad[1]:
        t_rowptr, t_col, t_perm = _transposed(rowptr, col, perm, t_rowptr, t_col, t_perm, b.shape[0])
        gb = torch.ops.scalegmn.segment_gather_mul(a, grad, t_rowptr, t_col, t_perm, rowptr, col, perm)
    return ga, gb, None, None, None, None, None, None


register_op("segment_gather_mul", _segment_gather_mul_fake, _segment_gather_mul_backward)
register_op("gather_mul_csr", _gather_mul_csr_fake, _pair_backward)
register_op("gather_dot_csr", _gather_dot_csr_fake, _pair_backward)


def _check_features(op: str, name: str, t, rows: int, rows_what: str, like: Tensor | None = None) -> None:
    if not isinstance(t, Tensor):
        raise TypeError(f"{op}: {name} must be a Tensor, got {type(t).__name__}")
    if t.dim() != 2:
        raise ValueError(f"{op}: {name} must be 2-D [{rows_what}, C], got shape {tuple(t.shape)}")
    if t.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{op}: {name} must be float16/bfloat16/float32/float64, got {t.dtype}")
    if t.shape[0] != rows:
        raise ValueError(f"{op}: {name} must have {rows} rows ({rows_what}), got shape {tuple(t.shape)}")
    if like is not None and (t.dtype != like.dtype or t.device != like.device):
        raise TypeError(f"{op}: {name} is {t.dtype} on {t.device}; expected {like.dtype} on {like.device}")


def _check_csr(op: str, csr, like: Tensor) -> None:
    if not isinstance(csr, CSR):
        raise TypeError(
            f"{op}: csr must be a scalegmn_ext.ops.CSR (CSR.from_edge_index / CSR.for_graph), got {type(csr).__name__}"
        )
    if csr.device != like.device:
        raise ValueError(f"{op}: csr is on {csr.device} but the features are on {like.device}; use csr.to(device)")


def segment_gather_mul(x: Tensor, edge: Tensor, csr: CSR) -> Tensor:
    """Fused message passing ``out[i] = sum_{e: dst(e) = i} x[src(e)] * edge[e]``.

    Args:
        x: sender features ``[num_src, C]`` (float16/bfloat16/float32/float64).
        edge: edge features ``[E, C]``, or ``[E, 1]`` -- one scalar weight per edge, broadcast
            over the C channels. Same dtype/device as ``x``.
        csr: the graph (:class:`CSR`, on ``x``'s device); edge ``e`` is row ``e`` of ``edge``.

    Returns:
        ``[num_dst, C]``; receivers without edges get zeros. The ``[E, C]`` product is never
        materialised (forward or backward w.r.t. ``x``). Differentiable w.r.t. ``x`` and ``edge``,
        any order. Deterministic; half/bfloat16 accumulate in float32.
    """
    op = "segment_gather_mul"
    _check_csr(op, csr, x if isinstance(x, Tensor) else torch.empty(0))
    _check_features(op, "x", x, csr.num_src, "num_src")
    _check_features(op, "edge", edge, csr.num_edges, "E", like=x)
    if edge.shape[1] not in (x.shape[1], 1):
        raise ValueError(
            f"{op}: edge must be [E, C] = [{csr.num_edges}, {x.shape[1]}] or [E, 1], got shape {tuple(edge.shape)}"
        )
    fn = torch.ops.scalegmn.segment_gather_mul if use_compiled("segment_gather_mul", x) else _ref.segment_gather_mul
    return fn(x, edge, *csr.args())


def _pair(op: str, a: Tensor, b: Tensor, csr: CSR):
    _check_csr(op, csr, a if isinstance(a, Tensor) else torch.empty(0))
    _check_features(op, "a", a, csr.num_dst, "num_dst")
    _check_features(op, "b", b, csr.num_src, "num_src", like=a)
    if b.shape[1] != a.shape[1]:
        raise ValueError(f"{op}: b must have the {a.shape[1]} channels of a, got shape {tuple(b.shape)}")
    fn = getattr(torch.ops.scalegmn, op) if use_compiled("segment_gather_mul", a) else getattr(_ref, op)
    return fn(a, b, *csr.args())


def gather_mul_csr(a: Tensor, b: Tensor, csr: CSR) -> Tensor:
    """Per-edge product ``out[e] = a[dst(e)] * b[src(e)]`` -> ``[E, C]``.

    ``a`` is ``[num_dst, C]`` (receiver side), ``b`` ``[num_src, C]`` (sender side). This is the
    gradient of :func:`segment_gather_mul` w.r.t. ``edge`` (with ``a`` = upstream gradient,
    ``b`` = ``x``). Differentiable w.r.t. ``a`` and ``b``.
    """
    return _pair("gather_mul_csr", a, b, csr)


def gather_dot_csr(a: Tensor, b: Tensor, csr: CSR) -> Tensor:
    """Per-edge dot product ``out[e] = <a[dst(e)], b[src(e)]>`` -> ``[E, 1]`` (the gradient of
    :func:`segment_gather_mul` w.r.t. a scalar ``[E, 1]`` edge weight). Differentiable."""
    return _pair("gather_dot_csr", a, b, csr)
