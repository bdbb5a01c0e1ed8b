"""CNN zoo: Small-CNN-Zoo networks trained on real images with varied hyper-parameters.

Architecture (Unterthiner et al. 2020, "Predicting Neural Network Accuracy from Weights"): three
3x3 stride-2 conv layers with 16 channels, global average pooling, dense 16 -> 10, ReLU or tanh.
As in the published zoo, every network draws its own hyper-parameters:

=============  ==========================  ====================================================
activation     uniform over ``activations``  ReLU / tanh
lr             log-uniform [5e-4, 5e-2]      Adam learning rate
weight_decay   log-uniform [1e-8, 1e-2]      L2 coefficient: ``grad += wd * w`` on conv/dense kernels
dropout        uniform [0, 0.7]              dropout after every hidden activation (per-network rate)
init_std       log-uniform [1e-3, 0.5]       kernels ~ N(0, std^2) truncated at 2 std; biases 0
train_frac     uniform [0.1, 1.0]            fraction of the training pool this network sees
=============  ==========================  ====================================================

Each network trains with Adam (batch ``batch_size``) for ``epochs`` passes over *its own*
training subset, so networks with small subsets take fewer steps. Checkpoints (weights plus
train/test accuracy and loss) are stored at the epochs in ``checkpoints`` (epoch 0 = the
initialisation), each as a row of the zoo, like the published zoo's several steps per run.

Training is batched: the networks of a chunk that share the activation (in groups of at most
``group_size``) are one functional model (grouped convolutions, per-network mini-batches from
per-network data streams), with per-network dropout masks and a hand-written batched Adam with
per-network learning-rate and weight-decay tensors. Finished networks leave the batch, so the
work equals training each one alone. Groups run in parallel on worker threads.

Network ``i`` of a zoo with seed ``s`` draws hyper-parameters, initialisation, training subset
and data order from its own generator seeded with ``s * 2**32 + i``; dropout masks come from
one generator per (chunk, activation, group). A chunk's result is thus fixed by the settings, so a
resumed run equals an uninterrupted one.
"""

from __future__ import annotations

import hashlib
import math
import os
import threading
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ... import __version__ as _pkg_version
from ...weightspace.architecture import Architecture
from ...weightspace.functional import activation_fn, forward
from .format import Zoo, ZooWriter
from .generation import (
    Cancelled,
    check_split_fractions,
    default_workers,
    parallel_map,
    single_threaded_ops,
    summary_stats,
)

__all__ = [
    "generate_cnn_zoo",
    "DEFAULT_RANGES",
    "CNN_COLUMNS",
    "cnn_eval_data",
    "classifier_zoo_data",
    "generate_classifier_zoo",
    "evaluate",
    "cnn_summary_table",
    "cnn_accuracy_histogram",
    "default_checkpoints",
]

#: name -> (low, high, "log" | "lin"): the published Small CNN Zoo ranges.
DEFAULT_RANGES: dict[str, tuple[float, float, str]] = {
    "lr": (5e-4, 5e-2, "log"),
    "weight_decay": (1e-8, 1e-2, "log"),
    "dropout": (0.0, 0.7, "lin"),
    "init_std": (1e-3, 0.5, "log"),
    "train_frac": (0.1, 1.0, "lin"),
}

CNN_COLUMNS = [
    ("index", "int"),
    ("network", "int"),
    ("checkpoint", "int"),
    ("epoch", "int"),
    ("step", "int"),
    ("is_final", "bool"),
    ("activation", "str"),
    ("seed", "int"),
    ("lr", "float"),
    ("weight_decay", "float"),
    ("dropout", "float"),
    ("init_std", "float"),
    ("train_frac", "float"),
    ("train_size", "int"),
    ("batch_size", "int"),
    ("train_acc", "float"),
    ("train_loss", "float"),
    ("test_acc", "float"),
    ("test_loss", "float"),
    ("chunk", "int"),
]

ProgressFn = Callable[[float, int, str], None]


def default_checkpoints(epochs: int) -> list[int]:
    """0, 1, 2, 4, 8, ... up to ``epochs``, plus ``epochs``."""
    out, e = [0], 1
    while e < epochs:
        out.append(e)
        e *= 2
    return sorted(set(out + [epochs]))


