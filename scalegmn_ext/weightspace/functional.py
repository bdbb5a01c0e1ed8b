"""Batched functional forward of B networks of one :class:`~scalegmn_ext.weightspace.architecture.Architecture`.

All B networks are evaluated in ONE call, without a Python loop over networks:

* MLPs: ``torch.matmul`` / ``torch.baddbmm`` over the batch axis.
* CNNs: one grouped convolution per conv layer (``groups=B``, weights reshaped to
  ``[B * out, in, kh, kw]``, activations laid out as ``[P, B * C, H, W]``), then global average
  pooling over space, then the dense layers as for MLPs.

The computation is ordinary differentiable PyTorch, so it can be used to train a batch of INRs
or CNNs at once (gradients w.r.t. weights, biases and inputs).

Network semantics (shared by :mod:`scalegmn_ext.weightspace.symmetry`):

* MLP: ``h_0 = x``; ``h_l = act(W_l h_{l-1} + b_l)`` for hidden layers; the last layer has no
  activation. ``sine`` means ``sin(arch.w0 * z)`` after every hidden layer, including the first
  (SIREN).
* CNN: every conv layer is followed by the activation (stride/padding from its ``LayerSpec``),
  then global average pooling over space, then the dense layers with the activation between
  them. The last layer of the network (dense, or conv if there is no dense layer) has no
  activation.
* The network output gets ``+ arch.output_offset``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .architecture import ACTIVATION_SYMMETRY, Architecture
from .validation import check_weights

__all__ = ["activation_fn", "forward", "preactivations", "coordinate_grid", "render_inr"]


def activation_fn(name: str, w0: float = 30.0) -> Callable[[Tensor], Tensor]:
    """The elementwise activation ``name`` (one of :data:`~scalegmn_ext.weightspace.architecture.ACTIVATION_SYMMETRY`).

    ``leaky_relu`` uses slope 0.01; ``sine`` is ``sin(w0 * z)``.
    """
    if name == "relu":
        return torch.relu
    if name == "leaky_relu":
        return lambda z: F.leaky_relu(z, 0.01)
    if name == "tanh":
        return torch.tanh
    if name == "sine":
        w0 = float(w0)
        return lambda z: torch.sin(w0 * z)
    if name == "identity":
        return lambda z: z
    if name == "sigmoid":
        return torch.sigmoid
    if name == "gelu":
        return F.gelu
    if name == "silu":
        return F.silu
    raise ValueError(f"activation name must be one of {sorted(ACTIVATION_SYMMETRY)}, got {name!r}")


def _check_x(arch: Architecture, x, B: int, batched: bool, ref: Tensor) -> tuple[Tensor, bool]:
    """Returns x and whether it is per-network (has a leading B axis)."""
    n_in = arch.layout[0]
    if arch.is_cnn:
        desc = f"[P, {n_in}, H, W] or [B, P, {n_in}, H, W]" if batched else f"[P, {n_in}, H, W]"
        nd = 4
    else:
        desc = f"[P, {n_in}] or [B, P, {n_in}]" if batched else f"[P, {n_in}]"
        nd = 2
    if not isinstance(x, Tensor):
        raise TypeError(f"x must be a Tensor {desc}, got {type(x).__name__}")
    if x.dtype != ref.dtype or x.device != ref.device:
        raise TypeError(f"x must be {ref.dtype} on {ref.device} like the weights, got {x.dtype} on {x.device}")
    ok_dims = (nd, nd + 1) if batched else (nd,)
    bad = x.dim() not in ok_dims
    if not bad:
        ch_axis = x.dim() - 3 if arch.is_cnn else x.dim() - 1
        bad = x.shape[ch_axis] != n_in or (x.dim() == nd + 1 and x.shape[0] != B)
    if bad:
        raise ValueError(f"x must be {desc} (B={B}) for {arch}, got shape {tuple(x.shape)}")
    if arch.is_cnn:
        h, w = x.shape[-2:]
        for l, spec in enumerate(arch.layers):
            if not spec.is_conv:
                break
            h = (h + 2 * spec.padding - spec.kernel_size[0]) // spec.stride + 1
            w = (w + 2 * spec.padding - spec.kernel_size[1]) // spec.stride + 1
            if h <= 0 or w <= 0:
                raise ValueError(
                    f"x spatial size {tuple(x.shape[-2:])} is too small for {arch}: layers[{l}] leaves {h}x{w}"
                )
    return x, x.dim() == nd + 1


# ----------------------------------------------------------------------------------------------
# forward
# ----------------------------------------------------------------------------------------------
def _dense_stack(arch: Architecture, ws, bs, h: Tensor, first: int, act, record: list | None) -> Tensor:
    """Dense layers ``first..L-1``; ``h`` is ``[P, in]`` (shared) or ``[B, P, in]``. Appends each
    layer's pre-activation ``[B, P, out]`` to ``record`` when given."""
    L = arch.num_layers
    for l in range(first, L):
        w, b = ws[l], bs[l]
        wt = w.transpose(1, 2)  # [B, in, out]
        if h.dim() == 2:
            h = torch.matmul(h, wt) + b.unsqueeze(1)  # [P, in] @ [B, in, out] -> [B, P, out]
        else:
            h = torch.baddbmm(b.unsqueeze(1), h, wt)
        if record is not None:
            record.append(h)
        if l < L - 1:
            h = act(h)
    return h


