"""canonical_segment_sum (+ its backward op): kernels vs reference, invariances, autograd."""

import random

import pytest
import torch
from torch.library import opcheck

import scalegmn_ext as sx
from scalegmn_ext.ops import canonical_segment_sum
from scalegmn_ext.reference import canonical_segment_sum as ref
from scalegmn_ext.testing import DEVICES, FLOAT_DTYPES, noncontiguous

pytestmark = pytest.mark.skipif(not sx.HAS_EXTENSION, reason="extension not built")

ops = torch.ops.scalegmn
MODES = {"identity": 0, "abs": 1, "l2": 2}


def _device(device):
    if device == "cuda" and not sx.has_cuda_kernels():
        pytest.skip("extension built without CUDA kernels")
    return device


def _ptr(sizes, start=0, dtype=torch.int64, device="cpu"):
    return torch.tensor([start] + sizes, dtype=dtype).cumsum(0).to(dtype=dtype, device=device)


def _case(seed, dtype=torch.float64, device="cpu", index_dtype=torch.int64, gaps=True):
    """Random h [N, C], ptr with empty segments (and rows before/after the segments), mask."""
    rnd = random.Random(seed)
    g = torch.Generator().manual_seed(seed)
    G, C = rnd.randint(1, 9), rnd.choice([1, 3, 5, 32, 67, 300])
    sizes = [rnd.choice([0, 1, 2, 7, 19]) for _ in range(G)]
    start = rnd.randint(0, 3) if gaps else 0
    N = start + sum(sizes) + (rnd.randint(0, 3) if gaps else 0)
    h = torch.randn(N, C, generator=g, dtype=torch.float64).to(dtype=dtype, device=device)
    mask = (torch.rand(N, generator=g) > 0.3).to(device)
    return h, _ptr(sizes, start, index_dtype, device), mask


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("index_dtype", [torch.int64, torch.int32])
@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("use_mask", [True, False], ids=["mask", "no_mask"])
def test_matches_reference(device, dtype, index_dtype, mode, use_mask):
    device = _device(device)
    seed = random.randrange(2**31)
    h, ptr, mask = _case(seed, dtype, device, index_dtype)
    mask = mask if use_mask else None
    eps = random.choice([0.0, 1e-3]) if mode == "l2" else 1e-6
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)
    out = canonical_segment_sum(h, ptr, mask, mode, eps)
    assert out.shape == (ptr.numel() - 1, h.shape[1]) and out.dtype == dtype
    torch.testing.assert_close(
        out, ref.canonical_segment_sum(h, ptr, mask, MODES[mode], eps), **tol, msg=f"seed {seed}"
    )
    # backward op vs the explicit reference formula and vs autograd through the reference
    g = torch.randn(out.shape, dtype=torch.float64).to(dtype=dtype, device=device)
    gh = ops.canonical_segment_sum_backward(g, h, ptr, mask, MODES[mode], eps)
    torch.testing.assert_close(
        gh, ref.canonical_segment_sum_backward(g, h, ptr, mask, MODES[mode], eps), **tol, msg=f"seed {seed}"
    )
    hr = h.detach().clone().requires_grad_()
    (want,) = torch.autograd.grad(ref.canonical_segment_sum(hr, ptr, mask, MODES[mode], eps), hr, g)
    torch.testing.assert_close(gh, want, **tol, msg=f"seed {seed}")
    if device == "cuda":
        cpu = ops.canonical_segment_sum(h.cpu(), ptr.cpu(), None if mask is None else mask.cpu(), MODES[mode], eps)
        torch.testing.assert_close(out.cpu(), cpu, **tol)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("mode", list(MODES))
