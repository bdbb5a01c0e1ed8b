#include "canonical_segment_sum.h"

#include "../common/canonical.h"

namespace scalegmn {

CanonicalSegmentSumArgs check_canonical_segment_sum(const char* op, const at::Tensor& h, const at::Tensor& ptr,
                                                    const std::optional<at::Tensor>& mask, int64_t mode, double eps) {
  TORCH_CHECK(h.dim() == 2, op, ": h must be 2-D [N, C], got shape ", h.sizes());
  TORCH_CHECK(at::isFloatingType(h.scalar_type()), op, ": h must be a floating tensor, got ", h.scalar_type());
  TORCH_CHECK(ptr.dim() == 1 && ptr.numel() >= 1, op, ": ptr must be 1-D [G + 1] with at least one entry, got shape ",
              ptr.sizes());
  TORCH_CHECK(ptr.scalar_type() == at::kLong || ptr.scalar_type() == at::kInt, op, ": ptr must be int64 or int32, got ",
              ptr.scalar_type());
  TORCH_CHECK(ptr.device() == h.device(), op, ": ptr is on ", ptr.device(), ", expected ", h.device());
  TORCH_CHECK(canonical_mode_ok(mode), op, ": mode must be 0 (identity), 1 (abs) or 2 (l2), got ", mode);
  TORCH_CHECK(eps >= 0, op, ": eps must be >= 0, got ", eps);
  CanonicalSegmentSumArgs a;
  a.N = h.size(0);
  a.C = h.size(1);
  a.G = ptr.numel() - 1;
  a.h = h.contiguous();
  a.ptr = ptr.contiguous();
  if (mask.has_value()) {
    TORCH_CHECK(mask->scalar_type() == at::kBool, op, ": mask must be bool, got ", mask->scalar_type());
    TORCH_CHECK(mask->dim() == 1 && mask->numel() == a.N, op, ": mask must be [", a.N,
                "] (one entry per row of h), got shape ", mask->sizes());
    TORCH_CHECK(mask->device() == h.device(), op, ": mask is on ", mask->device(), ", expected ", h.device());
    a.mask = mask->contiguous();
  }
  return a;
}

void raise_bad_ptr(const char* op, const CanonicalSegmentSumArgs& a) {
  const auto p = a.ptr.to(at::kLong);
  TORCH_CHECK(p[0].item<int64_t>() >= 0, op, ": ptr[0] must be >= 0, got ", p[0].item<int64_t>());
  TORCH_CHECK(p[a.G].item<int64_t>() <= a.N, op, ": ptr[-1] = ", p[a.G].item<int64_t>(),
              " exceeds the number of rows of h (", a.N, ")");
  if (a.G > 0) {
    const auto dec = (p.slice(0, 1) < p.slice(0, 0, a.G)).nonzero();
    TORCH_CHECK(dec.numel() == 0, op, ": ptr must be non-decreasing, but ptr[", dec[0].item<int64_t>() + 1, "] < ptr[",
                dec[0].item<int64_t>(), "]");
  }
  TORCH_CHECK(false, op, ": invalid ptr");
}

}  // namespace scalegmn
