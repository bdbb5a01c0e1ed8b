"""Networks as graphs: the static structure of an architecture and batches of weight graphs.

Layout (fixed; every op and model of the package relies on it):

* **Nodes** are all neurons in layer order: the ``n_0`` inputs, then the ``n_1`` neurons of layer
  1, ..., then the ``n_L`` outputs (``N = sum(layout)``). For conv layers one node is one channel.
  Node features are ``[B, N, 1]``: input nodes carry a constant (``input_value``), every other
  node its bias.
* **Edges** run from layer ``l-1`` to layer ``l``. Within a layer they are stored
  *receiver-major*: edge ``(o, i)`` of layer ``l`` (receiver ``o`` in layer ``l``, sender ``i``
  in layer ``l-1``) sits at ``edge_offset[l] + o * n_{l-1} + i`` -- the row-major order of the
  torch weight ``W[l]`` ``[out, in, ...]``. The whole edge list is therefore sorted by receiver
  and ``rowptr`` (CSR by receiver) is a cumulative in-degree. (The public ScaleGMN code orders
  edges sender-major; :attr:`GraphStructure.sender_major_perm` converts.)
* **Edge features** are ``[B, E, Kh * Kw]``: each weight's kernel placed in a ``Kh x Kw`` grid
  (the largest kernel), flattened row-major; conv kernels centred (top-left of centre for even
  padding), dense weights centred too (``dense_centre=True``) or in slot 0 (the public code's
  choice, ``dense_centre=False``); padding slots are zero.

Type ids for positional encodings: every input neuron and every output neuron is its own node
type (they are not permutable), all hidden neurons of one layer share a type. An edge's type is
the pair of its end-node types, numbered densely: first-layer edges get one type per input
neuron, hidden-to-hidden edges one per layer, last-layer edges one per output neuron.
:func:`layer_type_ids` is the one place these rules are computed (as Python constants).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from ..ops import graph as _ops
from .architecture import Architecture

__all__ = ["GraphStructure", "LayerTypeIds", "WeightGraph", "graph_structure", "layer_type_ids"]


@dataclasses.dataclass(frozen=True)
class GraphStructure:
    """Static (weight-independent) graph of one architecture; shared by every network of a batch.

    All index tensors are int64 on CPU; use :meth:`to` to move them.
    """

    arch: Architecture
    edge_index: Tensor  # [2, E]: (sender, receiver)
    rowptr: Tensor  # [N + 1]: CSR by receiver
    node_layer: Tensor  # [N]: 0 for inputs, l for layer-l neurons
    edge_layer: Tensor  # [E]: l in 1..L
    node_type: Tensor  # [N]
    edge_type: Tensor  # [E]
    num_node_types: int
    num_edge_types: int

    @property
    def num_nodes(self) -> int:
        return self.arch.num_nodes

    @property
    def num_edges(self) -> int:
        return self.arch.num_edges

    @property
    def hidden_mask(self) -> Tensor:
        """[N] bool: neurons that carry the permutation/sign/scale symmetry."""
        return (self.node_layer > 0) & (self.node_layer < self.arch.num_layers)

    @property
    def input_mask(self) -> Tensor:
        return self.node_layer == 0

    @property
    def output_mask(self) -> Tensor:
        return self.node_layer == self.arch.num_layers

    @property
    def node_offsets(self) -> list[int]:
        """First node of each graph layer (length L + 2, last = N)."""
        out = [0]
        for n in self.arch.layout:
            out.append(out[-1] + n)
        return out

    @property
    def edge_offsets(self) -> list[int]:
        """First edge of each weight layer (length L + 1, last = E)."""
        out = [0]
        for l in self.arch.layers:
            out.append(out[-1] + l.num_edges)
        return out

    @functools.cached_property
    def sender_major_perm(self) -> Tensor:
        """Permutation p with ``edge[:, p]`` in the public code's sender-major edge order."""
        perms, offs = [], self.edge_offsets
        for l, spec in enumerate(self.arch.layers):
            o, i = spec.out_features, spec.in_features
            perms.append(offs[l] + torch.arange(o * i).reshape(o, i).t().reshape(-1))
        return torch.cat(perms)

    def batch(self, batch_size: int) -> tuple[Tensor, Tensor, Tensor]:
        """``(edge_index [2, B*E], rowptr [B*N + 1], batch [B*N])`` of B disjoint copies."""
        N = self.num_nodes
        shift = torch.arange(batch_size, dtype=torch.long, device=self.edge_index.device)
        ei = (self.edge_index.unsqueeze(1) + (shift * N).view(1, -1, 1)).reshape(2, -1)
        deg = self.rowptr.diff().repeat(batch_size)
        rowptr = torch.cat([deg.new_zeros(1), deg.cumsum(0)])
        batch = shift.repeat_interleave(N)
        return ei, rowptr, batch

    def to(self, device) -> GraphStructure:
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for k, v in fields.items():
            if isinstance(v, Tensor):
                fields[k] = v.to(device)
        return GraphStructure(**fields)


