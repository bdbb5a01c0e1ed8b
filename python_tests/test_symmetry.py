"""Weight-space group actions (scalegmn_ext.weightspace.symmetry): invariance of the network function, group laws,
consistency with the graph node/edge order, reproducibility and input validation."""

from __future__ import annotations

import math

import pytest
import torch

from scalegmn_ext import Architecture, Symmetry, weights_to_graph
from scalegmn_ext.weightspace.functional import forward
from scalegmn_ext.weightspace.symmetry import (
    GroupElement,
    apply_group_element,
    compose,
    edge_scale_factors,
    identity_element,
    invert,
    node_scale_factors,
    permute_edge_features,
    permute_node_features,
    random_group_element,
    transform,
)

DT = torch.float64


def make_params(arch, B, seed, dtype=DT):
    g = torch.Generator().manual_seed(seed)
    ws, bs = [], []
    for s in arch.layers:
        fan_in = s.in_features * s.kernel_size[0] * s.kernel_size[1]
        ws.append(torch.randn(B, *s.weight_shape, generator=g, dtype=dtype) / math.sqrt(fan_in))
        bs.append(torch.randn(B, s.out_features, generator=g, dtype=dtype) * 0.3)
    return ws, bs


def make_x(arch, P, seed, B=None):
    g = torch.Generator().manual_seed(seed)
    lead = () if B is None else (B,)
    if arch.is_cnn:
        return torch.randn(*lead, P, arch.layout[0], 9, 7, generator=g, dtype=DT)
    return torch.randn(*lead, P, arch.layout[0], generator=g, dtype=DT)


def rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


def rel_change(ws_new, ws_old):
    """Relative L1 change of all weights."""
    num = sum((a - b).abs().sum() for a, b in zip(ws_new, ws_old))
    den = sum(b.abs().sum() for b in ws_old)
    return (num / den).item()


def build(kind, activation):
    if kind == "mlp":
        return Architecture.mlp([3, 7, 5, 2], activation=activation, w0=3.0)
    return Architecture.cnn(
        in_channels=2, channels=(5, 3), kernel_size=3, stride=1, padding=1, dense=(7, 3), activation=activation
    )


CASES = [
    ("tanh", "sign"),
    ("sine", "sign"),
    ("relu", "scale"),
    ("leaky_relu", "scale"),
    ("identity", "scale"),
    ("gelu", "permutation"),
    ("silu", "permutation"),
]


# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["mlp", "cnn"])
@pytest.mark.parametrize("activation,symmetry", CASES)
@pytest.mark.parametrize("seed", [11, 4099])
def test_function_invariance(kind, activation, symmetry, seed):
    arch = build(kind, activation)
    assert arch.symmetry == Symmetry(symmetry)
    B = 3
    ws, bs = make_params(arch, B, seed)
    x = make_x(arch, 5, seed + 1)
    y = forward(arch, ws, bs, x)
    gen = torch.Generator().manual_seed(seed + 2)
    w2, b2, g = transform(arch, ws, bs, generator=gen)
    assert g.batch_size == B and g.scale[0].dtype == DT
    assert rel_err(forward(arch, w2, b2, x), y) <= 1e-5
    assert rel_change(w2, ws) > 0.3  # the weights really changed
    # per-network inputs too
    xb = make_x(arch, 4, seed + 3, B=B)
    assert rel_err(forward(arch, w2, b2, xb), forward(arch, ws, bs, xb)) <= 1e-5
    if symmetry != "permutation":  # sign / scale alone (no permutation) also changes the weights
        g2 = random_group_element(arch, B, generator=gen, dtype=DT, permute=False)
        w3, b3 = apply_group_element(arch, ws, bs, g2)
        assert rel_err(forward(arch, w3, b3, x), y) <= 1e-5
        assert rel_change(w3, ws) > 0.3


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_non_admitted_scaling_changes_function(activation):
    """Sanity check of the test itself: a scale (or sign) the activation does not admit breaks invariance."""
    arch = Architecture.mlp([3, 6, 2], activation=activation)
    ws, bs = make_params(arch, 2, 5)
    x = make_x(arch, 7, 6)
    q = torch.full((2, 6), -1.0, dtype=DT) if activation == "relu" else torch.full((2, 6), 2.0, dtype=DT)
    g = GroupElement((torch.arange(6).expand(2, 6).clone(),), (q,))
    w2, b2 = apply_group_element(arch, ws, bs, g)
    assert rel_err(forward(arch, w2, b2, x), forward(arch, ws, bs, x)) > 1e-2


