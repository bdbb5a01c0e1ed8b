"""Benchmark: this package's fast path vs the public ScaleGMN code, same configuration and inputs.

The public code (github.com/jkalogero/scalegmn) is not a dependency: pass a checkout with
``--public-repo``; the script says "skipped" and exits 0 without it, or when the public code does
not import (it needs torch_geometric, pyyaml, einops, pandas; its unused optional imports
``rff``, ``torchvision``, ``nfn``, ``cv2``, ``sklearn`` may be stub modules in a folder given with
``--extra-path``).

Both models are the same network: the public model is built from the YAML configuration and
initialised with seed 0, and ours is built with :func:`scalegmn_ext.models.from_public_yaml` and
loaded with its ``state_dict`` (:func:`load_public_state_dict`); before timing, the eval-mode
outputs of the two are compared on the benchmark batch. Each implementation runs in its own
subprocess (peak RSS is its own). Per implementation:

* training step: forward, cross-entropy (or MSE for 1 output), backward, gradient clipping at
  10, AdamW (the public recipe); the public input is a prebuilt PyG batch (its data loader
  builds graphs outside the step), ours takes the weights and builds its graph inside the step;
* inference: eval-mode forward under ``torch.no_grad``;
* activations saved for backward (unique storages, one forward) and peak RSS;
* matmul FLOPs of one training step (``torch.utils.flop_counter``; ours counted on the same
  model with the fused ops switched off -- the same math in torch ops; the fused ops recompute
  their forward in backward, so this is a lower bound for ours) and the achieved GFLOP/s, next
  to an fp32 GEMM measured in the same run (``[M, d] @ [d, d]``, the shape class of the
  per-edge MLPs, and a square 2048 GEMM).

Usage:
    python benchmarks/bench_public.py --public-repo /path/to/scalegmn [--extra-path stubs]
    python benchmarks/bench_public.py --public-repo ... --config mnist_cls/scalegmn.yml --batch 32 --steps 1
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE_SCRIPT = os.path.join(HERE, "..", "scripts", "make_public_scalegmn_fixtures.py")


def _fixture_helpers():
    """The public-batch builder shared with the fixture script (one copy of that code)."""
    spec = importlib.util.spec_from_file_location("_public_fixtures", FIXTURE_SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _load_conf(path: str, d_hid: int | None, layers: int | None) -> dict:
    import yaml

    with open(path) as f:
        conf = yaml.safe_load(f)
    if d_hid:
        conf["scalegmn_args"]["d_hid"] = d_hid
    if layers:
        conf["scalegmn_args"]["num_layers"] = layers
    return conf


def _inputs(fx, conf: dict, batch: int):
    import torch

    cnn = "_max_kernel_height" in conf["scalegmn_args"]
    fx.BATCH = batch
    return fx._inputs(list(conf["data"]["layer_layout"]), cnn, torch.Generator().manual_seed(1)), cnn


def _saved_bytes(run) -> int:
    import torch

    seen, saved = set(), [0]

    def pack(t):
        try:
            key = t.untyped_storage().data_ptr()
            if key not in seen:
                seen.add(key)
                saved[0] += t.untyped_storage().nbytes()
        except Exception:  # (tensors without storage)
            pass
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = run()
    del loss
    return saved[0]


def _measure(model, forward, target, steps: int, flop_model=None, flop_forward=None) -> dict:
    """Training step and inference timings, saved activations and step FLOPs of one model."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)

    def loss_of(out):
        if out.shape[-1] == 1:
            return torch.nn.functional.mse_loss(out.squeeze(-1), target.float())
        return torch.nn.functional.cross_entropy(out, target)

    def step():
        loss = loss_of(forward(model))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
        opt.step()

    model.train()
    saved = _saved_bytes(lambda: loss_of(forward(model)))
    step()  # warm-up
    train = []
    for _ in range(steps):
        t = time.perf_counter()
        step()
        train.append(time.perf_counter() - t)
    model.eval()
    infer = []
    with torch.no_grad():
        forward(model)
        for _ in range(steps):
            t = time.perf_counter()
            forward(model)
            infer.append(time.perf_counter() - t)
    fm, ff = (model, forward) if flop_model is None else (flop_model, flop_forward)
    fm.train()
    with FlopCounterMode(display=False) as counter:
        loss_of(ff(fm)).backward()
    return {
        "step_s": min(train),
        "infer_s": min(infer),
        "saved_activation_GiB": saved / 2**30,
        "step_GFLOP": counter.get_total_flops() / 1e9,
        "threads": torch.get_num_threads(),
    }


