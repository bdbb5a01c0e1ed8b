"""The merging experiments of Boufalis et al. 2025, on the package's own zoos.

1. :func:`inr_orbit_experiment` -- for test INRs, random group elements of type ``P``
   (permutations), ``D`` (sign flips) or ``PD`` (both), plus Gaussian weight noise ``eps``; each
   original is interpolated with a transformed, noised member by every method; the loss along the
   path is the MSE of the rendered INR to the original image. Barriers per pair, then mean +- std.
2. :func:`orbit_collapse` -- latents of orbit members: the ratio of the mean distance within an
   orbit to the mean distance between orbits (0 = every orbit is one point), and 2-D t-SNE
   coordinates for the plot.
3. :func:`cnn_pair_experiment` -- pairs of different trained CNNs: accuracy and cross-entropy along
   the path per method, accuracy lost by reconstruction, the merged (alpha = 1/2) model against the
   ensemble of its two endpoints.

Methods: ``naive`` (interpolate the weights as they are), ``autoencoder`` (canonicalise both
ends, interpolate the decoded networks; the ends are reconstructions), ``latent`` (interpolate the
latents, decode every point), ``rebasin`` (Git Re-Basin weight matching, permutations only) and
``rebasin_sign`` / ``rebasin_scale`` (matching extended to the activation's group).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ...weightspace.architecture import Architecture, Symmetry
from ...weightspace.functional import forward, render_inr
from ...weightspace.symmetry import GroupElement, apply_group_element, random_group_element
from .autoencoder import canonicalize
from .interpolation import barrier_from_curve, default_alphas, interpolate
from .matching import weight_matching

__all__ = [
    "TRANSFORMS",
    "methods_for",
    "inr_orbit_experiment",
    "orbit_collapse",
    "cnn_pair_experiment",
    "summarize_barriers",
]

#: orbit types: (permute hidden neurons, apply the activation's sign/scale group)
TRANSFORMS = {"P": (True, False), "D": (False, True), "PD": (True, True)}


def methods_for(arch: Architecture, with_latent: bool = True) -> list[str]:
    """The interpolation methods that apply to ``arch``'s symmetry group."""
    m = ["naive", "autoencoder"] + (["latent"] if with_latent else []) + ["rebasin"]
    if arch.symmetry != Symmetry.PERMUTATION:
        m.append(f"rebasin_{arch.symmetry.value}")
    return m


def _take(net, i):
    return [w[i] for w in net[0]], [b[i] for b in net[1]]


def _align(arch, a, b, method: str, seed: int):
    """Align every network of batch ``b`` to the matching one of ``a`` (one LAP problem per pair),
    then apply all the found elements in one batched group action."""
    kind = "permutation" if method == "rebasin" else method.split("_", 1)[1]
    gs = [
        weight_matching(arch, _take(a, i), _take(b, i), method=kind, seed=seed + i).g for i in range(a[0][0].shape[0])
    ]
    g = GroupElement(
        tuple(torch.cat(p) for p in zip(*(x.perm for x in gs))),
        tuple(torch.cat(q).to(b[0][0].dtype) for q in zip(*(x.scale for x in gs))),
    )
    return apply_group_element(arch, *b, g)


def _path(arch, model, a, b, method: str, alphas: Tensor, seed: int, a_side: dict | None = None):
    """All networks on the paths a_i -> b_i for ``method``: ``[P * A, ...]`` pair-major.

    ``a_side`` (optional) caches what the autoencoder methods compute from ``a`` alone, for
    callers that pair the same ``a`` with several ``b``."""
    a_side = {} if a_side is None else a_side
    if method == "naive":
        return interpolate(arch, a, b, alphas)
    if method == "autoencoder":
        if "canonical" not in a_side:
            a_side["canonical"] = canonicalize(model, *a)
        return interpolate(arch, a_side["canonical"], canonicalize(model, *b), alphas)
    if method == "latent":
        ae = getattr(model, "module", model)
        with torch.no_grad():
            if "latent" not in a_side:
                a_side["latent"] = ae.encode(*a)
            za, zb = a_side["latent"], ae.encode(*b)
            s = alphas.to(za.dtype).view(1, -1, 1)
            z = torch.lerp(
                za.unsqueeze(1).expand(-1, s.shape[1], -1),
                zb.unsqueeze(1).expand(-1, s.shape[1], -1),
                s.expand(za.shape[0], -1, za.shape[1]),
            )
            return ae.decode(z.flatten(0, 1))
    if method.startswith("rebasin"):
        return interpolate(arch, a, _align(arch, a, b, method, seed), alphas)
    raise ValueError(f"unknown method {method!r}")