# ----------------------------------------------------------------------------------------------
# data
# ----------------------------------------------------------------------------------------------
def source_data(source: str, seed: int, train_size: int, test_size: int, root: str | None):
    """(pool_x [N,1,28,28], pool_y, test_x, test_y, pool_indices, test_indices, tags)."""
    from .. import data

    g = torch.Generator().manual_seed(seed)
    if source == "fashion":
        tr_x, tr_y = data.load_fashion_mnist("train", root)
        te_x, te_y = data.load_fashion_mnist("test", root)
        pool_idx = torch.randperm(tr_x.shape[0], generator=g)[:train_size]
        test_idx = torch.randperm(te_x.shape[0], generator=g)[:test_size]
        tags = ("fashion-train", "fashion-test")
    elif source == "mnist":
        x, y = data.load_mnist_5k(root)
        perm = torch.randperm(x.shape[0], generator=g)
        tr_x, tr_y, te_x, te_y = x, y, x, y
        pool_idx = perm[:4000][:train_size]
        test_idx = perm[4000:][:test_size]
        tags = ("mnist5k", "mnist5k")
    else:
        raise ValueError(f"source must be 'fashion' or 'mnist', got {source!r}")
    return (
        tr_x[pool_idx].unsqueeze(1),
        tr_y[pool_idx],
        te_x[test_idx].unsqueeze(1),
        te_y[test_idx],
        pool_idx,
        test_idx,
        tags,
    )


def cnn_eval_data(zoo: Zoo, root: str | None = None) -> tuple[Tensor, Tensor]:
    """The exact test images and labels that the zoo's ``test_acc`` was measured on: ``[m, 1, 28, 28]``
    for a CNN zoo, the flattened pooled images ``[m, image_size**2]`` for an MLP zoo."""
    return classifier_zoo_data(zoo, "test", root)


def classifier_zoo_data(zoo: Zoo, part: str = "test", root: str | None = None) -> tuple[Tensor, Tensor]:
    """Images (in the zoo networks' input form) and labels of a classifier zoo: ``part="test"``
    the test images its ``test_acc`` was measured on, ``"pool"`` the training pool its networks
    drew their subsets from."""
    if part not in ("test", "pool"):
        raise ValueError(f"part must be 'test' or 'pool', got {part!r}")
    d = zoo.info.get("data") or {}
    if "test_source" not in d or "pool_indices" not in d:
        raise ValueError(f"{zoo.path} is a {zoo.kind!r} zoo without stored image indices (not a classifier zoo)")
    from .. import data

    src = d["test_source" if part == "test" else "train_source"]
    if src.startswith("fashion"):
        x, y = data.load_fashion_mnist(src.split("-", 1)[1], root)
    else:
        x, y = data.load_mnist_5k(root)
    idx = torch.tensor(d["test_indices" if part == "test" else "pool_indices"], dtype=torch.long)
    x, y = x[idx].unsqueeze(1), y[idx]
    if zoo.kind == "mlp":
        from .mlp import flatten_images

        x = flatten_images(x, int(zoo.info["config"]["image_size"]))
    return x, y


# ----------------------------------------------------------------------------------------------
# hyper-parameters and initialisation
# ----------------------------------------------------------------------------------------------
def _sample(g: torch.Generator, lo: float, hi: float, kind: str) -> float:
    u = torch.rand((), generator=g, dtype=torch.float64).item()
    if kind == "log":
        return math.exp(math.log(lo) + u * (math.log(hi) - math.log(lo)))
    return lo + u * (hi - lo)


def _check_ranges(ranges: dict | None) -> dict[str, tuple[float, float, str]]:
    out = dict(DEFAULT_RANGES)
    for k, v in (ranges or {}).items():
        if k not in DEFAULT_RANGES:
            raise ValueError(f"unknown hyper-parameter range {k!r}; known: {sorted(DEFAULT_RANGES)}")
        lo, hi = float(v[0]), float(v[1])
        kind = v[2] if len(v) > 2 else DEFAULT_RANGES[k][2]
        if not lo <= hi or kind not in ("log", "lin") or (kind == "log" and lo <= 0):
            raise ValueError(f"range for {k} must be low <= high (> 0 for log-uniform), got {v!r}")
        out[k] = (lo, hi, kind)
    if out["dropout"][1] >= 1 or out["dropout"][0] < 0:
        raise ValueError(f"dropout range must lie in [0, 1), got {out['dropout'][:2]}")
    if not 0 < out["train_frac"][0] <= out["train_frac"][1] <= 1:
        raise ValueError(f"train_frac range must lie in (0, 1], got {out['train_frac'][:2]}")
    return out


