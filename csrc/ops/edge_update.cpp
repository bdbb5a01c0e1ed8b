#include "edge_update.h"

#include <vector>

namespace scalegmn {

void check_edge_update(const at::Tensor& edge, const at::Tensor& dst, const at::Tensor& src,
                       const std::optional<at::Tensor>& ln_w, const std::optional<at::Tensor>& ln_b,
                       const at::Tensor& w_2, const at::Tensor& b_2, const at::Tensor& w_g, double p) {
  TORCH_CHECK(edge.dim() == 4, "edge_update: edge must be [B, out, in, d_e], got ", edge.sizes());
  TORCH_CHECK(at::isFloatingType(edge.scalar_type()), "edge_update: edge must be a floating tensor, got ",
              edge.scalar_type());
  const int64_t B = edge.size(0), O = edge.size(1), I = edge.size(2), de = edge.size(3);
  TORCH_CHECK(dst.dim() == 3 && dst.size(0) == B && dst.size(1) == O, "edge_update: dst must be [B, out, d] = [", B,
              ", ", O, ", d], got ", dst.sizes());
  const int64_t d = dst.size(2);
  TORCH_CHECK(src.dim() == 3 && src.size(0) == B && src.size(1) == I && src.size(2) == d,
              "edge_update: src must be [B, in, d] = [", B, ", ", I, ", ", d, "], got ", src.sizes());
  TORCH_CHECK(w_2.dim() == 2 && w_2.size(1) == d, "edge_update: w_2 must be [d_out, ", d, "], got ", w_2.sizes());
  const int64_t dout = w_2.size(0);
  TORCH_CHECK(b_2.dim() == 1 && b_2.size(0) == dout, "edge_update: b_2 must be [", dout, "], got ", b_2.sizes());
  TORCH_CHECK(w_g.dim() == 2 && w_g.size(0) == dout && w_g.size(1) == de, "edge_update: w_g must be [", dout, ", ", de,
              "], got ", w_g.sizes());
  TORCH_CHECK(ln_w.has_value() == ln_b.has_value(), "edge_update: pass both ln_w and ln_b or neither");
  if (ln_w.has_value())
    TORCH_CHECK(ln_w->dim() == 1 && ln_w->size(0) == d && ln_b->dim() == 1 && ln_b->size(0) == d,
                "edge_update: ln_w and ln_b must be [", d, "], got ", ln_w->sizes(), " and ", ln_b->sizes());
  TORCH_CHECK(p >= 0.0 && p < 1.0, "edge_update: p must be in [0, 1), got ", p);
  std::vector<const at::Tensor*> ts{&dst, &src, &w_2, &b_2, &w_g};
  if (ln_w.has_value()) {
    ts.push_back(&*ln_w);
    ts.push_back(&*ln_b);
  }
  for (const at::Tensor* t : ts)
    TORCH_CHECK(t->scalar_type() == edge.scalar_type() && t->device() == edge.device(),
                "edge_update: all tensors must share edge's dtype and device (", edge.scalar_type(), ", ",
                edge.device(), "), got ", t->scalar_type(), " on ", t->device());
}

void check_edge_update_grad(const at::Tensor& grad, const at::Tensor& edge, int64_t d_out) {
  const int64_t B = edge.size(0), O = edge.size(1), I = edge.size(2);
  TORCH_CHECK(grad.dim() == 4 && grad.size(0) == B && grad.size(1) == O && grad.size(2) == I && grad.size(3) == d_out,
              "edge_update_backward: grad must be [", B, ", ", O, ", ", I, ", ", d_out, "], got ", grad.sizes());
  // a grad of another dtype would be silently promoted in the products of the backward
  TORCH_CHECK(grad.scalar_type() == edge.scalar_type() && grad.device() == edge.device(),
              "edge_update_backward: grad must be ", edge.scalar_type(), " on ", edge.device(), ", got ",
              grad.scalar_type(), " on ", grad.device());
}

}  // namespace scalegmn
