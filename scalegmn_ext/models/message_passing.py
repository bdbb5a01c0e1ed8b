"""One ScaleGMN message-passing layer: its parameters and its two efficient forwards.

* :meth:`MessagePassingLayer.forward_blocks` -- the *layer-block* path (one architecture,
  per-layer ``[B, n, d]`` node and ``[B, out, in, d]`` edge blocks, messages summed over ``in``);
* :meth:`MessagePassingLayer.forward_graph` -- the *graph* path (any flat disjoint graph, e.g. a
  mixed-architecture batch) with the same per-node savings on an edge list.

Both compute the same function; what they share (the branch choices, the per-node halves of the
edge MLP's first layer, the edge update's output, the skip) is a method here. The per-edge
reference path, the test oracle, is :func:`~scalegmn_ext.models.reference.layer_per_edge`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..ops import edge_update, hash_dropout, scale_eq_message
from ..reference.canonical import inverse_norm_sq
from .config import ScaleGMNConfig
from .disjoint_graph import GraphRows
from .layer_blocks import LayerBlocks, edge_operands, materialize
from .layers import MLP, Canonicalizer, GatedBackwardMessage, ScaleEq

__all__ = ["MessagePassingLayer"]

_INPUT, _HIDDEN, _OUTPUT = "input", "hidden", "output"


def _sub_seed(seed: int, j: int) -> int:
    """Seed of the j-th dropout tensor of a layer (the hash mixes it; distinct seeds, unrelated masks)."""
    return (seed + 0x9E3779B9 * (j + 1)) & 0x7FFFFFFF


def _by_rows(x: Tensor, branches, width: int) -> Tensor:
    """``net(x[rows])`` into ``rows`` for each ``(rows, net)``: every row runs only its own branch."""
    out = x.new_empty(x.shape[0], width)
    for rows, net in branches:
        out[rows] = net(x[rows])
    return out


class MessagePassingLayer(nn.Module):
    def __init__(self, sym: str, cfg: ScaleGMNConfig, d_node_out: int, d_edge_out: int | None):
        super().__init__()
        d, ln, sc = cfg.d_hid, cfg.layer_norm, cfg.sign_canon
        self.bidir = cfg.direction == "bidirectional"
        self.msg_v = nn.Linear(d, d, bias=False)
        self.msg_e = nn.Linear(d, d, bias=False)
        self.msg_hidden = ScaleEq(sym, d, d, d, sc, ln, eps=cfg.eps)  # messages into hidden neurons
        self.msg_io = MLP(d, d, d, ln)  # messages into output neurons are invariant
        self.gated = self.bidir and sym == "scale" and cfg.scale_backward == "gated"
        if self.bidir:
            self.bw_e = nn.Linear(d, d, bias=False)
        if self.gated:
            self.bw_gated = GatedBackwardMessage(d, ln)
        elif self.bidir:
            self.bw_v = nn.Linear(d, d, bias=False)
            self.bw_hidden = ScaleEq(sym, d, d, d, sc, ln, eps=cfg.eps)
            self.bw_io = MLP(d, d, d, ln)  # messages into input neurons
        k = 3 if self.bidir else 2
        self.upd_hidden = ScaleEq(sym, k * d, d_node_out, d, sc, ln, eps=cfg.eps)
        self.upd_in = MLP(k * d, d, d_node_out, ln)
        self.upd_out = MLP(k * d, d, d_node_out, ln)
        self.edge_out = d_edge_out
        if d_edge_out is not None:
            self.edge_canon = Canonicalizer(sym, d, sc, ln, cfg.eps)
            self.psi = MLP(2 * d, d, d_edge_out, ln)  # on [c(h_sender) || c(h_receiver)]
            self.edge_gamma = nn.Linear(d, d_edge_out, bias=False)
        self.skip = nn.Linear(d, d, bias=False) if (cfg.skip and d_node_out == d) else None
        self.sym, self.eps = sym, cfg.eps
        self.fused = cfg.fused_message
        self.fused_edge = cfg.fused_edge_update
        self.message_save = cfg.message_save

    # ---------------------------------------------------------------- shared by both paths ----
    def message_net(self, into_hidden: bool) -> nn.Module:
        """Forward messages into hidden neurons are equivariant, into output neurons invariant."""
        return self.msg_hidden if into_hidden else self.msg_io

    def backward_net(self, into_hidden: bool) -> nn.Module:
        """Backward messages (non-gated) into hidden neurons vs into input neurons."""
        return self.bw_hidden if into_hidden else self.bw_io

    def update_net(self, role: str) -> nn.Module:
        """The node update of input, hidden or output neurons."""
        return {_INPUT: self.upd_in, _HIDDEN: self.upd_hidden, _OUTPUT: self.upd_out}[role]

    def backward_edge(self, e: Tensor) -> Tensor:
        """Edge feature of a backward message for ``scale_backward="inverse"`` (and ``sign``,
        where ``e`` itself works: ``q_i q_j = q_i / q_j``): ``e / ||e||^2``, which scales with
        ``q_j / q_i``. Computed max-scaled (``(y / ||y||^2) / m``, ``y = e / m``) so that it is
        exact for every non-zero ``e`` without a clamp, and 0 for ``e = 0``. Its magnitude is
        ``1 / ||e||``: exact, but unbounded (the reason ``"gated"`` is the default)."""
        return inverse_norm_sq(e) if self.sym == "scale" else e

    def backward_input(self, e: Tensor, receiver_proj: Tensor) -> Tensor:
        """Non-gated backward message input per edge, ``W_b e~ * (W_v h_receiver)`` (``receiver_proj``
        already projected and broadcast to the edges)."""
        return self.bw_e(self.backward_edge(e)) * receiver_proj

    def edge_sender_term(self, c: Tensor) -> Tensor:
        """The sender half of ``psi``'s first layer, per node (``c``: the node state,
        canonicalised by ``edge_canon`` on hidden neurons, raw on I/O neurons)."""
        return self.psi.partial_first_layer(c, 0)

    def edge_receiver_term(self, c: Tensor) -> Tensor:
        """The receiver half of ``psi``'s first layer, per node, with its bias."""
        return self.psi.partial_first_layer(c, c.shape[-1], bias=True)

    def edge_update_output(self, first: Tensor, gamma_e: Tensor) -> Tensor:
        """New edge state from ``psi``'s first-layer pre-activation (sender + receiver terms) and
        ``Gamma e``: ``psi(...) * Gamma e`` (invariant times equivariant)."""
        return self.psi.lin2(self.psi.hidden(first)) * gamma_e

    def with_skip(self, old: Tensor, new: Tensor) -> Tensor:
        """Bias-free skip connection (equivariant: linear without bias)."""
        return new if self.skip is None else self.skip(old) + new

    # ---------------------------------------------------------------- layer-block path ----
    def forward_blocks(
        self, blocks: LayerBlocks, drop_p: float = 0.0, seed: int = 0, outputs_only: bool = False
    ) -> LayerBlocks:
        """One layer on the per-layer blocks of one architecture.

        ``drop_p > 0`` applies hash dropout to every output block (seeds derived from ``seed``;
        fused into the edge update's tiles). ``outputs_only``: update only the output neurons and
        return the rest unchanged -- all a last-layer readout reads.
        """
        nodes, edges = blocks.node_states, blocks.edge_states
        L = len(edges)
        if outputs_only:
            msg = self._forward_message_block(edges[L - 1], self.msg_v(nodes[L - 1]), into_hidden=False)
            parts = [nodes[L], msg] + ([torch.zeros_like(nodes[L])] if self.bidir else [])
            out = self.with_skip(nodes[L], self.update_net(_OUTPUT)(torch.cat(parts, -1)))
            return LayerBlocks(nodes[:-1] + [out], edges)
        sender_proj = [self.msg_v(h) for h in nodes[:-1]]  # per node, not per edge
        parts = [[nodes[0], torch.zeros_like(nodes[0])]]
        for l in range(1, L + 1):
            parts.append([nodes[l], self._forward_message_block(edges[l - 1], sender_proj[l - 1], into_hidden=l < L)])
        if self.bidir:
            for p, b in zip(parts, self._backward_message_blocks(nodes, edges)):
                p.append(b)
        roles = [_INPUT] + [_HIDDEN] * (L - 1) + [_OUTPUT]
        new_nodes = [self.with_skip(h, self.update_net(r)(torch.cat(p, -1))) for h, r, p in zip(nodes, roles, parts)]
        new_edges = self._edge_update_blocks(nodes, edges, drop_p, seed) if self.edge_out is not None else edges
        if drop_p > 0:
            if self.edge_out is None:  # (an edge update applies its dropout itself, fused if it can)
                new_edges = [
                    hash_dropout(materialize(x), drop_p, _sub_seed(seed, L + 1 + l)) for l, x in enumerate(new_edges)
                ]
            new_nodes = [hash_dropout(x, drop_p, _sub_seed(seed, l)) for l, x in enumerate(new_nodes)]
        return LayerBlocks(new_nodes, new_edges)

    def _forward_message_block(self, edge_block, sender_proj: Tensor, into_hidden: bool) -> Tensor:
        """Summed forward messages into one node block from its incoming edge block."""
        e, w_e = edge_operands(edge_block, self.msg_e.weight)
        if into_hidden and self.fused:  # tiled, recompute-in-backward kernel: no [E, d] tensors kept
            return scale_eq_message(
                e, sender_proj, self.msg_hidden.message_params(w_e), save=self.message_save and torch.is_grad_enabled()
            )
        x = F.linear(e, w_e) * sender_proj.unsqueeze(1)  # [B, out, in, d]
        return self.message_net(into_hidden)(x).sum(2)

    def _backward_message_blocks(self, nodes: list[Tensor], edges: list) -> list[Tensor]:
        """Summed backward messages into every node block (the output block gets zeros)."""
        L = len(edges)
        out = []
        for l in range(1, L + 1):  # layer-l edges carry messages back to layer l-1
            into_hidden = l - 1 > 0
            if self.gated:
                g = self.bw_gated
                io = not into_hidden
                e, w_e = edge_operands(edges[l - 1], self.bw_e.weight)
                a = F.linear(e, w_e) * g.recv(nodes[l - 1]).unsqueeze(1)  # [B, out, in, d], scales q_i
                b_max, b_sq, b_t = g.sender_terms(nodes[l])
                v = g.edge_terms(a, b_max.unsqueeze(2), b_sq.unsqueeze(2), g.project_sender(b_t, io).unsqueeze(2), io)
                out.append(g.finish(v.sum(1), a.shape[1], nodes[l - 1], io))
            else:
                y = self.backward_input(materialize(edges[l - 1]), self.bw_v(nodes[l]).unsqueeze(2))
                out.append(self.backward_net(into_hidden)(y).sum(1))
        out.append(torch.zeros_like(nodes[-1]))
        return out

    def _edge_update_blocks(self, nodes: list[Tensor], edges: list, drop_p: float, seed: int) -> list[Tensor]:
        L = len(edges)
        canon = [h if l in (0, L) else self.edge_canon(h) for l, h in enumerate(nodes)]
        senders = [self.edge_sender_term(c) for c in canon[:-1]]  # first psi layer, per node
        receivers = [self.edge_receiver_term(c) for c in canon[1:]]
        if self.fused_edge:  # tiled op: no [E, d] intermediates kept, dropout fused
            ln = self.psi.norm if isinstance(self.psi.norm, nn.LayerNorm) else None
            out = []
            for l in range(L):
                e, w_g = edge_operands(edges[l], self.edge_gamma.weight)
                out.append(
                    edge_update(
                        e,
                        receivers[l],
                        senders[l],
                        self.psi.lin2.weight,
                        self.psi.lin2.bias,
                        w_g,
                        ln.weight if ln is not None else None,
                        ln.bias if ln is not None else None,
                        p=drop_p,
                        seed=_sub_seed(seed, L + 1 + l),
                    )
                )
            return out
        out = [
            self.edge_update_output(
                receivers[l].unsqueeze(2) + senders[l].unsqueeze(1),
                F.linear(*edge_operands(edges[l], self.edge_gamma.weight)),
            )
            for l in range(L)
        ]
        return [hash_dropout(x, drop_p, _sub_seed(seed, L + 1 + l)) for l, x in enumerate(out)]

    # ---------------------------------------------------------------- graph path ----
    def forward_graph(self, nodes: Tensor, edges: Tensor, rows: GraphRows) -> tuple[Tensor, Tensor]:
        """One layer on a flat disjoint graph (``nodes`` ``[N, d]``, ``edges`` ``[E, d]``)
        with the layer-block path's savings: projections and the edge MLP's first layer per node,
        each row only its own branch, 2-GEMM symmetrisation."""
        src, dst = rows.edge_index
        d = nodes.shape[-1]
        m_in = self.msg_e(edges) * self.msg_v(nodes)[src]
        mu = _by_rows(
            m_in, ((rows.edges_into_hidden, self.message_net(True)), (rows.edges_into_io, self.message_net(False))), d
        )
        parts = [nodes, torch.zeros_like(nodes).index_add_(0, dst, mu)]
        if self.gated:
            gb = self.bw_gated
            a = self.bw_e(edges) * gb.recv(nodes)[src]
            b_max, b_sq, b_t = (t[dst] for t in gb.sender_terms(nodes))
            v = a.new_empty(a.shape)
            for io, r in ((False, rows.edges_from_hidden), (True, rows.edges_from_io)):
                v[r] = gb.edge_terms(a[r], b_max[r], b_sq[r], gb.project_sender(b_t[r], io), io)
            v_sum = torch.zeros_like(nodes).index_add_(0, src, v)
            deg = rows.out_degree.to(nodes.dtype)
            mb = torch.zeros_like(nodes)
            for io, ids in ((False, rows.hidden_nodes), (True, rows.input_nodes)):
                mb[ids] = gb.finish(v_sum[ids], deg[ids], nodes[ids], io)
            parts.append(mb)
        elif self.bidir:
            b_in = self.backward_input(edges, self.bw_v(nodes)[dst])
            mu_b = _by_rows(
                b_in,
                ((rows.edges_from_hidden, self.backward_net(True)), (rows.edges_from_io, self.backward_net(False))),
                d,
            )
            parts.append(torch.zeros_like(nodes).index_add_(0, src, mu_b))
        new_nodes = _by_rows(
            torch.cat(parts, -1),
            (
                (rows.hidden_nodes, self.update_net(_HIDDEN)),
                (rows.input_nodes, self.update_net(_INPUT)),
                (rows.output_nodes, self.update_net(_OUTPUT)),
            ),
            self.upd_in.lin2.out_features,
        )
        new_edges = edges
        if self.edge_out is not None:
            c = nodes.clone()
            c[rows.hidden_nodes] = self.edge_canon(nodes[rows.hidden_nodes])
            first = self.edge_sender_term(c)[src] + self.edge_receiver_term(c)[dst]
            new_edges = self.edge_update_output(first, self.edge_gamma(edges))
        return self.with_skip(nodes, new_nodes), new_edges