def test_half_precision_vs_float64(device, dtype, mode):
    device = _device(device)
    seed = random.randrange(2**31)
    h, ptr, mask = _case(seed, dtype, device, gaps=False)
    out = canonical_segment_sum(h, ptr, mask, mode, 1e-3)
    exact = ref.canonical_segment_sum(h.double(), ptr, mask, MODES[mode], 1e-3)
    assert out.dtype == dtype
    assert (out.double() - exact).norm() <= 1e-2 * exact.norm() + 1e-3, f"seed {seed}"
    g = torch.randn(out.shape, dtype=torch.float64, device=device)
    gh = ops.canonical_segment_sum_backward(g.to(dtype), h, ptr, mask, MODES[mode], 1e-3)
    want = ref.canonical_segment_sum_backward(g, h.double(), ptr, mask, MODES[mode], 1e-3)
    assert (gh.double() - want).norm() <= 1e-2 * want.norm() + 1e-3, f"seed {seed}"


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mode", list(MODES))
def test_empty_inputs(device, mode):
    device = _device(device)
    m = MODES[mode]
    cases = [
        (torch.randn(0, 4), _ptr([])),  # no rows, no segments
        (torch.randn(0, 4), _ptr([0, 0])),  # no rows, two empty segments
        (torch.randn(5, 4), _ptr([])),  # rows but no segments
        (torch.randn(5, 0), _ptr([2, 3])),  # no channels
        (torch.randn(6, 3), _ptr([0, 4, 0], 1)),  # empty segments, rows outside
    ]
    for h, ptr in cases:
        h, ptr = h.double().to(device).requires_grad_(), ptr.to(device)
        out = canonical_segment_sum(h, ptr, None, mode)
        assert out.shape == (ptr.numel() - 1, h.shape[1])
        torch.testing.assert_close(out, ref.canonical_segment_sum(h, ptr, None, m, 1e-6))
        out.sum().backward()
        assert h.grad.shape == h.shape
    # all rows masked out, and rows outside every segment: zero output and zero gradient
    h = torch.randn(6, 3, dtype=torch.float64, device=device, requires_grad=True)
    out = canonical_segment_sum(
        h, _ptr([2, 3], 1, device=device), torch.zeros(6, dtype=torch.bool, device=device), mode
    )
    assert out.abs().sum() == 0
    out.sum().backward()
    assert h.grad.abs().sum() == 0
    h.grad = None
    canonical_segment_sum(h, _ptr([2, 3], 1, device=device), None, mode).sum().backward()
    assert h.grad[0].abs().sum() == 0 and h.grad[1:].abs().sum() > 0


@pytest.mark.parametrize("device", DEVICES)
def test_noncontiguous_inputs(device):
    device = _device(device)
    seed = random.randrange(2**31)
    h, ptr, mask = _case(seed, torch.float64, device)
    nptr = torch.stack([ptr, ptr], 1)[:, 0]
    nmask = torch.stack([mask, mask], 1)[:, 0]
    assert not nptr.is_contiguous() and not nmask.is_contiguous() and not noncontiguous(h).is_contiguous()
    for mode in MODES:
        want = ref.canonical_segment_sum(h, ptr, mask, MODES[mode], 1e-3)
        torch.testing.assert_close(canonical_segment_sum(noncontiguous(h), nptr, nmask, mode, 1e-3), want)
        torch.testing.assert_close(canonical_segment_sum(h.t().contiguous().t(), ptr, mask, mode, 1e-3), want)


def test_deterministic_across_threads():
    h, ptr, mask = _case(random.randrange(2**31), torch.float32)
    h = h.repeat(40, 1)
    ptr = torch.linspace(0, h.shape[0], 9).long()
    a = canonical_segment_sum(h, ptr, None, "l2")
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        b = canonical_segment_sum(h, ptr, None, "l2")
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(a, b)


# ---------------------------------------------------------------- invariances -----------------


@pytest.mark.parametrize("device", DEVICES)
def test_sign_and_scale_invariance(device):
    device = _device(device)
    seed = random.randrange(2**31)
    g = torch.Generator().manual_seed(seed)
    h, ptr, mask = _case(seed, torch.float64, device)
    N = h.shape[0]
    signs = (torch.randint(0, 2, (N, 1), generator=g) * 2 - 1).to(h)
    scales = torch.empty(N, 1, dtype=torch.float64).uniform_(0.1, 10.0, generator=g).to(device)
    msg = f"seed {seed}"
    # mode 1: sign flips of rows leave the readout unchanged (exactly)
    assert torch.equal(
        canonical_segment_sum(h * signs, ptr, mask, "abs"), canonical_segment_sum(h, ptr, mask, "abs")
    ), msg
    # mode 2: positive rescaling of rows leaves it unchanged (eps = 0: up to rounding)
    torch.testing.assert_close(
        canonical_segment_sum(h * scales, ptr, mask, "l2", 0.0),
        canonical_segment_sum(h, ptr, mask, "l2", 0.0),
        rtol=1e-12,
        atol=1e-12,
        msg=msg,
    )
    # ... and the identity mode is not invariant (sanity)
    assert not torch.allclose(
        canonical_segment_sum(h * scales, ptr, None, "identity"), canonical_segment_sum(h, ptr, None, "identity")
    )
    # permuting rows within a segment: invariant in every mode
    perm = torch.arange(N)
    for s, e in zip(ptr[:-1].tolist(), ptr[1:].tolist()):
        perm[s:e] = s + torch.randperm(e - s, generator=g)
    perm = perm.to(device)
    for mode in MODES:
        torch.testing.assert_close(
            canonical_segment_sum(h[perm], ptr, mask[perm], mode),
            canonical_segment_sum(h, ptr, mask, mode),
            rtol=1e-12,
            atol=1e-12,
        )


