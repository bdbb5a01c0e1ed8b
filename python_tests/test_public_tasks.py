"""The three public ScaleGMN tasks end to end (``scalegmn-ext task inr-cls|cnn-gen|inr-edit``) on
tiny real zoos: CLI runs, resume equals an uninterrupted run, metrics against direct
computations, the public configuration path, and bad input."""

from __future__ import annotations

import csv
import gzip
import json
import math
import os

import numpy as np
import pytest
import torch
from scipy.stats import kendalltau

from scalegmn_ext.cli import main
from scalegmn_ext.tasks.public_tasks import (
    build_task_model,
    cnn_gen_data,
    dilate,
    inr_cls_data,
    inr_edit_data,
    layer_scales,
    load_task_model,
    predict,
    score,
)
from scalegmn_ext.tasks.train import NetworkSet
from scalegmn_ext.tasks.zoo import generate_cnn_zoo, generate_inr_zoo
from scalegmn_ext.weightspace import symmetry

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py

FIX = os.path.join(os.path.dirname(__file__), "fixtures", "public_scalegmn")
with open(os.path.join(FIX, "public_configs.json")) as _f:
    PUBLIC = {k: v["config"] for k, v in json.load(_f)["configs"].items()}  # every public config, parsed (MIT)
CNN_KW = dict(n=12, source="mnist", epochs=2, train_size=320, test_size=64, eval_train_size=16, batch_size=16, seed=7)
CNN_KW["ranges"] = {"train_frac": (0.8, 1.0), "lr": (3e-3, 1e-2), "init_std": (0.05, 0.3)}


@pytest.fixture(scope="module")
def zoos(tmp_path_factory):
    root = tmp_path_factory.mktemp("public_tasks")
    inr = generate_inr_zoo(root / "inr", 40, steps=10, source="mnist", chunk=40)
    cnn = generate_cnn_zoo(root / "cnn", chunk=12, split_fractions=(0.5, 0.25, 0.25), **CNN_KW)
    return {"inr": inr, "cnn": cnn, "root": root}


def _cli(*args) -> int:
    return main(["task", *map(str, args), "--tiny", "--quiet", "--threads", "1"])


@pytest.mark.parametrize("task", ["cnn-gen", "inr-edit"])
def test_cli_end_to_end(zoos, tmp_path, task):
    zoo = zoos["cnn" if task == "cnn-gen" else "inr"].path
    extra = ["--activation", "relu"] if task == "cnn-gen" else []
    assert _cli(task, "--zoo", zoo, *extra, "--out", tmp_path / "run") == 0
    res = json.loads((tmp_path / "run" / "results.json").read_text())
    assert (tmp_path / "run" / "results.md").read_text().startswith(f"# {task}")
    # the best-validation model reloads and reproduces the reported test metric
    model, _ = load_task_model(str(tmp_path / "run" / "checkpoint.pt"), weights=str(tmp_path / "run" / "best.pt"))
    data = cnn_gen_data(zoo, activation="relu") if task == "cnn-gen" else inr_edit_data(zoo)
    test = data.splits["test"]
    assert score(task, predict(task, model, test, data.arch), test.targets) == res["metrics"]["best_val"]["test"]
    # a rerun with other settings is refused
    assert _cli(task, "--zoo", zoo, *extra, "--out", tmp_path / "run", "--resume", "--lr", "0.5") == 2


