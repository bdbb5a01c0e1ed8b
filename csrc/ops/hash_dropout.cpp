#include "hash_dropout.h"

#include "../common/checked_size.h"

namespace scalegmn {

at::Tensor check_hash_dropout(const at::Tensor& x, double p, int64_t offset) {
  TORCH_CHECK(p >= 0.0 && p < 1.0, "hash_dropout: p must be in [0, 1), got ", p);
  TORCH_CHECK(offset >= 0, "hash_dropout: offset must be >= 0, got ", offset);
  TORCH_CHECK(at::isFloatingType(x.scalar_type()), "hash_dropout: x must be a floating tensor, got ", x.scalar_type());
  // The kernels form the element index offset + k in int64 (k < numel); past 2^63 - 1 that
  // overflows, and the reference's int64 index would disagree with any wrapped kernel index.
  checked_add(offset, x.numel(), "hash_dropout", "last flat index offset + x.numel()");
  return x.contiguous();
}

}  // namespace scalegmn
