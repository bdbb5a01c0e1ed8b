// CPU kernels of the CSR message ops (contracts in ops/segment_gather_mul.h):
//   segment_gather_mul  out[i]    = sum_p x[col[p]] * edge[eid(p)]   (fused, no [E, C] product)
//   gather_mul_csr      out[eid]  = a[row(p)] * b[col[p]]
//   gather_dot_csr      out[eid]  = <a[row(p)], b[col[p]]>
//
// Parallelism: the rows are cut into one chunk per thread with equal work (edges + rows, found
// by binary search on rowptr, common/segment.h), so skewed degree distributions stay balanced.
// Every output element is produced by exactly one thread in a fixed order: the results are
// deterministic (bitwise reproducible run to run, independent of the thread count) and no
// atomics are used. Sums accumulate in at::opmath_type (float for half/bfloat16).
//
// segment_gather_mul walks each output row's positions in order and streams the edge rows
// through the row's accumulators: for C <= kTileBytes / sizeof(acc) they are a register tile
// (16-byte SIMD vectors for float/double), for wider rows an L1-resident row buffer (each edge
// row is then read once, front to back, which the hardware prefetcher handles best; several
// register-tile passes over the same rows measured ~1.6x slower out of cache). On the permuted
// walk (perm given, e.g. the backward w.r.t. x on receiver-major graphs) the edge row
// kPrefetchDistance positions ahead is software-prefetched.
//
// Index values are checked while running (rowptr up front; col/perm per position, bad
// positions skipped), and perm is checked to be a permutation after the loop (one O(E) pass);
// any violation raises a RuntimeError naming the first bad entry.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <torch/library.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <type_traits>
#include <vector>

#include "../common/segment.h"
#include "../ops/segment_gather_mul.h"
#include "csr_parallel.h"