class LayerTypeIds(NamedTuple):
    """The positional-encoding type ids of an architecture, layer by layer, as Python ints.

    ``node[k]``: the node type ids of graph layer ``k`` (``0`` = inputs, ``L`` = outputs): one id
    per neuron for the input and output layers, a single shared id for a hidden layer.
    ``edge[l]``: the edge type ids of weight layer ``l`` as a ``[receiver type][sender type]``
    table over ``node[l + 1]`` x ``node[l]``; it broadcasts to the layer's ``[out, in]`` edges
    (a length-1 axis stands for a whole hidden layer).
    """

    node: tuple[tuple[int, ...], ...]
    edge: tuple[tuple[tuple[int, ...], ...], ...]
    num_node_types: int
    num_edge_types: int

    def single_edge_type(self, layer: int) -> int | None:
        """The one type of all edges of weight layer ``layer``, or None when they have several."""
        table = self.edge[layer]
        return table[0][0] if len(table) == 1 and len(table[0]) == 1 else None


@functools.lru_cache(maxsize=64)
def layer_type_ids(arch: Architecture) -> LayerTypeIds:
    """The type rules of the module docstring, computed once per architecture in pure Python.

    The single source of node/edge type ids: :func:`graph_structure` expands them to per-node and
    per-edge tensors, and the models read them as constants (nothing here is a tensor, so
    ``torch.compile`` traces no index arithmetic). Node types: input ``i`` -> ``i``, hidden layer
    ``k`` -> ``n_in + k - 1``, output ``j`` -> ``n_in + L - 1 + j``. Edge types: the rank of the
    pair (sender type, receiver type) among all pairs that occur, in increasing
    ``sender * num_node_types + receiver`` order.
    """
    layout, L = arch.layout, arch.num_layers
    n_in, n_out = layout[0], layout[-1]
    num_node_types = n_in + (L - 1) + n_out
    node = tuple(
        tuple(range(n_in)) if k == 0 else tuple(n_in + L - 1 + j for j in range(n_out)) if k == L else (n_in + k - 1,)
        for k in range(L + 1)
    )
    pairs = [[[s * num_node_types + r for s in node[l]] for r in node[l + 1]] for l in range(L)]
    rank = {p: i for i, p in enumerate(sorted({p for table in pairs for row in table for p in row}))}
    edge = tuple(tuple(tuple(rank[p] for p in row) for row in table) for table in pairs)
    return LayerTypeIds(node, edge, num_node_types, len(rank))


@functools.lru_cache(maxsize=64)
def graph_structure(arch: Architecture) -> GraphStructure:
    """The (cached) :class:`GraphStructure` of an architecture, built with vectorised index math."""
    layout = arch.layout
    L = arch.num_layers
    starts = [0]
    for n in layout:
        starts.append(starts[-1] + n)
    node_layer = torch.repeat_interleave(torch.arange(L + 1), torch.tensor(layout))
    src, dst = [], []
    for l, spec in enumerate(arch.layers):
        o, i = spec.out_features, spec.in_features
        dst.append(starts[l + 1] + torch.arange(o).repeat_interleave(i))
        src.append(starts[l] + torch.arange(i).repeat(o))
    edge_index = torch.stack([torch.cat(src), torch.cat(dst)])
    indeg = torch.zeros(arch.num_nodes, dtype=torch.long)
    indeg[starts[1] :] = torch.tensor([s.in_features for s in arch.layers]).repeat_interleave(torch.tensor(layout[1:]))
    rowptr = torch.cat([torch.zeros(1, dtype=torch.long), indeg.cumsum(0)])
    edge_layer = node_layer[edge_index[1]]
    types = layer_type_ids(arch)
    node_type = torch.cat([torch.tensor(t, dtype=torch.long).expand(n) for t, n in zip(types.node, layout)])
    # receiver-major edges: the [receiver type][sender type] table broadcast to [out, in]
    edge_type = torch.cat(
        [
            torch.tensor(t, dtype=torch.long).expand(s.out_features, s.in_features).reshape(-1)
            for t, s in zip(types.edge, arch.layers)
        ]
    )
    return GraphStructure(
        arch=arch,
        edge_index=edge_index,
        rowptr=rowptr,
        node_layer=node_layer,
        edge_layer=edge_layer,
        node_type=node_type,
        edge_type=edge_type,
        num_node_types=types.num_node_types,
        num_edge_types=types.num_edge_types,
    )


