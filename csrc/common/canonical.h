// Per-row canonicalisation math of canonical_segment_sum / canonical_segment_sum_backward,
// shared by the CPU and CUDA kernels (compiled by g++ and nvcc; the CPU tests run it).
//
// A row h (one node's C channels) is mapped to c(h) before the segment sum:
//   mode 0 (identity):  c(h) = h
//   mode 1 (abs):       c(h) = |h|                  sign-invariant:   c(-h) = c(h)
//   mode 2 (l2):        c(h) = h / (||h||_2 + eps)  scale-invariant:  c(a h) = c(h) for a > 0
//                                                    (exactly so when eps = 0; eps > 0 keeps
//                                                    zero rows finite: c(0) = 0)
// Gradients (g = upstream gradient of the row's contribution):
//   mode 0: g
//   mode 1: sign(h) * g, with sign(0) = 0 (the subgradient 0 at the kink; NaN -> 0 too)
//   mode 2: with n = ||h||_2, J = I / (n + eps) - h h^T / (n (n + eps)^2) (symmetric), so
//           dh = g / (n + eps) - h (h . g) / (n (n + eps)^2);  the second term -> 0 as h -> 0,
//           so a zero row gets dh = g / eps.
#pragma once

#include <cmath>
#include <cstdint>

#include "macros.h"

namespace scalegmn {

enum CanonicalMode : int64_t { kCanonIdentity = 0, kCanonAbs = 1, kCanonL2 = 2 };

SGMN_HD_INLINE bool canonical_mode_ok(int64_t mode) { return mode >= 0 && mode <= 2; }

template <typename T>
SGMN_HD_INLINE T sgmn_sqrt(T v) {
#if defined(__CUDA_ARCH__)
  return ::sqrt(v);
#else
  return std::sqrt(v);
#endif
}

template <typename T>
SGMN_HD_INLINE T sgmn_abs(T v) {
  return v < T(0) ? -v : v;
}

// sign(v) in {-1, 0, 1}; sign(0) = sign(NaN) = 0.
template <typename T>
SGMN_HD_INLINE T sgmn_sign(T v) {
  return static_cast<T>((v > T(0)) - (v < T(0)));
}

// The row factor of mode 2 from the row's sum of squares: 1 / (||h||_2 + eps).
template <typename acc_t>
SGMN_HD_INLINE acc_t l2_row_scale(acc_t sumsq, acc_t eps) {
  return acc_t(1) / (sgmn_sqrt(sumsq) + eps);
}

// c(h) of one element; `scale` is l2_row_scale(...) for mode 2 and unused otherwise.
template <int64_t MODE, typename acc_t>
SGMN_HD_INLINE acc_t canonical_value(acc_t h, acc_t scale) {
  if constexpr (MODE == kCanonAbs) return sgmn_abs(h);
  else if constexpr (MODE == kCanonL2) return h * scale;
  else return h;
}

// Row coefficients of the mode-2 gradient dh = alpha * g - beta * h, from ||h||^2 and h . g.
template <typename acc_t>
SGMN_HD_INLINE void l2_grad_coeffs(acc_t sumsq, acc_t hg, acc_t eps, acc_t& alpha, acc_t& beta) {
  const acc_t n = sgmn_sqrt(sumsq);
  alpha = acc_t(1) / (n + eps);
  beta = n > acc_t(0) ? hg * alpha * alpha / n : acc_t(0);
}

// Gradient of one element of c(h) (see the header comment); alpha/beta only used by mode 2.
template <int64_t MODE, typename acc_t>
SGMN_HD_INLINE acc_t canonical_grad(acc_t h, acc_t g, acc_t alpha, acc_t beta) {
  if constexpr (MODE == kCanonAbs) return sgmn_sign(h) * g;
  else if constexpr (MODE == kCanonL2) return alpha * g - beta * h;
  else return g;
}

}  // namespace scalegmn