namespace scalegmn {
namespace {

constexpr int64_t kTileBytes = 128;  // register tile of accumulators per output row
template <typename scalar_t>
constexpr int64_t kTileElems = kTileBytes / static_cast<int64_t>(sizeof(at::opmath_type<scalar_t>));
constexpr int64_t kPrefetchDistance = 16;  // positions ahead for software prefetch of edge rows

template <typename index_t>
bool rowptr_ok(const index_t* rp, int64_t rows, int64_t nnz) {
  if (static_cast<int64_t>(rp[0]) != 0 || static_cast<int64_t>(rp[rows]) != nnz) return false;
  for (int64_t i = 0; i < rows; ++i)
    if (rp[i + 1] < rp[i]) return false;
  return true;
}

// ---------------------------------------------------------------- segment_gather_mul ---------

// Walks positions [start, end) of one row, calling f(x row + c0, edge row + c0) (BCAST: a
// pointer to the scalar edge weight) for every valid position, in CSR order. Bad col/perm
// entries are skipped and reported through the return value. With prefetch_bytes > 0 (the
// permuted walk), the edge row kPrefetchDistance positions ahead is prefetched.
template <bool BCAST, typename scalar_t, typename index_t, typename F>
inline bool for_positions(const scalar_t* x, const scalar_t* edge, const index_t* __restrict__ col,
                          const index_t* __restrict__ perm, int64_t start, int64_t end, int64_t C, int64_t c0,
                          int64_t n_src, int64_t nnz, int64_t prefetch_bytes, const F& f) {
  bool ok = true;
  for (int64_t p = start; p < end; ++p) {
    const int64_t j = static_cast<int64_t>(col[p]);
    const int64_t e = csr_edge_id(perm, p);
    if (!index_in_range(j, n_src) || !index_in_range(e, nnz)) {
      ok = false;
      continue;
    }
    if (prefetch_bytes > 0 && p + kPrefetchDistance < end) {
      const int64_t ea = csr_edge_id(perm, p + kPrefetchDistance);
      if (index_in_range(ea, nnz)) {
        const char* line = reinterpret_cast<const char*>(edge + (BCAST ? ea : ea * C + c0));
        for (int64_t b = 0; b < prefetch_bytes; b += 64) __builtin_prefetch(line + b);
      }
    }
    f(x + j * C + c0, BCAST ? edge + e : edge + e * C + c0);
  }
  return ok;
}

// 16-byte SIMD vectors (GCC/Clang vector extensions: SSE2 on x86-64, NEON on arm64) for the
// register tile of float/double accumulators; half/bfloat16 take the scalar path.
template <typename T>
struct Vec16;
template <>
struct Vec16<float> {
  typedef float type __attribute__((vector_size(16)));
};
template <>
struct Vec16<double> {
  typedef double type __attribute__((vector_size(16)));
};
template <typename T>
constexpr bool kHasVec16 = std::is_same_v<T, float> || std::is_same_v<T, double>;

template <typename V, typename T>
inline V load16(const T* p) {
  V v;
  std::memcpy(&v, p, sizeof(V));
  return v;
}

// acc[k] += x[k] * e[k] (BCAST: * e[0]) over NV vectors, fully unrolled (acc stays in registers).
template <int NV, bool BCAST, typename V, typename T>
inline void fma_tile(V* acc, const T* __restrict__ xr, const T* __restrict__ er) {
  constexpr int L = static_cast<int>(sizeof(V) / sizeof(T));
  if constexpr (BCAST) {
    V ev;
    for (int k = 0; k < L; ++k) ev[k] = *er;  // broadcast
#pragma GCC unroll 16
    for (int k = 0; k < NV; ++k) acc[k] += load16<V>(xr + k * L) * ev;
  } else {
#pragma GCC unroll 16
    for (int k = 0; k < NV; ++k) acc[k] += load16<V>(xr + k * L) * load16<V>(er + k * L);
  }
}

// One full channel tile [c0, c0 + T) of an output row, accumulated in NV SIMD registers.
template <int64_t T, bool BCAST, typename scalar_t, typename index_t>
inline bool sgm_tile_vec(const scalar_t* x, const scalar_t* edge, const index_t* col, const index_t* perm,
                         scalar_t* __restrict__ out, int64_t start, int64_t end, int64_t C, int64_t c0, int64_t n_src,
                         int64_t nnz, int64_t prefetch_bytes) {
  using V = typename Vec16<scalar_t>::type;
  constexpr int NV = static_cast<int>(T * sizeof(scalar_t) / sizeof(V));
  V acc[NV];
#pragma GCC unroll 16
  for (int k = 0; k < NV; ++k) acc[k] = V{};
  const bool ok =
      for_positions<BCAST>(x, edge, col, perm, start, end, C, c0, n_src, nnz, prefetch_bytes,
                           [&](const scalar_t* xr, const scalar_t* er) { fma_tile<NV, BCAST>(acc, xr, er); });
#pragma GCC unroll 16
  for (int k = 0; k < NV; ++k) std::memcpy(out + c0 + k * (sizeof(V) / sizeof(scalar_t)), &acc[k], sizeof(V));
  return ok;
}

template <bool BCAST, typename acc_t, typename T>
inline void fma_scalar(acc_t* acc, const T* xr, const T* er, int64_t W) {
  if constexpr (BCAST) {
    const acc_t ev = static_cast<acc_t>(*er);
    for (int64_t c = 0; c < W; ++c) acc[c] += static_cast<acc_t>(xr[c]) * ev;
  } else {
    for (int64_t c = 0; c < W; ++c) acc[c] = mul_acc(acc[c], xr[c], er[c]);
  }
}

template <bool BCAST, typename acc_t, typename T>
inline void fma_scalar_simd(acc_t* __restrict__ acc, const T* __restrict__ xr, const T* __restrict__ er, int64_t W) {
  if constexpr (BCAST) {
    const acc_t ev = static_cast<acc_t>(*er);
#pragma omp simd
    for (int64_t c = 0; c < W; ++c) acc[c] += static_cast<acc_t>(xr[c]) * ev;
  } else {
#pragma omp simd
    for (int64_t c = 0; c < W; ++c) acc[c] = mul_acc(acc[c], xr[c], er[c]);
  }
}

// Channel tile [c0, c0 + W), W <= T, any dtype (accumulates in opmath_type).
template <int64_t T, bool BCAST, typename scalar_t, typename index_t>
inline bool sgm_tile_scalar(const scalar_t* x, const scalar_t* edge, const index_t* col, const index_t* perm,
                            scalar_t* __restrict__ out, int64_t start, int64_t end, int64_t C, int64_t c0, int64_t W,
                            int64_t n_src, int64_t nnz, int64_t prefetch_bytes) {
  using acc_t = at::opmath_type<scalar_t>;
  acc_t acc[T];
  for (int64_t c = 0; c < W; ++c) acc[c] = acc_t(0);
  const bool ok =
      for_positions<BCAST>(x, edge, col, perm, start, end, C, c0, n_src, nnz, prefetch_bytes,
                           [&](const scalar_t* xr, const scalar_t* er) { fma_scalar<BCAST>(acc, xr, er, W); });
  for (int64_t c = 0; c < W; ++c) out[c0 + c] = static_cast<scalar_t>(acc[c]);
  return ok;
}

// Wide rows (C > one register tile): accumulators for the whole output row in an L1-resident
// buffer; each edge row is streamed once, front to back (measured faster than several
// register-tile passes over the same edge rows, which defeat the hardware prefetcher).
template <typename scalar_t, typename index_t, bool BCAST>
bool sgm_rows_wide(const scalar_t* x, const scalar_t* edge, const index_t* rowptr, const index_t* col,
                   const index_t* perm, scalar_t* out, int64_t rb, int64_t re, int64_t C, int64_t n_src, int64_t nnz) {
  using acc_t = at::opmath_type<scalar_t>;
  std::vector<acc_t> buf(C);
  acc_t* __restrict__ acc = buf.data();
  const int64_t prefetch_bytes = perm != nullptr ? (BCAST ? 1 : C) * static_cast<int64_t>(sizeof(scalar_t)) : 0;
  bool ok = true;
  for (int64_t row = rb; row < re; ++row) {
    const int64_t start = rowptr[row], end = rowptr[row + 1];
    for (int64_t c = 0; c < C; ++c) acc[c] = acc_t(0);
    ok &= for_positions<BCAST>(x, edge, col, perm, start, end, C, 0, n_src, nnz, prefetch_bytes,
                               [&](const scalar_t* xr, const scalar_t* er) { fma_scalar_simd<BCAST>(acc, xr, er, C); });
    scalar_t* o = out + row * C;
    for (int64_t c = 0; c < C; ++c) o[c] = static_cast<scalar_t>(acc[c]);
  }
  return ok;
}

// Narrow rows (C <= one register tile of T accumulators): one pass per output row.
template <typename scalar_t, typename index_t, bool BCAST>
bool sgm_rows_narrow(const scalar_t* x, const scalar_t* edge, const index_t* rowptr, const index_t* col,
                     const index_t* perm, scalar_t* out, int64_t rb, int64_t re, int64_t C, int64_t n_src,
                     int64_t nnz) {
  constexpr int64_t T = kTileElems<scalar_t>;
  const int64_t prefetch_bytes = perm != nullptr ? (BCAST ? 1 : C) * static_cast<int64_t>(sizeof(scalar_t)) : 0;
  bool ok = true;
  for (int64_t row = rb; row < re; ++row) {
    const int64_t start = rowptr[row], end = rowptr[row + 1];
    scalar_t* o = out + row * C;
    if constexpr (kHasVec16<scalar_t>) {
      if (C == T) {
        ok &= sgm_tile_vec<T, BCAST>(x, edge, col, perm, o, start, end, C, 0, n_src, nnz, prefetch_bytes);
        continue;
      }
    }
    ok &= sgm_tile_scalar<T, BCAST>(x, edge, col, perm, o, start, end, C, 0, C, n_src, nnz, prefetch_bytes);
  }
  return ok;
}

template <typename scalar_t, typename index_t, bool BCAST>
bool sgm_rows(const scalar_t* x, const scalar_t* edge, const index_t* rowptr, const index_t* col, const index_t* perm,
              scalar_t* out, int64_t rb, int64_t re, int64_t C, int64_t n_src, int64_t nnz) {
  return C <= kTileElems<scalar_t>
             ? sgm_rows_narrow<scalar_t, index_t, BCAST>(x, edge, rowptr, col, perm, out, rb, re, C, n_src, nnz)
             : sgm_rows_wide<scalar_t, index_t, BCAST>(x, edge, rowptr, col, perm, out, rb, re, C, n_src, nnz);
}

at::Tensor segment_gather_mul_cpu(const at::Tensor& x, const at::Tensor& edge, const at::Tensor& rowptr,
                                  const at::Tensor& col, const std::optional<at::Tensor>& perm,
                                  const std::optional<at::Tensor>& t_rowptr, const std::optional<at::Tensor>& t_col,
                                  const std::optional<at::Tensor>& t_perm) {
  const SegmentGatherMulArgs m = check_segment_gather_mul(x, edge, rowptr, col, perm, t_rowptr, t_col, t_perm);
  const CsrArgs& csr = m.csr;
  auto out = at::empty({csr.rows, m.C}, x.options());
  std::atomic<bool> ok{true};
  AT_DISPATCH_INDEX_TYPES(csr.rowptr.scalar_type(), "segment_gather_mul_cpu", [&] {
    const index_t* rp = csr.rowptr.const_data_ptr<index_t>();
    if (!rowptr_ok(rp, csr.rows, csr.nnz)) raise_bad_csr("segment_gather_mul", csr, "x");
    if (csr.rows == 0 || m.C == 0) return;
    const index_t* cl = csr.col.const_data_ptr<index_t>();
    const index_t* pm = csr.perm.defined() ? csr.perm.const_data_ptr<index_t>() : nullptr;
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "segment_gather_mul_cpu", [&] {
      const scalar_t* xp = m.x.const_data_ptr<scalar_t>();
      const scalar_t* ep = m.edge.const_data_ptr<scalar_t>();
      scalar_t* op = out.data_ptr<scalar_t>();
      parallel_csr_rows(rp, csr.rows, m.C, [&](int64_t rb, int64_t re) {
        const bool chunk_ok =
            m.bcast ? sgm_rows<scalar_t, index_t, true>(xp, ep, rp, cl, pm, op, rb, re, m.C, csr.cols, csr.nnz)
                    : sgm_rows<scalar_t, index_t, false>(xp, ep, rp, cl, pm, op, rb, re, m.C, csr.cols, csr.nnz);
        if (!chunk_ok) ok = false;
      });
    });
  });
  if (!ok) raise_bad_csr("segment_gather_mul", csr, "x");
  check_perm_is_permutation("segment_gather_mul", csr);
  return out;
}

// ---------------------------------------------------------------- gather_mul / gather_dot ----

template <bool DOT, typename scalar_t, typename index_t>
bool gather_pair_rows(const scalar_t* ap, const scalar_t* bp, const index_t* rp, const index_t* cl, const index_t* pm,
                      scalar_t* out, int64_t rb, int64_t re, int64_t C, int64_t n_src, int64_t nnz) {
  using acc_t = at::opmath_type<scalar_t>;
  bool ok = true;
  for (int64_t row = rb; row < re; ++row) {
    const scalar_t* __restrict__ ar = ap + row * C;
    for (int64_t p = rp[row], end = rp[row + 1]; p < end; ++p) {
      const int64_t j = static_cast<int64_t>(cl[p]);
      const int64_t e = csr_edge_id(pm, p);
      if (!index_in_range(j, n_src) || !index_in_range(e, nnz)) {
        ok = false;
        continue;
      }
      const scalar_t* __restrict__ br = bp + j * C;
      if constexpr (DOT) {
        acc_t s = acc_t(0);
#pragma omp simd reduction(+ : s)
        for (int64_t c = 0; c < C; ++c) s = mul_acc(s, ar[c], br[c]);
        out[e] = static_cast<scalar_t>(s);
      } else {
        scalar_t* __restrict__ o = out + e * C;
#pragma omp simd
        for (int64_t c = 0; c < C; ++c)
          o[c] = static_cast<scalar_t>(static_cast<acc_t>(ar[c]) * static_cast<acc_t>(br[c]));
      }
    }
  }
  return ok;
}

template <bool DOT>
at::Tensor gather_pair_cpu(const char* op, const at::Tensor& a, const at::Tensor& b, const at::Tensor& rowptr,
                           const at::Tensor& col, const std::optional<at::Tensor>& perm,
                           const std::optional<at::Tensor>& t_rowptr, const std::optional<at::Tensor>& t_col,
                           const std::optional<at::Tensor>& t_perm) {
  const PairArgs m = check_gather_pair(op, a, b, rowptr, col, perm, t_rowptr, t_col, t_perm);
  const CsrArgs& csr = m.csr;
  const int64_t C = m.C;
  auto out = at::empty({csr.nnz, DOT ? int64_t(1) : C}, a.options());
  std::atomic<bool> ok{true};
  AT_DISPATCH_INDEX_TYPES(csr.rowptr.scalar_type(), "gather_pair_cpu", [&] {
    const index_t* rp = csr.rowptr.const_data_ptr<index_t>();
    if (!rowptr_ok(rp, csr.rows, csr.nnz)) raise_bad_csr(op, csr, "b");
    if (csr.nnz == 0 || (!DOT && C == 0)) return;
    const index_t* cl = csr.col.const_data_ptr<index_t>();
    const index_t* pm = csr.perm.defined() ? csr.perm.const_data_ptr<index_t>() : nullptr;
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, a.scalar_type(), "gather_pair_cpu", [&] {
      const scalar_t* ap = m.a.const_data_ptr<scalar_t>();
      const scalar_t* bp = m.b.const_data_ptr<scalar_t>();
      scalar_t* op_ = out.data_ptr<scalar_t>();
      const int64_t n_src = csr.cols, nnz = csr.nnz;
      parallel_csr_rows(rp, csr.rows, C, [&](int64_t rb, int64_t re) {
        const bool chunk_ok = gather_pair_rows<DOT>(ap, bp, rp, cl, pm, op_, rb, re, C, n_src, nnz);
        if (!chunk_ok) ok = false;
      });
    });
  });
  if (!ok) raise_bad_csr(op, csr, "b");
  // in range but repeated edge ids would leave rows of `out` unwritten (uninitialised memory)
  check_perm_is_permutation(op, csr);
  return out;
}