@dataclasses.dataclass
class WeightGraph:
    """A batch of B networks of one architecture as graph features plus the shared structure."""

    node: Tensor  # [B, N, 1]
    edge: Tensor  # [B, E, K]
    structure: GraphStructure
    dense_centre: bool = True

    @classmethod
    def from_weights(
        cls,
        arch: Architecture,
        weights: Sequence[Tensor],
        biases: Sequence[Tensor | None] | None = None,
        *,
        input_value: float = 1.0,
        dense_centre: bool = True,
    ) -> WeightGraph:
        node, edge = _ops.weights_to_graph(weights, biases, arch, dense_centre=dense_centre, input_value=input_value)
        if node.dim() == 2:
            node, edge = node.unsqueeze(0), edge.unsqueeze(0)
        return cls(node, edge, graph_structure(arch), dense_centre)

    @property
    def arch(self) -> Architecture:
        return self.structure.arch

    @property
    def batch_size(self) -> int:
        return self.node.shape[0]

    def to_weights(self) -> tuple[list[Tensor], list[Tensor]]:
        return _ops.graph_to_weights(self.node, self.edge, self.arch, dense_centre=self.dense_centre)

    def flat(self) -> dict[str, Tensor]:
        """Flattened PyG-style view: ``x [B*N, 1]``, ``edge_attr [B*E, K]``, ``edge_index``,
        ``rowptr``, ``batch``, ``node_type``/``edge_type`` repeated per graph."""
        B = self.batch_size
        s = self.structure.to(self.node.device)
        ei, rowptr, batch = s.batch(B)
        return {
            "x": self.node.reshape(-1, self.node.shape[-1]),
            "edge_attr": self.edge.reshape(-1, self.edge.shape[-1]),
            "edge_index": ei,
            "rowptr": rowptr,
            "batch": batch,
            "node_type": s.node_type.repeat(B),
            "edge_type": s.edge_type.repeat(B),
        }


@dataclasses.dataclass
class MixedGraphBatch:
    """Networks of *different* but compatible architectures as one disjoint graph (PyG style).

    Built from :class:`WeightGraph` groups (each one architecture, any batch size); networks keep
    the groups' order. Architectures are compatible when they share the input and output widths,
    the depth, the layer kinds and the edge feature width -- then their node and edge type ids
    coincide (hidden widths may differ), so one ScaleGMN serves them all.
    """

    node: Tensor  # [N, 1], all networks' nodes, network by network
    edge: Tensor  # [E, K]
    edge_index: Tensor  # [2, E] (sender, receiver), global node ids
    node_type: Tensor  # [N]
    edge_type: Tensor  # [E]
    hidden: Tensor  # [N] bool
    input: Tensor  # [N] bool
    output: Tensor  # [N] bool
    node_ptr: Tensor  # [G + 1]: network g owns nodes node_ptr[g] : node_ptr[g + 1]
    groups: list  # [(Architecture, count)] in order

    @classmethod
    def from_graphs(cls, graphs: Sequence[WeightGraph]) -> MixedGraphBatch:
        graphs = list(graphs)
        if not graphs or not all(isinstance(g, WeightGraph) for g in graphs):
            raise TypeError("graphs must be a non-empty sequence of WeightGraph")
        ref = graphs[0].arch
        for g in graphs[1:]:
            check_compatible(ref, g.arch)
        nodes, edges, eis, nts, ets, hid, inp, out, sizes = [], [], [], [], [], [], [], [], []
        base = 0
        dev = graphs[0].node.device
        for g in graphs:
            B, s = g.batch_size, g.structure.to(dev)
            ei, _, _ = s.batch(B)
            eis.append(ei + base)
            base += B * s.num_nodes
            nodes.append(g.node.reshape(-1, g.node.shape[-1]))
            edges.append(g.edge.reshape(-1, g.edge.shape[-1]))
            nts.append(s.node_type.repeat(B))
            ets.append(s.edge_type.repeat(B))
            hid.append(s.hidden_mask.repeat(B))
            inp.append(s.input_mask.repeat(B))
            out.append(s.output_mask.repeat(B))
            sizes += [s.num_nodes] * B
        ptr = torch.zeros(len(sizes) + 1, dtype=torch.long, device=dev)
        ptr[1:] = torch.tensor(sizes, dtype=torch.long, device=dev).cumsum(0)
        return cls(
            torch.cat(nodes),
            torch.cat(edges),
            torch.cat(eis, 1),
            torch.cat(nts),
            torch.cat(ets),
            torch.cat(hid),
            torch.cat(inp),
            torch.cat(out),
            ptr,
            [(g.arch, g.batch_size) for g in graphs],
        )

    @property
    def num_graphs(self) -> int:
        return self.node_ptr.numel() - 1


def check_compatible(a: Architecture, b: Architecture) -> None:
    """Raises ValueError unless networks of ``b`` can share a ScaleGMN built for ``a``."""
    why = None
    if a.layout[0] != b.layout[0] or a.layout[-1] != b.layout[-1]:
        why = f"input/output widths differ ({a.layout[0]}->{a.layout[-1]} vs {b.layout[0]}->{b.layout[-1]})"
    elif a.num_layers != b.num_layers:
        why = f"depths differ ({a.num_layers} vs {b.num_layers} layers)"
    elif [l.is_conv for l in a.layers] != [l.is_conv for l in b.layers]:
        why = "layer kinds (conv / dense) differ"
    elif a.edge_dim != b.edge_dim:
        why = f"edge feature widths differ ({a.edge_dim} vs {b.edge_dim})"
    elif a.symmetry != b.symmetry:
        why = f"symmetry groups differ ({a.symmetry.value} vs {b.symmetry.value})"
    if why is not None:
        raise ValueError(f"architecture {b} is not compatible with {a}: {why}")
