// Fused ScaleGMN edge message for one weight layer in the dense-layer layout:
//
//   out[b, o] = sum_i  (Gamma x) * Inv(x),   x = (W_e e[b, o, i]) * hv[b, i]
//   Inv(x)    = W_2 SiLU(LN2(W_f c(x) + b_f)) + b_2
//   c(x)      = SiLU(LN1(W_1 x + b_1)) + SiLU(LN1(b_1 - W_1 x))   (mode 3, sign symmetrisation;
//               W_f then holds phi.lin1 @ rho.lin2), |x| (1), x / (||x|| + eps) (2), x (0)
//   Mode 2 is computed max-scaled (m = max|x|, y = x / m, c = y / (||y|| + eps / m), c(0) = 0),
//   as scalegmn_ext/reference/canonical.py does: exactly positive-scale invariant for eps = 0
//   and every finite x (no clamp, no underflow of ||x||^2).
//
// The edges are processed in tiles of whole networks; every per-edge intermediate lives only
// inside its tile, and the backward recomputes the tile instead of saving it (as
// memory-efficient attention does). Optional save mode: the forward also keeps the tiles' GEMM
// outputs (d + |w_in| + d_h + d_out values per edge) and the backward recomputes only the
// element-wise parts -- 5 of the 15 per-edge GEMMs of forward + backward fewer, for memory.
// Argument checks and the workspace shape: ops/scale_eq_message.h.
//
// Tile GEMMs call ATen (BLAS / cuBLAS with tensor cores) and the element-wise steps are ATen
// calls too, so this one device-generic kernel also serves CUDA tensors (registered below under
// WITH_CUDA); there is no hand-written CUDA kernel and hence no cuda/scale_eq_message_kernel.cu.
#include <ATen/ATen.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <array>
#include <utility>
#include <vector>

#include "../common/tiling.h"
#include "../ops/scale_eq_message.h"