def test_cnn_mixed_kernels():
    arch = Architecture.cnn(
        in_channels=3,
        channels=(5, 4, 3),
        kernel_size=(5, (1, 3), (3, 1)),
        stride=1,
        padding=1,
        dense=(5, 2),
        activation="relu",
    )
    ws, bs = make_params(arch, 3, 123)
    x = make_x(arch, 3, 124)
    w2, b2, g = transform(arch, ws, bs, generator=torch.Generator().manual_seed(125))
    assert [tuple(w.shape) for w in w2] == [tuple(w.shape) for w in ws]
    assert rel_err(forward(arch, w2, b2, x), forward(arch, ws, bs, x)) <= 1e-5
    assert rel_change(w2, ws) > 0.3
    # kernels move as a whole: new channel o of layer 0 is old channel perm[0][o], times q
    n = 1
    o = 2
    p, q = g.perm[0][n, o], g.scale[0][n, o]
    assert torch.allclose(w2[0][n, o], q * ws[0][n, p])


def test_small_cnn_zoo():
    arch = Architecture.small_cnn_zoo()
    ws, bs = make_params(arch, 2, 7)
    x = torch.randn(3, 1, 28, 28, dtype=DT)
    w2, b2, _ = transform(arch, ws, bs, generator=torch.Generator().manual_seed(8))
    assert rel_err(forward(arch, w2, b2, x), forward(arch, ws, bs, x)) <= 1e-5
    assert rel_change(w2, ws) > 0.3
    # output (class) neurons and input channel are never permuted or scaled
    assert torch.equal(b2[-1], bs[-1])
    g = random_group_element(arch, 2)
    assert g.widths == (16, 16, 16)


def test_siren():
    arch = Architecture.siren()
    ws, bs = make_params(arch, 3, 17)
    x = make_x(arch, 20, 18)
    w2, b2, g = transform(arch, ws, bs, generator=torch.Generator().manual_seed(19))
    assert set(torch.cat([s.flatten() for s in g.scale]).tolist()) == {-1.0, 1.0}
    assert rel_err(forward(arch, w2, b2, x), forward(arch, ws, bs, x)) <= 1e-5
    assert rel_change(w2, ws) > 0.3
    assert torch.equal(b2[-1], bs[-1])


def test_action_formula_mlp():
    arch = Architecture.mlp([2, 3, 4, 1], activation="relu")
    ws, bs = make_params(arch, 2, 3)
    g = random_group_element(arch, 2, generator=torch.Generator().manual_seed(4), dtype=DT)
    w2, b2 = apply_group_element(arch, ws, bs, g)
    n = 1
    p1, q1, p2, q2 = g.perm[0][n], g.scale[0][n], g.perm[1][n], g.scale[1][n]
    for o in range(4):
        for i in range(3):
            assert torch.allclose(w2[1][n, o, i], q2[o] * ws[1][n, p2[o], p1[i]] / q1[i])
        assert torch.allclose(b2[1][n, o], q2[o] * bs[1][n, p2[o]])
    assert torch.allclose(w2[0][n], q1[:, None] * ws[0][n, p1])
    assert torch.allclose(w2[2][n], ws[2][n][:, p2] / q2)


# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["mlp", "cnn"])
@pytest.mark.parametrize("seed", [2, 31])
def test_invert_and_compose(kind, seed):
    arch = build(kind, "relu")
    B = 4
    ws, bs = make_params(arch, B, seed)
    gen = torch.Generator().manual_seed(seed)
    g1 = random_group_element(arch, B, generator=gen, dtype=DT)
    g2 = random_group_element(arch, B, generator=gen, dtype=DT)
    w1, b1 = apply_group_element(arch, ws, bs, g1)
    w0, b0 = apply_group_element(arch, w1, b1, invert(g1))
    for a, b in zip(w0 + b0, ws + bs):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-12)
    # apply(compose(g1, g2)) == apply(g1, apply(g2))
    wa, ba = apply_group_element(arch, ws, bs, compose(g1, g2))
    wb, bb = apply_group_element(arch, *apply_group_element(arch, ws, bs, g2), g1)
    for a, b in zip(wa + ba, wb + bb):
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-12)
    # g * g^-1 == g^-1 * g == identity
    e = identity_element(arch, B, dtype=DT)
    for h in (compose(g1, invert(g1)), compose(invert(g1), g1)):
        for p, pe in zip(h.perm, e.perm):
            assert torch.equal(p, pe)
        for s, se in zip(h.scale, e.scale):
            assert torch.allclose(s, se)
    # invert(invert(g)) == g
    for p, pp in zip(invert(invert(g2)).perm, g2.perm):
        assert torch.equal(p, pp)


def test_identity_element():
    arch = build("cnn", "tanh")
    ws, bs = make_params(arch, 3, 9)
    e = identity_element(arch, 3, dtype=DT)
    w2, b2 = apply_group_element(arch, ws, bs, e)
    for a, b in zip(w2 + b2, ws + bs):
        assert torch.equal(a, b)


def test_generator_reproducibility():
    arch = build("mlp", "relu")
    ga = random_group_element(arch, 5, generator=torch.Generator().manual_seed(77))
    gb = random_group_element(arch, 5, generator=torch.Generator().manual_seed(77))
    gc = random_group_element(arch, 5, generator=torch.Generator().manual_seed(78))
    for a, b in zip(ga.perm + ga.scale, gb.perm + gb.scale):
        assert torch.equal(a, b)
    assert any(not torch.equal(a, c) for a, c in zip(ga.perm + ga.scale, gc.perm + gc.scale))
    arch2 = build("cnn", "tanh")
    ws, bs = make_params(arch2, 2, 1)
    wa, _, _ = transform(arch2, ws, bs, generator=torch.Generator().manual_seed(5))
    wb, _, _ = transform(arch2, ws, bs, generator=torch.Generator().manual_seed(5))
    for a, b in zip(wa, wb):
        assert torch.equal(a, b)


@pytest.mark.parametrize("symmetry", ["permutation", "sign", "scale"])
def test_random_element_properties(symmetry):
    act = {"permutation": "gelu", "sign": "tanh", "scale": "relu"}[symmetry]
    arch = Architecture.mlp([3, 9, 7, 2], activation=act)
    g = random_group_element(arch, 6, generator=torch.Generator().manual_seed(3), dtype=DT, scale_range=(0.5, 3.0))
    assert g.widths == (9, 7) and g.batch_size == 6
    for p, s in zip(g.perm, g.scale):
        assert p.dtype == torch.long and s.dtype == DT
        assert torch.equal(p.sort(dim=1).values, torch.arange(p.shape[1]).expand_as(p))
        assert not torch.equal(p, torch.arange(p.shape[1]).expand_as(p))
        if symmetry == "permutation":
            assert torch.equal(s, torch.ones_like(s))
        elif symmetry == "sign":
            assert set(s.flatten().tolist()) == {-1.0, 1.0}
        else:
            assert s.min() >= 0.5 and s.max() <= 3.0 and s.std() > 0.1
    g0 = random_group_element(arch, 6, permute=False, symmetry="permutation")
    for p in g0.perm:
        assert torch.equal(p, torch.arange(p.shape[1]).expand_as(p))
    # a narrower symmetry may always be requested; the arch override is the default
    assert set(random_group_element(arch, 2, symmetry="permutation").scale[0].flatten().tolist()) == {1.0}
    tanh_perm = Architecture.mlp([2, 5, 1], activation="tanh", symmetry="permutation")
    assert set(random_group_element(tanh_perm, 4).scale[0].flatten().tolist()) == {1.0}
    assert set(random_group_element(tanh_perm, 40, symmetry="sign").scale[0].flatten().tolist()) == {-1.0, 1.0}


