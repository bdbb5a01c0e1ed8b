"""CSR message ops (segment_gather_mul, gather_mul_csr, gather_dot_csr) and the CSR helper."""

import random

import pytest
import torch
from torch.library import opcheck

import scalegmn_ext as sx
from scalegmn_ext.ops import CSR, gather_dot_csr, gather_mul_csr, segment_gather_mul
from scalegmn_ext.reference import segment_gather_mul as ref
from scalegmn_ext.testing import DEVICES, FLOAT_DTYPES, noncontiguous
from scalegmn_ext.weightspace.graph import graph_structure

pytestmark = pytest.mark.skipif(not sx.HAS_EXTENSION, reason="extension not built")

ops = torch.ops.scalegmn
INDEX_DTYPES = [torch.int64, torch.int32]


def _device(device):
    if device == "cuda" and not sx.has_cuda_kernels():
        pytest.skip("extension built without CUDA kernels")
    return device


def _graph(n_src, n_dst, E, seed, sort_by_dst=False, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    if n_src == 0 or n_dst == 0:
        E = 0
    src = torch.randint(0, max(n_src, 1), (E,), generator=g)
    dst = torch.randint(0, max(n_dst, 1), (E,), generator=g)
    if sort_by_dst:
        dst = dst.sort().values
    return torch.stack([src, dst]).to(device)


def _feats(rows, C, dtype, device, seed, requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(rows, C, generator=g, dtype=torch.float64)
        .to(dtype=dtype, device=device)
        .requires_grad_(requires_grad)
    )


def _direct(x, edge, ei, n_dst):
    """Independent oracle straight from the edge list (edge id = column of edge_index)."""
    return x.new_zeros(n_dst, x.shape[1]).index_add_(0, ei[1], x[ei[0]] * edge)


# ---------------------------------------------------------------- forward vs reference --------


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("index_dtype", INDEX_DTYPES)
@pytest.mark.parametrize("sorted_edges", [True, False], ids=["no_perm", "perm"])
@pytest.mark.parametrize("scalar_edge", [False, True], ids=["edge_EC", "edge_E1"])
def test_forward_matches_reference(device, dtype, index_dtype, sorted_edges, scalar_edge):
    device = _device(device)
    seed = random.randrange(2**31)
    rnd = random.Random(seed)
    n_src, n_dst, C = rnd.randint(1, 23), rnd.randint(1, 19), rnd.choice([1, 3, 8, 16, 32, 37, 130])
    E = rnd.randint(0, 3 * n_dst)  # sparse enough that some rows / senders have no edges
    ei = _graph(n_src, n_dst, E, seed, sort_by_dst=sorted_edges, device=device)
    csr = CSR.from_edge_index(ei, n_src, n_dst, index_dtype=index_dtype)
    if sorted_edges:
        assert csr.perm is None
    x = _feats(n_src, C, dtype, device, seed + 1)
    edge = _feats(ei.shape[1], 1 if scalar_edge else C, dtype, device, seed + 2)
    msg = f"seed {seed}, n_src {n_src}, n_dst {n_dst}, E {E}, C {C}"
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)
    out = segment_gather_mul(x, edge, csr)
    assert out.shape == (n_dst, C) and out.dtype == dtype and out.device.type == device
    torch.testing.assert_close(out, _direct(x, edge, ei, n_dst), **tol, msg=msg)
    torch.testing.assert_close(out, ref.segment_gather_mul(x, edge, *csr.args()), **tol, msg=msg)
    # the per-edge ops, against the edge-list formula
    a = _feats(n_dst, C, dtype, device, seed + 3)
    torch.testing.assert_close(gather_mul_csr(a, x, csr), a[ei[1]] * x[ei[0]], **tol, msg=msg)
    torch.testing.assert_close(gather_dot_csr(a, x, csr), (a[ei[1]] * x[ei[0]]).sum(1, keepdim=True), **tol, msg=msg)
    # the transposed CSR describes the reversed graph
    torch.testing.assert_close(
        segment_gather_mul(a, edge, csr.transpose()), _direct(a, edge, ei.flip(0), n_src), **tol, msg=msg
    )
    if device == "cuda":  # CUDA agrees with CPU
        cpu = segment_gather_mul(x.cpu(), edge.cpu(), csr.to("cpu"))
        torch.testing.assert_close(out.cpu(), cpu, **tol, msg=msg)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_vs_float64(device, dtype):
    device = _device(device)
    seed = random.randrange(2**31)
    n, C, E = 41, 64, 400
    ei = _graph(n, n, E, seed, device=device)
    csr = CSR.from_edge_index(ei, n, n)
    x, edge = _feats(n, C, dtype, device, seed), _feats(E, C, dtype, device, seed + 1)
    x.requires_grad_(), edge.requires_grad_()
    out = segment_gather_mul(x, edge, csr)
    exact = _direct(x.double(), edge.double(), ei, n)
    rel = (out.double() - exact).norm() / exact.norm()
    assert rel < (2e-3 if dtype == torch.float16 else 1e-2), f"seed {seed}: rel err {rel}"
    g = _feats(n, C, dtype, device, seed + 2)
    gx, ge = torch.autograd.grad(out, (x, edge), g)
    xd, ed = x.detach().double().requires_grad_(), edge.detach().double().requires_grad_()
    rgx, rge = torch.autograd.grad(_direct(xd, ed, ei, n), (xd, ed), g.double())
    for a, b in ((gx, rgx), (ge, rge)):
        assert a.dtype == dtype
        assert (a.double() - b).norm() / b.norm() < 1e-2, f"seed {seed}"


