"""ScaleGMN (Kalogeropoulos et al., NeurIPS 2024): permutation- and scale/sign-equivariant
graph metanetworks on the weights of MLPs and CNNs.

Two implementations share every parameter (one ``state_dict``):

* ``impl="fast"`` (default): the *dense-layer* layout. All networks of a batch share one
  architecture, so the edges of weight layer l are a ``[B, out, in, d]`` block and a message sum
  is a reduction over ``in`` -- no index arithmetic. Per-node work is done per node (the sender
  projection, the canonicalisation and first edge-MLP layer of the edge update), each row runs
  only its own branch (hidden vs I/O), and ``rho(x) + rho(-x)`` costs two GEMMs.
  Messages into hidden neurons and edge updates run as the tiled recompute-in-backward ops
  ``scalegmn::scale_eq_message`` / ``scalegmn::edge_update``; dropout is ``hash_dropout``
  (masks regenerated, fused into the edge-update tiles).
* ``impl="reference"``: the straightforward per-edge computation of the public implementation
  (gather node states to edges, project per edge, run both branches on every row and mask, four
  GEMMs for the symmetrisation, scatter-add). It is the test oracle and the benchmark baseline.

Mixed-architecture batches (:class:`~scalegmn_ext.weightspace.graph.MixedGraphBatch`) run group by group
through the dense path, or -- for small groups -- as one disjoint graph through the generic graph
path (``forward_sparse``: the fast path's per-node savings on an edge list; ``forward_flat``
under ``impl="reference"``).

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

from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import Tensor, nn

from ..weightspace.architecture import Architecture
from ..weightspace.graph import MixedGraphBatch, WeightGraph, check_compatible, graph_structure
from ..ops import canonical_segment_sum, draw_seed, edge_update, graph_to_weights, hash_dropout, scale_eq_message
from ..reference.canonical import inverse_norm_sq
from .config import ScaleGMNConfig
from .layers import MLP, Canonicalizer, GatedBackwardMessage, ScaleEq

__all__ = ["ScaleGMN", "ScaleGMNEquivariant"]


class _Factored(NamedTuple):
    """A layer-0 edge block never materialised: ``E = raw @ A^T`` (``raw`` ``[B, out, in, K]``
    graph features, ``A = diag(pos_t) W_init`` ``[d, K]`` for the block's single edge type), so a
    projection ``W E`` is ``raw @ (W A)^T`` -- a K-wide instead of a d-wide GEMM per edge."""

    raw: Tensor
    A: Tensor

    def dense(self) -> Tensor:
        return F.linear(self.raw, self.A)


def _project(E, w: Tensor) -> tuple[Tensor, Tensor]:
    """``(edge, weight)`` such that ``edge @ weight^T`` = ``W E`` for a dense or factored block."""
    return (E.raw, w @ E.A) if isinstance(E, _Factored) else (E, w)


def _dense(E) -> Tensor:
    return E.dense() if isinstance(E, _Factored) else E


def _block_types(arch: Architecture) -> tuple:
    """Per weight layer: its single edge type id, or None when its edges have several types.

    Pure Python on the type rules of :func:`~scalegmn_ext.weightspace.graph.graph_structure` (node types:
    input i -> i, hidden layer k -> n_in + k - 1, output j -> n_in + L - 1 + j; edge types: the
    rank of (sender type, receiver type) among all pairs), so torch.compile sees constants."""
    layout, L = arch.layout, arch.num_layers
    n_in, T = layout[0], arch.num_layers + layout[0] + layout[-1] - 1

    def types(k):  # node type ids of layer k
        if k == 0:
            return list(range(n_in))
        if k == L:
            return [n_in + L - 1 + j for j in range(layout[-1])]
        return [n_in + k - 1]

    pairs = [[a * T + b for b in types(l + 1) for a in types(l)] for l in range(L)]
    rank = {p: r for r, p in enumerate(sorted({p for ps in pairs for p in ps}))}
    return tuple(rank[ps[0]] if len(ps) == 1 else None for ps in pairs)


def _row_sets(g: dict) -> dict:
    """Adds the row index sets that :meth:`_GNNLayer.forward_sparse` needs (once per batch)."""
    src, dst = g["edge_index"]
    hid, inp = g["hidden"], g["input"]
    out = (~hid) & (~inp)
    rh, sh = hid[dst], hid[src]
    nz = lambda m: m.nonzero().squeeze(1)  # noqa: E731
    return {**g, "e_hid": nz(rh), "e_io": nz(~rh), "e_shid": nz(sh), "e_sio": nz(~sh),
            "n_hid": nz(hid), "n_in": nz(inp), "n_out": nz(out),
            "out_deg": torch.bincount(src, minlength=hid.shape[0]).unsqueeze(-1)}  # backward-message count per node


def _sub_seed(seed: int, j: int) -> int:
    """Seed of the j-th dropout tensor of a layer (the hash mixes it; distinct seeds, unrelated masks)."""
    return (seed + 0x9E3779B9 * (j + 1)) & 0x7FFFFFFF


class _GNNLayer(nn.Module):
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

    def backward_edge(self, e: Tensor) -> Tensor:
        """Edge feature of a backward message for ``scale_backward="inverse"`` (and ``sign``,
        where ``e`` itself works: ``q_i q_j = q_i / q_j``): ``e / ||e||^2``, which scales with
        ``q_j / q_i``. Computed max-scaled (``(y / ||y||^2) / m``, ``y = e / m``) so that it is
        exact for every non-zero ``e`` without a clamp, and 0 for ``e = 0``. Its magnitude is
        ``1 / ||e||``: exact, but unbounded (the reason ``"gated"`` is the default)."""
        return inverse_norm_sq(e) if self.sym == "scale" else e

    def _backward_dense(self, H: list[Tensor], E: list) -> list[Tensor]:
        """Backward messages into every node block (the output block gets zeros)."""
        L = len(E)
        out = []
        if self.gated:
            g = self.bw_gated
            for l in range(1, L + 1):  # layer-l edges carry messages back to layer l-1
                io = l - 1 == 0
                e_l, w_e = _project(E[l - 1], self.bw_e.weight)
                a = F.linear(e_l, w_e) * g.recv(H[l - 1]).unsqueeze(1)  # [B, out, in, d], scales q_i
                b_max, b_sq, b_t = g.sender_terms(H[l])
                v = g.edge_terms(a, b_max.unsqueeze(2), b_sq.unsqueeze(2), g.project_sender(b_t, io).unsqueeze(2), io)
                out.append(g.finish(v.sum(1), a.shape[1], H[l - 1], io))
        else:
            bv = [self.bw_v(h) for h in H[1:]]
            for l in range(1, L + 1):
                y = self.bw_e(self.backward_edge(_dense(E[l - 1]))) * bv[l - 1].unsqueeze(2)
                net = self.bw_hidden if l - 1 > 0 else self.bw_io
                out.append(net(y).sum(1))
        out.append(torch.zeros_like(H[-1]))
        return out

    # ---------------------------------------------------------------- dense-layer layout ----
    def forward_dense(self, H: list[Tensor], E: list[Tensor], drop_p: float = 0.0,
                      seed: int = 0, outputs_only: bool = False) -> tuple[list[Tensor], list[Tensor]]:
        """One layer on per-layer node blocks ``H[l]`` ``[B, n_l, d]`` and edge blocks ``E[l]``
        ``[B, out, in, d]``; ``drop_p > 0`` applies hash dropout to every output block (seeds derived
        from ``seed``; fused into the edge update's tiles). ``outputs_only``: update only the
        output neurons (the rest is returned unchanged) -- all a last-layer readout reads."""
        L = len(E)
        if outputs_only:
            e_l, w_e = _project(E[L - 1], self.msg_e.weight)
            agg = self.msg_io((F.linear(e_l, w_e) * self.msg_v(H[L - 1]).unsqueeze(1))).sum(2)
            parts = [H[L], agg] + ([torch.zeros_like(H[L])] if self.bidir else [])
            out = self.upd_out(torch.cat(parts, -1))
            if self.skip is not None:
                out = self.skip(H[L]) + out
            return H[:-1] + [out], [_dense(x) for x in E]
        hv = [self.msg_v(h) for h in H[:-1]]  # per node, not per edge
        agg = [torch.zeros_like(H[0])]
        for l in range(1, L + 1):
            e_l, w_e = _project(E[l - 1], self.msg_e.weight)
            if l < L and self.fused:  # tiled, recompute-in-backward kernel: no [E, d] tensors kept
                agg.append(scale_eq_message(e_l, hv[l - 1], self.msg_hidden.message_params(w_e),
                                            save=self.message_save and torch.is_grad_enabled()))
                continue
            x = F.linear(e_l, w_e) * hv[l - 1].unsqueeze(1)  # [B, out, in, d]
            net = self.msg_hidden if l < L else self.msg_io
            agg.append(net(x).sum(2))
        parts = [[h, a] for h, a in zip(H, agg)]
        if self.bidir:
            for p, b in zip(parts, self._backward_dense(H, E)):
                p.append(b)
        new_H = []
        for l, p in enumerate(parts):
            net = self.upd_in if l == 0 else (self.upd_out if l == L else self.upd_hidden)
            new_H.append(net(torch.cat(p, -1)))
        new_E = E
        if self.edge_out is not None:
            cn = [h if (l == 0 or l == L) else self.edge_canon(h) for l, h in enumerate(H)]
            w = self.psi.lin1.weight
            d = cn[0].shape[-1]
            src = [F.linear(c, w[:, :d]) for c in cn[:-1]]  # first psi layer, per node
            dst = [F.linear(c, w[:, d:], self.psi.lin1.bias) for c in cn[1:]]
            if self.fused_edge:  # tiled op: no [E, d] intermediates kept, dropout fused
                ln = self.psi.norm if isinstance(self.psi.norm, nn.LayerNorm) else None
                new_E = []
                for l in range(L):
                    e_l, w_g = _project(E[l], self.edge_gamma.weight)
                    new_E.append(edge_update(e_l, dst[l], src[l], self.psi.lin2.weight, self.psi.lin2.bias, w_g,
                                             ln.weight if ln is not None else None, ln.bias if ln is not None else None,
                                             p=drop_p, seed=_sub_seed(seed, L + 1 + l)))
            else:
                new_E = [self.psi.lin2(self.psi.hidden(dst[l].unsqueeze(2) + src[l].unsqueeze(1))) * F.linear(*_project(E[l], self.edge_gamma.weight))
                         for l in range(L)]
                new_E = [hash_dropout(x, drop_p, _sub_seed(seed, L + 1 + l)) for l, x in enumerate(new_E)]
        else:
            new_E = [_dense(x) for x in E]
            if drop_p > 0:
                new_E = [hash_dropout(x, drop_p, _sub_seed(seed, L + 1 + l)) for l, x in enumerate(new_E)]
        if self.skip is not None:
            new_H = [self.skip(h) + n for h, n in zip(H, new_H)]
        if drop_p > 0:
            new_H = [hash_dropout(x, drop_p, _sub_seed(seed, l)) for l, x in enumerate(new_H)]
        return new_H, new_E

    # ---------------------------------------------------------------- generic flat graph ------
    def forward_sparse(self, x: Tensor, e: Tensor, g: dict) -> tuple[Tensor, Tensor]:
        """The generic (any disjoint graph) path with the fast path's savings: projections and
        the edge MLP's first layer per node, each row only its own branch, 2-GEMM
        symmetrisation. ``g`` holds edge_index, the masks, and (from :func:`_row_sets`) the row
        index sets ``e_hid``/``e_io`` (edges into hidden / I/O nodes), ``e_shid``/``e_sio`` (by
        sender), ``n_hid``/``n_in``/``n_out`` (nodes)."""
        src, dst = g["edge_index"]

        def split(rows: Tensor, a: Tensor, b: Tensor, f_a, f_b, width: int) -> Tensor:
            out = rows.new_empty(rows.shape[0], width)
            out[a] = f_a(rows[a])
            out[b] = f_b(rows[b])
            return out

        d = x.shape[-1]
        m_in = self.msg_e(e) * self.msg_v(x)[src]
        mu = split(m_in, g["e_hid"], g["e_io"], self.msg_hidden, self.msg_io, d)
        parts = [x, torch.zeros_like(x).index_add_(0, dst, mu)]
        if self.gated:
            gb = self.bw_gated
            a = self.bw_e(e) * gb.recv(x)[src]
            b_max, b_sq, b_t = (t[dst] for t in gb.sender_terms(x))
            rows = {False: g["e_shid"], True: g["e_sio"]}  # edges into hidden / input receivers
            v = a.new_empty(a.shape)
            for io, r in rows.items():
                v[r] = gb.edge_terms(a[r], b_max[r], b_sq[r], gb.project_sender(b_t[r], io), io)
            v_sum = torch.zeros_like(x).index_add_(0, src, v)
            deg = g["out_deg"].to(x.dtype)
            mb = torch.zeros_like(x)
            for io, nodes in ((False, g["n_hid"]), (True, g["n_in"])):
                mb[nodes] = gb.finish(v_sum[nodes], deg[nodes], x[nodes], io)
            parts.append(mb)
        elif self.bidir:
            b_in = self.bw_e(self.backward_edge(e)) * self.bw_v(x)[dst]
            mu_b = split(b_in, g["e_shid"], g["e_sio"], self.bw_hidden, self.bw_io, d)
            parts.append(torch.zeros_like(x).index_add_(0, src, mu_b))
        inp = torch.cat(parts, -1)
        d_out = self.upd_in.lin2.out_features
        new_x = inp.new_empty(inp.shape[0], d_out)
        for rows, net in ((g["n_hid"], self.upd_hidden), (g["n_in"], self.upd_in), (g["n_out"], self.upd_out)):
            new_x[rows] = net(inp[rows])
        new_e = e
        if self.edge_out is not None:
            c = x.clone()
            c[g["n_hid"]] = self.edge_canon(x[g["n_hid"]])
            w = self.psi.lin1.weight
            first = F.linear(c, w[:, :d])[src] + F.linear(c, w[:, d:], self.psi.lin1.bias)[dst]
            new_e = self.psi.lin2(self.psi.hidden(first)) * self.edge_gamma(e)
        if self.skip is not None:
            new_x = self.skip(x) + new_x
        return new_x, new_e

    # ---------------------------------------------------------------- per-edge reference ----
    def forward_flat(self, x: Tensor, e: Tensor, g: dict) -> tuple[Tensor, Tensor]:
        src, dst = g["edge_index"]
        recv_hidden = g["hidden"][dst].unsqueeze(-1)
        m_in = self.msg_e(e) * self.msg_v(x[src])  # projection per edge after the gather
        mu = torch.where(recv_hidden, self.msg_hidden.forward_reference(m_in), self.msg_io(m_in))
        parts = [x, torch.zeros_like(x).index_add_(0, dst, mu)]
        if self.gated:
            send_hidden = g["hidden"][src].unsqueeze(-1)
            gb, ep = self.bw_gated, self.bw_e(e)
            mu_b = torch.where(send_hidden, gb.forward_reference(ep, x[src], x[dst], False),
                               gb.forward_reference(ep, x[src], x[dst], True))
            parts.append(torch.zeros_like(x).index_add_(0, src, mu_b))
        elif self.bidir:
            send_hidden = g["hidden"][src].unsqueeze(-1)
            b_in = self.bw_e(self.backward_edge(e)) * self.bw_v(x[dst])
            mu_b = torch.where(send_hidden, self.bw_hidden.forward_reference(b_in), self.bw_io(b_in))
            parts.append(torch.zeros_like(x).index_add_(0, src, mu_b))
        inp = torch.cat(parts, -1)
        hid, inn = g["hidden"].unsqueeze(-1), g["input"].unsqueeze(-1)
        new_x = torch.where(hid, self.upd_hidden.forward_reference(inp),
                            torch.where(inn, self.upd_in(inp), self.upd_out(inp)))
        new_e = e
        if self.edge_out is not None:
            def canon(idx):
                h = x[idx]
                return torch.where(g["hidden"][idx].unsqueeze(-1), self.edge_canon.forward_reference(h), h)
            new_e = self.psi(torch.cat([canon(src), canon(dst)], -1)) * self.edge_gamma(e)
        if self.skip is not None:
            new_x = self.skip(x) + new_x
        return new_x, new_e


class _ScaleGMNBase(nn.Module):
    def __init__(self, arch: Architecture, config: ScaleGMNConfig | None = None, *, impl: str = "fast",
                 equivariant: bool = False):
        super().__init__()
        if not isinstance(arch, Architecture):
            raise TypeError(f"arch must be an Architecture, got {type(arch).__name__}")
        cfg = config or ScaleGMNConfig()
        if not isinstance(cfg, ScaleGMNConfig):
            raise TypeError(f"config must be a ScaleGMNConfig, got {type(cfg).__name__}")
        sym = cfg.symmetry or arch.symmetry.value
        if sym != "permutation" and sym != arch.symmetry.value:
            raise ValueError(f"config.symmetry={sym!r} does not match the input architecture's group "
                             f"{arch.symmetry.value!r} ({arch.activation} activation)")
        self.arch, self.config, self.symmetry = arch, cfg, sym
        self.impl = impl
        self.structure = graph_structure(arch)
        d, K = cfg.d_hid, arch.edge_dim
        self.node_init = nn.Linear(1, d, bias=False)
        self.edge_init = nn.Linear(K, d, bias=False)
        if cfg.pos_embed:
            self.node_pos = nn.Parameter(torch.randn(self.structure.num_node_types, d))
            self.edge_pos = nn.Parameter(torch.randn(self.structure.num_edge_types, d))
        # the last layer may update only the output neurons (set by heads that read only those)
        self._outputs_only = False
        layers = []
        for i in range(cfg.num_layers):
            last = i == cfg.num_layers - 1
            if equivariant and last:
                layers.append(_GNNLayer(sym, cfg, 1, K))
            else:
                layers.append(_GNNLayer(sym, cfg, d, None if (not cfg.edge_update or last) else d))
        self.layers = nn.ModuleList(layers)
        self.dropout = nn.Dropout(cfg.dropout)

    @property
    def impl(self) -> str:
        return self._impl

    @impl.setter
    def impl(self, value: str) -> None:
        if value not in ("fast", "reference"):
            raise ValueError(f"impl must be 'fast' or 'reference', got {value!r}")
        self._impl = value

    # ---------------------------------------------------------------- inputs ----------------
    def _graph(self, weights, biases) -> tuple[Tensor, Tensor, bool, Architecture]:
        """``(node, edge, batched, arch)``; a WeightGraph may hold any compatible architecture."""
        # Checked here, before any matmul, so that a dtype mismatch names the argument instead of
        # surfacing as torch's "expected m1 and m2 to have the same dtype" deep inside a layer.
        dtype = self.edge_init.weight.dtype
        if isinstance(weights, WeightGraph):
            if weights.arch != self.arch:
                check_compatible(self.arch, weights.arch)
            g, batched, subject, fix = weights, True, "weights (a WeightGraph) has", ""
        elif isinstance(weights, Tensor) or not isinstance(weights, Sequence):
            raise TypeError("weights must be a list of per-layer tensors or a WeightGraph")
        else:
            batched = len(weights) > 0 and isinstance(weights[0], Tensor) and weights[0].dim() == len(self.arch.layers[0].weight_shape) + 1
            # from_weights has checked that all weights and biases share one dtype
            g = WeightGraph.from_weights(self.arch, weights, biases, input_value=self.config.input_value)
            subject, fix = "weights/biases have", f"[w.to({dtype}) for w in weights], or "
        if g.edge.dtype != dtype:
            raise TypeError(f"{subject} dtype {g.edge.dtype} but this model's parameters are {dtype}; convert one "
                            f"of them (e.g. {fix}model.to({g.edge.dtype}))")
        return g.node, g.edge, batched, g.arch

    def _embed_nodes(self, node: Tensor, node_type: Tensor | None = None, hidden: Tensor | None = None,
                     s=None) -> Tensor:
        """Node embedding; types/mask default to those of structure ``s`` (broadcast over B)."""
        s = self.structure if s is None else s
        h = self.node_init(node)
        if self.config.pos_embed:
            node_type = s.node_type.to(h.device) if node_type is None else node_type
            hidden = (s.hidden_mask.to(h.device) if hidden is None else hidden).unsqueeze(-1)
            p = self.node_pos[node_type]
            h = torch.where(hidden, h * p, h + p)  # product keeps equivariance; I/O may add
        return h

    def _embed(self, node: Tensor, edge: Tensor, node_type: Tensor | None = None, edge_type: Tensor | None = None,
               hidden: Tensor | None = None, s=None) -> tuple[Tensor, Tensor]:
        s = self.structure if s is None else s
        e = self.edge_init(edge)
        if self.config.pos_embed:
            e = e * self.edge_pos[s.edge_type.to(edge.device) if edge_type is None else edge_type]
        return self._embed_nodes(node, node_type, hidden, s), e

    def _edge_blocks(self, edge: Tensor, arch: Architecture) -> list:
        """Layer-0 edge states per weight layer, ``[B, out, in, d]`` or :class:`_Factored` when
        the block has one edge type (``edge_init`` is linear: ``pos_t * (W_init raw)``)."""
        s = graph_structure(arch)
        eo, single, blocks = s.edge_offsets, _block_types(arch), []
        for l, spec in enumerate(arch.layers):
            raw = edge[:, eo[l]:eo[l + 1]].unflatten(1, (spec.out_features, spec.in_features))
            t = single[l]
            if not self.config.pos_embed:
                blocks.append(_Factored(raw, self.edge_init.weight))
            elif t is not None:
                blocks.append(_Factored(raw, self.edge_pos[t].unsqueeze(1) * self.edge_init.weight))
            else:
                types = s.edge_type[eo[l]:eo[l + 1]].to(edge.device)
                pos = self.edge_pos[types].unflatten(0, (spec.out_features, spec.in_features))
                blocks.append(self.edge_init(raw) * pos)
        return blocks

    def _run(self, node: Tensor, edge: Tensor, arch: Architecture) -> tuple[Tensor, Tensor]:
        """Message passing on a batch of one architecture; returns node states [B, N, d'] and
        edge states [B, E, d'']."""
        s = graph_structure(arch)
        if self.impl == "fast":
            h = self._embed_nodes(node, s=s)
            no = s.node_offsets
            H = [h[:, no[l]:no[l + 1]] for l in range(len(no) - 1)]
            E = self._edge_blocks(edge, arch)
            ckpt = self.config.checkpoint and torch.is_grad_enabled()
            drop = self.config.dropout if self.training else 0.0
            last = len(self.layers) - 1
            for i, layer in enumerate(self.layers):
                # dropout between layers: hash dropout (mask regenerated, not stored; see ops.dropout)
                p = drop if i < last else 0.0
                seed = draw_seed() if p > 0 else 0
                only = self._outputs_only and i == last
                if ckpt:
                    H, E = torch.utils.checkpoint.checkpoint(layer.forward_dense, H, E, p, seed, only,
                                                             use_reentrant=False)
                else:
                    H, E = layer.forward_dense(H, E, p, seed, only)
            return torch.cat(H, 1), torch.cat([_dense(x).flatten(1, 2) for x in E], 1)
        h, e = self._embed(node, edge, s=s)
        B = h.shape[0]
        dev = h.device
        ei, _, _ = s.to(dev).batch(B)
        g = {"edge_index": ei, "hidden": s.hidden_mask.to(dev).repeat(B), "input": s.input_mask.to(dev).repeat(B)}
        # explicit widths: with B = 0 a -1 could not be inferred
        x, ef = self._run_flat(h.reshape(B * s.num_nodes, h.shape[-1]), e.reshape(B * s.num_edges, e.shape[-1]), g)
        return x.reshape(B, s.num_nodes, x.shape[-1]), ef.reshape(B, s.num_edges, ef.shape[-1])

    def _run_flat(self, x: Tensor, ef: Tensor, g: dict, sparse: bool = False) -> tuple[Tensor, Tensor]:
        """The generic path on a flat disjoint graph (edge_index + masks): per edge as the public
        code does, or (``sparse``) with the fast path's per-node and per-branch savings."""
        if sparse:
            g = _row_sets(g)
        for i, layer in enumerate(self.layers):
            x, ef = layer.forward_sparse(x, ef, g) if sparse else layer.forward_flat(x, ef, g)
            if i < len(self.layers) - 1:
                x, ef = self.dropout(x), self.dropout(ef)
        return x, ef

    def _mixed(self, weights) -> MixedGraphBatch | None:
        """The input as a :class:`MixedGraphBatch` when it is one (or a list of WeightGraph)."""
        if isinstance(weights, Sequence) and len(weights) > 0 and all(isinstance(w, WeightGraph) for w in weights):
            weights = MixedGraphBatch.from_graphs(weights)
        if not isinstance(weights, MixedGraphBatch):
            return None
        for arch, _ in weights.groups:
            check_compatible(self.arch, arch)
        return weights

    #: mixed batches whose every architecture group holds at least this many networks run the
    #: dense fast path group by group (networks do not interact); smaller groups run the generic
    #: graph path in one pass (a per-group loop would cost more than it saves).
    mixed_dense_min_group: int = 8

    def _dense_groups(self, mb: MixedGraphBatch) -> bool:
        return self.impl == "fast" and min(n for _, n in mb.groups) >= self.mixed_dense_min_group

    def _group_views(self, mb: MixedGraphBatch):
        """(arch, node [B, N, 1], edge [B, E, K], node slice, edge slice) per architecture group."""
        n0 = e0 = 0
        for arch, B in mb.groups:
            s = graph_structure(arch)
            n1, e1 = n0 + B * s.num_nodes, e0 + B * s.num_edges
            yield (arch, mb.node[n0:n1].view(B, s.num_nodes, -1), mb.edge[e0:e1].view(B, s.num_edges, -1),
                   slice(n0, n1), slice(e0, e1))
            n0, e0 = n1, e1

    def _run_mixed(self, mb: MixedGraphBatch) -> tuple[Tensor, Tensor]:
        """Message passing over networks of different (compatible) architectures: the generic
        per-edge path on one disjoint graph. Returns flat node [N, d'] and edge [E, d''] states."""
        h, e = self._embed(mb.node, mb.edge, mb.node_type, mb.edge_type, mb.hidden)
        g = {"edge_index": mb.edge_index, "hidden": mb.hidden, "input": mb.input}
        return self._run_flat(h, e, g, sparse=self.impl == "fast")


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
            self.readout_mlp = MLP(d + d * (n_in + n_out), d, cfg.d_out, cfg.layer_norm)
        else:
            self.readout_mlp = MLP(d * n_out, d, cfg.d_out, cfg.layer_norm)
            self._outputs_only = True  # the readout reads only the output neurons

    def forward(self, weights, biases=None) -> Tensor:
        mb = self._mixed(weights)
        if mb is not None:
            return self._forward_mixed(mb)
        node, edge, batched, arch = self._graph(weights, biases)
        z = self._encode(node, edge, arch)
        return z if batched else z[0]

    def _encode(self, node: Tensor, edge: Tensor, arch: Architecture) -> Tensor:
        """Message passing + readout for a batch of one architecture -> [B, d_out]."""
        h, _ = self._run(node, edge, arch)
        n_in, n_out = self.arch.layout[0], self.arch.layout[-1]
        if self.config.readout == "last_layer":
            return self.readout_mlp(h[:, -n_out:].flatten(1))
        hid = h[:, n_in:h.shape[1] - n_out]
        if self.impl == "fast":
            pooled = self.readout_canon(hid).sum(1)
        else:
            mask = graph_structure(arch).hidden_mask.to(h.device).view(1, -1, 1)
            pooled = (self.readout_canon.forward_reference(h) * mask).sum(1)
        io = torch.cat([h[:, :n_in], h[:, -n_out:]], 1).flatten(1)
        return self.readout_mlp(torch.cat([pooled, io], -1))

    def _forward_mixed(self, mb: MixedGraphBatch) -> Tensor:
        if self._dense_groups(mb):
            return torch.cat([self._encode(node, edge, arch) for arch, node, edge, _, _ in self._group_views(mb)])
        x, _ = self._run_mixed(mb)
        G, d = mb.num_graphs, x.shape[-1]
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
    learned per-layer scalar (initialised to ``config.out_scale``) and turned back into weights
    with the differentiable inverse graph op. With ``residual=True`` the input weights are added
    (an update ``theta' = theta + f(theta)``).
    """

    def __init__(self, arch: Architecture, config: ScaleGMNConfig | None = None, *, impl: str = "fast",
                 residual: bool = False):
        super().__init__(arch, config, impl=impl, equivariant=True)
        self.residual = residual
        L = arch.num_layers
        self.weight_scale = nn.Parameter(torch.full((L,), float(self.config.out_scale)))
        self.bias_scale = nn.Parameter(torch.full((L,), float(self.config.out_scale)))

    def forward(self, weights, biases=None):
        """Per-layer ``(weights, biases)``; for a mixed batch (a :class:`MixedGraphBatch` or a list
        of WeightGraph), a list with one ``(weights, biases)`` per architecture group."""
        mb = self._mixed(weights)
        if mb is not None:
            return self._forward_mixed(mb)
        node, edge, batched, arch = self._graph(weights, biases)
        h, e = self._run(node, edge, arch)
        ws, bs = self._to_weights(h, e, node, edge, arch)
        if not batched:
            ws, bs = [w[0] for w in ws], [b[0] for b in bs]
        return ws, bs

    def _to_weights(self, h, e, node, edge, arch):
        ws, bs = graph_to_weights(h, e, arch)
        ws = [w * self.weight_scale[l] for l, w in enumerate(ws)]
        bs = [b * self.bias_scale[l] for l, b in enumerate(bs)]
        if self.residual:
            iw, ib = graph_to_weights(node, edge, arch)
            ws = [a + b for a, b in zip(ws, iw)]
            bs = [a + b for a, b in zip(bs, ib)]
        return ws, bs

    def _forward_mixed(self, mb: MixedGraphBatch):
        if self._dense_groups(mb):
            return [self._to_weights(*self._run(node, edge, arch), node, edge, arch)
                    for arch, node, edge, _, _ in self._group_views(mb)]
        x, ef = self._run_mixed(mb)
        return [self._to_weights(x[ns].view(node.shape[0], node.shape[1], -1), ef[es].view(edge.shape[0], edge.shape[1], -1),
                                 node, edge, arch)
                for arch, node, edge, ns, es in self._group_views(mb)]
