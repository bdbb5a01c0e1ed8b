"""The baselines: SGD and Adam fine-tuning of every held-out network on the amortizer's objective.

All B networks are fine-tuned at once as stacked tensors through the batched functional forward
(one grouped convolution / batched matmul per layer). Every network sees the same image order, so
the batch is shared and the forward is one convolution with the B stacked filter banks. The loss
is the *sum* of the per-network objectives, so each network's gradient is exactly its own (the
networks share nothing), and the optimizers (SGD with momentum, Adam; written out here so that
the learning rate can differ per network) act elementwise: the result equals fine-tuning each
network alone with the same settings, at the batched speed. The time per network is the wall
time of the whole batch divided by B (evaluation excluded).

One call serves several budgets: ``epochs=(1, 5, 25, 150)`` trains 150 epochs and snapshots the
networks after 1, 5, 25 and 150 (each budget's time is the time up to its snapshot; the learning
rate is constant, so a shorter budget is exactly the start of a longer one).

:func:`tune_lr` picks the learning rate honestly: validation-split networks (never the held-out
test networks) are fine-tuned with every candidate learning rate at once (per-network learning
rates in one batched run) on part of the image pool, and scored on the rest of the pool (never
the test images).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from ...weightspace.architecture import Architecture
from .objective import check_lam, objective

__all__ = ["finetune", "tune_lr", "DEFAULT_LR", "LR_GRID"]

#: Learning rates used when none is given (SGD with momentum 0.9; Adam with the usual betas).
DEFAULT_LR = {"sgd": 0.01, "adam": 1e-3}
#: Candidates of :func:`tune_lr`: half-decades around the defaults. On the tanh zoos of
#: benchmarks/amortize_one_shot.sh SGD chose 0.1 and Adam 0.01 (the next values up were worse);
#: with lam = 1e-3 Adam chose 0.03, the top of the grid.
LR_GRID = {"sgd": (3e-3, 0.01, 0.03, 0.1, 0.3), "adam": (3e-4, 1e-3, 3e-3, 0.01, 0.03)}
_BETAS, _ADAM_EPS = (0.9, 0.999), 1e-8


def _per_network_lr(lr, B: int, dtype) -> Tensor:
    """``lr`` (a number or B numbers) as a ``[B]`` tensor of positive values."""
    t = torch.as_tensor(lr, dtype=torch.float64).flatten()
    if t.numel() == 1:
        t = t.expand(B)
    if t.numel() != B or not bool((t > 0).all()) or not bool(torch.isfinite(t).all()):
        raise ValueError(f"lr must be a positive number or {B} positive numbers (one per network), got {lr!r}")
    return t.to(dtype)


def finetune(
    arch: Architecture,
    weights: Sequence[Tensor],
    biases: Sequence[Tensor],
    images: Tensor,
    labels: Tensor,
    *,
    optimizer: str = "sgd",
    epochs: Sequence[int] | int = (1,),
    lr: float | Sequence[float] | Tensor | None = None,
    batch_size: int = 64,
    lam: float = 0.0,
    momentum: float = 0.9,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> dict[int, tuple[list[Tensor], list[Tensor], float]]:
    """Fine-tune B networks on ``images``/``labels`` (an epoch = one pass in batches of ``batch_size``).

    ``lr``: one learning rate, or one per network (``[B]``). Returns
    ``{k: (weights, biases, seconds_per_network)}`` for every ``k`` in ``epochs``.
    ``progress(step, total_steps)`` is called after every step.
    """
    if optimizer not in DEFAULT_LR:
        raise ValueError(f"optimizer must be one of {sorted(DEFAULT_LR)}, got {optimizer!r}")
    lam = check_lam(lam)
    ks = sorted({int(epochs)} if isinstance(epochs, int) else {int(k) for k in epochs})
    if not ks or ks[0] < 1:
        raise ValueError(f"epochs must be positive ints, got {epochs!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    B, n = weights[0].shape[0], images.shape[0]
    lr_b = _per_network_lr(DEFAULT_LR[optimizer] if lr is None else lr, B, weights[0].dtype)
    params = [t.detach().clone().requires_grad_() for t in (*weights, *biases)]
    lrs = [lr_b.view(-1, *([1] * (p.dim() - 1))) for p in params]
    state = [None] * len(params) if optimizer == "sgd" else [(torch.zeros_like(p), torch.zeros_like(p)) for p in params]
    L = len(weights)
    g = torch.Generator().manual_seed(seed)
    steps_per_epoch = -(-n // batch_size)
    total = steps_per_epoch * ks[-1]
    out: dict[int, tuple[list[Tensor], list[Tensor], float]] = {}
    seconds, step = 0.0, 0
    for epoch in range(1, ks[-1] + 1):
        order = torch.randperm(n, generator=g)
        t0 = time.perf_counter()
        for s in range(0, n, batch_size):
            idx = order[s : s + batch_size]
            value, _, _ = objective(arch, params[:L], params[L:], images[idx], labels[idx], lam)
            grads = torch.autograd.grad(value.sum(), params)  # per-network: the networks share nothing
            step += 1
            with torch.no_grad():
                for i, (p, gr, lr_p) in enumerate(zip(params, grads, lrs)):
                    if optimizer == "sgd":  # torch.optim.SGD's rule: buf = m * buf + g (buf = g first)
                        buf = gr.clone() if state[i] is None else state[i].mul_(momentum).add_(gr)
                        state[i] = buf
                        p.sub_(lr_p * buf)
                    else:  # torch.optim.Adam's rule (bias-corrected moments)
                        m, v = state[i]
                        m.mul_(_BETAS[0]).add_(gr, alpha=1 - _BETAS[0])
                        v.mul_(_BETAS[1]).addcmul_(gr, gr, value=1 - _BETAS[1])
                        c1, c2 = 1 - _BETAS[0] ** step, 1 - _BETAS[1] ** step
                        p.sub_((lr_p / c1) * m / (v.sqrt() / c2**0.5 + _ADAM_EPS))
            if progress is not None:
                seconds += time.perf_counter() - t0
                progress(step, total)
                t0 = time.perf_counter()
        seconds += time.perf_counter() - t0
        if epoch in ks:
            out[epoch] = (
                [p.detach().clone() for p in params[:L]],
                [p.detach().clone() for p in params[L:]],
                seconds / B,
            )
    return out


def tune_lr(
    arch: Architecture,
    weights: Sequence[Tensor],
    biases: Sequence[Tensor],
    images: Tensor,
    labels: Tensor,
    *,
    optimizer: str = "sgd",
    epochs: int = 25,
    grid: Sequence[float] | None = None,
    holdout: float = 0.2,
    batch_size: int = 64,
    lam: float = 0.0,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[float, dict[float, dict]]:
    """The learning rate of ``grid`` that fine-tunes the given (validation) networks best.

    The last ``holdout`` fraction of the (shuffled) pool is held out; every network is
    fine-tuned for ``epochs`` epochs with every candidate (``len(grid) * B`` networks in one
    batched run) on the rest, and scored on the held-out images: mean accuracy when
    ``lam == 0``, else mean objective (CE + lam * L1). Returns ``(best_lr, {lr: {"acc": %,
    "objective": ...}})``; non-finite results rank last.
    """
    from ..zoo.cnn import evaluate as evaluate_classifiers
    from .objective import l1_norm

    if optimizer not in LR_GRID:
        raise ValueError(f"optimizer must be one of {sorted(LR_GRID)}, got {optimizer!r}")
    grid = [float(v) for v in (LR_GRID[optimizer] if grid is None else grid)]
    if not grid or min(grid) <= 0:
        raise ValueError(f"grid must list positive learning rates, got {grid!r}")
    if not 0 < holdout < 1:
        raise ValueError(f"holdout must be a fraction in (0, 1), got {holdout!r}")
    lam = check_lam(lam)
    n = images.shape[0]
    n_hold = max(1, int(round(holdout * n)))
    if n - n_hold < 1:
        raise ValueError(f"{n} pool images are too few to hold out {holdout:.0%} for tuning")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed + 7919))
    fit, hold = perm[: n - n_hold], perm[n - n_hold :]
    B, G = weights[0].shape[0], len(grid)
    rep = lambda ts: [t.repeat(G, *([1] * (t.dim() - 1))) for t in ts]  # noqa: E731  [G*B, ...], lr-major
    lr_all = torch.tensor(grid, dtype=torch.float64).repeat_interleave(B)
    res = finetune(
        arch,
        rep(weights),
        rep(biases),
        images[fit],
        labels[fit],
        optimizer=optimizer,
        epochs=epochs,
        lr=lr_all,
        batch_size=batch_size,
        lam=lam,
        seed=seed,
        progress=progress,
    )
    fw, fb, _ = res[epochs]
    xh, yh = images[hold], labels[hold]
    if not arch.is_cnn:
        xh = xh.flatten(1)
    ws = [w.float() for w in fw]
    bs = [b.float() for b in fb]
    acc, ce = evaluate_classifiers(arch, ws, bs, xh.float(), yh)
    obj = ce.double() + lam * l1_norm(ws, bs).double()
    table = {}
    for i, v in enumerate(grid):
        a, o = acc[i * B : (i + 1) * B].double(), obj[i * B : (i + 1) * B]
        ok = bool(torch.isfinite(o).all())
        table[v] = {
            "acc": float(a.mean() * 100) if ok else float("nan"),
            "objective": float(o.mean()) if ok else float("inf"),
        }
    if lam == 0:
        best = max(grid, key=lambda v: table[v]["acc"] if table[v]["acc"] == table[v]["acc"] else -1.0)
    else:
        best = min(grid, key=lambda v: table[v]["objective"])
    return best, table
