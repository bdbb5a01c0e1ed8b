// Fused ScaleGMN edge update for one weight layer in the dense-layer layout:
//
//   out[b, o, i] = drop( (W_2 SiLU(LN(dst[b, o] + src[b, i])) + b_2) * (W_g e[b, o, i]) )
//
// dst / src are the per-node halves of the edge MLP's first layer (W_1 [c(h_o) || c(h_i)] + b_1
// = dst_o + src_i, computed once per node by the caller), W_g e the bias-free edge projection
// that carries the edge's scale, drop() the hash dropout of common/dropout_hash.h (p = 0: none)
// applied with the output's flat indices, so it equals hash_dropout(unfused, p, seed, 0).
// Tiles of whole networks; nothing per edge is saved for backward (the backward recomputes the
// tile and regenerates the dropout mask). Argument checks: ops/edge_update.h.
//
// Tile GEMMs and element-wise steps are ATen calls on the tensors' device, so this one
// device-generic kernel also serves CUDA tensors (registered below under WITH_CUDA); there is
// no hand-written CUDA kernel and hence no cuda/edge_update_kernel.cu.
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/library.h>

#include <algorithm>
#include <array>
#include <vector>

#include "../common/tiling.h"
#include "../ops/edge_update.h"

namespace scalegmn {
namespace {

at::Tensor dropout_op(const at::Tensor& x, double p, int64_t seed, int64_t offset) {
  static auto op = c10::Dispatcher::singleton()
                       .findSchemaOrThrow("scalegmn::hash_dropout", "")
                       .typed<at::Tensor(const at::Tensor&, double, int64_t, int64_t)>();
  return op.call(x, p, seed, offset);
}

struct EdgeTile {
  at::Tensor e, a, y, mean, rstd, v, a2, g;  // inputs, pre-LN, post-LN, stats, SiLU, W_2 v + b_2, W_g e
};

EdgeTile forward_tile(const at::Tensor& e_tile, const at::Tensor& dst_t, const at::Tensor& src_t,
                      const std::optional<at::Tensor>& ln_w, const std::optional<at::Tensor>& ln_b,
                      const at::Tensor& w_2, const at::Tensor& b_2, const at::Tensor& w_g) {
  EdgeTile T;
  const int64_t nb = e_tile.size(0), O = e_tile.size(1), I = e_tile.size(2), d = dst_t.size(-1);
  const int64_t n = nb * O * I;
  T.e = e_tile.reshape({n, e_tile.size(-1)});
  T.a = (dst_t.unsqueeze(2) + src_t.unsqueeze(1)).reshape({n, d});
  if (ln_w.has_value()) {
    std::tie(T.y, T.mean, T.rstd) = at::native_layer_norm(T.a, {d}, ln_w, ln_b, 1e-5);
  } else {
    T.y = T.a;
  }
  T.v = at::silu(T.y);
  T.a2 = at::addmm(b_2, T.v, w_2.t());
  T.g = at::matmul(T.e, w_g.t());
  return T;
}

at::Tensor edge_update(const at::Tensor& edge, const at::Tensor& dst, const at::Tensor& src,
                       const std::optional<at::Tensor>& ln_w, const std::optional<at::Tensor>& ln_b,
                       const at::Tensor& w_2, const at::Tensor& b_2, const at::Tensor& w_g, double p, int64_t seed,
                       int64_t tile_edges) {
  check_edge_update(edge, dst, src, ln_w, ln_b, w_2, b_2, w_g, p);
  const int64_t B = edge.size(0), O = edge.size(1), I = edge.size(2), dout = w_2.size(0);
  at::Tensor out = at::empty({B, O, I, dout}, dst.options());
  if (out.numel() == 0) return out;
  at::NoGradGuard no_grad;
  const at::Tensor ec = edge.contiguous(), dc = dst.contiguous(), sc = src.contiguous();
  const int64_t nb = networks_per_tile(O, I, tile_edges);
  for (int64_t b0 = 0; b0 < B; b0 += nb) {
    const int64_t cnt = std::min(nb, B - b0);
    EdgeTile T =
        forward_tile(ec.narrow(0, b0, cnt), dc.narrow(0, b0, cnt), sc.narrow(0, b0, cnt), ln_w, ln_b, w_2, b_2, w_g);
    at::Tensor r = T.a2.mul_(T.g);
    if (p > 0) r = dropout_op(r, p, seed, b0 * O * I * dout);
    out.narrow(0, b0, cnt).copy_(r.view({cnt, O, I, dout}));
  }
  return out;
}

// Gradients w.r.t. (edge, dst, src, ln_w, ln_b, w_2, b_2, w_g); absent LN params get empty tensors.
std::vector<at::Tensor> edge_update_backward(const at::Tensor& grad, const at::Tensor& edge, const at::Tensor& dst,
                                             const at::Tensor& src, const std::optional<at::Tensor>& ln_w,
                                             const std::optional<at::Tensor>& ln_b, const at::Tensor& w_2,
                                             const at::Tensor& b_2, const at::Tensor& w_g, double p, int64_t seed,
                                             int64_t tile_edges) {
  check_edge_update(edge, dst, src, ln_w, ln_b, w_2, b_2, w_g, p);
  const int64_t B = edge.size(0), O = edge.size(1), I = edge.size(2), d = dst.size(2), dout = w_2.size(0);
  check_edge_update_grad(grad, edge, dout);
  at::NoGradGuard no_grad;
  // d_edge: every tile writes its rows (no memset); d_dst / d_src: summed per tile
  at::Tensor d_edge =
      grad.numel() == 0 ? at::zeros(edge.sizes(), edge.options()) : at::empty(edge.sizes(), edge.options());
  at::Tensor d_dst = at::zeros(dst.sizes(), dst.options()), d_src = at::zeros(src.sizes(), src.options());
  at::Tensor d_w2 = at::zeros_like(w_2), d_b2 = at::zeros_like(b_2), d_wg = at::zeros_like(w_g);
  const bool ln = ln_w.has_value();
  at::Tensor d_lnw = ln ? at::zeros_like(*ln_w) : at::empty({0}, dst.options());
  at::Tensor d_lnb = ln ? at::zeros_like(*ln_b) : at::empty({0}, dst.options());
  if (grad.numel() == 0) return {d_edge, d_dst, d_src, d_lnw, d_lnb, d_w2, d_b2, d_wg};
  const at::Tensor ec = edge.contiguous(), dc = dst.contiguous(), sc = src.contiguous(), gc = grad.contiguous();
  const std::array<bool, 3> ln_mask{true, true, true};
  const int64_t nb = networks_per_tile(O, I, tile_edges);
  for (int64_t b0 = 0; b0 < B; b0 += nb) {
    const int64_t cnt = std::min(nb, B - b0), n = cnt * O * I;
    EdgeTile T = forward_tile(ec.narrow(0, b0, cnt), dc.narrow(0, b0, cnt), sc.narrow(0, b0, cnt), ln_w, ln_b, w_2, b_2,
                              w_g);  // recompute
    at::Tensor dr = gc.narrow(0, b0, cnt).reshape({n, dout});
    if (p > 0) dr = dropout_op(dr, p, seed, b0 * O * I * dout);  // the mask is its own adjoint
    const at::Tensor dg = dr * T.a2, da2 = dr * T.g;
    d_wg.addmm_(dg.t(), T.e);
    d_edge.narrow(0, b0, cnt).copy_(at::matmul(dg, w_g).view({cnt, O, I, -1}));
    d_w2.addmm_(da2.t(), T.v);
    d_b2.add_(da2.sum(0));
    at::Tensor da = at::silu_backward(at::matmul(da2, w_2), T.y);
    if (ln) {
      auto [dx, dw, db] = at::native_layer_norm_backward(da, T.a, {d}, T.mean, T.rstd, ln_w, ln_b, ln_mask);
      da = dx;
      d_lnw.add_(dw);
      d_lnb.add_(db);
    }
    const at::Tensor da4 = da.view({cnt, O, I, d});
    d_dst.narrow(0, b0, cnt).add_(da4.sum(2));
    d_src.narrow(0, b0, cnt).add_(da4.sum(1));
  }
  return {d_edge, d_dst, d_src, d_lnw, d_lnb, d_w2, d_b2, d_wg};
}

}  // namespace

TORCH_LIBRARY_IMPL(scalegmn, CPU, m) {
  m.impl("edge_update", &edge_update);
  m.impl("edge_update_backward", &edge_update_backward);
}

#ifdef WITH_CUDA
TORCH_LIBRARY_IMPL(scalegmn, CUDA, m) {
  m.impl("edge_update", &edge_update);
  m.impl("edge_update_backward", &edge_update_backward);
}
#endif

}  // namespace scalegmn
