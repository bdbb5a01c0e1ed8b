"""weights_to_graph / graph_to_weights: compiled kernels vs the pure-PyTorch reference."""

import random

import pytest
import torch
from torch.library import opcheck

import scalegmn_ext as sx
from scalegmn_ext.reference import graph as ref
from scalegmn_ext.testing import DEVICES, FLOAT_DTYPES, noncontiguous, random_weights
from scalegmn_ext.weightspace.architecture import Architecture
from scalegmn_ext.weightspace.graph import WeightGraph, graph_structure

pytestmark = pytest.mark.skipif(not sx.HAS_EXTENSION, reason="extension not built")

ARCHS = {
    "siren": Architecture.siren(),
    "mlp_odd": Architecture.mlp([3, 7, 5, 2], activation="tanh"),
    "mlp_1layer": Architecture.mlp([4, 3], activation="relu"),
    "small_cnn_zoo": Architecture.small_cnn_zoo(),
    "mixed_kernels": Architecture.cnn(in_channels=3, channels=(5, 4, 3), kernel_size=(3, (1, 2), 5), dense=(6, 2)),
    "even_kernels": Architecture.cnn(in_channels=2, channels=(3, 2), kernel_size=(2, 4), dense=(3,)),
    "tiny_cnn": Architecture.cnn(in_channels=2, channels=(2, 3), kernel_size=(3, (1, 2)), dense=(2,)),
}


def _device(device):
    if device == "cuda" and not sx.has_cuda_kernels():
        pytest.skip("extension built without CUDA kernels")
    return device