def test_accumulates_in_float32_for_half():
    # 4096 products 1 * 1 into one row: exact with float32 accumulation; a float16 running sum
    # would stall at 2048 (2048 + 1 rounds back to 2048)
    E = 4096
    ei = torch.zeros(2, E, dtype=torch.long)
    csr = CSR.from_edge_index(ei, 1, 1)
    for dtype in (torch.float16, torch.bfloat16):
        out = segment_gather_mul(torch.ones(1, 4, dtype=dtype), torch.ones(E, 4, dtype=dtype), csr)
        assert out.float().eq(4096.0).all(), dtype


# ---------------------------------------------------------------- edge cases ------------------


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", ["no_edges", "no_nodes", "no_src", "no_channels", "isolated"])
def test_empty_and_isolated(device, case):
    device = _device(device)
    n_src, n_dst, C, E = {
        "no_edges": (5, 4, 3, 0),
        "no_nodes": (0, 0, 3, 0),
        "no_src": (0, 6, 2, 0),
        "no_channels": (5, 4, 0, 7),
        "isolated": (6, 5, 4, 3),
    }[case]
    ei = _graph(n_src, n_dst, E, 0, device=device)
    if case == "isolated":  # receivers 0, 2, 4 and senders 1, 3, 5 have no edges
        ei = torch.tensor([[0, 2, 4], [1, 1, 3]], device=device)
    csr = CSR.from_edge_index(ei, n_src, n_dst)
    x = _feats(n_src, C, torch.float64, device, 1, requires_grad=True)
    edge = _feats(ei.shape[1], C, torch.float64, device, 2, requires_grad=True)
    out = segment_gather_mul(x, edge, csr)
    assert out.shape == (n_dst, C)
    torch.testing.assert_close(out, _direct(x, edge, ei, n_dst))
    out.sum().backward()
    assert x.grad.shape == x.shape and edge.grad.shape == edge.shape
    torch.testing.assert_close(x.grad, torch.zeros_like(x).index_add_(0, ei[0], edge.detach()))
    e1 = _feats(ei.shape[1], 1, torch.float64, device, 3, requires_grad=True)
    out1 = segment_gather_mul(x, e1, csr)
    out1.sum().backward()
    assert out1.shape == (n_dst, C) and e1.grad.shape == e1.shape
    a = _feats(n_dst, C, torch.float64, device, 4)
    assert gather_mul_csr(a, x, csr).shape == (ei.shape[1], C)
    torch.testing.assert_close(gather_dot_csr(a, x, csr), (a[ei[1]] * x[ei[0]]).sum(1, keepdim=True))
    if case == "isolated":
        assert out[[0, 2, 4]].abs().sum() == 0 and x.grad[[1, 3, 5]].abs().sum() == 0


