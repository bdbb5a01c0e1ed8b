"""Pure-PyTorch references of the graph construction ops (test oracles and fallbacks).

``weights_to_graph`` / ``graph_to_weights`` compute exactly what the compiled ops compute, with
ordinary tensor ops. ``dense_adjacency_graph`` is the way the public ScaleGMN code bases build a
graph: one network at a time, through a dense ``[N, N, d_e]`` edge matrix that is then gathered
at the edge list. It is kept as the benchmark baseline (and cross-checks the edge order).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["weights_to_graph", "graph_to_weights", "dense_adjacency_graph", "dense_adjacency_inverse"]


def _offsets(kh: int, kw: int, Kh: int, Kw: int, centre: bool) -> tuple[int, int]:
    return ((Kh - kh) // 2, (Kw - kw) // 2) if centre else (0, 0)


def _pad_kernel(w: Tensor, Kh: int, Kw: int, centre: bool) -> Tensor:
    """[B, out, in, kh, kw] -> [B, out * in, Kh * Kw] with the kernel placed in the grid."""
    B, o, i, kh, kw = w.shape
    oh, ow = _offsets(kh, kw, Kh, Kw, centre)
    w = F.pad(w, (ow, Kw - kw - ow, oh, Kh - kh - oh))
    return w.reshape(B, o * i, Kh * Kw)


def weights_to_graph(
    weights: Sequence[Tensor],
    biases: Sequence[Tensor],
    max_kh: int,
    max_kw: int,
    dense_centre: bool = True,
    input_value: float = 1.0,
) -> tuple[Tensor, Tensor]:
    w0 = weights[0]
    B, n0 = w0.shape[0], w0.shape[2]
    inputs = w0.new_full((B, n0), input_value)
    # explicit width: reshape(B, -1) cannot infer it when B = 0
    node = torch.cat([inputs, *[b.reshape(B, b.shape[-1]) for b in biases]], dim=1).unsqueeze(-1)
    edges = []
    for w in weights:
        is_conv = w.dim() == 5
        w5 = w if is_conv else w[..., None, None]
        edges.append(_pad_kernel(w5, max_kh, max_kw, is_conv or dense_centre))
    return node, torch.cat(edges, dim=1)


def graph_to_weights(
    node: Tensor,
    edge: Tensor,
    layout: Sequence[int],
    kernel_h: Sequence[int],
    kernel_w: Sequence[int],
    is_conv: Sequence[bool],
    max_kh: int,
    max_kw: int,
    dense_centre: bool = True,
) -> tuple[list[Tensor], list[Tensor]]:
    B = node.shape[0]
    weights, biases = [], []
    e_off, n_off = 0, layout[0]
    for l in range(len(layout) - 1):
        n_in, n_out, kh, kw = layout[l], layout[l + 1], kernel_h[l], kernel_w[l]
        oh, ow = _offsets(kh, kw, max_kh, max_kw, is_conv[l] or dense_centre)
        block = edge[:, e_off : e_off + n_out * n_in].reshape(B, n_out, n_in, max_kh, max_kw)
        w = block[..., oh : oh + kh, ow : ow + kw].contiguous()
        weights.append(w if is_conv[l] else w.reshape(B, n_out, n_in))
        biases.append(node[:, n_off : n_off + n_out, 0].contiguous())
        e_off += n_out * n_in
        n_off += n_out
    return weights, biases


def dense_adjacency_graph(
    weights: Sequence[Tensor],
    biases: Sequence[Tensor],
    max_kh: int = 1,
    max_kw: int = 1,
    dense_centre: bool = True,
    input_value: float = 1.0,
) -> tuple[Tensor, Tensor]:
    """Per-network construction through a dense ``[N, N, K]`` matrix (the public code's method).

    Returns the same ``(node [B, N, 1], edge [B, E, K])`` as :func:`weights_to_graph`, built with
    a Python loop over networks: fill the block of each layer of the dense matrix (rows = senders,
    columns = receivers), then gather it at the receiver-major edge list.
    """
    layout = [weights[0].shape[2]] + [w.shape[1] for w in weights]
    N, K = sum(layout), max_kh * max_kw
    starts = [sum(layout[:i]) for i in range(len(layout) + 1)]
    src, dst = [], []
    for l in range(len(weights)):
        d, s = torch.meshgrid(
            torch.arange(layout[l + 1]) + starts[l + 1], torch.arange(layout[l]) + starts[l], indexing="ij"
        )
        src.append(s.reshape(-1))
        dst.append(d.reshape(-1))
    src, dst = torch.cat(src), torch.cat(dst)
    nodes, edges = [], []
    for b in range(weights[0].shape[0]):
        dense = weights[0].new_zeros(N, N, K)
        x = [weights[0].new_full((layout[0],), input_value)]
        for l, (w, bias) in enumerate(zip(weights, biases)):
            w5 = w[b] if w.dim() == 5 else w[b][..., None, None]
            kh, kw = w5.shape[-2:]
            oh, ow = _offsets(kh, kw, max_kh, max_kw, w.dim() == 5 or dense_centre)
            grid = w5.new_zeros(w5.shape[0], w5.shape[1], max_kh, max_kw)
            grid[..., oh : oh + kh, ow : ow + kw] = w5
            dense[starts[l] : starts[l + 1], starts[l + 1] : starts[l + 2]] = grid.reshape(
                w5.shape[0], w5.shape[1], K
            ).transpose(0, 1)
            x.append(bias[b])
        nodes.append(torch.cat(x))
        edges.append(dense[src, dst])
    if not nodes:
        return weights[0].new_zeros(0, N, 1), weights[0].new_zeros(0, len(src), K)
    return torch.stack(nodes).unsqueeze(-1), torch.stack(edges)


def dense_adjacency_inverse(
    node: Tensor,
    edge: Tensor,
    layout: Sequence[int],
    kernel_h: Sequence[int],
    kernel_w: Sequence[int],
    is_conv: Sequence[bool],
    max_kh: int,
    max_kw: int,
    dense_centre: bool = True,
) -> tuple[list[Tensor], list[Tensor]]:
    """Per-network inverse through a dense ``[N, N, K]`` matrix (the public code's ``graph_to_wb``).

    Scatters each network's edge list into a dense adjacency, then slices the layer blocks.
    Benchmark baseline for :func:`graph_to_weights`; same outputs.
    """
    L = len(layout) - 1
    N, K = sum(layout), max_kh * max_kw
    starts = [sum(layout[:i]) for i in range(L + 2)]
    src, dst = [], []
    for l in range(L):
        d, s = torch.meshgrid(
            torch.arange(layout[l + 1]) + starts[l + 1], torch.arange(layout[l]) + starts[l], indexing="ij"
        )
        src.append(s.reshape(-1))
        dst.append(d.reshape(-1))
    src, dst = torch.cat(src), torch.cat(dst)
    per_w: list[list[Tensor]] = [[] for _ in range(L)]
    per_b: list[list[Tensor]] = [[] for _ in range(L)]
    for b in range(node.shape[0]):
        dense = edge.new_zeros(N, N, K)
        dense[src, dst] = edge[b]
        for l in range(L):
            blk = dense[starts[l] : starts[l + 1], starts[l + 1] : starts[l + 2]].transpose(0, 1)
            kh, kw = kernel_h[l], kernel_w[l]
            oh, ow = _offsets(kh, kw, max_kh, max_kw, is_conv[l] or dense_centre)
            w = blk.reshape(layout[l + 1], layout[l], max_kh, max_kw)[..., oh : oh + kh, ow : ow + kw]
            per_w[l].append(w if is_conv[l] else w.reshape(layout[l + 1], layout[l]))
            per_b[l].append(node[b, starts[l + 1] : starts[l + 2], 0])
    if node.shape[0] == 0:
        return graph_to_weights(node, edge, layout, kernel_h, kernel_w, is_conv, max_kh, max_kw, dense_centre)
    return [torch.stack(w) for w in per_w], [torch.stack(b) for b in per_b]