def _rand(arch, B, dtype, device, seed, requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    return random_weights(arch, B, dtype=dtype, device=device, generator=g, requires_grad=requires_grad)


def _meta_args(arch, Kh=None, Kw=None, centre=True):
    kh, kw = arch.max_kernel_size
    return (
        list(arch.layout),
        [l.kernel_size[0] for l in arch.layers],
        [l.kernel_size[1] for l in arch.layers],
        [l.is_conv for l in arch.layers],
        Kh or kh,
        Kw or kw,
        centre,
    )


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("name", list(ARCHS))
@pytest.mark.parametrize("centre", [True, False])
def test_matches_reference(name, dtype, device, centre):
    device = _device(device)
    arch = ARCHS[name]
    seed = random.randrange(2**31)
    B = random.choice([1, 3, 5])
    ws, bs = _rand(arch, B, dtype, device, seed)
    Kh, Kw = arch.max_kernel_size
    node, edge = sx.weights_to_graph(ws, bs, arch, dense_centre=centre, input_value=0.5)
    rnode, redge = ref.weights_to_graph(ws, bs, Kh, Kw, centre, 0.5)
    assert node.shape == (B, arch.num_nodes, 1) and edge.shape == (B, arch.num_edges, arch.edge_dim)
    torch.testing.assert_close(node, rnode, rtol=0, atol=0, msg=f"seed {seed}")
    torch.testing.assert_close(edge, redge, rtol=0, atol=0, msg=f"seed {seed}")
    # the per-network dense-adjacency construction (public code's method) agrees too
    dnode, dedge = ref.dense_adjacency_graph([w.cpu() for w in ws], [b.cpu() for b in bs], Kh, Kw, centre, 0.5)
    torch.testing.assert_close(edge.cpu(), dedge, rtol=0, atol=0)
    torch.testing.assert_close(node.cpu(), dnode, rtol=0, atol=0)
    # inverse: exact round trip, and equal to its reference
    ws2, bs2 = sx.graph_to_weights(node, edge, arch, dense_centre=centre)
    rws, rbs = ref.graph_to_weights(node, edge, *_meta_args(arch, centre=centre))
    for a, b, c in zip(ws2 + bs2, ws + bs, rws + rbs):
        assert a.shape == b.shape and a.is_contiguous()
        torch.testing.assert_close(a, b, rtol=0, atol=0)
        torch.testing.assert_close(a, c, rtol=0, atol=0)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_is_exact_copy(dtype, device):
    device = _device(device)
    arch = ARCHS["mixed_kernels"]
    ws, bs = _rand(arch, 2, dtype, device, 0)
    node, edge = sx.weights_to_graph(ws, bs, arch)
    rnode, redge = ref.weights_to_graph(ws, bs, *arch.max_kernel_size)
    assert torch.equal(node, rnode) and torch.equal(edge, redge)


def test_dense_slot_conventions():
    arch = ARCHS["small_cnn_zoo"]
    ws, bs = _rand(arch, 2, torch.float64, "cpu", 1)
    _, e_c = sx.weights_to_graph(ws, bs, arch, dense_centre=True)
    _, e_f = sx.weights_to_graph(ws, bs, arch, dense_centre=False)
    dense = slice(arch.num_edges - 160, arch.num_edges)
    w_last = ws[-1].reshape(2, -1)
    assert torch.equal(e_c[:, dense, 4], w_last) and torch.equal(e_f[:, dense, 0], w_last)
    assert e_c[:, dense].count_nonzero() == e_f[:, dense].count_nonzero() == w_last.count_nonzero()
    # conv kernels are centred in both conventions
    assert torch.equal(e_c[:, : arch.num_edges - 160], e_f[:, : arch.num_edges - 160])


def test_larger_grid_than_kernels():
    arch = Architecture.mlp([2, 3, 1])
    ws, bs = _rand(arch, 2, torch.float64, "cpu", 2)
    node, edge = sx.weights_to_graph(ws, bs, arch, max_kernel_size=(3, 3))
    assert edge.shape == (2, arch.num_edges, 9)
    assert torch.equal(edge[..., 4], torch.cat([w.reshape(2, -1) for w in ws], 1))
    assert edge[..., [0, 1, 2, 3, 5, 6, 7, 8]].abs().sum() == 0
    ws2, _ = sx.graph_to_weights(node, edge, arch, max_kernel_size=(3, 3))
    assert all(torch.equal(a, b) for a, b in zip(ws, ws2))


@pytest.mark.parametrize("device", DEVICES)
def test_noncontiguous_inputs(device):
    device = _device(device)
    arch = ARCHS["mixed_kernels"]
    ws, bs = _rand(arch, 3, torch.float64, device, 3)
    nws, nbs = [noncontiguous(w) for w in ws], [noncontiguous(b) for b in bs]
    assert not any(w.is_contiguous() for w in nws)
    node, edge = sx.weights_to_graph(nws, nbs, arch)
    rnode, redge = ref.weights_to_graph(ws, bs, *arch.max_kernel_size)
    assert torch.equal(node, rnode) and torch.equal(edge, redge)
    ws2, bs2 = sx.graph_to_weights(noncontiguous(node), noncontiguous(edge), arch)
    assert all(torch.equal(a, b) for a, b in zip(ws2 + bs2, ws + bs))
    # a transposed batch (batch axis not outermost in memory)
    wt = [w.transpose(0, 1).contiguous().transpose(0, 1) for w in ws]
    assert torch.equal(sx.weights_to_graph(wt, bs, arch)[1], redge)


@pytest.mark.parametrize("name", ["siren", "small_cnn_zoo", "mixed_kernels"])
@pytest.mark.parametrize("threads", [1, 2])
def test_large_batch_parallel_copy_paths(name, threads):
    """Batches big enough that the CPU kernels split the networks over threads (every copy path:
    whole-grid memcpy, dense 1x1 in a larger grid, smaller conv kernels), bitwise equal to the
    reference in both directions, also for batch-strided views (read in place, not copied)."""
    arch = ARCHS[name]
    Kh, Kw = arch.max_kernel_size
    B = 2 * (1 << 16) // (arch.num_edges * arch.edge_dim) + 3  # > 2 tasks of the kernels' grain
    prev = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        ws, bs = _rand(arch, 2 * B, torch.float32, "cpu", 11)
        ws, bs = [w[::2] for w in ws], [b[1::2] for b in bs]  # batch stride 2, rows contiguous
        node, edge = torch.ops.scalegmn.weights_to_graph(ws, bs, Kh + 1, Kw, False, -2.0)
        rnode, redge = ref.weights_to_graph(ws, bs, Kh + 1, Kw, False, -2.0)
        assert torch.equal(node, rnode) and torch.equal(edge, redge)
        meta = _meta_args(arch, Kh + 1, Kw, centre=False)
        offset = (torch.cat([node, node])[B:], torch.cat([edge, edge])[B:])  # storage offset
        strided = (torch.stack([node, -node], 1).flatten(0, 1)[::2], torch.stack([edge, -edge], 1).flatten(0, 1)[::2])
        assert not strided[1].is_contiguous()
        for n, e in ((node, edge), offset, strided):
            ws2, bs2 = torch.ops.scalegmn.graph_to_weights(n, e, *meta)
            rws, rbs = ref.graph_to_weights(n, e, *meta)
            for a, b, c in zip(ws2 + bs2, rws + rbs, ws + bs):
                assert a.is_contiguous() and torch.equal(a, b) and torch.equal(a, c)
    finally:
        torch.set_num_threads(prev)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ["siren", "small_cnn_zoo"])
