// Host-side argument checks of the CSR message ops, shared by the CPU and CUDA kernels:
//
//   segment_gather_mul(x [N_src, C], edge [E, C] or [E, 1], rowptr [N_dst + 1], col [E], perm?,
//                      t_rowptr? [N_src + 1], t_col? [E], t_perm? [E])         -> [N_dst, C]
//       out[i] = sum_{p in [rowptr[i], rowptr[i+1])} x[col[p]] * edge[perm[p] or p]
//   gather_mul_csr(a [N_dst, C], b [N_src, C], rowptr, col, perm?, t_*?)       -> [E, C]
//       out[perm[p] or p] = a[row(p)] * b[col[p]]
//   gather_dot_csr(a [N_dst, C], b [N_src, C], rowptr, col, perm?, t_*?)       -> [E, 1]
//       out[perm[p] or p] = sum_c a[row(p), c] * b[col[p], c]
//
// The t_* tensors (the transposed CSR, by sender) are only used by the autograd formulas; the
// kernels check their shapes so that a wrong transposed CSR fails at the forward call.
// Index VALUES (rowptr monotone with rowptr[0] = 0 and rowptr[N_dst] = E, col in [0, N_src),
// perm in [0, E)) are checked by the kernels themselves while they run (CPU: RuntimeError after
// the loop, bad positions skipped; CUDA: device-side assert). perm must moreover be a
// permutation of [0, E) (every edge id exactly once): gather_mul_csr / gather_dot_csr write
// out[perm[p]], so a repeated id would leave output rows unwritten (and race on the repeated
// ones), and the autograd formulas rely on the transposed CSR describing the same edges. All
// three ops check it (check_perm_is_permutation, O(E)), so they accept the same CSRs.
#pragma once

#include <ATen/ATen.h>

#include <optional>

namespace scalegmn {

struct CsrArgs {
  at::Tensor rowptr, col, perm;  // contiguous; perm undefined when absent
  int64_t rows = 0;              // N_dst
  int64_t nnz = 0;               // E
  int64_t cols = 0;              // N_src (the range of col)
};

// Checks rowptr/col/perm (+ the transposed CSR shapes) against `n_cols` senders and the device
// and index dtype of the CSR; `op` prefixes the error messages.
CsrArgs check_csr(const char* op, const at::Tensor& rowptr, const at::Tensor& col,
                  const std::optional<at::Tensor>& perm, const std::optional<at::Tensor>& t_rowptr,
                  const std::optional<at::Tensor>& t_col, const std::optional<at::Tensor>& t_perm, int64_t n_cols,
                  const at::Device& device);

// Checks a 2-D floating feature tensor `name` ([rows, ?]) of dtype/device like `like`.
void check_features(const char* op, const char* name, const at::Tensor& t, const at::Tensor& like);

// segment_gather_mul: x [N_src, C], edge [E, C] or [E, 1] (bcast) + the CSR.
struct SegmentGatherMulArgs {
  CsrArgs csr;
  at::Tensor x, edge;  // contiguous
  int64_t C = 0;
  bool bcast = false;  // edge is [E, 1] and C != 1: one scalar weight per edge
};
SegmentGatherMulArgs check_segment_gather_mul(const at::Tensor& x, const at::Tensor& edge, const at::Tensor& rowptr,
                                              const at::Tensor& col, const std::optional<at::Tensor>& perm,
                                              const std::optional<at::Tensor>& t_rowptr,
                                              const std::optional<at::Tensor>& t_col,
                                              const std::optional<at::Tensor>& t_perm);

// gather_mul_csr / gather_dot_csr: a [N_dst, C] (by row), b [N_src, C] (by col) + the CSR.
struct PairArgs {
  CsrArgs csr;
  at::Tensor a, b;  // contiguous
  int64_t C = 0;
};
PairArgs check_gather_pair(const char* op, const at::Tensor& a, const at::Tensor& b, const at::Tensor& rowptr,
                           const at::Tensor& col, const std::optional<at::Tensor>& perm,
                           const std::optional<at::Tensor>& t_rowptr, const std::optional<at::Tensor>& t_col,
                           const std::optional<at::Tensor>& t_perm);

// Raises unless csr.perm (when given, values already in range) is a permutation of [0, E).
// CPU: RuntimeError naming the first repeated entry; CUDA: an asynchronous device-side assert.
void check_perm_is_permutation(const char* op, const CsrArgs& csr);

// After a CPU kernel flagged bad indices: raises a RuntimeError naming the first bad entry.
[[noreturn]] void raise_bad_csr(const char* op, const CsrArgs& csr, const char* cols_name);

}  // namespace scalegmn
