"""Readers for the published zoos (DWSNets MNIST INRs, Small CNN Zoo) and the PyG conversion.

Every test writes tiny files in exactly the published layouts into a temporary folder; nothing
is downloaded.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
import random
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import scalegmn_ext as sx
from scalegmn_ext.tasks.zoo import published as pz
from scalegmn_ext.weightspace import adapters, functional, nets

SIREN = sx.Architecture.siren()


# ==============================================================================================
# DWSNets MNIST-INR zoo fixtures
# ==============================================================================================
# (split folder, label, id)
INR_ENTRIES = [
    ("training", 3, 7),
    ("training", 0, 12),
    ("training", 1, 2),
    ("training", 3, 100),
    ("training", 2, 5),
    ("training", 1, 31),
    ("testing", 7, 4),
    ("testing", 0, 9),
    ("testing", 5, 1),
]


def _inr_rel(split: str, label: int, idx: int) -> str:
    return f"mnist_png_{split}_{label}_{idx}/checkpoints/model_final.pth"


@pytest.fixture(scope="module")
def inr_zoo(tmp_path_factory):
    """data/mnist-inrs/<folder>/checkpoints/model_final.pth from real SIREN modules + split JSONs."""
    base = tmp_path_factory.mktemp("inr")
    root = base / "data" / "mnist-inrs"
    torch.manual_seed(0)
    sds = {}
    for split, label, idx in INR_ENTRIES:
        sd = adapters.weights_to_state_dict(SIREN, *adapters.module_to_weights(nets.SIREN()))  # seq.{i}.* keys
        assert list(sd) == pz.inr_key_names()
        f = root / _inr_rel(split, label, idx)
        f.parent.mkdir(parents=True)
        torch.save(sd, f)
        sds[_inr_rel(split, label, idx)] = sd
    tr = [e for e in INR_ENTRIES if e[0] == "training"]
    te = [e for e in INR_ENTRIES if e[0] == "testing"]
    # DWSNets style: absolute paths from another machine, labels as strings.
    other = "/home/someone/dwsnets/dataset/mnist-inrs/"
    dws = {
        "train": {"path": [other + _inr_rel(*e) for e in tr[:4]], "label": [str(e[1]) for e in tr[:4]]},
        "val": {"path": [other + _inr_rel(*e) for e in tr[4:]], "label": [str(e[1]) for e in tr[4:]]},
        "test": {"path": [other + _inr_rel(*e) for e in te], "label": [str(e[1]) for e in te]},
    }
    (base / "dws_splits.json").write_text(json.dumps(dws))
    # ScaleGMN style: relative to the code's working directory.
    sg = {
        s: {"path": ["data/mnist-inrs/" + p.split("mnist-inrs/")[1] for p in v["path"]], "label": v["label"]}
        for s, v in dws.items()
    }
    (base / "sg_splits.json").write_text(json.dumps(sg))
    return {"base": base, "root": root, "sds": sds, "dws": base / "dws_splits.json", "sg": base / "sg_splits.json"}


def _stack_sds(sds):
    return adapters.state_dict_to_weights(sds, SIREN)


# ==============================================================================================
# MNIST-INR tests
# ==============================================================================================
@pytest.mark.parametrize("style", ["dws", "sg"])
def test_inr_split_file_roundtrip(inr_zoo, style):
    for split, entries in (
        ("train", [e for e in INR_ENTRIES if e[0] == "training"][:4]),
        ("val", [e for e in INR_ENTRIES if e[0] == "training"][4:]),
        ("test", [e for e in INR_ENTRIES if e[0] == "testing"]),
    ):
        b = pz.load_mnist_inrs(inr_zoo["root"], split, split_file=inr_zoo[style])
        assert len(b) == len(entries) and b.arch == SIREN
        ws, bs = _stack_sds([inr_zoo["sds"][_inr_rel(*e)] for e in entries])
        for l in range(3):
            assert b.weights[l].dtype == torch.float32
            assert torch.equal(b.weights[l], ws[l]) and torch.equal(b.biases[l], bs[l])
        assert b.labels.tolist() == [e[1] for e in entries] and b.labels.dtype == torch.long
        assert [Path(p) for p in b.paths] == [inr_zoo["root"] / _inr_rel(*e) for e in entries]


def test_inr_scan_without_split_file_and_subsets(inr_zoo):
    root = inr_zoo["root"]
    paths, labels = pz.list_mnist_inrs(root, "train")
    tr = [e for e in INR_ENTRIES if e[0] == "training"]
    # natural order of the folder names (mnist_png_training_<label>_<id>)
    expect = sorted(tr, key=lambda e: (e[1], e[2]))
    assert [Path(p) for p in paths] == [root / _inr_rel(*e) for e in expect]
    assert labels == [e[1] for e in expect]
    assert len(pz.list_mnist_inrs(root, "test")[0]) == 3 and len(pz.list_mnist_inrs(root)[0]) == 9
    full = pz.load_mnist_inrs(root, "train")
    sub = pz.load_mnist_inrs(root, "train", indices=[4, 0, 2], limit=2)
    assert sub.labels.tolist() == [full.labels[4].item(), full.labels[0].item()]
    assert torch.equal(sub.weights[1], full.weights[1][[4, 0]])
    # streaming: chunks concatenate to the full load; threads give the same result
    chunks = list(pz.iter_mnist_inrs(root, "train", chunk_size=4))
    assert [len(c) for c in chunks] == [4, 2]
    for l in range(3):
        assert torch.equal(torch.cat([c.weights[l] for c in chunks]), full.weights[l])
    thr = pz.load_mnist_inrs(root, "train", num_workers=3, chunk_size=4, dtype=torch.float64)
    assert thr.weights[0].dtype == torch.float64 and torch.equal(thr.biases[2], full.biases[2].double())
    # explicit paths, label parsed from the folder name
    one = pz.load_mnist_inrs(paths=[root / _inr_rel("testing", 5, 1)])
    assert one.labels.tolist() == [5]
    assert len(pz.load_mnist_inrs(root, "train", limit=0)) == 0
    with pytest.raises(ValueError, match="make_mnist_inr_splits"):
        pz.load_mnist_inrs(root, "val")


def test_make_inr_splits_seeded_and_loadable(inr_zoo, tmp_path):
    root = inr_zoo["root"]
    s1 = pz.make_mnist_inr_splits(root, val_size=2, seed=3)
    assert s1 == pz.make_mnist_inr_splits(root, val_size=2, seed=3)
    assert len(s1["val"]["path"]) == 2 and len(s1["train"]["path"]) == 4 and len(s1["test"]["path"]) == 3
    assert not set(s1["val"]["path"]) & set(s1["train"]["path"])
    assert all(isinstance(l, str) for l in s1["train"]["label"])  # DWSNets writes digit strings
    f = tmp_path / "mnist_splits.json"
    pz.write_inr_split_file(s1, f)
    assert pz.read_inr_split_file(f)["val"]["label"] == [int(l) for l in s1["val"]["label"]]
    b = pz.load_mnist_inrs(root, "val", split_file=f)  # relative paths resolved under root
    assert b.labels.tolist() == [int(l) for l in s1["val"]["label"]]
    with pytest.raises(ValueError, match="val_size"):
        pz.make_mnist_inr_splits(root, val_size=7)


def test_inr_bad_files_are_refused_with_file_names(inr_zoo, tmp_path):
    good = adapters.weights_to_state_dict(SIREN, *adapters.module_to_weights(nets.SIREN()))
    d = tmp_path / "mnist_png_training_4_1" / "checkpoints"
    d.mkdir(parents=True)
    f = d / "model_final.pth"

    bad = dict(good)
    bad["seq.1.weight"] = torch.zeros(32, 16)
    torch.save(bad, f)
    with pytest.raises(
        pz.ZooFormatError,
        match=r"model_final\.pth: seq\.1\.weight must have shape \[32, 32\] for layer 1 .*got \[32, 16\]",
    ):
        pz.load_inr_file(f)
    bad = {k: v for k, v in good.items() if k != "seq.2.bias"}
    torch.save(bad, f)
    with pytest.raises(pz.ZooFormatError, match=r"model_final\.pth.*missing \['seq\.2\.bias'\]"):
        pz.load_mnist_inrs(paths=[f])
    torch.save({**good, "extra.weight": torch.zeros(1)}, f)
    with pytest.raises(pz.ZooFormatError, match="unexpected"):
        pz.load_inr_file(f)
    torch.save([torch.zeros(3)], f)
    with pytest.raises(pz.ZooFormatError, match="expected a state dict"):
        pz.load_inr_file(f)
    f.write_bytes(b"not a torch file")
    with pytest.raises(pz.ZooFormatError, match="model_final.pth"):
        pz.load_inr_file(f)
    with pytest.raises(pz.ZooFormatError, match="not found"):
        pz.load_inr_file(tmp_path / "nope.pth")


class _RunsCodeWhenUnpickled:
    """Unpickling this calls open(marker, 'w'): the file appears iff the loader ran pickle code."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_inr_pickled_code_is_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    f = tmp_path / "mnist_png_training_1_1" / "checkpoints" / "model_final.pth"
    f.parent.mkdir(parents=True)
    sd = adapters.weights_to_state_dict(SIREN, *adapters.module_to_weights(nets.SIREN()))
    sd["seq.0.bias"] = _RunsCodeWhenUnpickled(str(marker))
    torch.save(sd, f)
    assert not marker.exists()
    with pytest.raises(pz.ZooFormatError, match=r"model_final\.pth: refused by torch\.load\(weights_only=True\)"):
        pz.load_mnist_inrs(paths=[f])
    assert not marker.exists()


