"""Pure-PyTorch references of the canonical readout ops (test oracles and fallbacks).

``canonical_segment_sum(h, ptr, mask, mode, eps)``: ``out[g] = sum_{i in [ptr[g], ptr[g+1]),
mask[i]} c(h[i])`` with ``c`` = identity (mode 0), ``|h|`` (mode 1, sign-invariant) or
``h / (||h||_2 + eps)`` per row (mode 2, positive-scale-invariant). ``canonical_segment_sum_backward``
is its explicit vector-Jacobian product (the formula the compiled backward kernel implements);
``canonical_backward_double`` differentiates that formula once more (used as the autograd of
the compiled backward op).
"""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["canonical_segment_sum", "canonical_segment_sum_backward", "canonical_backward_double",
           "row_segments", "canonicalize_rows", "canonical_row_grad"]

IDENTITY, ABS, L2 = 0, 1, 2


def row_segments(ptr: Tensor, num_rows: int) -> tuple[Tensor, Tensor]:
    """``(seg [N] int64 clamped to [0, G-1], valid [N] bool)``: the segment of every row of h and
    whether the row lies in ``[ptr[0], ptr[G])`` (and G > 0)."""
    G = ptr.shape[0] - 1
    seg = torch.searchsorted(ptr, torch.arange(num_rows, dtype=ptr.dtype, device=ptr.device), right=True) - 1
    valid = (seg >= 0) & (seg < G)
    return seg.clamp(0, max(G - 1, 0)), valid


def _row_mask(ptr: Tensor, mask: Tensor | None, N: int) -> tuple[Tensor, Tensor]:
    seg, valid = row_segments(ptr, N)
    if mask is not None:
        valid = valid & mask
    return seg, valid


def canonicalize_rows(h: Tensor, mode: int, eps: float) -> Tensor:
    """``c(h)`` row by row (``[N, C]``; materialised -- the compiled op never does)."""
    if mode == ABS:
        return h.abs()
    if mode == L2:
        return h / (torch.linalg.vector_norm(h, dim=1, keepdim=True) + eps)
    return h


def canonical_segment_sum(h: Tensor, ptr: Tensor, mask: Tensor | None = None, mode: int = 0,
                          eps: float = 0.0) -> Tensor:
    N, C = h.shape
    G = ptr.shape[0] - 1
    seg, valid = _row_mask(ptr, mask, N)
    c = torch.where(valid[:, None], canonicalize_rows(h, mode, eps), h.new_zeros(()))
    return h.new_zeros(G, C).index_add(0, seg, c) if G > 0 else h.new_zeros(0, C)


def canonical_row_grad(h: Tensor, g: Tensor, mode: int, eps: float) -> Tensor:
    """``J(h_i)^T g_i`` row by row, J the Jacobian of ``c`` (symmetric, so also ``J g``):
    identity: ``g``; abs: ``sign(h) g`` (sign(0) = 0); l2: ``g / (n + eps) - h (h.g) / (n (n + eps)^2)``
    with ``n = ||h_i||`` and the second term 0 for zero rows."""
    if mode == ABS:
        return torch.sign(h) * g
    if mode == L2:
        n = torch.linalg.vector_norm(h, dim=1, keepdim=True)
        alpha = 1.0 / (n + eps)
        n_safe = torch.where(n > 0, n, torch.ones_like(n))
        beta = torch.where(n > 0, (h * g).sum(1, keepdim=True) * alpha * alpha / n_safe, torch.zeros_like(n))
        return alpha * g - beta * h
    return g


def canonical_segment_sum_backward(grad: Tensor, h: Tensor, ptr: Tensor, mask: Tensor | None = None,
                                   mode: int = 0, eps: float = 0.0) -> Tensor:
    """Gradient w.r.t. ``h`` of ``canonical_segment_sum`` given the upstream ``grad [G, C]``."""
    N, C = h.shape
    if grad.shape[0] == 0:
        return h.new_zeros(N, C)
    seg, valid = _row_mask(ptr, mask, N)
    g_rows = grad[seg]
    return torch.where(valid[:, None], canonical_row_grad(h, g_rows, mode, eps), h.new_zeros(()))


def canonical_backward_double(v: Tensor, grad: Tensor, h: Tensor, ptr: Tensor, mask: Tensor | None,
                              mode: int, eps: float, segment_sum=None) -> tuple[Tensor, Tensor]:
    """Vector-Jacobian product of :func:`canonical_segment_sum_backward` (the double backward).

    Given the cotangent ``v [N, C]`` of its output, returns ``(d grad [G, C], d h [N, C])``:

    * ``d grad[g] = sum_{i in g, mask} J(h_i) v_i`` (J symmetric);
    * ``d h``: 0 for modes 0/1 (sign is piecewise constant); for mode 2, with
      ``phi(h) = v.J(h)g``, ``q = 1 / (n (n + eps)^2)``:
      ``grad phi = -q [(v.g) h + (h.g) v + (h.v) g] + (h.v)(h.g)(3n + eps) / (n^3 (n + eps)^3) h``
      (0 for zero rows).

    Pure PyTorch (differentiable again); ``segment_sum(rows, ptr, mask)`` (default: the
    reference identity-mode segment sum) does the per-segment reduction.
    """
    N, C = h.shape
    G = grad.shape[0]
    if segment_sum is None:
        segment_sum = lambda rows, p, m: canonical_segment_sum(rows, p, m, IDENTITY, 0.0)  # noqa: E731
    d_grad = segment_sum(canonical_row_grad(h, v, mode, eps), ptr, mask)
    if mode != L2 or G == 0:
        return d_grad, torch.zeros_like(h)
    seg, valid = _row_mask(ptr, mask, N)
    g = grad[seg]
    n = torch.linalg.vector_norm(h, dim=1, keepdim=True)
    pos = n > 0
    n_safe = torch.where(pos, n, torch.ones_like(n))
    ne = n_safe + eps
    q = 1.0 / (n_safe * ne * ne)
    vg = (v * g).sum(1, keepdim=True)
    hg = (h * g).sum(1, keepdim=True)
    hv = (h * v).sum(1, keepdim=True)
    d_h = -q * (vg * h + hg * v + hv * g) + hv * hg * (3 * n_safe + eps) / (n_safe ** 3 * ne ** 3) * h
    d_h = torch.where(valid[:, None] & pos, d_h, h.new_zeros(()))
    return d_grad, d_h
