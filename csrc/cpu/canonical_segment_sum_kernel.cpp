// CPU kernels of canonical_segment_sum and its backward (contracts in ops/canonical_segment_sum.h, math
// in common/canonical.h).
//
// Forward: work-balanced chunks of segments in parallel (one chunk per thread); each segment
// sums c(h[i]) of its unmasked rows into an at::opmath_type row buffer, in row order, in one
// pass over h (mode 2 reads each row three times while it sits in L1: max |h_c|, ||h / max||,
// then the values -- the max-scaled evaluation of common/canonical.h).
// Backward: work-balanced chunks of rows; each row finds its segment once (binary search at the
// chunk start, then a walk) and writes its gradient row (zero for masked rows and rows outside
// [ptr[0], ptr[G])). Deterministic, no atomics.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <torch/library.h>

#include <vector>

#include "../common/canonical.h"
#include "../ops/canonical_segment_sum.h"
#include "csr_parallel.h"

namespace scalegmn {
namespace {

template <typename index_t>
bool ptr_ok(const index_t* p, int64_t G, int64_t N) {
  if (static_cast<int64_t>(p[0]) < 0 || static_cast<int64_t>(p[G]) > N) return false;
  for (int64_t g = 0; g < G; ++g)
    if (p[g + 1] < p[g]) return false;
  return true;
}

// Calls fn(std::integral_constant<int64_t, MODE>) for the runtime mode.
template <typename F>
void dispatch_mode(int64_t mode, const F& fn) {
  switch (mode) {
    case kCanonAbs:
      fn(std::integral_constant<int64_t, kCanonAbs>{});
      break;
    case kCanonL2:
      fn(std::integral_constant<int64_t, kCanonL2>{});
      break;
    default:
      fn(std::integral_constant<int64_t, kCanonIdentity>{});
      break;
  }
}

// Calls fn(std::integral_constant<bool/int, ...>) for a runtime flag / mode-2 path, so that the
// per-element loops below are branch-free and vectorise (the choice is uniform over a row).
template <typename F>
void dispatch_bool(bool b, const F& fn) {
  if (b)
    fn(std::true_type{});
  else
    fn(std::false_type{});
}

template <typename F>
void dispatch_l2_path(int path, const F& fn) {
  switch (path) {
    case kL2Fast:
      fn(std::integral_constant<int, kL2Fast>{});
      break;
    case kL2Slow:
      fn(std::integral_constant<int, kL2Slow>{});
      break;
    default:
      fn(std::integral_constant<int, kL2Dominated>{});
      break;
  }
}

// The mode-2 state of row hr (common/canonical.h): max pass, then sum_c y_c^2 (and, for the
// backward, sum_c y_c g_c with g = gr) unless the row is eps-dominated.
template <bool GRAD, typename scalar_t, typename acc_t = at::opmath_type<scalar_t>>
CanonRow<acc_t> l2_row(const scalar_t* __restrict__ hr, const scalar_t* __restrict__ gr, int64_t C, acc_t eps) {
  acc_t m = acc_t(0), p = acc_t(0);
#pragma omp simd reduction(max : m) reduction(+ : p)
  for (int64_t c = 0; c < C; ++c) {
    const acc_t hv = static_cast<acc_t>(hr[c]);
    m = l2_max_step(m, hv);
    p = l2_probe_step(p, hv);
  }
  CanonRow<acc_t> row = l2_row_begin(m + p, eps);
  if (row.path == kL2Dominated) return row;
  acc_t ss = acc_t(0), yg = acc_t(0);
  dispatch_bool(row.fast_m, [&](auto FAST_M) {
#pragma omp simd reduction(+ : ss, yg)
    for (int64_t c = 0; c < C; ++c) {
      const acc_t y = l2_y<decltype(FAST_M)::value>(static_cast<acc_t>(hr[c]), row);
      ss += y * y;
      if constexpr (GRAD) yg += y * static_cast<acc_t>(gr[c]);
    }
  });
  if constexpr (GRAD)
    l2_grad_row_finish(row, ss, yg);
  else
    l2_row_finish(row, ss);
  return row;
}

template <int64_t MODE, typename scalar_t, typename index_t>
void canonical_sum_segments(const scalar_t* h, const index_t* ptr, const bool* mask, scalar_t* out, int64_t gb,
                            int64_t ge, int64_t C, double eps_d) {
  using acc_t = at::opmath_type<scalar_t>;
  const acc_t eps = static_cast<acc_t>(eps_d);
  std::vector<acc_t> acc(C);
  for (int64_t g = gb; g < ge; ++g) {
    std::fill(acc.begin(), acc.end(), acc_t(0));
    acc_t* __restrict__ a = acc.data();
    for (int64_t i = ptr[g], end = ptr[g + 1]; i < end; ++i) {
      if (mask != nullptr && !mask[i]) continue;
      const scalar_t* __restrict__ hr = h + i * C;
      if constexpr (MODE == kCanonL2) {
        const CanonRow<acc_t> row = l2_row<false>(hr, hr, C, eps);
        dispatch_l2_path(row.path, [&](auto P) {
#pragma omp simd
          for (int64_t c = 0; c < C; ++c) a[c] += l2_value<decltype(P)::value>(static_cast<acc_t>(hr[c]), row);
        });
      } else {
        const CanonRow<acc_t> row;
#pragma omp simd
        for (int64_t c = 0; c < C; ++c) a[c] += canonical_value<MODE>(static_cast<acc_t>(hr[c]), row);
      }
    }
    scalar_t* o = out + g * C;
    for (int64_t c = 0; c < C; ++c) o[c] = static_cast<scalar_t>(a[c]);
  }
}

at::Tensor canonical_segment_sum_cpu(const at::Tensor& h, const at::Tensor& ptr, const std::optional<at::Tensor>& mask,
                                     int64_t mode, double eps) {
  constexpr const char* op = "canonical_segment_sum";
  const CanonicalSegmentSumArgs a = check_canonical_segment_sum(op, h, ptr, mask, mode, eps);
  auto out = at::empty({a.G, a.C}, h.options());
  AT_DISPATCH_INDEX_TYPES(a.ptr.scalar_type(), "canonical_segment_sum_cpu", [&] {
    const index_t* pp = a.ptr.const_data_ptr<index_t>();
    if (!ptr_ok(pp, a.G, a.N)) raise_bad_ptr(op, a);
    if (a.G == 0 || a.C == 0) return;
    const bool* mp = a.mask.defined() ? a.mask.const_data_ptr<bool>() : nullptr;
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, h.scalar_type(), "canonical_segment_sum_cpu", [&] {
      const scalar_t* hp = a.h.const_data_ptr<scalar_t>();
      scalar_t* op_ = out.data_ptr<scalar_t>();
      dispatch_mode(mode, [&](auto M) {
        parallel_csr_rows(pp, a.G, a.C, [&](int64_t gb, int64_t ge) {
          canonical_sum_segments<decltype(M)::value>(hp, pp, mp, op_, gb, ge, a.C, eps);
        });
      });
    });
  });
  return out;
}

template <int64_t MODE, typename scalar_t, typename index_t>
void canonical_backward_rows(const scalar_t* grad, const scalar_t* h, const index_t* ptr, const bool* mask,
                             scalar_t* out, int64_t rb, int64_t re, int64_t G, int64_t C, double eps_d) {
  using acc_t = at::opmath_type<scalar_t>;
  const acc_t eps = static_cast<acc_t>(eps_d);
  int64_t g = segment_of_position(ptr, G, rb);
  for (int64_t i = rb; i < re; ++i) {
    while (g < G && static_cast<int64_t>(g < 0 ? ptr[0] : ptr[g + 1]) <= i) ++g;
    scalar_t* __restrict__ o = out + i * C;
    if (g < 0 || g >= G || (mask != nullptr && !mask[i])) {
      for (int64_t c = 0; c < C; ++c) o[c] = scalar_t(0);
      continue;
    }
    const scalar_t* __restrict__ hr = h + i * C;
    const scalar_t* __restrict__ gr = grad + g * C;
    if constexpr (MODE == kCanonL2) {
      const CanonRow<acc_t> row = l2_row<true>(hr, gr, C, eps);
      dispatch_l2_path(row.path, [&](auto P) {
#pragma omp simd
        for (int64_t c = 0; c < C; ++c)
          o[c] = static_cast<scalar_t>(
              l2_grad<decltype(P)::value>(static_cast<acc_t>(hr[c]), static_cast<acc_t>(gr[c]), row));
      });
    } else {
      const CanonRow<acc_t> row;
#pragma omp simd
      for (int64_t c = 0; c < C; ++c)
        o[c] = static_cast<scalar_t>(canonical_grad<MODE>(static_cast<acc_t>(hr[c]), static_cast<acc_t>(gr[c]), row));
    }
  }
}

at::Tensor canonical_segment_sum_backward_cpu(const at::Tensor& grad, const at::Tensor& h, const at::Tensor& ptr,
                                              const std::optional<at::Tensor>& mask, int64_t mode, double eps) {
  constexpr const char* op = "canonical_segment_sum_backward";
  const CanonicalSegmentSumArgs a = check_canonical_segment_sum(op, h, ptr, mask, mode, eps);
  TORCH_CHECK(grad.dim() == 2 && grad.size(0) == a.G && grad.size(1) == a.C, op, ": grad must be [G, C] = [", a.G, ", ",
              a.C, "], got shape ", grad.sizes());
  TORCH_CHECK(grad.scalar_type() == h.scalar_type() && grad.device() == h.device(), op, ": grad is ",
              grad.scalar_type(), " on ", grad.device(), ", expected ", h.scalar_type(), " on ", h.device());
  const at::Tensor gc = grad.contiguous();
  auto out = at::empty({a.N, a.C}, h.options());
  AT_DISPATCH_INDEX_TYPES(a.ptr.scalar_type(), "canonical_segment_sum_backward_cpu", [&] {
    const index_t* pp = a.ptr.const_data_ptr<index_t>();
    if (!ptr_ok(pp, a.G, a.N)) raise_bad_ptr(op, a);
    if (a.N == 0 || a.C == 0) return;
    const bool* mp = a.mask.defined() ? a.mask.const_data_ptr<bool>() : nullptr;
    AT_DISPATCH_FLOATING_TYPES_AND2(
        at::kHalf, at::kBFloat16, h.scalar_type(), "canonical_segment_sum_backward_cpu", [&] {
          const scalar_t* hp = a.h.const_data_ptr<scalar_t>();
          const scalar_t* gp = gc.const_data_ptr<scalar_t>();
          scalar_t* op_ = out.data_ptr<scalar_t>();
          dispatch_mode(mode, [&](auto M) {
            const int64_t grain = std::max<int64_t>(1, kMinChunkWork / std::max<int64_t>(a.C, 1));
            at::parallel_for(0, a.N, grain, [&](int64_t rb, int64_t re) {
              canonical_backward_rows<decltype(M)::value>(gp, hp, pp, mp, op_, rb, re, a.G, a.C, eps);
            });
          });
        });
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(scalegmn, CPU, m) {
  m.impl("canonical_segment_sum", &canonical_segment_sum_cpu);
  m.impl("canonical_segment_sum_backward", &canonical_segment_sum_backward_cpu);
}

}  // namespace scalegmn