def _evaluate(arch: Architecture, weights, biases, x, record: list | None) -> tuple[Tensor, bool]:
    """The batched forward shared by :func:`forward` and :func:`preactivations`: ``(out, batched)``
    with ``out`` ``[B, P, n_out]`` (no output offset); per-layer pre-activations go to ``record``
    (conv layers: averaged over space, ``[B, P, C]``)."""
    ws, bs, batched = check_weights(weights, biases, arch, arch_required=True)
    B = ws[0].shape[0]
    x, per_net = _check_x(arch, x, B, batched, ws[0])
    act = activation_fn(arch.activation, arch.w0)
    L = arch.num_layers
    P = x.shape[1] if per_net else x.shape[0]

    if not arch.is_cnn:
        return _dense_stack(arch, ws, bs, x, 0, act, record), batched
    n_conv = sum(1 for s in arch.layers if s.is_conv)
    if B == 0:
        # grouped conv needs groups >= 1; the result is empty anyway. Keep it on the autograd graph.
        anchor = sum(ws[l].sum() + bs[l].sum() for l in range(n_conv)) * 0 + x.sum() * 0
        if record is not None:
            record.extend(anchor.expand(0, P, arch.layout[l + 1]) for l in range(n_conv))
        h = anchor.expand(0, P, arch.layout[n_conv])
    else:
        if per_net:  # [B, P, C, H, W] -> [P, B*C, H, W]
            h = x.transpose(0, 1).reshape(P, B * x.shape[2], *x.shape[3:])
            groups0 = B
        else:  # shared images: one ordinary conv with the B stacked filter banks
            h = x
            groups0 = 1
        for l in range(n_conv):
            spec, w, b = arch.layers[l], ws[l], bs[l]
            h = F.conv2d(
                h,
                w.reshape(B * spec.out_features, spec.in_features, *spec.kernel_size),
                b.reshape(B * spec.out_features),
                stride=spec.stride,
                padding=spec.padding,
                groups=groups0 if l == 0 else B,
            )
            if record is not None:
                record.append(h.mean(dim=(2, 3)).reshape(P, B, spec.out_features).transpose(0, 1))
            if l < L - 1:
                h = act(h)
        h = h.mean(dim=(2, 3)).reshape(P, B, arch.layout[n_conv]).transpose(0, 1)  # [B, P, C]
    return _dense_stack(arch, ws, bs, h, n_conv, act, record), batched


