"""Training amortizers over a zoo and evaluating them against SGD / Adam (``scalegmn-ext amortize``).

* :func:`zoo_networks` -- the networks of one architecture of a classifier zoo (CNN or MLP; one
  activation; the chosen checkpoint epochs), split by the zoo's own network-level split, plus the
  zoo's image pool (training images) and test images, in the networks' input form.
* :func:`train_amortizer` -- trains ``theta' = theta + f_phi(theta)`` with the package's
  :class:`~scalegmn_ext.tasks.train.Trainer` (AdamW, warm-up + cosine, clipping, validation,
  tqdm, atomic checkpoints, resume, NaN stop, DDP) on :class:`~.objective.AmortizedLoss` over the
  zoo's training networks. The run folder holds ``run.json`` (its settings; a rerun with other
  settings is refused) and the Trainer's ``checkpoint.pt``.
* :func:`evaluate_amortizers` -- one or more trained runs on the zoo's held-out (test split)
  networks against SGD / Adam fine-tuning for k epochs (:mod:`.baselines`); writes
  ``results.json``, ``results.md`` and ``accuracy_boxplot.png`` (all atomically).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ..._io import atomic_write_json, atomic_write_text, claim_run_folder
from ..train import NetworkSet, TrainConfig, Trainer
from ..zoo.cnn import classifier_zoo_data
from ..zoo.format import Zoo, arch_from_dict
from .baselines import DEFAULT_LR, finetune, tune_lr
from .evaluation import one_shot, results_markdown, score
from .model import amortizer_state, build_amortizer, check_same_arch, input_norm_of, load_amortizer
from .objective import AmortizedLoss, check_lam, l1_norm, objective

__all__ = ["ZooNetworks", "zoo_networks", "train_amortizer", "evaluate_amortizers", "method_label"]


@dataclasses.dataclass
class ZooNetworks:
    """What :func:`zoo_networks` returns."""

    zoo: Zoo
    activation: str
    epochs: list[int]
    arch: object
    splits: dict[str, NetworkSet | None]
    pool: tuple[Tensor, Tensor]
    test_images: tuple[Tensor, Tensor]


def zoo_networks(
    zoo: str | os.PathLike | Zoo,
    activation: str | None = None,
    epochs: Sequence[int] | None = None,
    *,
    data_root: str | None = None,
) -> ZooNetworks:
    """The networks of one activation and the given checkpoint ``epochs`` (default: every stored
    epoch after the initialisation) of a CNN or MLP zoo, by split, with the zoo's images."""
    z = zoo if isinstance(zoo, Zoo) else Zoo(zoo)
    if z.kind not in ("cnn", "mlp"):
        raise ValueError(f"{z.path} is a {z.kind!r} zoo; amortized fine-tuning needs a classifier zoo (cnn or mlp)")
    activation, epochs, view = z.one_activation(activation, epochs)
    splits: dict[str, NetworkSet | None] = {}
    for name in ("train", "val", "test"):
        idx = view.split(name)
        splits[name] = NetworkSet(*view.load(idx)) if len(idx) else None
    return ZooNetworks(
        zoo=z,
        activation=activation,
        epochs=epochs,
        arch=view.arch,
        splits=splits,
        pool=classifier_zoo_data(z, "pool", data_root),
        test_images=classifier_zoo_data(z, "test", data_root),
    )


def method_label(symmetric: bool, config: dict, arch, input_norm: str = "none") -> str:
    """``ScaleGMN-B (sign)`` / ``GMN-B (symmetry broken)`` (B = bidirectional, F = forward),
    with ``, layer-normalised input`` for ``input_norm="layer"``."""
    d = "B" if config.get("direction") == "bidirectional" else "F"
    label = f"ScaleGMN-{d} ({arch.symmetry.value})" if symmetric else f"GMN-{d} (symmetry broken)"
    return label + (", layer-normalised input" if input_norm == "layer" else "")


def _val_metric(arch, images: Tensor, labels: Tensor, lam: float, n_images: int, chunk: int):
    """Mean objective of the updated validation networks on a fixed image sample."""
    g = torch.Generator().manual_seed(12345)
    idx = torch.randperm(images.shape[0], generator=g)[: max(n_images, 512)]
    x, y = images[idx], labels[idx]

    def metric(model: nn.Module, val: NetworkSet) -> float:
        total, count = 0.0, 0
        dtype = next(model.parameters()).dtype
        device = next(model.parameters()).device
        for s in range(0, len(val), chunk):
            ws, bs = val.take(torch.arange(s, min(len(val), s + chunk)), device, dtype)
            nw, nb = model(ws, bs)
            v, _, _ = objective(arch, nw, nb, x, y, lam)
            total += float(v.double().sum())
            count += v.numel()
        return total / max(count, 1)

    return metric