def test_empty_batch_and_unbatched():
    arch = build("cnn", "relu")
    ws, bs = make_params(arch, 0, 1)
    g = random_group_element(arch, 0, dtype=DT)
    w2, b2 = apply_group_element(arch, ws, bs, g)
    assert [w.shape for w in w2] == [w.shape for w in ws]
    w2, b2, _ = transform(arch, ws, bs)
    assert w2[0].shape[0] == 0
    ws, bs = make_params(arch, 1, 2)
    g = random_group_element(arch, 1, dtype=DT, generator=torch.Generator().manual_seed(0))
    wu, bu = apply_group_element(arch, [w[0] for w in ws], [b[0] for b in bs], g)
    wb, bb = apply_group_element(arch, ws, bs, g)
    for a, b in zip(wu + bu, wb + bb):
        assert torch.equal(a, b[0])


def test_single_layer_trivial_group():
    arch = Architecture.mlp([3, 2], activation="tanh")
    ws, bs = make_params(arch, 2, 0)
    w2, b2, g = transform(arch, ws, bs)
    assert g.perm == () and g.batch_size is None
    assert torch.equal(w2[0], ws[0]) and torch.equal(b2[0], bs[0])


def test_gradient_flows():
    arch = build("mlp", "relu")
    ws, bs = make_params(arch, 2, 0)
    params = [t.requires_grad_(True) for t in ws + bs]
    g = random_group_element(arch, 2, dtype=DT, generator=torch.Generator().manual_seed(1))
    w2, b2 = apply_group_element(arch, params[:3], params[3:], g)
    loss = sum(w.square().sum() for w in w2) + sum(b.square().sum() for b in b2)
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in params)


# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["mlp", "cnn"])
@pytest.mark.parametrize("seed", [6, 606])
def test_graph_feature_consistency(kind, seed):
    """weights_to_graph(g . W) == permute_*_features(g, weights_to_graph(W)) (times scale factors)."""
    arch = build(kind, "relu")
    B = 3
    ws, bs = make_params(arch, B, seed)
    node, edge = weights_to_graph(ws, bs, arch)
    gen = torch.Generator().manual_seed(seed)
    g = random_group_element(arch, B, generator=gen, dtype=DT, symmetry="permutation")
    n2, e2 = weights_to_graph(*apply_group_element(arch, ws, bs, g), arch)
    assert torch.equal(permute_node_features(arch, g, node), n2)
    assert torch.equal(permute_edge_features(arch, g, edge), e2)
    assert torch.equal(permute_node_features(arch, g, node[..., 0]), n2[..., 0])
    assert not torch.equal(n2, node) and not torch.equal(e2, edge)
    # with scaling: permutation then the scale factors
    g = random_group_element(arch, B, generator=gen, dtype=DT)
    n3, e3 = weights_to_graph(*apply_group_element(arch, ws, bs, g), arch)
    exp_n = permute_node_features(arch, g, node) * node_scale_factors(arch, g).unsqueeze(-1)
    exp_e = permute_edge_features(arch, g, edge) * edge_scale_factors(arch, g).unsqueeze(-1)
    n_in = arch.layout[0]
    assert torch.allclose(exp_n[:, n_in:], n3[:, n_in:])  # input-node features are constants
    assert torch.allclose(exp_e, e3)
    # permutation of features composes like the group
    g1 = random_group_element(arch, B, generator=gen, dtype=DT)
    g2 = random_group_element(arch, B, generator=gen, dtype=DT)
    f = torch.randn(B, arch.num_nodes, 4, dtype=DT)
    assert torch.equal(
        permute_node_features(arch, compose(g1, g2), f),
        permute_node_features(arch, g1, permute_node_features(arch, g2, f)),
    )
    fe = torch.randn(B, arch.num_edges, 2, dtype=DT)
    assert torch.equal(
        permute_edge_features(arch, compose(g1, g2), fe),
        permute_edge_features(arch, g1, permute_edge_features(arch, g2, fe)),
    )