def forward(arch: Architecture, weights: Sequence[Tensor], biases: Sequence[Tensor | None] | None, x: Tensor) -> Tensor:
    """Evaluate B networks of ``arch`` in one batched call.

    Args:
        arch: the shared architecture.
        weights: per layer ``[B, out, in]`` (dense) or ``[B, out, in, kh, kw]`` (conv); or all
            unbatched (``[out, in]`` / ``[out, in, kh, kw]``) for a single network.
        biases: per layer ``[B, out]`` (``[out]`` unbatched); None entries (or None) mean zeros.
        x: MLP: ``[P, n_in]`` shared by all networks or ``[B, P, n_in]`` per network.
            CNN: ``[P, C, H, W]`` shared images or ``[B, P, C, H, W]`` per network.
            Unbatched weights take only the shared form.
            Same dtype and device as the weights.

    Returns:
        ``[B, P, n_out]`` (``[P, n_out]`` for unbatched weights), including ``arch.output_offset``.
        Works for B = 0 (empty output) and is differentiable w.r.t. weights, biases and ``x``.
    """
    out, batched = _evaluate(arch, weights, biases, x, None)
    if arch.output_offset:
        out = out + arch.output_offset
    return out if batched else out[0]


def preactivations(
    arch: Architecture, weights: Sequence[Tensor], biases: Sequence[Tensor | None] | None, x: Tensor
) -> list[Tensor]:
    """Every layer's pre-activation ``W_l h_{l-1} + b_l`` on the inputs ``x`` (as :func:`forward`).

    Returns one tensor per weight layer, ``[B, P, out_l]`` (``[P, out_l]`` unbatched); a conv
    layer's map is averaged over space. The last entry is the network output without
    ``arch.output_offset``. Under a hidden-neuron permutation, sign flip (odd activations) or
    positive scale (ReLU) the entry of neuron ``i`` permutes with it and is multiplied by its
    ``q_i`` -- exactly as its bias is -- so these are equivariant node features
    (:class:`~scalegmn_ext.models.probes.ProbeFeatures`).
    """
    record: list[Tensor] = []
    _, batched = _evaluate(arch, weights, biases, x, record)
    return record if batched else [r[0] for r in record]


# ----------------------------------------------------------------------------------------------
# INR rendering
# ----------------------------------------------------------------------------------------------
def coordinate_grid(
    height: int, width: int, *, dtype: torch.dtype = torch.float32, device: torch.device | str | None = None
) -> Tensor:
    """Pixel-centre coordinates in ``[-1, 1]^2``, ``[height * width, 2]``, row-major.

    Row ``r * width + c`` holds ``(y_r, x_c) = (linspace(-1, 1, height)[r], linspace(-1, 1, width)[c])``:
    the FIRST coordinate is the row (vertical) and the second the column, i.e.
    ``torch.stack(torch.meshgrid(linspace(-1,1,h), linspace(-1,1,w), indexing="ij"), -1).reshape(-1, 2)``.
    This is the convention of the published MNIST-INR zoo, so rendering those INRs gives upright
    images. A size of 1 gives the coordinate -1.
    """
    for name, v in (("height", height), ("width", width)):
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise ValueError(f"{name} must be a positive int, got {v!r}")
    ys = torch.linspace(-1.0, 1.0, height, dtype=dtype, device=device)
    xs = torch.linspace(-1.0, 1.0, width, dtype=dtype, device=device)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gy, gx], dim=-1).reshape(height * width, 2)


def render_inr(
    arch: Architecture, weights: Sequence[Tensor], biases: Sequence[Tensor | None] | None, height: int, width: int
) -> Tensor:
    """Render B 2-D INRs (MLPs with 2 inputs) on :func:`coordinate_grid` ``(height, width)``.

    Returns ``[B, height, width]`` for one output channel, ``[B, height, width, C]`` for
    ``C > 1`` (no leading B for unbatched weights). Includes ``arch.output_offset``; no clamping.
    Differentiable.
    """
    if not isinstance(arch, Architecture):
        raise TypeError(f"arch must be an Architecture, got {type(arch).__name__}")
    if arch.is_cnn or arch.layout[0] != 2:
        raise ValueError(f"arch must be an MLP with 2 inputs (a 2-D INR) to render, got {arch}")
    ws, _, batched = check_weights(weights, biases, arch, arch_required=True)
    grid = coordinate_grid(height, width, dtype=ws[0].dtype, device=ws[0].device)
    out = forward(arch, weights, biases, grid)  # [B, H*W, C] or [H*W, C]
    c = arch.layout[-1]
    shape = (height, width) if c == 1 else (height, width, c)
    return out.reshape(*out.shape[:-2], *shape)
