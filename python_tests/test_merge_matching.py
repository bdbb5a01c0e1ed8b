"""Git Re-Basin weight matching (+ sign / scale) and interpolation barriers.

Matching is checked by planting a known group element on a network (random AND trained on real
digits) and requiring its exact recovery, and by checking that the aligned network computes the
same function as the original (it is a group action)."""

from __future__ import annotations

import pytest
import torch

from scalegmn_ext.tasks.merge import barrier_from_curve, default_alphas, interpolate, loss_barrier, weight_matching
from scalegmn_ext.tasks.merge.matching import matching_objective, scale_normalizer
from scalegmn_ext.testing import random_weights
from scalegmn_ext.weightspace.architecture import Architecture
from scalegmn_ext.weightspace.functional import forward
from scalegmn_ext.weightspace.symmetry import apply_group_element, random_group_element

pytestmark = pytest.mark.usefixtures("one_thread")


def _net(arch, seed):
    """A network at a standard initialisation: weights N(0, 1/fan_in), biases N(0, 0.1^2)."""
    g = torch.Generator().manual_seed(seed)
    ws, bs = random_weights(arch, 1, dtype=torch.float64, generator=g)
    return ([w[0] / (w[0][0].numel() ** 0.5) for w in ws], [0.1 * b[0] for b in bs])


def _plant(arch, net, method, seed):
    g = random_group_element(
        arch,
        1,
        symmetry=method,
        generator=torch.Generator().manual_seed(seed),
        dtype=torch.float64,
        scale_range=(1e-2, 1e2),
    )
    wb, bb = apply_group_element(arch, [w[None] for w in net[0]], [b[None] for b in net[1]], g)
    return g, ([w[0] for w in wb], [b[0] for b in bb])


def _aligned(arch, b, g):
    ws, bs = apply_group_element(arch, [w[None] for w in b[0]], [v[None] for v in b[1]], g)
    return [w[0] for w in ws], [v[0] for v in bs]


def _assert_recovered(arch, a, b, r):
    wa, ba = _aligned(arch, b, r.g)
    for x, y in zip(a[0] + a[1], wa + ba):
        torch.testing.assert_close(y, x, rtol=1e-10, atol=1e-12)


def _inputs(arch, n=16):
    g = torch.Generator().manual_seed(5)
    if arch.is_cnn:
        return torch.randn(n, arch.layers[0].in_features, 28, 28, generator=g, dtype=torch.float64)
    return torch.randn(n, arch.layout[0], generator=g, dtype=torch.float64)


CASES = [
    (Architecture.mlp([5, 24, 17, 3], "relu"), "permutation"),
    (Architecture.mlp([5, 24, 17, 3], "relu"), "scale"),
    (Architecture.mlp([4, 32, 32, 32, 2], "tanh"), "sign"),
    (Architecture.siren(), "sign"),
    (Architecture.small_cnn_zoo("relu"), "scale"),
    (Architecture.small_cnn_zoo("tanh"), "sign"),
]


