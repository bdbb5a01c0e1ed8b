"""ScaleGMN models: fast vs per-edge reference, exact invariance / equivariance, API and errors."""

import random

import pytest
import torch

import scalegmn_ext as sx
from scalegmn_ext.models import ScaleGMN, ScaleGMNConfig, ScaleGMNEquivariant
from scalegmn_ext.testing import random_weights
from scalegmn_ext.weightspace import symmetry
from scalegmn_ext.weightspace.graph import WeightGraph

ARCHS = {
    "mlp_sine": sx.Architecture.siren([2, 5, 4, 1]),
    "mlp_tanh": sx.Architecture.mlp([3, 4, 5, 2], activation="tanh"),
    "mlp_relu": sx.Architecture.mlp([3, 6, 4, 2], activation="relu"),
    "cnn_tanh": sx.Architecture.cnn(
        in_channels=2, channels=(3, 4), kernel_size=(3, (1, 2)), dense=(3,), activation="tanh"
    ),
    "cnn_relu": sx.Architecture.cnn(in_channels=2, channels=(3, 4), dense=(5, 3), activation="relu"),
}


def _small(**kw):
    base = dict(d_hid=6, num_layers=2, d_out=3)
    base.update(kw)
    return ScaleGMNConfig(**base)


def _rel(a, b):
    return ((a - b).abs().max() / a.abs().max().clamp_min(1e-30)).item()


def _inputs(arch, B=3, seed=None):
    """Gaussian weights with about 10 % of the entries set to exactly 0 and 10 % to +-1e-8: the
    models must be exact for every finite input (real trained networks have such weights)."""
    seed = random.randrange(2**31) if seed is None else seed
    g = torch.Generator().manual_seed(seed)
    ws, bs = random_weights(arch, B, dtype=torch.float64, generator=g)
    out = []
    for w in ws:
        u = torch.rand(w.shape, generator=g, dtype=torch.float64)
        out.append(torch.where(u < 0.1, torch.zeros_like(w), torch.where(u < 0.2, 1e-8 * w.sign(), w)))
    return out, bs


@pytest.mark.parametrize("name", list(ARCHS))
@pytest.mark.parametrize("direction", ["forward", "bidirectional"])
@pytest.mark.parametrize("readout", ["full_graph", "last_layer"])
def test_fast_matches_reference_and_is_invariant(name, direction, readout):
    arch = ARCHS[name]
    torch.manual_seed(random.randrange(2**31))
    m = ScaleGMN(arch, _small(direction=direction, readout=readout)).double().eval()
    ws, bs = _inputs(arch)
    z = m(ws, bs)
    assert z.shape == (3, 3)
    m.impl = "reference"
    torch.testing.assert_close(m(ws, bs), z, rtol=1e-10, atol=1e-12)
    m.impl = "fast"
    # exact invariance under a random permutation + sign flip / positive scaling of hidden neurons
    w2, b2, g = symmetry.transform(arch, ws, bs)
    flat = lambda w, b: torch.cat([t.flatten(1) for t in w + b], 1)
    assert _rel(flat(ws, bs), flat(w2, b2)) > 0.1  # the input really changed
    assert _rel(z, m(w2, b2)) <= 1e-10  # float64: ~1e-15 in practice (issue bound: 1e-5)
    m.impl = "reference"
    assert _rel(z, m(w2, b2)) <= 1e-10


@pytest.mark.parametrize("name", list(ARCHS))
@pytest.mark.parametrize("direction", ["forward", "bidirectional"])
def test_equivariant_head(name, direction):
    arch = ARCHS[name]
    torch.manual_seed(random.randrange(2**31))
    m = ScaleGMNEquivariant(arch, _small(direction=direction)).double().eval()
    ws, bs = _inputs(arch)
    ow, ob = m(ws, bs)
    assert [w.shape for w in ow] == [w.shape for w in ws] and [b.shape for b in ob] == [b.shape for b in bs]
    m.impl = "reference"
    rw, rb = m(ws, bs)
    for a, b in zip(ow + ob, rw + rb):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-14)
    m.impl = "fast"
    w2, b2, g = symmetry.transform(arch, ws, bs)
    tw, tb = symmetry.apply_group_element(arch, ow, ob, g)  # the outputs must move like weights
    pw, pb = m(w2, b2)
    for a, b in zip(tw + tb, pw + pb):
        assert _rel(a, b) <= 1e-10