@pytest.mark.parametrize("device", DEVICES)
def test_noncontiguous_inputs(device):
    device = _device(device)
    seed = random.randrange(2**31)
    n, C, E = 13, 6, 50
    ei = _graph(n, n, E, seed, device=device)
    csr = CSR.from_edge_index(ei, n, n)
    x, edge = _feats(n, C, torch.float64, device, seed), _feats(E, C, torch.float64, device, seed + 1)
    nx, ne = noncontiguous(x), noncontiguous(edge)
    assert not nx.is_contiguous() and not ne.is_contiguous()
    expected = _direct(x, edge, ei, n)
    torch.testing.assert_close(segment_gather_mul(nx, ne, csr), expected)
    torch.testing.assert_close(segment_gather_mul(x.t().contiguous().t(), edge, csr), expected)

    # strided index tensors (every other element of a larger buffer)
    def strided(t):
        buf = torch.empty(2 * t.numel(), dtype=t.dtype, device=t.device)
        buf[::2] = t
        return buf[::2]

    s = CSR(*(None if t is None else strided(t) for t in csr.args()), num_src=n, num_dst=n)
    assert not s.col.is_contiguous()
    torch.testing.assert_close(segment_gather_mul(x, edge, s), expected)
    a = _feats(n, C, torch.float64, device, seed + 2)
    torch.testing.assert_close(gather_mul_csr(noncontiguous(a), nx, s), a[ei[1]] * x[ei[0]])
    # expanded (stride-0) upstream gradient, as produced by .sum().backward()
    xg, eg = x.clone().requires_grad_(), edge.clone().requires_grad_()
    segment_gather_mul(xg, eg, s).sum().backward()
    torch.testing.assert_close(eg.grad, x[ei[0]])


@pytest.mark.parametrize("C", [32, 96])  # register-tile path / row-buffer path
def test_deterministic_across_runs_and_threads(C):
    seed = random.randrange(2**31)
    n, E = 300, 20000
    csr = CSR.from_edge_index(_graph(n, n, E, seed), n, n)
    x, edge = _feats(n, C, torch.float32, "cpu", seed), _feats(E, C, torch.float32, "cpu", seed + 1)
    a, ta = segment_gather_mul(x, edge, csr), segment_gather_mul(edge[:n], edge, csr.transpose())
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        b, tb = segment_gather_mul(x, edge, csr), segment_gather_mul(edge[:n], edge, csr.transpose())
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(a, b) and torch.equal(a, segment_gather_mul(x, edge, csr)) and torch.equal(ta, tb)
    # the float64 oracle agrees (the float32 kernel sums in CSR order)
    torch.testing.assert_close(
        a, ref.segment_gather_mul(x.double(), edge.double(), *csr.args()).float(), rtol=1e-4, atol=1e-4
    )


# ---------------------------------------------------------------- autograd --------------------


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("scalar_edge", [False, True], ids=["edge_EC", "edge_E1"])
@pytest.mark.parametrize("with_t", [True, False], ids=["t_given", "t_computed"])
@pytest.mark.parametrize("index_dtype", INDEX_DTYPES)
def test_gradcheck_and_gradgradcheck(device, scalar_edge, with_t, index_dtype):
    device = _device(device)
    seed = random.randrange(2**31)
    n_src, n_dst, C, E = 5, 4, 3, 11
    ei = _graph(n_src, n_dst, E, seed, device=device)
    csr = CSR.from_edge_index(ei, n_src, n_dst, index_dtype=index_dtype)
    rowptr, col, perm, *t = csr.args()
    t = t if with_t else [None, None, None]
    x = _feats(n_src, C, torch.float64, device, seed, requires_grad=True)
    edge = _feats(E, 1 if scalar_edge else C, torch.float64, device, seed + 1, requires_grad=True)
    f = lambda x, e: ops.segment_gather_mul(x, e, rowptr, col, perm, *t)  # noqa: E731
    assert torch.autograd.gradcheck(f, (x, edge)), f"seed {seed}"
    assert torch.autograd.gradgradcheck(f, (x, edge)), f"seed {seed}"
    a = _feats(n_dst, C, torch.float64, device, seed + 2, requires_grad=True)
    for op in (ops.gather_mul_csr, ops.gather_dot_csr):
        g = lambda a, b: op(a, b, rowptr, col, perm, *t)  # noqa: E731
        assert torch.autograd.gradcheck(g, (a, x)), f"{op} seed {seed}"
        assert torch.autograd.gradgradcheck(g, (a, x)), f"{op} seed {seed}"


