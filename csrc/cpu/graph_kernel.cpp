// CPU kernels of weights_to_graph / graph_to_weights: a parallel loop over rows (b, o) of each
// layer; the kernel -> grid slot map is the shared graph_layout.h math that the CUDA kernels use.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <vector>

#include "../ops/graph_meta.h"

namespace scalegmn {
namespace {

// Rows per parallel task so that each task moves >= ~32K elements (small batches stay serial).
inline int64_t row_grain(int64_t row_elems) { return std::max<int64_t>(1, 32768 / std::max<int64_t>(row_elems, 1)); }

std::tuple<at::Tensor, at::Tensor> weights_to_graph_cpu(at::TensorList weights,
                                                        at::TensorList biases, int64_t max_kh,
                                                        int64_t max_kw, bool dense_centre,
                                                        double input_value) {
  const GraphMeta m = weights_meta(weights, biases, max_kh, max_kw);
  auto [node, edge] = alloc_graph(biases, m, input_value, weights[0].options(), weights[0].size(2));
  if (m.B == 0 || m.E == 0) return {node, edge};
  const int64_t K = m.K;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, edge.scalar_type(), "weights_to_graph_cpu", [&] {
    scalar_t* out = edge.data_ptr<scalar_t>();
    for (size_t l = 0; l < m.layers.size(); ++l) {
      const LayerMeta& lm = m.layers[l];
      const at::Tensor w = weights[l].contiguous();
      const scalar_t* wp = w.const_data_ptr<scalar_t>();
      const KernelPlacement p = placement(lm, m, dense_centre);
      const int64_t kk = lm.kh * lm.kw;
      // kernel index -> grid slot map of this layer (shared math), hoisted out of the edge loop
      std::vector<int64_t> slot_of_k(kk);
      for (int64_t k = 0; k < kk; ++k) slot_of_k[k] = kernel_index_to_slot(k, p);
      const bool fills_grid = (kk == K);  // kernel == grid: the slot map is the identity
      // one task = rows (b, o) of `in` edges each; rows are contiguous in both layouts
      at::parallel_for(0, m.B * lm.out, row_grain(lm.in * K), [&](int64_t begin, int64_t end) {
        for (int64_t row = begin; row < end; ++row) {
          const int64_t b = row / lm.out, o = row % lm.out;
          scalar_t* dst = out + (b * m.E + lm.edge_offset + o * lm.in) * K;
          const scalar_t* src = wp + row * lm.in * kk;
          if (fills_grid) {
            std::copy(src, src + lm.in * K, dst);
            continue;
          }
          std::fill(dst, dst + lm.in * K, scalar_t(0));
          for (int64_t i = 0; i < lm.in; ++i)
            for (int64_t k = 0; k < kk; ++k) dst[i * K + slot_of_k[k]] = src[i * kk + k];
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
      const int64_t kk = lm.kh * lm.kw, K = m.K;
      std::vector<int64_t> slot_of_k(kk);
      for (int64_t k = 0; k < kk; ++k) slot_of_k[k] = kernel_index_to_slot(k, p);
      const bool plain_copy = (kk == K);  // kernel == grid: the slot map is the identity
      at::parallel_for(0, m.B * lm.out, row_grain(lm.in * K), [&](int64_t begin, int64_t end) {
        for (int64_t row = begin; row < end; ++row) {
          const int64_t b = row / lm.out, o = row % lm.out;
          const scalar_t* src = ep + (b * m.E + lm.edge_offset + o * lm.in) * K;
          scalar_t* dst = wp + row * lm.in * kk;
          if (plain_copy) {
            std::copy(src, src + lm.in * K, dst);
            continue;
          }
          for (int64_t i = 0; i < lm.in; ++i)
            for (int64_t k = 0; k < kk; ++k) dst[i * kk + k] = src[i * K + slot_of_k[k]];
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