def test_inr_split_file_errors(inr_zoo, tmp_path):
    f = tmp_path / "s.json"
    f.write_text(json.dumps({"train": {"path": ["a", "b"], "label": ["1"]}}))
    with pytest.raises(pz.ZooFormatError, match=r"s\.json: split 'train' has 2 paths but 1 labels"):
        pz.read_inr_split_file(f)
    f.write_text(
        json.dumps({"train": {"path": ["mnist_png_training_1_99/checkpoints/model_final.pth"], "label": ["1"]}})
    )
    with pytest.raises(pz.ZooFormatError, match=r"s\.json: has no split 'test'"):
        pz.load_mnist_inrs(inr_zoo["root"], "test", split_file=f)
    with pytest.raises(pz.ZooFormatError, match=r"mnist_png_training_1_99.*not found.*s\.json"):
        pz.load_mnist_inrs(inr_zoo["root"], "train", split_file=f)
    # a shorter suffix (checkpoints/model_final.pth) must not resolve to some other INR's file
    other = tmp_path / "r" / "checkpoints" / "model_final.pth"
    other.parent.mkdir(parents=True)
    torch.save(adapters.weights_to_state_dict(SIREN, *adapters.module_to_weights(nets.SIREN())), other)
    with pytest.raises(pz.ZooFormatError, match="not found"):
        pz.load_mnist_inrs(tmp_path / "r", "train", split_file=f)
    f.write_text("{not json")
    with pytest.raises(pz.ZooFormatError, match="not valid JSON"):
        pz.read_inr_split_file(f)