def test_permutation_only_model_is_not_sign_invariant():
    """Negative control: the plain GMN (permutation only) must notice sign flips."""
    arch = ARCHS["mlp_tanh"]
    torch.manual_seed(0)
    m = ScaleGMN(arch, _small(symmetry="permutation")).double().eval()
    ws, bs = _inputs(arch, seed=1)
    z = m(ws, bs)
    wp, bp, _ = symmetry.transform(arch, ws, bs, symmetry="permutation")
    assert _rel(z, m(wp, bp)) <= 1e-10  # still permutation invariant
    w2, b2, _ = symmetry.transform(arch, ws, bs, symmetry="sign")
    assert _rel(z, m(w2, b2)) > 1e-4


@pytest.mark.parametrize("scale_backward", ["gated", "inverse"])
def test_public_bidirectional_scale_bug_is_fixed(scale_backward):
    """With the raw edge in the backward direction (public code) ReLU models are not invariant;
    both of our constructions are."""
    arch = ARCHS["cnn_relu"]
    torch.manual_seed(0)
    m = ScaleGMN(arch, _small(direction="bidirectional", num_layers=3, scale_backward=scale_backward)).double().eval()
    ws, bs = _inputs(arch, seed=2)
    w2, b2, _ = symmetry.transform(arch, ws, bs)
    z = m(ws, bs)
    assert _rel(z, m(w2, b2)) <= 1e-10
    if scale_backward == "inverse":
        for layer in m.layers:
            layer.backward_edge = lambda e: e  # what the public implementation does
        assert _rel(m(ws, bs), m(w2, b2)) > 1e-4


