"""The merging experiments on trained networks: what must hold whatever the training budget.

With eps = 0 an orbit member is the same function in other coordinates, so: the exact matchers
(sign-extended for sine) and the autoencoder give barriers of 0 up to rounding, naive interpolation
does not; the invariant encoder collapses every orbit to a point while a permutation-only encoder
does not collapse sign orbits."""

from __future__ import annotations

import pytest
import torch

from scalegmn_ext.models import ScaleGMN, ScaleGMNConfig
from scalegmn_ext.models.autoencoder import ScaleGMNAutoencoder
from scalegmn_ext.tasks.data import load_mnist_5k
from scalegmn_ext.tasks.merge.experiments import cnn_pair_experiment, inr_orbit_experiment, methods_for, orbit_collapse

pytestmark = pytest.mark.usefixtures("one_thread")


def _ae(arch, **kw):
    torch.manual_seed(0)
    return ScaleGMNAutoencoder(
        arch, ScaleGMNConfig(d_hid=16, num_layers=2, dropout=0.0, **kw), decoder="neuron"
    ).double()


def test_inr_orbit_experiment_exact_methods_have_no_barrier(real_nets):
    arch, ws, bs, _ = real_nets["siren"]
    images = load_mnist_5k()[0][: ws[0].shape[0]].double()  # the digits these SIRENs were fitted to (conftest)
    r = inr_orbit_experiment(arch, _ae(arch), (ws, bs), images, members=2, eps=(0.0, 0.01), n_alphas=9)
    assert r["alphas"].numel() == 9 and set(r["results"]) == {"P", "D", "PD"}
    for t in ("P", "D", "PD"):
        exact = r["results"][t][0.0]
        assert set(exact) == set(methods_for(arch))
        assert exact["naive"]["barrier_mean"] > 1e-3  # a different basin: the path leaves it
        for m in ("autoencoder", "latent", "rebasin_sign"):
            assert abs(exact[m]["barrier_mean"]) < 1e-9, (t, m)
        assert exact["naive"]["curves"].shape == (ws[0].shape[0] * 2, 9)
    assert r["results"]["P"][0.0]["rebasin"]["barrier_mean"] < 1e-9  # permutations alone: plain matching suffices
    assert r["results"]["PD"][0.0]["rebasin"]["barrier_mean"] > 1e-3  # but it cannot undo sign flips
    noisy = r["results"]["PD"][0.01]
    assert noisy["rebasin_sign"]["barrier_mean"] < noisy["naive"]["barrier_mean"]


def test_orbit_collapse_invariant_vs_permutation_only_encoder(real_nets):
    arch, ws, bs, _ = real_nets["siren"]
    torch.manual_seed(0)
    inv = ScaleGMN(arch, ScaleGMNConfig(d_hid=16, num_layers=2, dropout=0.0, readout="full_graph")).double().eval()
    perm = (
        ScaleGMN(
            arch, ScaleGMNConfig(symmetry="permutation", d_hid=16, num_layers=2, dropout=0.0, readout="full_graph")
        )
        .double()
        .eval()
    )
    a = orbit_collapse(inv, arch, (ws, bs), members=6, transform="PD", tsne=False)
    b = orbit_collapse(perm, arch, (ws, bs), members=6, transform="D", tsne=False)
    assert a["ratio"] < 1e-8
    assert b["ratio"] > 1e-3
    c = orbit_collapse(inv, arch, (ws, bs), members=4, transform="P", tsne=True)
    assert c["tsne"].shape == (ws[0].shape[0] * 4, 2)


def test_cnn_pair_experiment_self_pairs_and_ensemble(real_nets):
    arch, ws, bs, _ = real_nets["cnn_tanh"]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 1, 28, 28, dtype=torch.float64, generator=g)
    y = torch.randint(0, 10, (64,), generator=g)
    a = ([w[:2] for w in ws], [b[:2] for b in bs])
    r = cnn_pair_experiment(arch, _ae(arch, input_value=0.0), a, a, x, y, n_alphas=5)
    assert set(r["results"]) == set(methods_for(arch, with_latent=False))
    naive = r["results"]["naive"]
    assert naive["accuracy"].shape == (2, 5)
    assert naive["ce_barrier_mean"] == 0 and naive["merged_accuracy"] == naive["ends_accuracy"]
    assert r["ensemble_accuracy"] == pytest.approx(r["original_accuracy"])  # an ensemble of a network with itself
    assert abs(r["results"]["rebasin_sign"]["ce_barrier_mean"]) < 1e-9
