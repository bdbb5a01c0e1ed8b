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
// i.e. invariance up to ~eps/||h|| (tested in python_tests/test_canonical_segment_sum.py).
// Rows that the scaled form cannot represent are "eps-dominated":
//   m == 0 (a zero row):             c = 0 (eps > 0: the value h / eps = 0; eps = 0: the
//                                    convention 0 instead of 0/0);
//   eps / m overflows (eps > 0, m < eps / max_finite, max_finite ~1.8e308 / ~3.4e38):
//                                    ||h|| <= sqrt(C) m vanishes against eps in every bit, so
//                                    c = h / eps (what the exact formula rounds to; evaluating
//                                    r = inf would give the cruder 0).
// Fast paths (the usual case; no division per element, a rounding or two more than the
// quotients): y = h * (1/m) when m and 1/m are normal, c = h * (1/D) when D = m d and 1/D are.
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
// A NaN (or inf) anywhere in a row makes m NaN and the whole row's value/gradient NaN
// (propagated, not hidden). The gradient assumes |g| * C stays finite (y . g is summed unscaled).
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>

#include "macros.h"

namespace scalegmn {

enum CanonicalMode : int64_t { kCanonIdentity = 0, kCanonAbs = 1, kCanonL2 = 2 };

SGMN_HD_INLINE bool canonical_mode_ok(int64_t mode) {
  return mode >= 0 && mode <= 2;
}

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

// Row max of |h_c|, in two vectorisable reductions: a plain max (from m = 0; drops NaN) and a
// NaN probe p = sum_c h_c * 0 (NaN iff the row holds a NaN or inf). Callers pass m + p to
// l2_row_begin, so a NaN row is never mistaken for a zero row and its NaN reaches every output.
template <typename T>
SGMN_HD_INLINE T l2_max_step(T m, T h) {
  const T a = sgmn_abs(h);
  return a > m ? a : m;
}

template <typename T>
SGMN_HD_INLINE T l2_probe_step(T p, T h) {
  return p + h * T(0);
}

// How the values / gradients of a mode-2 row are evaluated (uniform over the row).
enum L2Path : int {
  kL2Fast = 0,       // D = m d and 1/D are normal: c = h * (1/D), dh = (g - h k) * (1/D)
  kL2Slow = 1,       // D subnormal or > 1/min: c = (h / m) / d, dh = (g - (h / m) beta) / d / m
  kL2Dominated = 2,  // m == 0 or eps / m overflowed: c = h / eps, dh = g / eps (0 if eps = 0)
};

// Per-row state of mode 2 (the other modes ignore it). Filled in two steps: l2_row_begin from
// the row max, then (non-dominated rows only) l2_row_finish / l2_grad_row_finish from
// n^2 = sum_c y_c^2 (and y . g), y_c = l2_y(h_c).
template <typename acc_t>
struct CanonRow {
  acc_t m = acc_t(0);      // max_c |h_c|
  acc_t inv_m = acc_t(0);  // 1 / m when `fast_m`
  acc_t eps = acc_t(0);
  acc_t r = acc_t(0);      // eps / m
  acc_t d = acc_t(1);      // n + eps / m, n = ||h / m||   (so ||h|| + eps = m d = D)
  acc_t inv_D = acc_t(0);  // 1 / D on the fast path
  acc_t beta = acc_t(0);   // backward, slow path: (y . g) / (n d)
  acc_t k = acc_t(0);      // backward, fast path: (y . g) / (n D) = beta / m
  int path = kL2Dominated;
  bool fast_m = false;  // m and 1/m are normal: y = h * (1/m) (else h / m)
};

template <typename acc_t>
SGMN_HD_INLINE CanonRow<acc_t> l2_row_begin(acc_t m, acc_t eps) {
  CanonRow<acc_t> row;
  row.m = m;
  row.eps = eps;
  if (m == acc_t(0)) return row;  // zero row (eps / 0 would be inf or, with eps = 0, NaN)
  row.r = eps / m;
  if (row.r > std::numeric_limits<acc_t>::max()) return row;  // eps-dominated (NaN m: not)
  const acc_t lo = std::numeric_limits<acc_t>::min();
  row.path = kL2Slow;  // until l2_row_finish knows D
  row.fast_m = m >= lo && m <= acc_t(1) / lo;
  row.inv_m = row.fast_m ? acc_t(1) / m : acc_t(0);
  return row;
}

// y_c = h_c / m (the terms of n^2 and y . g). FAST_M: times 1/m, one rounding more.
template <bool FAST_M, typename acc_t>
SGMN_HD_INLINE acc_t l2_y(acc_t h, const CanonRow<acc_t>& row) {
  if constexpr (FAST_M)
    return h * row.inv_m;
  else
    return h / row.m;
}

template <typename acc_t>
SGMN_HD_INLINE acc_t l2_y(acc_t h, const CanonRow<acc_t>& row) {
  return row.fast_m ? l2_y<true>(h, row) : l2_y<false>(h, row);
}

// Completes a non-dominated row from sumsq = sum_c y_c^2 in [1, C] (to rounding).
template <typename acc_t>
SGMN_HD_INLINE void l2_row_finish(CanonRow<acc_t>& row, acc_t sumsq) {
  row.d = sgmn_sqrt(sumsq) + row.r;
  const acc_t D = row.m * row.d;  // = ||h|| + eps
  const acc_t lo = std::numeric_limits<acc_t>::min();
  // D in [min, 1/min]: D is not a rounded subnormal and 1/D is neither subnormal nor inf.
  const bool fast = D >= lo && D <= acc_t(1) / lo;
  row.path = fast ? kL2Fast : kL2Slow;
  row.inv_D = fast ? acc_t(1) / D : acc_t(0);
}

// Backward: as l2_row_finish, plus beta / k from yg = sum_c y_c g_c.
template <typename acc_t>
SGMN_HD_INLINE void l2_grad_row_finish(CanonRow<acc_t>& row, acc_t sumsq, acc_t yg) {
  l2_row_finish(row, sumsq);
  const acc_t ygn = yg / sgmn_sqrt(sumsq);
  // divide by n and d in turn: n d may overflow when d ~ eps / m is huge
  row.beta = ygn / row.d;
  row.k = ygn * row.inv_D;  // |k| <= |g| sqrt(C) / D: finite unless g / D itself overflows
}

// c(h) of one element of a mode-2 row on a known path (see the header comment).
template <int PATH, typename acc_t>
SGMN_HD_INLINE acc_t l2_value(acc_t h, const CanonRow<acc_t>& row) {
  if constexpr (PATH == kL2Fast)
    return h * row.inv_D;
  else if constexpr (PATH == kL2Slow)
    return h / row.m / row.d;
  else
    return row.eps > acc_t(0) ? h / row.eps : acc_t(0);
}

// dh of one element of a mode-2 row on a known path: (g - y beta) / (m d).
template <int PATH, typename acc_t>
SGMN_HD_INLINE acc_t l2_grad(acc_t h, acc_t g, const CanonRow<acc_t>& row) {
  if constexpr (PATH == kL2Fast) {
    return (g - h * row.k) * row.inv_D;  // h k = y beta
  } else if constexpr (PATH == kL2Slow) {
    // divide by d first: m d may be a rounded subnormal or overflow here
    return (g - (h / row.m) * row.beta) / row.d / row.m;
  } else {
    return row.eps > acc_t(0) ? g / row.eps : acc_t(0);
  }
}

// c(h) of one element (see the header comment); `row` only used by mode 2, whose path is
// chosen per element here (the CPU kernels hoist that choice out of their loops instead).
template <int64_t MODE, typename acc_t>
SGMN_HD_INLINE acc_t canonical_value(acc_t h, const CanonRow<acc_t>& row) {
  if constexpr (MODE == kCanonAbs) {
    return sgmn_abs(h);
  } else if constexpr (MODE == kCanonL2) {
    if (row.path == kL2Fast) return l2_value<kL2Fast>(h, row);
    if (row.path == kL2Slow) return l2_value<kL2Slow>(h, row);
    return l2_value<kL2Dominated>(h, row);
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
    if (row.path == kL2Fast) return l2_grad<kL2Fast>(h, g, row);
    if (row.path == kL2Slow) return l2_grad<kL2Slow>(h, g, row);
    return l2_grad<kL2Dominated>(h, g, row);
  } else {
    return g;
  }
}

}  // namespace scalegmn
