"""Shared fixtures: real trained networks from the package's own zoo recipes (cached per session)."""

from __future__ import annotations

import pytest
import torch

from scalegmn_ext.tasks import fit
from scalegmn_ext.tasks.data import load_mnist_5k
from scalegmn_ext.weightspace.architecture import Architecture


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module of tiny workloads: as fast, and no stalls when other
    processes share the (2-core) machine. Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def real_nets() -> dict:
    """``{name: (arch, weights, biases, input_value)}`` for SIRENs fitted to real MNIST digits and
    ReLU / tanh Small-CNN-Zoo CNNs trained on real digits (a few hundred steps: trained weights,
    not random ones), float64. Built once per test session (~10 s on 2 cores)."""
    g = torch.Generator().manual_seed(1234)
    images, labels = load_mnist_5k()
    nets = {}
    arch = Architecture.siren()
    ws, bs, _, _ = fit.fit_inrs(images[:4], arch, steps=150, generator=g)
    nets["siren"] = (arch, [w.double() for w in ws], [b.double() for b in bs], 1.0)
    X = images[:1024].unsqueeze(1)
    for act in ("relu", "tanh"):
        arch = Architecture.small_cnn_zoo(act)
        ws, bs = fit.train_cnns(arch, X, labels[:1024], 3, epochs=1, generator=g)
        nets[f"cnn_{act}"] = (arch, [w.double() for w in ws], [b.double() for b in bs], 0.0)
    return nets
