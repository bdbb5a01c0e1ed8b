// Per-row canonicalisation math of canonical_segment_sum / canonical_segment_sum_backward,
// shared by the CPU and CUDA kernels (compiled by g++ and nvcc; the CPU tests run it).
//
// A row h (one node's C channels) is mapped to c(h) before the segment sum:
//   mode 0 (identity):  c(h) = h
//   mode 1 (abs):       c(h) = |h|                  sign-invariant:   c(-h) = c(h)  (exactly)
//   mode 2 (l2):        c(h) = h / (||h||_2 + eps)  scale-invariant:  c(a h) = c(h) for a > 0
//
// Mode 2 is evaluated max-scaled so that no intermediate under- or overflows for any finite row
// (a plain sum of squares underflows below ~1e-154 (double) / ~1e-19 (float) and overflows
// above ~1e154 / ~1e19, which broke the invariance and gave NaN/inf):
//   m = max_c |h_c|,  y = h / m (a division: 1/m overflows for subnormal m),
//   n = ||y|| in [1, sqrt(C)],  r = eps / m,  d = n + r  (so ||h|| + eps = m d),
//   c = y / d.
// Every factor is then O(1) or a correctly rounded quotient, so with eps = 0 the result is
// invariant to a few ulp for every finite non-zero row (subnormal ones included), independently
// of the magnitude. eps > 0 is where exactness ends, by design: with N = ||h||,
//   c(a h) - c(h) = h eps (a - 1) / ((a N + eps)(N + eps)),
//   ||c(a h) - c(h)|| / ||c(h)|| = eps |a - 1| / (a N + eps) <= (eps / N) |1 - 1/a|,
// i.e. invariance up to ~eps/||h|| (tested in python_tests/test_readout_ops.py).
// Rows that the scaled form cannot represent are "eps-dominated":
//   m == 0 (a zero row):             c = 0 (eps > 0: the value h / eps = 0; eps = 0: the
//                                    convention 0 instead of 0/0);
//   eps / m overflows (eps > 0, m < eps / max_finite, max_finite ~1.8e308 / ~3.4e38):
//                                    ||h|| <= sqrt(C) m vanishes against eps in every bit, so
//                                    c = h / eps (what the exact formula rounds to; evaluating
//                                    r = inf would give the cruder 0).
// Fast path: when D = m d and 1/D are normal numbers (the usual case), y / d is computed as
// h * (1/D) (two roundings more than the quotients, no division per element).
//
// Gradients (g = upstream gradient of the row's contribution):
//   mode 0: g
//   mode 1: sign(h) * g, with sign(0) = 0 (the subgradient 0 at the kink; NaN -> 0 too)
//   mode 2: with N = ||h||, J = I / (N + eps) - h h^T / (N (N + eps)^2) (symmetric), so
//           dh = g / (N + eps) - h (h . g) / (N (N + eps)^2); substituting h = m y, N = m n,
//           N + eps = m d:  dh = [g - y beta] / (m d)  with  beta = (y . g) / (n d).
//           Eps-dominated rows: the second term is below (N / eps) |g| / eps, N / eps ~ 0, so
//           dh = g / eps (and for a zero row exactly the limit h -> 0); with eps = 0 a zero row
//           gets dh = 0 (the derivative does not exist there; 0 is the convention, never inf/NaN).
// A NaN anywhere in a row makes m NaN and the whole row's value/gradient NaN (propagated, not
// hidden). The gradient assumes |g| * C stays finite (y . g is summed unscaled).
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>

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

// max(a, b) that propagates NaN from either side (a plain `b > a ? b : a` would drop a NaN b,
// and a NaN row must not be mistaken for a zero row). Also the warp-reduction operator.
template <typename T>
SGMN_HD_INLINE T sgmn_max_nan(T a, T b) {
  return (b > a || b != b) ? b : a;
}

// Running max_c |h_c| of a row, starting from m = 0.
template <typename T>
SGMN_HD_INLINE T l2_max_step(T m, T h) {
  return sgmn_max_nan(m, sgmn_abs(h));
}

