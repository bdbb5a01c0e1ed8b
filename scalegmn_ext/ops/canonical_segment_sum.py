"""Typed wrapper, fake kernels and autograd of the canonical (symmetry-invariant) readout.

:func:`canonical_segment_sum` sums canonicalised node features per segment (graph):
``out[g] = sum_{i in [ptr[g], ptr[g+1]), mask[i]} c(h[i])`` in one fused pass (no ``[N, C]``
intermediate), with

* ``"identity"`` (mode 0): ``c(h) = h`` -- a plain masked segment sum;
* ``"abs"`` (mode 1): ``c(h) = |h|`` -- invariant to flipping the sign of any row (the sign
  symmetry of odd activations such as tanh / sine);
* ``"l2"`` (mode 2): ``c(h) = h / (||h||_2 + eps)`` per row -- invariant to positive rescaling
  of any row (the scale symmetry of ReLU networks). Evaluated max-scaled (``m = max_c |h_c|``,
  ``y = h / m``, ``c = y / (||y|| + eps / m)``; details in csrc/common/canonical.h), so no
  intermediate under- or overflows for any finite row:

  - ``eps = 0``: ``c(a h) = c(h)`` to a few ulp for every finite row and ``a > 0``, whatever
    the magnitude (1e-300..1e300 in float64, 1e-35..1e35 in float32, subnormal rows included);
    a zero row gives 0 (the convention for 0/0).
  - ``eps > 0`` is where exactness ends, by design: with ``N = ||h||``,
    ``||c(a h) - c(h)|| / ||c(h)|| = eps |a - 1| / (a N + eps) <= (eps / N) |1 - 1/a|``, i.e.
    rows with ``||h|| >> eps`` are invariant up to ``~eps / ||h||`` and rows with ``||h|| ~ eps``
    are visibly not. A zero row gives 0; a row whose ``eps / m`` overflows (``m`` below ``eps``
    divided by the largest finite number of the accumulation type, ~1.8e308 / ~3.4e38) gives
    ``h / eps`` (what the formula rounds to there: ``||h||`` vanishes against ``eps``).

Gradients: ``torch.ops.scalegmn.canonical_segment_sum_backward`` (a compiled op) gives
``dh = J_c(h)^T grad[seg]``: ``grad`` (identity), ``sign(h) * grad`` with ``sign(0) = 0`` (abs:
the subgradient 0 at the kink), and ``grad / (N + eps) - h (h . grad) / (N (N + eps)^2)`` (l2,
``N = ||h||``, evaluated max-scaled as ``(grad - y beta) / (m d)``, ``beta = (y . grad) / (n d)``,
``n = ||y||``, ``d = n + eps / m``). A zero row gets ``grad / eps`` (the limit ``h -> 0``) when
``eps > 0`` and 0 when ``eps = 0`` (the derivative does not exist there; never inf/NaN); a row
whose ``eps / m`` overflows gets ``grad / eps``. The gradient of a tiny row is genuinely huge
(``~grad / ||h||``) and may overflow to inf when ``eps = 0``. The backward op has its own autograd, a
pure-PyTorch composite (:func:`scalegmn_ext.reference.canonical_segment_sum.canonical_backward_double`) whose
segment reduction calls the compiled forward op, so gradients of any order work.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .._library import FLOAT_DTYPES, register_op, use_compiled
from ..reference import canonical_segment_sum as _ref

__all__ = ["canonical_segment_sum", "CANONICAL_MODES"]

#: The op's mode ids (the ``int mode`` argument; csrc/common/canonical.h ``CanonicalMode``).
MODE_IDENTITY, MODE_ABS, MODE_L2 = 0, 1, 2
#: Accepted mode names -> op mode ids.
CANONICAL_MODES = {
    "identity": MODE_IDENTITY,
    "sum": MODE_IDENTITY,
    "abs": MODE_ABS,
    "sign": MODE_ABS,
    "l2": MODE_L2,
    "scale": MODE_L2,
}
_MODE_IDS = (MODE_IDENTITY, MODE_ABS, MODE_L2)
#: Default ``eps`` of mode ``"l2"`` (see the module doc).
DEFAULT_EPS = 1e-6


def _identity_segment_sum(rows: Tensor, ptr: Tensor, mask: Tensor | None) -> Tensor:
    return torch.ops.scalegmn.canonical_segment_sum(rows, ptr, mask, MODE_IDENTITY, 0.0)


def _canonical_segment_sum_fake(h, ptr, mask, mode, eps):
    torch._check(h.dim() == 2, lambda: "canonical_segment_sum: h must be 2-D [N, C]")
    torch._check(ptr.dim() == 1, lambda: "canonical_segment_sum: ptr must be 1-D [G + 1]")
    torch._check(MODE_IDENTITY <= mode <= MODE_L2, lambda: "canonical_segment_sum: mode must be 0, 1 or 2")
    return h.new_empty(ptr.shape[0] - 1, h.shape[1])


def _canonical_segment_sum_backward_fake(grad, h, ptr, mask, mode, eps):
    torch._check(h.dim() == 2 and grad.dim() == 2, lambda: "canonical_segment_sum_backward: bad ranks")
    torch._check(grad.shape[0] == ptr.shape[0] - 1, lambda: "canonical_segment_sum_backward: grad must be [G, C]")
    return h.new_empty(h.shape)


def _canonical_segment_sum_autograd(ctx, inputs, grad):
    h, ptr, mask, mode, eps = inputs
    gh = None
    if ctx.needs_input_grad[0]:
        gh = torch.ops.scalegmn.canonical_segment_sum_backward(grad, h, ptr, mask, mode, eps)
    return gh, None, None, None, None


def _canonical_segment_sum_backward_autograd(ctx, inputs, v):
    grad, h, ptr, mask, mode, eps = inputs
    d_grad, d_h = _ref.canonical_backward_double(v, grad, h, ptr, mask, mode, eps, segment_sum=_identity_segment_sum)
    return (
        d_grad if ctx.needs_input_grad[0] else None,
        d_h if ctx.needs_input_grad[1] else None,
        None,
        None,
        None,
        None,
    )


register_op("canonical_segment_sum", _canonical_segment_sum_fake, _canonical_segment_sum_autograd)
register_op(
    "canonical_segment_sum_backward", _canonical_segment_sum_backward_fake, _canonical_segment_sum_backward_autograd
)


def _mode_id(mode) -> int:
    if isinstance(mode, str):
        if mode not in CANONICAL_MODES:
            raise ValueError(f"mode must be one of {sorted(CANONICAL_MODES)} or 0/1/2, got {mode!r}")
        return CANONICAL_MODES[mode]
    if isinstance(mode, bool) or not isinstance(mode, int) or mode not in _MODE_IDS:
        raise ValueError(
            f"mode must be 0 (identity), 1 (abs) or 2 (l2) or one of {sorted(CANONICAL_MODES)}, got {mode!r}"
        )
    return mode


def canonical_segment_sum(
    h: Tensor, ptr: Tensor, mask: Tensor | None = None, mode: int | str = "identity", eps: float = DEFAULT_EPS
) -> Tensor:
    """Sign-/scale-canonical segment sum (graph readout), fused in one pass.

    Args:
        h: node features ``[N, C]`` (float16/bfloat16/float32/float64).
        ptr: segment offsets ``[G + 1]`` (int64/int32, non-decreasing, ``0 <= ptr[0]``,
            ``ptr[G] <= N``): segment ``g`` is rows ``[ptr[g], ptr[g+1])``; rows outside
            ``[ptr[0], ptr[G])`` are ignored.
        mask: optional bool ``[N]``; rows with ``False`` are left out (None: all rows).
        mode: ``"identity"``/``"sum"`` (0), ``"abs"``/``"sign"`` (1) or ``"l2"``/``"scale"`` (2);
            see the module doc.
        eps: ``>= 0``, only used by mode 2 (see the module doc: 0 gives exact scale invariance
            and 0 for zero rows; > 0 bounds ``|c|`` and the gradient near ``h = 0`` at the cost of
            an invariance error ``<= (eps / ||h||) |1 - 1/a|``).

    Returns:
        ``[G, C]``; empty segments give zeros. Deterministic; half/bfloat16 accumulate in
        float32. Differentiable w.r.t. ``h`` (any order).
    """
    op = "canonical_segment_sum"
    if not isinstance(h, Tensor):
        raise TypeError(f"{op}: h must be a Tensor [N, C], got {type(h).__name__}")
    if h.dim() != 2:
        raise ValueError(f"{op}: h must be 2-D [N, C], got shape {tuple(h.shape)}")
    if h.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{op}: h must be float16/bfloat16/float32/float64, got {h.dtype}")
    if not isinstance(ptr, Tensor):
        raise TypeError(f"{op}: ptr must be a Tensor [G + 1], got {type(ptr).__name__}")
    if ptr.dim() != 1 or ptr.numel() < 1:
        raise ValueError(f"{op}: ptr must be 1-D [G + 1] with at least one entry, got shape {tuple(ptr.shape)}")
    if ptr.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"{op}: ptr must be int64 or int32, got {ptr.dtype}")
    if ptr.device != h.device:
        raise ValueError(f"{op}: ptr is on {ptr.device} but h is on {h.device}")
    if mask is not None:
        if not isinstance(mask, Tensor):
            raise TypeError(f"{op}: mask must be a bool Tensor [N] or None, got {type(mask).__name__}")
        if mask.dtype != torch.bool:
            raise TypeError(f"{op}: mask must be bool, got {mask.dtype}")
        if mask.shape != (h.shape[0],):
            raise ValueError(
                f"{op}: mask must be [{h.shape[0]}] (one entry per row of h), got shape {tuple(mask.shape)}"
            )
        if mask.device != h.device:
            raise ValueError(f"{op}: mask is on {mask.device} but h is on {h.device}")
    m = _mode_id(mode)
    eps = float(eps)
    if not eps >= 0:
        raise ValueError(f"{op}: eps must be >= 0, got {eps}")
    fn = (
        torch.ops.scalegmn.canonical_segment_sum
        if use_compiled("canonical_segment_sum", h)
        else _ref.canonical_segment_sum
    )
    return fn(h, ptr, mask, m, eps)