def test_gradients_match_reference():
    arch = ARCHS["cnn_tanh"]
    torch.manual_seed(3)
    m = ScaleGMN(arch, _small(direction="bidirectional")).double()
    ws, bs = _inputs(arch, seed=3)
    params = list(m.parameters())
    g1 = torch.autograd.grad(m(ws, bs).pow(2).sum(), params)
    m.impl = "reference"
    g2 = torch.autograd.grad(m(ws, bs).pow(2).sum(), params)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_checkpointing_gives_same_gradients():
    arch = ARCHS["mlp_sine"]
    torch.manual_seed(9)
    a = ScaleGMN(arch, _small(num_layers=3)).double()
    b = ScaleGMN(arch, _small(num_layers=3, checkpoint=True)).double()
    b.load_state_dict(a.state_dict())
    ws, bs = _inputs(arch, seed=9)
    ga = torch.autograd.grad(a(ws, bs).sum(), list(a.parameters()))
    gb = torch.autograd.grad(b(ws, bs).sum(), list(b.parameters()))
    for x, y in zip(ga, gb):
        torch.testing.assert_close(x, y, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("name", ["mlp_sine", "cnn_relu"])
@pytest.mark.parametrize("pos_embed", [True, False])
@pytest.mark.parametrize("readout", ["full_graph", "last_layer"])
def test_fused_ops_match_unfused_in_training_with_dropout(name, pos_embed, readout):
    """Fused message + edge update (+ dropout in the tiles) == the unfused fast path with the
    same hash-dropout masks; checkpointing recomputes the same masks; the message op's save
    mode gives the same gradients."""
    arch = ARCHS[name]
    torch.manual_seed(11)
    cfg = _small(num_layers=3, dropout=0.3, pos_embed=pos_embed, readout=readout)
    models = [
        ScaleGMN(arch, cfg.replace(**kw)).double().train()
        for kw in (
            {},
            dict(fused_message=False, fused_edge_update=False),
            dict(checkpoint=True),
            dict(message_save=True),
        )
    ]
    for m in models[1:]:
        m.load_state_dict(models[0].state_dict())
    ws, bs = _inputs(arch, seed=11)
    outs, grads = [], []
    for m in models:
        torch.manual_seed(5)  # same dropout seeds
        z = m(ws, bs)
        outs.append(z)
        # (last_layer: the last layer's hidden-node nets do not affect the output: zero gradient)
        grads.append(
            torch.autograd.grad(z.pow(2).sum(), list(m.parameters()), allow_unused=True, materialize_grads=True)
        )
    for z, g in zip(outs[1:], grads[1:]):
        torch.testing.assert_close(z, outs[0], rtol=1e-10, atol=1e-12)
        for a, b in zip(g, grads[0]):
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    torch.manual_seed(6)
    assert _rel(outs[0], models[0](ws, bs)) > 1e-3  # new seeds, new masks
    models[0].eval()
    assert torch.equal(models[0](ws, bs), models[0](ws, bs))  # no dropout in eval mode


def test_dropout_rate_in_training():
    arch = ARCHS["mlp_sine"]
    m = ScaleGMN(arch, _small(num_layers=2, dropout=0.25, d_hid=64)).train()
    ws, bs = random_weights(arch, 16)
    zeros, inner = [], m.layers[1].forward_blocks

    def spy(blocks, *rest):
        zeros.append(torch.cat([x.flatten() for x in blocks.edge_states]).eq(0).double().mean().item())
        return inner(blocks, *rest)

    m.layers[1].forward_blocks = spy
    m(ws, bs)
    assert abs(zeros[0] - 0.25) < 0.03  # layer-1 input edge states: 25 % dropped


def test_gradcheck_wrt_input_weights():
    arch = sx.Architecture.mlp([2, 3, 1], activation="tanh")
    torch.manual_seed(4)
    m = ScaleGMNEquivariant(arch, _small(d_hid=3, num_layers=1)).double()
    ws, bs = random_weights(arch, 1, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda *t: tuple(sum(m(list(t[:2]), list(t[2:])), [])), (*ws, *bs))


def test_unbatched_graph_input_and_empty_batch():
    arch = ARCHS["mlp_sine"]
    m = ScaleGMN(arch, _small()).double().eval()
    ws, bs = _inputs(arch, B=2, seed=5)
    z = m(ws, bs)
    torch.testing.assert_close(m([w[0] for w in ws], [b[0] for b in bs]), z[0])
    torch.testing.assert_close(m(WeightGraph.from_weights(arch, ws, bs)), z)
    e = ScaleGMNEquivariant(arch, _small()).double().eval()
    uw, ub = e([w[1] for w in ws], [b[1] for b in bs])
    assert uw[0].shape == ws[0].shape[1:]
    w0, b0 = _inputs(arch, B=0, seed=0)
    assert m(w0, b0).shape == (0, 3)
    m.impl = "reference"  # the per-edge path too (it reshaped with -1, which B = 0 cannot infer)
    assert m(w0, b0).shape == (0, 3)
    e.impl = "reference"
    ew, eb = e(w0, b0)
    assert [w.shape for w in ew] == [w.shape for w in w0]


def test_residual_head_starts_near_identity():
    arch = ARCHS["mlp_tanh"]
    m = ScaleGMNEquivariant(arch, _small(out_scale=0.0), residual=True).double().eval()
    ws, bs = _inputs(arch, seed=6)
    ow, ob = m(ws, bs)
    for a, b in zip(ow + ob, ws + bs):
        torch.testing.assert_close(a, b)


def test_state_dict_is_shared_between_impls():
    arch = ARCHS["cnn_relu"]
    a = ScaleGMN(arch, _small()).double().eval()
    b = ScaleGMN(arch, _small(), impl="reference").double().eval()
    b.load_state_dict(a.state_dict())
    ws, bs = _inputs(arch, seed=7)
    torch.testing.assert_close(a(ws, bs), b(ws, bs), rtol=1e-10, atol=1e-12)


def test_torch_compile_fullgraph():
    arch = ARCHS["mlp_sine"]
    torch.manual_seed(8)
    m = ScaleGMN(arch, _small(num_layers=1)).eval()
    ws, bs = random_weights(arch, 4, generator=torch.Generator().manual_seed(8))
    eager = m(ws, bs)
    compiled = torch.compile(m, fullgraph=True)
    torch.testing.assert_close(compiled(ws, bs), eager, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(direction="sideways"), "direction must be"),
        (dict(symmetry="rotation"), "symmetry must be one of"),
        (dict(d_hid=0), "d_hid must be a positive int"),
        (dict(readout="mean"), "readout must be"),
        (dict(dropout=1.0), r"dropout must be in \[0, 1\)"),
        (dict(sign_canon="square"), "sign_canon must be"),
        (dict(eps=-1e-9), "eps must be a finite float >= 0"),
        (dict(eps=float("nan")), "eps must be a finite float >= 0"),
        (dict(scale_backward="clamped"), "scale_backward must be"),
    ],
)
def test_config_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ScaleGMNConfig(**kwargs)