// Per-row state of mode 2 (the other modes ignore it). Filled in two steps: l2_row_begin from
// the row max, then (scaled rows only) l2_row_finish from sum_c (h_c / m)^2.
template <typename acc_t>
struct CanonRow {
  acc_t m = acc_t(0);      // max_c |h_c|
  acc_t eps = acc_t(0);
  acc_t r = acc_t(0);      // eps / m
  acc_t d = acc_t(1);      // n + eps / m, n = ||h / m||
  acc_t inv_D = acc_t(0);  // 1 / (m d) when `recip`
  acc_t beta = acc_t(0);   // backward only: (y . g) / (n d)
  bool scaled = false;     // false: eps-dominated row (m == 0, or eps / m overflowed)
  bool recip = false;      // m d and 1 / (m d) are normal: multiply by inv_D
};

template <typename acc_t>
SGMN_HD_INLINE CanonRow<acc_t> l2_row_begin(acc_t m, acc_t eps) {
  CanonRow<acc_t> row;
  row.m = m;
  row.eps = eps;
  if (m == acc_t(0)) return row;  // zero row (eps / 0 would be inf or, with eps = 0, NaN)
  row.r = eps / m;
  // A NaN m keeps `scaled` so that the NaN reaches every output of the row.
  row.scaled = !(row.r > std::numeric_limits<acc_t>::max());
  return row;
}

// y_c = h_c / m of a scaled row (the terms of n^2 = sum_c y_c^2 and y . g).
template <typename acc_t>
SGMN_HD_INLINE acc_t l2_scaled(acc_t h, const CanonRow<acc_t>& row) {
  return h / row.m;
}

// Completes a scaled row from sumsq = sum_c (h_c / m)^2 in [1, C].
template <typename acc_t>
SGMN_HD_INLINE void l2_row_finish(CanonRow<acc_t>& row, acc_t sumsq) {
  row.d = sgmn_sqrt(sumsq) + row.r;
  const acc_t D = row.m * row.d;  // = ||h|| + eps
  const acc_t lo = std::numeric_limits<acc_t>::min();
  // D in [min, 1/min]: D is not a rounded subnormal and 1/D is neither subnormal nor inf.
  row.recip = D >= lo && D <= acc_t(1) / lo;
  row.inv_D = row.recip ? acc_t(1) / D : acc_t(0);
}

// Backward: as l2_row_finish, plus beta from yg = sum_c (h_c / m) g_c.
template <typename acc_t>
SGMN_HD_INLINE void l2_grad_row_finish(CanonRow<acc_t>& row, acc_t sumsq, acc_t yg) {
  l2_row_finish(row, sumsq);
  // yg / n / d rather than yg / (n d): n d may overflow when d ~ eps / m is huge.
  row.beta = yg / sgmn_sqrt(sumsq) / row.d;
}

// c(h) of one element (see the header comment); `row` only used by mode 2.
template <int64_t MODE, typename acc_t>
SGMN_HD_INLINE acc_t canonical_value(acc_t h, const CanonRow<acc_t>& row) {
  if constexpr (MODE == kCanonAbs) {
    return sgmn_abs(h);
  } else if constexpr (MODE == kCanonL2) {
    if (row.scaled) return row.recip ? h * row.inv_D : h / row.m / row.d;
    return row.eps > acc_t(0) ? h / row.eps : acc_t(0);
  } else {
    return h;
  }
}

// Gradient of one element of c(h) (see the header comment); `row` only used by mode 2.
template <int64_t MODE, typename acc_t>
SGMN_HD_INLINE acc_t canonical_grad(acc_t h, acc_t g, const CanonRow<acc_t>& row) {
  if constexpr (MODE == kCanonAbs) {
    return sgmn_sign(h) * g;
  } else if constexpr (MODE == kCanonL2) {
    if (row.scaled) {
      const acc_t t = g - (h / row.m) * row.beta;
      // Divide by d first in the slow path: m d may be a rounded subnormal or overflow.
      return row.recip ? t * row.inv_D : t / row.d / row.m;
    }
    return row.eps > acc_t(0) ? g / row.eps : acc_t(0);
  } else {
    return g;
  }
}

}  // namespace scalegmn
