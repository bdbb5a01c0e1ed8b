"""Linear interpolation between networks and loss barriers along the path.

``theta(alpha) = (1 - alpha) theta_a + alpha theta_b``. All alphas of a path are stacked on the
batch axis, so one batched functional forward (:func:`scalegmn_ext.weightspace.functional.forward`)
evaluates the whole path. Alphas outside ``[0, 1]`` are allowed: they extrapolate along the line.

Barriers of a loss curve ``L(alpha)`` (Entezari et al. 2022 define the first; the second is the
"area" variant later papers report because it is steadier with few alphas):

* ``barrier = max_alpha [L(alpha) - ((1 - alpha) L(0) + alpha L(1))]`` -- the largest rise above
  the straight line between the end losses;
* ``mean_barrier`` -- the trapezoid average over ``alpha`` of that same rise.

A network interpolated with itself has both barriers exactly 0. Use an odd number of evenly
spaced alphas so that ``alpha = 1/2`` is sampled (:func:`default_alphas`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from ...weightspace.architecture import Architecture
from ...weightspace.validation import check_weights

__all__ = ["interpolate", "default_alphas", "BarrierResult", "barrier_from_curve", "loss_barrier"]


def default_alphas(n: int = 41, *, dtype: torch.dtype = torch.float64) -> Tensor:
    """``n`` evenly spaced alphas on ``[0, 1]``; ``n`` must be odd so that ``1/2`` is among them."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 3 or n % 2 == 0:
        raise ValueError(f"n must be an odd int >= 3 (so that alpha = 1/2 is sampled), got {n!r}")
    return torch.linspace(0.0, 1.0, n, dtype=dtype)


def _alphas(alphas) -> Tensor:
    t = torch.as_tensor(alphas, dtype=torch.float64)
    if t.dim() != 1 or t.numel() < 2:
        raise ValueError(f"alphas must be a 1-D sequence of at least 2 values, got shape {tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()):
        raise ValueError("alphas must be finite")
    return t


def interpolate(arch: Architecture, a, b, alphas) -> tuple[list[Tensor], list[Tensor]]:
    """Networks along the line from ``a`` to ``b``, stacked on the batch axis.

    ``a`` / ``b``: ``(weights, biases)`` of one network each (unbatched) -> a batch of
    ``len(alphas)`` networks; or of ``P`` pairs each (batched ``[P, ...]``) -> ``[P * A, ...]``
    ordered pair-major (pair ``p``, alpha ``i`` at row ``p * A + i``). Differentiable."""
    al = _alphas(alphas)
    wa, ba, batched_a = check_weights(*a, arch, arch_required=True)
    wb, bb, batched_b = check_weights(*b, arch, arch_required=True)
    if batched_a != batched_b or wa[0].shape[0] != wb[0].shape[0]:
        raise ValueError(
            f"a and b must both be single networks or batches of equal size, got "
            f"{wa[0].shape[0] if batched_a else 'one network'} and {wb[0].shape[0] if batched_b else 'one network'}"
        )
    if wa[0].dtype != wb[0].dtype or wa[0].device != wb[0].device:
        raise TypeError(f"a is {wa[0].dtype} on {wa[0].device} but b is {wb[0].dtype} on {wb[0].device}")
    al = al.to(dtype=wa[0].dtype, device=wa[0].device)

    def mix(x: Tensor, y: Tensor) -> Tensor:  # [P, ...] x [A] -> [P * A, ...]
        s = al.view((1, -1) + (1,) * (x.dim() - 1))
        # torch.lerp is exact at both ends and for x == y (a network with itself stays itself)
        x, y = x.unsqueeze(1), y.unsqueeze(1)
        return torch.lerp(x.expand_as(y + s), y.expand_as(y + s), s.expand_as(y + s)).flatten(0, 1)

    return [mix(x, y) for x, y in zip(wa, wb)], [mix(x, y) for x, y in zip(ba, bb)]


@dataclasses.dataclass(frozen=True)
class BarrierResult:
    """A loss curve and its barriers; tensors have a leading pair axis when several pairs were given."""

    alphas: Tensor
    losses: Tensor  # [..., A]
    barrier: Tensor  # [...]
    mean_barrier: Tensor  # [...]
    argmax_alpha: Tensor  # [...] where the largest rise is
    end_losses: Tensor  # [..., 2] the losses at alpha = 0 and alpha = 1


def barrier_from_curve(alphas, losses: Tensor) -> BarrierResult:
    """Barriers of loss curves ``losses`` ``[..., A]`` sampled at ``alphas`` (which must contain 0 and 1)."""
    al = _alphas(alphas).to(losses.device)
    if losses.shape[-1] != al.numel():
        raise ValueError(f"losses must be [..., {al.numel()}] (one loss per alpha), got shape {tuple(losses.shape)}")
    i0, i1 = (al == 0).nonzero(), (al == 1).nonzero()
    if i0.numel() == 0 or i1.numel() == 0:
        raise ValueError("alphas must contain 0 and 1 (the end points define the barrier's baseline)")
    lo = losses.double()
    l0, l1 = lo[..., int(i0[0])], lo[..., int(i1[0])]
    # lerp is exact at the ends and when L(0) == L(1), so a flat curve has a barrier of exactly 0
    line = torch.lerp(l0.unsqueeze(-1).expand_as(lo), l1.unsqueeze(-1).expand_as(lo), al.expand_as(lo))
    rise = lo - line
    order = al.argsort()
    a_s, r_s = al[order], rise[..., order]
    span = a_s[-1] - a_s[0]
    mean = torch.trapezoid(r_s, a_s, dim=-1) / span
    best = rise.max(dim=-1)
    return BarrierResult(
        alphas=al,
        losses=losses,
        barrier=best.values,
        mean_barrier=mean,
        argmax_alpha=al[best.indices],
        end_losses=torch.stack([l0, l1], -1),
    )


def loss_barrier(
    arch: Architecture,
    a,
    b,
    eval_fn: Callable[[list[Tensor], list[Tensor]], Tensor],
    alphas: Sequence[float] | Tensor | None = None,
) -> BarrierResult:
    """Interpolate ``a`` -> ``b`` at ``alphas`` (default :func:`default_alphas`) and evaluate every
    point in ONE call ``eval_fn(weights, biases) -> losses [n]`` on the stacked batch."""
    al = default_alphas() if alphas is None else _alphas(alphas)
    ws, bs = interpolate(arch, a, b, al)
    losses = eval_fn(ws, bs)
    if not isinstance(losses, Tensor) or losses.shape != (ws[0].shape[0],):
        raise ValueError(
            f"eval_fn must return a tensor of {ws[0].shape[0]} losses (one per network), got "
            f"{getattr(losses, 'shape', type(losses).__name__)}"
        )
    A = al.numel()
    return barrier_from_curve(al, losses.detach().reshape(-1, A).squeeze(0))
