"""Batched functional forward (scalegmn_ext.weightspace.functional) against a per-network torch.nn.functional loop."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from scalegmn_ext import Architecture
from scalegmn_ext.weightspace.functional import activation_fn, coordinate_grid, forward, render_inr

DT = torch.float64

_REF_ACT = {
    "relu": F.relu,
    "leaky_relu": lambda z: F.leaky_relu(z, negative_slope=0.01),
    "tanh": torch.tanh,
    "identity": lambda z: z,
    "sigmoid": torch.sigmoid,
    "gelu": F.gelu,
    "silu": F.silu,
}


def ref_act(arch):
    if arch.activation == "sine":
        return lambda z: torch.sin(arch.w0 * z)
    return _REF_ACT[arch.activation]


def make_params(arch, B, seed, dtype=DT, gain=1.0):
    g = torch.Generator().manual_seed(seed)
    ws, bs = [], []
    for s in arch.layers:
        fan_in = s.in_features * s.kernel_size[0] * s.kernel_size[1]
        ws.append(torch.randn(B, *s.weight_shape, generator=g, dtype=dtype) * gain / math.sqrt(fan_in))
        bs.append(torch.randn(B, s.out_features, generator=g, dtype=dtype) * 0.3)
    return ws, bs


def loop_forward(arch, ws, bs, x):
    """One network at a time with torch.nn.functional; x shared ([P, ...]) or per network ([B, P, ...])."""
    act = ref_act(arch)
    L = arch.num_layers
    B = ws[0].shape[0]
    outs = []
    for n in range(B):
        h = x[n] if x.dim() == (5 if arch.is_cnn else 3) else x
        for l, s in enumerate(arch.layers):
            if s.is_conv:
                h = F.conv2d(h, ws[l][n], bs[l][n], stride=s.stride, padding=s.padding)
                if l < L - 1:
                    h = act(h)
                if l + 1 == L or not arch.layers[l + 1].is_conv:
                    h = h.mean(dim=(2, 3))
            else:
                h = F.linear(h, ws[l][n], bs[l][n])
                if l < L - 1:
                    h = act(h)
        outs.append(h + arch.output_offset)
    return torch.stack(outs) if outs else None


def rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()


# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "tanh", "sine", "identity", "sigmoid", "gelu", "silu"])
@pytest.mark.parametrize("seed", [3, 1017])
def test_mlp_matches_loop(activation, seed):
    arch = Architecture.mlp([3, 7, 5, 2], activation=activation, w0=3.0, output_offset=0.25)
    ws, bs = make_params(arch, 5, seed)
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(11, 3, generator=g, dtype=DT)
    y = forward(arch, ws, bs, x)
    assert y.shape == (5, 11, 2)
    assert rel_err(y, loop_forward(arch, ws, bs, x)) < 1e-12
    xb = torch.randn(5, 11, 3, generator=g, dtype=DT)
    yb = forward(arch, ws, bs, xb)
    assert yb.shape == (5, 11, 2)
    assert rel_err(yb, loop_forward(arch, ws, bs, xb)) < 1e-12


def test_mlp_single_layer_and_deep():
    for widths in ([4, 3], [2, 9, 9, 9, 9, 1]):
        arch = Architecture.mlp(widths, activation="tanh")
        ws, bs = make_params(arch, 3, 77)
        x = torch.randn(6, widths[0], dtype=DT)
        assert rel_err(forward(arch, ws, bs, x), loop_forward(arch, ws, bs, x)) < 1e-12


@pytest.mark.parametrize("activation", ["relu", "tanh", "sine", "gelu"])
@pytest.mark.parametrize("seed", [5, 2024])
def test_cnn_matches_loop(activation, seed):
    arch = Architecture.cnn(
        in_channels=3, channels=(5, 7), kernel_size=3, stride=2, padding=1, dense=(6, 3), activation=activation
    )
    ws, bs = make_params(arch, 4, seed)
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(3, 3, 11, 9, generator=g, dtype=DT)
    y = forward(arch, ws, bs, x)
    assert y.shape == (4, 3, 3)
    assert rel_err(y, loop_forward(arch, ws, bs, x)) < 1e-12
    xb = torch.randn(4, 3, 3, 11, 9, generator=g, dtype=DT)
    yb = forward(arch, ws, bs, xb)
    assert yb.shape == (4, 3, 3)
    assert rel_err(yb, loop_forward(arch, ws, bs, xb)) < 1e-12


def test_cnn_mixed_kernels():
    arch = Architecture.cnn(
        in_channels=2,
        channels=(3, 5, 4),
        kernel_size=(5, (1, 3), (3, 1)),
        stride=1,
        padding=1,
        dense=(3,),
        activation="leaky_relu",
    )
    ws, bs = make_params(arch, 3, 91)
    x = torch.randn(2, 2, 10, 7, dtype=DT)
    assert rel_err(forward(arch, ws, bs, x), loop_forward(arch, ws, bs, x)) < 1e-12
    xb = torch.randn(3, 2, 2, 10, 7, dtype=DT)
    assert rel_err(forward(arch, ws, bs, xb), loop_forward(arch, ws, bs, xb)) < 1e-12


def test_cnn_without_dense_head():
    arch = Architecture.cnn(in_channels=1, channels=(3, 2), kernel_size=3, stride=1, dense=(), activation="tanh")
    ws, bs = make_params(arch, 2, 13)
    x = torch.randn(4, 1, 7, 7, dtype=DT)
    y = forward(arch, ws, bs, x)
    assert y.shape == (2, 4, 2)
    assert rel_err(y, loop_forward(arch, ws, bs, x)) < 1e-12


def test_small_cnn_zoo_shape():
    arch = Architecture.small_cnn_zoo()
    ws, bs = make_params(arch, 3, 8)
    x = torch.randn(5, 1, 28, 28, dtype=DT)
    y = forward(arch, ws, bs, x)
    assert y.shape == (3, 5, 10)
    assert rel_err(y, loop_forward(arch, ws, bs, x)) < 1e-12


def test_siren():
    arch = Architecture.siren()
    ws, bs = make_params(arch, 3, 21)
    x = coordinate_grid(6, 5, dtype=DT)
    y = forward(arch, ws, bs, x)
    ref = loop_forward(arch, ws, bs, x)
    assert y.shape == (3, 30, 1)
    assert rel_err(y, ref) < 1e-12
    # sine after the first layer, output offset 0.5
    h = torch.sin(30.0 * (x @ ws[0][1].T + bs[0][1]))
    h = torch.sin(30.0 * (h @ ws[1][1].T + bs[1][1]))
    assert torch.allclose(y[1], h @ ws[2][1].T + bs[2][1] + 0.5)


@pytest.mark.parametrize("cnn", [False, True])
def test_empty_batch(cnn):
    arch = Architecture.cnn(in_channels=2, channels=(3,), dense=(4,), stride=1) if cnn else Architecture.mlp([3, 5, 4])
    ws, bs = make_params(arch, 0, 1)
    for w in ws + bs:
        w.requires_grad_(True)
    x = torch.randn(6, 2, 5, 5, dtype=DT) if cnn else torch.randn(6, 3, dtype=DT)
    y = forward(arch, ws, bs, x)
    assert y.shape == (0, 6, 4)
    y.sum().backward()
    assert ws[0].grad is not None and ws[0].grad.shape == ws[0].shape
    xb = x.unsqueeze(0)[:0]
    assert forward(arch, ws, bs, xb).shape == (0, 6, 4)


@pytest.mark.parametrize("cnn", [False, True])
def test_unbatched(cnn):
    arch = (
        Architecture.cnn(in_channels=2, channels=(3, 4), dense=(2,), stride=1, activation="tanh")
        if cnn
        else Architecture.mlp([3, 5, 2], activation="tanh")
    )
    ws, bs = make_params(arch, 1, 4)
    x = torch.randn(3, 2, 6, 6, dtype=DT) if cnn else torch.randn(3, 3, dtype=DT)
    y1 = forward(arch, [w[0] for w in ws], [b[0] for b in bs], x)
    assert y1.shape == (3, 2)
    assert torch.allclose(y1, forward(arch, ws, bs, x)[0])


def test_none_biases_are_zeros():
    arch = Architecture.mlp([3, 4, 2])
    ws, bs = make_params(arch, 2, 9)
    x = torch.randn(5, 3, dtype=DT)
    zeros = [torch.zeros_like(b) for b in bs]
    assert torch.equal(forward(arch, ws, None, x), forward(arch, ws, zeros, x))
    assert torch.equal(forward(arch, ws, [None, bs[1]], x), forward(arch, ws, [zeros[0], bs[1]], x))


@pytest.mark.parametrize("cnn", [False, True])
def test_gradients(cnn):
    arch = (
        Architecture.cnn(in_channels=2, channels=(2, 3), kernel_size=(3, 1), stride=1, dense=(2,), activation="tanh")
        if cnn
        else Architecture.mlp([2, 3, 2], activation="sine", w0=2.0)
    )
    ws, bs = make_params(arch, 2, 31)
    x = torch.randn(2, 2, 4, 4, dtype=DT) if cnn else torch.randn(3, 2, dtype=DT)
    params = [t.clone().requires_grad_(True) for t in ws + bs] + [x.clone().requires_grad_(True)]
    L = arch.num_layers

    def f(*p):
        return forward(arch, list(p[:L]), list(p[L : 2 * L]), p[-1])

    assert torch.autograd.gradcheck(f, params, fast_mode=True)
    # gradients equal the per-network loop's
    out = f(*params)
    gw = torch.autograd.grad(out.square().sum(), params[:L])
    params2 = [p.detach().clone().requires_grad_(True) for p in params]
    out2 = loop_forward(arch, params2[:L], params2[L : 2 * L], params2[-1])
    gw2 = torch.autograd.grad(out2.square().sum(), params2[:L])
    for a, b in zip(gw, gw2):
        assert torch.allclose(a, b)


def test_float32_default():
    arch = Architecture.mlp([2, 4, 1])
    ws, bs = make_params(arch, 3, 2, dtype=torch.float32)
    y = forward(arch, ws, bs, torch.randn(5, 2))
    assert y.dtype == torch.float32 and y.shape == (3, 5, 1)


# ----------------------------------------------------------------------------------------------
def test_coordinate_grid_convention():
    g = coordinate_grid(3, 5, dtype=DT)
    assert g.shape == (15, 2)
    # row-major; first coordinate = row (y), second = column (x)
    assert torch.equal(g[0], torch.tensor([-1.0, -1.0], dtype=DT))
    assert torch.allclose(g[1], torch.tensor([-1.0, -0.5], dtype=DT))
    assert torch.allclose(g[5], torch.tensor([0.0, -1.0], dtype=DT))
    assert torch.equal(g[-1], torch.tensor([1.0, 1.0], dtype=DT))


def test_render_inr():
    arch = Architecture.siren(widths=(2, 6, 3), w0=4.0, output_offset=0.5)
    ws, bs = make_params(arch, 2, 40)
    img = render_inr(arch, ws, bs, 4, 7)
    assert img.shape == (2, 4, 7, 3)
    ys, xs = torch.linspace(-1, 1, 4, dtype=DT), torch.linspace(-1, 1, 7, dtype=DT)
    pt = torch.stack([ys[2], xs[5]]).unsqueeze(0)
    assert torch.allclose(img[1, 2, 5], forward(arch, ws, bs, pt)[1, 0])
    arch1 = Architecture.siren(widths=(2, 5, 1))
    ws1, bs1 = make_params(arch1, 3, 41)
    assert render_inr(arch1, ws1, bs1, 6, 5).shape == (3, 6, 5)
    assert render_inr(arch1, [w[0] for w in ws1], [b[0] for b in bs1], 6, 5).shape == (6, 5)
    assert render_inr(arch1, [w[:0] for w in ws1], [b[:0] for b in bs1], 6, 5).shape == (0, 6, 5)


def test_activation_fn():
    z = torch.tensor([-2.0, 0.5], dtype=DT)
    assert torch.allclose(activation_fn("leaky_relu")(z), torch.tensor([-0.02, 0.5], dtype=DT))
    assert torch.allclose(activation_fn("sine", 3.0)(z), torch.sin(3.0 * z))
    assert torch.equal(activation_fn("identity")(z), z)
    with pytest.raises(ValueError, match="activation name"):
        activation_fn("swish")


# ----------------------------------------------------------------------------------------------
def test_errors():
    mlp = Architecture.mlp([2, 4, 1])
    ws, bs = make_params(mlp, 3, 0)
    x = torch.randn(5, 2, dtype=DT)
    with pytest.raises(TypeError, match="arch"):
        forward("mlp", ws, bs, x)
    with pytest.raises(ValueError, match=r"x must be \[P, 2\] or \[B, P, 2\]"):
        forward(mlp, ws, bs, torch.randn(5, 3, dtype=DT))
    with pytest.raises(ValueError, match="x must be"):
        forward(mlp, ws, bs, torch.randn(4, 5, 2, dtype=DT))  # wrong B
    with pytest.raises(ValueError, match="x must be"):
        forward(mlp, ws, bs, torch.randn(2, dtype=DT))
    with pytest.raises(TypeError, match="x must be torch.float64"):
        forward(mlp, ws, bs, x.float())
    with pytest.raises(TypeError, match="x must be a Tensor"):
        forward(mlp, ws, bs, [[0.0, 1.0]])
    with pytest.raises(ValueError, match="weights must have 2 entries"):
        forward(mlp, ws[:1], bs, x)
    with pytest.raises(ValueError, match=r"weights\[1\] must be"):
        forward(mlp, [ws[0], torch.randn(3, 1, 5, dtype=DT)], bs, x)
    with pytest.raises(ValueError, match=r"weights\[1\] must be"):
        forward(mlp, [ws[0], torch.randn(2, 1, 4, dtype=DT)], bs, x)  # batch mismatch
    with pytest.raises(TypeError, match=r"weights\[1\] is torch.float32"):
        forward(mlp, [ws[0], ws[1].float()], bs, x)
    with pytest.raises(ValueError, match=r"biases\[0\] must have shape"):
        forward(mlp, ws, [bs[0][:, :3], bs[1]], x)
    with pytest.raises(ValueError, match="biases must have 2 entries"):
        forward(mlp, ws, bs[:1], x)
    with pytest.raises(TypeError, match=r"weights\[0\] must be a floating"):
        forward(mlp, [w.long() for w in ws], bs, x)
    with pytest.raises(ValueError, match=r"weights\[0\] must be"):
        forward(mlp, [ws[0][None]] + ws[1:], bs, x)
    with pytest.raises(ValueError, match=r"x must be \[P, 2\]"):  # unbatched weights take shared x only
        forward(mlp, [w[0] for w in ws], [b[0] for b in bs], torch.randn(1, 5, 2, dtype=DT))
    cnn = Architecture.small_cnn_zoo()
    cw, cb = make_params(cnn, 2, 0)
    with pytest.raises(ValueError, match=r"x must be \[P, 1, H, W\] or \[B, P, 1, H, W\]"):
        forward(cnn, cw, cb, torch.randn(3, 3, 28, 28, dtype=DT))
    with pytest.raises(ValueError, match="x spatial size"):
        forward(cnn, cw, cb, torch.randn(3, 1, 8, 8, dtype=DT))
    with pytest.raises(ValueError, match="arch must be an MLP with 2 inputs"):
        render_inr(cnn, cw, cb, 4, 4)
    with pytest.raises(ValueError, match="height"):
        coordinate_grid(0, 3)
