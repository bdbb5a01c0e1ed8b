"""Exact symmetry of the ScaleGMN models on real trained networks with extreme weights.

The bidirectional scale model once broke on a real ReLU CNN (one 5.8e-6 weight reached a clamped
``e / max(||e||^2, eps)``) and under scale factors spanning 1e-3..1e3, while the model tests only
used random weights pushed away from zero and scales in 0.25..4. These tests use networks trained
by the package's own zoo recipes (``real_nets`` in conftest.py), force some weights to exactly 0
and to 1e-8, draw scale factors log-uniformly on [1e-3, 1e3] and check, in float64, invariance of
the encoder and equivariance of the head to 1e-10 relative for every group x direction x readout.
"""

from __future__ import annotations

import math

import pytest
import torch

from scalegmn_ext.models import ScaleGMN, ScaleGMNConfig, ScaleGMNEquivariant
from scalegmn_ext.reference.canonical import scale_normalize
from scalegmn_ext.testing import flat_params, max_rel_diff
from scalegmn_ext.weightspace import symmetry

WIDE = (1e-3, 1e3)
TOL = 1e-10


def _extremes(ws, bs, seed: int):
    """~10 % of weights exactly 0, ~10 % +-1e-8, and one bias per layer exactly 0."""
    g = torch.Generator().manual_seed(seed)
    out_w = []
    for w in ws:
        u = torch.rand(w.shape, generator=g, dtype=w.dtype)
        out_w.append(
            torch.where(
                u < 0.1, torch.zeros_like(w), torch.where(u < 0.2, 1e-8 * torch.where(w < 0, -1.0, 1.0).to(w), w)
            )
        )
    out_b = [b.clone() for b in bs]
    for b in out_b:
        b[:, 0] = 0.0
    return out_w, out_b


def _config(direction, readout="full_graph", **kw):
    return ScaleGMNConfig(d_hid=8, num_layers=3, d_out=4, direction=direction, readout=readout, out_scale=1.0, **kw)


def _groups(arch):
    return [arch.symmetry.value, "permutation"]


@pytest.mark.parametrize("net", ["siren", "cnn_relu", "cnn_tanh"])
@pytest.mark.parametrize("direction", ["forward", "bidirectional"])
@pytest.mark.parametrize("readout", ["full_graph", "last_layer", "equivariant"])
def test_real_networks_exact(real_nets, net, direction, readout):
    arch, ws, bs, iv = real_nets[net]
    ws, bs = _extremes(ws, bs, seed=7)
    for sym in _groups(arch):
        torch.manual_seed(3)
        cfg = _config(direction, "full_graph" if readout == "equivariant" else readout, symmetry=sym, input_value=iv)
        model = (ScaleGMNEquivariant(arch, cfg) if readout == "equivariant" else ScaleGMN(arch, cfg)).double().eval()
        gen = torch.Generator().manual_seed(11)
        w2, b2, g = symmetry.transform(arch, ws, bs, generator=gen, symmetry=sym, scale_range=WIDE)
        assert max_rel_diff(flat_params(ws, bs), flat_params(w2, b2)) > 0.1  # the input really moved
        with torch.no_grad():
            out, out2 = model(ws, bs), model(w2, b2)
            model.impl = "reference"
            ref = model(ws, bs)
        if readout == "equivariant":
            expect = flat_params(*symmetry.apply_group_element(arch, out[0], out[1], g))
            got, out, ref = flat_params(*out2), flat_params(*out), flat_params(*ref)
        else:
            expect, got = out, out2
        assert torch.isfinite(got).all()
        err = max_rel_diff(expect, got)
        assert err <= TOL, f"{net} {sym} {direction} {readout}: symmetry error {err:.2e}"
        assert max_rel_diff(ref, out) <= TOL, (
            f"{net} {sym} {direction} {readout}: fast vs reference {max_rel_diff(ref, out):.2e}"
        )


@pytest.mark.parametrize("net", ["cnn_relu", "siren"])
def test_property_fifty_group_elements(real_nets, net):
    """50 random group elements per network, each from its own seed (scales log-uniform on
    [1e-3, 1e3] for ReLU), bidirectional encoder and head, real weights with zeros and 1e-8
    entries. The 50 elements act on 50 copies of the batch in one forward."""
    arch, ws, bs, iv = real_nets[net]
    ws, bs = _extremes(ws, bs, seed=5)
    n, K = ws[0].shape[0], 50
    elems = [
        symmetry.random_group_element(
            arch, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64, scale_range=WIDE
        )
        for seed in range(K)
    ]
    g = symmetry.GroupElement(
        tuple(torch.cat([e.perm[k] for e in elems]) for k in range(len(elems[0].perm))),
        tuple(torch.cat([e.scale[k] for e in elems]) for k in range(len(elems[0].scale))),
    )
    rep = lambda ts: [t.repeat(K, *([1] * (t.dim() - 1))) for t in ts]  # noqa: E731
    ws_k, bs_k = rep(ws), rep(bs)
    w2, b2 = symmetry.apply_group_element(arch, ws_k, bs_k, g)
    torch.manual_seed(0)
    enc = ScaleGMN(arch, _config("bidirectional", input_value=iv)).double().eval()
    head = ScaleGMNEquivariant(arch, _config("bidirectional", input_value=iv)).double().eval()
    with torch.no_grad():
        z, z2 = enc(ws, bs).repeat(K, 1), enc(w2, b2)
        hw, hb = head(ws, bs)
        expect = flat_params(*symmetry.apply_group_element(arch, rep(hw), rep(hb), g))
        got = flat_params(*head(w2, b2))
    per_elem = lambda a, b: ((a - b).abs().amax(1) / a.abs().amax(1)).view(K, n).amax(1)  # noqa: E731
    worst = torch.maximum(per_elem(z, z2), per_elem(expect, got))
    assert worst.max().item() <= TOL, (
        f"seeds failing: {(worst > TOL).nonzero().flatten().tolist()}, worst {worst.max():.2e}"
    )