# ==============================================================================================
# Small CNN Zoo fixtures
# ==============================================================================================
# The real layout.csv of the CIFAR-10-GS zoo: per layer bias before kernel, TF shapes.
REAL_LAYOUT = [
    ("sequential/conv2d/bias:0", (16,)),
    ("sequential/conv2d/kernel:0", (3, 3, 1, 16)),
    ("sequential/conv2d_1/bias:0", (16,)),
    ("sequential/conv2d_1/kernel:0", (3, 3, 16, 16)),
    ("sequential/conv2d_2/bias:0", (16,)),
    ("sequential/conv2d_2/kernel:0", (3, 3, 16, 16)),
    ("sequential/dense/bias:0", (10,)),
    ("sequential/dense/kernel:0", (16, 10)),
]
METRIC_COLS = [
    "",
    "modeldir",
    "step",
    "test_accuracy",
    "train_accuracy",
    "config.activation",
    "config.learning_rate",
    "config.w_init",
    "config.dropout",
]


def _write_layout(path: Path, layout, *, shape_override=None, drop_col=None):
    cols = ["varname", "start_idx", "end_idx", "size", "shape"]
    cols = [c for c in cols if c != drop_col]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        s = 0
        for name, shape in layout:
            n = math.prod(shape)
            sh = shape_override.get(name, shape) if shape_override else shape
            row = {"varname": name, "start_idx": s, "end_idx": s + n, "size": n, "shape": str(tuple(sh))}
            w.writerow([row[c] for c in cols])
            s += n
    return s


def _write_metrics(path: Path, rows, cols=METRIC_COLS, gz=True):
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(cols)
    for r in rows:
        w.writerow([r[c] for c in cols])
    if gz:
        with gzip.open(path, "wt", newline="") as f:
            f.write(buf.getvalue())
    else:
        path.write_text(buf.getvalue())


def _make_cnn_zoo(d: Path, layout=REAL_LAYOUT, n_models=12, steps=(0, 43, 86), seed=0, gz=True):
    """A zoo folder in the published layout; returns the TF arrays per row and the metrics rows."""
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    total = _write_layout(d / "layout.csv", layout)
    tf_rows, metrics, flat = [], [], []
    for m in range(n_models):
        act = "relu" if m % 3 else "tanh"
        for st in steps:
            arrs = {name: (rng.standard_normal(shape) * 0.5).astype(np.float32) for name, shape in layout}
            flat.append(np.concatenate([arrs[name].reshape(-1) for name, _ in layout]))
            tf_rows.append(arrs)
            metrics.append(
                {
                    "": len(metrics),
                    "modeldir": f"run_{m}",
                    "step": st,
                    "test_accuracy": round(float(rng.uniform(0.1, 0.6)), 6),
                    "train_accuracy": round(float(rng.uniform(0.1, 0.6)), 6),
                    "config.activation": act,
                    "config.learning_rate": 10 ** -(1 + m % 3),
                    "config.w_init": ["he_normal", "orthogonal"][m % 2],
                    "config.dropout": 0.0,
                }
            )
    data = np.stack(flat)
    assert data.shape == (n_models * len(steps), total)
    np.save(d / "weights.npy", data)
    _write_metrics(d / ("metrics.csv.gz" if gz else "metrics.csv"), metrics, gz=gz)
    return {"dir": d, "tf": tf_rows, "metrics": metrics, "data": data}


