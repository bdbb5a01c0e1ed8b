"""ScaleGMN (Kalogeropoulos et al., NeurIPS 2024): permutation- and scale/sign-equivariant
graph metanetworks on the weights of MLPs and CNNs.

Three code paths share every parameter (one ``state_dict``):

* the *layer-block* path (``impl="fast"``, the default, for a batch of one architecture):
  the edges of weight layer l are a ``[B, out, in, d]`` block and a message sum is a reduction
  over ``in`` -- no index arithmetic. The per-layer blocks
  (:class:`~scalegmn_ext.models.layer_blocks.LayerBlocks`) flow unchanged from the embedding to
  the readout (layer-0 edge blocks of a single edge type stay factored,
  :class:`~scalegmn_ext.models.layer_blocks.FactoredEdges`). Per-node work is done per node (the
  sender projection, the canonicalisation and first edge-MLP layer of the edge update), each row
  runs only its own branch (hidden vs I/O), and ``rho(x) + rho(-x)`` costs two GEMMs. Messages
  into hidden neurons and edge updates run as the tiled recompute-in-backward ops
  ``scalegmn::scale_eq_message`` / ``scalegmn::edge_update``; dropout is ``hash_dropout``
  (masks regenerated, fused into the edge-update tiles).
* the *graph* path (``impl="fast"`` on a mixed-architecture batch with small groups): the same
  per-node savings on one flat disjoint graph (an edge list,
  :class:`~scalegmn_ext.models.disjoint_graph.GraphRows`).
* the *per-edge reference* path (``impl="reference"``, :mod:`scalegmn_ext.models.reference`):
  the straightforward per-edge computation of the public implementation; the test oracle and
  the benchmark baseline.

Mixed-architecture batches (:class:`~scalegmn_ext.weightspace.graph.MixedGraphBatch`) run group
by group through the layer-block path when every group holds at least
``ScaleGMN.mixed_dense_min_group`` networks, else as one disjoint graph through the graph path
(the per-edge reference path under ``impl="reference"``).

Symmetry (per hidden neuron i: permutation and ``q_i`` in {+-1} or ``q_i > 0``): hidden node
states transform as ``h_i -> q_i h_i``, edge states as ``e_ij -> (q_i / q_j) e_ij``, I/O states
are invariant. Forward message into i: ``ScaleEq(G_e e_ij * G_v h_j)`` scales with ``q_i``.

Backward (bidirectional) message into j from i:

* ``sign``: ``e_ij * h_i`` scales with ``q_i^2 / q_j = q_j``.
* ``scale`` (``config.scale_backward``). Two exact constructions; we compared them on ReLU CNNs
  trained on real digits with 5 % of the weights set to 1e-2 ... 2^-1060 and scale factors in
  [1e-3, 1e3] (``benchmarks/bench_scale_backward.py``, float64 invariance error):

  - ``"gated"`` (default, :class:`~scalegmn_ext.models.layers.GatedBackwardMessage`): the
    receiver's own state carries ``q_j``, and the edge and the sender enter only through the
    bounded invariant ``[a, b] / ||[a, b]||`` with ``a = (W e_ij) * (W' h_j)``, ``b = W'' h_i``.
    Error 5e-16 ... 9e-16 at every magnitude, subnormal included; messages are never larger
    than the states they are made of.
  - ``"inverse"``: the edge feature ``e / ||e||^2`` (0 for ``e = 0``), which scales with
    ``q_j / q_i``, as in the ScaleGMN paper. Exact for every non-zero edge (9e-16 ... 2e-15 down
    to 1e-100), but its gain is ``1 / ||e||``: a subnormal weight overflows it to inf/NaN, and
    tiny weights dominate every message they enter.
  - The clamped form it replaced, ``e / max(||e||^2, 1e-12)``, is not exact (errors 9e-2 ...
    1.2 on the same networks; it failed the demo on a real ReLU CNN).

  Any construction that scales with ``q_j`` and is built from ``e_ij`` and ``h_i`` alone is
  homogeneous of negative degree, hence unbounded near 0; the gated one avoids that by not
  being built from them alone. It has ``5 d^2`` more parameters per layer than the inverse one
  and costs no more time per training step.

The scale canonicaliser everywhere (messages, edge updates, readout) is ``x / (||x|| + eps)``
computed max-scaled (:func:`~scalegmn_ext.reference.canonical.scale_normalize`), exact for every
finite input when ``config.eps = 0`` (the default) -- no clamp anywhere in the symmetric paths.
LayerNorms (eps 1e-5) only ever see invariant inputs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.utils.checkpoint
from torch import Tensor, nn

from ..ops import canonical_segment_sum, draw_seed
from ..weightspace.architecture import Architecture
from ..weightspace.graph import MixedGraphBatch, WeightGraph, check_compatible, graph_structure, layer_type_ids
from . import reference
from .config import ScaleGMNConfig
from .disjoint_graph import DisjointGraph, GraphRows
from .layer_blocks import FactoredEdges, LayerBlocks, blocks_to_weights
from .layers import MLP, Canonicalizer
from .message_passing import MessagePassingLayer

__all__ = ["ScaleGMN", "ScaleGMNEquivariant"]


class _ScaleGMNBase(nn.Module):
    def __init__(
        self, arch: Architecture, config: ScaleGMNConfig | None = None, *, impl: str = "fast", equivariant: bool = False
    ):
        super().__init__()
        if not isinstance(arch, Architecture):
            raise TypeError(f"arch must be an Architecture, got {type(arch).__name__}")
        cfg = config or ScaleGMNConfig()
        if not isinstance(cfg, ScaleGMNConfig):
            raise TypeError(f"config must be a ScaleGMNConfig, got {type(cfg).__name__}")
        sym = cfg.symmetry or arch.symmetry.value
        if sym != "permutation" and sym != arch.symmetry.value:
            raise ValueError(
                f"config.symmetry={sym!r} does not match the input architecture's group "
                f"{arch.symmetry.value!r} ({arch.activation} activation)"
            )
        self.arch, self.config, self.symmetry = arch, cfg, sym
        # structure options only the layer-block path runs (the public code's; see ScaleGMNConfig)
        self._block_only = cfg.block_only_options()
        if (cfg.pos_embed_msg or cfg.pos_embed_upd) and not cfg.pos_embed:
            raise ValueError("ScaleGMNConfig.pos_embed_msg / pos_embed_upd need pos_embed=True")
        self.impl = impl
        self.structure = graph_structure(arch)
        d, K = cfg.d_hid, arch.edge_dim
        self.node_init = nn.Linear(1 + cfg.node_features, d, bias=False)
        self.edge_init = nn.Linear(K, d, bias=False)
        self._edge_pos_on = cfg.pos_embed and cfg.edge_pos_embed
        if cfg.pos_embed:
            self.node_pos = nn.Parameter(torch.randn(self.structure.num_node_types, d))
        if self._edge_pos_on:
            self.edge_pos = nn.Parameter(torch.randn(self.structure.num_edge_types, d))
        # the last layer may update only the output neurons (set by heads that read only those)
        self._outputs_only = False
        layers = []
        for i in range(cfg.num_layers):
            last = i == cfg.num_layers - 1
            if equivariant and last:
                layers.append(MessagePassingLayer(sym, cfg, 1, K))
            else:
                layers.append(MessagePassingLayer(sym, cfg, d, None if (not cfg.edge_update or last) else d))
        self.layers = nn.ModuleList(layers)
        # between layers on the graph and per-edge reference paths (the layer-block path uses
        # hash dropout, whose masks are regenerated in backward instead of stored)
        self.dropout = nn.Dropout(cfg.dropout)

    @property
    def impl(self) -> str:
        return self._impl

    @impl.setter
    def impl(self, value: str) -> None:
        if value not in ("fast", "reference"):
            raise ValueError(f"impl must be 'fast' or 'reference', got {value!r}")
        if value == "reference":
            self._check_graph_paths("the per-edge reference path (impl='reference')")
        self._impl = value

    def _check_graph_paths(self, what: str) -> None:
        if self._block_only:
            raise NotImplementedError(
                f"{what} does not implement the ScaleGMNConfig options {self._block_only} (the public "
                "code's structure); they run on the layer-block path: impl='fast' on a batch of one "
                f"architecture, or on mixed batches whose groups hold >= {self.mixed_dense_min_group} networks"
            )

    # ---------------------------------------------------------------- inputs ----------------
    def _graph_features(self, weights, biases, node_features=None) -> tuple[Tensor, Tensor, bool, Architecture]:
        """``(node [B, N, 1 + F], edge [B, E, K], batched, arch)``; a WeightGraph may hold any
        compatible architecture. ``F = config.node_features`` extra columns come from
        ``node_features`` (checked here)."""
        # Checked here, before any matmul, so that a dtype mismatch names the argument instead of
        # surfacing as torch's "expected m1 and m2 to have the same dtype" deep inside a layer.
        dtype = self.edge_init.weight.dtype
        if isinstance(weights, WeightGraph):
            if weights.arch != self.arch:
                check_compatible(self.arch, weights.arch)
            g, batched, subject, fix = weights, True, "weights (a WeightGraph) has", ""
            if g.dense_centre != self.config.dense_centre:
                raise ValueError(
                    f"weights (a WeightGraph) has dense_centre={g.dense_centre} but this model's "
                    f"config.dense_centre is {self.config.dense_centre}; build the graph with "
                    f"WeightGraph.from_weights(..., dense_centre={self.config.dense_centre})"
                )
        elif isinstance(weights, Tensor) or not isinstance(weights, Sequence):
            raise TypeError("weights must be a list of per-layer tensors or a WeightGraph")
        else:
            batched = (
                len(weights) > 0
                and isinstance(weights[0], Tensor)
                and weights[0].dim() == len(self.arch.layers[0].weight_shape) + 1
            )
            # from_weights has checked that all weights and biases share one dtype
            g = WeightGraph.from_weights(
                self.arch, weights, biases, input_value=self.config.input_value, dense_centre=self.config.dense_centre
            )
            subject, fix = "weights/biases have", f"[w.to({dtype}) for w in weights], or "
        if g.edge.dtype != dtype:
            raise TypeError(
                f"{subject} dtype {g.edge.dtype} but this model's parameters are {dtype}; convert one "
                f"of them (e.g. {fix}model.to({g.edge.dtype}))"
            )
        return self._with_node_features(g.node, node_features, batched), g.edge, batched, g.arch

    def _with_node_features(self, node: Tensor, extra, batched: bool) -> Tensor:
        """``[node || extra]`` after checking ``extra`` against ``config.node_features``."""
        F_ = self.config.node_features
        if F_ == 0:
            if extra is not None:
                raise ValueError("node_features given, but this model's config.node_features is 0")
            return node
        B, N = node.shape[0], node.shape[1]
        want = f"[{B}, {N}, {F_}]" if batched else f"[{N}, {F_}]"
        if extra is None:
            raise ValueError(
                f"this model reads config.node_features={F_} extra node features: pass node_features {want}"
            )
        if not isinstance(extra, Tensor):
            raise TypeError(f"node_features must be a Tensor {want}, got {type(extra).__name__}")
        x = extra if batched else extra.unsqueeze(0)
        if tuple(x.shape) != (B, N, F_):
            raise ValueError(
                f"node_features must be {want} (networks, graph nodes, features), got {tuple(extra.shape)}"
            )
        if x.dtype != node.dtype or x.device != node.device:
            raise TypeError(
                f"node_features must be {node.dtype} on {node.device} like the weights, got {x.dtype} on {x.device}"
            )
        return torch.cat([node, x], dim=-1)

    def _no_mixed_node_features(self) -> None:
        if self.config.node_features:
            raise ValueError(
                f"config.node_features={self.config.node_features}: extra node features are supported for a batch of "
                "one architecture (per-layer weights or one WeightGraph), not for a mixed-architecture batch"
            )

    def _mixed(self, weights) -> MixedGraphBatch | None:
        """The input as a :class:`MixedGraphBatch` when it is one (or a list of WeightGraph)."""
        if isinstance(weights, Sequence) and len(weights) > 0 and all(isinstance(w, WeightGraph) for w in weights):
            weights = MixedGraphBatch.from_graphs(weights)
        if not isinstance(weights, MixedGraphBatch):
            return None
        for arch, _ in weights.groups:
            check_compatible(self.arch, arch)
        return weights

    # ---------------------------------------------------------------- embedding ----------------
    def _embed_nodes(
        self, node: Tensor, node_type: Tensor | None = None, hidden: Tensor | None = None, s=None
    ) -> Tensor:
        """Node embedding; types/mask default to those of structure ``s`` (broadcast over B)."""
        s = self.structure if s is None else s
        h = self.node_init(node)
        if self.config.pos_embed:
            node_type = s.node_type.to(h.device) if node_type is None else node_type
            hidden = (s.hidden_mask.to(h.device) if hidden is None else hidden).unsqueeze(-1)
            p = self.node_pos[node_type]
            if self.config.node_pos_io == "prod":
                h = h * p
            else:
                h = torch.where(hidden, h * p, h + p)  # product keeps equivariance; I/O may add
        return h

    def _embed(
        self,
        node: Tensor,
        edge: Tensor,
        node_type: Tensor | None = None,
        edge_type: Tensor | None = None,
        hidden: Tensor | None = None,
        s=None,
    ) -> tuple[Tensor, Tensor]:
        """Node and edge embedding in graph layout (the graph and per-edge reference paths)."""
        s = self.structure if s is None else s
        e = self.edge_init(edge)
        if self._edge_pos_on:
            e = e * self.edge_pos[s.edge_type.to(edge.device) if edge_type is None else edge_type]
        return self._embed_nodes(node, node_type, hidden, s), e

    def _input_blocks(self, node: Tensor, edge: Tensor, arch: Architecture) -> LayerBlocks:
        """Embedded layer-0 blocks of a batch of one architecture. An edge block whose edges share
        one type stays :class:`FactoredEdges` (``edge_init`` is linear: ``pos_t * (W_init raw)``);
        only the first/last weight layers, with one type per input/output neuron, are embedded."""
        s = graph_structure(arch)
        raw = LayerBlocks.views(self._embed_nodes(node, s=s), edge, arch)
        types = layer_type_ids(arch)
        edges = []
        for l, block in enumerate(raw.edge_states):
            t = types.single_edge_type(l)
            if not self._edge_pos_on:
                edges.append(FactoredEdges(block, self.edge_init.weight))
            elif t is not None:
                edges.append(FactoredEdges(block, self.edge_pos[t].unsqueeze(1) * self.edge_init.weight))
            else:
                eo = s.edge_offsets
                pos = self.edge_pos[s.edge_type[eo[l] : eo[l + 1]].to(edge.device)].unflatten(0, block.shape[1:3])
                edges.append(self.edge_init(block) * pos)
        bidir = self.config.direction == "bidirectional"
        bw = list(edges) if (bidir and self.config.backward_edges != "current") else None
        return LayerBlocks(raw.node_states, edges, bw)

    def _pos_blocks(self, arch: Architecture) -> list[Tensor] | None:
        """Node type embeddings per graph layer (``[n_k, d]``) when the layers read them."""
        if not (self.config.pos_embed_msg or self.config.pos_embed_upd):
            return None
        s = graph_structure(arch)
        no, t = s.node_offsets, s.node_type.to(self.node_pos.device)
        return [self.node_pos[t[no[k] : no[k + 1]]] for k in range(len(no) - 1)]

    # ---------------------------------------------------------------- layer-block path ----------
    def _run_blocks(self, blocks: LayerBlocks, arch: Architecture | None = None) -> LayerBlocks:
        """All layers on the layer blocks of one architecture (hash dropout between layers)."""
        pos = self._pos_blocks(self.arch if arch is None else arch)
        ckpt = self.config.checkpoint and torch.is_grad_enabled()
        drop = self.config.dropout if self.training else 0.0
        last = len(self.layers) - 1
        for i, layer in enumerate(self.layers):
            p = drop if i < last else 0.0
            seed = draw_seed() if p > 0 else 0
            only = self._outputs_only and i == last
            if ckpt:
                blocks = torch.utils.checkpoint.checkpoint(
                    layer.forward_blocks, blocks, p, seed, only, pos, use_reentrant=False
                )
            else:
                blocks = layer.forward_blocks(blocks, p, seed, only, pos)
        return blocks

    # ---------------------------------------------------------------- graph path ----------------
    def _run_graph(self, mb: MixedGraphBatch) -> tuple[Tensor, Tensor]:
        """Message passing over networks of different (compatible) architectures as one disjoint
        graph: the graph path, or the per-edge reference path under ``impl="reference"``.
        Returns flat node ``[N, d']`` and edge ``[E, d'']`` states."""
        self._check_graph_paths("the graph path (a mixed batch with small architecture groups)")
        x, e = self._embed(mb.node, mb.edge, mb.node_type, mb.edge_type, mb.hidden)
        graph = DisjointGraph.of_mixed(mb)
        if self.impl == "reference":
            return reference.run_per_edge(self, x, e, graph)
        rows = GraphRows.of(graph)
        for i, layer in enumerate(self.layers):
            x, e = layer.forward_graph(x, e, rows)
            if i < len(self.layers) - 1:
                x, e = self.dropout(x), self.dropout(e)
        return x, e

    #: mixed batches whose every architecture group holds at least this many networks run the
    #: layer-block path group by group (networks do not interact); smaller groups run the graph
    #: path in one pass (a per-group loop would cost more than it saves).
    mixed_dense_min_group: int = 8

    def _per_group(self, mb: MixedGraphBatch) -> bool:
        return self.impl == "fast" and min(n for _, n in mb.groups) >= self.mixed_dense_min_group

    def _group_views(self, mb: MixedGraphBatch):
        """(arch, node [B, N, 1], edge [B, E, K], node slice, edge slice) per architecture group."""
        n0 = e0 = 0
        for arch, B in mb.groups:
            s = graph_structure(arch)
            n1, e1 = n0 + B * s.num_nodes, e0 + B * s.num_edges
            yield (
                arch,
                mb.node[n0:n1].view(B, s.num_nodes, -1),
                mb.edge[e0:e1].view(B, s.num_edges, -1),
                slice(n0, n1),
                slice(e0, e1),
            )
            n0, e0 = n1, e1


class ScaleGMN(_ScaleGMNBase):
    """Invariant ScaleGMN encoder: a batch of networks -> ``[B, d_out]`` (unbatched: ``[d_out]``).

    The output is invariant to hidden-neuron permutations and to the activation's sign / positive
    scale symmetry. Call with per-layer ``weights``/``biases`` (batched or a single network) or a
    :class:`~scalegmn_ext.weightspace.graph.WeightGraph`.
    """

    def __init__(self, arch: Architecture, config: ScaleGMNConfig | None = None, *, impl: str = "fast"):
        super().__init__(arch, config, impl=impl)
        cfg, d = self.config, self.config.d_hid
        n_in, n_out = arch.layout[0], arch.layout[-1]
        if cfg.readout == "full_graph":
            self.readout_canon = Canonicalizer(self.symmetry, d, cfg.sign_canon, cfg.layer_norm, cfg.eps)
            if cfg.readout_phi:  # phi(c(h)) per hidden neuron before the sum (public InvariantLayer)
                self.readout_phi = MLP(d, d, d, cfg.layer_norm)
            if cfg.readout_spare:  # the public readout builds this MLP but never uses it
                self.readout_spare = MLP(d, d, d, cfg.layer_norm)
            self.readout_mlp = MLP(d + d * (n_in + n_out), d, cfg.d_out, cfg.layer_norm)
        elif cfg.readout_project_io:  # public bidirectional last_layer readout
            self.readout_project_last = nn.Linear(n_out * d, d)
            self.readout_project_first = nn.Linear(n_in * d, d)
            self.readout_mlp = MLP(2 * d, d, cfg.d_out, cfg.layer_norm)
        else:
            self.readout_mlp = MLP(d * n_out, d, cfg.d_out, cfg.layer_norm)
            self._outputs_only = True  # the readout reads only the output neurons

    def forward(self, weights, biases=None, node_features: Tensor | None = None) -> Tensor:
        mb = self._mixed(weights)
        if mb is not None:
            self._no_mixed_node_features()
            return self._forward_mixed(mb)
        node, edge, batched, arch = self._graph_features(weights, biases, node_features)
        z = self._encode(node, edge, arch)
        return z if batched else z[0]

    def _encode(self, node: Tensor, edge: Tensor, arch: Architecture) -> Tensor:
        """Message passing + readout for a batch of one architecture -> [B, d_out]."""
        if self.impl == "reference":
            return reference.encode_per_edge(self, node, edge, arch)
        return self._readout(self._run_blocks(self._input_blocks(node, edge, arch), arch))

    def _readout(self, blocks: LayerBlocks) -> Tensor:
        """``last_layer``: the output block. ``full_graph``: the canonicalised hidden blocks pooled
        (invariant to the hidden neurons' order and symmetry) plus the input and output blocks."""
        nodes = blocks.node_states
        out = nodes[-1].flatten(1)
        if self.config.readout_project_io:
            first = self.readout_project_first(nodes[0].flatten(1))
            return self.readout_mlp(torch.cat([self.readout_project_last(out), first], -1))
        if self.config.readout == "last_layer":
            return self.readout_mlp(out)
        pooled = torch.zeros_like(nodes[0][:, 0])
        for h in nodes[1:-1]:
            c = self.readout_canon(h)
            if self.config.readout_phi:
                c = self.readout_phi(c)
            pooled = pooled + c.sum(1)
        return self.readout_mlp(torch.cat([pooled, nodes[0].flatten(1), out], -1))

    def _forward_mixed(self, mb: MixedGraphBatch) -> Tensor:
        if self._per_group(mb):
            return torch.cat([self._encode(node, edge, arch) for arch, node, edge, _, _ in self._group_views(mb)])
        x, _ = self._run_graph(mb)
        G = mb.num_graphs
        out_rows = x[mb.output].reshape(G, -1)
        if self.config.readout == "last_layer":
            return self.readout_mlp(out_rows)
        canon = self.readout_canon
        if canon.rho is None and canon.symmetry == "sign":  # |x|: fused in the segment sum
            pooled = canonical_segment_sum(x, mb.node_ptr, mb.hidden, "abs")
        else:  # symmetrisation / scale normalisation per row, then the masked segment sum
            pooled = canonical_segment_sum(canon(x), mb.node_ptr, mb.hidden, "identity")
        return self.readout_mlp(torch.cat([pooled, x[mb.input].reshape(G, -1), out_rows], -1))


class ScaleGMNEquivariant(_ScaleGMNBase):
    """Equivariant ScaleGMN: a batch of networks -> per-layer weight and bias outputs of the same
    shapes, transforming exactly like the input weights under the symmetry group.

    The last layer emits one channel per node (bias) and ``Kh*Kw`` per edge (weight), scaled by a
    learned per-layer scalar (initialised to ``config.out_scale``) and read back as weights (the
    inverse of the graph construction, per layer block). With ``residual=True`` the input weights
    are added (an update ``theta' = theta + f(theta)``).
    """

    def __init__(
        self, arch: Architecture, config: ScaleGMNConfig | None = None, *, impl: str = "fast", residual: bool = False
    ):
        super().__init__(arch, config, impl=impl, equivariant=True)
        self.residual = residual
        L = arch.num_layers
        self.weight_scale = nn.Parameter(torch.full((L,), float(self.config.out_scale)))
        self.bias_scale = nn.Parameter(torch.full((L,), float(self.config.out_scale)))

    def forward(self, weights, biases=None, node_features: Tensor | None = None):
        """Per-layer ``(weights, biases)``; for a mixed batch (a :class:`MixedGraphBatch` or a list
        of WeightGraph), a list with one ``(weights, biases)`` per architecture group.
        ``node_features``: see ``ScaleGMNConfig.node_features``."""
        mb = self._mixed(weights)
        if mb is not None:
            self._no_mixed_node_features()
            return self._forward_mixed(mb)
        node, edge, batched, arch = self._graph_features(weights, biases, node_features)
        ws, bs = self._weights(node, edge, arch)
        if not batched:
            ws, bs = [w[0] for w in ws], [b[0] for b in bs]
        return ws, bs

    def _weights(self, node: Tensor, edge: Tensor, arch: Architecture) -> tuple[list[Tensor], list[Tensor]]:
        """Output weights and biases for a batch of one architecture."""
        if self.impl == "reference":
            return self._scaled(*reference.weights_per_edge(self, node, edge, arch), node, edge, arch)
        out = self._run_blocks(self._input_blocks(node, edge, arch), arch)
        return self._scaled(*blocks_to_weights(out, arch, self.config.dense_centre), node, edge, arch)

    def _scaled(
        self, ws: list[Tensor], bs: list[Tensor], node: Tensor, edge: Tensor, arch: Architecture
    ) -> tuple[list[Tensor], list[Tensor]]:
        """The per-layer output scales, plus the input weights when ``residual``."""
        ws = [w * self.weight_scale[l] for l, w in enumerate(ws)]
        bs = [b * self.bias_scale[l] for l, b in enumerate(bs)]
        if self.residual:
            iw, ib = blocks_to_weights(LayerBlocks.views(node, edge, arch), arch, self.config.dense_centre)
            ws = [a + b for a, b in zip(ws, iw)]
            bs = [a + b for a, b in zip(bs, ib)]
        return ws, bs

    def _forward_mixed(self, mb: MixedGraphBatch):
        if self._per_group(mb):
            return [self._weights(node, edge, arch) for arch, node, edge, _, _ in self._group_views(mb)]
        x, ef = self._run_graph(mb)
        out = []
        for arch, node, edge, ns, es in self._group_views(mb):
            B, N, E = node.shape[0], node.shape[1], edge.shape[1]
            blocks = LayerBlocks.views(x[ns].view(B, N, -1), ef[es].view(B, E, -1), arch)
            out.append(self._scaled(*blocks_to_weights(blocks, arch, self.config.dense_centre), node, edge, arch))
        return out