def _pow2_element(arch, B, seed):
    """Random group element whose scales are powers of two in [2^-10, 2^10]: then the group action
    is exact in floating point, even on subnormal weights (no bits are rounded away)."""
    g = symmetry.random_group_element(
        arch, B, generator=torch.Generator().manual_seed(seed), dtype=torch.float64, scale_range=(2.0**-10, 2.0**10)
    )
    return symmetry.GroupElement(g.perm, tuple(torch.exp2(torch.round(torch.log2(s))) for s in g.scale))


@pytest.mark.parametrize("scale_backward", ["gated", "inverse"])
def test_subnormal_and_zero_weights(real_nets, scale_backward):
    """Weights of 2^-1060 (subnormal) and exactly 0: the default construction stays finite and
    exact; the inverse-edge option overflows (its gain is 1 / ||e||), which is why it is not the
    default."""
    arch, ws, bs, iv = real_nets["cnn_relu"]
    ws = [w.clone() for w in ws]
    ws[0][:, :2] = 2.0**-1060
    ws[1][:, :, :3] = 0.0
    torch.manual_seed(1)
    enc = ScaleGMN(arch, _config("bidirectional", input_value=iv, scale_backward=scale_backward)).double().eval()
    g = _pow2_element(arch, ws[0].shape[0], 3)
    w2, b2 = symmetry.apply_group_element(arch, ws, bs, g)
    with torch.no_grad():
        z, z2 = enc(ws, bs), enc(w2, b2)
    if scale_backward == "gated":
        assert torch.isfinite(z).all() and max_rel_diff(z, z2) <= TOL
    else:
        assert not torch.isfinite(z).all()


def test_scale_canonicaliser_does_not_amplify_rounding():
    """c(x) = x / ||x|| (max-scaled) is invariant to a few ulp for any magnitude and any scale:
    the bound stated in the README (<= 8 u per entry, u = 2^-53), vs the clamped form's failure."""
    g = torch.Generator().manual_seed(0)
    u = 2.0**-53
    for expo in (-320, -300, -160, -20, 0, 20, 160, 300):
        x = torch.randn(256, 16, generator=g, dtype=torch.float64) * 10.0**expo
        x[:8] = 0.0
        q = torch.exp(torch.empty(256, 1, dtype=torch.float64).uniform_(math.log(1e-3), math.log(1e3), generator=g))
        qx = q * x
        if expo < -300:  # x is subnormal: only power-of-two scalings >= 1 keep every bit of it
            q = torch.exp2(torch.round(torch.log2(q)).abs())
            qx = q * x
        c, cq = scale_normalize(x), scale_normalize(qx)
        assert torch.isfinite(c).all() and (c[:8] == 0).all()
        assert (c - cq).abs().max().item() <= 8 * u, expo
    # the clamped form it replaced is not invariant below its clamp
    x = torch.randn(4, 16, generator=g, dtype=torch.float64) * 1e-14
    clamped = lambda v: v / v.norm(dim=-1, keepdim=True).clamp_min(1e-12)  # noqa: E731
    assert (clamped(x) - clamped(1e3 * x)).abs().max().item() > 0.5


def test_eps_is_where_exactness_ends():
    """``ScaleGMNConfig(eps>0)`` trades exactness for a bounded canonicaliser gradient: the
    error is of order eps / ||x|| (here visible), and 0 for eps = 0."""
    x = torch.randn(64, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(2)) * 1e-6
    for eps, lo, hi in ((1e-6, 1e-3, 1.0), (0.0, 0.0, 1e-15)):
        err = (scale_normalize(x, eps) - scale_normalize(10.0 * x, eps)).abs().max().item()
        assert lo <= err <= hi, (eps, err)


def test_canonicaliser_gradient_exact_and_finite():
    x = torch.randn(5, 7, dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(lambda v: scale_normalize(v), (x,))
    torch.autograd.gradcheck(lambda v: scale_normalize(v, 0.3), (x,))
    z = torch.zeros(2, 7, dtype=torch.float64, requires_grad=True)
    (gz,) = torch.autograd.grad(scale_normalize(z).sum(), z)
    assert torch.equal(gz, torch.zeros_like(gz))  # eps = 0: c is discontinuous at 0, gradient 0 by convention
    (gz,) = torch.autograd.grad(scale_normalize(z, 0.5).sum(), z)
    assert torch.allclose(gz, torch.full_like(gz, 2.0))  # eps > 0: the true derivative I / eps
