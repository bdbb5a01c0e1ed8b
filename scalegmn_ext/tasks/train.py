"""One trainer for metanetworks that learn over a zoo of networks (autoencoders, amortizers).

What it does for every task built on it:

* AdamW with a linear warm-up then cosine decay, gradient-norm clipping, a validation split
  scored every ``val_every`` steps, and the best validation score kept.
* A tqdm progress bar with the running loss and ETA (quiet / non-TTY friendly).
* Atomic checkpoints (``checkpoint.pt``: model, optimiser, schedule, step, best score) every
  ``checkpoint_every`` steps and at the end; ``resume=True`` continues from the last one and gives
  the same result as an uninterrupted run (the batches are a function of ``(seed, epoch)``).
* A NaN/Inf loss stops training with :class:`TrainingDiverged` naming the step; the checkpoint
  on disk is the last good one (bad states are never written).
* Data-parallel training with ``torch.distributed`` when launched by ``torchrun`` (DDP; gloo on
  CPU, NCCL on GPU): every global batch is split evenly across ranks (rank ``r`` takes rows
  ``r, r + W, ...``), DDP averages the gradients, so W processes take exactly the steps one
  process takes on the same global batch. Rank 0 writes checkpoints and draws the bar.

A task supplies ``loss_fn(model, weights, biases) -> [b]`` (one loss per network of the local
batch); the trainer minimises their mean. Supervised tasks (labels, accuracies, target images per
network) give the :class:`NetworkSet` ``targets``; the trainer then calls
``loss_fn(model, weights, biases, targets)`` with the batch's rows of them.

``keep_best=True`` also writes the model's ``state_dict`` to ``best.pt`` whenever the validation
score improves (atomically, rank 0), so a task can report the best-validation model as the public
training scripts do. Checkpoints hold torch's RNG state, so dropout masks continue on resume as in
an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable, Sequence

import torch
import torch.distributed as dist
from torch import Tensor, nn

from .._io import atomic_torch_save

__all__ = ["TrainConfig", "NetworkSet", "Trainer", "TrainingDiverged", "dist_info"]


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is left on disk."""


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings (defaults: the autoencoder paper's AdamW 1e-3 / 0.01, clip 10)."""

    steps: int = 1000
    batch_size: int = 32  #: global batch (split across ranks under DDP)
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup: int = 100
    clip: float = 10.0
    val_every: int = 100
    checkpoint_every: int = 100
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "val_every", "checkpoint_every"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"TrainConfig.{name} must be a positive int, got {v!r}")
        if isinstance(self.warmup, bool) or not isinstance(self.warmup, int) or self.warmup < 0:
            raise ValueError(f"TrainConfig.warmup must be a non-negative int, got {self.warmup!r}")
        for name in ("lr", "clip"):
            if not getattr(self, name) > 0:
                raise ValueError(f"TrainConfig.{name} must be > 0, got {getattr(self, name)!r}")
        if not self.weight_decay >= 0:
            raise ValueError(f"TrainConfig.weight_decay must be >= 0, got {self.weight_decay!r}")


class NetworkSet:
    """A batch of networks of one architecture held as stacked per-layer tensors (CPU), with
    optional per-network ``targets`` (any tensor whose first axis is the network axis)."""

    def __init__(self, weights: Sequence[Tensor], biases: Sequence[Tensor], targets: Tensor | None = None):
        if len(weights) == 0 or len(weights) != len(biases):
            raise ValueError(
                f"weights and biases must be non-empty per-layer lists of equal length, "
                f"got {len(weights)} and {len(biases)}"
            )
        n = weights[0].shape[0]
        if any(t.shape[0] != n for t in (*weights, *biases)):
            raise ValueError("every per-layer tensor must have the same number of networks on axis 0")
        if targets is not None:
            if not isinstance(targets, Tensor) or targets.dim() < 1 or targets.shape[0] != n:
                got = tuple(targets.shape) if isinstance(targets, Tensor) else type(targets).__name__
                raise ValueError(f"targets must be a tensor with one row per network ({n}), got {got}")
        self.weights, self.biases, self.targets = list(weights), list(biases), targets

    def __len__(self) -> int:
        return self.weights[0].shape[0]

    def take(self, idx: Tensor, device=None, dtype=None) -> tuple[list[Tensor], list[Tensor]]:
        return (
            [w[idx].to(device=device, dtype=dtype) for w in self.weights],
            [b[idx].to(device=device, dtype=dtype) for b in self.biases],
        )

    def take_targets(self, idx: Tensor, device=None) -> Tensor | None:
        """The targets of rows ``idx`` (None when the set has none); dtype kept (labels stay int)."""
        return None if self.targets is None else self.targets[idx].to(device=device)

    def subset(self, idx: Tensor) -> NetworkSet:
        """A new set holding rows ``idx``."""
        ws, bs = self.take(idx)
        return NetworkSet(ws, bs, self.take_targets(idx))