def test_gradients_match_reference_and_t_variants():
    seed = random.randrange(2**31)
    n, C, E = 37, 19, 211
    ei = _graph(n, n, E, seed)
    csr = CSR.from_edge_index(ei, n, n)
    x, edge = _feats(n, C, torch.float64, "cpu", seed, True), _feats(E, C, torch.float64, "cpu", seed + 1, True)
    g = _feats(n, C, torch.float64, "cpu", seed + 2)
    want = torch.autograd.grad(_direct(x, edge, ei, n), (x, edge), g)
    got = torch.autograd.grad(segment_gather_mul(x, edge, csr), (x, edge), g)
    got_no_t = torch.autograd.grad(
        ops.segment_gather_mul(x, edge, csr.rowptr, csr.col, csr.perm, None, None, None), (x, edge), g
    )
    for a, b, c in zip(got, got_no_t, want):
        torch.testing.assert_close(a, c, rtol=1e-12, atol=1e-12, msg=f"seed {seed}")
        assert torch.equal(a, b)
    # the transposed CSR built by the backward equals the one CSR builds
    t = ref.transpose_csr(csr.rowptr, csr.col, csr.perm, n)
    for a, b in zip(t, (csr.t_rowptr, csr.t_col, csr.t_perm)):
        assert torch.equal(a, b)


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    device = _device(device)
    n_src, n_dst, C, E = 6, 5, 4, 14
    ei = _graph(n_src, n_dst, E, 3, device=device)
    csr = CSR.from_edge_index(ei, n_src, n_dst)
    rowptr, col, perm, t_rowptr, t_col, t_perm = csr.args()
    x, a, edge = (_feats(r, C, torch.float32, device, i) for i, r in enumerate((n_src, n_dst, E)))
    opcheck(ops.segment_gather_mul, (x, edge, rowptr, col, perm, t_rowptr, t_col, t_perm))
    x, a = x.requires_grad_(), a.requires_grad_()
    e1 = _feats(E, 1, torch.float32, device, 3, True)
    opcheck(ops.segment_gather_mul, (x, edge.requires_grad_(), rowptr, col, perm, t_rowptr, t_col, t_perm))
    opcheck(ops.segment_gather_mul, (x, e1, rowptr, col, perm, None, None, None))  # t_* rebuilt in backward
    opcheck(ops.gather_mul_csr, (a, x, rowptr, col, perm, t_rowptr, t_col, t_perm))
    opcheck(ops.gather_dot_csr, (a, x, rowptr, col, perm, None, None, None))
    # receiver-sorted (perm None) and int32
    s = CSR.for_graph(graph_structure(sx.Architecture.mlp([3, 4, 2])), 2, index_dtype=torch.int32).to(device)
    x = _feats(s.num_src, C, torch.float32, device, 4, True)
    opcheck(ops.segment_gather_mul, (x, _feats(s.num_edges, C, torch.float32, device, 5, True), *s.args()))


def test_torch_compile_fullgraph():
    seed = random.randrange(2**31)
    n, C, E = 17, 8, 60
    ei = _graph(n, n, E, seed)
    csr = CSR.from_edge_index(ei, n, n)

    # aot_eager: Dynamo full-graph capture + AOTAutograd on fake tensors (fwd and bwd graphs)
    # without Inductor code generation, which would dominate the test time
    @torch.compile(fullgraph=True, dynamic=True, backend="aot_eager")
    def layer(x, edge, w):
        h = segment_gather_mul(x, edge, csr)
        return torch.tanh(h @ w) + gather_dot_csr(h, x, csr).sum()

    x, edge = _feats(n, C, torch.float32, "cpu", seed, True), _feats(E, C, torch.float32, "cpu", seed + 1, True)
    w = _feats(C, C, torch.float32, "cpu", seed + 2, True)
    y = layer(x, edge, w)
    y.sum().backward()
    x2, e2, w2 = (t.detach().clone().requires_grad_() for t in (x, edge, w))
    h = _direct(x2, e2, ei, n)
    y2 = torch.tanh(h @ w2) + (h[ei[1]] * x2[ei[0]]).sum()
    y2.sum().backward()
    torch.testing.assert_close(y, y2, rtol=1e-4, atol=1e-4)
    for a, b in ((x, x2), (edge, e2), (w, w2)):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-3)


def test_torch_compile_inductor_forward():
    """The default (Inductor) backend: the ops stay single extern-kernel nodes, no graph break."""
    n, C, E = 11, 4, 30
    ei = _graph(n, n, E, random.randrange(2**31))
    csr = CSR.from_edge_index(ei, n, n, index_dtype=torch.int32)
    fn = torch.compile(lambda x, e: (segment_gather_mul(x, e, csr), gather_mul_csr(x, x, csr)), fullgraph=True)
    x, edge = _feats(n, C, torch.float32, "cpu", 0), _feats(E, 1, torch.float32, "cpu", 1)
    out, prod = fn(x, edge)
    torch.testing.assert_close(out, _direct(x, edge, ei, n))
    torch.testing.assert_close(prod, x[ei[1]] * x[ei[0]])