def test_gradient_conventions_at_zero():
    h = torch.tensor([[0.0, 2.0], [0.0, 0.0]], dtype=torch.float64, requires_grad=True)
    ptr = torch.tensor([0, 2])
    canonical_segment_sum(h, ptr, None, "abs").sum().backward()
    assert h.grad.tolist() == [[0.0, 1.0], [0.0, 0.0]]  # sign(0) = 0
    h.grad = None
    eps = 0.5
    out = canonical_segment_sum(h, ptr, None, "l2", eps)
    torch.testing.assert_close(out, torch.tensor([[0.0, 2.0 / 2.5]], dtype=torch.float64))
    out.backward(torch.tensor([[1.0, 3.0]], dtype=torch.float64))
    # zero row: g / eps;  row (0, 2): (g - y (y.g) (n+eps)/n) / (n+eps) -> component 1: 3/2.5 - 2*6/(2*2.5^2)
    torch.testing.assert_close(h.grad[1], torch.tensor([2.0, 6.0], dtype=torch.float64))
    torch.testing.assert_close(h.grad[0], torch.tensor([1 / 2.5, 3 / 2.5 - 12 / (2 * 2.5**2)], dtype=torch.float64))


# ---------------------------------------------------------------- autograd / registration -----


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mode, eps", [("identity", 0.0), ("abs", 0.0), ("l2", 1e-2), ("l2", 0.0)])
def test_gradcheck_and_gradgradcheck(device, mode, eps):
    device = _device(device)
    seed = random.randrange(2**31)
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(9, 3, generator=g, dtype=torch.float64)
    h = (h + 0.2 * h.sign()).to(device).requires_grad_()  # away from abs's kink at 0
    ptr = _ptr([3, 0, 4], 1, device=device)
    mask = torch.tensor([1, 1, 0, 1, 1, 1, 0, 1, 1], dtype=torch.bool, device=device)
    f = lambda h: canonical_segment_sum(h, ptr, mask, mode, eps)  # noqa: E731
    assert torch.autograd.gradcheck(f, (h,)), f"seed {seed}"
    assert torch.autograd.gradgradcheck(f, (h,)), f"seed {seed}"
    # the backward op's own autograd (w.r.t. grad and h), once more
    gr = torch.randn(3, 3, generator=g, dtype=torch.float64).to(device).requires_grad_()
    b = lambda gr, h: ops.canonical_segment_sum_backward(gr, h, ptr, mask, MODES[mode], eps)  # noqa: E731
    assert torch.autograd.gradcheck(b, (gr, h)), f"seed {seed}"
    assert torch.autograd.gradgradcheck(b, (gr, h)), f"seed {seed}"


@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    device = _device(device)
    h, ptr, mask = _case(5, torch.float32, device)
    opcheck(ops.canonical_segment_sum, (h, ptr, mask, 2, 1e-3))
    h.requires_grad_()
    opcheck(ops.canonical_segment_sum, (h, ptr, None, 1, 0.0))
    opcheck(ops.canonical_segment_sum, (h, ptr.int(), mask, 2, 1e-3))
    g = torch.randn(ptr.numel() - 1, h.shape[1], device=device, requires_grad=True)
    opcheck(ops.canonical_segment_sum_backward, (g, h, ptr, mask, 2, 1e-3))