def train_amortizer(
    zoo: str | os.PathLike | Zoo,
    out: str | os.PathLike,
    *,
    activation: str | None = None,
    epochs: Sequence[int] | None = None,
    symmetric: bool = True,
    lam: float = 0.0,
    d_hid: int = 32,
    num_layers: int = 3,
    direction: str = "bidirectional",
    out_scale: float = 0.01,
    input_norm: str = "none",
    train_config: TrainConfig | None = None,
    n_images: int = 128,
    resume: bool = False,
    stop_after: int | None = None,
    progress: bool = True,
    device: str = "cpu",
    data_root: str | None = None,
    log: Callable[[str], None] = print,
) -> tuple[nn.Module, list[dict]]:
    """Train an amortizer on the zoo's training networks (see the module doc); returns the
    model and the Trainer's history. ``stop_after``: at most this many steps in this call;
    ``out_scale``: initial per-layer scale of the update f (learned; the public code's 0.01);
    ``input_norm``: ``"layer"`` feeds the metanetwork per-layer RMS-normalised weights (see
    :mod:`.model`)."""
    lam = check_lam(lam)
    tc = train_config or TrainConfig(steps=500, batch_size=16, lr=1e-3, warmup=50, val_every=100, checkpoint_every=100)
    data = zoo_networks(zoo, activation, epochs, data_root=data_root)
    train, val = data.splits["train"], data.splits["val"]
    if train is None:
        raise ValueError(f"{data.zoo.path} has no training networks for {data.arch}")
    if len(train) < tc.batch_size:
        raise ValueError(
            f"{data.zoo.path}: {len(train)} training networks ({data.arch}, epochs {data.epochs}) are fewer than "
            f"batch_size={tc.batch_size}"
        )
    settings = {
        "zoo": os.path.abspath(data.zoo.path),
        "activation": data.activation,
        "epochs": data.epochs,
        "symmetric": bool(symmetric),
        "lam": lam,
        "d_hid": d_hid,
        "num_layers": num_layers,
        "direction": direction,
        "out_scale": out_scale,
        **({"input_norm": input_norm} if input_norm != "none" else {}),  # old run.json files stay valid
        "n_images": n_images,
        "train_config": dataclasses.asdict(tc),
    }
    claim_run_folder(out, settings, "an amortizer run")
    torch.manual_seed(tc.seed)
    model = build_amortizer(
        data.arch,
        symmetric=symmetric,
        d_hid=d_hid,
        num_layers=num_layers,
        direction=direction,
        out_scale=out_scale,
        input_norm=input_norm,
    )
    loss = AmortizedLoss(data.arch, *data.pool, lam=lam, n_images=n_images, seed=tc.seed)
    trainer = Trainer(
        model,
        loss,
        train,
        val,
        tc,
        out,
        device=device,
        progress=progress,
        extra_state=amortizer_state(model, settings=settings),
        val_metric=_val_metric(data.arch, *data.pool, lam, n_images, tc.batch_size) if val is not None else None,
    )
    if resume and trainer.load():
        loss.calls = trainer.step  # the image batches continue where the interrupted run stopped
    label = method_label(symmetric, dataclasses.asdict(model.config), data.arch, input_norm)
    log(
        f"training {label} on {len(train)} networks {data.arch} (epochs {data.epochs}), "
        f"{sum(p.numel() for p in model.parameters()):,} parameters, lam={lam:g}: steps {trainer.step} -> {tc.steps}"
    )
    t0 = time.time()
    hist = trainer.fit(resume=resume, stop_after=stop_after)
    if hist:
        log(f"  val objective {hist[0]['val']:.4g} -> {hist[-1]['val']:.4g} ({time.time() - t0:.0f} s this run)")
    return model.eval(), hist


