"""Weight-space symmetry group actions on batches of MLPs and CNNs.

Only hidden neurons (hidden channels for conv layers, including the last conv layer's channels
that feed the dense head through global average pooling) are acted on; input and output neurons
are never permuted or scaled.

Conventions. An architecture with L layers has hidden layers ``1 .. L-1``. A
:class:`GroupElement` stores, for hidden layer ``ℓ``, a permutation ``π_ℓ`` and a scale ``q_ℓ``
at **list index** ``ℓ - 1``: ``g.perm[k]`` / ``g.scale[k]`` act on the output neurons of
``arch.layers[k]`` (``k = 0 .. L-2``), each ``[B, n_{k+1}]``. For the input layer and the output
layer take ``π = id``, ``q = 1``. The action (new network from old) is::

    W'_ℓ[o, i] = q_ℓ[o] * W_ℓ[π_ℓ[o], π_{ℓ-1}[i]] / q_{ℓ-1}[i]     (conv: same, kernel untouched)
    b'_ℓ[o]    = q_ℓ[o] * b_ℓ[π_ℓ[o]]

i.e. new neuron ``o`` of hidden layer ``ℓ`` is old neuron ``π_ℓ[o]`` with its incoming weights and
bias multiplied by ``q_ℓ[o]`` and its outgoing weights divided by it. Its activation becomes
``q_ℓ[o] * h_ℓ[π_ℓ[o]]``, so the network function is unchanged when ``σ(q z) = q σ(z)``:
``q ∈ {±1}`` for odd activations (tanh, sine), ``q > 0`` for positively homogeneous ones (ReLU,
leaky ReLU, identity); sigmoid/GELU/SiLU nets admit permutations only.

Composition: ``apply(compose(g1, g2), W) == apply(g1, apply(g2, W))`` (g2 acts first).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import torch
from torch import Tensor

from .architecture import ACTIVATION_SYMMETRY, Architecture, Symmetry
from .validation import check_weights

__all__ = [
    "GroupElement",
    "random_group_element",
    "identity_element",
    "apply_group_element",
    "transform",
    "invert",
    "compose",
    "permute_node_features",
    "permute_edge_features",
    "node_scale_factors",
    "edge_scale_factors",
]


@dataclasses.dataclass(frozen=True)
class GroupElement:
    """A batch of B group elements; ``perm[k]``/``scale[k]`` (``[B, n_{k+1}]``) act on hidden layer ``k + 1``.

    ``perm`` entries are long tensors, each row a permutation of ``0 .. n-1``; ``scale`` entries are
    floating tensors (±1 for sign, > 0 for scale, all ones for permutation-only elements).
    """

    perm: tuple[Tensor, ...]
    scale: tuple[Tensor, ...]

    def __post_init__(self) -> None:
        perm, scale = tuple(self.perm), tuple(self.scale)
        object.__setattr__(self, "perm", perm)
        object.__setattr__(self, "scale", scale)
        if len(perm) != len(scale):
            raise ValueError(f"GroupElement.perm has {len(perm)} layers but scale has {len(scale)}")
        for k, (p, s) in enumerate(zip(perm, scale)):
            if not isinstance(p, Tensor) or not isinstance(s, Tensor):
                raise TypeError(f"GroupElement.perm[{k}] and scale[{k}] must be Tensors")
            if p.dtype != torch.long:
                raise TypeError(f"GroupElement.perm[{k}] must be a long tensor, got {p.dtype}")
            if not s.is_floating_point():
                raise TypeError(f"GroupElement.scale[{k}] must be a floating tensor, got {s.dtype}")
            if p.dim() != 2 or s.shape != p.shape:
                raise ValueError(
                    f"GroupElement.perm[{k}] and scale[{k}] must both be [B, n], got {tuple(p.shape)} and {tuple(s.shape)}"
                )
            if p.shape[0] != perm[0].shape[0]:
                raise ValueError(f"GroupElement.perm[{k}] has batch size {p.shape[0]}, perm[0] has {perm[0].shape[0]}")

    @property
    def batch_size(self) -> int | None:
        """B, or None when the architecture has no hidden layer (the trivial group)."""
        return self.perm[0].shape[0] if self.perm else None

    @property
    def widths(self) -> tuple[int, ...]:
        """Hidden widths ``(n_1, ..., n_{L-1})``."""
        return tuple(p.shape[1] for p in self.perm)

    def to(self, *args, **kwargs) -> GroupElement:
        """Move to a device (perm stays long; dtype arguments apply to ``scale`` only)."""
        dev = kwargs.get("device")
        for a in args:
            if isinstance(a, (torch.device, str)):
                dev = a
        return GroupElement(
            tuple(p.to(device=dev) if dev is not None else p for p in self.perm),
            tuple(s.to(*args, **kwargs) for s in self.scale),
        )


# ----------------------------------------------------------------------------------------------
# construction
# ----------------------------------------------------------------------------------------------
def _check_arch(arch) -> None:
    if not isinstance(arch, Architecture):
        raise TypeError(f"arch must be an Architecture, got {type(arch).__name__}")


def _check_batch_size(batch_size) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 0:
        raise ValueError(f"batch_size must be a non-negative int, got {batch_size!r}")
    return batch_size


def _resolve_symmetry(arch: Architecture, symmetry) -> Symmetry:
    if symmetry is None:
        return arch.symmetry
    try:
        sym = Symmetry(symmetry)
    except ValueError:
        raise ValueError(f"symmetry must be one of {[s.value for s in Symmetry]} or None, got {symmetry!r}") from None
    allowed = ACTIVATION_SYMMETRY[arch.activation]
    if sym != Symmetry.PERMUTATION and sym != allowed:
        raise ValueError(
            f"symmetry={sym.value!r} is not admitted by activation {arch.activation!r} of {arch} "
            f"(it admits {allowed.value!r} or 'permutation')"
        )
    return sym


def identity_element(
    arch: Architecture, batch_size: int, *, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
) -> GroupElement:
    """The identity element for B networks of ``arch``."""
    _check_arch(arch)
    B = _check_batch_size(batch_size)
    hidden = arch.layout[1:-1]
    perm = tuple(torch.arange(n, device=device).expand(B, n).clone() for n in hidden)
    scale = tuple(torch.ones(B, n, dtype=dtype, device=device) for n in hidden)
    return GroupElement(perm, scale)


def random_group_element(
    arch: Architecture,
    batch_size: int,
    *,
    symmetry: Symmetry | str | None = None,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
    permute: bool = True,
    scale_range: tuple[float, float] = (0.25, 4.0),
) -> GroupElement:
    """B independent random group elements for ``arch``.

    Args:
        symmetry: the group on top of permutations; default ``arch.symmetry``. ``'sign'`` /
            ``'scale'`` must be admitted by ``arch.activation`` (else ``ValueError``).
        generator: a ``torch.Generator``; the same seed gives the same element. Random numbers
            are drawn on the generator's device (CPU when None) and then moved to ``device``.
        permute: False gives identity permutations (scales / signs only).
        scale_range: ``(lo, hi)``, ``0 < lo <= hi``: positive scales are log-uniform on it.

    Sign elements have independent uniform ±1 per hidden neuron; permutations are uniform.
    """
    _check_arch(arch)
    B = _check_batch_size(batch_size)
    sym = _resolve_symmetry(arch, symmetry)
    if dtype not in (torch.float16, torch.bfloat16, torch.float32, torch.float64):
        raise TypeError(f"dtype must be a floating dtype, got {dtype}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    try:
        lo, hi = (float(v) for v in scale_range)
    except (TypeError, ValueError):
        raise ValueError(f"scale_range must be a pair (lo, hi), got {scale_range!r}") from None
    if not (0 < lo <= hi) or not math.isfinite(hi):
        raise ValueError(f"scale_range must satisfy 0 < lo <= hi < inf, got {scale_range!r}")
    gdev = generator.device if generator is not None else torch.device("cpu")
    perms, scales = [], []
    for n in arch.layout[1:-1]:
        if permute:
            p = torch.rand(B, n, generator=generator, device=gdev).argsort(dim=1)
        else:
            p = torch.arange(n, device=gdev).expand(B, n).clone()
        if sym == Symmetry.SIGN:
            s = torch.randint(0, 2, (B, n), generator=generator, device=gdev, dtype=torch.float64) * 2 - 1
        elif sym == Symmetry.SCALE:
            u = torch.rand(B, n, generator=generator, device=gdev, dtype=torch.float64)
            s = torch.exp(math.log(lo) + (math.log(hi) - math.log(lo)) * u)
        else:
            s = torch.ones(B, n, device=gdev, dtype=torch.float64)
        perms.append(p.to(device=device if device is not None else gdev))
        scales.append(s.to(dtype=dtype, device=device if device is not None else gdev))
    return GroupElement(tuple(perms), tuple(scales))


# ----------------------------------------------------------------------------------------------
# validation of an element against an architecture / batch
# ----------------------------------------------------------------------------------------------
def _check_element(arch: Architecture, g, B: int, device: torch.device, check_perm: bool = True) -> None:
    if not isinstance(g, GroupElement):
        raise TypeError(f"g must be a GroupElement, got {type(g).__name__}")
    hidden = arch.layout[1:-1]
    if len(g.perm) != len(hidden):
        raise ValueError(
            f"g must have {len(hidden)} hidden layers (widths {list(hidden)}) for {arch}, got {len(g.perm)}"
        )
    for k, (n, p, s) in enumerate(zip(hidden, g.perm, g.scale)):
        if tuple(p.shape) != (B, n):
            raise ValueError(f"g.perm[{k}] must be [B, n] = [{B}, {n}] for {arch}, got shape {tuple(p.shape)}")
        if p.device != device or s.device != device:
            raise TypeError(f"g.perm[{k}] / g.scale[{k}] are on {p.device} / {s.device}; expected {device}")
    if check_perm and hidden and B > 0:
        ok = torch.ones((), dtype=torch.bool, device=device)
        for p in g.perm:
            ok = ok & (p.sort(dim=1).values == torch.arange(p.shape[1], device=device)).all()
        if not bool(ok):
            raise ValueError("g.perm entries must be permutations of 0..n-1 in every row")


def _batch_index(B: int, device) -> Tensor:
    return torch.arange(B, device=device).unsqueeze(1)


# ----------------------------------------------------------------------------------------------
# action on weights
# ----------------------------------------------------------------------------------------------
def apply_group_element(
    arch: Architecture,
    weights: Sequence[Tensor],
    biases: Sequence[Tensor | None] | None,
    g: GroupElement,
) -> tuple[list[Tensor], list[Tensor]]:
    """Apply ``g`` to B networks: returns new ``(weights, biases)`` (see the module docstring).

    ``weights``/``biases`` as in :func:`scalegmn_ext.weightspace.functional.forward` (None biases are zeros);
    unbatched weights need a ``g`` with B = 1 and give unbatched results. Vectorised over the
    batch (gathers), differentiable w.r.t. weights, biases and ``g.scale``.
    """
    ws, bs, batched = check_weights(weights, biases, arch, arch_required=True)
    B = ws[0].shape[0]
    _check_element(arch, g, B, ws[0].device)
    L = arch.num_layers
    dt = ws[0].dtype
    out_w, out_b = [], []
    for l in range(L):
        w, b = ws[l], bs[l]
        extra = w.dim() - 3  # 2 for conv kernels, 0 for dense
        if l < L - 1:  # permute + scale output neurons
            p, q = g.perm[l], g.scale[l].to(dt)
            shape = (B, w.shape[1]) + (1,) * (w.dim() - 2)
            idx = p.view(shape).expand(w.shape)
            w = torch.gather(w, 1, idx) * q.view(shape)
            b = torch.gather(b, 1, p) * q
        if l > 0:  # permute + unscale input neurons
            p, q = g.perm[l - 1], g.scale[l - 1].to(dt)
            shape = (B, 1, w.shape[2]) + (1,) * extra
            idx = p.view(shape).expand(w.shape)
            w = torch.gather(w, 2, idx) / q.view(shape)
        out_w.append(w if batched else w[0])
        out_b.append(b if batched else b[0])
    return out_w, out_b


def transform(
    arch: Architecture,
    weights: Sequence[Tensor],
    biases: Sequence[Tensor | None] | None,
    *,
    generator: torch.Generator | None = None,
    symmetry: Symmetry | str | None = None,
    **kwargs,
) -> tuple[list[Tensor], list[Tensor], GroupElement]:
    """Draw a random element (:func:`random_group_element`, extra kwargs forwarded) and apply it.

    Returns ``(weights, biases, g)``; the element matches the weights' batch size, dtype and device.
    """
    ws, _, batched = check_weights(weights, biases, arch, arch_required=True)
    g = random_group_element(
        arch, ws[0].shape[0], symmetry=symmetry, generator=generator, dtype=ws[0].dtype, device=ws[0].device, **kwargs
    )
    new_w, new_b = apply_group_element(arch, weights, biases, g)
    return new_w, new_b, g


# ----------------------------------------------------------------------------------------------
# group operations
# ----------------------------------------------------------------------------------------------
def invert(g: GroupElement) -> GroupElement:
    """The inverse: ``apply(invert(g), apply(g, W)) == W``.

    ``π⁻¹`` per row, and ``q⁻¹[o] = 1 / q[π⁻¹[o]]``.
    """
    if not isinstance(g, GroupElement):
        raise TypeError(f"g must be a GroupElement, got {type(g).__name__}")
    perms, scales = [], []
    for p, q in zip(g.perm, g.scale):
        inv = torch.empty_like(p)
        inv.scatter_(1, p, torch.arange(p.shape[1], device=p.device).expand_as(p))
        perms.append(inv)
        scales.append(1.0 / torch.gather(q, 1, inv))
    return GroupElement(tuple(perms), tuple(scales))


def compose(g1: GroupElement, g2: GroupElement) -> GroupElement:
    """``g1 ∘ g2``: ``apply(compose(g1, g2), W) == apply(g1, apply(g2, W))`` (g2 acts first).

    ``π[o] = π2[π1[o]]`` and ``q[o] = q1[o] * q2[π1[o]]``.
    """
    for name, g in (("g1", g1), ("g2", g2)):
        if not isinstance(g, GroupElement):
            raise TypeError(f"{name} must be a GroupElement, got {type(g).__name__}")
    if g1.widths != g2.widths or g1.batch_size != g2.batch_size:
        raise ValueError(
            f"g2 (B={g2.batch_size}, widths {g2.widths}) does not match g1 (B={g1.batch_size}, widths {g1.widths})"
        )
    perms, scales = [], []
    for p1, q1, p2, q2 in zip(g1.perm, g1.scale, g2.perm, g2.scale):
        if p1.device != p2.device:
            raise TypeError(f"g2 is on {p2.device} but g1 is on {p1.device}")
        perms.append(torch.gather(p2, 1, p1))
        scales.append(q1 * torch.gather(q2.to(q1.dtype), 1, p1))
    return GroupElement(tuple(perms), tuple(scales))


# ----------------------------------------------------------------------------------------------
# action on graph features (the node / edge order of scalegmn_ext.weights_to_graph)
# ----------------------------------------------------------------------------------------------
def _node_index(arch: Architecture, g: GroupElement, B: int, device) -> Tensor:
    """``[B, N]``: new node j is old node idx[:, j]."""
    layout = arch.layout
    parts, off = [], 0
    for l, n in enumerate(layout):
        if 0 < l < len(layout) - 1:
            parts.append(g.perm[l - 1] + off)
        else:
            parts.append(torch.arange(off, off + n, device=device).expand(B, n))
        off += n
    return torch.cat(parts, dim=1)


def _edge_index(arch: Architecture, g: GroupElement, B: int, device) -> Tensor:
    """``[B, E]``: new edge e is old edge idx[:, e] (receiver-major, layer by layer)."""
    L = arch.num_layers
    parts, off = [], 0
    for l, spec in enumerate(arch.layers):
        n_out, n_in = spec.out_features, spec.in_features
        po = g.perm[l] if l < L - 1 else torch.arange(n_out, device=device).expand(B, n_out)
        pi = g.perm[l - 1] if l > 0 else torch.arange(n_in, device=device).expand(B, n_in)
        parts.append((off + po.unsqueeze(2) * n_in + pi.unsqueeze(1)).reshape(B, n_out * n_in))
        off += n_out * n_in
    return torch.cat(parts, dim=1)


def _check_feat(arch: Architecture, g, feat, name: str, n: int, what: str) -> tuple[Tensor, bool]:
    if not isinstance(feat, Tensor):
        raise TypeError(f"{name} must be a Tensor [B, {n}, d] or [B, {n}], got {type(feat).__name__}")
    if feat.dim() not in (2, 3) or feat.shape[1] != n:
        raise ValueError(f"{name} must be [B, {n}, d] or [B, {n}] ({what} of {arch}), got shape {tuple(feat.shape)}")
    _check_element(arch, g, feat.shape[0], feat.device, check_perm=False)
    return feat, feat.dim() == 2


def permute_node_features(arch: Architecture, g: GroupElement, node_feat: Tensor) -> Tensor:
    """Permute per-node features ``[B, N, d]`` (or ``[B, N]``) in graph node order by ``g``.

    Node order: inputs, hidden layer 1, ..., outputs (``N = arch.num_nodes``). New node ``o`` of
    hidden layer ``ℓ`` takes the features of old node ``π_ℓ[o]``; input/output nodes stay.
    Permutation only: ``g.scale`` is ignored (see :func:`node_scale_factors`). With this,
    ``weights_to_graph(apply_group_element(W, g))`` equals ``permute_*_features(weights_to_graph(W))``
    for a permutation-only ``g``, and an equivariant per-node output ``f`` satisfies
    ``f(g·W) == permute_node_features(arch, g, f(W))``.
    """
    _check_arch(arch)
    feat, flat = _check_feat(arch, g, node_feat, "node_feat", arch.num_nodes, "N = number of graph nodes")
    B = feat.shape[0]
    idx = _node_index(arch, g, B, feat.device)
    if flat:
        return torch.gather(feat, 1, idx)
    return torch.gather(feat, 1, idx.unsqueeze(2).expand(B, -1, feat.shape[2]))


def permute_edge_features(arch: Architecture, g: GroupElement, edge_feat: Tensor) -> Tensor:
    """Permute per-edge features ``[B, E, d]`` (or ``[B, E]``) in graph edge order by ``g``.

    Edges of layer ``ℓ`` are receiver-major: edge ``(o, i)`` sits at ``offset_ℓ + o * n_in + i``
    (the row-major order of ``W_ℓ``), offsets cumulative over layers, ``E = arch.num_edges``. New
    edge ``(o, i)`` takes the features of old edge ``(π_ℓ[o], π_{ℓ-1}[i])``. Permutation only
    (``g.scale`` is ignored; see :func:`edge_scale_factors`); the feature axis ``d`` (e.g. the
    kernel grid) is untouched.
    """
    _check_arch(arch)
    feat, flat = _check_feat(arch, g, edge_feat, "edge_feat", arch.num_edges, "E = number of graph edges")
    B = feat.shape[0]
    idx = _edge_index(arch, g, B, feat.device)
    if flat:
        return torch.gather(feat, 1, idx)
    return torch.gather(feat, 1, idx.unsqueeze(2).expand(B, -1, feat.shape[2]))


def node_scale_factors(arch: Architecture, g: GroupElement) -> Tensor:
    """``[B, N]`` multiplier of each node's bias under ``g`` (in the NEW node order): ``q_ℓ[o]``, 1 for inputs/outputs.

    ``weights_to_graph(g·W)`` node features (biases) = ``permute_node_features(node) * node_scale_factors``.
    """
    _check_arch(arch)
    B = g.batch_size if g.batch_size is not None else 1
    ref = g.scale[0] if g.scale else torch.ones(())
    _check_element(arch, g, B, ref.device, check_perm=False)
    parts = []
    for l, n in enumerate(arch.layout):
        parts.append(g.scale[l - 1] if 0 < l < len(arch.layout) - 1 else ref.new_ones(B, n))
    return torch.cat(parts, dim=1)


def edge_scale_factors(arch: Architecture, g: GroupElement) -> Tensor:
    """``[B, E]`` multiplier of each edge's weight under ``g`` (NEW edge order): ``q_ℓ[o] / q_{ℓ-1}[i]``."""
    _check_arch(arch)
    B = g.batch_size if g.batch_size is not None else 1
    ref = g.scale[0] if g.scale else torch.ones(())
    _check_element(arch, g, B, ref.device, check_perm=False)
    L = arch.num_layers
    parts = []
    for l, spec in enumerate(arch.layers):
        qo = g.scale[l] if l < L - 1 else ref.new_ones(B, spec.out_features)
        qi = g.scale[l - 1] if l > 0 else ref.new_ones(B, spec.in_features)
        parts.append((qo.unsqueeze(2) / qi.unsqueeze(1)).reshape(B, spec.num_edges))
    return torch.cat(parts, dim=1)
