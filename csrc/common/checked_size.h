// Overflow-checked int64 size arithmetic for the host-side argument checks of every op
// (csrc/ops/<op>.cpp).
//
// Sizes reach the ops as user-given integers (max_kh / max_kw, layout entries, offsets) or as
// tensor sizes; their products and sums (grid size Kh * Kw, edges per layer out * in, element
// counts, index ranges) are what the kernels allocate with and index by. A silently wrapped
// product is worse than a wrong one: 2^32 * 2^32 wraps to 0 and passes a shape comparison, and
// (2^32 + 2^16) * 2^32 wraps to a small positive size that allocates a tiny buffer the kernel
// then writes far past. So every such product/sum goes through these helpers and an overflow
// raises a RuntimeError naming the op and the quantity. Host-only (uses c10 exceptions).
#pragma once

#include <c10/util/Exception.h>

#include <cstdint>
#include <initializer_list>

namespace scalegmn {

// a * b, or a RuntimeError "<op>: <what> = a * b overflows int64".
inline int64_t checked_mul(int64_t a, int64_t b, const char* op, const char* what) {
  int64_t r = 0;
  TORCH_CHECK(!__builtin_mul_overflow(a, b, &r), op, ": ", what, " = ", a, " * ", b, " overflows int64");
  return r;
}

// a + b, or a RuntimeError "<op>: <what> = a + b overflows int64".
inline int64_t checked_add(int64_t a, int64_t b, const char* op, const char* what) {
  int64_t r = 0;
  TORCH_CHECK(!__builtin_add_overflow(a, b, &r), op, ": ", what, " = ", a, " + ", b, " overflows int64");
  return r;
}

// Product of non-negative sizes (an element count), overflow-checked.
inline int64_t checked_numel(std::initializer_list<int64_t> sizes, const char* op, const char* what) {
  int64_t n = 1;
  for (const int64_t s : sizes) {
    TORCH_CHECK(s >= 0, op, ": ", what, " has a negative size ", s);
    n = checked_mul(n, s, op, what);
  }
  return n;
}

}  // namespace scalegmn