def test_model_argument_errors():
    with pytest.raises(ValueError, match="does not match the input architecture's group 'sign'"):
        ScaleGMN(ARCHS["mlp_tanh"], _small(symmetry="scale"))
    with pytest.raises(TypeError, match="arch must be an Architecture"):
        ScaleGMN([2, 3, 1])
    m = ScaleGMN(ARCHS["mlp_tanh"], _small())
    with pytest.raises(ValueError, match="impl must be"):
        m.impl = "cuda-magic"
    ws, bs = _inputs(ARCHS["mlp_sine"], seed=0)
    with pytest.raises(ValueError, match="per-network shape"):
        m(ws, bs)


MIXED = {
    "sine": [
        sx.Architecture.siren([2, 5, 4, 1]),
        sx.Architecture.siren([2, 3, 6, 1]),
        sx.Architecture.siren([2, 7, 2, 1]),
    ],
    "relu": [
        sx.Architecture.mlp([3, 6, 4, 2], activation="relu"),
        sx.Architecture.mlp([3, 2, 5, 2], activation="relu"),
    ],
    "cnn": [
        ARCHS["cnn_tanh"],
        sx.Architecture.cnn(in_channels=2, channels=(5, 2), kernel_size=(3, (1, 2)), dense=(3,), activation="tanh"),
    ],
}


def _groups(archs, seed):
    out = []
    for k, arch in enumerate(archs):
        ws, bs = _inputs(arch, B=2 + k, seed=seed + k)
        out.append((arch, ws, bs, WeightGraph.from_weights(arch, ws, bs)))
    return out


@pytest.mark.parametrize("family", list(MIXED))
@pytest.mark.parametrize("readout", ["full_graph", "last_layer"])
@pytest.mark.parametrize("canon", ["symmetrize", "abs"])
@pytest.mark.parametrize("impl", ["fast", "dense_groups", "reference"])
def test_mixed_architecture_batch(family, readout, canon, impl):
    """One model over networks of different hidden widths (the graph path: per-node savings for
    impl="fast", the per-edge reference path for "reference"; or group by group through the
    layer-block path) equals running each architecture's batch alone through the layer-block
    path, and stays exactly invariant."""
    archs = MIXED[family]
    torch.manual_seed(12)
    m = ScaleGMN(archs[0], _small(readout=readout, sign_canon=canon, direction="bidirectional")).double().eval()
    groups = _groups(archs, seed=random.randrange(2**31))
    m.mixed_dense_min_group = 1 if impl == "dense_groups" else 10**9
    impl = "fast" if impl == "dense_groups" else impl
    m.impl = impl
    z = m([g for *_, g in groups])
    m.impl = "fast"
    assert z.shape == (sum(g[1][0].shape[0] for g in groups), 3)
    alone = torch.cat([m(g) for *_, g in groups])  # each group through the dense fast path
    torch.testing.assert_close(z, alone, rtol=1e-10, atol=1e-12)
    m.impl = impl
    moved = []
    for arch, ws, bs, _ in groups:
        w2, b2, _ = symmetry.transform(arch, ws, bs)
        moved.append(WeightGraph.from_weights(arch, w2, b2))
    assert _rel(z, m(moved)) <= 1e-10