def _orbit_members(arch: Architecture, nets, members: int, transform: str, generator: torch.Generator):
    """``members`` random members per network of the orbit type ``transform``: returns the index of
    each member's network, the originals repeated to match, and the members."""
    if transform not in TRANSFORMS:
        raise ValueError(f"transforms must be among {sorted(TRANSFORMS)}, got {transform!r}")
    permute, group = TRANSFORMS[transform]
    idx = torch.arange(nets[0][0].shape[0]).repeat_interleave(members)
    a = ([w[idx] for w in nets[0]], [b[idx] for b in nets[1]])
    g = random_group_element(
        arch,
        idx.numel(),
        symmetry=arch.symmetry.value if group else "permutation",
        permute=permute,
        generator=generator,
        dtype=a[0][0].dtype,
    )
    return idx, a, apply_group_element(arch, *a, g)


def summarize_barriers(curves: Tensor, alphas: Tensor) -> dict:
    """Per-pair barriers of ``curves [P, A]`` -> mean/std of the max and of the mean barrier, and
    the mean loss at the two ends (a barrier of 0 between two bad networks is no merge)."""
    r = barrier_from_curve(alphas, curves)
    b, m = r.barrier.double(), r.mean_barrier.double()
    sd = lambda t: float(t.std()) if t.numel() > 1 else 0.0
    ends = r.end_losses.double()
    return {
        "barrier_mean": float(b.mean()),
        "barrier_std": sd(b),
        "mean_barrier_mean": float(m.mean()),
        "mean_barrier_std": sd(m),
        "end_loss_mean": float(ends.mean()),
        "pairs": int(b.numel()),
    }


def inr_orbit_experiment(
    arch: Architecture,
    model,
    inrs,
    images: Tensor,
    *,
    transforms: Sequence[str] = ("P", "D", "PD"),
    members: int = 4,
    eps: Sequence[float] = (0.005,),
    n_alphas: int = 41,
    methods: Sequence[str] | None = None,
    seed: int = 0,
) -> dict:
    """Experiment 1 (see the module doc).

    ``inrs``: ``(weights, biases)`` of the test INRs ``[N, ...]``; ``images`` ``[N, H, W]`` their
    source images (the loss target). Every INR gets ``members`` orbit members per transform type.
    Returns ``{"alphas", "results": {transform: {eps: {method: {curves [P, A], barrier stats}}}}}``."""
    methods = list(methods or methods_for(arch))
    for t in transforms:
        if t not in TRANSFORMS:
            raise ValueError(f"transforms must be among {sorted(TRANSFORMS)}, got {t!r}")
    alphas = default_alphas(n_alphas)
    H, W = images.shape[-2:]
    a_side: dict = {}  # every transform and eps pairs the same originals: their codes are computed once
    out = {}
    for t in transforms:
        gen = torch.Generator().manual_seed(seed * 7919 + sum(map(ord, t)))
        # pair p: original idx[p] <-> one of its members
        idx, a, member = _orbit_members(arch, inrs, members, t, gen)
        target = images[idx].to(a[0][0].dtype)
        out[t] = {}
        for e in eps:
            ng = torch.Generator().manual_seed(seed * 104729 + int(round(e * 1e6)))
            b = (
                [w + e * torch.randn(w.shape, generator=ng, dtype=w.dtype) for w in member[0]],
                [v + e * torch.randn(v.shape, generator=ng, dtype=v.dtype) for v in member[1]],
            )
            out[t][e] = {}
            for m in methods:
                ws, bs = _path(arch, model, a, b, m, alphas, seed, a_side)
                curves = _render_curves(arch, ws, bs, target, alphas.numel())
                out[t][e][m] = {"curves": curves, **summarize_barriers(curves, alphas)}
    return {"alphas": alphas, "results": out}


def _render_curves(arch, ws, bs, target: Tensor, n_alphas: int, chunk: int = 4096) -> Tensor:
    """Rendered-image MSE to ``target [P, H, W]`` for the path networks ``[P * n_alphas, ...]``,
    rendered ``chunk`` networks at a time: the paper's 512 members x 10 runs make 210k networks,
    whose hidden activations at once would need tens of GB."""
    H, W = target.shape[-2:]
    tgt = target.repeat_interleave(n_alphas, 0)
    out = []
    with torch.no_grad():
        for s in range(0, ws[0].shape[0], chunk):
            img = render_inr(arch, [w[s : s + chunk] for w in ws], [b[s : s + chunk] for b in bs], H, W)
            out.append((img - tgt[s : s + chunk]).pow(2).mean((1, 2)))
    return torch.cat(out).view(target.shape[0], n_alphas)


