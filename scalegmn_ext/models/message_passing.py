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


def _expand(extra: Tensor, x: Tensor) -> Tensor:
    """``extra`` broadcast to ``x``'s leading shape (for a concatenation with ``x``)."""
    return extra.expand(*x.shape[:-1], extra.shape[-1])


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
        # node type embeddings as extra invariant inputs (public "AugScaleInv"; 0 = off)
        d_xm = d if cfg.pos_embed_msg else 0
        d_xu = d if cfg.pos_embed_upd else 0
        self.msg_v = nn.Linear(d, d, bias=False)
        self.msg_e = nn.Linear(d, d, bias=False)
        self.msg_hidden = ScaleEq(sym, d, d, d, sc, ln, d_extra=d_xm, eps=cfg.eps)  # messages into hidden neurons
        self.msg_io = MLP(d + d_xm, d, d, ln)  # messages into output neurons are invariant
        if cfg.msg_num_mlps == 3:  # built by the public code, never used by a forward message net
            self.msg_io_spare = MLP(d + d_xm, d, d, ln)
        self.gated = self.bidir and sym == "scale" and cfg.scale_backward == "gated"
        if self.bidir:
            self.bw_e = nn.Linear(d, d, bias=False)
        if self.gated:
            if d_xm:
                raise ValueError("ScaleGMNConfig.pos_embed_msg is not supported with scale_backward='gated'")
            self.bw_gated = GatedBackwardMessage(d, ln)
        elif self.bidir:
            self.bw_v = nn.Linear(d, d, bias=False)
            self.bw_hidden = ScaleEq(sym, d, d, d, sc, ln, d_extra=d_xm, eps=cfg.eps)
            self.bw_io = MLP(d + d_xm, d, d, ln)  # messages into input neurons
            if cfg.msg_num_mlps == 3:  # built by the public code, never used by a backward message net
                self.bw_io_spare = MLP(d + d_xm, d, d, ln)
        k = 3 if self.bidir else 2
        rho_hidden = d if cfg.rho_width == "d_hid" else None
        self.upd_hidden = ScaleEq(sym, k * d, d_node_out, d, sc, ln, d_extra=d_xu, eps=cfg.eps, rho_hidden=rho_hidden)
        self.upd_in = MLP(k * d + d_xu, d, d_node_out, ln)
        # upd_num_mlps=2: input and output neurons share upd_in
        self.upd_out = MLP(k * d + d_xu, d, d_node_out, ln) if cfg.upd_num_mlps == 3 else None
        self.edge_out = d_edge_out
        if d_edge_out is not None:
            self.edge_canon = Canonicalizer(sym, d, sc, ln, cfg.eps)
            self.psi = MLP(2 * d, d, d_edge_out, ln)  # on [c(h_sender) || c(h_receiver)]
            self.edge_gamma = nn.Linear(d, d_edge_out, bias=False)
        # a second edge state for backward messages, with its own update (public bidirectional scale)
        self.bw_separate = self.bidir and cfg.backward_edges == "separate" and d_edge_out is not None
        if self.bw_separate:
            self.bw_edge_canon = Canonicalizer(sym, d, sc, ln, cfg.eps)
            self.bw_psi = MLP(2 * d, d, d_edge_out, ln)  # on [c(h_receiver) || c(h_sender)]
            self.bw_edge_gamma = nn.Linear(d, d_edge_out, bias=False)
        self.skip = nn.Linear(d, d, bias=False) if (cfg.skip and d_node_out == d) else None
        self.sym, self.eps = sym, cfg.eps
        self.scale_backward = cfg.scale_backward
        self.io_gamma, self.edge_canon_io = cfg.io_gamma, cfg.edge_canon_io
        self.pos_embed_msg, self.pos_embed_upd = cfg.pos_embed_msg, cfg.pos_embed_upd
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
        upd_out = self.upd_in if self.upd_out is None else self.upd_out
        return {_INPUT: self.upd_in, _HIDDEN: self.upd_hidden, _OUTPUT: upd_out}[role]

    def io_rows(self, eq: ScaleEq, mlp: MLP, x: Tensor, extra: Tensor | None = None) -> Tensor:
        """A message or update net on I/O rows (invariant states): ``MLP([x || extra])``, times
        ``Gamma x`` of the net's ScaleEq when ``io_gamma`` (the public ``mlp_on_io: False``)."""
        y = mlp(x if extra is None else torch.cat([x, _expand(extra, x)], -1))
        return eq.gamma(x) * y if self.io_gamma else y

    def _update(self, role: str, inp: Tensor, pos: Tensor | None) -> Tensor:
        """Node update of one block (``pos``: the block's type embeddings, ``[n, d]``)."""
        extra = pos if self.pos_embed_upd else None
        if role == _HIDDEN:
            return self.upd_hidden(inp, None if extra is None else _expand(extra, inp))
        return self.io_rows(self.upd_hidden, self.update_net(role), inp, extra)

    def backward_edge(self, e: Tensor) -> Tensor:
        """Edge feature of a backward message for ``scale_backward="inverse"`` (and ``sign``,
        where ``e`` itself works: ``q_i q_j = q_i / q_j``): ``e / ||e||^2``, which scales with
        ``q_j / q_i``. Computed max-scaled (``(y / ||y||^2) / m``, ``y = e / m``) so that it is
        exact for every non-zero ``e`` without a clamp, and 0 for ``e = 0``. Its magnitude is
        ``1 / ||e||``: exact, but unbounded (the reason ``"gated"`` is the default).
        ``scale_backward="raw"`` passes ``e`` itself, as the public code does for ``scale`` too:
        then the model is *not* scale-equivariant (kept to reproduce public checkpoints)."""
        return inverse_norm_sq(e) if (self.sym == "scale" and self.scale_backward != "raw") else e

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

    def edge_update_output(self, first: Tensor, gamma_e: Tensor, psi: MLP | None = None) -> Tensor:
        """New edge state from ``psi``'s first-layer pre-activation (sender + receiver terms) and
        ``Gamma e``: ``psi(...) * Gamma e`` (invariant times equivariant)."""
        psi = self.psi if psi is None else psi
        return psi.lin2(psi.hidden(first)) * gamma_e

    def with_skip(self, old: Tensor, new: Tensor) -> Tensor:
        """Bias-free skip connection (equivariant: linear without bias)."""
        return new if self.skip is None else self.skip(old) + new

    # ---------------------------------------------------------------- layer-block path ----
    def forward_blocks(
        self,
        blocks: LayerBlocks,
        drop_p: float = 0.0,
        seed: int = 0,
        outputs_only: bool = False,
        pos: list[Tensor] | None = None,
    ) -> LayerBlocks:
        """One layer on the per-layer blocks of one architecture.

        ``drop_p > 0`` applies hash dropout to every output block (seeds derived from ``seed``;
        fused into the edge update's tiles). ``outputs_only``: update only the output neurons and
        return the rest unchanged -- all a last-layer readout reads. ``pos``: the node type
        embeddings per graph layer (``[n_k, d]``), needed with ``pos_embed_msg``/``pos_embed_upd``.
        """
        nodes, edges, bw_edges = blocks.node_states, blocks.edge_states, blocks.bw_edge_states
        L = len(edges)
        if pos is None:
            pos = [None] * (L + 1)
        if outputs_only:
            msg = self._forward_message_block(
                edges[L - 1], self.msg_v(nodes[L - 1]), False, self._msg_extra(pos, L - 1, L)
            )
            parts = [nodes[L], msg] + ([torch.zeros_like(nodes[L])] if self.bidir else [])
            out = self.with_skip(nodes[L], self._update(_OUTPUT, torch.cat(parts, -1), pos[L]))
            return LayerBlocks(nodes[:-1] + [out], edges, bw_edges)
        sender_proj = [self.msg_v(h) for h in nodes[:-1]]  # per node, not per edge
        parts = [[nodes[0], torch.zeros_like(nodes[0])]]
        for l in range(1, L + 1):
            msg = self._forward_message_block(edges[l - 1], sender_proj[l - 1], l < L, self._msg_extra(pos, l - 1, l))
            parts.append([nodes[l], msg])
        if self.bidir:
            bw_src = edges if bw_edges is None else bw_edges
            for p, b in zip(parts, self._backward_message_blocks(nodes, bw_src, pos)):
                p.append(b)
        roles = [_INPUT] + [_HIDDEN] * (L - 1) + [_OUTPUT]
        new_nodes = [
            self.with_skip(h, self._update(r, torch.cat(p, -1), q)) for h, r, p, q in zip(nodes, roles, parts, pos)
        ]
        new_edges = self._edge_update_blocks(nodes, edges, drop_p, seed) if self.edge_out is not None else edges
        if self.bw_separate:  # the public code applies no dropout to edge states
            bw_edges = self._edge_update_blocks(nodes, bw_edges, 0.0, 0, reverse=True)
        if drop_p > 0:
            if self.edge_out is None:  # (an edge update applies its dropout itself, fused if it can)
                new_edges = [
                    hash_dropout(materialize(x), drop_p, _sub_seed(seed, L + 1 + l)) for l, x in enumerate(new_edges)
                ]
            new_nodes = [hash_dropout(x, drop_p, _sub_seed(seed, l)) for l, x in enumerate(new_nodes)]
        return LayerBlocks(new_nodes, new_edges, bw_edges)

    def _msg_extra(self, pos: list, l_send: int, l_recv: int) -> Tensor | None:
        """The extra input of forward messages from graph layer ``l_send`` into ``l_recv``,
        broadcastable to the ``[B, out, in, d]`` edge block: the receiver's type embedding in a
        forward-direction model, the sender's in a bidirectional one (as the public code)."""
        if not self.pos_embed_msg:
            return None
        return pos[l_send].unsqueeze(0) if self.bidir else pos[l_recv].unsqueeze(1)

    def _forward_message_block(
        self, edge_block, sender_proj: Tensor, into_hidden: bool, extra: Tensor | None = None
    ) -> Tensor:
        """Summed forward messages into one node block from its incoming edge block."""
        e, w_e = edge_operands(edge_block, self.msg_e.weight)
        if into_hidden and self.fused and extra is None:  # tiled, recompute-in-backward kernel
            return scale_eq_message(
                e, sender_proj, self.msg_hidden.message_params(w_e), save=self.message_save and torch.is_grad_enabled()
            )
        x = F.linear(e, w_e) * sender_proj.unsqueeze(1)  # [B, out, in, d]
        if into_hidden:
            return self.msg_hidden(x, None if extra is None else _expand(extra, x)).sum(2)
        return self.io_rows(self.msg_hidden, self.msg_io, x, extra).sum(2)

    def _backward_message_blocks(self, nodes: list[Tensor], edges: list, pos: list) -> list[Tensor]:
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
                extra = pos[l].unsqueeze(1) if self.pos_embed_msg else None  # the sender's (layer l)
                if into_hidden:
                    m = self.bw_hidden(y, None if extra is None else _expand(extra, y))
                else:
                    m = self.io_rows(self.bw_hidden, self.bw_io, y, extra)
                out.append(m.sum(1))
        out.append(torch.zeros_like(nodes[-1]))
        return out

    def _edge_update_blocks(
        self, nodes: list[Tensor], edges: list, drop_p: float, seed: int, reverse: bool = False
    ) -> list[Tensor]:
        """Edge update of every edge block. ``reverse``: the separate backward edge state
        (``backward_edges="separate"``), updated from ``[c(h_receiver) || c(h_sender)]`` -- the
        public code runs its edge update on the reversed edges."""
        L = len(edges)
        if reverse:
            canon_net, psi, gamma = self.bw_edge_canon, self.bw_psi, self.bw_edge_gamma
        else:
            canon_net, psi, gamma = self.edge_canon, self.psi, self.edge_gamma
        canon = [h if (l in (0, L) and not self.edge_canon_io) else canon_net(h) for l, h in enumerate(nodes)]
        d = canon[0].shape[-1]
        # first psi layer, per node: the in-axis (sender j) and out-axis (receiver i) halves
        if reverse:
            senders = [psi.partial_first_layer(c, d) for c in canon[:-1]]
            receivers = [psi.partial_first_layer(c, 0, bias=True) for c in canon[1:]]
        else:
            senders = [psi.partial_first_layer(c, 0) for c in canon[:-1]]
            receivers = [psi.partial_first_layer(c, d, bias=True) for c in canon[1:]]
        if self.fused_edge:  # tiled op: no [E, d] intermediates kept, dropout fused
            ln = psi.norm if isinstance(psi.norm, nn.LayerNorm) else None
            out = []
            for l in range(L):
                e, w_g = edge_operands(edges[l], gamma.weight)
                out.append(
                    edge_update(
                        e,
                        receivers[l],
                        senders[l],
                        psi.lin2.weight,
                        psi.lin2.bias,
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
                F.linear(*edge_operands(edges[l], gamma.weight)),
                psi,
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
