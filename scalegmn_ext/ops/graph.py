"""Typed wrappers, fake kernels and autograd for the weights <-> graph ops.

``torch.ops.scalegmn.weights_to_graph`` and ``torch.ops.scalegmn.graph_to_weights`` are each
other's transpose: the backward of one is the other (with zero for the constant input-node
features), so gradients of any order flow through both.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .._library import FLOAT_DTYPES, INT64_MAX, register_op, use_compiled
from ..reference import graph as _ref
from ..weightspace.architecture import Architecture
from ..weightspace.validation import check_weights

__all__ = ["weights_to_graph", "graph_to_weights"]


def _check_max_kernel(op, max_kh, max_kw):
    # the real kernels' checks (csrc/ops/graph.cpp): positive grid, Kh * Kw fits int64
    torch._check(max_kh > 0 and max_kw > 0, lambda: f"{op}: max kernel size must be positive, got {max_kh}x{max_kw}")
    torch._check(
        max_kh * max_kw <= INT64_MAX,
        lambda: f"{op}: edge feature width max_kh * max_kw = {max_kh} * {max_kw} overflows int64",
    )


def _weights_to_graph_fake(weights, biases, max_kh, max_kw, dense_centre, input_value):
    op = "weights_to_graph"
    torch._check(len(weights) > 0, lambda: f"{op}: weights must hold at least one layer")
    torch._check(
        len(weights) == len(biases), lambda: f"{op}: got {len(weights)} weight tensors but {len(biases)} bias tensors"
    )
    _check_max_kernel(op, max_kh, max_kw)
    w0 = weights[0]
    torch._check(w0.dtype in FLOAT_DTYPES, lambda: f"{op}: weights must be float16, bfloat16, float32 or float64")
    for l, (w, b) in enumerate(zip(weights, biases)):
        torch._check(w.dim() in (3, 5), lambda: f"{op}: weights[{l}] must be [B, out, in] or [B, out, in, kh, kw]")
        torch._check(
            w.dtype == w0.dtype and b.dtype == w0.dtype, lambda: f"{op}: layer {l} dtype differs from weights[0]"
        )
        torch._check(w.shape[0] == w0.shape[0], lambda: f"{op}: weights[{l}] batch differs from weights[0]")
        torch._check(l == 0 or w.shape[2] == weights[l - 1].shape[1], lambda: f"{op}: weights[{l}] in != previous out")
        if w.dim() == 5:
            torch._check(
                w.shape[3] <= max_kh and w.shape[4] <= max_kw, lambda: f"{op}: weights[{l}] kernel exceeds the max"
            )
        torch._check(
            b.dim() == 2 and b.shape[0] == w0.shape[0] and b.shape[1] == w.shape[1],
            lambda: f"{op}: biases[{l}] must be [B, out]",
        )
    n = w0.shape[2] + sum(w.shape[1] for w in weights)
    e = sum(w.shape[1] * w.shape[2] for w in weights)
    return w0.new_empty(w0.shape[0], n, 1), w0.new_empty(w0.shape[0], e, max_kh * max_kw)


def _graph_to_weights_fake(node, edge, layout, kernel_h, kernel_w, is_conv, max_kh, max_kw, dense_centre):
    op = "graph_to_weights"
    L = len(layout) - 1
    torch._check(L >= 1, lambda: f"{op}: layout must list at least two layer widths")
    torch._check(
        len(kernel_h) == L and len(kernel_w) == L and len(is_conv) == L,
        lambda: f"{op}: kernel_h, kernel_w and is_conv must have one entry per layer ({L})",
    )
    _check_max_kernel(op, max_kh, max_kw)
    torch._check(node.dtype in FLOAT_DTYPES, lambda: f"{op}: node and edge features must be floating")
    for l in range(L):
        torch._check(layout[l] > 0 and layout[l + 1] > 0, lambda: f"{op}: layout entries must be positive")
        torch._check(
            0 < kernel_h[l] <= max_kh and 0 < kernel_w[l] <= max_kw,
            lambda: f"{op}: kernel size of layer {l} must be positive and fit the max kernel",
        )
        torch._check(
            is_conv[l] or (kernel_h[l] == 1 and kernel_w[l] == 1), lambda: f"{op}: dense layer {l} must be 1x1"
        )
    n = sum(layout)
    e = sum(layout[l] * layout[l + 1] for l in range(L))
    torch._check(e <= INT64_MAX, lambda: f"{op}: edge count E overflows int64")
    B = node.shape[0]
    torch._check(
        node.dim() == 3 and node.shape[1] == n and node.shape[2] == 1,
        lambda: f"{op}: node features must be [B, {n}, 1]",
    )
    torch._check(
        edge.dim() == 3 and edge.shape[0] == B and edge.shape[1] == e and edge.shape[2] == max_kh * max_kw,
        lambda: f"{op}: edge features must be [{B}, {e}, {max_kh * max_kw}]",
    )
    torch._check(edge.dtype == node.dtype, lambda: f"{op}: node and edge features must share dtype and device")
    ws, bs = [], []
    for l in range(L):
        shape = (B, layout[l + 1], layout[l]) + ((kernel_h[l], kernel_w[l]) if is_conv[l] else ())
        ws.append(node.new_empty(shape))
        bs.append(node.new_empty(B, layout[l + 1]))
    return ws, bs


def _weights_to_graph_backward(ctx, inputs, grad_node, grad_edge):
    # the transpose: graph_to_weights of the gradients (the weight lists arrive as their shapes)
    weight_shapes, _, max_kh, max_kw, dense_centre, _ = inputs
    conv = [len(s) == 5 for s in weight_shapes]
    gw, gb = torch.ops.scalegmn.graph_to_weights(
        grad_node,
        grad_edge,
        [weight_shapes[0][2]] + [s[1] for s in weight_shapes],
        [s[3] if c else 1 for s, c in zip(weight_shapes, conv)],
        [s[4] if c else 1 for s, c in zip(weight_shapes, conv)],
        conv,
        max_kh,
        max_kw,
        dense_centre,
    )
    return gw, gb, None, None, None, None


# The input nodes' features are constants (``input_value``): their gradient is 0.
_INPUT_NODE_GRAD = 0.0


def _graph_to_weights_backward(ctx, inputs, grad_weights, grad_biases):
    # the transpose: weights_to_graph of the gradients
    _, _, _, _, _, _, max_kh, max_kw, dense_centre = inputs
    gn, ge = torch.ops.scalegmn.weights_to_graph(
        list(grad_weights), list(grad_biases), max_kh, max_kw, dense_centre, _INPUT_NODE_GRAD
    )
    return gn, ge, None, None, None, None, None, None, None


# No tensor values are needed in backward (each op's gradient is the other op).
register_op("weights_to_graph", _weights_to_graph_fake, _weights_to_graph_backward, save=())
register_op("graph_to_weights", _graph_to_weights_fake, _graph_to_weights_backward, save=())


def _check_grid(Kh: int, Kw: int) -> None:
    # the ops' own checks, raised before any allocation (the grid width Kh * Kw is an int64 size)
    if Kh <= 0 or Kw <= 0:
        raise ValueError(f"max_kernel_size must be positive, got {(Kh, Kw)}")
    if Kh * Kw > INT64_MAX:
        raise ValueError(f"max_kernel_size {(Kh, Kw)}: the edge feature width Kh * Kw overflows int64")


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
    ws, bs, batched = check_weights(weights, biases, arch)
    if max_kernel_size is None:
        max_kernel_size = (
            arch.max_kernel_size
            if arch is not None
            else (
                max(w.shape[3] if w.dim() == 5 else 1 for w in ws),
                max(w.shape[4] if w.dim() == 5 else 1 for w in ws),
            )
        )
    Kh, Kw = (int(k) for k in max_kernel_size)
    _check_grid(Kh, Kw)
    for l, w in enumerate(ws):
        if w.dim() == 5 and (w.shape[3] > Kh or w.shape[4] > Kw):
            raise ValueError(
                f"weights[{l}] has a {w.shape[3]}x{w.shape[4]} kernel, larger than max_kernel_size {(Kh, Kw)}"
            )
    fn = torch.ops.scalegmn.weights_to_graph if use_compiled("graph", ws[0]) else _ref.weights_to_graph
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
        if t.dtype not in FLOAT_DTYPES:
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
        list(arch.layout),
        [l.kernel_size[0] for l in arch.layers],
        [l.kernel_size[1] for l in arch.layers],
        [l.is_conv for l in arch.layers],
        int(Kh),
        int(Kw),
        bool(dense_centre),
    )
    fn = torch.ops.scalegmn.graph_to_weights if use_compiled("graph", node) else _ref.graph_to_weights
    ws, bs = fn(node, edge, *args)
    if not batched:
        ws, bs = [w[0] for w in ws], [b[0] for b in bs]
    return list(ws), list(bs)
