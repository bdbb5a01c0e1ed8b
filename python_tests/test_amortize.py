"""One-shot amortized optimization (tasks/amortize, ``scalegmn-ext amortize``): equivariance of the
residual ScaleGMN on trained zoo networks, the objective against a direct computation, the
baselines against per-network fine-tuning, bad input, the NaN stop, and a tiny end-to-end run."""

from __future__ import annotations

import json
import os

import pytest
import torch
import torch.nn.functional as F

from scalegmn_ext.cli import main
from scalegmn_ext.models import ScaleGMNEquivariant
from scalegmn_ext.tasks.amortize import (
    AmortizedLoss,
    build_amortizer,
    check_lam,
    evaluate_amortizers,
    finetune,
    load_amortizer,
    objective,
    train_amortizer,
)
from scalegmn_ext.tasks.train import TrainConfig, TrainingDiverged
from scalegmn_ext.tasks.zoo.cnn import classifier_zoo_data, generate_cnn_zoo
from scalegmn_ext.tasks.zoo.mlp import generate_mlp_zoo
from scalegmn_ext.weightspace.functional import forward
from scalegmn_ext.weightspace.symmetry import apply_group_element, random_group_element

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py

ZOO_KW = dict(n=8, source="mnist", epochs=2, train_size=320, test_size=64, eval_train_size=16, batch_size=16, seed=7)
ZOO_KW["ranges"] = {"train_frac": (0.8, 1.0), "lr": (3e-3, 1e-2), "init_std": (0.05, 0.3)}
TINY_TC = TrainConfig(steps=4, batch_size=4, warmup=1, val_every=2, checkpoint_every=2)


@pytest.fixture(scope="module")
def zoos(tmp_path_factory):
    root = tmp_path_factory.mktemp("amortize")
    cnn = generate_cnn_zoo(root / "cnn", chunk=8, **ZOO_KW)  # ReLU and tanh Small-CNN-Zoo CNNs
    mlp = generate_mlp_zoo(root / "mlp", hidden=(6, 5), image_size=7, chunk=8, **ZOO_KW)
    return {"cnn": cnn, "mlp": mlp, "root": root}


def _trained(zoo, act):
    view = zoo.where(activation=act, epoch=2)
    ws, bs = view.load(dtype=torch.float64)
    return view.arch, ws, bs


def _rel(a, b):
    return max(float((x - y).abs().max() / y.abs().max().clamp_min(1e-300)) for x, y in zip(a, b))


