"""Tests for scalegmn_ext.weightspace.nets and scalegmn_ext.weightspace.adapters (modules / state dicts / nfn <-> weights)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from scalegmn_ext.weightspace.adapters import (
    arch_from_module,
    from_nfn,
    module_to_weights,
    state_dict_to_weights,
    to_nfn,
    weights_to_module,
    weights_to_state_dict,
)
from scalegmn_ext.weightspace.architecture import Architecture
from scalegmn_ext.weightspace.nets import SIREN, OutputOffset, Sine, SmallCNN, build_module

TOL = 1e-12


def _mlp(act: type[nn.Module], widths=(3, 7, 5, 2)) -> nn.Sequential:
    mods: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        mods.append(nn.Linear(a, b))
        if i < len(widths) - 2:
            mods.append(act())
    return nn.Sequential(*mods).double()


def _mixed_cnn() -> nn.Sequential:
    return (
        nn.Sequential(
            nn.Conv2d(3, 6, 5, stride=1, padding=2),
            nn.Tanh(),
            nn.Conv2d(6, 4, (3, 1), stride=2),
            nn.Tanh(),
            nn.Conv2d(4, 5, 1),
            nn.Tanh(),
            nn.AdaptiveAvgPool2d((1, 1)),
            nn.Flatten(),
            nn.Linear(5, 8),
            nn.Tanh(),
            nn.Dropout(0.1),
            nn.Linear(8, 3),
        )
        .double()
        .eval()
    )


def _torch_siren(widths=(2, 32, 32, 1)) -> SIREN:
    torch.manual_seed(0)
    return SIREN(widths).double()


CASES = {
    "mlp_relu": (lambda: _mlp(nn.ReLU), (11, 3)),
    "mlp_tanh": (lambda: _mlp(nn.Tanh), (11, 3)),
    "siren": (_torch_siren, (17, 2)),
    "small_cnn": (lambda: SmallCNN().double(), (4, 1, 28, 28)),
    "mixed_cnn": (_mixed_cnn, (2, 3, 12, 10)),
}


def _max_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


# ---------------------------------------------------------------------------------------------
# nets
# ---------------------------------------------------------------------------------------------
def test_siren_forward_init_and_params():
    torch.manual_seed(1)
    m = SIREN((2, 32, 32, 1), w0=30.0, output_offset=0.5, zero_bias=True).double()
    assert [k for k in m.state_dict()] == [f"layers.{i}.{p}" for i in range(3) for p in ("weight", "bias")]
    assert m.layers[0].weight.abs().max() <= 1 / 2
    assert m.layers[1].weight.abs().max() <= math.sqrt(6 / 32) / 30
    assert all((l.bias == 0).all() for l in m.layers)
    x = torch.rand(9, 2, dtype=torch.float64)
    h = torch.sin(30 * m.layers[0](x))
    h = torch.sin(30 * m.layers[1](h))
    assert _max_err(m(x), m.layers[2](h) + 0.5) <= TOL
    assert m.arch == Architecture.siren()


def test_build_module_layout():
    seq = build_module(Architecture.small_cnn_zoo())
    assert [type(m) for m in seq] == [nn.Conv2d, nn.ReLU] * 3 + [nn.AdaptiveAvgPool2d, nn.Flatten, nn.Linear]
    seq = build_module(Architecture.siren())
    assert [type(m) for m in seq] == [nn.Linear, Sine] * 2 + [nn.Linear, OutputOffset]
    assert seq[-1].offset == 0.5 and seq[1].w0 == 30.0
    seq = build_module(Architecture.mlp((2, 3), activation="tanh"), dtype=torch.float64)
    assert [type(m) for m in seq] == [nn.Linear] and seq[0].weight.dtype == torch.float64


def test_smallcnn_matches_arch():
    m = SmallCNN(activation="tanh")
    assert arch_from_module(m) == Architecture.small_cnn_zoo(activation="tanh")
    assert m(torch.rand(2, 1, 28, 28)).shape == (2, 10)


# ---------------------------------------------------------------------------------------------
# module <-> weights round trips
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", list(CASES))
def test_module_roundtrip_same_outputs(case):
    torch.manual_seed(0)
    make, xshape = CASES[case]
    m = make().eval()
    arch = arch_from_module(m)
    ws, bs = module_to_weights(m)
    assert len(ws) == arch.num_layers
    for w, b, spec in zip(ws, bs, arch.layers):
        assert tuple(w.shape) == spec.weight_shape and tuple(b.shape) == (spec.out_features,)
        assert not w.requires_grad
    rebuilt = weights_to_module(arch, ws, bs).eval()
    assert arch_from_module(rebuilt) == arch
    x = torch.randn(xshape, dtype=torch.float64)
    with torch.no_grad():
        assert _max_err(m(x), rebuilt(x)) <= TOL
    # the same through the generic Sequential builder
    seq = build_module(arch, dtype=torch.float64)
    seq_ws = module_to_weights(seq)
    assert [tuple(w.shape) for w in seq_ws[0]] == [tuple(w.shape) for w in ws]


def test_expected_archs():
    assert arch_from_module(_mlp(nn.ReLU)) == Architecture.mlp((3, 7, 5, 2))
    assert arch_from_module(_mlp(nn.Tanh)) == Architecture.mlp((3, 7, 5, 2), activation="tanh")
    assert arch_from_module(_torch_siren()) == Architecture.siren()
    assert arch_from_module(SmallCNN()) == Architecture.small_cnn_zoo()
    a = arch_from_module(_mixed_cnn())
    assert a.activation == "tanh" and a.is_cnn
    assert [l.kernel_size for l in a.layers] == [(5, 5), (3, 1), (1, 1), (1, 1), (1, 1)]
    assert [(l.stride, l.padding) for l in a.layers[:3]] == [(1, 2), (2, 0), (1, 0)]
    assert a.layout == (3, 6, 4, 5, 8, 3)


def test_siren_as_sequential_and_nested():
    seq = nn.Sequential(
        nn.Linear(2, 4), Sine(10.0), nn.Sequential(nn.Linear(4, 4), Sine(10.0)), nn.Linear(4, 1), OutputOffset(0.25)
    )
    a = arch_from_module(seq)
    assert a == Architecture.siren((2, 4, 4, 1), w0=10.0, output_offset=0.25)
    rebuilt = weights_to_module(a, *module_to_weights(seq))
    assert isinstance(rebuilt, SIREN)
    x = torch.randn(5, 2)
    assert torch.allclose(seq(x), rebuilt(x))


def test_sine_cnn_and_leaky_and_identity():
    cnn = SmallCNN(activation="sine", w0=3.0, channels=(4, 4)).double()
    a = arch_from_module(cnn)
    assert a.activation == "sine" and a.w0 == 3.0
    rebuilt = weights_to_module(a, *module_to_weights(cnn))
    x = torch.randn(2, 1, 9, 9, dtype=torch.float64)
    assert _max_err(cnn(x), rebuilt(x)) <= TOL
    leaky = nn.Sequential(nn.Linear(2, 3), nn.LeakyReLU(), nn.Linear(3, 1))
    assert arch_from_module(leaky).activation == "leaky_relu"
    lin = nn.Sequential(nn.Flatten(), nn.Linear(2, 3), nn.Identity(), nn.Linear(3, 1))
    assert arch_from_module(lin).activation == "identity"
    assert arch_from_module(lin, activation="relu").activation == "relu"
    one = SIREN((2, 1), w0=5.0)
    assert arch_from_module(one) == Architecture.siren((2, 1), w0=5.0)


def test_missing_bias_gives_zeros_and_roundtrips():
    seq = nn.Sequential(
        nn.Conv2d(1, 3, 3, bias=False), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 2)
    ).double()
    a = arch_from_module(seq)
    assert a.layers[0].bias is False and a.layers[1].bias is True
    ws, bs = module_to_weights(seq)
    assert (bs[0] == 0).all() and bs[0].shape == (3,)
    rebuilt = weights_to_module(a, ws, bs)
    assert rebuilt[0].bias is None
    x = torch.randn(2, 1, 6, 6, dtype=torch.float64)
    assert _max_err(seq(x), rebuilt(x)) <= TOL
    bs[0] = bs[0] + 1
    with pytest.raises(ValueError, match=r"biases\[0\].*bias=False"):
        weights_to_module(a, ws, bs)


def test_batched_modules():
    torch.manual_seed(0)
    mods = [SmallCNN().double() for _ in range(3)]
    ws, bs = module_to_weights(mods)
    assert ws[0].shape == (3, 16, 1, 3, 3) and ws[-1].shape == (3, 10, 16) and bs[2].shape == (3, 16)
    ws2, _ = module_to_weights(nn.ModuleList(mods))
    assert all(torch.equal(a, b) for a, b in zip(ws, ws2))
    arch = Architecture.small_cnn_zoo()
    rebuilt = weights_to_module(arch, ws, bs)
    assert isinstance(rebuilt, list) and len(rebuilt) == 3
    x = torch.randn(2, 1, 28, 28, dtype=torch.float64)
    for m, r in zip(mods, rebuilt):
        assert _max_err(m(x), r(x)) <= TOL
    one = weights_to_module(arch, ws, bs, index=-1)
    assert _max_err(mods[2](x), one(x)) <= TOL
    with pytest.raises(ValueError, match="module_or_modules\\[1\\]"):
        module_to_weights([SmallCNN(), SmallCNN(activation="tanh")])
    with pytest.raises(IndexError, match="index"):
        weights_to_module(arch, ws, bs, index=3)
    with pytest.raises(ValueError, match="index"):
        weights_to_module(arch, [w[0] for w in ws], [b[0] for b in bs], index=0)


def test_module_to_weights_detach_false_keeps_graph():
    m = _mlp(nn.ReLU)
    ws, bs = module_to_weights(m, detach=False)
    (ws[0].sum() + bs[1].sum()).backward()
    assert m[0].weight.grad is not None and torch.equal(m[0].weight.grad, torch.ones_like(m[0].weight))


def test_weights_to_module_validation():
    arch = Architecture.mlp((3, 4, 2))
    w = [torch.randn(5, 4, 3), torch.randn(5, 2, 4)]
    b = [torch.randn(5, 4), torch.randn(5, 2)]
    with pytest.raises(ValueError, match=r"weights\[1\] must have shape \[5, 2, 4\]"):
        weights_to_module(arch, [w[0], torch.randn(5, 3, 4)], b)
    with pytest.raises(ValueError, match=r"biases\[0\] must have shape \[5, 4\]"):
        weights_to_module(arch, w, [torch.randn(5, 3), b[1]])
    with pytest.raises(ValueError, match="weights has 1 layers"):
        weights_to_module(arch, w[:1], b[:1])
    with pytest.raises(TypeError, match="arch must be an Architecture"):
        weights_to_module("mlp", w, b)
    mods = weights_to_module(arch, w, None)
    assert all((m[0].bias == 0).all() for m in mods)


# ---------------------------------------------------------------------------------------------
# arch_from_module errors
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "module, match",
    [
        (
            nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 3), nn.Tanh(), nn.Linear(3, 1)),
            r"'3'.*'tanh'.*'1'.*'relu'",
        ),
        (
            nn.Sequential(
                nn.Conv2d(1, 2, 3),
                nn.ReLU(),
                nn.AdaptiveAvgPool2d(1),
                nn.Flatten(),
                nn.Linear(2, 2),
                nn.ReLU(),
                nn.Conv2d(2, 2, 1),
            ),
            r"'6'.*Conv2d after",
        ),
        (
            nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), nn.Linear(2, 2)),
            r"'2'.*MaxPool2d",
        ),
        (nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3), nn.ReLU(), nn.Linear(3, 1)), r"'1'.*BatchNorm1d"),
        (
            nn.Sequential(nn.Conv2d(2, 2, 3, groups=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()),
            r"'0'.*groups=2",
        ),
        (
            nn.Sequential(nn.Conv2d(2, 2, 3, dilation=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()),
            r"'0'.*dilation",
        ),
        (nn.Sequential(nn.Dropout(), nn.Identity()), "no Linear or Conv2d"),
        (nn.Sequential(nn.ReLU(), nn.Linear(2, 2)), r"'0'.*before the first layer"),
        (nn.Sequential(), "no Linear or Conv2d"),
        (nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2, 2)), r"'2'.*Flatten"),
        (nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Linear(2, 2)), r"'2'.*Linear directly after conv"),
        (nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU()), "AdaptiveAvgPool2d"),
        (nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1), nn.ReLU()), r"'2'.*last layer"),
        (
            nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 3), nn.Linear(3, 1)),
            r"'2'.*not followed by an activation",
        ),
        (nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.ReLU(), nn.Linear(3, 1)), r"'2'.*second activation"),
        (nn.Sequential(nn.Linear(2, 3), nn.LeakyReLU(0.2), nn.Linear(3, 1)), r"'1'.*negative_slope"),
        (nn.Sequential(nn.Linear(2, 3), Sine(30.0), nn.Linear(3, 3), Sine(10.0), nn.Linear(3, 1)), r"'3'.*w0=10"),
        (nn.Sequential(nn.Linear(2, 3), nn.Softplus(), nn.Linear(3, 1)), r"'1'.*Softplus"),
        (
            nn.Sequential(
                nn.Conv2d(1, 2, 3, padding_mode="circular", padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()
            ),
            r"'0'.*padding_mode",
        ),
        (nn.Sequential(nn.Linear(2, 1), OutputOffset(0.5), nn.Linear(1, 1)), r"'2'.*output offset"),
        (nn.Linear(2, 3), "nn.Sequential"),
    ],
)
def test_arch_from_module_errors(module, match):
    with pytest.raises((ValueError, TypeError), match=match):
        arch_from_module(module)


def test_arch_from_module_activation_mismatch():
    with pytest.raises(ValueError, match="activation='tanh'"):
        arch_from_module(_mlp(nn.ReLU), activation="tanh")
    with pytest.raises(ValueError, match="activation must be"):
        arch_from_module(_mlp(nn.ReLU), activation="swish")


def test_conv_same_padding():
    seq = nn.Sequential(nn.Conv2d(1, 2, 3, padding="same"), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    a = arch_from_module(seq)
    assert a.layers[0].padding == 1 and a.num_layers == 1
    x = torch.randn(2, 1, 5, 5)
    assert torch.allclose(seq(x), weights_to_module(a, *module_to_weights(seq))(x))


# ---------------------------------------------------------------------------------------------
# state dicts
# ---------------------------------------------------------------------------------------------
def _zoo_state_dict(seed: int) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    shapes = [(32, 2), (32, 32), (1, 32)]
    sd = {}
    for i, (o, n) in enumerate(shapes):
        sd[f"seq.{i}.weight"] = torch.randn(o, n, generator=g, dtype=torch.float64)
        sd[f"seq.{i}.bias"] = torch.randn(o, generator=g, dtype=torch.float64)
    return sd


def test_inr_zoo_state_dict_roundtrip():
    arch = Architecture.siren()
    sd = _zoo_state_dict(0)
    ws, bs = state_dict_to_weights(sd, arch)
    assert [tuple(w.shape) for w in ws] == [(32, 2), (32, 32), (1, 32)]
    assert torch.equal(ws[1], sd["seq.1.weight"]) and torch.equal(bs[2], sd["seq.2.bias"])
    sd2 = weights_to_state_dict(arch, ws, bs)
    assert list(sd2) == list(sd) and all(torch.equal(sd[k], sd2[k]) for k in sd)
    # the INR computes sin(30 z) ... + 0.5 with the zoo weights
    inr = weights_to_module(arch, ws, bs)
    x = torch.rand(7, 2, dtype=torch.float64)
    lin = torch.nn.functional.linear
    h = torch.sin(30 * lin(x, sd["seq.0.weight"], sd["seq.0.bias"]))
    h = torch.sin(30 * lin(h, sd["seq.1.weight"], sd["seq.1.bias"]))
    ref = lin(h, sd["seq.2.weight"], sd["seq.2.bias"]) + 0.5
    assert _max_err(inr(x), ref) <= TOL
    # SIREN state dict <-> zoo format
    inr.load_state_dict(weights_to_state_dict(arch, ws, bs, prefix_format="layers.{i}"))
    ws3, bs3 = state_dict_to_weights(inr.state_dict(), arch)
    assert all(torch.equal(a, b) for a, b in zip(ws + bs, ws3 + bs3))


def test_state_dict_batched_and_module_formats():
    arch = Architecture.siren()
    sds = [_zoo_state_dict(s) for s in range(4)]
    ws, bs = state_dict_to_weights(sds, arch)
    assert ws[0].shape == (4, 32, 2) and bs[1].shape == (4, 32)
    out = weights_to_state_dict(arch, ws, bs)
    assert isinstance(out, list) and len(out) == 4
    assert all(torch.equal(out[k][key], sds[k][key]) for k in range(4) for key in sds[k])
    # "{j}" addresses build_module(arch), for a CNN too
    carch = Architecture.small_cnn_zoo()
    cnn = SmallCNN().double()
    cws, cbs = state_dict_to_weights(cnn.state_dict(), carch)
    seq = build_module(carch, dtype=torch.float64)
    seq.load_state_dict(weights_to_state_dict(carch, cws, cbs, prefix_format="{j}"))
    x = torch.randn(2, 1, 28, 28, dtype=torch.float64)
    assert _max_err(seq(x), cnn(x)) <= TOL
    # callable / list prefixes
    sd = weights_to_state_dict(arch, [w[0] for w in ws], [b[0] for b in bs], prefix_format=lambda i: f"net.l{i}")
    assert list(sd)[:2] == ["net.l0.weight", "net.l0.bias"]
    sd = weights_to_state_dict(arch, [w[0] for w in ws], None, prefix_format=["a", "b", "c"])
    assert list(sd) == ["a.weight", "a.bias", "b.weight", "b.bias", "c.weight", "c.bias"]


def test_state_dict_order_and_missing_bias():
    arch = Architecture.mlp([2] + [3] * 10 + [1])
    m = build_module(arch)
    sd = m.state_dict()
    shuffled = dict(sorted(sd.items()))  # lexicographic: '10.' before '2.'
    ws, _ = state_dict_to_weights(sd, arch)
    with pytest.raises(ValueError, match=r"state_dict\['20.weight'\] must have shape \[3, 3\]"):
        state_dict_to_weights(shuffled, arch)  # insertion order of the sorted dict: 0, 10, ..., 18, 2, 20, ...
    ws2, _ = state_dict_to_weights(shuffled, arch, order="natural")
    assert all(torch.equal(a, b) for a, b in zip(ws, ws2))
    nob = {k: v for k, v in _zoo_state_dict(0).items() if k != "seq.1.bias"}
    _, bs = state_dict_to_weights(nob, Architecture.siren())
    assert (bs[1] == 0).all()


def test_state_dict_errors():
    arch = Architecture.siren()
    sd = _zoo_state_dict(0)
    bad = dict(sd, **{"seq.1.weight": torch.zeros(32, 31)})
    with pytest.raises(ValueError, match=r"'seq.1.weight'.*\[32, 32\]"):
        state_dict_to_weights(bad, arch)
    bad = dict(sd, **{"seq.2.bias": torch.zeros(2)})
    with pytest.raises(ValueError, match=r"'seq.2.bias'.*\[1\]"):
        state_dict_to_weights(bad, arch)
    with pytest.raises(ValueError, match=r"state_dicts\[1\]\['seq.1.weight'\]"):
        state_dict_to_weights([sd, dict(sd, **{"seq.1.weight": torch.zeros(3, 3)})], arch)
    extra = dict(sd, **{"seq.1.running_mean": torch.zeros(32)})
    with pytest.raises(ValueError, match="'seq.1.running_mean'"):
        state_dict_to_weights(extra, arch)
    assert len(state_dict_to_weights(extra, arch, strict=False)[0]) == 3
    with pytest.raises(ValueError, match="3 parametrised layers.*has 2"):
        state_dict_to_weights(sd, Architecture.siren((2, 32, 1)))
    with pytest.raises(ValueError, match="'seq.3.bias' without a matching 'seq.3.weight'"):
        state_dict_to_weights(dict(sd, **{"seq.3.bias": torch.zeros(1)}), arch)
    with pytest.raises(TypeError, match="state_dicts must be"):
        state_dict_to_weights("seq", arch)
    with pytest.raises(ValueError, match="prefix_format"):
        weights_to_state_dict(arch, *state_dict_to_weights(sd, arch), prefix_format="seq.{k}")
    with pytest.raises(ValueError, match="repeated prefixes"):
        weights_to_state_dict(arch, *state_dict_to_weights(sd, arch), prefix_format="seq")
    with pytest.raises(ValueError, match=r"weights\[0\] must have shape \[32, 2\]"):
        weights_to_state_dict(arch, [torch.zeros(32, 3), torch.zeros(32, 32), torch.zeros(1, 32)], None)


# ---------------------------------------------------------------------------------------------
# nfn
# ---------------------------------------------------------------------------------------------
def test_nfn_roundtrip():
    torch.manual_seed(0)
    ws, bs = module_to_weights([SmallCNN(), SmallCNN()])
    nw, nb = to_nfn(ws, bs)
    assert isinstance(nw, tuple) and isinstance(nb, tuple)
    assert nw[0].shape == (2, 1, 16, 1, 3, 3) and nw[3].shape == (2, 1, 10, 16) and nb[0].shape == (2, 1, 16)
    ws2, bs2 = from_nfn((nw, nb))
    assert all(torch.equal(a, b) for a, b in zip(ws + bs, ws2 + bs2))

    class WSF:  # duck type of nfn.common.WeightSpaceFeatures
        def __init__(self, weights, biases):
            self.weights, self.biases = weights, biases

    ws3, _ = from_nfn(WSF(nw, nb))
    assert all(torch.equal(a, b) for a, b in zip(ws, ws3))
    zw, zb = to_nfn(ws, None)
    assert all((b == 0).all() and b.shape == (2, 1, w.shape[1]) for w, b in zip(ws, zb))


def test_nfn_errors():
    ws = [torch.randn(2, 4, 3), torch.randn(2, 1, 4)]
    bs = [torch.randn(2, 4), torch.randn(2, 1)]
    nw, nb = to_nfn(ws, bs)
    with pytest.raises(ValueError, match=r"weights\[0\] has 3 channels"):
        from_nfn(((nw[0].expand(2, 3, 4, 3), nw[1]), nb))
    with pytest.raises(ValueError, match=r"biases\[1\].*c=1"):
        from_nfn((nw, (nb[0], torch.zeros(2, 2, 1))))
    with pytest.raises(ValueError, match=r"weights\[0\] must be batched"):
        to_nfn([w[0] for w in ws], None)
    with pytest.raises(ValueError, match=r"biases\[1\] must have shape \[2, 1\]"):
        to_nfn(ws, [bs[0], torch.zeros(2, 3)])
    with pytest.raises(ValueError, match=r"weights\[1\] has batch size 3"):
        to_nfn([ws[0], torch.zeros(3, 1, 4)], None)
    with pytest.raises(TypeError, match="nfn_tuple"):
        from_nfn(nw[0])