def _network_setup(i: int, seed: int, activations: Sequence[str], ranges: dict, n_pool: int, batch_size: int):
    g = torch.Generator().manual_seed(seed * 2**32 + i)
    act = activations[int(torch.randint(len(activations), (), generator=g))]
    hp = {k: _sample(g, *ranges[k]) for k in ("lr", "weight_decay", "dropout", "init_std", "train_frac")}
    n_i = min(n_pool, max(batch_size, int(round(hp["train_frac"] * n_pool))))
    subset = torch.randperm(n_pool, generator=g)[:n_i]
    return {
        "network": i,
        "seed": seed * 2**32 + i,
        "activation": act,
        **hp,
        "train_size": n_i,
        "subset": subset,
        "gen": g,
    }


def _derived_seed(*parts) -> int:
    """A 63-bit seed derived from ``parts`` (stable across runs and platforms)."""
    return int.from_bytes(hashlib.sha256("/".join(map(str, parts)).encode()).digest()[:8], "little") >> 1


def _init_net(arch: Architecture, std: float, g: torch.Generator) -> tuple[list[Tensor], list[Tensor]]:
    ws, bs = [], []
    for spec in arch.layers:
        w = torch.empty(spec.weight_shape)
        torch.nn.init.trunc_normal_(w, 0.0, std, -2 * std, 2 * std, generator=g)
        ws.append(w)
        bs.append(torch.zeros(spec.out_features))
    return ws, bs


# ----------------------------------------------------------------------------------------------
# batched training
# ----------------------------------------------------------------------------------------------
def _forward_train(arch: Architecture, ws, bs, x: Tensor, keep: Tensor | None, gen: torch.Generator | None) -> Tensor:
    """:func:`functional.forward` for per-network inputs ``x [n, P, C, H, W]`` plus per-network
    inverted dropout (keep probability ``keep [n]``) after every hidden activation."""
    n, P = x.shape[:2]
    act = activation_fn(arch.activation, arch.w0)
    L = arch.num_layers
    n_conv = sum(1 for s in arch.layers if s.is_conv)

    def drop(h: Tensor, width: int, channel_axis: int) -> Tensor:
        if keep is None:
            return h
        if channel_axis == 1:  # [P, n * width, ...]: network j owns channels j*width ... (j+1)*width-1
            k = keep.repeat_interleave(width).view(1, n * width, *([1] * (h.dim() - 2)))
        else:  # [n, P, width]
            k = keep.view(n, 1, 1)
        r = torch.rand(h.shape, generator=gen, dtype=h.dtype, device=h.device)
        return h * r.lt_(k).mul_(1.0 / k)  # inverted dropout: kept units scaled by 1/keep

    if n_conv == 0:  # MLP: x is [n, P, features] (images already flattened by the zoo's input transform)
        h = x
    else:
        h = x.transpose(0, 1).reshape(P, n * x.shape[2], *x.shape[3:])
    for l in range(n_conv):
        spec = arch.layers[l]
        h = F.conv2d(
            h,
            ws[l].reshape(n * spec.out_features, spec.in_features, *spec.kernel_size),
            bs[l].reshape(-1),
            stride=spec.stride,
            padding=spec.padding,
            groups=n,
        )
        if l < L - 1:
            h = drop(act(h), spec.out_features, 1)
    if n_conv:
        h = h.mean(dim=(2, 3)).reshape(P, n, arch.layout[n_conv]).transpose(0, 1)
    for l in range(n_conv, L):
        h = torch.baddbmm(bs[l].unsqueeze(1), h, ws[l].transpose(1, 2))
        if l < L - 1:
            h = drop(act(h), 0, 2)
    return h + arch.output_offset if arch.output_offset else h


class _Stream:
    """Endless shuffled stream of one network's training subset (reshuffled every pass)."""

    def __init__(self, subset: Tensor, g: torch.Generator) -> None:
        self.subset, self.g = subset, g
        self.buf = subset[torch.randperm(len(subset), generator=g)]
        self.pos = 0

    def take(self, k: int) -> Tensor:
        out = []
        while k > 0:
            if self.pos == len(self.buf):
                self.buf = self.subset[torch.randperm(len(self.subset), generator=self.g)]
                self.pos = 0
            m = min(k, len(self.buf) - self.pos)
            out.append(self.buf[self.pos : self.pos + m])
            self.pos += m
            k -= m
        return torch.cat(out) if len(out) > 1 else out[0]