def child(impl: str, a) -> dict:
    import torch

    if a.threads:
        torch.set_num_threads(a.threads)

    sys.path[:0] = [a.public_repo, *a.extra_path] if impl == "public" else []
    fx = _fixture_helpers()
    conf = _load_conf(a.config_path, a.d_hid, a.layers)
    (ws, bs), cnn = _inputs(fx, conf, a.batch)
    n_out = None
    if impl == "public":
        P = fx._Public(a.public_repo, a.extra_path)
        torch.manual_seed(0)
        model, args = fx._build(P, conf)
        batch = fx._public_batch(P, args, ws, bs, cnn)
        model.eval()
        with torch.no_grad():
            out = model(batch.clone())
        torch.save({"state_dict": model.state_dict(), "output": out}, a.exchange)
        n_out = out.shape[-1]
        # the public forward writes the embedded features into the batch it gets (its data loader
        # hands out a fresh batch every step), so every call gets a copy
        forward = lambda m: m(batch.clone())  # noqa: E731
        flop_model = flop_forward = None
    else:
        from scalegmn_ext.models.public import from_public_yaml, load_public_state_dict

        ref = torch.load(a.exchange, weights_only=True)
        kw = {"scale_backward": "raw"} if "scale_backward" in a.our_options else {}
        model = load_public_state_dict(from_public_yaml(conf, **kw), ref["state_dict"])
        model.eval()
        with torch.no_grad():
            out = model(ws, bs)
        n_out = out.shape[-1]
        rel = ((out - ref["output"]).abs().max() / ref["output"].abs().max()).item()
        forward = lambda m: m(ws, bs)  # noqa: E731
        flop_model = from_public_yaml(conf, fused_message=False, fused_edge_update=False, **kw)
        flop_model.load_state_dict(model.state_dict())
        flop_forward = forward
    target = torch.randint(0, max(n_out, 2), (a.batch,), generator=torch.Generator().manual_seed(2))
    row = _measure(model, forward, target, a.steps, flop_model, flop_forward)
    row["impl"] = impl
    row["params"] = sum(p.numel() for p in model.parameters())
    if impl == "ours":
        row["max_rel_diff_vs_public"] = rel
    row["peak_rss_GiB"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    return row


def gemm_ceiling(d: int, repeats: int = 5) -> dict:
    """Measured fp32 GEMM throughput (GFLOP/s): the per-edge MLP shape class and a square one."""
    import torch

    out = {}
    for name, (m, k, n) in {"tall_d": (65536, d, d), "square_2048": (2048, 2048, 2048)}.items():
        x, w = torch.randn(m, k), torch.randn(k, n)
        torch.mm(x, w)
        best = float("inf")
        for _ in range(repeats):
            t = time.perf_counter()
            torch.mm(x, w)
            best = min(best, time.perf_counter() - t)
        out[name] = 2 * m * k * n / best / 1e9
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--public-repo", help="checkout of github.com/jkalogero/scalegmn")
    p.add_argument("--extra-path", action="append", default=[], help="prepended to sys.path for the public code")
    p.add_argument("--config", default="mnist_cls/scalegmn.yml", help="path under the public configs/ (or a file)")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--steps", type=int, default=2, help="timed repetitions (best is reported)")
    p.add_argument("--d-hid", type=int, default=None, help="override the config's d_hid")
    p.add_argument("--layers", type=int, default=None, help="override the config's num_layers")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads (default: torch's). On a CPU shared with other jobs, 1 avoids OpenMP waits "
        "that slow small ops by 100x or more",
    )
    p.add_argument("--json")
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--exchange", help=argparse.SUPPRESS)
    p.add_argument("--our-options", default="", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if not a.public_repo or not os.path.isdir(os.path.join(a.public_repo, "src", "scalegmn")):
        print("skipped: pass --public-repo, a checkout of github.com/jkalogero/scalegmn")
        return 0
    a.public_repo = os.path.abspath(a.public_repo)
    a.extra_path = [os.path.abspath(x) for x in a.extra_path]
    cfg = a.config if os.path.isfile(a.config) else os.path.join(a.public_repo, "configs", a.config)
    a.config_path = cfg
    if a.child:
        print(json.dumps(child(a.child, a)))
        return 0
    probe = subprocess.run(
        [sys.executable, "-c", "import torch_geometric, yaml, einops"], capture_output=True, text=True
    )
    if probe.returncode != 0:
        print(f"skipped: the public code's dependencies do not import here ({probe.stderr.strip().splitlines()[-1]})")
        return 0
    conf = _load_conf(cfg, a.d_hid, a.layers)
    sa = conf["scalegmn_args"]
    options = "scale_backward" if (sa["symmetry"] == "scale" and sa["direction"] == "bidirectional") else ""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        exchange = os.path.join(tmp, "public.pt")
        for impl in ("public", "ours"):  # the public model's state_dict and outputs go to ours
            cmd = [sys.executable, os.path.abspath(__file__), "--child", impl, "--exchange", exchange]
            cmd += ["--public-repo", a.public_repo, "--config", cfg, "--batch", str(a.batch), "--steps", str(a.steps)]
            cmd += ["--our-options", options] + sum((["--extra-path", x] for x in a.extra_path), [])
            cmd += (["--d-hid", str(a.d_hid)] if a.d_hid else []) + (["--layers", str(a.layers)] if a.layers else [])
            cmd += ["--threads", str(a.threads)] if a.threads else []
            print(f"running {impl} ...", file=sys.stderr, flush=True)
            res = subprocess.run(cmd, capture_output=True, text=True)
            if res.returncode != 0:
                print(res.stderr, file=sys.stderr)
                raise SystemExit(f"{impl} run failed")
            rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
    if a.threads:
        import torch

        torch.set_num_threads(a.threads)
    gemm = gemm_ceiling(sa["d_hid"])
    peak = max(gemm.values())
    pub, ours = rows
    print(
        f"ScaleGMN, public config {a.config} (d_hid {sa['d_hid']}, {sa['num_layers']} layers, {sa['direction']}, "
        f"{sa['symmetry']}), batch {a.batch}, {pub['threads']} CPU threads; {ours['params']:,} parameters each; "
        f"max relative output difference {ours['max_rel_diff_vs_public']:.1e}"
    )
    print(
        f"fp32 GEMM measured in this run: {gemm['tall_d']:.0f} GFLOP/s ([65536, {sa['d_hid']}] @ "
        f"[{sa['d_hid']}, {sa['d_hid']}]), {gemm['square_2048']:.0f} GFLOP/s (2048^3)"
    )
    print(
        "| impl | train step (s) | speed-up | inference (s) | speed-up | step GFLOP | GFLOP/s | % of GEMM peak "
        "| saved activations (GiB) | peak RSS (GiB) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        gf = r["step_GFLOP"] / r["step_s"]
        print(
            f"| {r['impl']} | {r['step_s']:.2f} | {pub['step_s'] / r['step_s']:.1f}x | {r['infer_s']:.3f} | "
            f"{pub['infer_s'] / r['infer_s']:.1f}x | {r['step_GFLOP']:.1f} | {gf:.0f} | {100 * gf / peak:.0f} % | "
            f"{r['saved_activation_GiB']:.2f} | {r['peak_rss_GiB']:.2f} |"
        )
    if a.json:
        from scalegmn_ext._io import atomic_write_json

        atomic_write_json(a.json, {"config": a.config, "batch": a.batch, "gemm_GFLOPs": gemm, "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
