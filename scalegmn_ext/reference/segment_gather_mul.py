"""Pure-PyTorch references of the CSR message ops (test oracles and fallbacks).

They compute what ``torch.ops.scalegmn.{segment_gather_mul, gather_mul_csr, gather_dot_csr}``
compute, with ordinary (differentiable) tensor ops that materialise the per-edge ``[E, C]``
product -- exactly what the compiled ops avoid. Argument conventions (see
:class:`scalegmn_ext.ops.csr.CSR`): ``rowptr [N_dst + 1]`` / ``col [E]`` / ``perm [E] | None`` is
the CSR by receiver (``perm[p]`` = edge id of position ``p``, a permutation of ``[0, E)``;
None = identity); the transposed
CSR ``t_*`` is accepted for signature compatibility and ignored.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["segment_gather_mul", "gather_mul_csr", "gather_dot_csr", "csr_rows", "transpose_csr", "index_add_message"]


def _rows(rowptr: Tensor, E: int) -> Tensor:
    pos = torch.arange(E, dtype=rowptr.dtype, device=rowptr.device)
    return torch.searchsorted(rowptr, pos, right=True) - 1


def csr_rows(rowptr: Tensor, num_edges: int) -> Tensor:
    """Receiver (row) of every CSR position ``p`` in ``[0, num_edges)``, as int64 ``[E]``.

    ``searchsorted`` (right) on ``rowptr``: position ``p`` belongs to the last row ``i`` with
    ``rowptr[i] <= p``, so empty rows are skipped; no data-dependent output size (traces under
    ``torch.compile``).
    """
    return _rows(rowptr, num_edges)


def _edge_ids(perm: Tensor | None, E: int, device) -> Tensor:
    if perm is None:
        return torch.arange(E, device=device)
    perm = perm.long()
    if E > 0:
        # the compiled ops' contract: every edge id exactly once (a repeated id would leave rows of
        # gather_mul_csr / gather_dot_csr unwritten); _assert_async keeps this traceable
        seen = torch.zeros(E, dtype=torch.bool, device=perm.device).index_fill_(0, perm, True)
        torch._assert_async(seen.all(), "perm must be a permutation of [0, E) (every edge id exactly once)")
    return perm


def transpose_csr(rowptr: Tensor, col: Tensor, perm: Tensor | None, num_src: int) -> tuple[Tensor, Tensor, Tensor]:
    """The same edges as a CSR by sender: ``(t_rowptr [num_src + 1], t_col [E], t_perm [E])``.

    ``t_col[q]`` is the receiver and ``t_perm[q]`` the edge id of transposed position ``q``;
    within a sender, edges keep their receiver-CSR order (stable sort). Cost: one stable sort of
    ``col`` (O(E log E)) plus O(E + num_src) gathers/searches, on the tensors' device. All
    outputs have ``rowptr``'s dtype.
    """
    E = col.shape[0]
    rows = _rows(rowptr, E)
    eid = _edge_ids(perm, E, col.device)
    sorted_col, order = torch.sort(col, stable=True)
    t_col = rows[order].to(rowptr.dtype)
    t_perm = eid[order].to(rowptr.dtype)
    keys = torch.arange(num_src + 1, dtype=col.dtype, device=col.device)
    t_rowptr = torch.searchsorted(sorted_col, keys).to(rowptr.dtype)
    return t_rowptr, t_col, t_perm


def segment_gather_mul(
    x: Tensor,
    edge: Tensor,
    rowptr: Tensor,
    col: Tensor,
    perm: Tensor | None = None,
    t_rowptr: Tensor | None = None,
    t_col: Tensor | None = None,
    t_perm: Tensor | None = None,
) -> Tensor:
    """``out[i] = sum_{p in [rowptr[i], rowptr[i+1])} x[col[p]] * edge[perm[p]]`` -> ``[N_dst, C]``.

    ``edge`` is ``[E, C]`` or ``[E, 1]`` (broadcast over channels).
    """
    E, C = col.shape[0], x.shape[1]
    rows = _rows(rowptr, E)
    e = edge[_edge_ids(perm, E, edge.device)]
    msg = x[col.long()] * e
    return x.new_zeros(rowptr.shape[0] - 1, C).index_add(0, rows, msg.to(x.dtype))


def gather_mul_csr(
    a: Tensor,
    b: Tensor,
    rowptr: Tensor,
    col: Tensor,
    perm: Tensor | None = None,
    t_rowptr: Tensor | None = None,
    t_col: Tensor | None = None,
    t_perm: Tensor | None = None,
) -> Tensor:
    """``out[perm[p]] = a[row(p)] * b[col[p]]`` -> ``[E, C]``."""
    E = col.shape[0]
    prod = a[_rows(rowptr, E)] * b[col.long()]
    return a.new_zeros(E, a.shape[1]).index_copy(0, _edge_ids(perm, E, a.device), prod)


def gather_dot_csr(
    a: Tensor,
    b: Tensor,
    rowptr: Tensor,
    col: Tensor,
    perm: Tensor | None = None,
    t_rowptr: Tensor | None = None,
    t_col: Tensor | None = None,
    t_perm: Tensor | None = None,
) -> Tensor:
    """``out[perm[p]] = <a[row(p)], b[col[p]]>`` -> ``[E, 1]``."""
    E = col.shape[0]
    dot = (a[_rows(rowptr, E)] * b[col.long()]).sum(-1, keepdim=True)
    return a.new_zeros(E, 1).index_copy(0, _edge_ids(perm, E, a.device), dot)


def index_add_message(x: Tensor, edge: Tensor, edge_index: Tensor, num_dst: int) -> Tensor:
    """The usual unfused formulation ``zeros(N_dst, C).index_add_(0, dst, x[src] * edge)`` from a
    ``[2, E]`` ``(src, dst)`` edge list (the benchmark baseline; edge ids = edge-list order)."""
    src, dst = edge_index[0], edge_index[1]
    return x.new_zeros(num_dst, x.shape[1]).index_add_(0, dst, x[src] * edge)
