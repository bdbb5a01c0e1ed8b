"""Amortizer additions: the layer-normalised input (exact equivariance in float64, checkpoint
round trip, refused for the scale group), per-network learning rates in the batched baselines,
and the learning-rate tuning on validation networks (with the CLI end to end)."""

from __future__ import annotations

import json

import pytest
import torch

from scalegmn_ext.cli import main
from scalegmn_ext.tasks.amortize import build_amortizer, finetune, load_amortizer, train_amortizer, tune_lr
from scalegmn_ext.tasks.amortize.model import LayerNormalizedAmortizer
from scalegmn_ext.tasks.train import TrainConfig
from scalegmn_ext.tasks.zoo.cnn import classifier_zoo_data, generate_cnn_zoo
from scalegmn_ext.tasks.zoo.mlp import generate_mlp_zoo, mlp_architecture
from scalegmn_ext.weightspace.functional import forward
from scalegmn_ext.weightspace.symmetry import apply_group_element, random_group_element

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py

ZOO_KW = dict(n=8, source="mnist", epochs=2, train_size=320, test_size=64, eval_train_size=16, batch_size=16, seed=11)
ZOO_KW["ranges"] = {"train_frac": (0.8, 1.0), "lr": (3e-3, 1e-2), "init_std": (1e-3, 0.3)}


@pytest.fixture(scope="module")
def zoos(tmp_path_factory):
    root = tmp_path_factory.mktemp("amortize_norm")
    cnn = generate_cnn_zoo(root / "cnn", chunk=8, activations=("tanh",), **ZOO_KW)
    mlp = generate_mlp_zoo(
        root / "mlp",
        hidden=(6, 5),
        image_size=7,
        chunk=8,
        split_fractions=(0.5, 0.25, 0.25),
        activations=("tanh",),
        **ZOO_KW,
    )
    return {"cnn": cnn, "mlp": mlp}


def _rel(a, b):
    return max(float((x - y).abs().max() / y.abs().max().clamp_min(1e-300)) for x, y in zip(a, b))


@pytest.mark.parametrize("kind", ["cnn", "mlp"])
@pytest.mark.parametrize("symmetric", [True, False])
def test_layer_normalised_amortizer_is_exactly_equivariant_float64(zoos, kind, symmetric):
    view = zoos[kind].where(activation="tanh", epoch=2)
    arch = view.arch
    ws, bs = view.load(dtype=torch.float64)
    ws[1] = ws[1] * torch.logspace(-3, 0, ws[1].shape[0], dtype=torch.float64).view(-1, *[1] * (ws[1].dim() - 1))
    torch.manual_seed(0)
    model = build_amortizer(arch, symmetric=symmetric, d_hid=8, num_layers=2, input_norm="layer").double()
    assert isinstance(model, LayerNormalizedAmortizer)
    with torch.no_grad():
        model.weight_scale.fill_(0.7)
        model.bias_scale.fill_(0.7)
    g = random_group_element(  # permutation + sign flips; the broken model: permutations only
        arch,
        ws[0].shape[0],
        symmetry=None if symmetric else "permutation",
        generator=torch.Generator().manual_seed(1),
        dtype=torch.float64,
    )
    tw, tb = apply_group_element(arch, ws, bs, g)
    with torch.no_grad():
        nw, nb = model(ws, bs)
        ntw, ntb = model(tw, tb)
        one_w, one_b = model([w[2] for w in ws], [b[2] for b in bs])  # one network, unbatched
    ew, eb = apply_group_element(arch, nw, nb, g)
    assert _rel(ntw + ntb, ew + eb) < 1e-10  # f(g.theta) = g.f(theta)
    assert _rel([w[2] for w in nw] + [b[2] for b in nb], one_w + one_b) < 1e-12
    # the update does not shrink with the input: a network with 1e-3-sized weights still moves
    small = (nw[1] - ws[1]).flatten(1).abs().mean(1)
    assert float(small[0]) > 0.05 * float(small[-1])
    x = classifier_zoo_data(zoos[kind], "test")[0][:16].double()
    y0, y1 = forward(arch, nw, nb, x), forward(arch, ntw, ntb, x)
    assert float((y0 - y1).abs().max() / y0.abs().max()) < 1e-10