def test_cli_resume_equals_uninterrupted(zoos, tmp_path):
    """inr-cls with a public user's configuration (its structure at a tiny width; dropout 0.2, so
    the RNG state must travel with the checkpoint)."""
    cfg = os.path.join(FIX, "configs", "mnist_cls", "scalegmn.yml")
    common = ["inr-cls", "--zoo", zoos["inr"].path, "--public-config", cfg, "--warmup", "1", "--val-every", "2"]
    common += ["--checkpoint-every", "1"]
    assert _cli(*common, "--out", tmp_path / "full") == 0
    assert _cli(*common, "--out", tmp_path / "part", "--stop-after", "3") == 0
    assert not (tmp_path / "part" / "results.json").exists()  # not finished yet
    assert _cli(*common, "--out", tmp_path / "part", "--resume") == 0
    a = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=False)
    b = torch.load(tmp_path / "part" / "checkpoint.pt", weights_only=False)
    assert a["step"] == b["step"] == 4 and a["config"]["dropout"] == 0.2 and a["config"]["readout"] == "last_layer"
    for k, v in a["model"].items():
        assert torch.equal(v, b["model"][k]), k
    ra = json.loads((tmp_path / "full" / "results.json").read_text())
    rb = json.loads((tmp_path / "part" / "results.json").read_text())
    assert ra["metrics"] == rb["metrics"] and ra["history"][-1]["val"] == rb["history"][-1]["val"]


def test_metrics_match_direct_computation():
    g = torch.Generator().manual_seed(0)
    true, pred = torch.rand(50, generator=g), torch.rand(50, generator=g)
    m = score("cnn-gen", pred, true)
    assert m["kendall_tau"] == pytest.approx(kendalltau(true.numpy(), pred.numpy()).statistic, abs=1e-12)
    r2 = 1 - ((true - pred) ** 2).sum() / ((true - true.mean()) ** 2).sum()
    assert m["r2"] == pytest.approx(float(r2), rel=1e-6)
    assert math.isnan(score("cnn-gen", torch.ones(5), torch.rand(5))["kendall_tau"])  # constant prediction
    logits, labels = torch.randn(40, 10, generator=g), torch.randint(0, 10, (40,), generator=g)
    direct = sum(int(logits[i].argmax()) == int(labels[i]) for i in range(40)) / 40
    assert score("inr-cls", logits, labels)["accuracy"] == pytest.approx(direct)
    img, tgt = torch.rand(3, 28, 28, generator=g), torch.rand(3, 28, 28, generator=g)
    assert score("inr-edit", img, tgt)["mse"] == pytest.approx(
        float(((img.double() - tgt.double()) ** 2).mean()), rel=1e-12
    )


def test_dilation_is_the_3x3_max_filter():
    x = torch.zeros(1, 7, 7)
    x[0, 3, 3], x[0, 0, 6] = 1.0, 0.5
    d = dilate(x)[0]
    ref = np.zeros((7, 7))
    for i in range(7):
        for j in range(7):
            ref[i, j] = x[0, max(0, i - 1) : i + 2, max(0, j - 1) : j + 2].max()
    assert np.array_equal(d.numpy(), ref)


def test_edit_targets_are_dilated_source_digits(zoos):
    from scalegmn_ext.tasks.data import load_mnist_5k

    d = inr_edit_data(zoos["inr"].path)
    z = zoos["inr"]
    idx = z.split("test")
    imgs = load_mnist_5k()[0][torch.from_numpy(z.column("image_index")[idx.numpy()])]
    assert torch.equal(d.splits["test"].targets, dilate(imgs.float()))
    assert inr_edit_data(z.path, target="render").splits["test"].targets.shape == (len(idx), 28, 28)


