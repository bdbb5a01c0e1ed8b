#include "graph.h"

#include "../common/checked_size.h"

namespace scalegmn {

namespace {
// The graph ops move floating data (the kernels dispatch on these four types).
bool is_float_dtype(at::ScalarType t) {
  return t == at::kHalf || t == at::kBFloat16 || t == at::kFloat || t == at::kDouble;
}
}  // namespace

GraphMeta weights_meta(at::TensorList weights, at::TensorList biases, int64_t Kh, int64_t Kw) {
  TORCH_CHECK(!weights.empty(), "weights_to_graph: weights must hold at least one layer");
  TORCH_CHECK(weights.size() == biases.size(), "weights_to_graph: got ", weights.size(), " weight tensors but ",
              biases.size(), " bias tensors");
  TORCH_CHECK(Kh > 0 && Kw > 0, "weights_to_graph: max kernel size must be positive, got ", Kh, "x", Kw);
  constexpr const char* op = "weights_to_graph";
  GraphMeta m;
  m.Kh = Kh;
  m.Kw = Kw;
  m.K = checked_mul(Kh, Kw, op, "edge feature width max_kh * max_kw");
  const auto& w0 = weights[0];
  // checked here, not only in the kernels' dispatch: an empty batch returns before dispatching
  TORCH_CHECK(is_float_dtype(w0.scalar_type()), "weights_to_graph: weights must be float16, bfloat16, float32 or ",
              "float64, got ", w0.scalar_type());
  TORCH_CHECK(w0.dim() == 3 || w0.dim() == 5, "weights_to_graph: weights[0] must be [B, out, in] or ",
              "[B, out, in, kh, kw], got ", w0.sizes());
  m.B = w0.size(0);
  m.N = w0.size(2);
  for (size_t l = 0; l < weights.size(); ++l) {
    const auto& w = weights[l];
    const auto& b = biases[l];
    TORCH_CHECK(w.dim() == 3 || w.dim() == 5, "weights_to_graph: weights[", l,
                "] must be [B, out, in] or [B, out, in, kh, kw], got ", w.sizes());
    TORCH_CHECK(w.scalar_type() == w0.scalar_type() && w.device() == w0.device(), "weights_to_graph: weights[", l,
                "] has dtype/device ", w.scalar_type(), "/", w.device(), ", expected ", w0.scalar_type(), "/",
                w0.device());
    TORCH_CHECK(b.scalar_type() == w0.scalar_type() && b.device() == w0.device(), "weights_to_graph: biases[", l,
                "] has dtype/device ", b.scalar_type(), "/", b.device(), ", expected ", w0.scalar_type(), "/",
                w0.device());
    LayerMeta lm{w.size(1), w.size(2), w.dim() == 5 ? w.size(3) : 1, w.dim() == 5 ? w.size(4) : 1, w.dim() == 5,
                 m.E,       m.N};
    TORCH_CHECK(w.size(0) == m.B, "weights_to_graph: weights[", l, "] has batch ", w.size(0), ", expected ", m.B);
    TORCH_CHECK(l == 0 || lm.in == m.layers.back().out, "weights_to_graph: weights[", l, "] has in=", lm.in,
                " but the previous layer has out=", m.layers.back().out);
    TORCH_CHECK(lm.kh <= Kh && lm.kw <= Kw, "weights_to_graph: weights[", l, "] kernel ", lm.kh, "x", lm.kw,
                " exceeds the max kernel size ", Kh, "x", Kw);
    TORCH_CHECK(b.dim() == 2 && b.size(0) == m.B && b.size(1) == lm.out, "weights_to_graph: biases[", l, "] must be [",
                m.B, ", ", lm.out, "], got ", b.sizes());
    m.layers.push_back(lm);
    m.E = checked_add(m.E, checked_mul(lm.out, lm.in, op, "edges of a layer"), op, "edge count E");
    m.N = checked_add(m.N, lm.out, op, "node count N");
  }
  checked_numel({m.B, m.E, m.K}, op, "edge feature numel B * E * max_kh * max_kw");
  return m;
}

GraphMeta graph_meta(const at::Tensor& node, const at::Tensor& edge, at::IntArrayRef layout, at::IntArrayRef kernel_h,
                     at::IntArrayRef kernel_w, const std::vector<bool>& is_conv, int64_t Kh, int64_t Kw) {
  const size_t L = layout.size() >= 1 ? layout.size() - 1 : 0;
  TORCH_CHECK(L >= 1, "graph_to_weights: layout must list at least two layer widths");
  TORCH_CHECK(kernel_h.size() == L && kernel_w.size() == L && is_conv.size() == L,
              "graph_to_weights: kernel_h, kernel_w and is_conv must have one entry per layer (", L, ")");
  constexpr const char* op = "graph_to_weights";
  GraphMeta m;
  m.Kh = Kh;
  m.Kw = Kw;
  TORCH_CHECK(Kh > 0 && Kw > 0, "graph_to_weights: max kernel size must be positive, got ", Kh, "x", Kw);
  // the product is compared with edge.size(2) below: unchecked, 2^32 * 2^32 would wrap to 0
  m.K = checked_mul(Kh, Kw, op, "edge feature width max_kh * max_kw");
  m.N = layout[0];
  for (size_t l = 0; l < L; ++l) {
    LayerMeta lm{layout[l + 1], layout[l], kernel_h[l], kernel_w[l], is_conv[l], m.E, m.N};
    TORCH_CHECK(lm.out > 0 && lm.in > 0, "graph_to_weights: layout entries must be positive");
    TORCH_CHECK(lm.kh > 0 && lm.kw > 0 && lm.kh <= Kh && lm.kw <= Kw, "graph_to_weights: kernel size of layer ", l,
                " (", lm.kh, "x", lm.kw, ") must be positive and fit the max kernel ", Kh, "x", Kw);
    TORCH_CHECK(lm.is_conv || (lm.kh == 1 && lm.kw == 1), "graph_to_weights: dense layer ", l,
                " must have kernel size 1x1");
    m.layers.push_back(lm);
    m.E = checked_add(m.E, checked_mul(lm.out, lm.in, op, "edges of a layer"), op, "edge count E");
    m.N = checked_add(m.N, lm.out, op, "node count N");
  }
  TORCH_CHECK(node.dim() == 3 && node.size(1) == m.N && node.size(2) == 1,
              "graph_to_weights: node features must be [B, ", m.N, ", 1], got ", node.sizes());
  m.B = node.size(0);
  TORCH_CHECK(edge.dim() == 3 && edge.size(0) == m.B && edge.size(1) == m.E && edge.size(2) == m.K,
              "graph_to_weights: edge features must be [", m.B, ", ", m.E, ", ", m.K, "], got ", edge.sizes());
  TORCH_CHECK(node.scalar_type() == edge.scalar_type() && node.device() == edge.device(),
              "graph_to_weights: node and edge features must share dtype and device");
  TORCH_CHECK(is_float_dtype(node.scalar_type()), "graph_to_weights: node and edge features must be float16, ",
              "bfloat16, float32 or float64, got ", node.scalar_type());
  return m;
}

std::tuple<at::Tensor, at::Tensor> alloc_graph(at::TensorList biases, const GraphMeta& m, double input_value,
                                               const at::TensorOptions& opt, int64_t n_inputs) {
  auto node = at::empty({m.B, m.N, 1}, opt);
  auto edge = at::empty({m.B, m.E, m.K}, opt);
  if (m.B == 0) return {node, edge};
  node.narrow(1, 0, n_inputs).fill_(input_value);
  for (size_t l = 0; l < m.layers.size(); ++l)
    node.narrow(1, m.layers[l].node_offset, m.layers[l].out).select(2, 0).copy_(biases[l]);
  return {node, edge};
}

std::tuple<std::vector<at::Tensor>, std::vector<at::Tensor>> alloc_weights(const at::Tensor& node, const GraphMeta& m) {
  std::vector<at::Tensor> ws, bs;
  for (const auto& l : m.layers) {
    if (l.is_conv)
      ws.push_back(at::empty({m.B, l.out, l.in, l.kh, l.kw}, node.options()));
    else
      ws.push_back(at::empty({m.B, l.out, l.in}, node.options()));
    bs.push_back(node.narrow(1, l.node_offset, l.out).select(2, 0).clone(at::MemoryFormat::Contiguous));
  }
  return {ws, bs};
}

}  // namespace scalegmn