def test_layer_norm_refused_for_scale_group_and_unknown_norm(zoos):
    relu = mlp_architecture("relu", (6, 5), 7)
    with pytest.raises(ValueError, match="not invariant under the positive per-neuron scaling"):
        build_amortizer(relu, input_norm="layer")
    build_amortizer(relu, symmetric=False, input_norm="layer", d_hid=4, num_layers=1)  # broken: fine
    with pytest.raises(ValueError, match="input_norm must be one of"):
        build_amortizer(relu, input_norm="batch")


def test_layer_norm_checkpoint_round_trip(zoos, tmp_path):
    tc = TrainConfig(steps=2, batch_size=4, warmup=1, val_every=2, checkpoint_every=2)
    model, _ = train_amortizer(
        zoos["mlp"], tmp_path / "r", activation="tanh", d_hid=4, num_layers=1, input_norm="layer",
        train_config=tc, n_images=16, progress=False, log=lambda s: None,
    )  # fmt: skip
    loaded, ck = load_amortizer(str(tmp_path / "r" / "checkpoint.pt"))
    assert isinstance(loaded, LayerNormalizedAmortizer) and ck["input_norm"] == "layer"
    ws, bs = zoos["mlp"].where(activation="tanh", epoch=2).load()
    with torch.no_grad():
        assert _rel(loaded(ws, bs)[0], model(ws, bs)[0]) == 0


def test_per_network_learning_rates_equal_separate_runs_and_tuning_picks_the_best(zoos):
    view = zoos["mlp"].where(activation="tanh", epoch=2)
    arch = view.arch
    ws, bs = view.load(dtype=torch.float64)
    ws, bs = [w[:2] for w in ws], [b[:2] for b in bs]
    x, y = classifier_zoo_data(zoos["mlp"], "pool")
    x, y = x[:64].double(), y[:64]
    for opt, lrs in (("sgd", (0.02, 0.2)), ("adam", (1e-3, 1e-2))):
        both = finetune(
            arch, ws, bs, x, y, optimizer=opt, epochs=2, lr=torch.tensor(lrs, dtype=torch.float64), batch_size=16
        )
        both = both[2][0]
        for i, lr in enumerate(lrs):
            alone = finetune(arch, ws, bs, x, y, optimizer=opt, epochs=2, lr=lr, batch_size=16)[2][0]
            assert _rel([w[i] for w in both], [w[i] for w in alone]) < 1e-12
    with pytest.raises(ValueError, match="lr must be a positive number or 2 positive numbers"):
        finetune(arch, ws, bs, x, y, lr=[0.1, 0.1, 0.1])
    grid = (1e-6, 0.3)  # 1e-6 cannot move anything in 3 epochs: 0.3 must win
    best, table = tune_lr(arch, ws, bs, x, y, optimizer="sgd", epochs=3, grid=grid, batch_size=16)
    assert best == 0.3 and table[0.3]["acc"] > table[1e-6]["acc"]
    best, table = tune_lr(arch, ws, bs, x, y, optimizer="sgd", epochs=3, grid=grid, batch_size=16, lam=1e-2)
    assert best == min(grid, key=lambda v: table[v]["objective"])  # lam > 0: by held-out objective, not accuracy


def test_cli_layer_norm_and_lr_tuning_end_to_end(zoos, tmp_path, capsys):
    zoo = str(zoos["mlp"].path)
    base = ["amortize", "train", "--zoo", zoo, "--activation", "tanh", "--tiny", "--quiet"]
    assert main(base + ["--out", str(tmp_path / "a"), "--input-norm", "layer"]) == 0
    capsys.readouterr()
    out = tmp_path / "ev"
    args = ["amortize", "eval", "--zoo", zoo, "--runs", str(tmp_path / "a"), "--out", str(out), "--quiet"]
    assert main(args + ["--sgd-epochs", "1,2", "--adam-epochs", "none", "--tune-lr", "--tune-networks", "2"]) == 0
    text = capsys.readouterr().out
    assert "layer-normalised input" in text and "SGD lr" in text and "chosen from" in text
    res = json.loads((out / "results.json").read_text())
    t = res["finetune"]["tuning"]["sgd"]
    assert t["networks"] == 2 and t["epochs"] == 2 and res["finetune"]["sgd_lr"] == t["chosen"]
    assert "adam" not in res["finetune"]["tuning"] and res["finetune"]["adam_lr"] is None
