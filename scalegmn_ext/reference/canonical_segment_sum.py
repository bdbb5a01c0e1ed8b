"""Pure-PyTorch references of the canonical readout ops (test oracles and fallbacks).

``canonical_segment_sum(h, ptr, mask, mode, eps)``: ``out[g] = sum_{i in [ptr[g], ptr[g+1]),
mask[i]} c(h[i])`` with ``c`` = identity (mode 0), ``|h|`` (mode 1, sign-invariant) or
``h / (||h||_2 + eps)`` per row (mode 2, positive-scale-invariant). ``canonical_segment_sum_backward``
is its explicit vector-Jacobian product (the formula the compiled backward kernel implements);
``canonical_backward_double`` differentiates that formula once more (used as the autograd of
the compiled backward op).

Mode 2 is evaluated max-scaled exactly as the kernels do (csrc/common/canonical.h): no sum of
squares of raw values (it under/overflows below ~1e-154 / above ~1e154 in float64), the same
zero-row and eps-dominated-row conventions, and the same fast/slow division paths, so compiled
and reference agree to rounding for every finite row, subnormal ones included, and neither the
values nor their autograd produce NaN/inf for zero rows.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "canonical_segment_sum",
    "canonical_segment_sum_backward",
    "canonical_backward_double",
    "row_segments",
    "canonicalize_rows",
    "canonical_row_grad",
]

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


def _acc_eps(h: Tensor, eps: float) -> float:
    """``eps`` as the kernels see it: rounded to the accumulation type (float32 for
    float16/bfloat16/float32), so that e.g. eps = 1e-50 acts as 0 on float32 rows there too."""
    return float(torch.tensor(eps, dtype=torch.float64 if h.dtype == torch.float64 else torch.float32))


def _div_eps(eps: float, m: Tensor) -> Tensor:
    """``eps / m`` as a correctly rounded division (see the note in :class:`_L2Rows`)."""
    return torch.full_like(m, eps) / m


class _L2Rows:
    """Max-scaled per-row state of mode 2, as in csrc/common/canonical.h:
    ``m = max|h_c|``, ``y = h / m``, ``n = ||y||``, ``r = eps / m``, ``d = n + r`` (so
    ``||h|| + eps = m d``). ``scaled`` is False for eps-dominated rows (``m == 0``, or ``eps / m``
    overflows); those get ``c = h / eps`` (0 when eps = 0). Fast paths as in the kernels: ``y =
    h * (1 / m)`` when m and 1/m are normal; ``recip``: ``D = m d`` and ``1 / D`` are normal, and
    ``y / d`` is evaluated as ``h * (1 / D)``.

    ``m`` is detached: ``c`` equals ``h / (||h|| + eps)`` for every fixed scale ``m > 0``, so
    treating it as a constant gives autograd the exact derivative. Entries of rows that a branch
    does not use are replaced by harmless values (ones) before any division, so that neither the
    values nor their autograd ever meet 0/0 or inf * 0.
    """

    def __init__(self, h: Tensor, eps: float):
        self.eps = _acc_eps(h, eps)
        m = h.detach().abs().amax(1, keepdim=True)
        # NB: `float / tensor` is computed by torch as float * reciprocal(tensor), which overflows
        # for subnormal m (and gives 0 * inf = NaN for eps = 0); every eps / m here is a true
        # tensor division (_div_eps).
        with torch.no_grad():
            r = _div_eps(self.eps, torch.where(m == 0, torch.ones_like(m), m))
            # NaN rows stay `scaled` so that their NaN reaches every output (as in the kernels).
            self.scaled = (m != 0) & ~(r > torch.finfo(h.dtype).max)
        one = torch.ones((), dtype=h.dtype, device=h.device)
        self.m = torch.where(self.scaled, m, one)
        self.h = torch.where(self.scaled, h, one)
        tiny = torch.finfo(h.dtype).tiny
        fast_m = (self.m >= tiny) & (self.m <= 1.0 / tiny)  # y = h * (1/m), as the kernels
        self.y = torch.where(fast_m, self.h * (1.0 / torch.where(fast_m, self.m, one)), self.h / self.m)
        self.n = torch.linalg.vector_norm(self.y, dim=1, keepdim=True)  # >= 1 in every row
        self.d = self.n + _div_eps(self.eps, self.m)
        D = self.m * self.d
        self.recip = (D >= tiny) & (D <= 1.0 / tiny)
        self.inv_D = 1.0 / torch.where(self.recip, D, one)

    def value(self) -> Tensor:
        """``c = y / d`` of the scaled rows (``h * (1 / (m d))`` on the fast path)."""
        return torch.where(self.recip, self.h * self.inv_D, self.y / self.d)

    def grad(self, g: Tensor) -> Tensor:
        """``(g - y beta) / (m d)``, ``beta = (y.g) / (n d)``, of the scaled rows: on the fast
        path ``(g - h k) / D`` with ``k = beta / m = (y.g) / (n D)``; the slow path divides by
        ``d`` first (``m d`` may be subnormal or overflow there)."""
        ygn = (self.y * g).sum(1, keepdim=True) / self.n
        fast = (g - self.h * (ygn * self.inv_D)) * self.inv_D
        slow = (g - self.y * (ygn / self.d)) / self.d / self.m
        return torch.where(self.recip, fast, slow)

    def dominated(self, x: Tensor) -> Tensor:
        """The eps-dominated rows' ``x / eps`` (0 when eps = 0: only zero rows are dominated then)."""
        return x / self.eps if self.eps > 0 else torch.zeros_like(x)