@pytest.mark.parametrize("min_group", [1, 10**9])
def test_mixed_architecture_equivariant_head(min_group):
    archs = MIXED["sine"]
    torch.manual_seed(13)
    m = ScaleGMNEquivariant(archs[0], _small(), residual=True).double().eval()
    m.mixed_dense_min_group = min_group  # the layer-block path group by group / the graph path
    groups = _groups(archs, seed=13)
    outs = m(sx.MixedGraphBatch.from_graphs([g for *_, g in groups]))
    assert len(outs) == len(groups)
    for (_arch, ws, _bs, g), (wo, bo) in zip(groups, outs):
        we, be = m(g)
        for a, b in zip(wo + bo, we + be):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
        assert [w.shape for w in wo] == [w.shape for w in ws]


def test_mixed_batch_rejects_incompatible_architectures():
    m = ScaleGMN(MIXED["sine"][0], _small())
    other = sx.Architecture.siren([2, 5, 5, 5, 1])  # one layer deeper
    g = WeightGraph.from_weights(other, *random_weights(other, 1))
    with pytest.raises(ValueError, match="depths differ"):
        m([g])
    relu = sx.Architecture.mlp([2, 5, 4, 1], activation="relu")
    with pytest.raises(ValueError, match="symmetry groups differ"):
        sx.MixedGraphBatch.from_graphs(
            [
                WeightGraph.from_weights(MIXED["sine"][0], *random_weights(MIXED["sine"][0], 1)),
                WeightGraph.from_weights(relu, *random_weights(relu, 1)),
            ]
        )


@pytest.mark.parametrize(
    "arch", [*ARCHS.values(), *MIXED["sine"], sx.Architecture.siren([1, 4, 1]), sx.Architecture.mlp([3, 4, 5, 2])]
)
def test_type_ids_follow_the_documented_rules(arch):
    """graph_structure's node/edge type tensors and the per-layer constants the layer-block path
    reads (layer_type_ids) follow the type rules of weightspace/graph.py, derived here
    independently: inputs and outputs one type each, one type per hidden layer, an edge's type the
    dense rank of its (sender type, receiver type) pair."""
    from scalegmn_ext.weightspace.graph import graph_structure, layer_type_ids

    s, L, layout = graph_structure(arch), arch.num_layers, arch.layout
    n_in, n_out = layout[0], layout[-1]
    expected_nodes = (
        list(range(n_in))
        + [n_in + k - 1 for k in range(1, L) for _ in range(layout[k])]
        + [n_in + L - 1 + j for j in range(n_out)]
    )
    assert s.node_type.tolist() == expected_nodes and s.num_node_types == n_in + L - 1 + n_out
    pair = s.node_type[s.edge_index[0]] * s.num_node_types + s.node_type[s.edge_index[1]]
    uniq, expected_edges = torch.unique(pair, sorted=True, return_inverse=True)
    assert torch.equal(s.edge_type, expected_edges) and s.num_edge_types == uniq.numel()
    types, eo = layer_type_ids(arch), s.edge_offsets
    for l in range(L):
        u = s.edge_type[eo[l] : eo[l + 1]].unique()
        assert types.single_edge_type(l) == (int(u[0]) if u.numel() == 1 else None)