# ---------------------------------------------------------------- bad input -------------------


def _small():
    ei = torch.tensor([[0, 1, 2, 2], [1, 0, 1, 2]])
    return ei, CSR.from_edge_index(ei, 3, 3), torch.randn(3, 4), torch.randn(4, 4)


@pytest.mark.parametrize(
    "call, exc, match",
    [
        (lambda c, x, e: segment_gather_mul(x[:2], e, c), ValueError, r"x must have 3 rows \(num_src\)"),
        (lambda c, x, e: segment_gather_mul(x, e[:3], c), ValueError, r"edge must have 4 rows \(E\)"),
        (
            lambda c, x, e: segment_gather_mul(x, e[:, :2], c),
            ValueError,
            r"edge must be \[E, C\] = \[4, 4\] or \[E, 1\]",
        ),
        (
            lambda c, x, e: segment_gather_mul(x, e.double(), c),
            TypeError,
            "edge is torch.float64 on cpu; expected torch.float32",
        ),
        (lambda c, x, e: segment_gather_mul(x.long(), e, c), TypeError, "x must be float16/bfloat16/float32/float64"),
        (lambda c, x, e: segment_gather_mul(x[0], e, c), ValueError, r"x must be 2-D \[num_src, C\]"),
        (lambda c, x, e: segment_gather_mul(x, e, c.args()), TypeError, "csr must be a scalegmn_ext.ops.CSR"),
        (lambda c, x, e: gather_mul_csr(x, x[:, :3], c), ValueError, "b must have the 4 channels of a"),
        (lambda c, x, e: gather_dot_csr(x[:1], x, c), ValueError, r"a must have 3 rows \(num_dst\)"),
    ],
)
def test_wrapper_errors(call, exc, match):
    _, csr, x, e = _small()
    with pytest.raises(exc, match=match):
        call(csr, x, e)


def test_csr_construction_errors():
    ei, csr, x, e = _small()
    with pytest.raises(ValueError, match=r"edge_index must be \[2, E\]"):
        CSR.from_edge_index(ei.t())
    with pytest.raises(TypeError, match="edge_index must be an integer tensor"):
        CSR.from_edge_index(ei.float())
    with pytest.raises(ValueError, match=r"edge_index\[0\] \(src\) holds indices outside \[0, 2\)"):
        CSR.from_edge_index(ei, 2, 3)
    with pytest.raises(ValueError, match=r"edge_index\[1\] \(dst\) holds indices outside"):
        CSR.from_edge_index(torch.tensor([[0], [-1]]), 1, 1)
    with pytest.raises(TypeError, match="col must have the index dtype of rowptr"):
        CSR(csr.rowptr, csr.col.int(), None, csr.t_rowptr, csr.t_col, csr.t_perm, num_src=3, num_dst=3)
    with pytest.raises(ValueError, match="rowptr must have 4 entries"):
        CSR(csr.rowptr[:-1], csr.col, None, csr.t_rowptr, csr.t_col, csr.t_perm, num_src=3, num_dst=3)
    with pytest.raises(ValueError, match="t_col must have 4 entries"):
        CSR(csr.rowptr, csr.col, csr.perm, csr.t_rowptr, csr.t_col[:3], csr.t_perm, num_src=3, num_dst=3)
    bad = CSR(csr.rowptr, csr.col.flip(0), csr.perm, csr.t_rowptr, csr.t_col, csr.t_perm, num_src=3, num_dst=3)
    with pytest.raises(ValueError, match="describes other edges"):
        bad.validate()
    with pytest.raises(ValueError, match="csr is on"):
        segment_gather_mul(x.to("meta"), e.to("meta"), csr)