def _train_group(arch, nets, pool_x, pool_y, epochs, ckpts, batch_size, device, drop_gen, report):
    """Train one activation group of networks at once; returns {(net, epoch): (step, ws, bs)}."""
    n = len(nets)
    P = batch_size
    inits = [_init_net(arch, h["init_std"], h["gen"]) for h in nets]
    Ws = [torch.stack([w[l] for w, _ in inits]).to(device) for l in range(arch.num_layers)]
    Bs = [torch.stack([b[l] for _, b in inits]).to(device) for l in range(arch.num_layers)]
    streams = [_Stream(h["subset"], h["gen"]) for h in nets]
    total = [math.ceil(epochs * h["train_size"] / P) for h in nets]
    ck_at = [{math.ceil(e * h["train_size"] / P): e for e in ckpts} for h in nets]
    lr = torch.tensor([h["lr"] for h in nets], dtype=torch.float32, device=device)
    wd = torch.tensor([h["weight_decay"] for h in nets], dtype=torch.float32, device=device)
    keep = torch.tensor([1.0 - h["dropout"] for h in nets], dtype=torch.float32, device=device)
    snaps: dict = {}

    def snapshot(pos: list[int], ids: list[int], step: int):
        for p_, i in zip(pos, ids):
            e = ck_at[i].get(step)
            if e is not None:
                snaps[(nets[i]["network"], e)] = (
                    step,
                    [w[p_].detach().cpu().clone() for w in Ws],
                    [b[p_].detach().cpu().clone() for b in Bs],
                )

    active = list(range(n))
    snapshot(list(range(n)), active, 0)
    mW = [torch.zeros_like(w) for w in Ws]
    vW = [torch.zeros_like(w) for w in Ws]
    mB = [torch.zeros_like(b) for b in Bs]
    vB = [torch.zeros_like(b) for b in Bs]
    b1, b2, eps = 0.9, 0.999, 1e-8
    step = 0
    pool_x, pool_y = pool_x.to(device), pool_y.to(device)
    while active:
        idx = torch.stack([streams[i].take(P) for i in active]).to(device)  # [n_a, P]
        x, y = pool_x[idx], pool_y[idx]
        params = [w.requires_grad_() for w in Ws] + [b.requires_grad_() for b in Bs]
        use_drop = bool((keep < 1).any())
        logits = _forward_train(arch, Ws, Bs, x, keep if use_drop else None, drop_gen)
        loss = (
            F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1), reduction="none")
            .view(len(active), P)
            .mean(1)
        )
        grads = torch.autograd.grad(loss.sum(), params)
        step += 1
        t = step
        bc1, bc2s = 1 - b1**t, math.sqrt(1 - b2**t)
        with torch.no_grad():
            L = len(Ws)
            for j, (p, g_) in enumerate(zip(params, grads)):
                p.requires_grad_(False)
                shape = (-1,) + (1,) * (p.dim() - 1)
                if j < L:  # L2 on the kernels
                    g_ = g_ + wd.view(shape) * p
                m, v = (mW + mB)[j], (vW + vB)[j]
                m.mul_(b1).add_(g_, alpha=1 - b1)
                v.mul_(b2).addcmul_(g_, g_, value=1 - b2)
                p.sub_((lr / bc1).view(shape) * m / (v.sqrt() / bc2s + eps))
        snapshot(list(range(len(active))), active, step)
        fin = [total[i] <= step for i in active]
        report(sum(min(step, total[i]) / total[i] for i in range(n)), loss.detach())
        if any(fin):
            keep_mask = torch.tensor([not f for f in fin], device=device)
            active = [i for i, f in zip(active, fin) if not f]
            Ws, Bs = [w[keep_mask] for w in Ws], [b[keep_mask] for b in Bs]
            mW, vW = [t_[keep_mask] for t_ in mW], [t_[keep_mask] for t_ in vW]
            mB, vB = [t_[keep_mask] for t_ in mB], [t_[keep_mask] for t_ in vB]
            lr, wd, keep = lr[keep_mask], wd[keep_mask], keep[keep_mask]
    return snaps