@pytest.fixture(scope="module")
def cnn_zoo(tmp_path_factory):
    z = _make_cnn_zoo(tmp_path_factory.mktemp("cnn") / "cifar10")
    order = list(range(len(z["metrics"])))
    random.Random(5).shuffle(order)
    (z["dir"].parent / "cifar10_split.csv").write_text("".join(f"{i}\n" for i in order))
    z["order"] = order
    z["order_file"] = z["dir"].parent / "cifar10_split.csv"
    return z


def _tf_to_torch(arrs, layout):
    """Reference conversion, one network: (weights, biases) per layer scope."""
    ws, bs = [], []
    for name, _shape in layout:
        a = torch.from_numpy(arrs[name])
        if name.endswith("kernel:0"):
            ws.append(a.permute(3, 2, 0, 1) if a.dim() == 4 else a.t())
        else:
            bs.append(a)
    return ws, bs


def _numpy_cnn_forward(arrs, layout, act, x_nhwc, stride=2):
    """Reference forward straight from the TF-layout arrays: VALID conv (cross-correlation,
    kernel (H, W, Cin, Cout)), activation, global average pooling, dense x @ K + b."""
    f = {"relu": lambda z: np.maximum(z, 0), "tanh": np.tanh}[act]
    scopes = []
    for name, _ in layout:
        s = name.rsplit("/", 1)[0]
        if s not in scopes:
            scopes.append(s)
    h = x_nhwc.astype(np.float64)
    pooled = False
    for li, s in enumerate(scopes):
        K = arrs[s + "/kernel:0"].astype(np.float64)
        b = arrs[s + "/bias:0"].astype(np.float64)
        last = li == len(scopes) - 1
        if K.ndim == 4:
            kh, kw = K.shape[:2]
            Ho, Wo = (h.shape[1] - kh) // stride + 1, (h.shape[2] - kw) // stride + 1
            out = np.zeros((h.shape[0], Ho, Wo, K.shape[3]))
            for i in range(kh):
                for j in range(kw):
                    patch = h[:, i : i + stride * (Ho - 1) + 1 : stride, j : j + stride * (Wo - 1) + 1 : stride, :]
                    out += np.einsum("pxyc,cd->pxyd", patch, K[i, j])
            h = out + b
        else:
            if not pooled:
                h = h.mean(axis=(1, 2))
                pooled = True
            h = h @ K + b
        if not last:
            h = f(h)
    return h


# ==============================================================================================
# Small CNN Zoo tests
# ==============================================================================================
def test_cnn_unflatten_and_tf_to_torch(cnn_zoo):
    zoo = pz.open_small_cnn_zoo(cnn_zoo["dir"])
    assert (zoo.n_models, zoo.n_params) == (36, 4970) and zoo.metrics_file.name == "metrics.csv.gz"
    assert zoo.arch("relu") == sx.Architecture.small_cnn_zoo("relu")
    rows = np.array([5, 0, 33, 17])  # relu and tanh nets: arch_activation forces one Architecture
    b = zoo.load(rows, arch_activation="tanh")
    assert b.arch == sx.Architecture.small_cnn_zoo("tanh")
    for k, r in enumerate(rows):
        ws, bs = _tf_to_torch(cnn_zoo["tf"][r], REAL_LAYOUT)
        for l in range(4):
            assert torch.equal(b.weights[l][k], ws[l]) and torch.equal(b.biases[l][k], bs[l])
    assert b.weights[0].shape == (4, 16, 1, 3, 3) and b.weights[3].shape == (4, 10, 16)
    assert b.rows.tolist() == rows.tolist()
    assert b.labels.tolist() == pytest.approx([cnn_zoo["metrics"][r]["test_accuracy"] for r in rows])
    assert b.column("modeldir") == [cnn_zoo["metrics"][r]["modeldir"] for r in rows]
    # metrics values are parsed: ints, floats, strings
    assert zoo.column("step").dtype == np.int64 and zoo.column("test_accuracy").dtype == np.float64
    assert zoo.column("config.activation")[:3] == ["tanh"] * 3
    m = zoo.metrics_rows([7])[0]
    assert isinstance(m["step"], int) and isinstance(m["test_accuracy"], float)
    assert isinstance(m["config.activation"], str) and isinstance(m["config.learning_rate"], float)
    assert m[""] == 7
    with pytest.raises(ValueError, match="mix activations"):
        zoo.load(np.array([0, 3, 4]))