def test_empty_batch(name, device):
    device = _device(device)
    arch = ARCHS[name]
    ws, bs = _rand(arch, 0, torch.float32, device, 0, requires_grad=True)
    node, edge = sx.weights_to_graph(ws, bs, arch)
    assert node.shape == (0, arch.num_nodes, 1) and edge.shape == (0, arch.num_edges, arch.edge_dim)
    (node.sum() + edge.sum()).backward()
    assert all(w.grad.shape == w.shape for w in ws)
    ws2, bs2 = sx.graph_to_weights(node, edge, arch)
    assert [w.shape for w in ws2] == [w.shape for w in ws] and [b.shape for b in bs2] == [b.shape for b in bs]


def test_unbatched_and_missing_biases():
    arch = ARCHS["mlp_odd"]
    ws, bs = _rand(arch, 1, torch.float64, "cpu", 4)
    node, edge = sx.weights_to_graph([w[0] for w in ws], [b[0] for b in bs], arch)
    bnode, bedge = sx.weights_to_graph(ws, bs, arch)
    assert torch.equal(node, bnode[0]) and torch.equal(edge, bedge[0])
    w1, b1 = sx.graph_to_weights(node, edge, arch)
    assert w1[0].shape == ws[0].shape[1:]
    node0, _ = sx.weights_to_graph(ws, None, arch)
    assert node0[:, arch.layout[0] :].abs().sum() == 0 and (node0[:, : arch.layout[0]] == 1).all()


def test_nan_and_inf_pass_through():
    arch = ARCHS["siren"]
    ws, bs = _rand(arch, 2, torch.float32, "cpu", 5)
    ws[1][0, 3, 4] = float("nan")
    ws[2][1, 0, 7] = float("inf")
    bs[0][1, 2] = float("-inf")
    node, edge = sx.weights_to_graph(ws, bs, arch)
    assert edge.isnan().sum() == 1 and edge.isinf().sum() == 1 and node.isinf().sum() == 1
    ws2, bs2 = sx.graph_to_weights(node, edge, arch)
    assert ws2[1][0, 3, 4].isnan() and ws2[2][1, 0, 7] == float("inf") and bs2[0][1, 2] == float("-inf")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ["mlp_odd", "mixed_kernels"])