def canonicalize_rows(h: Tensor, mode: int, eps: float) -> Tensor:
    """``c(h)`` row by row (``[N, C]``; materialised -- the compiled op never does)."""
    if mode == ABS:
        return h.abs()
    if mode == L2:
        if h.shape[1] == 0:
            return h.clone()
        row = _L2Rows(h, eps)
        return torch.where(row.scaled, row.value(), row.dominated(h))
    return h


def canonical_segment_sum(
    h: Tensor, ptr: Tensor, mask: Tensor | None = None, mode: int = 0, eps: float = 0.0
) -> Tensor:
    N, C = h.shape
    G = ptr.shape[0] - 1
    seg, valid = _row_mask(ptr, mask, N)
    c = torch.where(valid[:, None], canonicalize_rows(h, mode, eps), h.new_zeros(()))
    return h.new_zeros(G, C).index_add(0, seg, c) if G > 0 else h.new_zeros(0, C)


def canonical_row_grad(h: Tensor, g: Tensor, mode: int, eps: float) -> Tensor:
    """``J(h_i)^T g_i`` row by row, J the Jacobian of ``c`` (symmetric, so also ``J g``):
    identity: ``g``; abs: ``sign(h) g`` (sign(0) = 0); l2: ``g / (N + eps) - h (h.g) / (N (N + eps)^2)``
    with ``N = ||h_i||``, evaluated max-scaled as ``[g - y beta] / (m d)``, ``beta = (y.g) / (n d)``
    (see :class:`_L2Rows`); eps-dominated rows get ``g / eps`` (a zero row with eps = 0: 0)."""
    if mode == ABS:
        return torch.sign(h) * g
    if mode == L2:
        if h.shape[1] == 0:
            return g.clone()
        row = _L2Rows(h, eps)
        return torch.where(row.scaled, row.grad(g), row.dominated(g))
    return g


def canonical_segment_sum_backward(
    grad: Tensor, h: Tensor, ptr: Tensor, mask: Tensor | None = None, mode: int = 0, eps: float = 0.0
) -> Tensor:
    """Gradient w.r.t. ``h`` of ``canonical_segment_sum`` given the upstream ``grad [G, C]``."""
    N, C = h.shape
    if grad.shape[0] == 0:
        return h.new_zeros(N, C)
    seg, valid = _row_mask(ptr, mask, N)
    g_rows = grad[seg]
    return torch.where(valid[:, None], canonical_row_grad(h, g_rows, mode, eps), h.new_zeros(()))


def canonical_backward_double(
    v: Tensor, grad: Tensor, h: Tensor, ptr: Tensor, mask: Tensor | None, mode: int, eps: float, segment_sum=None
) -> tuple[Tensor, Tensor]:
    """Vector-Jacobian product of :func:`canonical_segment_sum_backward` (the double backward).

    Given the cotangent ``v [N, C]`` of its output, returns ``(d grad [G, C], d h [N, C])``:

    * ``d grad[g] = sum_{i in g, mask} J(h_i) v_i`` (J symmetric);
    * ``d h``: 0 for modes 0/1 (sign is piecewise constant); for mode 2, with
      ``phi(h) = v.J(h)g``, ``N = ||h||``, ``D = N + eps``:
      ``grad phi = -[(v.g) h + (h.g) v + (h.v) g] / (N D^2) + (h.v)(h.g)(3N + eps) h / (N^3 D^3)``,
      evaluated max-scaled (``y = h / m``, ``n = N / m``, ``m = max|h_c|``; m cancels) as
      ``{-[(v.g) y + (y.g) v + (y.v) g] + (y.v)(y.g) k y / n^2} / n / D / D`` with
      ``k = (3N + eps) / D = 1 + 2 n / (n + eps / m)`` in [1, 3], so no power of N or D is
      formed and only a genuinely over/underflowing result does so. Rows whose ``eps / m``
      overflows use the same formula (``k = 1``, ``D = eps``). Zero rows get ``d h = 0``: the
      second derivative does not exist at ``h = 0`` (it depends on the direction of approach);
      0 is the convention, for every eps including 0, and no NaN/inf is formed there (values or
      their autograd).

    Pure PyTorch (differentiable again); ``segment_sum(rows, ptr, mask)`` (default: the
    reference identity-mode segment sum) does the per-segment reduction.
    """
    N, C = h.shape
    G = grad.shape[0]
    if segment_sum is None:
        segment_sum = lambda rows, p, m: canonical_segment_sum(rows, p, m, IDENTITY, 0.0)  # noqa: E731
    d_grad = segment_sum(canonical_row_grad(h, v, mode, eps), ptr, mask)
    if mode != L2 or G == 0 or C == 0:
        return d_grad, torch.zeros_like(h)
    seg, valid = _row_mask(ptr, mask, N)
    g = grad[seg]
    eps_a = _acc_eps(h, eps)
    m = h.detach().abs().amax(1, keepdim=True)
    nz = m != 0  # NaN rows count as non-zero: their NaN propagates
    one = torch.ones((), dtype=h.dtype, device=h.device)
    m = torch.where(nz, m, one)
    y = torch.where(nz, h, one) / m
    n = torch.linalg.vector_norm(y, dim=1, keepdim=True)  # >= 1
    D = m * n + eps_a  # ||h|| + eps; > 0 (m * n >= m > 0)
    k = 1 + 2 * n / (n + _div_eps(eps_a, m))  # eps / m = inf -> k = 1
    vg = (v * g).sum(1, keepdim=True)
    yg = (y * g).sum(1, keepdim=True)
    yv = (y * v).sum(1, keepdim=True)
    x = -(vg * y + yg * v + yv * g) + yv * yg * k / (n * n) * y
    d_h = x / n / D / D
    d_h = torch.where(valid[:, None] & nz, d_h, h.new_zeros(()))
    return d_grad, d_h
