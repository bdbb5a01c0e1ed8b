"""The MLP zoo (``scalegmn-ext zoo mlp``): dense classifiers on the CNN zoo's images, same format."""

from __future__ import annotations

import pytest
import torch

from scalegmn_ext.cli import main
from scalegmn_ext.tasks.zoo import Zoo
from scalegmn_ext.tasks.zoo.cnn import _forward_train, classifier_zoo_data, evaluate
from scalegmn_ext.tasks.zoo.mlp import flatten_images, generate_mlp_zoo, mlp_architecture
from scalegmn_ext.testing import random_weights
from scalegmn_ext.weightspace.functional import forward

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py

MLP_KW = dict(
    n=6,
    source="mnist",
    hidden=(8, 8),
    image_size=7,
    epochs=2,
    train_size=800,
    test_size=96,
    ranges={"train_frac": (0.8, 1.0), "lr": (5e-3, 2e-2), "init_std": (0.05, 0.3)},
    eval_train_size=40,
    batch_size=16,
    chunk=3,
    seed=3,
)


class Interrupt(Exception):
    pass


def test_mlp_zoo_contents_resume_and_reproduced_accuracy(tmp_path):
    out = tmp_path / "mlp"
    with pytest.raises(Interrupt):  # crash after the first chunk, then resume
        generate_mlp_zoo(out, on_chunk=lambda k, n: (_ for _ in ()).throw(Interrupt()), **MLP_KW)
    zoo = generate_mlp_zoo(out, **MLP_KW)
    fresh = generate_mlp_zoo(tmp_path / "fresh", **MLP_KW)
    assert zoo.kind == "mlp" and len(zoo) == 6 * 3  # early checkpoints 0, 1, 2
    assert sorted(set(zoo.column("epoch"))) == [0, 1, 2]
    for a, b in zip(*(z.load()[0] + z.load()[1] for z in (zoo, fresh))):
        assert torch.equal(a, b)  # resumed == uninterrupted
    for act, arch in zoo.archs.items():
        assert arch == mlp_architecture(act, (8, 8), 7) and arch.layout == (49, 8, 8, 10)
    assert len(set(zoo.column("lr"))) == 6  # hyper-parameters vary per network
    x, y = classifier_zoo_data(zoo, "test")
    assert x.shape == (96, 49) and y.shape == (96,)
    xp, _ = classifier_zoo_data(zoo, "pool")
    assert xp.shape == (800, 49)
    for act in zoo.activations:
        view = zoo.where(activation=act)
        acc, loss = evaluate(view.arch, *view.load(), x, y)
        assert torch.allclose(acc, torch.tensor(view.column("test_acc"), dtype=torch.float64), atol=1e-9)
    # the 2nd epoch improves on the initialisation (real training happened)
    ep, acc = zoo.column("epoch"), zoo.column("test_acc")
    assert acc[ep == 2].mean() > acc[ep == 0].mean() + 0.1


def test_mlp_training_forward_and_input_checks():
    arch = mlp_architecture("tanh", (5,), 4)
    ws, bs = random_weights(arch, 3, generator=torch.Generator().manual_seed(0))
    x = torch.rand(3, 7, 1, 28, 28)
    xf = flatten_images(x.flatten(0, 1), 4).view(3, 7, 16)
    assert torch.allclose(_forward_train(arch, ws, bs, xf, None, None), forward(arch, ws, bs, xf), atol=1e-6)
    assert torch.allclose(xf[0, 0, 0], x[0, 0, 0, :7, :7].mean())  # pooled, row-major
    with pytest.raises(ValueError, match="image_size must divide 28"):
        mlp_architecture("relu", (8,), 5)
    with pytest.raises(ValueError, match="hidden"):
        mlp_architecture("relu", (), 7)
    with pytest.raises(ValueError, match=r"images must be \[N, 1, 28, 28\]"):
        flatten_images(torch.rand(2, 28, 28), 7)


def test_cli_zoo_mlp(tmp_path, capsys):
    out = tmp_path / "z"
    args = ["zoo", "mlp", "--n", "2", "--out", str(out), "--source", "mnist", "--train-size", "64"]
    args += ["--test-size", "32", "--eval-train-size", "16", "--batch-size", "16", "--hidden", "4"]
    assert main(args + ["--image-size", "7", "--epochs", "1", "--quiet", "--workers", "1"]) == 0
    text = capsys.readouterr().out
    assert "MLP zoo" in text and "accuracy_hist.png" in text
    assert Zoo(out).archs["relu" if "relu" in Zoo(out).activations else "tanh"].layout == (49, 4, 10)
    assert main(args + ["--image-size", "5", "--quiet"]) == 2  # bad size: clear error, exit 2
    assert "image_size must divide 28" in capsys.readouterr().err
