"""Fused ScaleGMN edge message op vs its reference: values, gradients, opcheck, memory behaviour."""

import random

import pytest
import torch
from torch.library import opcheck

import scalegmn_ext as sx
from scalegmn_ext.models.layers import ScaleEq
from scalegmn_ext.ops.scale_eq_message import scale_eq_message
from scalegmn_ext.reference.scale_eq_message import scale_eq_message as ref_message
from scalegmn_ext.testing import DEVICES

pytestmark = pytest.mark.skipif(not hasattr(torch.ops.scalegmn, "scale_eq_message"), reason="extension not built")

VARIANTS = [
    ("sign", "symmetrize", True),
    ("sign", "abs", True),
    ("scale", "symmetrize", True),
    ("permutation", "symmetrize", True),
    ("sign", "symmetrize", False),
]


def _setup(sym, canon, ln, dtype, device, B=3, O=4, I=5, d=6, de=3, seed=None):
    seed = random.randrange(2**31) if seed is None else seed
    torch.manual_seed(seed)
    se = ScaleEq(sym, d, d, d, canon, ln).to(dtype=dtype, device=device)
    we = torch.randn(d, de, dtype=dtype, device=device)
    E = torch.randn(B, O, I, de, dtype=dtype, device=device)
    hv = torch.randn(B, I, d, dtype=dtype, device=device)
    return se, we, E, hv


def _device(device):
    if device == "cuda" and not sx.has_cuda_kernels():
        pytest.skip("no CUDA kernels")
    return device


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("tile", [1, 7, 4096])
@pytest.mark.parametrize("save", [False, True])
def test_matches_module_and_reference(variant, dtype, device, tile, save):
    device = _device(device)
    se, we, E, hv = _setup(*variant, dtype, device)
    out = scale_eq_message(E, hv, se.message_params(we), tile_edges=tile, save=save)
    expected = se((E @ we.t()) * hv.unsqueeze(1)).sum(2)  # the ScaleEq module itself, per edge
    tol = dict(rtol=1e-10, atol=1e-12) if dtype == torch.float64 else dict(rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out, expected, **tol)
    torch.testing.assert_close(out, ref_message(E, hv, *se.message_params(we)), **tol)


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("save", [False, True])
def test_gradients(variant, save):
    se, we, E, hv = _setup(*variant, torch.float64, "cpu", B=2, O=3, I=4, d=4, de=2)
    for t in (E, hv, we):
        t.requires_grad_()
    assert torch.autograd.gradcheck(
        lambda E, hv, we: scale_eq_message(E, hv, se.message_params(we), tile_edges=12, save=save), (E, hv, we)
    )
    params = list(se.parameters())
    out = scale_eq_message(E, hv, se.message_params(we), tile_edges=12, save=save)
    g1 = torch.autograd.grad(out.pow(2).sum(), params + [E, hv, we])
    exp = se((E @ we.t()) * hv.unsqueeze(1)).sum(2)
    g2 = torch.autograd.grad(exp.pow(2).sum(), params + [E, hv, we])
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-11)


def test_opcheck_and_empty():
    se, we, E, hv = _setup("sign", "symmetrize", True, torch.float32, "cpu", seed=0)
    args = se.message_params(we)
    for save in (False, True):
        opcheck(
            torch.ops.scalegmn.scale_eq_message,
            (E, hv, *[a.detach() if torch.is_tensor(a) else a for a in args], 16, save),
        )
    E.requires_grad_()
    hv.requires_grad_()
    for save in (False, True):
        opcheck(torch.ops.scalegmn.scale_eq_message, (E, hv, *args, 16, save))
        out = scale_eq_message(E[:0], hv[:0], se.message_params(we), save=save)
        assert out.shape == (0, 4, 6)


def test_keeps_no_per_edge_activations():
    """Only the inputs are saved for backward: no [E, d] intermediates."""
    se, we, E, hv = _setup("sign", "symmetrize", True, torch.float32, "cpu", B=8, O=16, I=16, d=32, seed=1)
    E.requires_grad_()
    sizes = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: sizes.append(t.numel()) or t, lambda t: t):
        scale_eq_message(E, hv, se.message_params(we))
    per_edge = 8 * 16 * 16 * 32
    assert max(sizes) < per_edge  # the biggest saved tensor is an input, E has d_e = 3 channels
    sizes.clear()
    with torch.autograd.graph.saved_tensors_hooks(lambda t: sizes.append(t.numel()) or t, lambda t: t):
        scale_eq_message(E, hv, se.message_params(we), save=True)
    assert max(sizes) == 8 * 16 * 16 * (32 + 2 * 32 + 32 + 32)  # save mode: the GEMM outputs, 5 d per edge


def test_bad_input():
    se, we, E, hv = _setup("sign", "symmetrize", True, torch.float32, "cpu", seed=2)
    with pytest.raises(ValueError, match=r"hv must be \[B, in, d\]"):
        scale_eq_message(E, hv[:, :-1], se.message_params(we))
    with pytest.raises(ValueError, match=r"edge must be \[B, out, in, d_e\]"):
        scale_eq_message(E[0], hv, se.message_params(we))
    with pytest.raises(RuntimeError, match="w_e must be"):
        scale_eq_message(E, hv, se.message_params(we[:, :2]))
    with pytest.raises(RuntimeError, match="share edge's dtype"):
        scale_eq_message(E.double(), hv, se.double().message_params(we.double()))


@pytest.mark.parametrize("eps", [0.0, 1e-3])
@pytest.mark.parametrize("save", [False, True])
def test_scale_mode_exact_for_zero_tiny_and_subnormal_edges(eps, save):
    """Mode 2 (scale canonicaliser) is x / (||x|| + eps), max-scaled: zero, tiny (1e-150, whose
    squares underflow) and subnormal edges give the reference's values and gradients, finite,
    and with eps = 0 the message is exactly equivariant to scaling the edges."""
    se, we, E, hv = _setup("scale", "symmetrize", True, torch.float64, "cpu", B=2, O=3, I=4, d=4, de=2, seed=4)
    se.inv.canon.eps = eps
    E = E.clone()
    E[0, 0] = 0.0
    E[0, 1] *= 1e-150
    E[1, 2] = 2.0**-1060
    E.requires_grad_()
    out = scale_eq_message(E, hv, se.message_params(we), tile_edges=5, save=save)
    ref = ref_message(E, hv, *se.message_params(we))
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=0)
    g = torch.randn_like(out)
    (g1,) = torch.autograd.grad(out, E, g)
    (g2,) = torch.autograd.grad(ref, E, g)
    assert torch.isfinite(g1[0, 0]).all()
    torch.testing.assert_close(g1[0, 0], g2[0, 0], rtol=1e-10, atol=1e-12)  # zero rows: same convention
    torch.testing.assert_close(g1[1, :2], g2[1, :2], rtol=1e-8, atol=1e-10)  # ordinary rows
    if eps == 0.0:  # scaling an edge by a power of two scales its message by it, to rounding
        with torch.no_grad():
            out2 = scale_eq_message(E * 2.0**20, hv, se.message_params(we), tile_edges=5, save=save)
        # network 0 (zero and 1e-150 edges); network 1's subnormal messages hold only a few bits
        torch.testing.assert_close(out2[0], out[0] * 2.0**20, rtol=1e-12, atol=0)
