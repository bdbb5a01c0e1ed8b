"""Command line: ``scalegmn-ext demo | info``."""
from __future__ import annotations

import argparse
import sys


def _info(_args) -> int:
    import torch

    import scalegmn_ext as sx

    print(f"scalegmn_ext {sx.__version__}, torch {torch.__version__}")
    print(f"compiled extension: {'yes' if sx.HAS_EXTENSION else 'NO (reference fallbacks only)'}")
    print(f"CUDA kernels: {'yes' if sx.has_cuda_kernels() else 'no'}; CUDA device: {torch.cuda.is_available()}")
    print(f"intra-op threads: {torch.get_num_threads()}")
    return 0


def _demo(args) -> int:
    from .demo import run_demo

    run_demo(out=args.out, n_inr=args.n_inr, inr_steps=args.inr_steps, n_cnn=args.n_cnn,
             cnn_epochs=args.cnn_epochs, seed=args.seed, bench=not args.no_bench)
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="scalegmn-ext", description="Symmetry-aware learning on network weights")
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("demo", help="real INR/CNN zoos -> graphs -> symmetry checks -> graph benchmark")
    d.add_argument("--out", default="runs/demo", help="output/cache directory (default: runs/demo)")
    d.add_argument("--n-inr", type=int, default=64, help="number of SIRENs to fit (default 64)")
    d.add_argument("--inr-steps", type=int, default=300, help="Adam steps per SIREN (default 300)")
    d.add_argument("--n-cnn", type=int, default=16, help="CNNs per activation (default 16)")
    d.add_argument("--cnn-epochs", type=int, default=3, help="training epochs per CNN (default 3)")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--no-bench", action="store_true", help="skip the benchmark table")
    d.set_defaults(fn=_demo)
    i = sub.add_parser("info", help="build and device information")
    i.set_defaults(fn=_info)
    args = p.parse_args(argv)
    return args.fn(args)


if __name__ == "__main__":
    sys.exit(main())
