// Host-side argument checks of the fused edge update (kernel: cpu/edge_update_kernel.cpp):
//
//   edge_update(edge [B, out, in, d_e], dst [B, out, d], src [B, in, d], ln_w? [d], ln_b? [d],
//               w_2 [d_out, d], b_2 [d_out], w_g [d_out, d_e], p, seed, tile_edges)
//       -> [B, out, in, d_out]
//   edge_update_backward(grad [B, out, in, d_out], <the same arguments>) -> one gradient per
//       tensor input (absent LayerNorm parameters get empty tensors)
#pragma once

#include <ATen/ATen.h>

#include <optional>

namespace scalegmn {

// Shapes, dtype/device agreement, LayerNorm parameters both-or-neither, p in [0, 1).
void check_edge_update(const at::Tensor& edge, const at::Tensor& dst, const at::Tensor& src,
                       const std::optional<at::Tensor>& ln_w, const std::optional<at::Tensor>& ln_b,
                       const at::Tensor& w_2, const at::Tensor& b_2, const at::Tensor& w_g, double p);

// The upstream gradient of edge_update_backward: [B, out, in, d_out] with edge's dtype and device.
void check_edge_update_grad(const at::Tensor& grad, const at::Tensor& edge, int64_t d_out);

}  // namespace scalegmn
