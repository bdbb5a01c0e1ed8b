// CSR index math shared by the CPU and CUDA kernels of segment_gather_mul / gather_mul_csr /
// gather_dot_csr and canonical_segment_sum (compiled by g++ and nvcc; the CPU tests run it).
//
// A CSR "by receiver" describes E edges: row i (a receiver) owns positions
// p in [rowptr[i], rowptr[i+1]); position p is the edge from sender col[p], and its edge id
// (the row of the edge-feature tensor) is perm[p], or p itself when there is no perm.
#pragma once

#include <cstdint>

#include "macros.h"

namespace scalegmn {

// Edge id of CSR position p (perm == nullptr: the edges are stored in CSR order).
template <typename index_t>
SGMN_HD_INLINE int64_t csr_edge_id(const index_t* perm, int64_t p) {
  return perm != nullptr ? static_cast<int64_t>(perm[p]) : p;
}

// 0 <= i < n, as one unsigned comparison.
SGMN_HD_INLINE bool index_in_range(int64_t i, int64_t n) {
  return static_cast<uint64_t>(i) < static_cast<uint64_t>(n);
}

// Whether row `row` of a CSR with nnz positions is well formed: 0 <= start <= end <= nnz.
SGMN_HD_INLINE bool csr_row_ok(int64_t start, int64_t end, int64_t nnz) {
  return 0 <= start && start <= end && end <= nnz;
}

// The segment (row) that owns position p: the last r in [0, n_rows) with ptr[r] <= p, i.e.
// upper_bound(ptr, ptr + n_rows + 1, p) - ptr - 1. Needs a non-decreasing ptr; returns -1 when
// p < ptr[0] and n_rows (one past the last) when p >= ptr[n_rows]; empty segments are skipped.
template <typename index_t>
SGMN_HD_INLINE int64_t segment_of_position(const index_t* ptr, int64_t n_rows, int64_t p) {
  if (p >= static_cast<int64_t>(ptr[n_rows])) return n_rows;
  int64_t lo = 0, hi = n_rows + 1;  // invariant: ptr[lo - 1] <= p < ptr[hi] (virtual bounds)
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (static_cast<int64_t>(ptr[mid]) <= p)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo - 1;
}

// Work-balanced row split: the first row i in [0, n_rows] with rowptr[i] + i * row_cost >= target
// (rowptr non-decreasing, so the cost prefix is monotone). Used to cut the rows into chunks of
// equal work (edges + rows) for the CPU threads.
template <typename index_t>
SGMN_HD_INLINE int64_t balanced_row_split(const index_t* rowptr, int64_t n_rows, int64_t row_cost, int64_t target) {
  int64_t lo = 0, hi = n_rows;
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (static_cast<int64_t>(rowptr[mid]) + mid * row_cost < target)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

// One multiply-accumulate step of the fused gather-multiply-sum, in the accumulation type
// (float for half/bfloat16, the scalar type otherwise).
template <typename acc_t, typename scalar_t>
SGMN_HD_INLINE acc_t mul_acc(acc_t acc, scalar_t a, scalar_t b) {
  return acc + static_cast<acc_t>(a) * static_cast<acc_t>(b);
}

}  // namespace scalegmn