def test_opcheck(name, device):
    device = _device(device)
    arch = ARCHS[name]
    for requires_grad in (False, True):
        ws, bs = _rand(arch, 2, torch.float32, device, 6, requires_grad=requires_grad)
        Kh, Kw = arch.max_kernel_size
        opcheck(torch.ops.scalegmn.weights_to_graph, (ws, bs, Kh, Kw, True, 1.0))
        opcheck(torch.ops.scalegmn.weights_to_graph, (ws, bs, Kh + 2, Kw, False, 0.0))
        node, edge = ref.weights_to_graph([w.detach() for w in ws], [b.detach() for b in bs], Kh, Kw)
        opcheck(
            torch.ops.scalegmn.graph_to_weights,
            (node.requires_grad_(requires_grad), edge.requires_grad_(requires_grad), *_meta_args(arch)),
        )


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ["mlp_odd", "tiny_cnn"])
def test_gradcheck(name, device):
    device = _device(device)
    arch = ARCHS[name]
    L = arch.num_layers
    ws, bs = _rand(arch, 2, torch.float64, device, 7, requires_grad=True)

    def fwd(*t):
        return sx.weights_to_graph(list(t[:L]), list(t[L:]), arch, dense_centre=False, input_value=2.0)

    assert torch.autograd.gradcheck(fwd, (*ws, *bs))
    assert torch.autograd.gradgradcheck(fwd, (*ws, *bs))
    node, edge = fwd(*ws, *bs)
    ne = (node.detach().requires_grad_(), edge.detach().requires_grad_())

    def inv(n, e):
        w, b = sx.graph_to_weights(n, e, arch, dense_centre=False)
        return tuple(w + b)

    assert torch.autograd.gradcheck(inv, ne)
    assert torch.autograd.gradgradcheck(inv, ne)


def test_gradient_matches_reference():
    arch = ARCHS["mixed_kernels"]
    ws, bs = _rand(arch, 3, torch.float64, "cpu", 8, requires_grad=True)
    gn = torch.randn(3, arch.num_nodes, 1, dtype=torch.float64)
    ge = torch.randn(3, arch.num_edges, arch.edge_dim, dtype=torch.float64)
    n, e = sx.weights_to_graph(ws, bs, arch)
    g1 = torch.autograd.grad((n * gn).sum() + (e * ge).sum(), ws + bs)
    n, e = ref.weights_to_graph(ws, bs, *arch.max_kernel_size)
    g2 = torch.autograd.grad((n * gn).sum() + (e * ge).sum(), ws + bs)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_torch_compile_fullgraph():
    arch = ARCHS["mlp_odd"]
    ws, bs = _rand(arch, 4, torch.float32, "cpu", 9)

    @torch.compile(fullgraph=True, dynamic=True)
    def roundtrip(ws, bs):
        node, edge = sx.weights_to_graph(ws, bs, arch)
        w2, b2 = sx.graph_to_weights(node * 2, edge * 2, arch)
        return w2, b2

    w2, b2 = roundtrip(ws, bs)
    assert all(torch.equal(a, 2 * b) for a, b in zip(w2 + b2, ws + bs))
    ws5, bs5 = _rand(arch, 5, torch.float32, "cpu", 10)
    w5, _ = roundtrip(ws5, bs5)
    assert torch.equal(w5[0], 2 * ws5[0])


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda ws, bs: (ws[:1] + [ws[1][:, :, :3]] + ws[2:], bs), r"weights\[1\] has in=3"),
        (lambda ws, bs: (ws, bs[:-1]), r"biases must have 3 entries \(one per layer\), got 2"),
        (lambda ws, bs: (ws, [bs[0][:, :5]] + bs[1:]), r"biases\[0\] must have shape \(2, 7\)"),
        (lambda ws, bs: ([ws[0].double()] + ws[1:], bs), r"is torch.float32 on cpu; expected torch.float64"),
        (lambda ws, bs: ([w.long() for w in ws], bs), "floating"),
        (lambda ws, bs: (ws[:2] + [ws[2][:1]], bs), r"weights\[2\] has batch size 1, expected 2"),
        (lambda ws, bs: (ws, [bs[0].double()] + bs[1:]), r"biases\[0\] is torch.float64"),
        (lambda ws, bs: ([ws[0][0]] + ws[1:], bs), r"weights\[1\] must be unbatched"),
        (lambda ws, bs: ([], []), "non-empty list"),
        (lambda ws, bs: (ws[0], bs), "non-empty list"),
        (lambda ws, bs: ([ws[0][..., None]] + ws[1:], bs), r"weights\[1\] must be unbatched"),
        (lambda ws, bs: ([w[0] for w in ws], bs), r"biases\[0\] must have shape \(7,\) \(\[out\] \(unbatched\)\)"),
        (lambda ws, bs: ([ws[0][..., None, None, None]] + ws[1:], bs), r"weights\[0\] must be \[B, out, in\]"),
    ],
)
def test_bad_input_raises_clear_errors(mutate, match):
    arch = ARCHS["mlp_odd"]
    ws, bs = _rand(arch, 2, torch.float32, "cpu", 11)
    ws, bs = mutate(ws, bs)
    with pytest.raises((ValueError, TypeError), match=match):
        sx.weights_to_graph(ws, bs)


