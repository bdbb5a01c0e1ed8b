// Host-side argument checks of hash_dropout, shared by the CPU and CUDA kernels:
//
//   hash_dropout(x, p, seed, offset) -> x * (keep(offset + k) / (1 - p))   (a product: NaN stays NaN)
//
// with k the row-major flat index of the element in x and keep() from common/dropout_hash.h.
// The op is its own backward (same seed and offset), so it is exactly linear and self-adjoint.
#pragma once

#include <ATen/ATen.h>

namespace scalegmn {

// Validates p in [0, 1), offset >= 0, offset + numel <= 2^63 - 1 (int64 element indices),
// floating dtype; returns x contiguous.
at::Tensor check_hash_dropout(const at::Tensor& x, double p, int64_t offset);

}  // namespace scalegmn
