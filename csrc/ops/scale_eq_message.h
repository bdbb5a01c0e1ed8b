// Host-side argument checks and shapes of the fused ScaleGMN edge message
// (kernel: cpu/scale_eq_message_kernel.cpp):
//
//   scale_eq_message(edge [B, out, in, d_e], hv [B, in, d], w_e [d, d_e], w_in [rows, d], b1? [d],
//                    ln1_w? [d], ln1_b? [d], w_f [d_h, d], b_f [d_h], ln2_w? [d_h], ln2_b? [d_h],
//                    w_2 [d_out, d_h], b_2 [d_out], mode, eps, tile_edges, save)
//       -> (out [B, out, d_out], workspace [save ? B * out * in : 0, scale_eq_saved_width])
//   scale_eq_message_backward(grad [B, out, d_out], <the same tensors>, mode, eps, tile_edges,
//                             saved?) -> one gradient per tensor input (absent ones: empty)
//
// rows = d_out + d in mode kMsgSymmetrize (w_in stacks Gamma over W_1), else d_out.
#pragma once

#include <ATen/ATen.h>

#include <optional>

namespace scalegmn {

// The canonicalisation c(x) of the message (scalegmn_ext.reference.scale_eq_message.MessageMode).
enum MessageMode : int64_t { kMsgIdentity = 0, kMsgAbs = 1, kMsgL2 = 2, kMsgSymmetrize = 3 };

// The op's weights; absent optional tensors are undefined.
struct ScaleEqParams {
  at::Tensor w_e, w_in, b1, ln1_w, ln1_b, w_f, b_f, ln2_w, ln2_b, w_2, b_2;
  int64_t mode;
  double eps;
  int64_t d_out() const { return w_2.size(0); }
  bool has_ln1() const { return ln1_w.defined(); }
  bool has_ln2() const { return ln2_w.defined(); }
};

// Checks the mode (and that mode kMsgSymmetrize has b1) and bundles the weights.
ScaleEqParams make_scale_eq_params(const at::Tensor& w_e, const at::Tensor& w_in, const std::optional<at::Tensor>& b1,
                                   const std::optional<at::Tensor>& ln1_w, const std::optional<at::Tensor>& ln1_b,
                                   const at::Tensor& w_f, const at::Tensor& b_f, const std::optional<at::Tensor>& ln2_w,
                                   const std::optional<at::Tensor>& ln2_b, const at::Tensor& w_2, const at::Tensor& b_2,
                                   int64_t mode, double eps);

// Shapes of edge, hv and every weight; one dtype and device for all of them.
void check_scale_eq_message(const at::Tensor& edge, const at::Tensor& hv, const ScaleEqParams& P);

// Values per edge in the save-mode workspace: the four GEMM outputs W_e e (d), W_in x (|w_in|),
// W_f u + b_f (d_h) and Inv(x) (d_out).
int64_t scale_eq_saved_width(const ScaleEqParams& P, int64_t d);

// The backward's extra arguments: grad [B, out, d_out] and the optional workspace, both with
// edge's dtype and device. Returns whether a (non-empty) workspace was passed.
bool check_scale_eq_message_backward(const at::Tensor& grad, const at::Tensor& edge, const at::Tensor& hv,
                                     const ScaleEqParams& P, const std::optional<at::Tensor>& saved);

}  // namespace scalegmn