def dist_info() -> tuple[int, int]:
    """``(rank, world_size)``: ``(0, 1)`` unless ``torch.distributed`` is initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _lr_factor(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up to 1, then cosine decay to 0.1 at ``cfg.steps``."""
    if step < cfg.warmup:
        return (step + 1) / cfg.warmup
    t = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return 0.1 + 0.45 * (1 + math.cos(math.pi * min(1.0, t)))


class Trainer:
    """See the module doc. ``out`` is the run folder (checkpoint.pt, history in the checkpoint)."""

    def __init__(
        self,
        model: nn.Module,
        loss_fn: Callable[[nn.Module, list[Tensor], list[Tensor]], Tensor],
        train: NetworkSet,
        val: NetworkSet | None,
        cfg: TrainConfig,
        out: str | os.PathLike,
        *,
        device: str | torch.device = "cpu",
        extra_state: dict | None = None,
        progress: bool = True,
        val_metric: Callable[[nn.Module, NetworkSet], float] | None = None,
        keep_best: bool = False,
    ):
        self.rank, self.world = dist_info()
        if cfg.batch_size % self.world:
            raise ValueError(
                f"TrainConfig.batch_size={cfg.batch_size} must be divisible by the number of "
                f"processes ({self.world}) so that every rank gets an equal share"
            )
        if len(train) < cfg.batch_size:
            raise ValueError(f"the training set has {len(train)} networks, fewer than batch_size={cfg.batch_size}")
        self.device = torch.device(device)
        self.model = model.to(self.device)
        self.ddp = None
        if self.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        self.loss_fn, self.train, self.val, self.cfg = loss_fn, train, val, cfg
        self.out = os.fspath(out)
        self.ckpt_path = os.path.join(self.out, "checkpoint.pt")
        self.best_path = os.path.join(self.out, "best.pt") if keep_best else None
        self.extra_state = dict(extra_state or {})
        self.progress = progress and self.rank == 0
        self.val_metric = val_metric
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda s: _lr_factor(s, cfg))
        self.step = 0
        self.best_val = math.inf
        self.history: list[dict] = []

    # ------------------------------------------------------------------ batches ----
    def _batch_indices(self, step: int) -> Tensor:
        """Global batch ``step`` (a function of seed and epoch only), this rank's share of it."""
        n, G = len(self.train), self.cfg.batch_size
        per_epoch = n // G
        epoch, k = divmod(step, per_epoch)
        g = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + epoch)
        perm = torch.randperm(n, generator=g)
        return perm[k * G : (k + 1) * G][self.rank :: self.world]

    # ------------------------------------------------------------------ checkpoints ----
    def state(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(),
            "step": self.step,
            "best_val": self.best_val,
            "history": self.history,
            "train_config": dataclasses.asdict(self.cfg),
            "torch_rng": torch.get_rng_state(),
            **self.extra_state,
        }

    def save(self) -> None:
        if self.rank == 0:
            atomic_torch_save(self.state(), self.ckpt_path)

    def load(self, path: str | None = None) -> bool:
        """Restore from ``path`` (default: the run's checkpoint.pt); False when there is none."""
        path = path or self.ckpt_path
        if not os.path.exists(path):
            return False
        ck = torch.load(path, map_location=self.device, weights_only=False)
        self.model.load_state_dict(ck["model"])
        self.opt.load_state_dict(ck["optimizer"])
        self.sched.load_state_dict(ck["scheduler"])
        self.step, self.best_val, self.history = ck["step"], ck["best_val"], ck["history"]
        if "torch_rng" in ck:  # dropout masks continue as in an uninterrupted run
            torch.set_rng_state(ck["torch_rng"].cpu())
        return True

    def _losses(self, net: nn.Module, data: NetworkSet, idx: Tensor) -> Tensor:
        ws, bs = data.take(idx, self.device, self._dtype())
        targets = data.take_targets(idx, self.device)
        return self.loss_fn(net, ws, bs) if targets is None else self.loss_fn(net, ws, bs, targets)

    # ------------------------------------------------------------------ loop ----
    def evaluate(self) -> float:
        """Mean validation loss (or ``val_metric``), all ranks' shares combined."""
        if self.val is None:
            return math.nan
        self.model.eval()
        with torch.no_grad():
            if self.val_metric is not None:
                value = float(self.val_metric(self.model, self.val))
            else:
                idx = torch.arange(len(self.val))[self.rank :: self.world]
                total = torch.zeros(2, dtype=torch.float64, device=self.device)
                for chunk in idx.split(max(1, self.cfg.batch_size)):
                    losses = self._losses(self.model, self.val, chunk)
                    total += torch.stack(
                        [
                            losses.double().sum(),
                            torch.tensor(float(losses.numel()), device=self.device, dtype=torch.float64),
                        ]
                    )
                if self.world > 1:
                    dist.all_reduce(total)
                value = float(total[0] / total[1])
        self.model.train()
        return value

    def _dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def fit(self, resume: bool = False, stop_after: int | None = None) -> list[dict]:
        """Train to ``cfg.steps`` (or for at most ``stop_after`` steps in this call, checkpointing
        before returning: a time-boxed job continues later with ``resume=True``); returns the
        history (one dict per validation)."""
        if resume and self.load():
            pass
        elif os.path.exists(self.ckpt_path) and not resume:
            raise FileExistsError(
                f"{self.ckpt_path} exists: pass resume=True (--resume) to continue it, or choose another output folder"
            )
        os.makedirs(self.out, exist_ok=True)
        net = self.ddp or self.model
        self.model.train()
        bar = None
        if self.progress:
            from tqdm import tqdm

            bar = tqdm(
                total=self.cfg.steps, initial=self.step, unit="step", dynamic_ncols=True, mininterval=0.5, disable=None
            )
        t0, running = time.time(), None
        end = self.cfg.steps if stop_after is None else min(self.cfg.steps, self.step + int(stop_after))
        try:
            while self.step < end:
                idx = self._batch_indices(self.step)
                losses = self._losses(net, self.train, idx)
                loss = losses.mean()
                if not bool(torch.isfinite(loss.detach())):
                    raise TrainingDiverged(
                        f"the training loss became {float(loss.detach())} at step {self.step}; stopped. The last good "
                        f"checkpoint is {self.ckpt_path if os.path.exists(self.ckpt_path) else '(none written yet)'}: "
                        f"lower lr ({self.cfg.lr}) or raise warmup ({self.cfg.warmup}) and resume"
                    )
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.clip)
                self.opt.step()
                self.sched.step()
                self.step += 1
                value = loss.detach().double()
                if self.world > 1:  # log the global batch's loss, not this rank's share
                    dist.all_reduce(value)
                    value = value / self.world
                value = float(value)
                running = value if running is None else 0.9 * running + 0.1 * value
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{running:.4g}", refresh=False)
                if self.step % self.cfg.val_every == 0 or self.step == self.cfg.steps:
                    v = self.evaluate()
                    self.history.append(
                        {"step": self.step, "train_loss": running, "val": v, "seconds": time.time() - t0}
                    )
                    if v < self.best_val:
                        self.best_val = v
                        if self.best_path is not None and self.rank == 0:
                            atomic_torch_save(self.model.state_dict(), self.best_path)
                if self.step % self.cfg.checkpoint_every == 0 or self.step == end:
                    self.save()
        finally:
            if bar is not None:
                bar.close()
        if self.world > 1:
            # ranks leave together, after rank 0's last checkpoint: a rank that exits and tears its
            # process group down while a peer still writes can make gloo abort the peer
            dist.barrier()
        return self.history
