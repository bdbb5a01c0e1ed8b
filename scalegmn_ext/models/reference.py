"""The per-edge reference path of ScaleGMN (``impl="reference"``): the test oracle.

The straightforward per-edge computation of the public implementation: gather node states to
the edges, project per edge, run both branches (hidden vs I/O) on every row and select with a
mask, four GEMMs for the symmetrisation ``rho(x) + rho(-x)``, scatter-add; ``torch.nn.Dropout``
between layers. It shares every parameter with the efficient paths of
:mod:`~scalegmn_ext.models.message_passing` (one ``state_dict``) but none of their code beyond
the blocks' ``forward_reference`` forms, so the tests compare two independent computations. It is
also the benchmark baseline.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..ops import graph_to_weights
from ..weightspace.architecture import Architecture
from ..weightspace.graph import graph_structure
from .disjoint_graph import DisjointGraph
from .message_passing import MessagePassingLayer

__all__ = ["encode_per_edge", "layer_per_edge", "run_per_edge", "states_per_edge", "weights_per_edge"]


def layer_per_edge(layer: MessagePassingLayer, x: Tensor, e: Tensor, graph: DisjointGraph) -> tuple[Tensor, Tensor]:
    """One layer on a flat disjoint graph (node states ``[N, d]``, edge states ``[E, d]``), per edge."""
    src, dst = graph.edge_index
    recv_hidden = graph.hidden[dst].unsqueeze(-1)
    m_in = layer.msg_e(e) * layer.msg_v(x[src])  # projection per edge after the gather
    mu = torch.where(recv_hidden, layer.msg_hidden.forward_reference(m_in), layer.msg_io(m_in))
    parts = [x, torch.zeros_like(x).index_add_(0, dst, mu)]
    if layer.gated:
        send_hidden = graph.hidden[src].unsqueeze(-1)
        gb, ep = layer.bw_gated, layer.bw_e(e)
        mu_b = torch.where(
            send_hidden, gb.forward_reference(ep, x[src], x[dst], False), gb.forward_reference(ep, x[src], x[dst], True)
        )
        parts.append(torch.zeros_like(x).index_add_(0, src, mu_b))
    elif layer.bidir:
        send_hidden = graph.hidden[src].unsqueeze(-1)
        b_in = layer.bw_e(layer.backward_edge(e)) * layer.bw_v(x[dst])
        mu_b = torch.where(send_hidden, layer.bw_hidden.forward_reference(b_in), layer.bw_io(b_in))
        parts.append(torch.zeros_like(x).index_add_(0, src, mu_b))
    inp = torch.cat(parts, -1)
    hid, inn = graph.hidden.unsqueeze(-1), graph.input.unsqueeze(-1)
    new_x = torch.where(
        hid, layer.upd_hidden.forward_reference(inp), torch.where(inn, layer.upd_in(inp), layer.upd_out(inp))
    )
    new_e = e
    if layer.edge_out is not None:

        def canon(idx):
            h = x[idx]
            return torch.where(graph.hidden[idx].unsqueeze(-1), layer.edge_canon.forward_reference(h), h)

        new_e = layer.psi(torch.cat([canon(src), canon(dst)], -1)) * layer.edge_gamma(e)
    if layer.skip is not None:
        new_x = layer.skip(x) + new_x
    return new_x, new_e


def run_per_edge(model, x: Tensor, e: Tensor, graph: DisjointGraph) -> tuple[Tensor, Tensor]:
    """All layers of ``model`` on embedded flat states, dropout (``torch.nn.Dropout``) between them."""
    for i, layer in enumerate(model.layers):
        x, e = layer_per_edge(layer, x, e, graph)
        if i < len(model.layers) - 1:
            x, e = model.dropout(x), model.dropout(e)
    return x, e


def states_per_edge(model, node: Tensor, edge: Tensor, arch: Architecture) -> tuple[Tensor, Tensor]:
    """Embedding + message passing for a batch of one architecture (graph features ``[B, N, 1]``,
    ``[B, E, K]``) -> node states ``[B, N, d']`` and edge states ``[B, E, d'']``."""
    s = graph_structure(arch)
    h, e = model._embed(node, edge, s=s)
    B = h.shape[0]
    # explicit widths: with B = 0 a -1 could not be inferred
    x, ef = run_per_edge(
        model,
        h.reshape(B * s.num_nodes, h.shape[-1]),
        e.reshape(B * s.num_edges, e.shape[-1]),
        DisjointGraph.of_batch(arch, B, h.device),
    )
    return x.reshape(B, s.num_nodes, x.shape[-1]), ef.reshape(B, s.num_edges, ef.shape[-1])


def encode_per_edge(model, node: Tensor, edge: Tensor, arch: Architecture) -> Tensor:
    """The invariant encoder (:class:`~scalegmn_ext.models.ScaleGMN`) -> ``[B, d_out]``; the
    readout canonicalises every node and masks out the I/O ones."""
    h, _ = states_per_edge(model, node, edge, arch)
    n_in, n_out = model.arch.layout[0], model.arch.layout[-1]
    if model.config.readout == "last_layer":
        return model.readout_mlp(h[:, -n_out:].flatten(1))
    mask = graph_structure(arch).hidden_mask.to(h.device).view(1, -1, 1)
    pooled = (model.readout_canon.forward_reference(h) * mask).sum(1)
    io = torch.cat([h[:, :n_in], h[:, -n_out:]], 1).flatten(1)
    return model.readout_mlp(torch.cat([pooled, io], -1))


def weights_per_edge(model, node: Tensor, edge: Tensor, arch: Architecture) -> tuple[list[Tensor], list[Tensor]]:
    """The equivariant head's raw output (before the per-layer scales), read back with the
    compiled inverse graph op :func:`~scalegmn_ext.ops.graph_to_weights`."""
    h, e = states_per_edge(model, node, edge, arch)
    return graph_to_weights(h, e, arch)
