"""CSR index structures for the message ops, in both directions.

A :class:`CSR` describes ``E`` directed edges ``src -> dst`` between ``num_src`` senders and
``num_dst`` receivers twice:

* **by receiver** (what the forward of :func:`~scalegmn_ext.ops.segment_gather_mul` walks):
  receiver ``i`` owns positions ``p in [rowptr[i], rowptr[i+1])``; ``col[p]`` is the sender and
  ``perm[p]`` the edge id (the row of the ``[E, C]`` edge features) of position ``p``.
  ``perm is None`` means the edges are already stored sorted by receiver (``perm[p] = p``), as in
  the package's receiver-major weight graphs.
* **by sender** (the transpose, walked by the backward w.r.t. ``x``): sender ``j`` owns
  ``q in [t_rowptr[j], t_rowptr[j+1])``; ``t_col[q]`` is the receiver and ``t_perm[q]`` the edge
  id (``None``: identity).

Both directions are built once (an O(E log E) stable sort) and reused for every layer and
every step; the ops never sort. All index tensors share one dtype (int64 or int32) and device.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from ..reference.segment_gather_mul import transpose_csr

if TYPE_CHECKING:  # pragma: no cover
    from ..weightspace.graph import GraphStructure

__all__ = ["CSR"]

_INDEX_DTYPES = (torch.int64, torch.int32)


def _check_index(name: str, t, numel: int | None, dtype, device) -> None:
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a Tensor, got {type(t).__name__}")
    if t.dim() != 1:
        raise ValueError(f"{name} must be 1-D, got shape {tuple(t.shape)}")
    if numel is not None and t.numel() != numel:
        raise ValueError(f"{name} must have {numel} entries, got {t.numel()}")
    if t.dtype != dtype:
        raise TypeError(f"{name} must have the index dtype of rowptr ({dtype}), got {t.dtype}")
    if t.device != device:
        raise ValueError(f"{name} is on {t.device}, expected {device} (like rowptr)")


@dataclasses.dataclass(frozen=True)
class CSR:
    """A graph's edges as CSR by receiver (+ perm) and by sender (``t_*``). See the module doc.

    Construct with :meth:`from_edge_index` or :meth:`for_graph`; the plain constructor checks
    shapes and dtypes only (call :meth:`validate` to check index values too).
    """

    rowptr: Tensor  # [num_dst + 1]
    col: Tensor  # [E]: sender of receiver-CSR position p
    perm: Tensor | None  # [E]: edge id of position p (None: identity)
    t_rowptr: Tensor  # [num_src + 1]
    t_col: Tensor  # [E]: receiver of sender-CSR position q
    t_perm: Tensor | None  # [E]: edge id of position q (None: identity)
    num_src: int
    num_dst: int

    def __post_init__(self):
        rp = self.rowptr
        if not isinstance(rp, Tensor):
            raise TypeError(f"rowptr must be a Tensor, got {type(rp).__name__}")
        _check_index("rowptr", rp, self.num_dst + 1, rp.dtype, rp.device)
        if rp.dtype not in _INDEX_DTYPES:
            raise TypeError(f"rowptr must be int64 or int32, got {rp.dtype}")
        _check_index("col", self.col, None, rp.dtype, rp.device)
        E = self.col.numel()
        _check_index("t_rowptr", self.t_rowptr, self.num_src + 1, rp.dtype, rp.device)
        _check_index("t_col", self.t_col, E, rp.dtype, rp.device)
        for name in ("perm", "t_perm"):
            if getattr(self, name) is not None:
                _check_index(name, getattr(self, name), E, rp.dtype, rp.device)

    # ------------------------------------------------------------------ properties -------------
    @property
    def num_edges(self) -> int:
        return self.col.shape[0]

    @property
    def device(self) -> torch.device:
        return self.rowptr.device

    @property
    def index_dtype(self) -> torch.dtype:
        return self.rowptr.dtype

    def args(self) -> tuple[Tensor, Tensor, Tensor | None, Tensor, Tensor, Tensor | None]:
        """``(rowptr, col, perm, t_rowptr, t_col, t_perm)``: the index arguments of the ops."""
        return self.rowptr, self.col, self.perm, self.t_rowptr, self.t_col, self.t_perm

    def transpose(self) -> CSR:
        """The reversed graph (messages flowing ``dst -> src``): swaps the two directions."""
        return CSR(
            self.t_rowptr,
            self.t_col,
            self.t_perm,
            self.rowptr,
            self.col,
            self.perm,
            num_src=self.num_dst,
            num_dst=self.num_src,
        )

    def to(self, device=None, index_dtype: torch.dtype | None = None) -> CSR:
        """A copy on ``device`` and/or with ``index_dtype`` (int64 or int32) index tensors."""
        if index_dtype is not None and index_dtype not in _INDEX_DTYPES:
            raise TypeError(f"index_dtype must be torch.int64 or torch.int32, got {index_dtype}")

        def mv(t):
            return None if t is None else t.to(device=device, dtype=index_dtype or t.dtype)

        return CSR(*(mv(t) for t in self.args()), num_src=self.num_src, num_dst=self.num_dst)

    def validate(self) -> CSR:
        """Checks the index values (reads them: a device sync on CUDA); returns self.

        rowptr/t_rowptr start at 0, are non-decreasing and end at E; col in [0, num_src),
        t_col in [0, num_dst); perm/t_perm are permutations of [0, E); and both directions hold
        the same (sender, receiver, edge id) triples.
        """
        E = self.num_edges
        for name, ptr in (("rowptr", self.rowptr), ("t_rowptr", self.t_rowptr)):
            if ptr[0].item() != 0 or ptr[-1].item() != E:
                raise ValueError(f"{name} must start at 0 and end at E = {E}, got {ptr[0].item()} .. {ptr[-1].item()}")
            if (ptr.diff() < 0).any():
                raise ValueError(f"{name} must be non-decreasing")
        for name, idx, n in (("col", self.col, self.num_src), ("t_col", self.t_col, self.num_dst)):
            if E and (idx.min().item() < 0 or idx.max().item() >= n):
                raise ValueError(
                    f"{name} holds indices outside [0, {n}): min {idx.min().item()}, max {idx.max().item()}"
                )
        for name, p in (("perm", self.perm), ("t_perm", self.t_perm)):
            if p is not None and not torch.equal(torch.sort(p.long()).values, torch.arange(E, device=p.device)):
                raise ValueError(f"{name} must be a permutation of [0, {E})")
        ar = torch.arange(E, device=self.device)
        rows = torch.searchsorted(self.rowptr, ar.to(self.index_dtype), right=True) - 1
        t_rows = torch.searchsorted(self.t_rowptr, ar.to(self.index_dtype), right=True) - 1
        fwd = torch.empty(E, 2, dtype=torch.long, device=self.device)
        bwd = torch.empty_like(fwd)
        eid = self.perm.long() if self.perm is not None else ar
        t_eid = self.t_perm.long() if self.t_perm is not None else ar
        fwd[eid] = torch.stack([self.col.long(), rows], 1)
        bwd[t_eid] = torch.stack([t_rows, self.t_col.long()], 1)
        if not torch.equal(fwd, bwd):
            raise ValueError(
                "the transposed CSR (t_rowptr, t_col, t_perm) describes other edges than (rowptr, col, perm)"
            )
        return self

    # ------------------------------------------------------------------ constructors -----------
    @classmethod
    def from_edge_index(
        cls,
        edge_index: Tensor,
        num_src: int | None = None,
        num_dst: int | None = None,
        *,
        index_dtype: torch.dtype = torch.int64,
    ) -> CSR:
        """Both CSR directions of an edge list ``edge_index [2, E]`` = ``(src, dst)``.

        Edge ``e`` (column ``e`` of ``edge_index``) is row ``e`` of the edge features. When the
        list is already sorted by receiver (``dst`` non-decreasing), ``perm`` is None. The sender
        direction is the transpose of the receiver CSR (within a sender, edges by receiver, then
        by edge id -- the order the backward would rebuild); ``t_perm`` is None when that is the
        edge order itself. ``num_src`` / ``num_dst`` default to ``max + 1`` of the respective
        row (0 for an empty list). Cost: up to two stable sorts.
        """
        if not isinstance(edge_index, Tensor):
            raise TypeError(f"edge_index must be a Tensor [2, E], got {type(edge_index).__name__}")
        if edge_index.dim() != 2 or edge_index.shape[0] != 2:
            raise ValueError(f"edge_index must be [2, E] (src, dst), got shape {tuple(edge_index.shape)}")
        if edge_index.dtype.is_floating_point or edge_index.dtype in (torch.bool, torch.complex64, torch.complex128):
            raise TypeError(f"edge_index must be an integer tensor, got {edge_index.dtype}")
        if index_dtype not in _INDEX_DTYPES:
            raise TypeError(f"index_dtype must be torch.int64 or torch.int32, got {index_dtype}")
        src, dst = edge_index[0].long(), edge_index[1].long()
        E = src.numel()
        if num_src is None:
            num_src = int(src.max().item()) + 1 if E else 0
        if num_dst is None:
            num_dst = int(dst.max().item()) + 1 if E else 0
        for name, idx, n in (("edge_index[0] (src)", src, num_src), ("edge_index[1] (dst)", dst, num_dst)):
            if E and (idx.min().item() < 0 or idx.max().item() >= n):
                raise ValueError(
                    f"{name} holds indices outside [0, {n}): min {idx.min().item()}, max {idx.max().item()}"
                )
        if E and (index_dtype == torch.int32) and max(E, num_src, num_dst) > torch.iinfo(torch.int32).max:
            raise ValueError("graph too large for int32 indices; use index_dtype=torch.int64")
        dev = edge_index.device

        if E == 0 or bool((dst.diff() >= 0).all()):
            perm, sdst, col = None, dst, src
        else:
            sdst, perm = torch.sort(dst, stable=True)
            col = src[perm]
        rowptr = torch.searchsorted(sdst, torch.arange(num_dst + 1, device=dev))
        cast = lambda t: None if t is None else t.to(index_dtype)  # noqa: E731
        rowptr, col, perm = cast(rowptr), cast(col), cast(perm)
        t_rowptr, t_col, t_perm = transpose_csr(rowptr, col, perm, num_src)
        if bool((t_perm == torch.arange(E, device=dev)).all()):
            t_perm = None
        return cls(rowptr, col, perm, t_rowptr, t_col, t_perm, num_src=num_src, num_dst=num_dst)

    @classmethod
    def from_rowptr(cls, rowptr: Tensor, col: Tensor, perm: Tensor | None = None, *, num_src: int) -> CSR:
        """Completes a receiver CSR with its transpose (one stable sort, see
        :func:`scalegmn_ext.reference.segment_gather_mul.transpose_csr`)."""
        t_rowptr, t_col, t_perm = transpose_csr(rowptr, col, perm, num_src)
        return cls(rowptr, col, perm, t_rowptr, t_col, t_perm, num_src=num_src, num_dst=rowptr.numel() - 1)

    @classmethod
    def for_graph(
        cls, structure: GraphStructure, batch_size: int = 1, *, index_dtype: torch.dtype = torch.int64
    ) -> CSR:
        """The CSR of ``batch_size`` disjoint copies of an architecture's graph (node ``b*N + n``,
        edge ``b*E + e``), in the package's layout: edges are receiver-major, so ``perm`` is None
        and the receiver CSR is ``structure.batch(batch_size)``'s; the sender CSR comes from the
        per-network :attr:`GraphStructure.sender_major_perm`, tiled (no sort over the batch)."""
        if batch_size < 0:
            raise ValueError(f"batch_size must be >= 0, got {batch_size}")
        if index_dtype not in _INDEX_DTYPES:
            raise TypeError(f"index_dtype must be torch.int64 or torch.int32, got {index_dtype}")
        N, E = structure.num_nodes, structure.num_edges
        ei, rowptr, _ = structure.batch(batch_size)
        dev = ei.device
        src1, dst1 = structure.edge_index[0], structure.edge_index[1]
        tp1 = structure.sender_major_perm.to(dev)
        t_col1 = dst1[tp1]
        outdeg1 = torch.bincount(src1, minlength=N)
        shift = torch.arange(batch_size, device=dev)
        t_col = (t_col1.view(1, -1) + (shift * N).view(-1, 1)).reshape(-1)
        t_perm = (tp1.view(1, -1) + (shift * E).view(-1, 1)).reshape(-1)
        deg = outdeg1.repeat(batch_size)
        t_rowptr = torch.cat([deg.new_zeros(1), deg.cumsum(0)])
        c = lambda t: t.to(index_dtype)  # noqa: E731
        return cls(
            c(rowptr), c(ei[0]), None, c(t_rowptr), c(t_col), c(t_perm), num_src=batch_size * N, num_dst=batch_size * N
        )
