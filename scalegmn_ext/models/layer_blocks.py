"""The states of the layer-block path: per-layer node and edge blocks of one architecture.

All networks of a batch share one architecture, so the node states of graph layer ``k`` form a
``[B, n_k, d]`` block and the edge states of weight layer ``l`` a ``[B, out, in, d]`` block
(receiver-major, the row-major order of the torch weight). A message sum is then a reduction over
``in`` and the blocks flow unchanged in layout from the embedding to the readout: no index
arithmetic, no concatenation, no re-slicing.
"""

from __future__ import annotations

from typing import NamedTuple

import torch.nn.functional as F
from torch import Tensor

from ..weightspace.architecture import Architecture
from ..weightspace.graph import graph_structure

__all__ = ["EdgeBlock", "FactoredEdges", "LayerBlocks", "blocks_to_weights", "edge_operands", "materialize"]


class FactoredEdges(NamedTuple):
    """An edge block kept factored instead of materialised: ``states = raw @ proj^T``.

    ``raw`` ``[B, out, in, K]`` are the graph's edge features and ``proj`` ``[d, K]`` the linear
    edge embedding of the block's single edge type (``diag(pos_t) W_init``). A projection ``W e``
    of every edge is then ``raw @ (W proj)^T``: a K-wide instead of a d-wide GEMM per edge, and
    the d-wide layer-0 edge states are never stored.
    """

    raw: Tensor
    proj: Tensor


#: one weight layer's edge states: ``[B, out, in, d]`` or factored
EdgeBlock = Tensor | FactoredEdges


def edge_operands(edges: EdgeBlock, weight: Tensor) -> tuple[Tensor, Tensor]:
    """``(edge, w)`` with ``edge @ w^T == edges @ weight^T`` (the fused ops take them apart)."""
    if isinstance(edges, FactoredEdges):
        return edges.raw, weight @ edges.proj
    return edges, weight


def materialize(edges: EdgeBlock) -> Tensor:
    """The ``[B, out, in, d]`` edge states of a block."""
    return F.linear(edges.raw, edges.proj) if isinstance(edges, FactoredEdges) else edges


class LayerBlocks(NamedTuple):
    """Node and edge states of a batch of one architecture, layer by layer.

    ``node_states[k]``: ``[B, n_k, d]`` for graph layer ``k = 0 .. L`` (inputs, hidden layers,
    outputs). ``edge_states[l]``: weight layer ``l + 1``'s edges from layer ``l`` to ``l + 1``,
    ``[B, n_{l+1}, n_l, d]`` or :class:`FactoredEdges`. ``bw_edge_states``: the edge states that
    backward messages read when they are not ``edge_states`` (``config.backward_edges``), same
    layout; None otherwise.
    """

    node_states: list[Tensor]
    edge_states: list[EdgeBlock]
    bw_edge_states: list[EdgeBlock] | None = None

    @classmethod
    def views(cls, node: Tensor, edge: Tensor, arch: Architecture) -> LayerBlocks:
        """Per-layer views of graph-layout features (node ``[B, N, d]``, edge ``[B, E, d']``): no copy."""
        s = graph_structure(arch)
        no, eo = s.node_offsets, s.edge_offsets
        nodes = [node[:, no[k] : no[k + 1]] for k in range(len(no) - 1)]
        edges = [
            edge[:, eo[l] : eo[l + 1]].unflatten(1, (spec.out_features, spec.in_features))
            for l, spec in enumerate(arch.layers)
        ]
        return cls(nodes, edges)


def blocks_to_weights(
    blocks: LayerBlocks, arch: Architecture, dense_centre: bool = True
) -> tuple[list[Tensor], list[Tensor]]:
    """Per-layer weights ``[B, out, in(, kh, kw)]`` and biases ``[B, out]`` read from blocks with
    one channel per node and ``Kh * Kw`` per edge (the layout of ``weights_to_graph`` with
    ``dense_centre=True``): bit-identical to :func:`~scalegmn_ext.ops.graph_to_weights` on the
    same graph, but views of the blocks instead of a gather from the concatenated graph.

    Every kernel sits centred in the ``Kh x Kw`` grid (top-left of centre for even padding), dense
    weights in the centre slot (see :mod:`scalegmn_ext.reference.graph`), or in slot 0 with
    ``dense_centre=False``.
    """
    Kh, Kw = arch.max_kernel_size
    weights, biases = [], []
    for l, spec in enumerate(arch.layers):
        kh, kw = spec.kernel_size
        if not spec.is_conv and not dense_centre:
            weights.append(materialize(blocks.edge_states[l])[..., 0])
            biases.append(blocks.node_states[l + 1][..., 0])
            continue
        oh, ow = (Kh - kh) // 2, (Kw - kw) // 2
        grid = materialize(blocks.edge_states[l]).unflatten(-1, (Kh, Kw))
        w = grid[..., oh : oh + kh, ow : ow + kw]
        weights.append(w if spec.is_conv else w[..., 0, 0])
        biases.append(blocks.node_states[l + 1][..., 0])
    return weights, biases
