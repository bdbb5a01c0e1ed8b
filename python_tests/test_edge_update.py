"""Fused ScaleGMN edge update op vs its reference: values, gradients, dropout, opcheck, memory."""

import random

import pytest
import torch
from torch.library import opcheck

import scalegmn_ext as sx
from scalegmn_ext.ops.edge_update import edge_update
from scalegmn_ext.ops.hash_dropout import hash_dropout
from scalegmn_ext.reference.edge_update import edge_update as ref_update
from scalegmn_ext.testing import DEVICES

pytestmark = pytest.mark.skipif(not hasattr(torch.ops.scalegmn, "edge_update"), reason="extension not built")


def _device(device):
    if device == "cuda" and not sx.has_cuda_kernels():
        pytest.skip("no CUDA kernels")
    return device


def _setup(dtype, device, B=3, O=4, I=5, d=6, de=3, dout=7, ln=True, seed=None):
    seed = random.randrange(2**31) if seed is None else seed
    g = torch.Generator().manual_seed(seed)

    def r(*s):
        return torch.randn(*s, generator=g, dtype=torch.float64).to(dtype=dtype, device=device)

    E, dst, src = r(B, O, I, de), r(B, O, d), r(B, I, d)
    w2, b2, wg = r(dout, d), r(dout), r(dout, de)
    lnw, lnb = (r(d), r(d)) if ln else (None, None)
    return E, dst, src, w2, b2, wg, lnw, lnb


def _module_math(E, dst, src, w2, b2, wg, lnw, lnb):
    a = dst.unsqueeze(2) + src.unsqueeze(1)
    if lnw is not None:
        a = torch.nn.functional.layer_norm(a, (a.shape[-1],), lnw, lnb)
    return torch.nn.functional.linear(torch.nn.functional.silu(a), w2, b2) * (E @ wg.t())


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("ln", [True, False])
@pytest.mark.parametrize("tile", [1, 13, 4096])
@pytest.mark.parametrize("p", [0.0, 0.3])
def test_matches_reference(p, tile, ln, dtype, device):
    device = _device(device)
    args = _setup(dtype, device, ln=ln)
    seed = random.randrange(2**31)
    out = edge_update(*args[:6], *args[6:], p=p, seed=seed, tile_edges=tile)
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-5)
    E, dst, src, w2, b2, wg, lnw, lnb = args
    torch.testing.assert_close(out, ref_update(E, dst, src, lnw, lnb, w2, b2, wg, p, seed), **tol)
    # the dropout is hash_dropout of the unfused result over the output's flat indices
    torch.testing.assert_close(out, hash_dropout(_module_math(*args), p, seed), **tol)


def test_non_contiguous_inputs():
    E, dst, src, w2, b2, wg, lnw, lnb = _setup(torch.float64, "cpu", seed=3)
    Et = E.transpose(1, 2).contiguous().transpose(1, 2)  # same values, strided
    srct = src.transpose(0, 1).contiguous().transpose(0, 1)
    assert not Et.is_contiguous() and not srct.is_contiguous()
    torch.testing.assert_close(
        edge_update(Et, dst, srct, w2, b2, wg, lnw, lnb), edge_update(E, dst, src, w2, b2, wg, lnw, lnb)
    )


@pytest.mark.parametrize("p", [0.0, 0.4])
@pytest.mark.parametrize("ln", [True, False])
def test_gradients(p, ln):
    args = [
        t.requires_grad_() if t is not None else None
        for t in _setup(torch.float64, "cpu", B=2, O=3, I=4, d=4, de=2, dout=3, ln=ln, seed=4)
    ]
    n = 6 if ln else 8
    assert torch.autograd.gradcheck(
        lambda *a: edge_update(*a[:6], *(a[6:] if ln else (None, None)), p=p, seed=9, tile_edges=10), tuple(args[:n])
    )


def test_opcheck_and_empty():
    E, dst, src, w2, b2, wg, lnw, lnb = _setup(torch.float32, "cpu", seed=5)
    for req in (False, True):
        ts = [t.detach().requires_grad_(req) for t in (E, dst, src, lnw, lnb, w2, b2, wg)]
        opcheck(torch.ops.scalegmn.edge_update, (*ts, 0.2, 3, 16))
    assert edge_update(E[:0], dst[:0], src[:0], w2, b2, wg, lnw, lnb).shape == (0, 4, 5, 7)
    assert edge_update(E[:, :, :0], dst, src[:, :0], w2, b2, wg, lnw, lnb).shape == (3, 4, 0, 7)


def test_keeps_no_per_edge_activations():
    E, dst, src, w2, b2, wg, lnw, lnb = _setup(torch.float32, "cpu", B=8, O=16, I=16, d=32, de=32, dout=32, seed=6)
    dst.requires_grad_()
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t.numel()) or t, lambda t: t):
        edge_update(E, dst, src, w2, b2, wg, lnw, lnb, p=0.2, seed=1)
    assert sum(saved) <= E.numel() + dst.numel() + src.numel() + 3 * 32 * 32 + 3 * 32  # the inputs only


def test_bad_input():
    E, dst, src, w2, b2, wg, lnw, lnb = _setup(torch.float32, "cpu", seed=7)
    with pytest.raises(ValueError, match=r"src must be \[B, in, d\]"):
        edge_update(E, dst, src[:, :-1], w2, b2, wg)
    with pytest.raises(ValueError, match=r"edge must be \[B, out, in, d_e\]"):
        edge_update(E[0], dst, src, w2, b2, wg)
    with pytest.raises(ValueError, match=r"w_g must be"):
        edge_update(E, dst, src, w2, b2, wg[:, :2])
    with pytest.raises(ValueError, match="both ln_w and ln_b"):
        edge_update(E, dst, src, w2, b2, wg, lnw, None)
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\)"):
        edge_update(E, dst, src, w2, b2, wg, p=1.0)
    with pytest.raises(TypeError, match="dst must have edge's dtype"):
        edge_update(E, dst.double(), src, w2, b2, wg)
    with pytest.raises(RuntimeError, match="w_2 must be"):
        torch.ops.scalegmn.edge_update(E, dst, src, None, None, w2[:, :2], b2, wg, 0.0, 0, 16)
