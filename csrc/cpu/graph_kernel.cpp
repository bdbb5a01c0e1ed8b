// CPU kernels of weights_to_graph / graph_to_weights: a parallel loop over edges per layer; the
// per-element math is the shared graph_layout.h (also used by the CUDA kernels).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "../ops/graph_meta.h"

namespace scalegmn {
namespace {

constexpr int64_t kGrain = 2048;  // edges per task: small layers stay on one thread

std::tuple<at::Tensor, at::Tensor> weights_to_graph_cpu(at::TensorList weights,
                                                        at::TensorList biases, int64_t max_kh,
                                                        int64_t max_kw, bool dense_centre,
                                                        double input_value) {
  const GraphMeta m = weights_meta(weights, biases, max_kh, max_kw);
  auto [node, edge] = alloc_graph(biases, m, input_value, weights[0].options(), weights[0].size(2));
  if (m.B == 0 || m.E == 0) return {node, edge};
  const int64_t K = m.Kh * m.Kw;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, edge.scalar_type(), "weights_to_graph_cpu", [&] {
    scalar_t* out = edge.data_ptr<scalar_t>();
    for (size_t l = 0; l < m.layers.size(); ++l) {
      const LayerMeta& lm = m.layers[l];
      const at::Tensor w = weights[l].contiguous();
      const scalar_t* wp = w.const_data_ptr<scalar_t>();
      const KernelPlacement p = placement(lm, m, dense_centre);
      const int64_t R = lm.out * lm.in;
      at::parallel_for(0, m.B * R, kGrain, [&](int64_t begin, int64_t end) {
        for (int64_t br = begin; br < end; ++br) {
          const int64_t b = br / R, r = br % R;
          scalar_t* dst = out + (b * m.E + lm.edge_offset + r) * K;
          for (int64_t s = 0; s < K; ++s) dst[s] = edge_value(wp, b, r, s, R, p);
        }
      });
    }
  });
  return {node, edge};
}

std::tuple<std::vector<at::Tensor>, std::vector<at::Tensor>> graph_to_weights_cpu(
    const at::Tensor& node, const at::Tensor& edge, at::IntArrayRef layout,
    at::IntArrayRef kernel_h, at::IntArrayRef kernel_w, c10::List<bool> is_conv, int64_t max_kh,
    int64_t max_kw, bool dense_centre) {
  const std::vector<bool> conv(is_conv.begin(), is_conv.end());
  const GraphMeta m = graph_meta(node, edge, layout, kernel_h, kernel_w, conv, max_kh, max_kw);
  auto [ws, bs] = alloc_weights(node, m);
  if (m.B == 0 || m.E == 0) return {ws, bs};
  const at::Tensor e = edge.contiguous();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, e.scalar_type(), "graph_to_weights_cpu", [&] {
    const scalar_t* ep = e.const_data_ptr<scalar_t>();
    for (size_t l = 0; l < m.layers.size(); ++l) {
      const LayerMeta& lm = m.layers[l];
      scalar_t* wp = ws[l].data_ptr<scalar_t>();
      const KernelPlacement p = placement(lm, m, dense_centre);
      const int64_t R = lm.out * lm.in, kk = lm.kh * lm.kw;
      at::parallel_for(0, m.B * R, kGrain, [&](int64_t begin, int64_t end) {
        for (int64_t br = begin; br < end; ++br) {
          const int64_t b = br / R, r = br % R;
          for (int64_t k = 0; k < kk; ++k)
            wp[br * kk + k] = weight_value(ep, b, r, k, m.E, lm.edge_offset, p);
        }
      });
    }
  });
  return {ws, bs};
}

}  // namespace

TORCH_LIBRARY_IMPL(scalegmn, CPU, m) {
  m.impl("weights_to_graph", &weights_to_graph_cpu);
  m.impl("graph_to_weights", &graph_to_weights_cpu);
}

}  // namespace scalegmn
