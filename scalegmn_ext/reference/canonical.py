"""Positive-scale canonicalisation ``c(x) = x / (||x|| + eps)`` that is exact for every finite input.

This is the one definition of the scale canonicaliser; the models, the op references and (in C++)
``scalegmn::scale_eq_message`` compute the same thing.

Why not ``x / x.norm().clamp_min(eps)``: a clamp makes ``c`` non-invariant for every vector whose
norm is below ``eps``, and real trained networks have such vectors (a 5.8e-6 ReLU weight, or an
ordinary one after a 1e-3 rescaling, gives edge states far below 1e-12). And ``x.norm()`` itself
squares the entries, which underflows below ~1e-154 (float64) / ~1e-19 (float32) and overflows
above the square roots of the largest floats, so even ``eps = 0`` would not be exact there.

Computed max-scaled: ``m = max |x_k|``, ``y = x / m`` (a division, so a subnormal ``m`` cannot
overflow a reciprocal), ``n = ||y||`` lies in ``[1, sqrt(d)]``, ``c = y / (n + eps / m)``. Every
step is a relative-error-``u`` operation on numbers of order one, so for ``eps = 0``
``c(a x)`` and ``c(x)`` differ by a few units of roundoff for any ``a > 0`` and any finite ``x``
(as long as ``a x`` itself is representable): rounding is not amplified, whatever ``||x||`` is.
``x = 0`` maps to ``0``. ``m`` enters only as a constant: as a function of ``x`` with ``m`` held
fixed the expression equals ``x / (||x|| + eps)`` identically, so ``m`` is detached and autograd
gives the exact Jacobian ``(I - c c^T ||x|| / (||x|| + eps)) / (||x|| + eps)``. At ``x = 0`` the
gradient is ``I / eps`` for ``eps > 0`` (the true derivative) and ``0`` for ``eps = 0`` (``c`` is
discontinuous there; 0 is the convention, never inf/NaN).

``eps > 0`` is where exactness ends: ``c(a x) - c(x)`` is then of order ``eps / ||x||``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["scale_normalize", "joint_scale_normalize_terms", "inverse_norm_sq", "row_max", "nonzero_or_one"]


def row_max(x: Tensor, dim: int = -1) -> Tensor:
    """``max |x|`` along ``dim`` (kept), detached: the scale every max-scaled map divides by."""
    return x.detach().abs().amax(dim, keepdim=True)


def nonzero_or_one(m: Tensor) -> Tensor:
    """``m`` with its zeros replaced by 1: a safe divisor for rows that are exactly zero."""
    return torch.where(m > 0, m, torch.ones_like(m))


def scale_normalize(x: Tensor, eps: float = 0.0, dim: int = -1) -> Tensor:
    """``x / (||x||_2 + eps)`` along ``dim``, max-scaled (see the module docstring); zero rows -> 0."""
    m = row_max(x, dim)
    nz = m > 0
    m_safe = nonzero_or_one(m)
    y = x / m_safe
    n = torch.linalg.vector_norm(y, dim=dim, keepdim=True)
    den = n + eps / m_safe if eps > 0 else n
    # zero rows: y = 0 and den = eps (gradient I / eps) or inf (gradient 0, value 0)
    den = torch.where(nz, den, torch.full_like(den, eps if eps > 0 else math.inf))
    return y / den


def joint_scale_normalize_terms(a: Tensor, b_max: Tensor, b_sq: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Pieces of ``[a, b] / ||[a, b]||`` (a joint, exact canonicalisation of two vectors that scale
    together) when ``b`` is shared by many ``a`` rows and pre-normalised per row as
    ``b~ = b / b_max`` (``b_max = max |b|``, detached; ``b_sq = ||b~||^2``), all broadcastable.

    Returns ``(a_bar, r, inv_den)`` with ``[a, b] / ||[a, b]|| = [a_bar, r b~] * inv_den``:
    ``m = max(max |a|, b_max)``, ``a_bar = a / m``, ``r = b_max / m`` in ``[0, 1]`` and
    ``inv_den = 1 / ||[a_bar, r b~]||`` (a norm in ``[1, sqrt(2d)]``); rows where both vanish give
    ``inv_den = 0`` (the output is 0). ``m`` is a detached constant, as in :func:`scale_normalize`,
    so gradients are exact.
    """
    m = torch.maximum(row_max(a), b_max)
    nz = m > 0
    m_safe = nonzero_or_one(m)
    a_bar = a / m_safe
    r = b_max / m_safe
    n2 = a_bar.pow(2).sum(-1, keepdim=True) + r * r * b_sq
    n = torch.where(nz, n2, torch.ones_like(n2)).sqrt()
    inv_den = torch.where(nz, 1.0 / n, torch.zeros_like(n))
    return a_bar, r, inv_den


def inverse_norm_sq(e: Tensor) -> Tensor:
    """``e / ||e||^2`` along the last dim (0 for ``e = 0``), which scales with ``1 / a`` when ``e``
    scales with ``a``: ``(y / ||y||^2) / m`` with ``y = e / m``, so it is exact for every non-zero
    ``e`` without a clamp. Its magnitude is ``1 / ||e||`` -- exact but unbounded (a subnormal
    ``e`` overflows it)."""
    m = row_max(e)
    nz = m > 0
    m_safe = nonzero_or_one(m)
    y = e / m_safe
    n2 = y.pow(2).sum(-1, keepdim=True)
    return torch.where(nz, y / nonzero_or_one(n2) / m_safe, torch.zeros_like(y))
