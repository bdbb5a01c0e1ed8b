#include "scale_eq_message.h"

#include <array>
#include <utility>

namespace scalegmn {

ScaleEqParams make_scale_eq_params(const at::Tensor& w_e, const at::Tensor& w_in, const std::optional<at::Tensor>& b1,
                                   const std::optional<at::Tensor>& ln1_w, const std::optional<at::Tensor>& ln1_b,
                                   const at::Tensor& w_f, const at::Tensor& b_f, const std::optional<at::Tensor>& ln2_w,
                                   const std::optional<at::Tensor>& ln2_b, const at::Tensor& w_2, const at::Tensor& b_2,
                                   int64_t mode, double eps) {
  TORCH_CHECK(mode >= kMsgIdentity && mode <= kMsgSymmetrize, "scale_eq_message: mode must be 0..3, got ", mode);
  ScaleEqParams P{w_e,
                  w_in,
                  b1.value_or(at::Tensor()),
                  ln1_w.value_or(at::Tensor()),
                  ln1_b.value_or(at::Tensor()),
                  w_f,
                  b_f,
                  ln2_w.value_or(at::Tensor()),
                  ln2_b.value_or(at::Tensor()),
                  w_2,
                  b_2,
                  mode,
                  eps};
  TORCH_CHECK(mode != kMsgSymmetrize || P.b1.defined(), "scale_eq_message: mode 3 needs b1");
  return P;
}

void check_scale_eq_message(const at::Tensor& edge, const at::Tensor& hv, const ScaleEqParams& P) {
  TORCH_CHECK(edge.dim() == 4, "scale_eq_message: edge must be [B, out, in, d_e], got ", edge.sizes());
  TORCH_CHECK(hv.dim() == 3 && hv.size(0) == edge.size(0) && hv.size(1) == edge.size(2),
              "scale_eq_message: hv must be [B, in, d] = [", edge.size(0), ", ", edge.size(2), ", d], got ",
              hv.sizes());
  const int64_t d = hv.size(2);
  TORCH_CHECK(P.w_e.dim() == 2 && P.w_e.size(0) == d && P.w_e.size(1) == edge.size(3),
              "scale_eq_message: w_e must be [d, d_e] = [", d, ", ", edge.size(3), "], got ", P.w_e.sizes());
  const int64_t dout = P.d_out();
  const int64_t rows = P.mode == kMsgSymmetrize ? dout + d : dout;
  TORCH_CHECK(P.w_in.dim() == 2 && P.w_in.size(0) == rows && P.w_in.size(1) == d, "scale_eq_message: w_in must be [",
              rows, ", ", d, "], got ", P.w_in.sizes());
  TORCH_CHECK(P.w_f.dim() == 2 && P.w_f.size(1) == d && P.w_2.dim() == 2 && P.w_2.size(1) == P.w_f.size(0),
              "scale_eq_message: w_f [d_h, d] and w_2 [d_out, d_h] do not chain: ", P.w_f.sizes(), ", ", P.w_2.sizes());
  TORCH_CHECK(at::isFloatingType(edge.scalar_type()), "scale_eq_message: edge must be a floating tensor, got ",
              edge.scalar_type());
  const int64_t dh = P.w_f.size(0);
  // Vectors must have exactly their length: a [1] bias would broadcast in the forward's
  // element-wise ops, but its gradient is accumulated into a [1] buffer from [n, len] rows and
  // the backward fails (and the reference would broadcast differently).
  auto check_vec = [](const at::Tensor& t, const char* name, int64_t len) {
    TORCH_CHECK(!t.defined() || (t.dim() == 1 && t.size(0) == len), "scale_eq_message: ", name, " must be [", len,
                "], got ", t.sizes());
  };
  check_vec(P.b_f, "b_f", dh);
  check_vec(P.b_2, "b_2", dout);
  check_vec(P.b1, "b1", d);
  check_vec(P.ln1_w, "ln1_w", d);
  check_vec(P.ln1_b, "ln1_b", d);
  check_vec(P.ln2_w, "ln2_w", dh);
  check_vec(P.ln2_b, "ln2_b", dh);
  // A LayerNorm bias without its weight would be silently ignored (no LayerNorm is applied).
  TORCH_CHECK(!P.ln1_b.defined() || P.ln1_w.defined(), "scale_eq_message: ln1_b given without ln1_w");
  TORCH_CHECK(!P.ln2_b.defined() || P.ln2_w.defined(), "scale_eq_message: ln2_b given without ln2_w");
  const std::array<std::pair<const at::Tensor*, const char*>, 12> ts{{{&hv, "hv"},
                                                                      {&P.w_e, "w_e"},
                                                                      {&P.w_in, "w_in"},
                                                                      {&P.b1, "b1"},
                                                                      {&P.ln1_w, "ln1_w"},
                                                                      {&P.ln1_b, "ln1_b"},
                                                                      {&P.w_f, "w_f"},
                                                                      {&P.b_f, "b_f"},
                                                                      {&P.ln2_w, "ln2_w"},
                                                                      {&P.ln2_b, "ln2_b"},
                                                                      {&P.w_2, "w_2"},
                                                                      {&P.b_2, "b_2"}}};
  for (const auto& [t, name] : ts)
    TORCH_CHECK(!t->defined() || (t->scalar_type() == edge.scalar_type() && t->device() == edge.device()),
                "scale_eq_message: all tensors must share edge's dtype and device (", edge.scalar_type(), ", ",
                edge.device(), "), but ", name, " is ", t->scalar_type(), " on ", t->device());
}

int64_t scale_eq_saved_width(const ScaleEqParams& P, int64_t d) {
  return d + P.w_in.size(0) + P.w_f.size(0) + P.d_out();
}

bool check_scale_eq_message_backward(const at::Tensor& grad, const at::Tensor& edge, const at::Tensor& hv,
                                     const ScaleEqParams& P, const std::optional<at::Tensor>& saved) {
  const int64_t B = edge.size(0), O = edge.size(1), I = edge.size(2), d = hv.size(2), dout = P.d_out();
  const bool have = saved.has_value() && saved->numel() > 0;
  TORCH_CHECK(!have || (saved->dim() == 2 && saved->size(0) == B * O * I &&
                        saved->size(1) == scale_eq_saved_width(P, d) && saved->is_contiguous()),
              "scale_eq_message_backward: saved must be a contiguous [", B * O * I, ", ", scale_eq_saved_width(P, d),
              "] workspace, got ", saved->sizes());
  // the workspace's rows are fed to out= GEMMs and mixed with edge-dtype tensors
  TORCH_CHECK(!have || (saved->scalar_type() == edge.scalar_type() && saved->device() == edge.device()),
              "scale_eq_message_backward: saved must be the forward's ", edge.scalar_type(), " workspace on ",
              edge.device(), ", got ", saved->scalar_type(), " on ", saved->device());
  TORCH_CHECK(grad.dim() == 3 && grad.size(0) == B && grad.size(1) == O && grad.size(2) == dout,
              "scale_eq_message_backward: grad must be [", B, ", ", O, ", ", dout, "], got ", grad.sizes());
  // a grad of another dtype would be silently promoted in the products of the backward
  TORCH_CHECK(grad.scalar_type() == edge.scalar_type() && grad.device() == edge.device(),
              "scale_eq_message_backward: grad must be ", edge.scalar_type(), " on ", edge.device(), ", got ",
              grad.scalar_type(), " on ", grad.device());
  return have;
}

}  // namespace scalegmn
