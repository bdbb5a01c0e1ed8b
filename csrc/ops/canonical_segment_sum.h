// Host-side argument checks of the canonical readout ops, shared by the CPU and CUDA kernels:
//
//   canonical_segment_sum(h [N, C], ptr [G + 1], mask? [N] bool, mode, eps)          -> [G, C]
//       out[g] = sum_{i in [ptr[g], ptr[g+1]), mask[i]} c(h[i])   (c: common/canonical.h)
//   canonical_segment_sum_backward(grad [G, C], h, ptr, mask?, mode, eps)           -> [N, C]
//
// ptr must be non-decreasing with 0 <= ptr[0] and ptr[G] <= N (checked by the kernels: CPU
// raises, CUDA asserts on the device); rows outside [ptr[0], ptr[G]) belong to no segment.
#pragma once

#include <ATen/ATen.h>

#include <optional>

namespace scalegmn {

struct CanonicalSegmentSumArgs {
  at::Tensor h, ptr, mask;  // contiguous; mask undefined when absent
  int64_t N = 0, C = 0, G = 0;
};

CanonicalSegmentSumArgs check_canonical_segment_sum(const char* op, const at::Tensor& h, const at::Tensor& ptr,
                                                    const std::optional<at::Tensor>& mask, int64_t mode, double eps);

// After a CPU kernel flagged a bad ptr: raises a RuntimeError naming the first bad entry.
[[noreturn]] void raise_bad_ptr(const char* op, const CanonicalSegmentSumArgs& a);

}  // namespace scalegmn
