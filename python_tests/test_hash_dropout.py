"""hash_dropout: counter-based dropout op vs its reference (identical masks), statistics, autograd."""

import random

import pytest
import torch
from torch.library import opcheck

import scalegmn_ext as sx
from scalegmn_ext.ops.hash_dropout import HashDropout, hash_dropout
from scalegmn_ext.reference.hash_dropout import dropout_keep_mask
from scalegmn_ext.reference.hash_dropout import hash_dropout as ref_dropout
from scalegmn_ext.testing import DEVICES

pytestmark = pytest.mark.skipif(not hasattr(torch.ops.scalegmn, "hash_dropout"), reason="extension not built")


def _device(device):
    if device == "cuda" and not sx.has_cuda_kernels():
        pytest.skip("no CUDA kernels")
    return device


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(0,), (1,), (7, 13), (3, 5, 129)])
def test_matches_reference_bit_for_bit(shape, dtype, device):
    device = _device(device)
    seed, offset = random.randrange(2**31), random.choice([0, 17, 2**32 - 100])
    x = torch.randn(shape, device=device).to(dtype)
    p = random.choice([0.1, 0.5, 0.9])
    out = hash_dropout(x, p, seed, offset)
    ref = ref_dropout(x, p, seed, offset)
    assert out.shape == x.shape and out.dtype == dtype
    assert torch.equal(out != 0, ref != 0)
    torch.testing.assert_close(out, ref, rtol=1e-3 if dtype in (torch.float16, torch.bfloat16) else 1e-6, atol=0)


def test_non_contiguous_and_offsets_tile_a_tensor():
    x = torch.randn(6, 40).t()  # non-contiguous: flat indices follow the logical row-major order
    full = hash_dropout(x, 0.3, 5)
    torch.testing.assert_close(full, ref_dropout(x.contiguous(), 0.3, 5))
    xc = x.contiguous()
    parts = [hash_dropout(xc[i : i + 7], 0.3, 5, offset=i * 6) for i in range(0, 40, 7)]
    torch.testing.assert_close(torch.cat(parts), full)  # a tile applies its slice of the mask


def test_statistics_and_seeds():
    n = 1 << 20
    for p in (0.1, 0.5):
        keep = dropout_keep_mask((n,), p, seed=123)
        frac = keep.double().mean().item()
        assert abs(frac - (1 - p)) < 5 * (p * (1 - p) / n) ** 0.5  # 5 sigma
    a, b = dropout_keep_mask((n,), 0.5, 1), dropout_keep_mask((n,), 0.5, 2)
    assert abs((a == b).double().mean().item() - 0.5) < 0.01  # different seeds: unrelated masks
    # no index-shifted copies between seeds (what a seed added to the index would give)
    for shift in (1, 7, 1000):
        assert abs((a[shift:] == b[:-shift]).double().mean().item() - 0.5) < 0.01
    x = torch.ones(n)
    assert abs(hash_dropout(x, 0.25, 9).mean().item() - 1.0) < 0.01  # unbiased: kept / (1 - p)


def test_p_zero_nan_and_validation():
    x = torch.randn(10)
    assert hash_dropout(x, 0.0, 1) is x
    y = torch.full((1000,), float("nan"))
    assert torch.isnan(hash_dropout(y, 0.5, 1)).all()  # a product, like F.dropout
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\)"):
        hash_dropout(x, 1.0, 1)
    with pytest.raises(ValueError, match="offset must be >= 0"):
        hash_dropout(x, 0.5, 1, offset=-1)
    with pytest.raises(TypeError, match="floating-point"):
        hash_dropout(torch.arange(4), 0.5, 1)
    with pytest.raises(RuntimeError, match="p must be in"):
        torch.ops.scalegmn.hash_dropout(x, 1.5, 1, 0)


def test_autograd_is_self_adjoint():
    x = torch.randn(5, 9, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: hash_dropout(t, 0.4, 77, 3), (x,))
    assert torch.autograd.gradgradcheck(lambda t: hash_dropout(t, 0.4, 77, 3) ** 2, (x,))
    g = torch.randn(5, 9, dtype=torch.float64)
    (gx,) = torch.autograd.grad(hash_dropout(x, 0.4, 77, 3), x, g)
    torch.testing.assert_close(gx, hash_dropout(g, 0.4, 77, 3))


def test_opcheck():
    x = torch.randn(4, 33)
    opcheck(torch.ops.scalegmn.hash_dropout, (x, 0.3, 11, 5))
    opcheck(torch.ops.scalegmn.hash_dropout, (x.requires_grad_(), 0.3, 11, 5))


def test_module():
    m = HashDropout(0.5)
    x = torch.ones(10000)
    torch.manual_seed(0)
    a = m(x)
    torch.manual_seed(0)
    assert torch.equal(a, m(x))  # torch.manual_seed makes the drawn seed repeatable
    assert not torch.equal(a, m(x))  # a new seed per call
    m.eval()
    assert m(x) is x
    with pytest.raises(ValueError, match="p must be in"):
        HashDropout(1.0)