def test_torch_compile_fullgraph():
    h, ptr, mask = _case(random.randrange(2**31), torch.float32)
    h.requires_grad_()

    @torch.compile(fullgraph=True, dynamic=True, backend="aot_eager")
    def readout(h, w):
        return (canonical_segment_sum(h, ptr, mask, "abs") + canonical_segment_sum(h @ w, ptr, None, "l2", 1e-3)).sum()

    w = torch.randn(h.shape[1], h.shape[1], requires_grad=True)
    y = readout(h, w)
    y.backward()
    h2, w2 = h.detach().clone().requires_grad_(), w.detach().clone().requires_grad_()
    y2 = (
        ref.canonical_segment_sum(h2, ptr, mask, 1, 0.0) + ref.canonical_segment_sum(h2 @ w2, ptr, None, 2, 1e-3)
    ).sum()
    y2.backward()
    torch.testing.assert_close(y, y2, rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(h.grad, h2.grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(w.grad, w2.grad, rtol=1e-4, atol=1e-4)


# ---------------------------------------------------------------- bad input -------------------


@pytest.mark.parametrize(
    "args, exc, match",
    [
        (lambda h, p, m: (h[0], p, m, 0), ValueError, r"h must be 2-D \[N, C\]"),
        (lambda h, p, m: (h.long(), p, m, 0), TypeError, "h must be float16/bfloat16/float32/float64"),
        (lambda h, p, m: (h, p.float(), m, 0), TypeError, "ptr must be int64 or int32"),
        (lambda h, p, m: (h, p[None], m, 0), ValueError, r"ptr must be 1-D \[G \+ 1\]"),
        (lambda h, p, m: (h, p, m.int(), 0), TypeError, "mask must be bool"),
        (lambda h, p, m: (h, p, m[:-1], 0), ValueError, r"mask must be \[10\] \(one entry per row of h\)"),
        (lambda h, p, m: (h, p, m, "sine"), ValueError, "mode must be one of"),
        (lambda h, p, m: (h, p, m, 3), ValueError, r"mode must be 0 \(identity\), 1 \(abs\) or 2 \(l2\)"),
        (lambda h, p, m: (h, p, m, 2, -1.0), ValueError, "eps must be >= 0"),
    ],
)
def test_wrapper_errors(args, exc, match):
    h, ptr, mask = torch.randn(10, 3), _ptr([4, 6]), torch.ones(10, dtype=torch.bool)
    with pytest.raises(exc, match=match):
        canonical_segment_sum(*args(h, ptr, mask))


def test_bad_ptr_raises_in_cpp():
    h = torch.randn(10, 3)
    with pytest.raises(RuntimeError, match=r"ptr\[-1\] = 11 exceeds the number of rows of h \(10\)"):
        ops.canonical_segment_sum(h, torch.tensor([0, 4, 11]), None, 0, 0.0)
    with pytest.raises(RuntimeError, match=r"ptr must be non-decreasing, but ptr\[2\] < ptr\[1\]"):
        ops.canonical_segment_sum(h, torch.tensor([0, 6, 4]), None, 1, 0.0)
    with pytest.raises(RuntimeError, match=r"ptr\[0\] must be >= 0"):
        ops.canonical_segment_sum_backward(torch.randn(2, 3), h, torch.tensor([-1, 4, 6]), None, 2, 0.0)
    with pytest.raises(RuntimeError, match=r"grad must be \[G, C\] = \[2, 3\]"):
        ops.canonical_segment_sum_backward(torch.randn(3, 3), h, torch.tensor([0, 4, 6]), None, 2, 0.0)
    with pytest.raises(RuntimeError, match="mode must be 0 \\(identity\\), 1 \\(abs\\) or 2 \\(l2\\), got 7"):
        ops.canonical_segment_sum(h, torch.tensor([0, 4]), None, 7, 0.0)


# ---------------------------------------------------------------- mode 2: exactness at every magnitude


def _per_row(h, eps, g=None):
    """Mode 2 with one segment per row, so out[i] = c(h[i]) (and the gradient row i uses g[i])."""
    ptr = torch.arange(h.shape[0] + 1, device=h.device)
    if g is None:
        return ops.canonical_segment_sum(h, ptr, None, 2, eps)
    return ops.canonical_segment_sum_backward(g, h, ptr, None, 2, eps)


def _row_err(a, b):
    """max_c |a - b| / max_c |b| per row (0 where both rows are exactly equal)."""
    num = (a - b).abs().amax(1)
    den = b.abs().amax(1)
    return torch.where(num == 0, torch.zeros_like(num), num / den)


def _magnitude_rows(dtype, seed):
    """Random rows of 7 channels with magnitudes spread log-uniformly over 1e-300..1e300
    (float64) / 1e-35..1e35 (float32), some channels exactly 0, and two exactly-zero rows."""
    g = torch.Generator().manual_seed(seed)
    e = 300 if dtype == torch.float64 else 35
    exps = torch.linspace(-e, e, 61, dtype=torch.float64)
    base = torch.randn(61, 7, generator=g, dtype=torch.float64)
    base[:, 3] = 0.0
    h = base * 10.0 ** exps[:, None]
    return torch.cat([h, torch.zeros(2, 7, dtype=torch.float64)]).to(dtype)


def _subnormal_rows(dtype):
    """Rows of small integers times the dtype's subnormal unit 2^k (exactly representable, and
    scaling them by powers of two is exact): k = -1070 (float64) / -145 (float32)."""
    k = -1070 if dtype == torch.float64 else -145
    ints = torch.tensor([[1, 0, 0, 0], [3, -1, 2, 0], [-7, 7, 5, -2], [0, 0, 0, -1], [1, 1, 1, 1]], dtype=torch.float64)
    return ints, (ints * 2.0**k).to(dtype)


def _in_normal_range(h, a):
    """Rows whose rescaling by a stays exactly in the normal range (a h is then a correctly
    rounded copy of h; outside it the input itself loses precision and c(a h) may truly differ)."""
    fi = torch.finfo(h.dtype)
    ah = h.double().abs() * a
    nz = h != 0
    lo = torch.where(nz, ah, torch.full_like(ah, float("inf"))).amin(1)
    return (lo >= fi.tiny) & (ah.amax(1) <= fi.max / 16)


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_l2_eps0_exact_scale_invariance_at_every_magnitude(dtype, tol):
    seed = random.randrange(2**31)
    h = _magnitude_rows(dtype, seed)
    c = _per_row(h, 0.0)
    assert torch.isfinite(c).all(), f"seed {seed}"
    assert (c[-2:] == 0).all()  # zero rows give exactly 0 with eps = 0 (no 0/0)
    # c(h) has unit norm (h != 0) and is c of the O(1) base row: the magnitude is gone exactly
    norms = torch.linalg.vector_norm(c[:-2].double(), dim=1)
    torch.testing.assert_close(norms, torch.ones_like(norms), rtol=0, atol=10 * tol)
    for a in [1e-3, 0.01, 0.37, 1.0 + 2**-20, 3.0, 77.7, 1e3]:
        keep = _in_normal_range(h, a)
        assert keep.sum() >= 55  # nearly all rows take part
        ah = (h.double() * a).to(dtype)[keep]
        err = _row_err(_per_row(ah, 0.0), c[keep])
        assert err.max() <= tol, f"a={a} seed {seed}: max row error {err.max():.3g}"


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_l2_eps0_subnormal_rows(dtype, tol):
    ints, h = _subnormal_rows(dtype)
    assert (h.abs().amax(1) < torch.finfo(dtype).tiny).all()  # really subnormal
    c = _per_row(h, 0.0)
    assert torch.isfinite(c).all()
    # the exact answer is c of the integer rows (computed in float64 at magnitude 1)
    want = ints / torch.linalg.vector_norm(ints, dim=1, keepdim=True)
    assert _row_err(c.double(), want).max() <= tol
    # power-of-two rescaling is exact on the input, so c must not move (into the normal range too)
    for j in [-4, 1, 7, 30, 100] + ([500, 1000] if dtype == torch.float64 else []):
        assert _row_err(_per_row(h * 2.0**j, 0.0), c).max() <= tol, f"2^{j}"
    torch.testing.assert_close(
        ref.canonical_segment_sum(h, torch.arange(h.shape[0] + 1), None, 2, 0.0), c, rtol=tol, atol=0
    )


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
@pytest.mark.parametrize("eps", [0.0, 1e-3])
def test_l2_extreme_rows_compiled_matches_reference(dtype, tol, eps):
    seed = random.randrange(2**31)
    h = torch.cat([_magnitude_rows(dtype, seed), torch.nn.functional.pad(_subnormal_rows(dtype)[1], (0, 3))])
    ptr = torch.arange(h.shape[0] + 1)
    out = ops.canonical_segment_sum(h, ptr, None, 2, eps)
    want = ref.canonical_segment_sum(h, ptr, None, 2, eps)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, want, rtol=tol, atol=0, msg=f"seed {seed}")
    # the same rows summed into segments of several rows (a mask leaves some out)
    ptr2 = torch.tensor([0, 5, 5, 30, h.shape[0]])
    mask = torch.arange(h.shape[0]) % 3 != 1
    torch.testing.assert_close(
        ops.canonical_segment_sum(h, ptr2, mask, 2, eps),
        ref.canonical_segment_sum(h, ptr2, mask, 2, eps),
        rtol=tol,
        atol=tol,
    )


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_l2_eps0_gradient_at_every_magnitude(dtype, tol):
    """dh is homogeneous of degree -1 (dh(a h) = dh(h) / a) and matches the reference at every
    magnitude; zero rows get 0 with eps = 0."""
    seed = random.randrange(2**31)
    gen = torch.Generator().manual_seed(seed)
    h = _magnitude_rows(dtype, seed)
    g = torch.randn(h.shape, generator=gen, dtype=torch.float64).to(dtype)
    # keep |dh| ~ |g| / ||h|| representable: rows down to 1e-290 / 1e-30 and up from there
    e = 290 if dtype == torch.float64 else 30
    keep = (h.double().abs().amax(1) >= 10.0**-e) | (h.abs().amax(1) == 0)
    h, g = h[keep], g[keep]
    dh = _per_row(h, 0.0, g)
    assert torch.isfinite(dh).all(), f"seed {seed}"
    assert (dh[-2:] == 0).all()
    # errors relative to the row's gradient scale |g| / ||h|| (= |g| ||J||): dh itself may be
    # much smaller when g is nearly parallel to h (cancellation in g - y beta, not a scale effect)
    hd = h.double()
    m = hd.abs().amax(1, keepdim=True).clamp_min(1e-300)  # test-side max-scaled ||h||; zero rows: unit 1
    norm = m * torch.linalg.vector_norm(hd / m, dim=1, keepdim=True)
    unit = torch.where(norm > 0, g.double().abs().amax(1, keepdim=True) / norm, 1.0)

    def err(a, b, unit):
        return ((a.double() - b.double()).abs() / unit).amax()

    want = ref.canonical_segment_sum_backward(g, h, torch.arange(h.shape[0] + 1), None, 2, 0.0)
    assert err(dh, want, unit) <= tol, f"seed {seed}"
    for a in [1e-3, 0.37, 3.0, 1e3]:
        sel = _in_normal_range(h, a) & (h.abs().amax(1) > 0)
        dha = _per_row((hd * a).to(dtype)[sel], 0.0, g[sel])
        e = err(dha.double() * a, dh[sel], unit[sel])
        assert e <= tol, f"a={a} seed {seed}: {e:.3g}"


@pytest.mark.parametrize("eps", [0.0, 0.25])
def test_l2_zero_rows_finite_at_every_order(eps):
    """Zero rows: c = 0, dh = g / eps (eps > 0) or 0 (eps = 0), double backward 0 -- never NaN,
    through the compiled op (with its autograd) and through autograd of the reference."""
    ptr = torch.tensor([0, 2, 3])
    base = torch.tensor([[0.0, 0.0, 0.0], [1.0, -2.0, 0.5], [0.0, 0.0, 0.0]], dtype=torch.float64)
    g = torch.tensor([[1.0, 3.0, -2.0], [0.5, 0.0, 4.0]], dtype=torch.float64)
    zero = [0, 2]
    for f in (
        lambda h: canonical_segment_sum(h, ptr, None, "l2", eps),
        lambda h: ref.canonical_segment_sum(h, ptr, None, 2, eps),
    ):
        h = base.clone().requires_grad_()
        out = f(h)
        (dh,) = torch.autograd.grad(out, h, g, create_graph=True)
        want0 = g[[0, 1]] / eps if eps > 0 else torch.zeros(2, 3, dtype=torch.float64)
        torch.testing.assert_close(dh[zero], want0)
        (ddh,) = torch.autograd.grad((dh * torch.randn(3, 3, dtype=torch.float64)).sum(), h, create_graph=True)
        assert torch.isfinite(ddh).all() and (ddh[zero] == 0).all()
        (dddh,) = torch.autograd.grad(ddh.square().sum(), h)  # third order, through the composite
        assert torch.isfinite(dddh).all()
    # the backward op's own autograd (d grad, d h) is finite at zero rows too
    gr = g.clone().requires_grad_()
    h = base.clone().requires_grad_()
    b = ops.canonical_segment_sum_backward(gr, h, ptr, None, 2, eps)
    d_gr, d_h = torch.autograd.grad(b.square().sum(), (gr, h))
    assert torch.isfinite(d_gr).all() and torch.isfinite(d_h).all() and (d_h[zero] == 0).all()


def test_l2_nan_rows_stay_nan():
    """A NaN in a row makes its whole mode-2 output NaN (never mistaken for a zero row)."""
    h = torch.tensor([[float("nan"), 0.0, 0.0], [0.0, float("nan"), 1.0], [1.0, 2.0, 2.0]], dtype=torch.float64)
    for eps in [0.0, 1e-3]:
        for out in (_per_row(h, eps), ref.canonical_segment_sum(h, torch.arange(4), None, 2, eps)):
            assert out[:2].isnan().all() and torch.isfinite(out[2]).all()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_l2_eps_dominated_rows(dtype):
    """eps / max|h| overflows (subnormal rows, eps > 0): c = h / eps and dh = g / eps, which is
    what h / (||h|| + eps) rounds to (||h|| vanishes against eps) -- not 0."""
    _, h = _subnormal_rows(dtype)
    eps = 1e-3 if dtype == torch.float64 else 1e-2
    e = torch.tensor(eps, dtype=dtype)
    assert torch.isinf(e / h.abs().amax(1)).all()
    c = _per_row(h, eps)
    assert torch.equal(c, h / e) and (c != 0).any()
    g = torch.randn(h.shape, dtype=dtype)
    assert torch.equal(_per_row(h, eps, g), g / e)
    ptr = torch.arange(h.shape[0] + 1)
    assert torch.equal(ref.canonical_segment_sum(h, ptr, None, 2, eps), c)
    assert torch.equal(ref.canonical_segment_sum_backward(g, h, ptr, None, 2, eps), g / e)


def test_l2_eps_positive_invariance_error_is_eps_over_norm():
    """Where exactness ends: with eps > 0, ||c(a h) - c(h)|| / ||c(h)|| = eps |a - 1| / (a N + eps)
    (N = ||h||) exactly in exact arithmetic, so it is > 0 and <= (eps / N) |1 - 1/a|: visible for
    ||h|| ~ eps, ~eps / ||h|| for large rows (the bound in the ops/canonical_segment_sum.py module doc)."""
    eps = 1e-3
    gen = torch.Generator().manual_seed(0)
    u = torch.randn(6, 5, generator=gen, dtype=torch.float64)
    u = u / torch.linalg.vector_norm(u, dim=1, keepdim=True)
    N = torch.tensor([1e-2, 0.3, 1.0, 10.0, 1e3, 1e4], dtype=torch.float64)[:, None] * eps
    h = u * N
    c = _per_row(h, eps)
    for a in [1e-3, 0.1, 0.5, 2.0, 10.0, 1e3]:
        rel = torch.linalg.vector_norm(_per_row(h * a, eps) - c, dim=1, keepdim=True) / torch.linalg.vector_norm(
            c, dim=1, keepdim=True
        )
        predicted = eps * abs(a - 1) / (a * N + eps)
        bound = eps / N * abs(1 - 1 / a)
        assert (rel > 0).all(), a
        assert (rel <= bound * (1 + 1e-9)).all(), a
        torch.testing.assert_close(rel, predicted, rtol=1e-6, atol=0, msg=f"a={a}")
        # with eps = 0 the same rows are invariant to rounding
        assert (_per_row(h * a, 0.0) - _per_row(h, 0.0)).abs().max() <= 1e-14