@pytest.mark.parametrize("layout_name", ["real", "mixed"])
def test_cnn_forward_matches_numpy_tf_reference(cnn_zoo, tmp_path, layout_name):
    if layout_name == "real":
        z, layout = cnn_zoo, REAL_LAYOUT
    else:  # 5x5 then 3x3 convs, two dense layers; kernel before bias this time
        layout = [
            ("net/c0/kernel:0", (5, 5, 2, 3)),
            ("net/c0/bias:0", (3,)),
            ("net/c1/kernel:0", (3, 3, 3, 4)),
            ("net/c1/bias:0", (4,)),
            ("net/d0/kernel:0", (4, 6)),
            ("net/d0/bias:0", (6,)),
            ("net/d1/kernel:0", (6, 2)),
            ("net/d1/bias:0", (2,)),
        ]
        z = _make_cnn_zoo(tmp_path / "zoo", layout, n_models=3, steps=(86,), gz=False)
    zoo = pz.open_small_cnn_zoo(z["dir"])
    cin = zoo.arch("relu").layers[0].in_features
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 17, 17, cin))  # NHWC for the reference
    for act in ("relu", "tanh"):
        rows = zoo.select(activation=act, final_step=None)[:4]
        b = zoo.load(rows, dtype=torch.float64)
        assert b.arch.activation == act
        y = functional.forward(b.arch, b.weights, b.biases, torch.from_numpy(x).permute(0, 3, 1, 2).contiguous())
        ref = np.stack([_numpy_cnn_forward(z["tf"][r], layout, act, x) for r in rows])
        np.testing.assert_allclose(y.numpy(), ref, rtol=1e-10, atol=1e-10)


