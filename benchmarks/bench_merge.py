"""Benchmark: canonicalising networks with the autoencoder vs Git Re-Basin weight matching.

For MLPs 2-w-w-1 (tanh, sign group) at hidden widths w = 32 ... 512 it times, in one run:

* ``canon/net`` -- batched encode + decode (ScaleGMN encoder + decoder, eval mode, no grad) of
  N networks, divided by N: the cost of putting one network into the canonical basin;
* ``match/pair`` -- weight matching of one pair, permutations only (``rebasin``) and with signs
  (``rebasin_sign``, one start and the default best of 5): the cost of aligning one network to a
  reference.

Merging N models costs N canonicalisations or N - 1 matchings, so the per-network figures
compare directly; the crossover width is the smallest width at which one canonicalisation is
cheaper than one matching. A second table varies N at one width (batching amortises the encoder).
The encoder/decoder sizes are printed, and ``--png`` writes the time-vs-width plot.

Usage:
    python benchmarks/bench_merge.py                              # widths 32..512, CPU
    python benchmarks/bench_merge.py --widths 32,64 --n 8 --pairs 2 # quick
    python benchmarks/bench_merge.py --device cuda --json out.json --png out.png
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from scalegmn_ext._io import atomic_write_json


def _time(fn, repeats: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return best


def _autoencoder(arch, d_hid: int, decoder: str, probes: int):
    from scalegmn_ext.models import ScaleGMNConfig
    from scalegmn_ext.models.autoencoder import ScaleGMNAutoencoder

    cfg = ScaleGMNConfig(d_hid=d_hid, num_layers=3, dropout=0.0, readout="last_layer" if probes else "full_graph")
    return ScaleGMNAutoencoder(arch, cfg, decoder=decoder, probes=probes or None)


def run(
    widths, n: int, pairs: int, d_hid: int, decoder: str, device: str, repeats: int, n_sweep, probes: int = 0
) -> dict:
    from scalegmn_ext.tasks.merge.autoencoder import canonicalize
    from scalegmn_ext.tasks.merge.matching import weight_matching
    from scalegmn_ext.testing import random_weights
    from scalegmn_ext.weightspace.architecture import Architecture

    rows = []
    for w in widths:
        arch = Architecture.mlp([2, w, w, 1], "tanh")
        torch.manual_seed(0)
        ae = _autoencoder(arch, d_hid, decoder, probes).to(device).eval()
        ws, bs = random_weights(arch, n, device=device, generator=torch.Generator().manual_seed(w))
        ws = [x / x[0][0].numel() ** 0.5 for x in ws]
        t_canon = _time(lambda: canonicalize(ae, ws, bs, batch_size=n), repeats) / n
        cpu = ([x.cpu().double() for x in ws], [x.cpu().double() for x in bs])
        t_match = {}
        for label, method, restarts in (
            ("rebasin", "permutation", 1),
            ("rebasin_sign", "sign", 1),
            ("rebasin_sign_best_of_5", "sign", 5),
        ):
            ts = []
            for p in range(pairs):
                a = ([x[2 * p] for x in cpu[0]], [x[2 * p] for x in cpu[1]])
                b = ([x[2 * p + 1] for x in cpu[0]], [x[2 * p + 1] for x in cpu[1]])
                t = time.perf_counter()
                weight_matching(arch, a, b, method=method, restarts=restarts)
                ts.append(time.perf_counter() - t)
            t_match[label] = sum(ts) / len(ts)
        enc = sum(p.numel() for p in ae.encoder.parameters())
        dec = sum(p.numel() for p in ae.decoder.parameters())
        rows.append(
            {
                "width": w,
                "canon_per_net_s": t_canon,
                **{f"{k}_per_pair_s": v for k, v in t_match.items()},
                "encoder_params": enc,
                "decoder_params": dec,
            }
        )
        print(
            f"  w={w}: canon {t_canon * 1e3:.2f} ms/net, match {t_match['rebasin'] * 1e3:.2f} / "
            f"{t_match['rebasin_sign'] * 1e3:.2f} / {t_match['rebasin_sign_best_of_5'] * 1e3:.2f} ms/pair",
            flush=True,
        )
    sweep = []
    w = n_sweep[0]
    arch = Architecture.mlp([2, w, w, 1], "tanh")
    torch.manual_seed(0)
    ae = _autoencoder(arch, d_hid, decoder, probes).to(device).eval()
    for N in n_sweep[1]:
        ws, bs = random_weights(arch, N, device=device, generator=torch.Generator().manual_seed(N))
        sweep.append(
            {"width": w, "N": N, "canon_total_s": _time(lambda: canonicalize(ae, ws, bs, batch_size=N), repeats)}
        )
    return {"rows": rows, "n_sweep": sweep}


def crossover(rows, key: str) -> int | None:
    """Smallest width where one canonicalisation is cheaper than one matching of ``key``."""
    for r in rows:
        if r["canon_per_net_s"] < r[f"{key}_per_pair_s"]:
            return r["width"]
    return None


def table(res: dict, device: str) -> str:
    lines = [
        f"Canonicalisation vs weight matching, MLP 2-w-w-1 tanh, {device}, {torch.get_num_threads()} threads",
        "| width | canon (ms/net) | rebasin (ms/pair) | rebasin_sign 1 start | rebasin_sign best of 5 | "
        "encoder params | decoder params |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in res["rows"]:
        lines.append(
            f"| {r['width']} | {r['canon_per_net_s'] * 1e3:.2f} | {r['rebasin_per_pair_s'] * 1e3:.2f} | "
            f"{r['rebasin_sign_per_pair_s'] * 1e3:.2f} | {r['rebasin_sign_best_of_5_per_pair_s'] * 1e3:.2f} | "
            f"{r['encoder_params']:,} | {r['decoder_params']:,} |"
        )
    for key in ("rebasin", "rebasin_sign", "rebasin_sign_best_of_5"):
        c = crossover(res["rows"], key)
        lines.append(
            f"crossover vs {key}: {'w = ' + str(c) if c else 'none up to w = ' + str(res['rows'][-1]['width'])}"
        )
    lines += ["", "| width | N | canonicalise all (s) | per network (ms) |", "|---|---|---|---|"]
    for s in res["n_sweep"]:
        lines.append(
            f"| {s['width']} | {s['N']} | {s['canon_total_s']:.3f} | {s['canon_total_s'] / s['N'] * 1e3:.2f} |"
        )
    return "\n".join(lines)


def plot(res: dict, path: str, device: str) -> None:
    from scalegmn_ext.tasks.plots import figure_factory, save_png

    fig = figure_factory()(figsize=(6.2, 4.2), layout="constrained")
    ax = fig.add_subplot()
    w = [r["width"] for r in res["rows"]]
    ax.plot(
        w,
        [r["canon_per_net_s"] * 1e3 for r in res["rows"]],
        "o-",
        color="#d62728",
        label="autoencoder: canonicalise one network (batched)",
    )
    for key, color, label in (
        ("rebasin", "#1f77b4", "Git Re-Basin, permutations"),
        ("rebasin_sign", "#2ca02c", "Git Re-Basin + signs, 1 start"),
        ("rebasin_sign_best_of_5", "#98df8a", "Git Re-Basin + signs, best of 5"),
    ):
        ax.plot(w, [r[f"{key}_per_pair_s"] * 1e3 for r in res["rows"]], "s--", color=color, label=f"{label} (one pair)")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("hidden width w of the MLP 2-w-w-1")
    ax.set_ylabel("time (ms)")
    ax.set_title(f"Cost of aligning one network ({device}, {platform.processor() or platform.machine()})", fontsize=10)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    save_png(fig, path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--widths", default="32,64,128,256,512")
    p.add_argument("--n", type=int, default=32, help="networks canonicalised in one batch")
    p.add_argument("--pairs", type=int, default=3, help="pairs matched per width (mean reported)")
    p.add_argument("--d-hid", type=int, default=32)
    p.add_argument("--decoder", default="neuron", choices=("mlp", "neuron"))
    p.add_argument("--device", default="cpu")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--sweep-width", type=int, default=128)
    p.add_argument("--sweep-n", default="1,8,32,128")
    p.add_argument("--json")
    p.add_argument("--png")
    p.add_argument(
        "--probes", type=int, default=0, help="probe inputs of the encoder (models/probes.py; 0 = weights only)"
    )
    a = p.parse_args()
    widths = [int(x) for x in a.widths.split(",")]
    res = run(
        widths,
        a.n,
        a.pairs,
        a.d_hid,
        a.decoder,
        a.device,
        a.repeats,
        (a.sweep_width, [int(x) for x in a.sweep_n.split(",")]),
        a.probes,
    )
    res.update(
        {
            "device": a.device,
            "threads": torch.get_num_threads(),
            "d_hid": a.d_hid,
            "decoder": a.decoder,
            "probes": a.probes,
            "torch": torch.__version__,
        }
    )
    print(table(res, a.device))
    if a.json:
        atomic_write_json(a.json, res)
    if a.png:
        plot(res, a.png, a.device)


if __name__ == "__main__":
    main()
