"""Produce the public-ScaleGMN parity fixtures by running the public code itself.

Usage (in an environment where the public code imports: torch, torch_geometric, pyyaml, einops,
pandas; its optional imports ``rff``, ``torchvision``, ``nfn``, ``cv2``, ``sklearn`` may be real
packages or stub modules in a folder passed with ``--extra-path``)::

    python scripts/make_public_scalegmn_fixtures.py --public-repo /path/to/scalegmn \\
        [--extra-path /path/to/stubs] [--out python_tests/fixtures/public_scalegmn]

It writes

* ``public_configs.json``: for every ``configs/*/*.yml`` of the public repository, its parsed
  contents, the input layout, and the parameter count of the public model built from it (or why
  it could not be built);
* ``<name>.pt`` for a few representative configurations, shrunk (``d_hid``, ``num_layers``) to
  keep the files small: the public model's ``state_dict``, random input networks (torch layout)
  and the public model's eval-mode outputs on them.

Without ``--public-repo`` (or when the public code does not import) it says why and exits 0, so
that it can run in CI environments without it. The public code is not part of this package.
"""

from __future__ import annotations

import argparse
import copy
import glob
import importlib
import json
import os
import subprocess
import sys

import torch

# representative configurations: (name, config file, overrides of scalegmn_args)
FIXTURES = [
    ("mnist_cls_fw", "mnist_cls/scalegmn.yml", {"d_hid": 12, "num_layers": 3}),
    ("mnist_cls_bidir", "mnist_cls/scalegmn_bidir.yml", {"d_hid": 12, "num_layers": 2}),
    ("fmnist_cls_fw", "fmnist_cls/scalegmn.yml", {"d_hid": 12}),
    ("cifar_inr_bidir", "cifar_inr_cls/scalegmn_bidir.yml", {"d_hid": 12, "num_layers": 2}),
    ("mnist_editing_fw", "mnist_editing/scalegmn.yml", {"d_hid": 12, "num_layers": 3}),
    ("mnist_editing_bidir", "mnist_editing/scalegmn_bidir.yml", {"d_hid": 12, "num_layers": 2}),
    ("cnn_relu_fw", "cifar10/scalegmn_relu.yml", {"d_hid": 12, "num_layers": 2}),
    ("cnn_relu_bidir", "cifar10/scalegmn_relu_bidir.yml", {"d_hid": 12, "num_layers": 2}),
    ("cnn_tanh_fw", "cifar10/scalegmn_tanh.yml", {"d_hid": 12, "num_layers": 2}),
    ("cnn_tanh_bidir", "cifar10/scalegmn_tanh_bidir.yml", {"d_hid": 12, "num_layers": 2}),
]
BATCH = 3
GAIN = 2.5


def _layout(conf: dict) -> list[int]:
    return list(conf["data"]["layer_layout"])


def _build(P, conf: dict):
    conf = P.update_common_args(copy.deepcopy(conf))
    a = conf["scalegmn_args"]
    a["layer_layout"] = _layout(conf)
    cls = P.ScaleGMN_equiv if a.get("equivariant", False) else P.ScaleGMN
    return cls(a), a


def _inputs(layout: list[int], cnn: bool, g: torch.Generator):
    """Random networks in torch layout: dense ``[B, out, in]``, conv ``[B, out, in, 3, 3]``."""
    ws, bs = [], []
    for l, (n_in, n_out) in enumerate(zip(layout[:-1], layout[1:])):
        shape = (BATCH, n_out, n_in, 3, 3) if (cnn and l < len(layout) - 2) else (BATCH, n_out, n_in)
        ws.append(0.5 * torch.randn(*shape, generator=g))
        bs.append(0.5 * torch.randn(BATCH, n_out, generator=g))
    return ws, bs


def _public_batch(P, a: dict, ws, bs, cnn: bool):
    """The public model's input: a PyG batch built with the public graph functions."""
    layout = a["layer_layout"]
    edge_index = P.nn_to_edge_index(layout, "cpu")
    n = sum(layout)
    hidden = torch.zeros(n, 1, dtype=torch.bool)
    hidden[layout[0] : n - layout[-1]] = True
    first = torch.zeros(n, 1, dtype=torch.bool)
    first[: layout[0]] = True
    graphs = []
    for b in range(BATCH):
        if cnn:  # the public CNN layout: [in, out, kh*kw] kernels, dense weights in slot 0
            w = [x[b].transpose(0, 1).flatten(2) if x.dim() == 5 else x[b].transpose(0, 1).unsqueeze(-1) for x in ws]
            node, edge, _, _ = P.cnn_to_graph(w, [x[b].unsqueeze(-1) for x in bs])
        else:  # the public INR layout: [in, out, 1] weights, input nodes 1
            node, edge = P.batch_to_graphs(
                [x[b : b + 1].transpose(1, 2).unsqueeze(-1) for x in ws], [x[b : b + 1].unsqueeze(-1) for x in bs]
            )
            node, edge = node[0], edge[0]
        data, _ = P.to_pyg_batch(
            node,
            edge,
            edge_index,
            node2type=P.get_node_types(layout),
            edge2type=P.get_edge_types(layout),
            direction=a["direction"],
            hidden_nodes=hidden,
            first_layer_nodes=first,
        )
        graphs.append(data)
    return P.Batch.from_data_list(graphs)


