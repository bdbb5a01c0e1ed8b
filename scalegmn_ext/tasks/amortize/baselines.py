"""The baselines: SGD and Adam fine-tuning of every held-out network on the amortizer's objective.

All B networks are fine-tuned at once as stacked leaf tensors through the batched functional
forward (one grouped convolution / batched matmul per layer). Every network sees the same image
order, so the batch is shared and the forward is one convolution with the B stacked filter
banks. The loss is the *sum* of the per-network objectives, so each network's gradient is exactly
its own (the networks share nothing), and SGD (with momentum) and Adam act elementwise: the
result equals fine-tuning each network alone with the same settings, at the batched speed. The
time per network is the wall time of the whole batch divided by B (evaluation excluded).

One call serves several budgets: ``epochs=(1, 5, 25)`` trains 25 epochs and snapshots the
networks after 1, 5 and 25 (each budget's time is the time up to its snapshot).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from ...weightspace.architecture import Architecture
from .objective import check_lam, objective

__all__ = ["finetune", "DEFAULT_LR"]

#: Learning rates used when none is given (SGD with momentum 0.9; Adam with the usual betas).
DEFAULT_LR = {"sgd": 0.01, "adam": 1e-3}


def finetune(
    arch: Architecture,
    weights: Sequence[Tensor],
    biases: Sequence[Tensor],
    images: Tensor,
    labels: Tensor,
    *,
    optimizer: str = "sgd",
    epochs: Sequence[int] | int = (1,),
    lr: float | None = None,
    batch_size: int = 64,
    lam: float = 0.0,
    momentum: float = 0.9,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> dict[int, tuple[list[Tensor], list[Tensor], float]]:
    """Fine-tune B networks on ``images``/``labels`` (an epoch = one pass in batches of ``batch_size``).

    Returns ``{k: (weights, biases, seconds_per_network)}`` for every ``k`` in ``epochs``.
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
    lr = DEFAULT_LR[optimizer] if lr is None else float(lr)
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr!r}")
    B, n = weights[0].shape[0], images.shape[0]
    params = [t.detach().clone().requires_grad_() for t in (*weights, *biases)]
    L = len(weights)
    if optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=lr, momentum=momentum)
    else:
        opt = torch.optim.Adam(params, lr=lr)
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
            opt.zero_grad(set_to_none=True)
            value.sum().backward()  # per-network gradients: the networks share no parameter
            opt.step()
            step += 1
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