def _aggregate(rows: list[dict]) -> list[dict]:
    groups: dict[str, list[dict]] = {}
    for r in rows:
        if r.get("group"):
            groups.setdefault(r["group"], []).append(r["metrics"])
    out = []
    for name, ms in groups.items():
        if len(ms) < 2:
            continue
        a = {k: np.array([m[k] for m in ms]) for k in ("mean_acc", "max_acc", "mean_ce")}
        out.append(
            {
                "method": name,
                "runs": len(ms),
                **{k: float(v.mean()) for k, v in a.items()},
                **{f"{k}_std": float(v.std()) for k, v in a.items()},
            }
        )
    return out


def evaluate_amortizers(
    zoo: str | os.PathLike | Zoo,
    runs: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    *,
    sgd_epochs: Sequence[int] = (1, 5, 25),
    adam_epochs: Sequence[int] = (1, 5, 25),
    sgd_lr: float | None = None,
    adam_lr: float | None = None,
    finetune_batch: int = 64,
    tune: bool = False,
    tune_networks: int = 8,
    tune_epochs: int | None = None,
    max_test: int | None = None,
    seed: int = 0,
    progress: bool = True,
    data_root: str | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Score the held-out networks before, after each run's one-shot update and after SGD / Adam
    fine-tuning; write ``results.json``, ``results.md`` and ``accuracy_boxplot.png`` into ``out``.

    ``tune``: pick each optimizer's learning rate with :func:`~.baselines.tune_lr` on the first
    ``tune_networks`` validation-split networks, fine-tuned for ``tune_epochs`` epochs (default:
    the largest budget) on 80 % of the pool and scored on the other 20 % (an explicit
    ``sgd_lr`` / ``adam_lr`` is used as given)."""
    from ..plots import save_png
    from .plots import accuracy_boxplot_figure

    if not runs:
        raise ValueError("runs must name at least one trained amortizer run folder")
    z = zoo if isinstance(zoo, Zoo) else Zoo(zoo)
    models, settings = [], None
    for r in runs:
        path = os.path.join(r, "checkpoint.pt") if os.path.isdir(r) else os.fspath(r)
        if not os.path.isfile(path):
            raise ValueError(
                f"{r}: no amortizer checkpoint (expected {path}); train one with scalegmn-ext amortize train"
            )
        ck = torch.load(path, map_location="cpu", weights_only=False)
        trained_for = arch_from_dict(ck.get("arch"), where=f"{path}: arch") if isinstance(ck, dict) else None
        s = ck.get("settings") if isinstance(ck, dict) else None
        if trained_for is None or s is None:
            raise ValueError(f"{path} is not a scalegmn_ext amortizer checkpoint")
        if s["activation"] not in z.activations or z.kind not in ("cnn", "mlp"):
            have = ", ".join(str(a) for a in z.archs.values())
            raise ValueError(
                f"the amortizer {path} was trained for networks {trained_for}, but the zoo {z.path} holds {have}"
            )
        check_same_arch(
            trained_for, z.archs[s["activation"]], f"the amortizer {path}", f"the networks of the zoo {z.path}"
        )
        model, _ = load_amortizer(path, trained_for)
        if settings is None:
            settings = s
        elif (s["activation"], s["epochs"], s["lam"]) != (settings["activation"], settings["epochs"], settings["lam"]):
            raise ValueError(
                f"{path} was trained with activation/epochs/lam {s['activation']}/{s['epochs']}/{s['lam']}, the first "
                f"run with {settings['activation']}/{settings['epochs']}/{settings['lam']}: evaluate comparable runs together"
            )
        models.append((r, s, model))
    lam = settings["lam"]
    data = zoo_networks(z, settings["activation"], settings["epochs"], data_root=data_root)
    test = data.splits["test"]
    if test is None:
        raise ValueError(f"{z.path} has no test-split networks for {data.arch}")
    n_test = len(test) if max_test is None else min(len(test), int(max_test))
    ws, bs = test.take(torch.arange(n_test))
    x, y = data.test_images
    px, py = data.pool
    l1_before = l1_norm(ws, bs)
    rows = [
        {"method": "before fine-tuning", "metrics": score(data.arch, ws, bs, x, y, lam=lam, reference_l1=l1_before)}
    ]
    log(f"{n_test} held-out networks {data.arch}: before fine-tuning mean acc {rows[0]['metrics']['mean_acc']:.1f} %")
    for r, s, model in models:
        label = method_label(s["symmetric"], dataclasses.asdict(model.config), data.arch, input_norm_of(model))
        nw, nb, per_net, single = one_shot(model, ws, bs)
        m = score(data.arch, nw, nb, x, y, lam=lam, reference_l1=l1_before)
        seed_r = s["train_config"]["seed"]
        rows.append(
            {
                "method": f"{label}, seed {seed_r} (1 pass)",
                "group": f"{label} (1 pass)",
                "run": os.path.abspath(r),
                "metrics": m,
                "seconds_per_network": per_net,
                "one_shot_single_seconds": single,
            }
        )
        log(f"  {rows[-1]['method']}: mean acc {m['mean_acc']:.1f} %, {per_net:.2e} s / network")
    lrs = {"sgd": sgd_lr, "adam": adam_lr}
    tuning: dict[str, dict] = {}
    val = data.splits["val"]
    for opt, ks in (("sgd", sgd_epochs), ("adam", adam_epochs)):
        if not ks or lrs[opt] is not None:
            continue
        if not tune:
            lrs[opt] = DEFAULT_LR[opt]
            continue
        if val is None:
            raise ValueError(f"{z.path} has no validation-split networks to tune the {opt} learning rate on")
        nv = min(len(val), int(tune_networks))
        vw, vb = val.take(torch.arange(nv))
        k_tune = int(tune_epochs or max(ks))
        t0 = time.time()
        best, table = tune_lr(
            data.arch, vw, vb, px, py, optimizer=opt, epochs=k_tune, batch_size=finetune_batch, lam=lam, seed=seed
        )
        lrs[opt] = best
        tuning[opt] = {
            "networks": nv,
            "epochs": k_tune,
            "chosen": best,
            "seconds": time.time() - t0,
            "grid": {f"{k:g}": v for k, v in table.items()},
        }
        log(
            f"  {opt} lr tuned on {nv} validation networks, {k_tune} epochs: "
            + ", ".join(f"{k:g} -> {v['acc']:.1f} %" for k, v in table.items())
            + f"; chosen {best:g}"
        )
    for opt, ks in (("sgd", sgd_epochs), ("adam", adam_epochs)):
        if not ks:
            continue
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(desc=f"{opt} fine-tuning", unit="step", dynamic_ncols=True, mininterval=0.5, disable=None)

        def report(step, total, bar=bar):
            if bar is not None:
                bar.total = total
                bar.update(step - bar.n)

        try:
            res = finetune(
                data.arch,
                ws,
                bs,
                px,
                py,
                optimizer=opt,
                epochs=ks,
                lr=lrs[opt],
                batch_size=finetune_batch,
                lam=lam,
                seed=seed,
                progress=report,
            )
        finally:
            if bar is not None:
                bar.close()
        for k, (fw, fb, sec) in sorted(res.items()):
            m = score(data.arch, fw, fb, x, y, lam=lam, reference_l1=l1_before)
            rows.append(
                {"method": f"{'SGD' if opt == 'sgd' else 'Adam'} {k} ep", "metrics": m, "seconds_per_network": sec}
            )
            log(f"  {rows[-1]['method']}: mean acc {m['mean_acc']:.1f} %, {sec:.3g} s / network")
    results = {
        "zoo": os.path.abspath(z.path),
        "kind": z.kind,
        "arch": str(data.arch),
        "activation": data.activation,
        "epochs": data.epochs,
        "lam": lam,
        "test_networks": n_test,
        "test_images": int(x.shape[0]),
        "pool_images": int(px.shape[0]),
        "finetune": {
            "batch_size": finetune_batch,
            "sgd_lr": lrs["sgd"],
            "adam_lr": lrs["adam"],
            "seed": seed,
            "tuning": tuning,
        },
        "torch_threads": torch.get_num_threads(),
        "rows": rows,
        "aggregates": _aggregate(rows),
    }
    os.makedirs(out, exist_ok=True)
    atomic_write_json(os.path.join(out, "results.json"), results)
    atomic_write_text(os.path.join(out, "results.md"), results_markdown(results))
    try:
        fig = accuracy_boxplot_figure(
            {r["method"]: r["metrics"]["accuracies"] for r in rows},
            title=f"{n_test} held-out {z.kind.upper()}s ({data.activation}, checkpoint epochs {data.epochs}), "
            f"lam={lam:g}:\ntest accuracy before, after one metanetwork pass, after SGD / Adam fine-tuning",
        )
        save_png(fig, os.path.join(out, "accuracy_boxplot.png"))
    except ImportError as exc:
        log(f"  box plot not written: {exc}")
    return results