@pytest.mark.parametrize("kind,act", [("cnn", "tanh"), ("cnn", "relu"), ("mlp", "tanh"), ("mlp", "relu")])
def test_equivariance_on_trained_zoo_networks_float64(zoos, kind, act):
    arch, ws, bs = _trained(zoos[kind], act)
    torch.manual_seed(0)
    model = build_amortizer(arch, d_hid=8, num_layers=2).double()
    with torch.no_grad():  # make f large enough that an equivariance error would show
        model.weight_scale.fill_(0.7)
        model.bias_scale.fill_(0.7)
    g = random_group_element(arch, ws[0].shape[0], generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    tw, tb = apply_group_element(arch, ws, bs, g)  # permutation + sign (tanh) / positive scale (ReLU)
    with torch.no_grad():
        nw, nb = model(ws, bs)
        ntw, ntb = model(tw, tb)
    expect_w, expect_b = apply_group_element(arch, nw, nb, g)
    assert _rel(ntw + ntb, expect_w + expect_b) < 1e-10  # f(g.theta) = g.f(theta)
    assert _rel(nw, ws) > 1e-3  # the update is not the identity
    x = classifier_zoo_data(zoos[kind], "test")[0][:16].double()
    y0, y1 = forward(arch, nw, nb, x), forward(arch, ntw, ntb, x)
    assert float((y0 - y1).abs().max() / y0.abs().max()) < 1e-10  # both updated networks: same function
    # the symmetry-broken ablation is permutation-equivariant only: a sign / scale action breaks it
    broken = build_amortizer(arch, symmetric=False, d_hid=8, num_layers=2).double()
    with torch.no_grad():
        broken.weight_scale.fill_(0.7)
        bw, bb = broken(ws, bs)
        btw, btb = broken(tw, tb)
    assert (
        _rel(btw + btb, list(apply_group_element(arch, bw, bb, g)[0]) + apply_group_element(arch, bw, bb, g)[1]) > 1e-4
    )


def _direct_cnn_logits(ws, bs, x):
    """The Small CNN by hand, one network: conv/stride 2 + tanh x3, global average pool, dense."""
    h = x
    for l in range(3):
        h = torch.tanh(F.conv2d(h, ws[l], bs[l], stride=2))
    return h.mean((2, 3)) @ ws[3].T + bs[3]


def test_objective_matches_a_direct_computation(zoos):
    arch, ws, bs = _trained(zoos["cnn"], "tanh")
    x, y = classifier_zoo_data(zoos["cnn"], "pool")
    x, y = x[:40].double(), y[:40]
    lam = 3e-3
    value, ce, l1 = objective(arch, ws, bs, x, y, lam)
    for b in range(ws[0].shape[0]):
        w1, b1 = [w[b] for w in ws], [v[b] for v in bs]
        logits = _direct_cnn_logits(w1, b1, x)
        ce_b = -torch.log_softmax(logits, -1)[torch.arange(40), y].mean()
        l1_b = sum(t.abs().sum() for t in w1 + b1)
        assert torch.allclose(ce[b], ce_b, rtol=1e-12) and torch.allclose(l1[b], l1_b, rtol=1e-12)
        assert torch.allclose(value[b], ce_b + lam * l1_b, rtol=1e-12)
    # the Trainer's loss = the objective of the networks the model proposes, on its sampled batch
    loss = AmortizedLoss(arch, x, y, lam=lam, n_images=16, seed=3)
    got = loss(lambda w, b: (w, b), ws, bs)  # an identity "model"
    xs, ys = AmortizedLoss(arch, x, y, lam=lam, n_images=16, seed=3).sample()
    assert torch.allclose(got, objective(arch, ws, bs, xs, ys, lam)[0], rtol=1e-12)
    # non-finite updated weights give NaN (so the Trainer stops), only for those networks
    bad = lambda w, b: ([w[0].clone().index_fill_(0, torch.tensor([0]), float("inf"))] + w[1:], b)  # noqa: E731
    nan_mask = torch.isnan(loss(bad, [w[:2] for w in ws], [v[:2] for v in bs]))
    assert nan_mask.tolist() == [True, False]


def test_batched_baseline_equals_finetuning_each_network_alone(zoos):
    arch, ws, bs = _trained(zoos["mlp"], "tanh")
    x, y = classifier_zoo_data(zoos["mlp"], "pool")
    x, y = x[:48].double(), y[:48]
    for opt in ("sgd", "adam"):
        res = finetune(arch, ws, bs, x, y, optimizer=opt, epochs=(1, 2), lr=0.05, batch_size=16, lam=1e-3)
        assert set(res) == {1, 2} and res[2][2] >= res[1][2] > 0  # cumulative seconds per network
        alone = finetune(
            arch,
            [w[1:2] for w in ws],
            [v[1:2] for v in bs],
            x,
            y,
            optimizer=opt,
            epochs=2,
            lr=0.05,
            batch_size=16,
            lam=1e-3,
        )
        assert _rel([w[1:2] for w in res[2][0]], alone[2][0]) < 1e-12
        assert _rel(res[2][0], ws) > 1e-3  # it moved
        v0 = objective(arch, ws, bs, x, y, 1e-3)[0]
        assert (objective(arch, res[2][0], res[2][1], x, y, 1e-3)[0] < v0).float().mean() > 0.5


def test_bad_input_errors(zoos, tmp_path, capsys):
    for bad in (-0.1, float("nan"), float("inf"), "x"):
        with pytest.raises(ValueError, match="lam"):
            check_lam(bad)
    arch, ws, bs = _trained(zoos["cnn"], "tanh")
    x, y = classifier_zoo_data(zoos["cnn"], "pool")
    with pytest.raises(ValueError, match="lam"):
        AmortizedLoss(arch, x, y, lam=-1.0)
    with pytest.raises(ValueError, match="lam"):
        finetune(arch, ws, bs, x[:8].double(), y[:8], lam=-1.0)
    with pytest.raises(ValueError, match=r"images must be \[N, 1, H, W\]"):
        AmortizedLoss(arch, x.flatten(1), y)
    assert main(["amortize", "train", "--zoo", str(zoos["cnn"].path), "--out", str(tmp_path / "r"), "--lam", "-1"]) == 2
    assert "lam" in capsys.readouterr().err
    # a checkpoint used on a zoo of another architecture: the error names both
    run = tmp_path / "tanh-cnn"
    train_amortizer(
        zoos["cnn"],
        run,
        activation="tanh",
        train_config=TINY_TC,
        d_hid=4,
        num_layers=1,
        progress=False,
        log=lambda s: None,
    )
    with pytest.raises(
        ValueError, match=r"trained for networks 1->conv3x3.*tanh.*but the networks of the zoo .*mlp are 49->dense"
    ):
        evaluate_amortizers(zoos["mlp"], [run], tmp_path / "ev", progress=False, log=lambda s: None)
    with pytest.raises(ValueError, match=r"trained for networks 1->conv.*tanh.*given networks are 1->conv.*relu"):
        load_amortizer(str(run / "checkpoint.pt"), zoos["cnn"].archs["relu"])
    with pytest.raises(ValueError, match="mixes activations"):
        train_amortizer(zoos["cnn"], tmp_path / "x", train_config=TINY_TC, progress=False)
    with pytest.raises(ValueError, match="other settings"):  # a rerun with other settings is refused
        train_amortizer(
            zoos["cnn"], run, activation="tanh", lam=0.1, train_config=TINY_TC, d_hid=4, num_layers=1, progress=False
        )


def test_nan_in_updated_weights_stops_and_keeps_the_last_good_checkpoint(zoos, tmp_path, monkeypatch):
    run = tmp_path / "run"
    kw = dict(activation="relu", train_config=TINY_TC, d_hid=4, num_layers=1, progress=False, log=lambda s: None)
    train_amortizer(zoos["cnn"], run, stop_after=2, **kw)  # checkpoint at step 2
    good = torch.load(run / "checkpoint.pt", weights_only=False)
    real = ScaleGMNEquivariant.forward

    def poisoned(self, weights, biases=None):  # the metanetwork starts proposing NaN weights
        w, b = real(self, weights, biases)
        return [t * float("nan") for t in w], b

    monkeypatch.setattr(ScaleGMNEquivariant, "forward", poisoned)
    with pytest.raises(TrainingDiverged, match=r"became nan at step 2.*last good checkpoint is .*checkpoint.pt"):
        train_amortizer(zoos["cnn"], run, resume=True, **kw)
    kept = torch.load(run / "checkpoint.pt", weights_only=False)
    assert kept["step"] == good["step"] == 2
    assert all(torch.equal(kept["model"][k], v) for k, v in good["model"].items())


def test_cli_tiny_end_to_end_with_resume(zoos, tmp_path, capsys):
    zoo = str(zoos["cnn"].path)
    base = ["amortize", "train", "--zoo", zoo, "--activation", "tanh", "--tiny", "--quiet"]
    assert main(base + ["--out", str(tmp_path / "a")]) == 0
    assert main(base + ["--out", str(tmp_path / "b"), "--stop-after", "3"]) == 0  # interrupted ...
    assert torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)["step"] == 3
    assert main(base + ["--out", str(tmp_path / "b"), "--resume"]) == 0  # ... and resumed
    a, b = (torch.load(tmp_path / r / "checkpoint.pt", weights_only=False) for r in "ab")
    assert a["step"] == b["step"] == 6
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])  # resume == uninterrupted
    assert main(base + ["--out", str(tmp_path / "c"), "--broken", "--seed", "1"]) == 0
    capsys.readouterr()
    out = tmp_path / "ev"
    args = ["amortize", "eval", "--zoo", zoo, "--runs", str(tmp_path / "a"), str(tmp_path / "c"), "--out", str(out)]
    assert main(args + ["--sgd-epochs", "1,2", "--adam-epochs", "1", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert (
        "| before fine-tuning |" in text and "ScaleGMN-B (sign), seed 0" in text and "GMN-B (symmetry broken)" in text
    )
    res = json.loads((out / "results.json").read_text())
    methods = [r["method"] for r in res["rows"]]
    assert methods[0] == "before fine-tuning" and {"SGD 1 ep", "SGD 2 ep", "Adam 1 ep"} <= set(methods)
    view = zoos["cnn"].where(activation="tanh", split="test", epoch=lambda e: e > 0)
    assert res["test_networks"] == len(view)
    assert abs(res["rows"][0]["metrics"]["mean_acc"] - 100 * view.column("test_acc").mean()) < 1e-6
    assert all(r["seconds_per_network"] > 0 for r in res["rows"][1:])
    assert os.path.getsize(out / "accuracy_boxplot.png") > 5000 and (out / "results.md").read_text() in text
