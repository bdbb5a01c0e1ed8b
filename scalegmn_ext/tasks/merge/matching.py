"""Git Re-Basin weight matching (Ainsworth et al. 2023) and its sign / positive-scale extensions.

Given two networks ``a`` and ``b`` of one :class:`~scalegmn_ext.weightspace.Architecture`, find a
group element ``g`` (hidden permutations, times signs or positive scales) such that
``apply_group_element(arch, b, g)`` is as close to ``a`` as possible in weight space. Because
``g`` is an element of the network's symmetry group, the aligned network computes exactly the
same function as ``b`` -- only its coordinates move -- so interpolating ``a`` with it tests
linear mode connectivity modulo the symmetry.

Objective: maximise ``sum_params <theta_a, g(theta_b)>`` (equivalently minimise
``||theta_a - g(theta_b)||^2`` for permutations and signs, which preserve norms). It is a sum of
bilinear assignment problems (NP-hard jointly), solved by coordinate descent: with every other
hidden layer fixed, one layer's problem is a single linear assignment problem (scipy's
``linear_sum_assignment``), so the objective never decreases. Sweeps visit the hidden layers in
a fresh random order and stop after the first sweep without a gain above ``1e-12`` (or after
``max_sweeps``), as in the reference implementation.

Methods (:func:`weight_matching`, ``method=``):

* ``"permutation"`` -- plain Git Re-Basin: ``q = 1``.
* ``"sign"`` -- signed permutations for odd activations (tanh, sine). For fixed neighbours the
  layer objective is ``sum_o s_o C[o, pi(o)]``, maximised by assigning on ``|C|`` and taking
  ``s_o = sign(C[o, pi(o)])``: one assignment per layer, as for permutations. The signed group
  has more local optima, so ``restarts`` random starts are run and the best objective is kept
  (from the identity alone a planted signed permutation is found only about half the time).
* ``"scale"`` -- positive scales for ReLU-like activations. The scale is continuous, so there is
  no ``|C|`` trick; instead both networks are first brought to a canonical scale -- every hidden
  unit's incoming weights and bias (after the previous layer's scales are pushed into them) are
  divided by their Euclidean norm and its outgoing weights multiplied by it, layer by layer --
  then the normalised networks are permutation-matched, and the result is mapped back to ``a``'s
  scales: ``g = n_a^{-1} o pi o n_b``. Units with a zero incoming vector keep scale 1. On a
  network and a scaled-and-permuted copy of it the normalised networks are exact permutations
  of each other, so the planted element is recovered exactly.

The result is always a :class:`~scalegmn_ext.weightspace.symmetry.GroupElement` with batch size 1,
in the package's convention (new unit ``o`` of ``g(b)`` is old unit ``pi[o]`` of ``b`` scaled by
``q[o]``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from ...weightspace.architecture import Architecture, Symmetry
from ...weightspace.symmetry import GroupElement, apply_group_element, compose, identity_element, invert
from ...weightspace.validation import check_weights

__all__ = ["MatchResult", "weight_matching", "scale_normalizer", "matching_objective", "METHODS"]

#: the matching methods and the activation symmetry each one needs
METHODS = {"permutation": Symmetry.PERMUTATION, "sign": Symmetry.SIGN, "scale": Symmetry.SCALE}
_PROGRESS_TOL = 1e-12  # a sweep "made progress" only above this gain (the reference's test)


@dataclasses.dataclass(frozen=True)
class MatchResult:
    """``g`` aligns ``b`` to ``a``; ``objective`` is ``sum <theta_a, g(theta_b)>`` (for ``"scale"``:
    of the normalised networks); ``sweeps`` counts coordinate-descent sweeps of the kept restart."""

    g: GroupElement
    objective: float
    sweeps: int
    restarts: int


def _single(arch: Architecture, net, name: str) -> tuple[list[Tensor], list[Tensor]]:
    """One network as float64 per-layer lists ``[out, in, ...]`` / ``[out]`` (batch of 1 accepted)."""
    if not isinstance(net, (tuple, list)) or len(net) != 2:
        raise TypeError(f"{name} must be a pair (weights, biases) of per-layer lists, got {type(net).__name__}")
    ws, bs, batched = check_weights(net[0], net[1], arch, arch_required=True)
    if batched and ws[0].shape[0] != 1:
        raise ValueError(f"{name} must be one network (unbatched, or a batch of 1), got a batch of {ws[0].shape[0]}")
    return [w[0].detach().double().cpu() for w in ws], [b[0].detach().double().cpu() for b in bs]


def _as_element(perms: Sequence[np.ndarray], signs: Sequence[np.ndarray]) -> GroupElement:
    return GroupElement(
        tuple(torch.as_tensor(p, dtype=torch.long).unsqueeze(0) for p in perms),
        tuple(torch.as_tensor(s, dtype=torch.float64).unsqueeze(0) for s in signs),
    )


def _apply(
    arch: Architecture, ws: list[Tensor], bs: list[Tensor], g: GroupElement
) -> tuple[list[Tensor], list[Tensor]]:
    """``g`` (B = 1) applied to one unbatched network."""
    w2, b2 = apply_group_element(arch, [w[None] for w in ws], [b[None] for b in bs], g)
    return [w[0] for w in w2], [b[0] for b in b2]


def matching_objective(arch: Architecture, a, b) -> float:
    """``sum_params <theta_a, theta_b>`` of two single networks (float64)."""
    wa, ba = _single(arch, a, "a")
    wb, bb = _single(arch, b, "b")
    return float(sum((x * y).sum() for x, y in zip(wa + ba, wb + bb)))


def _layer_cost(wa, ba, wb, bb, perms, signs, k: int) -> np.ndarray:
    """``C[o, j]``: similarity of ``a``'s unit ``o`` with ``b``'s unit ``j`` of hidden layer ``k + 1``
    (output side of ``arch.layers[k]``), every other hidden layer's current element applied to ``b``.

    numpy on purpose: these are small matrices, and torch's thread pool costs more than the
    products on a busy machine (measured 20x slower for the 2-32-32-1 SIREN)."""
    w_in = wb[k]
    if k > 0:  # b's incoming weights seen through the previous layer's current element
        shape = (1, -1) + (1,) * (w_in.ndim - 2)
        w_in = w_in[:, perms[k - 1]] * signs[k - 1].reshape(shape)
    c = wa[k].reshape(wa[k].shape[0], -1) @ w_in.reshape(w_in.shape[0], -1).T + np.outer(ba[k], bb[k])
    w_out = wb[k + 1]
    if k + 1 < len(perms):  # b's outgoing weights seen through the next layer's current element
        shape = (-1,) + (1,) * (w_out.ndim - 1)
        w_out = w_out[perms[k + 1]] * signs[k + 1].reshape(shape)
    n = c.shape[0]
    return c + np.swapaxes(wa[k + 1], 0, 1).reshape(n, -1) @ np.swapaxes(w_out, 0, 1).reshape(n, -1).T


def _descend(wa, ba, wb, bb, perms, signs, signed: bool, rng: np.random.Generator, max_sweeps: int):
    """Coordinate descent from ``(perms, signs)`` (modified in place); returns the sweep count."""
    n_hidden = len(perms)
    sweeps = 0
    for sweeps in range(1, max_sweeps + 1):  # noqa: B007 (returned: the count of the last sweep)
        progress = False
        for k in rng.permutation(n_hidden):
            c = _layer_cost(wa, ba, wb, bb, perms, signs, k)
            rows = np.arange(c.shape[0])
            old = float((signs[k] * c[rows, perms[k]]).sum())
            _, cols = linear_sum_assignment(np.abs(c) if signed else c, maximize=True)
            new_signs = np.where(c[rows, cols] < 0, -1.0, 1.0) if signed else np.ones(c.shape[0])
            new = float((new_signs * c[rows, cols]).sum())
            progress |= new > old + _PROGRESS_TOL
            perms[k], signs[k] = cols, new_signs  # always replaced, as in the reference (ties may move)
        if not progress:
            break
    return sweeps


def scale_normalizer(arch: Architecture, net) -> GroupElement:
    """The positive-scale element that gives every hidden unit of ``net`` unit incoming norm.

    Layer by layer: the unit's incoming weights (with the previous layer's scales already pushed
    in) and its bias form one vector; its scale is ``1 / ||vector||`` (1 for a zero vector).
    Returns a B = 1 element with identity permutations."""
    ws, bs = _single(arch, net, "net")
    scales, prev = [], None
    for k in range(arch.num_layers - 1):
        w = ws[k]
        if prev is not None:  # the action divides a unit's incoming weights by the sender's scale
            w = w / prev.view((1, -1) + (1,) * (w.dim() - 2))
        norm = torch.cat([w.flatten(1), bs[k].unsqueeze(1)], 1).norm(dim=1)
        q = torch.where(norm > 0, 1.0 / norm, torch.ones_like(norm))
        if not bool(torch.isfinite(q).all()):  # a subnormal norm overflows 1 / norm: leave that unit alone
            q = torch.where(torch.isfinite(q), q, torch.ones_like(q))
        scales.append(q)
        prev = q
    g = identity_element(arch, 1, dtype=torch.float64)
    return GroupElement(g.perm, tuple(q.unsqueeze(0) for q in scales))


def weight_matching(
    arch: Architecture,
    a,
    b,
    *,
    method: str | None = None,
    restarts: int | None = None,
    max_sweeps: int = 100,
    seed: int = 0,
) -> MatchResult:
    """Align network ``b`` to network ``a`` (see the module doc); ``apply_group_element(arch, b, r.g)``.

    Args:
        a, b: ``(weights, biases)`` of one network each (unbatched, or a batch of one).
        method: ``"permutation"``, ``"sign"`` or ``"scale"``; default: the architecture's own
            group (``arch.symmetry``). ``"sign"``/``"scale"`` must be admitted by the activation.
        restarts: random starts for ``"sign"`` (best objective kept; the first start is the
            identity); default 5 for ``"sign"``, 1 otherwise (permutation matching from the
            identity is reliable).
        max_sweeps: coordinate-descent sweeps per start (>= 1).
        seed: seeds the layer orders and the random starts (deterministic per seed).
    """
    if not isinstance(arch, Architecture):
        raise TypeError(f"arch must be an Architecture, got {type(arch).__name__}")
    method = arch.symmetry.value if method is None else method
    if method not in METHODS:
        raise ValueError(f"method must be one of {sorted(METHODS)}, got {method!r}")
    need = METHODS[method]
    if need != Symmetry.PERMUTATION and need != arch.symmetry:
        raise ValueError(
            f"method={method!r} needs an activation with {need.value!r} symmetry; "
            f"{arch.activation!r} admits {arch.symmetry.value!r}"
        )
    if restarts is None:
        restarts = 5 if method == "sign" else 1
    if isinstance(restarts, bool) or not isinstance(restarts, int) or restarts < 1:
        raise ValueError(f"restarts must be a positive int, got {restarts!r}")
    if isinstance(max_sweeps, bool) or not isinstance(max_sweeps, int) or max_sweeps < 1:
        raise ValueError(f"max_sweeps must be a positive int, got {max_sweeps!r}")
    wa, ba = _single(arch, a, "a")
    wb, bb = _single(arch, b, "b")
    n_a, n_b = None, None
    if method == "scale":  # match the normalised networks, then map back to a's scales
        n_a, n_b = scale_normalizer(arch, a), scale_normalizer(arch, b)
        wa, ba = _apply(arch, wa, ba, n_a)
        wb, bb = _apply(arch, wb, bb, n_b)
    hidden = arch.layout[1:-1]
    rng = np.random.default_rng(seed)
    np_nets = [[t.numpy() for t in x] for x in (wa, ba, wb, bb)]  # the descent's cost matrices are numpy
    best = None
    for r in range(restarts):
        if r == 0:
            perms = [np.arange(n) for n in hidden]
            signs = [np.ones(n) for n in hidden]
        else:
            perms = [rng.permutation(n) for n in hidden]
            signs = [rng.choice([-1.0, 1.0], size=n) for n in hidden]
        sweeps = _descend(*np_nets, perms, signs, method == "sign", rng, max_sweeps) if hidden else 0
        g = _as_element(perms, signs)
        wg, bg = _apply(arch, wb, bb, g)
        obj = float(sum((x * y).sum() for x, y in zip(wa + ba, wg + bg)))
        if best is None or obj > best[1] + _PROGRESS_TOL:
            best = (g, obj, sweeps)
    g, obj, sweeps = best
    if method == "scale":
        g = compose(invert(n_a), compose(g, n_b))
    return MatchResult(g=g, objective=obj, sweeps=sweeps, restarts=restarts)