@pytest.mark.parametrize("arch,method", CASES, ids=[f"{a.activation}-{len(a.layout)}-{m}" for a, m in CASES])
@pytest.mark.parametrize("seed", [0, 1])
def test_recovers_a_planted_element_exactly(arch, method, seed):
    a = _net(arch, seed)
    _, b = _plant(arch, a, method, seed + 10)
    r = weight_matching(arch, a, b, method=method, seed=seed)
    _assert_recovered(arch, a, b, r)
    x = _inputs(arch)
    torch.testing.assert_close(forward(arch, *_aligned(arch, b, r.g), x), forward(arch, *b, x), rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize(
    "name,method", [("siren", "sign"), ("cnn_relu", "scale"), ("cnn_tanh", "sign"), ("cnn_tanh", "permutation")]
)
def test_recovers_planted_elements_on_trained_networks(real_nets, name, method):
    arch, ws, bs, _ = real_nets[name]
    a = ([w[0] for w in ws], [b[0] for b in bs])
    g, b = _plant(arch, a, method, 3)
    r = weight_matching(arch, a, b, method=method, restarts=8 if method == "sign" else 1)
    _assert_recovered(arch, a, b, r)


def test_sign_matching_needs_signs_and_restarts_help():
    """Permutation-only matching cannot undo a sign flip; the signed matcher can, and restarts
    never lower the objective (the first start is the identity, the best one is kept)."""
    arch = Architecture.mlp([2, 64, 64, 64, 1], "tanh")
    a = _net(arch, 4)
    _, b = _plant(arch, a, "sign", 7)
    p_only = weight_matching(arch, a, b, method="permutation")
    one = weight_matching(arch, a, b, method="sign", restarts=1, seed=3)
    many = weight_matching(arch, a, b, method="sign", restarts=6, seed=3)
    assert many.objective >= one.objective - 1e-9
    full = matching_objective(arch, a, a)
    assert p_only.objective < 0.9 * full  # signs left unmatched
    assert many.objective == pytest.approx(full, rel=1e-12)
    _assert_recovered(arch, a, b, many)


def test_noisy_pair_objective_improves_and_function_is_kept():
    arch = Architecture.mlp([3, 40, 40, 2], "tanh")
    a, c = _net(arch, 8), _net(arch, 9)  # two unrelated networks
    r = weight_matching(arch, a, c, method="sign")
    assert r.objective >= matching_objective(arch, a, c) - 1e-12
    assert 1 <= r.sweeps <= 100
    x = _inputs(arch)
    torch.testing.assert_close(forward(arch, *_aligned(arch, c, r.g), x), forward(arch, *c, x), rtol=1e-9, atol=1e-10)


def test_scale_normalizer_gives_unit_incoming_norms_and_handles_zero_units():
    arch = Architecture.mlp([3, 6, 5, 2], "relu")
    ws, bs = _net(arch, 1)
    ws[0][2] = 0.0  # a dead unit: incoming weights and bias all zero
    bs[0][2] = 0.0
    n = scale_normalizer(arch, (ws, bs))
    w2, b2 = _aligned(arch, (ws, bs), n)
    for k in range(2):
        norms = torch.cat([w2[k].flatten(1), b2[k][:, None]], 1).norm(dim=1)
        expect = torch.ones_like(norms)
        if k == 0:
            expect[2] = 0.0
        torch.testing.assert_close(norms, expect)
    assert n.scale[0][0, 2] == 1.0


def test_no_hidden_layer_and_bad_input():
    arch = Architecture.mlp([3, 2], "relu")
    a, b = _net(arch, 0), _net(arch, 1)
    r = weight_matching(arch, a, b)
    assert r.g.perm == () and r.sweeps == 0
    arch = Architecture.mlp([3, 8, 2], "relu")
    a = _net(arch, 0)
    with pytest.raises(ValueError, match="method='sign' needs an activation with 'sign'"):
        weight_matching(arch, a, a, method="sign")
    with pytest.raises(ValueError, match="method must be one of"):
        weight_matching(arch, a, a, method="rebasin")
    with pytest.raises(ValueError, match="restarts must be a positive int"):
        weight_matching(arch, a, a, restarts=0)
    ws, bs = random_weights(arch, 2, dtype=torch.float64)
    with pytest.raises(ValueError, match="b must be one network"):
        weight_matching(arch, a, (ws, bs))
    with pytest.raises(TypeError, match="a must be a pair"):
        weight_matching(arch, a[0][0], a)


# ---------------------------------------------------------------- interpolation and barriers ----
def test_interpolation_endpoints_midpoint_and_pair_batches():
    arch = Architecture.mlp([3, 7, 2], "relu")
    a, b = _net(arch, 0), _net(arch, 1)
    al = default_alphas(5)
    ws, bs = interpolate(arch, a, b, al)
    assert ws[0].shape == (5, 7, 3)
    torch.testing.assert_close(ws[0][0], a[0][0])
    torch.testing.assert_close(ws[1][-1], b[0][1])
    torch.testing.assert_close(bs[0][2], (a[1][0] + b[1][0]) / 2)
    ws2, _ = interpolate(
        arch,
        ([w[None].expand(2, *w.shape) for w in a[0]], [v[None].expand(2, *v.shape) for v in a[1]]),
        ([w[None].expand(2, *w.shape) for w in b[0]], [v[None].expand(2, *v.shape) for v in b[1]]),
        al,
    )
    assert ws2[0].shape == (10, 7, 3)
    torch.testing.assert_close(ws2[0][5:], ws[0])  # pair-major
    ext, _ = interpolate(arch, a, b, [-0.5, 0.0, 1.0, 1.5])  # extrapolation is allowed
    torch.testing.assert_close(ext[0][0], 1.5 * a[0][0] - 0.5 * b[0][0])


def test_barrier_of_a_network_with_itself_is_zero_and_known_curves():
    arch = Architecture.mlp([3, 9, 2], "tanh")
    a = _net(arch, 2)
    x, y = _inputs(arch, 32), torch.randn(32, 2, dtype=torch.float64)

    def mse(ws, bs):
        return (forward(arch, ws, bs, x) - y).pow(2).mean(dim=(1, 2))

    r = loss_barrier(arch, a, a, mse)
    assert r.losses.shape == (41,) and r.barrier == 0 and r.mean_barrier == 0
    al = default_alphas(21)
    curve = 1.0 + al + 4 * al * (1 - al)  # rise above the line 1 + alpha is 4 a (1 - a): max 1 at 1/2, mean 2/3
    r = barrier_from_curve(al, curve)
    assert float(r.barrier) == pytest.approx(1.0) and float(r.argmax_alpha) == 0.5
    assert float(r.mean_barrier) == pytest.approx(2 / 3, abs=2e-3)
    two = barrier_from_curve(al, torch.stack([curve, curve * 0 + 3]))
    assert two.barrier.shape == (2,) and float(two.barrier[1]) == 0
    with pytest.raises(ValueError, match="must contain 0 and 1"):
        barrier_from_curve([0.25, 0.5], torch.zeros(2))
    with pytest.raises(ValueError, match="odd int"):
        default_alphas(40)
    with pytest.raises(ValueError, match="eval_fn must return"):
        loss_barrier(arch, a, a, lambda ws, bs: torch.zeros(3), al)