def test_bad_graph_and_arch_mismatch():
    arch = ARCHS["siren"]
    ws, bs = _rand(arch, 2, torch.float32, "cpu", 12)
    with pytest.raises(ValueError, match=r"per-network shape \(32, 2\)"):
        sx.weights_to_graph(ws, bs, Architecture.mlp([2, 16, 1]).__class__.mlp([3, 32, 32, 1]))
    node, edge = sx.weights_to_graph(ws, bs, arch)
    with pytest.raises(ValueError, match=r"edge must be \[2, 1120, 1\]"):
        sx.graph_to_weights(node, edge[:, :-1], arch)
    with pytest.raises(ValueError, match=r"node must be \[B, 67, 1\]"):
        sx.graph_to_weights(node[:, :-1], edge, arch)
    with pytest.raises(TypeError, match="edge is torch.float64"):
        sx.graph_to_weights(node, edge.double(), arch)
    with pytest.raises(TypeError, match="arch must be an Architecture"):
        sx.graph_to_weights(node, edge, [2, 32, 32, 1])
    with pytest.raises(ValueError, match="larger than max_kernel_size"):
        cnn = ARCHS["small_cnn_zoo"]
        sx.weights_to_graph(*_rand(cnn, 1, torch.float32, "cpu", 0), max_kernel_size=(1, 1))


def test_direct_op_calls_are_checked_in_cpp():
    """Calling torch.ops.scalegmn.* directly (bypassing the wrapper) still errors cleanly."""
    arch = ARCHS["mlp_odd"]
    ws, bs = _rand(arch, 2, torch.float32, "cpu", 13)
    with pytest.raises(RuntimeError, match=r"weights\[1\] has in=7 but the previous layer has out=5|has in="):
        torch.ops.scalegmn.weights_to_graph([ws[0], ws[2]], bs[:2], 1, 1, True, 1.0)
    with pytest.raises(RuntimeError, match="exceeds the max kernel size"):
        cnn = ARCHS["small_cnn_zoo"]
        torch.ops.scalegmn.weights_to_graph(*_rand(cnn, 1, torch.float32, "cpu", 0), 1, 1, True, 1.0)
    with pytest.raises(RuntimeError, match="edge features must be"):
        torch.ops.scalegmn.graph_to_weights(torch.zeros(2, 17, 1), torch.zeros(2, 3, 1), *_meta_args(arch))


# ---------------------------------------------------------------- structure ------------------


