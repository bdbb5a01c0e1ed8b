#include "dropout_meta.h"

namespace scalegmn {

at::Tensor check_hash_dropout(const at::Tensor& x, double p, int64_t offset) {
  TORCH_CHECK(p >= 0.0 && p < 1.0, "hash_dropout: p must be in [0, 1), got ", p);
  TORCH_CHECK(offset >= 0, "hash_dropout: offset must be >= 0, got ", offset);
  TORCH_CHECK(at::isFloatingType(x.scalar_type()), "hash_dropout: x must be a floating tensor, got ",
              x.scalar_type());
  return x.contiguous();
}

}  // namespace scalegmn