def test_public_config_model_and_layer_normalisation_keep_symmetry(zoos):
    data = inr_cls_data(zoos["inr"].path)
    cfg = PUBLIC["mnist_cls/scalegmn.yml"]
    ws_, bs_ = layer_scales(data.splits["train"])
    model = build_task_model("inr-cls", data.arch, public=cfg, d_hid=16, num_layers=2, w_scale=ws_, b_scale=bs_)
    assert model.net.config.readout == "last_layer" and model.net.config.d_hid == 16  # the public structure
    model = model.double().eval()
    ws, bs = data.splits["test"].take(torch.arange(4), dtype=torch.float64)
    w2, b2, _ = symmetry.transform(data.arch, ws, bs, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(model(ws, bs), model(w2, b2), rtol=1e-9, atol=1e-12)
    head = build_task_model("inr-edit", data.arch, d_hid=8, num_layers=1, w_scale=ws_, b_scale=bs_).double().eval()
    for p in head.net.parameters():  # a visible edit
        torch.nn.init.normal_(p, std=0.3) if p.dim() > 1 else None
    out = head(ws, bs)
    out2 = head(w2, b2)
    back = symmetry.transform(data.arch, w2, b2, generator=torch.Generator().manual_seed(1))
    assert back is not None and not torch.allclose(out[0][1], ws[1])  # the edit changes the weights
    from scalegmn_ext.weightspace import functional

    x = torch.rand(16, 2, dtype=torch.float64) * 2 - 1
    y1 = functional.forward(data.arch, *out, x)
    y2 = functional.forward(data.arch, *out2, x)
    assert torch.allclose(y1, y2, rtol=1e-8, atol=1e-10)  # edits of one orbit compute the same function


def test_bad_input_is_named(zoos, tmp_path, capsys):
    inr, cnn = zoos["inr"].path, zoos["cnn"].path
    with pytest.raises(ValueError, match="needs an INR zoo"):
        inr_cls_data(cnn)
    with pytest.raises(ValueError, match="classifier zoo"):
        cnn_gen_data(inr)
    with pytest.raises(ValueError, match="mixes activations"):
        cnn_gen_data(cnn)
    d = inr_cls_data(inr)
    with pytest.raises(ValueError, match="targets must be a tensor with one row per network"):
        NetworkSet(d.splits["test"].weights, d.splits["test"].biases, torch.zeros(1))
    # zoo architecture vs model: a CNN configuration on INRs, a ReLU configuration on tanh CNNs
    with pytest.raises(ValueError, match="layer_layout"):
        build_task_model("inr-cls", d.arch, public=PUBLIC["cifar10/scalegmn_relu.yml"])
    tanh = zoos["cnn"].where(activation="tanh").arch
    with pytest.raises(ValueError, match="symmetry"):
        build_task_model("cnn-gen", tanh, public=PUBLIC["cifar10/scalegmn_relu.yml"])
    with pytest.raises(ValueError, match="is an invariant model; the inr-edit task needs ScaleGMN_equiv"):
        build_task_model("inr-edit", d.arch, public=PUBLIC["mnist_cls/scalegmn.yml"])
    with pytest.raises(ValueError, match="published INR files"):
        inr_edit_data(published_root=tmp_path, target="source")
    assert _cli("cnn-gen", "--zoo", inr, "--out", tmp_path / "x") == 2
    assert "classifier zoo" in capsys.readouterr().err


def test_published_small_cnn_zoo_and_missing_accuracies(tmp_path):
    from test_published_zoos import METRIC_COLS, _make_cnn_zoo, _write_metrics

    _make_cnn_zoo(tmp_path / "z", n_models=40, steps=(86,))
    d = cnn_gen_data(small_cnn_zoo=tmp_path / "z", activation="relu")
    assert d.arch.activation == "relu" and all(len(s) > 0 for s in d.splits.values())
    assert d.splits["train"].targets.dtype == torch.float32
    model = build_task_model("cnn-gen", d.arch, public=PUBLIC["cifar10/scalegmn_relu.yml"], d_hid=8, num_layers=1)
    assert predict("cnn-gen", model, d.splits["test"], d.arch).shape == (len(d.splits["test"]),)
    _make_cnn_zoo(tmp_path / "nolabel", n_models=40, steps=(86,))
    with gzip.open(tmp_path / "nolabel" / "metrics.csv.gz", "rt") as f:  # rewritten without test_accuracy
        rows = list(csv.DictReader(f))
    _write_metrics(tmp_path / "nolabel" / "metrics.csv.gz", rows, cols=[c for c in METRIC_COLS if c != "test_accuracy"])
    with pytest.raises(ValueError, match="test_accuracy"):
        cnn_gen_data(small_cnn_zoo=tmp_path / "nolabel", activation="relu")