@pytest.mark.parametrize("name", list(ARCHS))
def test_structure_matches_weight_layout(name):
    arch = ARCHS[name]
    s = graph_structure(arch)
    N, E = arch.num_nodes, arch.num_edges
    assert s.edge_index.shape == (2, E) and s.rowptr.shape == (N + 1,)
    # receiver-major: sorted by receiver, CSR consistent with the edge list
    assert (s.edge_index[1].diff() >= 0).all()
    assert torch.equal(s.rowptr.diff(), torch.bincount(s.edge_index[1], minlength=N))
    # edges only between consecutive layers
    assert torch.equal(s.node_layer[s.edge_index[0]] + 1, s.node_layer[s.edge_index[1]])
    # the edge (o, i) of layer l holds W[l][o, i]: build a graph of "names" and check
    ws = []
    offs = s.node_offsets
    for l, spec in enumerate(arch.layers):
        o = torch.arange(spec.out_features).view(-1, 1) + offs[l + 1]
        i = torch.arange(spec.in_features).view(1, -1) + offs[l]
        code = (o * 1000 + i).double()
        ws.append(code.view(1, *code.shape, *([1, 1] if spec.is_conv else [])).expand(1, *spec.weight_shape))
    _, edge = sx.weights_to_graph(ws, None, arch)
    centre = edge[0].abs().amax(-1)
    assert torch.equal(centre.long(), s.edge_index[1] * 1000 + s.edge_index[0])
    # type ids: hidden neurons of a layer share a type; I/O neurons are distinct
    assert s.node_type[s.input_mask].unique().numel() == arch.layout[0]
    assert s.node_type[s.output_mask].unique().numel() == arch.layout[-1]
    for l in range(1, arch.num_layers):
        assert s.node_type[s.node_layer == l].unique().numel() == 1
    assert s.edge_type.max().item() + 1 == s.num_edge_types


def test_structure_type_counts_match_public_code():
    s = graph_structure(ARCHS["siren"])
    assert (s.num_node_types, s.num_edge_types) == (5, 4)  # as in the public ScaleGMN code
    assert graph_structure(ARCHS["small_cnn_zoo"]).num_node_types == 14
    perm = s.sender_major_perm
    src_major = s.edge_index[:, perm]
    key = src_major[0] * 10_000 + src_major[1]
    assert (key.diff() > 0).all()


def test_batched_structure_and_weightgraph():
    arch = ARCHS["mlp_odd"]
    ws, bs = _rand(arch, 3, torch.float32, "cpu", 14)
    g = WeightGraph.from_weights(arch, ws, bs)
    flat = g.flat()
    N, E = arch.num_nodes, arch.num_edges
    assert flat["edge_index"].shape == (2, 3 * E) and flat["x"].shape == (3 * N, 1)
    assert torch.equal(flat["batch"][flat["edge_index"][0]], torch.arange(3).repeat_interleave(E))
    assert torch.equal(flat["rowptr"].diff(), torch.bincount(flat["edge_index"][1], minlength=3 * N))
    w2, b2 = g.to_weights()
    assert all(torch.equal(a, b) for a, b in zip(w2 + b2, ws + bs))


def test_direct_op_rejects_integer_dtypes_even_for_an_empty_batch():
    """Fuzzer finding: with B = 0 the kernels return before dispatching on the dtype, so the
    dtype check must sit in the shared argument checks."""
    w = [torch.zeros(0, 2, 1, 3, 3, dtype=torch.uint8), torch.zeros(0, 2, 2, 3, 3, dtype=torch.uint8)]
    b = [torch.zeros(0, 2, dtype=torch.uint8)] * 2
    with pytest.raises(RuntimeError, match="weights must be float16, bfloat16, float32 or float64"):
        torch.ops.scalegmn.weights_to_graph(w, b, 3, 3, True, -2.5)
    node, edge = torch.zeros(0, 5, 1, dtype=torch.int32), torch.zeros(0, 6, 1, dtype=torch.int32)
    with pytest.raises(RuntimeError, match="node and edge features must be float16"):
        torch.ops.scalegmn.graph_to_weights(node, edge, [1, 2, 2], [1, 1], [1, 1], [False, False], 1, 1, True)
