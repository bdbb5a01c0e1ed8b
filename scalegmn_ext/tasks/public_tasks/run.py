"""Training and scoring one public task end to end (``scalegmn-ext task inr-cls|cnn-gen|inr-edit``).

:func:`run_public_task` loads the task's networks and targets (:mod:`.data`), builds the model
(:mod:`.model`: a public YAML configuration's exact structure, or our own sizes), trains it with
the package's :class:`~scalegmn_ext.tasks.train.Trainer` (AdamW, warm-up + cosine, clipping,
validation on the task's metric, tqdm, atomic checkpoints, ``resume``, NaN stop, DDP, the best
validation model kept in ``best.pt``) and scores the final and the best-validation model on
every split. The run folder holds ``run.json`` (its settings; a rerun with other settings is
refused), ``checkpoint.pt``, ``best.pt``, ``results.json`` and ``results.md`` (written
atomically, once training is complete).

With a public configuration the training settings default to the configuration's (batch size,
AdamW lr / weight decay, gradient clip, warm-up steps); explicit values win. The public scripts
keep the learning rate constant after warm-up; the Trainer decays it by a cosine to 0.1x.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable

import torch

from ..._io import atomic_write_json, atomic_write_text, claim_run_folder
from ...models.public import read_public
from ..train import TrainConfig, Trainer
from .data import TaskData, load_task_data
from .model import build_task_model, layer_scales, task_model_state
from .objectives import PRIMARY, make_loss, predict, score, val_objective

__all__ = ["run_public_task", "public_train_settings", "PUBLIC_ANCHORS", "results_markdown"]

#: the published figures on the public data (notes: amortization.md, paper_results.md)
PUBLIC_ANCHORS = {
    "inr-cls": "MNIST-INR test accuracy 96.57 % (ScaleGMN), 96.59 % (ScaleGMN-B); 55k INRs, d 128, 4 layers, 200 epochs",
    "cnn-gen": "CIFAR-10-GS (Small CNN Zoo) Kendall tau 0.9325 (reproduced ScaleGMN); ~30k CNNs, d 128, 4 layers, 200 epochs",
    "inr-edit": "MNIST dilation test MSE 2.55e-2 (ScaleGMN, reproduced), 1.89e-2 (ScaleGMN-B); d 128, 10 layers, 300 epochs",
}


def public_train_settings(conf) -> dict:
    """TrainConfig fields a public configuration sets: batch_size, lr, weight_decay, clip, warmup."""
    c = read_public(conf)
    out = {}
    if "batch_size" in c:
        out["batch_size"] = int(c["batch_size"])
    opt = c.get("optimization") or {}
    args = opt.get("optimizer_args") or {}
    if "lr" in args:
        out["lr"] = float(args["lr"])
    if "weight_decay" in args:
        out["weight_decay"] = float(args["weight_decay"])
    if opt.get("clip_grad") and opt.get("clip_grad_max_norm") is not None:
        out["clip"] = float(opt["clip_grad_max_norm"])
    sched = opt.get("scheduler_args") or {}
    if sched.get("scheduler") == "WarmupLRScheduler" and sched.get("warmup_steps") is not None:
        out["warmup"] = int(sched["warmup_steps"])
    return out


def _fmt(v) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        return f"{v:.4g}"
    return str(v)


def results_markdown(res: dict) -> str:
    task = res["task"]
    name, _ = PRIMARY[task]
    lines = [
        f"# {task}: {res['model']['label']} on {res['data']['arch']}",
        "",
        f"Networks: train {res['data']['sizes']['train']}, val {res['data']['sizes']['val']}, "
        f"test {res['data']['sizes']['test']} ({res['data']['source']}).",
        f"Model: {res['model']['parameters']:,} parameters, {res['model']['structure']}, "
        f"normalisation {res['settings']['normalize']}.",
        f"Training: {res['settings']['train_config']['steps']} steps, batch {res['settings']['train_config']['batch_size']}, "
        f"lr {res['settings']['train_config']['lr']:g}, {res['seconds']:.0f} s ({res['torch_threads']} thread(s)).",
        "",
        "| model | split | " + " | ".join(res["metric_names"]) + " |",
        "|---|---|" + "---|" * len(res["metric_names"]),
    ]
    for which in ("final", "best_val"):
        for split, m in (res["metrics"].get(which) or {}).items():
            lines.append(f"| {which} | {split} | " + " | ".join(_fmt(m.get(k)) for k in res["metric_names"]) + " |")
    lines += [
        "",
        f"Primary metric: test {name} = {_fmt(res['test'][name])} (best-validation model, as the public scripts report).",
        f"Public anchor (their data and budget, not this task's): {PUBLIC_ANCHORS[task]}.",
    ]
    if res["history"]:
        lines += ["", "| step | train loss | val objective | seconds |", "|---|---|---|---|"]
        for h in res["history"]:
            lines.append(f"| {h['step']} | {_fmt(h['train_loss'])} | {_fmt(h['val'])} | {h['seconds']:.0f} |")
    return "\n".join(lines) + "\n"


def run_public_task(
    task: str,
    out: str | os.PathLike,
    *,
    data: TaskData | None = None,
    data_kwargs: dict | None = None,
    public_config: str | None = None,
    d_hid: int | None = None,
    num_layers: int | None = None,
    direction: str | None = None,
    scale_backward: str | None = None,
    model_config: dict | None = None,
    normalize: str = "none",
    train_config: TrainConfig | None = None,
    train_overrides: dict | None = None,
    resume: bool = False,
    stop_after: int | None = None,
    progress: bool = True,
    device: str = "cpu",
    eval_train: int = 2000,
    log: Callable[[str], None] = print,
) -> dict | None:
    """Train and score one task (see the module doc). ``data`` or ``data_kwargs`` (passed to
    :func:`~.data.load_task_data`) give the networks. ``train_config``: every training setting;
    otherwise ``train_overrides`` on top of the public configuration's settings (if any) on top
    of ``TrainConfig()``. ``normalize``: ``"none"`` or ``"layer"`` (see :mod:`.model`).
    ``eval_train``: score at most this many training networks. Returns the results (None when
    ``stop_after`` ended the call before the last step)."""
    if normalize not in ("none", "layer"):
        raise ValueError(f"normalize must be 'none' or 'layer', got {normalize!r}")
    if data is None:
        data = load_task_data(task, **(data_kwargs or {}))
    if data.task != task:
        raise ValueError(f"the data are for the {data.task} task, not {task}")
    if train_config is None:
        fields = dataclasses.asdict(TrainConfig())
        if public_config is not None:
            fields.update(public_train_settings(public_config))
        fields.update({k: v for k, v in (train_overrides or {}).items() if v is not None})
        train_config = TrainConfig(**fields)
    tc = train_config
    train, val, test = data.splits["train"], data.splits["val"], data.splits["test"]
    if len(train) < tc.batch_size:
        raise ValueError(f"{len(train)} training networks are fewer than batch_size={tc.batch_size}")
    settings = {
        "task": task,
        "data": data.source,
        "sizes": data.sizes(),
        "public_config": None if public_config is None else os.path.abspath(public_config),
        "d_hid": d_hid,
        "num_layers": num_layers,
        "direction": direction,
        "scale_backward": scale_backward,
        "model_config": model_config or {},
        "normalize": normalize,
        "train_config": dataclasses.asdict(tc),
    }
    if (
        resume
        and not os.path.exists(os.path.join(out, "run.json"))
        and os.path.exists(os.path.join(out, "checkpoint.pt"))
    ):
        raise ValueError(f"{out} has a checkpoint but no run.json; it was not written by this command")
    claim_run_folder(out, settings, f"a run of task {task}")

    torch.manual_seed(tc.seed)
    w_scale, b_scale = layer_scales(train) if normalize == "layer" else (None, None)
    model = build_task_model(
        task,
        data.arch,
        public=public_config,
        d_hid=d_hid,
        num_layers=num_layers,
        direction=direction,
        scale_backward=scale_backward,
        config=model_config,
        w_scale=w_scale,
        b_scale=b_scale,
    )
    cfg = model.net.config
    n_params = sum(p.numel() for p in model.parameters())
    label = f"ScaleGMN{'-B' if cfg.direction == 'bidirectional' else ''} ({model.net.symmetry})"
    structure = (
        f"public structure of {os.path.basename(public_config)}" if public_config else "this package's structure"
    ) + f", d_hid {cfg.d_hid}, {cfg.num_layers} layers, {cfg.direction}, readout {cfg.readout}"
    chunk = max(tc.batch_size, 64)
    trainer = Trainer(
        model,
        make_loss(task, data.arch),
        train,
        val,
        tc,
        out,
        device=device,
        progress=progress,
        extra_state=task_model_state(model, task, settings=settings),
        val_metric=val_objective(task, data.arch, chunk),
        keep_best=True,
    )
    if resume:
        trainer.load()
    log(
        f"{task}: {label}, {n_params:,} parameters ({structure}); networks {data.arch}: "
        f"train {len(train)}, val {len(val)}, test {len(test)}; steps {trainer.step} -> {tc.steps}"
    )
    t0 = time.time()
    hist = trainer.fit(resume=resume, stop_after=stop_after)
    if trainer.step < tc.steps:
        log(f"stopped at step {trainer.step} of {tc.steps}; continue with --resume")
        return None
    splits = {"train": train.subset(torch.arange(min(len(train), eval_train))), "val": val, "test": test}
    metrics = {}
    for which, path in (("final", None), ("best_val", trainer.best_path)):
        if path is not None:
            if not os.path.exists(path):
                continue
            model.load_state_dict(torch.load(path, map_location=device, weights_only=True))
        metrics[which] = {
            k: score(task, predict(task, model, s, data.arch, chunk=chunk), s.targets) for k, s in splits.items()
        }
    name, _ = PRIMARY[task]
    best = metrics.get("best_val", metrics["final"])
    res = {
        "task": task,
        "data": {"arch": str(data.arch), "sizes": data.sizes(), "source": data.source},
        "model": {"label": label, "parameters": n_params, "structure": structure, "config": dataclasses.asdict(cfg)},
        "settings": settings,
        "metric_names": [k for k in best["test"] if k != "n"],
        "metrics": metrics,
        "test": {name: best["test"][name], "final": metrics["final"]["test"][name]},
        "history": hist,
        "seconds": time.time() - t0,  # this call (training to the end + scoring)
        "torch_threads": torch.get_num_threads(),
        "public_anchor": PUBLIC_ANCHORS[task],
    }
    atomic_write_json(os.path.join(out, "results.json"), res)
    atomic_write_text(os.path.join(out, "results.md"), results_markdown(res))
    log(f"test {name}: {best['test'][name]:.4g} (best-validation model), {metrics['final']['test'][name]:.4g} (final)")
    return res