@torch.no_grad()
def evaluate(
    arch: Architecture,
    ws,
    bs,
    x: Tensor,
    y: Tensor,
    *,
    index: Tensor | None = None,
    valid: Tensor | None = None,
    chunk_nets: int = 32,
    budget: int = 8192,
) -> tuple[Tensor, Tensor]:
    """Accuracy and mean cross-entropy of B CNNs with :func:`functional.forward`: ``([B], [B])`` float64.

    ``x [m, C, H, W]``, ``y [m]`` are shared by all networks; or, with ``index [B, m]``, network
    ``b`` is evaluated on ``x[index[b]]`` (only where ``valid [B, m]`` is true, if given).
    Works in slices of ``chunk_nets`` networks x ``budget // chunk_nets`` images (bounded memory).
    """
    B = ws[0].shape[0]
    accs, losses = [], []
    for s in range(0, B, chunk_nets):
        e = min(B, s + chunk_nets)
        w, b = [t[s:e] for t in ws], [t[s:e] for t in bs]
        correct = torch.zeros(e - s, dtype=torch.float64)
        lsum = torch.zeros(e - s, dtype=torch.float64)
        cnt = torch.zeros(e - s, dtype=torch.float64)
        m = index.shape[1] if index is not None else x.shape[0]
        step = max(1, budget // (e - s))
        for a in range(0, m, step):
            c = min(m, a + step)
            if index is not None:
                ii = index[s:e, a:c].to(x.device)
                xi, yi = x[ii], y[ii]
            else:
                xi, yi = x[a:c], y[a:c].expand(e - s, c - a)
            logits = forward(arch, w, b, xi.to(w[0]))
            yi = yi.to(logits.device)
            ok = (logits.argmax(-1) == yi).double().cpu()
            ce = (
                F.cross_entropy(logits.reshape(-1, logits.shape[-1]).double(), yi.reshape(-1), reduction="none")
                .view(e - s, -1)
                .cpu()
            )
            vm = valid[s:e, a:c].double() if valid is not None else torch.ones_like(ok)
            correct += (ok * vm).sum(1)
            lsum += (ce * vm).sum(1)
            cnt += vm.sum(1)
        accs.append(correct / cnt.clamp_min(1))
        losses.append(lsum / cnt.clamp_min(1))
    if not accs:
        return torch.zeros(0, dtype=torch.float64), torch.zeros(0, dtype=torch.float64)
    return torch.cat(accs), torch.cat(losses)


# ----------------------------------------------------------------------------------------------
# generator
# ----------------------------------------------------------------------------------------------
def generate_cnn_zoo(out: str | os.PathLike, n: int = 64, **kwargs) -> Zoo:
    """Train ``n`` Small-CNN-Zoo networks with varied hyper-parameters; store every checkpoint.

    Arguments (``source``, ``seed``, ``epochs``, ``checkpoints``, ``train_size``, ...): those of
    :func:`generate_classifier_zoo`, whose defaults are this zoo's.
    """
    return generate_classifier_zoo(out, n, **kwargs)


def generate_classifier_zoo(
    out: str | os.PathLike,
    n: int = 64,
    *,
    kind: str = "cnn",
    arch_for: Callable[[str], Architecture] = Architecture.small_cnn_zoo,
    input_transform: Callable[[Tensor], Tensor] | None = None,
    input_description: str = "grayscale in [0, 1], [1, 28, 28]",
    config_extra: dict | None = None,
    source: str = "fashion",
    seed: int = 0,
    epochs: int = 5,
    checkpoints: Sequence[int] | None = None,
    train_size: int = 10000,
    test_size: int = 2000,
    eval_train_size: int = 1000,
    batch_size: int = 32,
    activations: Sequence[str] = ("relu", "tanh"),
    ranges: dict | None = None,
    chunk: int = 64,
    group_size: int = 32,
    workers: int | None = None,
    device: str | torch.device = "cpu",
    split_fractions: Sequence[float] = (0.8, 0.1, 0.1),
    data_root: str | None = None,
    progress: ProgressFn | None = None,
    on_chunk: Callable[[int, int], None] | None = None,
    log: Callable[[str], None] | None = None,
) -> Zoo:
    """Train ``n`` classifiers (``arch_for(activation)``) with varied hyper-parameters; store every checkpoint.

    The engine behind :func:`generate_cnn_zoo` and :func:`~scalegmn_ext.tasks.zoo.mlp.generate_mlp_zoo`:
    ``kind`` is stored in ``zoo.json``; ``input_transform`` maps the ``[N, 1, 28, 28]`` images to
    the networks' input (e.g. pooled and flattened for MLPs; described by ``input_description``);
    ``config_extra`` is added to the stored generator config (a rerun must repeat it).

    Args:
        out: zoo directory; rerunning with the same arguments resumes (completed chunks kept).
        kind, arch_for, input_transform, input_description, config_extra: see above (defaults:
            the Small CNN Zoo on raw 28x28 images).
        n: number of networks (the zoo has ``n * len(checkpoints)`` rows).
        source: ``"fashion"`` (Fashion-MNIST: pool from the 60k train set, test from the 10k
            test set) or ``"mnist"`` (MNIST-5k: 4,000 pool / 1,000 test).
        epochs: passes over each network's own training subset; ``checkpoints``: epochs at which
            weights and metrics are stored (default :func:`default_checkpoints`; 0 = init).
        train_size: training pool (a seeded subset of the train set; ``train_frac`` is relative
            to it). ``test_size``: test images for ``test_acc``/``test_loss`` (a seeded subset,
            stored in ``zoo.json``). ``eval_train_size``: samples of each network's own subset
            for ``train_acc``/``train_loss``.
        batch_size: Adam mini-batch per network. ``activations``: drawn uniformly per network.
        ranges: overrides of :data:`DEFAULT_RANGES` (name -> (low, high[, "log"|"lin"])).
        chunk: networks per shard (the unit of resumption). ``group_size``: the most networks in
            one batched model (a chunk's networks of one activation, split into groups of this
            size; fixes which dropout-mask stream a network gets, so it is part of the config).
            ``workers``: threads training groups in parallel with single-threaded torch ops
            (default ``torch.get_num_threads()`` on CPU, 1 elsewhere; speed only).
        device, split_fractions, data_root, progress, on_chunk, log: as in
            :func:`~scalegmn_ext.tasks.zoo.inr.generate_inr_zoo` (progress counts networks).
    """
    workers = default_workers(device) if workers is None else workers
    for name, v in (
        ("n", n),
        ("epochs", epochs),
        ("train_size", train_size),
        ("test_size", test_size),
        ("eval_train_size", eval_train_size),
        ("batch_size", batch_size),
        ("chunk", chunk),
        ("group_size", group_size),
        ("workers", workers),
    ):
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    if not isinstance(seed, int) or not 0 <= seed < 2**31:
        raise ValueError(f"seed must be an int in [0, 2**31), got {seed!r}")
    activations = list(activations)
    if (
        not activations
        or any(a not in ("relu", "tanh") for a in activations)
        or len(set(activations)) != len(activations)
    ):
        raise ValueError(f"activations must be a non-empty subset of ['relu', 'tanh'], got {activations}")
    ckpts = sorted(set(int(e) for e in (checkpoints if checkpoints is not None else default_checkpoints(epochs))))
    if not ckpts or ckpts[0] < 0 or ckpts[-1] > epochs:
        raise ValueError(f"checkpoints must be epochs in [0, {epochs}], got {checkpoints}")
    if ckpts[-1] != epochs:
        ckpts.append(epochs)
    rng = _check_ranges(ranges)
    fractions = check_split_fractions(split_fractions)
    log = log or (lambda s: None)
    device = torch.device(device)
    base_arch = arch_for(activations[0])
    pool_x, pool_y, test_x, test_y, pool_idx, test_idx, tags = source_data(
        source, seed, train_size, test_size, data_root
    )
    if pool_x.shape[0] < train_size or test_x.shape[0] < test_size:
        raise ValueError(
            f"source {source!r} has only {pool_x.shape[0]} training / {test_x.shape[0]} test images "
            f"(asked for train_size={train_size}, test_size={test_size})"
        )
    n_pool = pool_x.shape[0]
    if input_transform is not None:
        pool_x, test_x = input_transform(pool_x), input_transform(test_x)
    num_chunks = math.ceil(n / chunk)
    config = {
        "n": n,
        "source": source,
        "seed": seed,
        "epochs": epochs,
        "checkpoints": ckpts,
        "train_size": train_size,
        "test_size": test_size,
        "eval_train_size": eval_train_size,
        "batch_size": batch_size,
        "activations": activations,
        "ranges": {k: list(v) for k, v in rng.items()},
        "chunk": chunk,
        "group_size": group_size,
        **(config_extra or {}),
    }
    extra = {
        "data": {
            "train_source": tags[0],
            "test_source": tags[1],
            "pool_indices": pool_idx.tolist(),
            "test_indices": test_idx.tolist(),
            "input": input_description,
        },
        "training": {
            "optimizer": "Adam(0.9, 0.999, eps=1e-8), per-network lr",
            "loss": "cross-entropy",
            "weight_decay": "L2 on kernels: grad += wd * w",
            "dropout": "after every hidden activation",
            "init": "kernels ~ N(0, init_std^2) truncated at 2 std, biases 0",
            "epoch": "one pass over the network's own training subset",
        },
        "package_version": _pkg_version,
    }
    writer = ZooWriter(
        out, kind=kind, arch=base_arch, config=config, columns=CNN_COLUMNS, num_chunks=num_chunks, extra=extra
    )
    try:
        if writer.already_complete:
            log(f"{out}: zoo already complete ({n} networks); nothing to do")
            if progress is not None:
                progress(float(n), n, "already complete")
            return Zoo(out)
        todo = [k for k in range(num_chunks) if not writer.chunk_done(k)]
        done = float(sum(min(n, (k + 1) * chunk) - k * chunk for k in range(num_chunks) if k not in todo))
        if done:
            log(
                f"{out}: resuming, {num_chunks - len(todo)} of {num_chunks} chunks ({int(done)} networks) already on disk"
            )
        if progress is not None:
            progress(done, n, "")
        for k in todo:
            t0 = time.perf_counter()
            lo, hi = k * chunk, min(n, (k + 1) * chunk)
            nets = [_network_setup(i, seed, activations, rng, n_pool, batch_size) for i in range(lo, hi)]
            weights: dict = {}
            metrics: dict = {}
            # work units: networks sharing the activation, in groups of <= group_size (one batched model each)
            units = []
            for act in activations:
                grp = [h for h in nets if h["activation"] == act]
                units += [(act, u // group_size, grp[u : u + group_size]) for u in range(0, len(grp), group_size)]
            unit_done = [0.0] * len(units)
            lock = threading.Lock()
            stop = threading.Event()

            def run_unit(j, k=k, base=done):
                act, ui, grp = units[j]
                arch = arch_for(act)
                drop_gen = torch.Generator(device=device).manual_seed(_derived_seed(seed, k, act, ui))

                def report(frac_sum, loss):
                    if stop.is_set():
                        raise Cancelled()
                    with lock:
                        unit_done[j] = frac_sum
                        if progress is not None:
                            progress(base + sum(unit_done), n, f"{act} loss {loss.mean().item():.3f}")

                snaps = _train_group(arch, grp, pool_x, pool_y, epochs, ckpts, batch_size, device, drop_gen, report)
                if progress is not None:
                    with lock:
                        progress(base + sum(unit_done), n, f"{act} evaluating")
                keys = sorted(snaps)
                ws = [torch.stack([snaps[key][1][l] for key in keys]) for l in range(arch.num_layers)]
                bs = [torch.stack([snaps[key][2][l] for key in keys]) for l in range(arch.num_layers)]
                te_acc, te_loss = evaluate(arch, ws, bs, test_x, test_y)
                # train metrics: the first eval_train_size samples of each network's own subset
                m = eval_train_size
                by_net = {h["network"]: h for h in grp}
                tr_idx = torch.zeros(len(keys), m, dtype=torch.long)
                valid = torch.zeros(len(keys), m, dtype=torch.bool)
                for r, (i, _) in enumerate(keys):
                    sub = by_net[i]["subset"][:m]
                    tr_idx[r, : len(sub)] = sub
                    valid[r, : len(sub)] = True
                tr_acc, tr_loss = evaluate(arch, ws, bs, pool_x, pool_y, index=tr_idx, valid=valid)
                return {
                    key: (
                        ([w[r] for w in ws], [b[r] for b in bs]),
                        (snaps[key][0], float(tr_acc[r]), float(tr_loss[r]), float(te_acc[r]), float(te_loss[r])),
                    )
                    for r, key in enumerate(keys)
                }

            with single_threaded_ops(workers > 1 and device.type == "cpu"):
                for res in parallel_map(run_unit, range(len(units)), workers, stop):
                    for key, (wb, met) in res.items():
                        weights[key] = wb
                        metrics[key] = met
            rows, ws_rows, bs_rows = [], [], []
            for h in nets:
                for c, e in enumerate(ckpts):
                    key = (h["network"], e)
                    step, tra, trl, tea, tel = metrics[key]
                    rows.append(
                        {
                            "index": 0,
                            "network": h["network"],
                            "checkpoint": c,
                            "epoch": e,
                            "step": step,
                            "is_final": e == ckpts[-1],
                            "activation": h["activation"],
                            "seed": h["seed"],
                            "lr": h["lr"],
                            "weight_decay": h["weight_decay"],
                            "dropout": h["dropout"],
                            "init_std": h["init_std"],
                            "train_frac": h["train_frac"],
                            "train_size": h["train_size"],
                            "batch_size": batch_size,
                            "train_acc": tra,
                            "train_loss": trl,
                            "test_acc": tea,
                            "test_loss": tel,
                            "chunk": k,
                        }
                    )
                    ws_rows.append(weights[key][0])
                    bs_rows.append(weights[key][1])
            for r_i, r in enumerate(rows):
                r["index"] = lo * len(ckpts) + r_i
            ws = [torch.stack([w[l] for w in ws_rows]) for l in range(base_arch.num_layers)]
            bs = [torch.stack([b[l] for b in bs_rows]) for l in range(base_arch.num_layers)]
            writer.write_chunk(k, ws, bs, rows)
            done += hi - lo
            fin = [r["test_acc"] for r in rows if r["is_final"]]
            log(
                f"chunk {k + 1}/{num_chunks}: {hi - lo} networks x {len(ckpts)} checkpoints, final test acc "
                f"mean {np.mean(fin):.3f} (min {min(fin):.3f}, max {max(fin):.3f}), {time.perf_counter() - t0:.1f} s"
            )
            if on_chunk is not None:
                on_chunk(k, num_chunks)
        return writer.finalize(split_seed=seed, split_fractions=fractions, group_column="network", summary=_summary)
    finally:
        writer.close()  # release the directory lock however generation ends


def _summary(records: list[dict]) -> dict:
    fin = [r for r in records if r["is_final"]]
    out = {
        "networks": len(fin),
        "rows": len(records),
        "final_test_acc": summary_stats(np.array([r["test_acc"] for r in fin])),
        "final_train_acc": summary_stats(np.array([r["train_acc"] for r in fin])),
    }
    for act in sorted({r["activation"] for r in fin}):
        out[f"final_test_acc_{act}"] = summary_stats(np.array([r["test_acc"] for r in fin if r["activation"] == act]))
    out["mean_test_acc_by_epoch"] = {
        int(e): float(np.mean([r["test_acc"] for r in records if r["epoch"] == e]))
        for e in sorted({r["epoch"] for r in records})
    }
    return out


def cnn_summary_table(zoo: Zoo) -> str:
    """A plain-text summary of a CNN zoo (counts, final test-accuracy distribution per activation)."""
    fin = zoo.where(is_final=True)
    acc = fin.column("test_acc")
    acts = fin.column("activation")
    split = fin.column("split")
    lines = [
        f"{zoo.kind.upper()} zoo {zoo.path}: {len(fin)} networks x {len(zoo) // max(len(fin), 1)} checkpoints = {len(zoo)} rows "
        f"({zoo.info['data']['train_source']} -> {zoo.info['data']['test_source']})",
        f"  splits (networks)  train {int((split == 'train').sum())} / val {int((split == 'val').sum())} / "
        f"test {int((split == 'test').sum())}",
        "  final test acc     {:>6s} {:>6s} {:>6s} {:>6s} {:>6s} {:>6s} {:>6s}".format(
            "n", "mean", "min", "p10", "median", "p90", "max"
        ),
    ]
    for name, sel in [("all", np.ones(len(acc), bool))] + [(a, acts == a) for a in sorted(set(acts))]:
        s = summary_stats(acc[sel])
        if s["count"]:
            lines.append(
                "    {:<16s} {:>6d} {:6.3f} {:6.3f} {:6.3f} {:6.3f} {:6.3f} {:6.3f}".format(
                    name, s["count"], s["mean"], s["min"], s["p10"], s["median"], s["p90"], s["max"]
                )
            )
    ep = zoo.column("epoch")
    ta = zoo.column("test_acc")
    lines.append("  mean test acc by epoch  " + "  ".join(f"{int(e)}: {ta[ep == e].mean():.3f}" for e in np.unique(ep)))
    return "\n".join(lines)


def cnn_accuracy_histogram(zoo: Zoo):
    """A matplotlib figure: histogram of the final test accuracies, stacked by activation.

    Needs matplotlib (``pip install 'scalegmn_ext[plots]'``); see :mod:`scalegmn_ext.tasks.plots`.
    """
    from ..plots import accuracy_histogram_figure

    fin = zoo.where(is_final=True)
    acc, acts = fin.column("test_acc"), fin.column("activation")
    groups = {a: acc[acts == a] for a in sorted(set(acts))}
    data = zoo.info.get("data", {})
    epochs = zoo.info.get("config", {}).get("epochs")
    what = (
        "Small-CNN-Zoo networks" if zoo.kind == "cnn" else f"{zoo.kind.upper()}s {str(zoo.arch_of(0)).split(' [')[0]}"
    )
    return accuracy_histogram_figure(
        groups,
        bins=25,
        value_range=(0.0, 1.0),
        chance=0.1,  # both sources have ten classes
        xlabel=f"test accuracy after the last epoch (%, on {zoo.info.get('config', {}).get('test_size', '?')} "
        f"{data.get('test_source', 'test')} images)",
        title=f"{zoo.kind.upper()} zoo {os.path.basename(os.path.normpath(zoo.path))}: final test accuracy of "
        f"{len(fin)} {what}\n(each trained {epochs} epoch{'s' if epochs != 1 else ''} on its own subset of "
        f"{data.get('train_source', '?')}, with its own hyper-parameters)",
    )