class _Public:
    """The public functions this script calls, imported from the public repository."""

    NAMES = {
        "src.data.cifar10_dataset": ["cnn_to_graph"],
        "src.data.data_utils": ["get_edge_types", "get_node_types", "nn_to_edge_index", "to_pyg_batch"],
        "src.scalegmn.graph_init": ["batch_to_graphs"],
        "src.scalegmn.models": ["ScaleGMN", "ScaleGMN_equiv"],
        "src.utils.helpers": ["update_common_args"],
        "torch_geometric.data": ["Batch"],
    }

    def __init__(self, repo: str, extra: list[str]):
        sys.path[:0] = [*extra, repo]
        for module, names in self.NAMES.items():
            mod = importlib.import_module(module)
            for name in names:
                setattr(self, name, getattr(mod, name))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--public-repo", help="checkout of github.com/jkalogero/scalegmn")
    ap.add_argument("--extra-path", action="append", default=[], help="prepended to sys.path (e.g. stub modules)")
    ap.add_argument("--commit", help="the public commit, when --public-repo is not a git checkout (an archive)")
    ap.add_argument("--out", default=os.path.join("python_tests", "fixtures", "public_scalegmn"))
    args = ap.parse_args(argv)
    if not args.public_repo or not os.path.isdir(os.path.join(args.public_repo, "src", "scalegmn")):
        print("skipped: pass --public-repo, a checkout of github.com/jkalogero/scalegmn")
        return 0
    try:
        import yaml

        P = _Public(os.path.abspath(args.public_repo), [os.path.abspath(p) for p in args.extra_path])
    except ImportError as e:
        print(f"skipped: the public code does not import here ({e})")
        return 0
    torch.set_num_threads(1)
    os.makedirs(args.out, exist_ok=True)
    cfg_dir = os.path.join(args.public_repo, "configs")
    summary = {}
    for path in sorted(glob.glob(os.path.join(cfg_dir, "*", "*.yml"))):
        name = os.path.relpath(path, cfg_dir).replace(os.sep, "/")
        try:
            conf = yaml.safe_load(open(path))
        except yaml.YAMLError as e:
            summary[name] = {"config": None, "error": f"YAML: {str(e).splitlines()[0]}"}
            continue
        model, _ = _build(P, conf)
        summary[name] = {"config": conf, "params": sum(p.numel() for p in model.parameters())}
        print(f"{name}: {summary[name]['params']:,} parameters")
    commit = subprocess.run(
        ["git", "-C", args.public_repo, "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    meta = {"repository": "https://github.com/jkalogero/scalegmn", "commit": commit or args.commit}
    with open(os.path.join(args.out, "public_configs.json"), "w") as f:
        json.dump({"source": meta, "configs": summary}, f, indent=1, sort_keys=True)

    g = torch.Generator().manual_seed(0)
    for fname, cfg_name, overrides in FIXTURES:
        conf = copy.deepcopy(summary[cfg_name]["config"])
        conf["scalegmn_args"].update(overrides)
        torch.manual_seed(len(fname))
        model, a = _build(P, conf)
        model.eval()
        with torch.no_grad():
            for k, v in model.named_parameters():
                if "scale" in k:  # the equivariant head's output scales: away from their 0.01 init
                    v.uniform_(0.5, 1.5)
                elif v.dim() >= 2:  # larger than PyTorch's init, so that outputs depend on the input
                    v.mul_(GAIN)
        cnn = "_max_kernel_height" in a
        ws, bs = _inputs(a["layer_layout"], cnn, g)
        batch = _public_batch(P, a, ws, bs, cnn)
        with torch.no_grad():
            if a.get("equivariant", False):
                shapes_w = [torch.empty(BATCH, x.shape[2], x.shape[1], 1) for x in ws]
                shapes_b = [torch.empty(BATCH, x.shape[1], 1) for x in bs]
                ow, ob = model(batch, shapes_w, shapes_b)
                # public layout [B, in, out, 1] / [B, out, 1] -> torch layout
                output = {
                    "weights": [w[..., 0].transpose(1, 2).contiguous() for w in ow],
                    "biases": [b[..., 0] for b in ob],
                }
            else:
                output = model(batch)
        fixture = {
            "config_name": cfg_name,
            "config": conf,
            "state_dict": {k: v.clone() for k, v in model.state_dict().items()},
            "weights": ws,
            "biases": bs,
            "output": output,
        }
        path = os.path.join(args.out, f"{fname}.pt")
        torch.save(fixture, path + ".tmp")
        os.replace(path + ".tmp", path)
        print(f"{path}: {os.path.getsize(path) / 1024:.0f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