@pytest.mark.parametrize(
    "arch",
    [
        *ARCHS.values(),
        sx.Architecture.cnn(in_channels=1, channels=(2, 3), kernel_size=(5, (2, 4)), dense=(4, 2), activation="relu"),
        sx.Architecture.mlp([3, 2]),
    ],
)
def test_blocks_to_weights_is_graph_to_weights(arch):
    """The equivariant head reads weights per layer block: bit-identical to the compiled inverse
    graph op (conv kernels smaller than the grid, even grids, dense layers in the centre slot)."""
    from scalegmn_ext.models.layer_blocks import LayerBlocks, blocks_to_weights

    g = torch.Generator().manual_seed(3)
    node = torch.randn(4, arch.num_nodes, 1, generator=g, dtype=torch.float64)
    edge = torch.randn(4, arch.num_edges, arch.edge_dim, generator=g, dtype=torch.float64)
    ws, bs = blocks_to_weights(LayerBlocks.views(node, edge, arch), arch)
    rws, rbs = sx.graph_to_weights(node, edge, arch)
    assert len(ws) == len(rws) and len(bs) == len(rbs)
    for a, b in zip(ws + bs, rws + rbs):
        assert a.shape == b.shape and torch.equal(a, b)
    # the round trip from the weights the graph was built from
    w0, b0 = random_weights(arch, 2, dtype=torch.float64, generator=g)
    n0, e0 = sx.weights_to_graph(w0, b0, arch)
    ws, bs = blocks_to_weights(LayerBlocks.views(n0, e0, arch), arch)
    for a, b in zip(ws + bs, w0 + b0):
        assert torch.equal(a, b)


@pytest.mark.parametrize("min_group", [1, 10**9])
def test_mixed_architecture_gradients_fast_vs_reference(min_group):
    archs = MIXED["relu"]
    torch.manual_seed(14)
    m = ScaleGMNEquivariant(archs[0], _small(direction="bidirectional")).double()
    m.mixed_dense_min_group = min_group
    mb = sx.MixedGraphBatch.from_graphs([g for *_, g in _groups(archs, seed=14)])
    params = list(m.parameters())
    grads = []
    for impl in ("fast", "reference"):
        m.impl = impl
        loss = sum((w**2).sum() + (b**2).sum() for ws, bs in m(mb) for w, b in zip(ws, bs))
        # (the last layer's input-node update is never read back as a weight: zero gradient; the
        # fast path reads weights per layer block and leaves it out of the graph altogether)
        grads.append(torch.autograd.grad(loss, params, allow_unused=True, materialize_grads=True))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("name", ["mlp_sine", "cnn_relu"])
@pytest.mark.parametrize("readout", ["full_graph", "last_layer"])
def test_cuda_model_matches_cpu(name, readout):
    """The fast path on CUDA (fused ops, hash dropout) equals the CPU run, dropout masks included."""
    if not sx.has_cuda_kernels():
        pytest.skip("extension built without CUDA kernels")
    arch = ARCHS[name]
    torch.manual_seed(15)
    m = ScaleGMN(arch, _small(num_layers=3, dropout=0.3, readout=readout)).double().train()
    ws, bs = _inputs(arch, seed=15)
    res = []
    for dev in ("cpu", "cuda"):
        m.to(dev)
        torch.manual_seed(4)
        z = m([w.to(dev) for w in ws], [b.to(dev) for b in bs])
        g = torch.autograd.grad(z.pow(2).sum(), list(m.parameters()), allow_unused=True, materialize_grads=True)
        res.append((z.cpu(), [t.cpu() for t in g]))
    torch.testing.assert_close(res[1][0], res[0][0], rtol=1e-9, atol=1e-11)
    for a, b in zip(res[1][1], res[0][1]):
        torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-10)