namespace scalegmn {
namespace {

// LayerNorm over the last dim with optional affine; returns (y, mean, rstd).
std::tuple<at::Tensor, at::Tensor, at::Tensor> layer_norm(const at::Tensor& x, const at::Tensor& w,
                                                          const at::Tensor& b) {
  return at::native_layer_norm(x, {x.size(-1)}, w, b, 1e-5);
}

// Everything the forward of one tile computes (kept only while the tile is processed).
struct Tile {
  at::Tensor e, ee, x, gz, g;           // inputs, W_e e, x, [Gamma x | W_1 x], Gamma x
  at::Tensor p, q, lp, lq;              // mode 3: pre-LN1 and post-LN1 of both signs
  at::Tensor mp, rp, mq, rq;            // LN1 statistics
  at::Tensor u, t, lt, m2, r2, v;       // canonical features, pre-LN2, post-LN2, stats, SiLU
  at::Tensor l2_m, l2_y, l2_n, l2_den;  // mode 2: row max |x| (1 for zero rows), x / m, ||x / m||, denominator
  at::Tensor inv;                       // Inv(x)
};

// Save mode: the workspace is one flat buffer holding, for all N = B * out * in edges, the four
// GEMM outputs W_e e [N, d], W_in x [N, |w_in|], W_f u + b_f [N, d_h] and Inv(x) [N, d_out] as
// consecutive row-major blocks, so a tile's rows of each are contiguous and GEMMs write into
// them directly.
struct Saved {
  at::Tensor ee, gz, t, inv;  // this tile's rows (views into the workspace)
};

Saved saved_rows(const at::Tensor& ws, int64_t N, int64_t r0, int64_t n, const ScaleEqParams& P, int64_t d) {
  Saved S;
  int64_t off = 0;
  auto block = [&](int64_t w) {
    at::Tensor b = ws.view({-1}).narrow(0, off, N * w).view({N, w}).narrow(0, r0, n);
    off += N * w;
    return b;
  };
  S.ee = block(d);
  S.gz = block(P.w_in.size(0));
  S.t = block(P.w_f.size(0));
  S.inv = block(P.d_out());
  return S;
}

// Forward of one tile. S == nullptr: compute everything. S with fill: compute, writing the GEMM
// outputs into S. S without fill: read the GEMM outputs from S and recompute only the
// element-wise parts (the backward of save mode).
Tile forward_tile(const at::Tensor& e_tile, const at::Tensor& hv_tile, const ScaleEqParams& P, int64_t O, int64_t I,
                  Saved* S = nullptr, bool fill = false) {
  Tile T;
  const int64_t nb = e_tile.size(0), d = hv_tile.size(-1), n = nb * O * I;
  // GEMM step: read from S, compute into S, or compute fresh
  auto mm = [&](at::Tensor* slot, const at::Tensor& a, const at::Tensor& w, const at::Tensor* bias) -> at::Tensor {
    if (slot != nullptr && !fill) return *slot;
    if (slot != nullptr) {
      if (bias != nullptr) return at::addmm_out(*slot, *bias, a, w.t());
      return at::mm_out(*slot, a, w.t());
    }
    return bias != nullptr ? at::addmm(*bias, a, w.t()) : at::matmul(a, w.t());
  };
  T.e = e_tile.reshape({n, e_tile.size(-1)});
  T.ee = mm(S ? &S->ee : nullptr, T.e, P.w_e, nullptr);
  T.x = (T.ee.view({nb, O, I, d}) * hv_tile.unsqueeze(1)).reshape({n, d});
  T.gz = mm(S ? &S->gz : nullptr, T.x, P.w_in, nullptr);
  const int64_t dout = P.d_out();
  T.g = T.gz.narrow(1, 0, dout);
  switch (P.mode) {
    case kMsgSymmetrize: {
      const at::Tensor z = T.gz.narrow(1, dout, d);
      T.p = z + P.b1;
      T.q = P.b1 - z;
      if (P.has_ln1()) {
        std::tie(T.lp, T.mp, T.rp) = layer_norm(T.p, P.ln1_w, P.ln1_b);
        std::tie(T.lq, T.mq, T.rq) = layer_norm(T.q, P.ln1_w, P.ln1_b);
      } else {
        T.lp = T.p;
        T.lq = T.q;
      }
      T.u = at::silu(T.lp) + at::silu(T.lq);
      break;
    }
    case kMsgAbs:
      T.u = T.x.abs();
      break;
    case kMsgL2: {
      // c(x) = x / (||x|| + eps), max-scaled; zero rows: den = eps (eps > 0) or inf, so c = 0
      const at::Tensor m = T.x.abs().amax({1}, true);
      const at::Tensor nz = m > 0;
      T.l2_m = at::where(nz, m, at::ones_like(m));
      T.l2_y = T.x / T.l2_m;
      T.l2_n = T.l2_y.norm(2, {1}, true);
      const at::Tensor den = P.eps > 0 ? T.l2_n + at::full_like(T.l2_m, P.eps) / T.l2_m : T.l2_n;
      T.l2_den = at::where(nz, den, at::full_like(den, P.eps > 0 ? P.eps : INFINITY));
      T.u = T.l2_y / T.l2_den;
      break;
    }
    default:
      T.u = T.x;
  }
  T.t = mm(S ? &S->t : nullptr, T.u, P.w_f, &P.b_f);
  if (P.has_ln2())
    std::tie(T.lt, T.m2, T.r2) = layer_norm(T.t, P.ln2_w, P.ln2_b);
  else
    T.lt = T.t;
  T.v = at::silu(T.lt);
  T.inv = mm(S ? &S->inv : nullptr, T.v, P.w_2, &P.b_2);
  return T;
}

// Returns (out, workspace): with save = true the workspace holds every edge's GEMM outputs
// ([B * out * in, scale_eq_saved_width], laid out in blocks, see Saved) so that the backward skips the GEMM recompute;
// else it is empty.
std::tuple<at::Tensor, at::Tensor> scale_eq_message(const at::Tensor& edge, const at::Tensor& hv, const at::Tensor& w_e,
                                                    const at::Tensor& w_in, const std::optional<at::Tensor>& b1,
                                                    const std::optional<at::Tensor>& ln1_w,
                                                    const std::optional<at::Tensor>& ln1_b, const at::Tensor& w_f,
                                                    const at::Tensor& b_f, const std::optional<at::Tensor>& ln2_w,
                                                    const std::optional<at::Tensor>& ln2_b, const at::Tensor& w_2,
                                                    const at::Tensor& b_2, int64_t mode, double eps, int64_t tile_edges,
                                                    bool save) {
  const ScaleEqParams P =
      make_scale_eq_params(w_e, w_in, b1, ln1_w, ln1_b, w_f, b_f, ln2_w, ln2_b, w_2, b_2, mode, eps);
  check_scale_eq_message(edge, hv, P);
  const int64_t B = edge.size(0), O = edge.size(1), I = edge.size(2), d = hv.size(2);
  at::Tensor out = at::zeros({B, O, P.d_out()}, hv.options());
  const int64_t N = B * O * I;
  at::Tensor ws = at::empty({save ? N : 0, scale_eq_saved_width(P, d)}, hv.options());
  if (B == 0 || O == 0 || I == 0) return {out, ws};
  at::NoGradGuard no_grad;
  const int64_t nb = networks_per_tile(O, I, tile_edges);
  for (int64_t b0 = 0; b0 < B; b0 += nb) {
    const int64_t cnt = std::min(nb, B - b0);
    Saved S = save ? saved_rows(ws, N, b0 * O * I, cnt * O * I, P, d) : Saved{};
    Tile T = forward_tile(edge.narrow(0, b0, cnt), hv.narrow(0, b0, cnt), P, O, I, save ? &S : nullptr, true);
    at::Tensor out_t = out.narrow(0, b0, cnt);
    at::sum_out(out_t, (T.g * T.inv).view({cnt, O, I, -1}), {2});
  }
  return {out, ws};
}

// Gradients w.r.t. (edge, hv, w_e, w_in, b1, ln1_w, ln1_b, w_f, b_f, ln2_w, ln2_b, w_2, b_2);
// undefined optional inputs get empty tensors.
std::vector<at::Tensor> scale_eq_message_backward(
    const at::Tensor& grad, const at::Tensor& edge, const at::Tensor& hv, const at::Tensor& w_e, const at::Tensor& w_in,
    const std::optional<at::Tensor>& b1, const std::optional<at::Tensor>& ln1_w, const std::optional<at::Tensor>& ln1_b,
    const at::Tensor& w_f, const at::Tensor& b_f, const std::optional<at::Tensor>& ln2_w,
    const std::optional<at::Tensor>& ln2_b, const at::Tensor& w_2, const at::Tensor& b_2, int64_t mode, double eps,
    int64_t tile_edges, const std::optional<at::Tensor>& saved) {
  const ScaleEqParams P =
      make_scale_eq_params(w_e, w_in, b1, ln1_w, ln1_b, w_f, b_f, ln2_w, ln2_b, w_2, b_2, mode, eps);
  check_scale_eq_message(edge, hv, P);
  const int64_t B = edge.size(0), O = edge.size(1), I = edge.size(2), d = hv.size(2), dout = P.d_out();
  const bool have = check_scale_eq_message_backward(grad, edge, hv, P, saved);
  at::NoGradGuard no_grad;
  at::Tensor d_edge = at::empty_like(edge, at::MemoryFormat::Contiguous), d_hv = at::zeros_like(hv);
  at::Tensor d_we = at::zeros_like(w_e), d_win = at::zeros_like(w_in), d_wf = at::zeros_like(w_f),
             d_bf = at::zeros_like(b_f), d_w2 = at::zeros_like(w_2), d_b2 = at::zeros_like(b_2);
  at::Tensor d_b1 = P.b1.defined() ? at::zeros_like(P.b1) : at::empty({0}, hv.options());
  at::Tensor d_ln1w = P.has_ln1() ? at::zeros_like(P.ln1_w) : at::empty({0}, hv.options());
  at::Tensor d_ln1b = P.ln1_b.defined() ? at::zeros_like(P.ln1_b) : at::empty({0}, hv.options());
  at::Tensor d_ln2w = P.has_ln2() ? at::zeros_like(P.ln2_w) : at::empty({0}, hv.options());
  at::Tensor d_ln2b = P.ln2_b.defined() ? at::zeros_like(P.ln2_b) : at::empty({0}, hv.options());
  if (B == 0 || O == 0 || I == 0) {
    d_edge.zero_();
    return {d_edge, d_hv, d_we, d_win, d_b1, d_ln1w, d_ln1b, d_wf, d_bf, d_ln2w, d_ln2b, d_w2, d_b2};
  }
  const std::array<bool, 3> ln_mask{true, true, true};
  const int64_t nb = networks_per_tile(O, I, tile_edges);
  for (int64_t b0 = 0; b0 < B; b0 += nb) {
    const int64_t cnt = std::min(nb, B - b0), n = cnt * O * I;
    const at::Tensor hv_t = hv.narrow(0, b0, cnt);
    // recompute (only the element-wise parts when the forward saved the GEMM outputs)
    Saved S = have ? saved_rows(*saved, B * O * I, b0 * O * I, n, P, d) : Saved{};
    Tile T = forward_tile(edge.narrow(0, b0, cnt), hv_t, P, O, I, have ? &S : nullptr, false);
    // d mu = grad broadcast over the `in` axis (not materialised)
    const at::Tensor dmu = grad.narrow(0, b0, cnt).unsqueeze(2);
    const at::Tensor dg = (T.inv.view({cnt, O, I, dout}) * dmu).view({n, dout});
    const at::Tensor dinv = (T.g.reshape({cnt, O, I, dout}) * dmu).view({n, dout});
    d_w2.addmm_(dinv.t(), T.v);
    d_b2.add_(dinv.sum(0));
    const at::Tensor dv = at::matmul(dinv, P.w_2);
    at::Tensor dt = at::silu_backward(dv, T.lt);
    if (P.has_ln2()) {
      auto [dx2, dw2, db2] =
          at::native_layer_norm_backward(dt, T.t, {T.t.size(-1)}, T.m2, T.r2, P.ln2_w, P.ln2_b, ln_mask);
      dt = dx2;
      d_ln2w.add_(dw2);
      if (d_ln2b.numel()) d_ln2b.add_(db2);
    }
    d_wf.addmm_(dt.t(), T.u);
    d_bf.add_(dt.sum(0));
    const at::Tensor du = at::matmul(dt, P.w_f);
    at::Tensor dgz, dx;
    if (P.mode == kMsgSymmetrize) {
      at::Tensor dp = at::silu_backward(du, T.lp), dq = at::silu_backward(du, T.lq);
      if (P.has_ln1()) {
        auto [dxp, dwp, dbp] = at::native_layer_norm_backward(dp, T.p, {d}, T.mp, T.rp, P.ln1_w, P.ln1_b, ln_mask);
        auto [dxq, dwq, dbq] = at::native_layer_norm_backward(dq, T.q, {d}, T.mq, T.rq, P.ln1_w, P.ln1_b, ln_mask);
        dp = dxp;
        dq = dxq;
        d_ln1w.add_(dwp + dwq);
        if (d_ln1b.numel()) d_ln1b.add_(dbp + dbq);
      }
      d_b1.add_((dp + dq).sum(0));
      dgz = at::cat({dg, dp - dq}, 1);  // p = z + b1, q = b1 - z
      dx = at::matmul(dgz, P.w_in);
    } else {
      dgz = dg;
      dx = at::matmul(dgz, P.w_in);
      if (P.mode == kMsgAbs) {
        dx.add_(du * T.x.sign());
      } else if (P.mode == kMsgL2) {
        // J du = [du - y (y . du) / (n den)] / (m den), y = x / m, n = ||y||, den = n + eps / m
        // (zero rows: y = 0, m = 1, den = eps or inf -> du / eps or 0)
        const at::Tensor& y = T.l2_y;
        const at::Tensor n_safe = at::where(T.l2_n > 0, T.l2_n, at::ones_like(T.l2_n));
        const at::Tensor proj = du - y * ((y * du).sum(1, true) / (n_safe * T.l2_den));
        dx.add_(proj / (T.l2_m * T.l2_den));
      } else {
        dx.add_(du);
      }
    }
    d_win.addmm_(dgz.t(), T.x);
    const at::Tensor dx4 = dx.view({cnt, O, I, d});
    const at::Tensor dee = (dx4 * hv_t.unsqueeze(1)).reshape({n, d});
    d_hv.narrow(0, b0, cnt).add_((dx4 * T.ee.view({cnt, O, I, d})).sum(1));
    d_we.addmm_(dee.t(), T.e);
    d_edge.narrow(0, b0, cnt).copy_(at::matmul(dee, P.w_e).view({cnt, O, I, -1}));
  }
  return {d_edge, d_hv, d_we, d_win, d_b1, d_ln1w, d_ln1b, d_wf, d_bf, d_ln2w, d_ln2b, d_w2, d_b2};
}

}  // namespace

TORCH_LIBRARY_IMPL(scalegmn, CPU, m) {
  m.impl("scale_eq_message", &scale_eq_message);
  m.impl("scale_eq_message_backward", &scale_eq_message_backward);
}

#ifdef WITH_CUDA
// Device-generic (tile GEMMs and element-wise parts are ATen calls on the tensors' device).
TORCH_LIBRARY_IMPL(scalegmn, CUDA, m) {
  m.impl("scale_eq_message", &scale_eq_message);
  m.impl("scale_eq_message_backward", &scale_eq_message_backward);
}
#endif

}  // namespace scalegmn