at::Tensor gather_mul_csr_cpu(const at::Tensor& a, const at::Tensor& b, const at::Tensor& rowptr, const at::Tensor& col,
                              const std::optional<at::Tensor>& perm, const std::optional<at::Tensor>& t_rowptr,
                              const std::optional<at::Tensor>& t_col, const std::optional<at::Tensor>& t_perm) {
  return gather_pair_cpu<false>("gather_mul_csr", a, b, rowptr, col, perm, t_rowptr, t_col, t_perm);
}

at::Tensor gather_dot_csr_cpu(const at::Tensor& a, const at::Tensor& b, const at::Tensor& rowptr, const at::Tensor& col,
                              const std::optional<at::Tensor>& perm, const std::optional<at::Tensor>& t_rowptr,
                              const std::optional<at::Tensor>& t_col, const std::optional<at::Tensor>& t_perm) {
  return gather_pair_cpu<true>("gather_dot_csr", a, b, rowptr, col, perm, t_rowptr, t_col, t_perm);
}

}  // namespace

TORCH_LIBRARY_IMPL(scalegmn, CPU, m) {
  m.impl("segment_gather_mul", &segment_gather_mul_cpu);
  m.impl("gather_mul_csr", &gather_mul_csr_cpu);
  m.impl("gather_dot_csr", &gather_dot_csr_cpu);
}

}  // namespace scalegmn
