"""Typed wrappers, fake kernels and autograd for the weights <-> graph ops.

``torch.ops.scalegmn.weights_to_graph`` and ``torch.ops.scalegmn.graph_to_weights`` are each
other's transpose: the backward of one is the other (with zero for the constant input-node
features), so gradients of any order flow through both.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from .._library import HAS_EXTENSION, compiled_ok, cuda_kernels_for
from ..weightspace.architecture import Architecture
from ..reference import graph as _ref

__all__ = ["weights_to_graph", "graph_to_weights"]

_FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)

if HAS_EXTENSION:

    _INT64_MAX = 2**63 - 1

    def _check_max_kernel(op, max_kh, max_kw):
        # the real kernels' checks (csrc/ops/graph_meta.cpp): positive grid, Kh * Kw fits int64
        torch._check(max_kh > 0 and max_kw > 0, lambda: f"{op}: max kernel size must be positive, got {max_kh}x{max_kw}")
        torch._check(max_kh * max_kw <= _INT64_MAX,
                     lambda: f"{op}: edge feature width max_kh * max_kw = {max_kh} * {max_kw} overflows int64")

    @torch.library.register_fake("scalegmn::weights_to_graph")
    def _weights_to_graph_fake(weights, biases, max_kh, max_kw, dense_centre, input_value):
        op = "weights_to_graph"
        torch._check(len(weights) > 0, lambda: f"{op}: weights must hold at least one layer")
        torch._check(len(weights) == len(biases), lambda: f"{op}: got {len(weights)} weight tensors but {len(biases)} bias tensors")
        _check_max_kernel(op, max_kh, max_kw)
        w0 = weights[0]
        for l, (w, b) in enumerate(zip(weights, biases)):
            torch._check(w.dim() in (3, 5), lambda: f"{op}: weights[{l}] must be [B, out, in] or [B, out, in, kh, kw]")
            torch._check(w.dtype == w0.dtype and b.dtype == w0.dtype, lambda: f"{op}: layer {l} dtype differs from weights[0]")
            torch._check(w.shape[0] == w0.shape[0], lambda: f"{op}: weights[{l}] batch differs from weights[0]")
            torch._check(l == 0 or w.shape[2] == weights[l - 1].shape[1], lambda: f"{op}: weights[{l}] in != previous out")
            if w.dim() == 5:
                torch._check(w.shape[3] <= max_kh and w.shape[4] <= max_kw, lambda: f"{op}: weights[{l}] kernel exceeds the max")
            torch._check(b.dim() == 2 and b.shape[0] == w0.shape[0] and b.shape[1] == w.shape[1],
                         lambda: f"{op}: biases[{l}] must be [B, out]")
        n = w0.shape[2] + sum(w.shape[1] for w in weights)
        e = sum(w.shape[1] * w.shape[2] for w in weights)
        return w0.new_empty(w0.shape[0], n, 1), w0.new_empty(w0.shape[0], e, max_kh * max_kw)

    @torch.library.register_fake("scalegmn::graph_to_weights")
    def _graph_to_weights_fake(node, edge, layout, kernel_h, kernel_w, is_conv, max_kh, max_kw, dense_centre):
        op = "graph_to_weights"
        L = len(layout) - 1
        torch._check(L >= 1, lambda: f"{op}: layout must list at least two layer widths")
        torch._check(len(kernel_h) == L and len(kernel_w) == L and len(is_conv) == L,
                     lambda: f"{op}: kernel_h, kernel_w and is_conv must have one entry per layer ({L})")
        _check_max_kernel(op, max_kh, max_kw)
        for l in range(L):
            torch._check(layout[l] > 0 and layout[l + 1] > 0, lambda: f"{op}: layout entries must be positive")
            torch._check(0 < kernel_h[l] <= max_kh and 0 < kernel_w[l] <= max_kw,
                         lambda: f"{op}: kernel size of layer {l} must be positive and fit the max kernel")
            torch._check(is_conv[l] or (kernel_h[l] == 1 and kernel_w[l] == 1), lambda: f"{op}: dense layer {l} must be 1x1")
        n = sum(layout)
        e = sum(layout[l] * layout[l + 1] for l in range(L))
        torch._check(e <= _INT64_MAX, lambda: f"{op}: edge count E overflows int64")
        B = node.shape[0]
        torch._check(node.dim() == 3 and node.shape[1] == n and node.shape[2] == 1, lambda: f"{op}: node features must be [B, {n}, 1]")
        torch._check(edge.dim() == 3 and edge.shape[0] == B and edge.shape[1] == e and edge.shape[2] == max_kh * max_kw,
                     lambda: f"{op}: edge features must be [{B}, {e}, {max_kh * max_kw}]")
        torch._check(edge.dtype == node.dtype, lambda: f"{op}: node and edge features must share dtype and device")
        ws, bs = [], []
        for l in range(L):
            shape = (B, layout[l + 1], layout[l]) + ((kernel_h[l], kernel_w[l]) if is_conv[l] else ())
            ws.append(node.new_empty(shape))
            bs.append(node.new_empty(B, layout[l + 1]))
        return ws, bs

    def _w2g_setup(ctx, inputs, output):
        weights, _, max_kh, max_kw, dense_centre, _ = inputs
        ctx.layout = [weights[0].shape[2]] + [w.shape[1] for w in weights]
        ctx.kernel_h = [w.shape[3] if w.dim() == 5 else 1 for w in weights]
        ctx.kernel_w = [w.shape[4] if w.dim() == 5 else 1 for w in weights]
        ctx.is_conv = [w.dim() == 5 for w in weights]
        ctx.max_k = (max_kh, max_kw)
        ctx.dense_centre = dense_centre

    def _w2g_backward(ctx, grad_node, grad_edge):
        gw, gb = torch.ops.scalegmn.graph_to_weights(
            grad_node, grad_edge, ctx.layout, ctx.kernel_h, ctx.kernel_w, ctx.is_conv,
            ctx.max_k[0], ctx.max_k[1], ctx.dense_centre,
        )
        return gw, gb, None, None, None, None

    torch.library.register_autograd("scalegmn::weights_to_graph", _w2g_backward, setup_context=_w2g_setup)

    def _g2w_setup(ctx, inputs, output):
        ctx.max_k = (inputs[6], inputs[7])
        ctx.dense_centre = inputs[8]
        ctx.layout = inputs[2]

    def _g2w_backward(ctx, grad_weights, grad_biases):
        gn, ge = torch.ops.scalegmn.weights_to_graph(
            list(grad_weights), list(grad_biases), ctx.max_k[0], ctx.max_k[1], ctx.dense_centre, 0.0
        )
        return gn, ge, None, None, None, None, None, None, None

    torch.library.register_autograd("scalegmn::graph_to_weights", _g2w_backward, setup_context=_g2w_setup)


_HAS_CUDA_KERNELS = cuda_kernels_for("weights_to_graph", "graph_to_weights")


def _compiled_ok(t: Tensor) -> bool:
    return compiled_ok(t, _HAS_CUDA_KERNELS)


def _check_grid(Kh: int, Kw: int) -> None:
    # the ops' own checks, raised before any allocation (the grid width Kh * Kw is an int64 size)
    if Kh <= 0 or Kw <= 0:
        raise ValueError(f"max_kernel_size must be positive, got {(Kh, Kw)}")
    if Kh * Kw > 2**63 - 1:
        raise ValueError(f"max_kernel_size {(Kh, Kw)}: the edge feature width Kh * Kw overflows int64")


def _check_weights(weights, biases, arch: Architecture | None) -> tuple[list[Tensor], list[Tensor], bool]:
    if isinstance(weights, Tensor) or not isinstance(weights, Sequence) or len(weights) == 0:
        raise TypeError("weights must be a non-empty list of per-layer tensors [B, out, in] or [B, out, in, kh, kw]")
    w0 = weights[0]
    if not isinstance(w0, Tensor):
        raise TypeError(f"weights[0] must be a Tensor, got {type(w0).__name__}")
    batched = w0.dim() in (3, 5)
    if w0.dim() not in (2, 3, 4, 5):
        raise ValueError(f"weights[0] must be [B, out, in] or [B, out, in, kh, kw] (or unbatched), got shape {tuple(w0.shape)}")
    if biases is None:
        biases = [None] * len(weights)
    if len(biases) != len(weights):
        raise ValueError(f"biases has {len(biases)} entries but weights has {len(weights)} layers")
    if w0.dtype not in _FLOAT_DTYPES:
        raise TypeError(f"weights[0] must be a floating tensor (float16/bfloat16/float32/float64), got {w0.dtype}")
    ws, bs = [], []
    B = w0.shape[0] if batched else None
    for l, w in enumerate(weights):
        if not isinstance(w, Tensor):
            raise TypeError(f"weights[{l}] must be a Tensor, got {type(w).__name__}")
        if w.dtype != w0.dtype or w.device != w0.device:
            raise TypeError(f"weights[{l}] is {w.dtype} on {w.device}; expected {w0.dtype} on {w0.device} like weights[0]")
        exp_dims = (3, 5) if batched else (2, 4)
        if w.dim() not in exp_dims:
            kind = "batched [B, out, in] or [B, out, in, kh, kw]" if batched else "unbatched [out, in] or [out, in, kh, kw]"
            raise ValueError(f"weights[{l}] must be {kind} like weights[0], got shape {tuple(w.shape)}")
        if not batched:
            w = w.unsqueeze(0)
        if batched and w.shape[0] != B:
            raise ValueError(f"weights[{l}] has batch size {w.shape[0]}, expected {B} (from weights[0])")
        if l > 0 and w.shape[2] != ws[-1].shape[1]:
            raise ValueError(
                f"weights[{l}] has in={w.shape[2]} (shape {tuple(w.shape)}) but weights[{l - 1}] has out={ws[-1].shape[1]}"
            )
        if w.shape[1] == 0 or w.shape[2] == 0:
            raise ValueError(f"weights[{l}] has an empty layer (shape {tuple(w.shape)}); the graph needs >= 1 neuron per layer")
        ws.append(w)
    for l, (w, b) in enumerate(zip(ws, biases)):
        if b is None:
            b = w.new_zeros(w.shape[0], w.shape[1])
        else:
            if not isinstance(b, Tensor):
                raise TypeError(f"biases[{l}] must be a Tensor or None, got {type(b).__name__}")
            if b.dtype != w0.dtype or b.device != w0.device:
                raise TypeError(f"biases[{l}] is {b.dtype} on {b.device}; expected {w0.dtype} on {w0.device}")
            expected = (w.shape[0], w.shape[1]) if batched else (w.shape[1],)
            if tuple(b.shape) != expected:
                kind = "[B, out]" if batched else "[out] (unbatched)"
                raise ValueError(f"biases[{l}] must have shape {expected} ({kind}), got {tuple(b.shape)}")
            if not batched:
                b = b.unsqueeze(0)
        bs.append(b)
    if arch is not None:
        if len(ws) != arch.num_layers:
            raise ValueError(f"weights has {len(ws)} layers but the architecture has {arch.num_layers}")
        for l, (w, spec) in enumerate(zip(ws, arch.layers)):
            if tuple(w.shape[1:]) != spec.weight_shape:
                raise ValueError(f"weights[{l}] has per-network shape {tuple(w.shape[1:])}, the architecture expects {spec.weight_shape}")
    return ws, bs, batched


def weights_to_graph(
    weights: Sequence[Tensor],
    biases: Sequence[Tensor | None] | None = None,
    arch: Architecture | None = None,
    *,
    max_kernel_size: tuple[int, int] | None = None,
    dense_centre: bool = True,
    input_value: float = 1.0,
) -> tuple[Tensor, Tensor]:
    """Batched graph construction from the weights of B networks of one architecture.

    Args:
        weights: per layer, ``[B, out, in]`` (dense) or ``[B, out, in, kh, kw]`` (conv); the
            batch axis may be omitted for a single network.
        biases: per layer ``[B, out]``, or None (treated as zeros).
        arch: optional :class:`Architecture` to validate against; it also fixes the kernel grid.
        max_kernel_size: edge-feature grid ``(Kh, Kw)``; default: the largest kernel present.
        dense_centre: put dense weights in the centre slot of the grid (a 1x1 kernel, centred
            like conv kernels); False puts them in slot 0 as the public ScaleGMN code does.
        input_value: feature of the input nodes (1.0 for INRs in the public code, 0.0 for CNNs).

    Returns:
        ``node`` ``[B, N, 1]`` (input nodes: ``input_value``; others: biases, layer by layer) and
        ``edge`` ``[B, E, Kh * Kw]`` in receiver-major order (see :mod:`scalegmn_ext.weightspace.graph`).
        NaN/Inf weights are copied through unchanged. Differentiable w.r.t. weights and biases.
    """
    ws, bs, batched = _check_weights(weights, biases, arch)
    if max_kernel_size is None:
        max_kernel_size = arch.max_kernel_size if arch is not None else (
            max(w.shape[3] if w.dim() == 5 else 1 for w in ws), max(w.shape[4] if w.dim() == 5 else 1 for w in ws))
    Kh, Kw = (int(k) for k in max_kernel_size)
    _check_grid(Kh, Kw)
    for l, w in enumerate(ws):
        if w.dim() == 5 and (w.shape[3] > Kh or w.shape[4] > Kw):
            raise ValueError(f"weights[{l}] has a {w.shape[3]}x{w.shape[4]} kernel, larger than max_kernel_size {(Kh, Kw)}")
    fn = torch.ops.scalegmn.weights_to_graph if _compiled_ok(ws[0]) else _ref.weights_to_graph
    node, edge = fn(ws, bs, Kh, Kw, bool(dense_centre), float(input_value))
    return (node, edge) if batched else (node[0], edge[0])


def graph_to_weights(
    node: Tensor,
    edge: Tensor,
    arch: Architecture,
    *,
    max_kernel_size: tuple[int, int] | None = None,
    dense_centre: bool = True,
) -> tuple[list[Tensor], list[Tensor]]:
    """Inverse of :func:`weights_to_graph`: node ``[B, N, 1]`` + edge ``[B, E, K]`` -> weights, biases.

    Padding slots of the edge grid and the input-node features are ignored (their gradient is 0).
    Unbatched ``[N, 1]`` / ``[E, K]`` input gives unbatched weights.
    """
    if not isinstance(arch, Architecture):
        raise TypeError(f"arch must be an Architecture, got {type(arch).__name__}")
    for name, t in (("node", node), ("edge", edge)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{name} must be a Tensor, got {type(t).__name__}")
        if t.dtype not in _FLOAT_DTYPES:
            raise TypeError(f"{name} must be a floating tensor, got {t.dtype}")
    batched = node.dim() == 3
    if not batched:
        node, edge = node.unsqueeze(0), edge.unsqueeze(0)
    Kh, Kw = (int(k) for k in (max_kernel_size if max_kernel_size is not None else arch.max_kernel_size))
    _check_grid(Kh, Kw)
    N, E = arch.num_nodes, arch.num_edges
    if node.dim() != 3 or node.shape[1:] != (N, 1):
        raise ValueError(f"node must be [B, {N}, 1] (or [{N}, 1]) for {arch}, got shape {tuple(node.shape)}")
    if edge.dim() != 3 or edge.shape != (node.shape[0], E, Kh * Kw):
        raise ValueError(f"edge must be [{node.shape[0]}, {E}, {Kh * Kw}] for {arch}, got shape {tuple(edge.shape)}")
    if edge.dtype != node.dtype or edge.device != node.device:
        raise TypeError(f"edge is {edge.dtype} on {edge.device} but node is {node.dtype} on {node.device}")
    args = (
        list(arch.layout), [l.kernel_size[0] for l in arch.layers], [l.kernel_size[1] for l in arch.layers],
        [l.is_conv for l in arch.layers], int(Kh), int(Kw), bool(dense_centre),
    )
    fn = torch.ops.scalegmn.graph_to_weights if _compiled_ok(node) else _ref.graph_to_weights
    ws, bs = fn(node, edge, *args)
    if not batched:
        ws, bs = [w[0] for w in ws], [b[0] for b in bs]
    return list(ws), list(bs)