def test_out_of_range_indices_raise_in_cpp():
    """Direct op calls with bad index values raise a RuntimeError naming the entry (no segfault)."""
    _, csr, x, e = _small()
    rowptr, col, perm, t_rowptr, t_col, t_perm = csr.args()
    bad_col = col.clone()
    bad_col[2] = 1000
    with pytest.raises(RuntimeError, match=r"col\[2\] = 1000 is out of range for x with 3 rows"):
        ops.segment_gather_mul(x, e, rowptr, bad_col, perm, None, None, None)
    bad_col[2] = -1
    with pytest.raises(RuntimeError, match=r"col\[2\] = -1 is out of range for b with 3 rows"):
        ops.gather_mul_csr(x, x, rowptr, bad_col, perm, None, None, None)
    with pytest.raises(RuntimeError, match=r"col\[2\] = -1 is out of range"):
        ops.gather_dot_csr(x, x, rowptr, bad_col, perm, None, None, None)
    # a wrapper call with a hand-built CSR holding a bad col also raises (the kernel checks)
    with pytest.raises(RuntimeError, match=r"col\[2\] = -1"):
        segment_gather_mul(x, e, CSR(rowptr, bad_col, perm, t_rowptr, t_col, t_perm, num_src=3, num_dst=3))
    p = torch.arange(4)
    p[1] = 4
    with pytest.raises(RuntimeError, match=r"perm\[1\] = 4 is out of range \[0, 4\)"):
        ops.segment_gather_mul(x, e, rowptr, col, p, None, None, None)
    with pytest.raises(RuntimeError, match=r"rowptr\[-1\] must equal the number of edges"):
        ops.segment_gather_mul(x, e, torch.tensor([0, 1, 2, 3]), col, None, None, None, None)
    with pytest.raises(RuntimeError, match=r"rowptr must be non-decreasing, but rowptr\[2\] < rowptr\[1\]"):
        ops.segment_gather_mul(x, e, torch.tensor([0, 3, 1, 4]), col, None, None, None, None)
    with pytest.raises(RuntimeError, match=r"rowptr\[0\] must be 0"):
        ops.gather_mul_csr(x, x, torch.tensor([1, 2, 3, 4]), col, None, None, None, None)
    with pytest.raises(RuntimeError, match="col must have the index dtype of rowptr"):
        ops.segment_gather_mul(x, e, rowptr.int(), col, None, None, None, None)
    with pytest.raises(RuntimeError, match=r"t_rowptr must have 4 entries"):
        ops.segment_gather_mul(x, e, rowptr, col, perm, t_rowptr[:-1], t_col, t_perm)
    with pytest.raises(RuntimeError, match="t_rowptr and t_col must be given together"):
        ops.segment_gather_mul(x, e, rowptr, col, perm, t_rowptr, None, None)
    with pytest.raises(RuntimeError, match=r"edge must be \[E, C\] = \[4, 4\] or \[E, 1\]"):
        ops.segment_gather_mul(x, e[:, :2], rowptr, col, perm, None, None, None)


# ---------------------------------------------------------------- CSR helper ------------------


def test_csr_from_edge_index_and_for_graph():
    arch = sx.Architecture.mlp([3, 5, 4, 2])
    s = graph_structure(arch)
    B = 3
    ei, rowptr, _ = s.batch(B)
    a = CSR.for_graph(s, B).validate()
    b = CSR.from_edge_index(ei, B * arch.num_nodes, B * arch.num_nodes).validate()
    assert a.perm is None and b.perm is None  # receiver-major edges: no permutation needed
    assert torch.equal(a.rowptr, rowptr) and torch.equal(a.col, ei[0])
    for u, v in zip(a.args(), b.args()):
        assert (u is None and v is None) or torch.equal(u, v)
    # sender-sorted edge list: perm given, t_perm None
    order = ei[0].argsort(stable=True)
    perm_ei = ei[:, order]
    c = CSR.from_edge_index(perm_ei, a.num_src, a.num_dst).validate()
    assert c.perm is not None and c.t_perm is None
    i32 = a.to(index_dtype=torch.int32)
    assert all(t.dtype == torch.int32 for t in i32.args() if t is not None) and i32.num_edges == a.num_edges
    assert CSR.for_graph(s, 0).num_edges == 0 and CSR.for_graph(s, 0).rowptr.tolist() == [0]
    tr = c.transpose()
    assert (tr.num_src, tr.num_dst) == (c.num_dst, c.num_src)
    assert all(u is v for u, v in zip(tr.transpose().args(), c.args()))
    x = torch.randn(a.num_src, 3, dtype=torch.float64)
    e = torch.randn(a.num_edges, 3, dtype=torch.float64)
    torch.testing.assert_close(segment_gather_mul(x, e, a), _direct(x, e, ei, a.num_dst))
    torch.testing.assert_close(segment_gather_mul(x, e[order], c), _direct(x, e, ei, a.num_dst))
