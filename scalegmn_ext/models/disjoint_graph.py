"""The inputs of the graph path and of the per-edge reference path: a flat disjoint graph.

Any number of networks, of one or of several compatible architectures, as one graph with global
node ids (PyG style): an edge list plus node-role masks. The graph path additionally wants the
row index sets of :class:`GraphRows`, computed once per batch.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from ..weightspace.architecture import Architecture
from ..weightspace.graph import MixedGraphBatch, graph_structure

__all__ = ["DisjointGraph", "GraphRows"]


class DisjointGraph(NamedTuple):
    """Edge list and node roles of a disjoint graph (nodes network by network)."""

    edge_index: Tensor  # [2, E]: (sender, receiver), global node ids
    hidden: Tensor  # [N] bool: neurons with the permutation/sign/scale symmetry
    input: Tensor  # [N] bool: input neurons (the rest are output neurons)

    @classmethod
    def of_batch(cls, arch: Architecture, batch_size: int, device) -> DisjointGraph:
        """``batch_size`` disjoint copies of one architecture's graph."""
        s = graph_structure(arch).to(device)
        edge_index, _, _ = s.batch(batch_size)
        return cls(edge_index, s.hidden_mask.repeat(batch_size), s.input_mask.repeat(batch_size))

    @classmethod
    def of_mixed(cls, mb: MixedGraphBatch) -> DisjointGraph:
        return cls(mb.edge_index, mb.hidden, mb.input)


class GraphRows(NamedTuple):
    """A :class:`DisjointGraph` with the row index sets the graph path needs, so that each row
    runs only its own branch (hidden vs I/O) and the sets are found once per batch, not per layer.
    Backward messages run from receiver to sender, hence the edge sets by sender role."""

    edge_index: Tensor  # [2, E]: (sender, receiver)
    edges_into_hidden: Tensor  # edge ids whose receiver is a hidden neuron
    edges_into_io: Tensor  # ... whose receiver is an input/output neuron
    edges_from_hidden: Tensor  # edge ids whose sender is a hidden neuron
    edges_from_io: Tensor  # ... whose sender is an input neuron
    hidden_nodes: Tensor  # node ids
    input_nodes: Tensor
    output_nodes: Tensor
    out_degree: Tensor  # [N, 1]: edges leaving each node (= backward messages it receives)

    @classmethod
    def of(cls, graph: DisjointGraph) -> GraphRows:
        src, dst = graph.edge_index
        hidden, inp = graph.hidden, graph.input
        output = ~hidden & ~inp
        into_hidden, from_hidden = hidden[dst], hidden[src]

        def ids(mask: Tensor) -> Tensor:
            return mask.nonzero().squeeze(1)

        return cls(
            graph.edge_index,
            ids(into_hidden),
            ids(~into_hidden),
            ids(from_hidden),
            ids(~from_hidden),
            ids(hidden),
            ids(inp),
            ids(output),
            torch.bincount(src, minlength=hidden.shape[0]).unsqueeze(-1),
        )