def orbit_collapse(
    encoder, arch: Architecture, inrs, *, members: int = 16, transform: str = "PD", seed: int = 0, tsne: bool = True
) -> dict:
    """Experiment 2: embed ``members`` orbit members of each network with ``encoder`` (a callable
    ``(weights, biases) -> [B, k]``). Returns the within/between distance ratio and (optionally)
    2-D t-SNE coordinates with orbit labels."""
    N = inrs[0][0].shape[0]
    idx, _, member = _orbit_members(arch, inrs, members, transform, torch.Generator().manual_seed(seed))
    with torch.no_grad():
        z = encoder(*member).double()
    d = torch.cdist(z, z)
    same = idx.unsqueeze(0) == idx.unsqueeze(1)
    off = ~torch.eye(idx.numel(), dtype=torch.bool)
    within = float(d[same & off].mean()) if members > 1 else 0.0
    between = float(d[~same].mean()) if N > 1 else math.nan
    res = {"within": within, "between": between, "ratio": within / between if between > 0 else math.nan, "labels": idx}
    if tsne:
        from sklearn.manifold import TSNE

        perp = float(min(30, max(2, idx.numel() // 4)))
        res["tsne"] = torch.as_tensor(TSNE(2, perplexity=perp, random_state=seed, init="pca").fit_transform(z.numpy()))
    return res


def _class_metrics(arch, ws, bs, x, y, chunk: int = 64):
    """Per network: accuracy and mean cross-entropy on (x, y); and softmax outputs for ensembles."""
    accs, ces, probs = [], [], []
    with torch.no_grad():
        for s in range(0, ws[0].shape[0], chunk):
            logits = forward(arch, [w[s : s + chunk] for w in ws], [b[s : s + chunk] for b in bs], x)
            accs.append((logits.argmax(-1) == y).double().mean(-1))
            ces.append(
                F.cross_entropy(logits.flatten(0, 1), y.repeat(logits.shape[0]), reduction="none")
                .view(logits.shape[0], -1)
                .double()
                .mean(-1)
            )
            probs.append(logits.softmax(-1))
    return torch.cat(accs), torch.cat(ces), torch.cat(probs)


def cnn_pair_experiment(
    arch: Architecture,
    model,
    a,
    b,
    images: Tensor,
    labels: Tensor,
    *,
    n_alphas: int = 21,
    methods: Sequence[str] | None = None,
    seed: int = 0,
) -> dict:
    """Experiment 3 (see the module doc): ``a``/``b`` are ``[P, ...]`` batches of paired CNNs."""
    methods = list(methods or methods_for(arch, with_latent=False))
    alphas = default_alphas(n_alphas)
    P, A = a[0][0].shape[0], alphas.numel()
    x = images.to(a[0][0].dtype)
    if not arch.is_cnn:
        x = x.flatten(1)
    half = A // 2
    res = {}
    acc_a, _, prob_a = _class_metrics(arch, *a, x, labels)
    acc_b, _, prob_b = _class_metrics(arch, *b, x, labels)
    ens = ((prob_a + prob_b) / 2).argmax(-1).eq(labels).double().mean(-1)
    # how often the two ends predict the same class: a decoder that maps every network to nearly
    # one network would show a much higher agreement for its ends than the originals have
    agree = prob_a.argmax(-1).eq(prob_b.argmax(-1)).double().mean(-1)
    for m in methods:
        ws, bs = _path(arch, model, a, b, m, alphas, seed)
        acc, ce, _ = _class_metrics(arch, ws, bs, x, labels)
        acc, ce = acc.view(P, A), ce.view(P, A)
        err = 1 - acc
        res[m] = {
            "accuracy": acc,
            "cross_entropy": ce,
            "ends_agreement": _ends_agreement(arch, ws, bs, P, A, x),
            **{f"ce_{k}": v for k, v in summarize_barriers(ce, alphas).items()},
            **{f"error_{k}": v for k, v in summarize_barriers(err, alphas).items()},
            "merged_accuracy": float(acc[:, half].mean()),
            "ends_accuracy": float(acc[:, [0, -1]].mean()),
        }
    return {
        "alphas": alphas,
        "results": res,
        "original_accuracy": float(torch.cat([acc_a, acc_b]).mean()),
        "ensemble_accuracy": float(ens.mean()),
        "original_agreement": float(agree.mean()),
    }


def _ends_agreement(arch, ws, bs, P: int, A: int, x: Tensor) -> float:
    """Mean fraction of images on which the two ends of each path predict the same class."""
    ends_w = [torch.stack([w.view(P, A, *w.shape[1:])[:, i] for i in (0, A - 1)], 1).flatten(0, 1) for w in ws]
    ends_b = [torch.stack([b.view(P, A, -1)[:, i] for i in (0, A - 1)], 1).flatten(0, 1) for b in bs]
    with torch.no_grad():
        pred = forward(arch, ends_w, ends_b, x).argmax(-1).view(P, 2, -1)
    return float(pred[:, 0].eq(pred[:, 1]).double().mean())