def test_cnn_public_split_pipeline(cnn_zoo):
    met, order = cnn_zoo["metrics"], cnn_zoo["order"]
    zoo = pz.open_small_cnn_zoo(cnn_zoo["dir"], order_file=cnn_zoo["order_file"])
    # Independent re-statement of NFN/ScaleGMN: reorder, keep step 86, split, then activation.
    final = [r for r in order if met[r]["step"] == 86]
    half = int(0.5 * len(final))
    tv = list(range(half))
    random.Random(0).shuffle(tv)
    cut = int(0.8 * len(tv))
    ref = {"train": [final[i] for i in tv[:cut]], "val": [final[i] for i in tv[cut:]], "test": final[half:]}
    got = {s: zoo.select(s).tolist() for s in ("train", "val", "test")}
    assert got == ref
    assert sorted(sum(got.values(), [])) == sorted(final)
    assert pz.split_indices_iid(12) == {
        "train": [i for i in tv[:cut]],
        "val": [i for i in tv[cut:]],
        "test": list(range(6, 12)),
    }
    for s in ("train", "test"):
        rel = zoo.select(s, activation="relu").tolist()
        assert rel == [r for r in ref[s] if met[r]["config.activation"] == "relu"]
        b = pz.load_small_cnn_zoo(cnn_zoo["dir"], s, activation="relu", order_file=cnn_zoo["order_file"])
        assert b.rows.tolist() == rel and b.arch.activation == "relu"
        assert set(b.column("step")) == {86}
    # filters: where= (dict with a value or a predicate, or a callable), limit
    he = zoo.select(None, where={"config.w_init": "he_normal"})
    assert all(met[r]["config.w_init"] == "he_normal" and met[r]["step"] == 86 for r in he) and len(he) == 6
    lr = zoo.select(None, final_step=None, where={"config.learning_rate": lambda v: v < 0.05}, limit=5)
    assert len(lr) == 5 and all(met[r]["config.learning_rate"] < 0.05 for r in lr)
    assert zoo.select(None, where=lambda m: m["modeldir"] == "run_4").tolist() == [
        r for r in order if met[r]["modeldir"] == "run_4" and met[r]["step"] == 86
    ]
    # file order without an order file
    plain = pz.open_small_cnn_zoo(cnn_zoo["dir"])
    assert plain.select(None).tolist() == [r for r in range(36) if met[r]["step"] == 86]
    # streaming equals one load
    rows = zoo.select("train", activation="relu")
    full = zoo.load(rows)
    parts = list(zoo.iter(rows, chunk_size=2))
    assert [len(p) for p in parts] == [2] * (len(rows) // 2) + ([1] if len(rows) % 2 else [])
    for l in range(4):
        assert torch.equal(torch.cat([p.weights[l] for p in parts]), full.weights[l])


def test_cnn_errors_name_the_file(cnn_zoo, tmp_path):
    src = cnn_zoo["dir"]

    def fresh(name):
        d = tmp_path / name
        d.mkdir()
        for f in ("weights.npy", "metrics.csv.gz", "layout.csv"):
            (d / f).write_bytes((src / f).read_bytes())
        return d

    d = fresh("truncated")
    raw = (d / "weights.npy").read_bytes()
    (d / "weights.npy").write_bytes(raw[: len(raw) - 1000])
    with pytest.raises(pz.ZooFormatError, match=r"truncated/weights\.npy: cannot memory-map"):
        pz.open_small_cnn_zoo(d)

    d = fresh("short_rows")
    np.save(d / "weights.npy", cnn_zoo["data"][:, :4969])
    with pytest.raises(pz.ZooFormatError, match=r"weights\.npy: rows have 4969 values but .*layout\.csv lays out 4970"):
        pz.open_small_cnn_zoo(d)

    d = fresh("objects")
    np.save(d / "weights.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(pz.ZooFormatError, match=r"objects/weights\.npy"):
        pz.open_small_cnn_zoo(d)

    d = fresh("bad_shape")
    _write_layout(d / "layout.csv", REAL_LAYOUT, shape_override={"sequential/conv2d_1/kernel:0": (3, 3, 16, 8)})
    with pytest.raises(pz.ZooFormatError, match=r"bad_shape/layout\.csv:5: 'sequential/conv2d_1/kernel:0' has shape"):
        pz.open_small_cnn_zoo(d)

    d = fresh("no_shape_col")
    _write_layout(d / "layout.csv", REAL_LAYOUT, drop_col="shape")
    with pytest.raises(pz.ZooFormatError, match=r"layout\.csv: missing column\(s\) \['shape'\]"):
        pz.open_small_cnn_zoo(d)

    # layout that does not describe a network: dense bias of the wrong width (checked directly)
    bad = [
        pz.LayoutEntry(n, 0, math.prod(sh), sh)
        for n, sh in [
            ("s/conv2d/kernel:0", (3, 3, 1, 4)),
            ("s/conv2d/bias:0", (4,)),
            ("s/dense/kernel:0", (4, 2)),
            ("s/dense/bias:0", (3,)),
        ]
    ]
    with pytest.raises(pz.ZooFormatError, match=r"lay\.csv: bias 's/dense/bias:0' has shape \(3,\)"):
        pz.arch_from_layout(bad, source="lay.csv")
    bad[2] = pz.LayoutEntry("s/dense/kernel:0", 0, 6, (3, 2))
    bad[3] = pz.LayoutEntry("s/dense/bias:0", 0, 2, (2,))
    with pytest.raises(pz.ZooFormatError, match=r"lay\.csv: layout does not describe a supported network"):
        pz.arch_from_layout(bad, source="lay.csv")

    d = fresh("no_step")
    cols = [c for c in METRIC_COLS if c != "step"]
    _write_metrics(d / "metrics.csv.gz", cnn_zoo["metrics"], cols=cols)
    zoo = pz.open_small_cnn_zoo(d)
    with pytest.raises(pz.ZooFormatError, match=r"no_step/metrics\.csv\.gz: missing column 'step'"):
        zoo.select("train")
    assert len(zoo.select(None, final_step=None)) == 36

    d = fresh("no_act")
    _write_metrics(d / "metrics.csv.gz", cnn_zoo["metrics"], cols=[c for c in METRIC_COLS if c != "config.activation"])
    zoo = pz.open_small_cnn_zoo(d)
    with pytest.raises(pz.ZooFormatError, match=r"missing column 'config.activation'"):
        zoo.select("train", activation="relu")
    assert zoo.load([0, 1], arch_activation="tanh").arch.activation == "tanh"

    d = fresh("few_rows")
    _write_metrics(d / "metrics.csv.gz", cnn_zoo["metrics"][:30])
    with pytest.raises(pz.ZooFormatError, match=r"few_rows/metrics\.csv\.gz: has 30 rows but .*36 models"):
        pz.open_small_cnn_zoo(d)

    d = fresh("nonfinite")
    data = cnn_zoo["data"].copy()
    data[4, 100] = np.nan
    np.save(d / "weights.npy", data)
    zoo = pz.open_small_cnn_zoo(d)
    with pytest.raises(pz.ZooFormatError, match=r"nonfinite/weights\.npy: non-finite weights in row\(s\) \[4\]"):
        zoo.load([5, 4])
    assert torch.isnan(zoo.load([5, 4], check_finite=False).weights[0]).any()

    d = fresh("missing")
    (d / "metrics.csv.gz").unlink()
    with pytest.raises(pz.ZooFormatError, match="no metrics.csv.gz or metrics.csv"):
        pz.open_small_cnn_zoo(d)
    with pytest.raises(pz.ZooFormatError, match=r"nope\.npy: weights file not found"):
        pz.open_small_cnn_zoo(src, weights="nope.npy")
    bad_order = tmp_path / "order.csv"
    bad_order.write_text("0\n36\n")
    with pytest.raises(pz.ZooFormatError, match=r"order\.csv: row indices must be in \[0, 36\)"):
        pz.open_small_cnn_zoo(src, order_file=bad_order)


# ==============================================================================================
# conversions
# ==============================================================================================
def _random_batch(arch, B, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    ws = [torch.randn((B,) + s.weight_shape, generator=g, dtype=dtype) for s in arch.layers]
    bs = [torch.randn(B, s.out_features, generator=g, dtype=dtype) for s in arch.layers]
    return ws, bs


def test_to_nfn_shapes(inr_zoo):
    b = pz.load_mnist_inrs(inr_zoo["root"], "test")
    nw, nb = b.to_nfn()
    assert [tuple(w.shape) for w in nw] == [(3, 1, 32, 2), (3, 1, 32, 32), (3, 1, 1, 32)]
    assert [tuple(x.shape) for x in nb] == [(3, 1, 32), (3, 1, 32), (3, 1, 1)]
    ws, bs = adapters.from_nfn((nw, nb))
    assert all(torch.equal(a, c) for a, c in zip(ws, b.weights))


def test_pyg_batch_inr_structure_and_order(inr_zoo):
    pyg = pytest.importorskip("torch_geometric")
    b = pz.load_mnist_inrs(inr_zoo["root"], "train")
    B, N, E = len(b), 67, 1120
    g = b.to_pyg()
    assert g.num_graphs == B and isinstance(g, pyg.data.Batch)
    assert g.x.shape == (B * N, 1) and g.edge_attr.shape == (B * E, 1) and g.edge_index.shape == (2, B * E)
    assert g.y.tolist() == b.labels.tolist()
    # documented order: node features = [input_value x2, b0, b1, b2]; edges receiver-major per layer
    assert torch.equal(g.x.view(B, N), torch.cat([torch.ones(B, 2)] + b.biases, 1))
    assert torch.equal(g.edge_attr.view(B, E), torch.cat([w.reshape(B, -1) for w in b.weights], 1))
    offs = [0, 2, 34, 66]
    ei = g.edge_index.view(2, B, E)
    e = 0
    for l, w in enumerate(b.weights):
        o, i = w.shape[1:]
        recv = torch.arange(o).repeat_interleave(i) + offs[l + 1]
        send = torch.arange(i).repeat(o) + offs[l]
        for k in range(B):
            assert torch.equal(ei[0, k, e : e + o * i], send + k * N) and torch.equal(
                ei[1, k, e : e + o * i], recv + k * N
            )
        e += o * i
    assert torch.equal(g.batch, torch.arange(B).repeat_interleave(N))
    assert g.mask_hidden.shape == (B * N, 1) and g.mask_hidden.dtype == torch.bool
    assert g.mask_hidden.view(B, N)[0].tolist() == [False] * 2 + [True] * 64 + [False]
    assert g.mask_first_layer.view(B, N)[0].tolist() == [True] * 2 + [False] * 65
    assert g.node_type.view(B, N)[0].tolist() == [0, 1] + [2] * 32 + [3] * 32 + [4]
    # identical to PyG's own collation of per-network Data objects, and separable again
    s = sx.graph_structure(b.arch)
    datas = [
        pyg.data.Data(
            x=g.x.view(B, N, 1)[k],
            edge_index=s.edge_index,
            edge_attr=g.edge_attr.view(B, E, 1)[k],
            node_type=s.node_type,
            edge_type=s.edge_type,
            mask_hidden=s.hidden_mask.view(N, 1),
            mask_first_layer=s.input_mask.view(N, 1),
            y=b.labels[k : k + 1],
        )
        for k in range(B)
    ]
    ref = pyg.data.Batch.from_data_list(datas)
    assert sorted(ref.keys()) == sorted(g.keys())
    for key in ref.keys():
        assert torch.equal(ref[key], g[key]), key
    for key in ref._slice_dict:
        assert torch.equal(ref._slice_dict[key], g._slice_dict[key]), key
        assert torch.equal(ref._inc_dict[key], g._inc_dict[key]), key
    for k, d in enumerate(g.to_data_list()):
        for key in datas[k].keys():
            assert torch.equal(d[key], datas[k][key]), key
    loader = pyg.loader.DataLoader(g.to_data_list(), batch_size=4)
    assert next(iter(loader)).num_graphs == 4


def test_pyg_batch_cnn_and_sender_order(cnn_zoo):
    pytest.importorskip("torch_geometric")
    zoo = pz.open_small_cnn_zoo(cnn_zoo["dir"])
    b = zoo.load(zoo.select("test", activation="relu"))
    B, N, E = len(b), 59, 688
    g = b.to_pyg()
    assert g.num_graphs == B and g.x.shape == (B * N, 1) and g.edge_attr.shape == (B * E, 9)
    assert g.y.dtype == torch.float32 and torch.equal(g.y, b.labels)
    ea = g.edge_attr.view(B, E, 9)
    assert torch.equal(ea[:, :16], b.weights[0].reshape(B, 16, 9))  # conv (o, i) -> flattened 3x3 kernel
    assert torch.equal(ea[:, 528:, 4], b.weights[3].reshape(B, 160))  # dense weights in the centre slot
    assert not ea[:, 528:, [0, 1, 2, 3, 5, 6, 7, 8]].any()
    # the public code's CNN graphs: input nodes 0, dense weight in slot 0, sender-major edges
    gp = pz.to_pyg_batch(
        b.arch, b.weights, b.biases, b.labels, input_value=0.0, dense_centre=False, edge_order="sender"
    )
    assert not gp.x.view(B, N)[:, 0].any()
    ep = gp.edge_attr.view(B, E, 9)
    assert torch.equal(ep[:, 528:, 0], b.weights[3].transpose(1, 2).reshape(B, 160))
    assert torch.equal(ep[:, 16:272], b.weights[1].transpose(1, 2).reshape(B, 256, 9))
    eis = gp.edge_index[:, :E]
    assert (eis[0].diff() >= 0).all()  # sorted by sender
    assert torch.equal(
        torch.sort(eis[0] * N + eis[1]).values, torch.sort(g.edge_index[0, :E] * N + g.edge_index[1, :E]).values
    )
    assert gp.get_example(B - 1).edge_index.max() < N
    with pytest.raises(ValueError, match="labels must have a leading axis of length"):
        pz.to_pyg_batch(b.arch, b.weights, b.biases, torch.zeros(B + 1))


def test_pyg_missing_gives_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch_geometric", None)
    monkeypatch.setitem(sys.modules, "torch_geometric.data", None)
    ws, bs = _random_batch(SIREN, 2)
    with pytest.raises(ImportError, match="pip install torch_geometric"):
        pz.to_pyg_batch(SIREN, ws, bs)


# ==============================================================================================
# Canonicalisation of published-zoo networks (merging on a user's own copy of the zoos)
# ==============================================================================================
def _check_canonicalize(batch, images=None, labels=None):
    """Encode + decode networks as read from published files: one canonical network per orbit
    (float64, random group element of the architecture's symmetry) and a reconstruction score."""
    from scalegmn_ext.models import ScaleGMNAutoencoder, ScaleGMNConfig
    from scalegmn_ext.tasks.merge.autoencoder import canonicalize, reconstruction_quality
    from scalegmn_ext.weightspace import symmetry

    torch.manual_seed(0)
    ws, bs = [w.double() for w in batch.weights], [b.double() for b in batch.biases]
    ae = ScaleGMNAutoencoder(batch.arch, ScaleGMNConfig(d_hid=8, num_layers=2)).double()
    cw, cb = canonicalize(ae, ws, bs, batch_size=3)  # several batches
    assert [tuple(w.shape) for w in cw] == [tuple(w.shape) for w in ws]
    assert [tuple(b.shape) for b in cb] == [tuple(b.shape) for b in bs]
    g = symmetry.random_group_element(batch.arch, len(batch), generator=torch.Generator().manual_seed(1))
    mw, mb = symmetry.apply_group_element(batch.arch, ws, bs, g)
    assert max(float((w - v).abs().max()) for w, v in zip(ws, mw)) > 1e-3  # the member really moved
    dw, db = canonicalize(ae, mw, mb)
    for x, y in zip(cw + cb, dw + db):
        assert torch.isfinite(x).all()
        torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-12)
    return reconstruction_quality(batch.arch, (ws, bs), (cw, cb), images=images, labels=labels)


def test_canonicalize_published_mnist_inrs(inr_zoo):
    q = _check_canonicalize(pz.load_mnist_inrs(inr_zoo["root"], "train"))
    assert math.isfinite(q["psnr_mean"]) and q["psnr_min"] <= q["psnr_mean"]


def test_canonicalize_published_small_cnn_zoo(cnn_zoo):
    zoo = pz.open_small_cnn_zoo(cnn_zoo["dir"])
    b = zoo.load(np.arange(4), arch_activation="tanh")
    x = torch.randn(8, 1, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    q = _check_canonicalize(b, images=x, labels=torch.arange(8) % 10)
    assert 0.0 <= q["accuracy_decoded"] <= 1.0 and 0.0 <= q["accuracy_original"] <= 1.0