# ----------------------------------------------------------------------------------------------
def test_errors():
    tanh = Architecture.mlp([2, 5, 3, 1], activation="tanh")
    relu = Architecture.mlp([2, 5, 3, 1], activation="relu")
    gelu = Architecture.mlp([2, 5, 3, 1], activation="gelu")
    with pytest.raises(ValueError, match="symmetry='scale' is not admitted by activation 'tanh'"):
        random_group_element(tanh, 2, symmetry="scale")
    with pytest.raises(ValueError, match="symmetry='sign'"):
        random_group_element(relu, 2, symmetry="sign")
    with pytest.raises(ValueError, match="symmetry='scale'"):
        random_group_element(gelu, 2, symmetry=Symmetry.SCALE)
    with pytest.raises(ValueError, match="symmetry must be one of"):
        random_group_element(relu, 2, symmetry="rotation")
    ws, bs = make_params(tanh, 2, 0)
    with pytest.raises(ValueError, match="symmetry='scale'"):
        transform(tanh, ws, bs, symmetry="scale")
    with pytest.raises(ValueError, match="batch_size"):
        random_group_element(relu, -1)
    with pytest.raises(ValueError, match="scale_range"):
        random_group_element(relu, 2, scale_range=(0.0, 2.0))
    with pytest.raises(ValueError, match="scale_range"):
        random_group_element(relu, 2, scale_range=(3.0, 2.0))
    with pytest.raises(TypeError, match="generator"):
        random_group_element(relu, 2, generator=0)
    with pytest.raises(TypeError, match="arch"):
        random_group_element("relu", 2)

    g = random_group_element(tanh, 3, dtype=DT)
    with pytest.raises(ValueError, match=r"g.perm\[0\] must be \[B, n\] = \[2, 5\]"):
        apply_group_element(tanh, ws, bs, g)  # batch mismatch
    g_other = random_group_element(Architecture.mlp([2, 4, 3, 1], activation="tanh"), 2, dtype=DT)
    with pytest.raises(ValueError, match=r"g.perm\[0\]"):
        apply_group_element(tanh, ws, bs, g_other)  # width mismatch
    g_short = random_group_element(Architecture.mlp([2, 5, 1], activation="tanh"), 2, dtype=DT)
    with pytest.raises(ValueError, match="g must have 2 hidden layers"):
        apply_group_element(tanh, ws, bs, g_short)
    with pytest.raises(TypeError, match="g must be a GroupElement"):
        apply_group_element(tanh, ws, bs, None)
    bad = GroupElement(
        (torch.zeros(2, 5, dtype=torch.long), torch.arange(3).expand(2, 3).clone()),
        (torch.ones(2, 5, dtype=DT), torch.ones(2, 3, dtype=DT)),
    )
    with pytest.raises(ValueError, match="g.perm entries must be permutations"):
        apply_group_element(tanh, ws, bs, bad)
    g2 = random_group_element(tanh, 2, dtype=DT)
    with pytest.raises(ValueError, match=r"weights\[1\] must be"):
        apply_group_element(tanh, [ws[0], ws[1][:, :2], ws[2]], bs, g2)
    with pytest.raises(ValueError, match="weights must have 3 entries"):
        apply_group_element(tanh, ws[:2], bs, g2)
    with pytest.raises(ValueError, match=r"biases\[2\] must have shape"):
        apply_group_element(tanh, ws, bs[:2] + [bs[2][:, :0]], g2)
    with pytest.raises(ValueError, match="node_feat must be"):
        permute_node_features(tanh, g2, torch.zeros(2, tanh.num_nodes + 1, 1))
    with pytest.raises(ValueError, match="edge_feat must be"):
        permute_edge_features(tanh, g2, torch.zeros(2, tanh.num_edges - 1))
    with pytest.raises(ValueError, match=r"g.perm\[0\] must be \[B, n\] = \[3, 5\]"):
        permute_edge_features(tanh, g2, torch.zeros(3, tanh.num_edges))
    with pytest.raises(TypeError, match="node_feat must be a Tensor"):
        permute_node_features(tanh, g2, None)
    with pytest.raises(ValueError, match="g2 .* does not match g1"):
        compose(g2, g)
    with pytest.raises(TypeError, match="GroupElement.perm\\[0\\] must be a long"):
        GroupElement((torch.zeros(2, 5),), (torch.ones(2, 5),))
    with pytest.raises(ValueError, match=r"GroupElement.perm\[0\] and scale\[0\]"):
        GroupElement((torch.zeros(2, 5, dtype=torch.long),), (torch.ones(2, 4),))
