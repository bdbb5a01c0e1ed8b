// CUDA kernels of weights_to_graph / graph_to_weights: one grid-stride launch per layer over
// the layer's output elements (coalesced writes); per-element math from graph_layout.h, the
// same functions the CPU kernels run.
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "../ops/graph.h"
#include "launch.cuh"

namespace scalegmn {
namespace {

// Both directions loop over the layer's weight elements (coalesced on the weight side) and
// address the edge tensor through the shared edge_element() map.
template <typename scalar_t>
__global__ void weights_to_edges_kernel(const scalar_t* __restrict__ w, scalar_t* __restrict__ edge, int64_t B,
                                        int64_t R, int64_t E, int64_t edge_offset, KernelPlacement p) {
  const int64_t kk = p.kh * p.kw;
  const int64_t n = B * R * kk;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t k = i % kk, br = i / kk;
    edge[edge_element(br / R, br % R, k, E, edge_offset, p)] = w[i];
  }
}

template <typename scalar_t>
__global__ void edges_to_weights_kernel(const scalar_t* __restrict__ edge, scalar_t* __restrict__ w, int64_t B,
                                        int64_t R, int64_t E, int64_t edge_offset, KernelPlacement p) {
  const int64_t kk = p.kh * p.kw;
  const int64_t n = B * R * kk;
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t k = i % kk, br = i / kk;
    w[i] = edge[edge_element(br / R, br % R, k, E, edge_offset, p)];
  }
}

std::tuple<at::Tensor, at::Tensor> weights_to_graph_cuda(at::TensorList weights, at::TensorList biases, int64_t max_kh,
                                                         int64_t max_kw, bool dense_centre, double input_value) {
  const GraphMeta m = weights_meta(weights, biases, max_kh, max_kw);
  const c10::cuda::CUDAGuard guard(weights[0].device());
  auto [node, edge] = alloc_graph(biases, m, input_value, weights[0].options(), weights[0].size(2));
  if (m.B == 0 || m.E == 0) return {node, edge};
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, edge.scalar_type(), "weights_to_graph_cuda", [&] {
    for (size_t l = 0; l < m.layers.size(); ++l) {
      const LayerMeta& lm = m.layers[l];
      const at::Tensor w = weights[l].contiguous();
      const int64_t R = lm.out * lm.in;
      // padding slots of the grid must read as zero
      if (lm.kh * lm.kw < m.K) edge.narrow(1, lm.edge_offset, R).zero_();
      weights_to_edges_kernel<scalar_t><<<grid_for(m.B * R * lm.kh * lm.kw), kThreads, 0, stream>>>(
          w.const_data_ptr<scalar_t>(), edge.data_ptr<scalar_t>(), m.B, R, m.E, lm.edge_offset,
          placement(lm, m, dense_centre));
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  });
  return {node, edge};
}

std::tuple<std::vector<at::Tensor>, std::vector<at::Tensor>> graph_to_weights_cuda(
    const at::Tensor& node, const at::Tensor& edge, at::IntArrayRef layout, at::IntArrayRef kernel_h,
    at::IntArrayRef kernel_w, c10::List<bool> is_conv, int64_t max_kh, int64_t max_kw, bool dense_centre) {
  const std::vector<bool> conv(is_conv.begin(), is_conv.end());
  const GraphMeta m = graph_meta(node, edge, layout, kernel_h, kernel_w, conv, max_kh, max_kw);
  const c10::cuda::CUDAGuard guard(node.device());
  auto [ws, bs] = alloc_weights(node, m);
  if (m.B == 0 || m.E == 0) return {ws, bs};
  const at::Tensor e = edge.contiguous();
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, e.scalar_type(), "graph_to_weights_cuda", [&] {
    for (size_t l = 0; l < m.layers.size(); ++l) {
      const LayerMeta& lm = m.layers[l];
      const int64_t R = lm.out * lm.in;
      edges_to_weights_kernel<scalar_t><<<grid_for(m.B * R * lm.kh * lm.kw), kThreads, 0, stream>>>(
          e.const_data_ptr<scalar_t>(), ws[l].data_ptr<scalar_t>(), m.B, R, m.E, lm.edge_offset,
          placement(lm, m, dense_centre));
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    }
  });
  return {ws, bs};
}

}  // namespace

TORCH_LIBRARY_IMPL(scalegmn, CUDA, m) {
  m.impl("weights_to_graph", &weights_to_graph_cuda);
  m.impl("graph_to_weights", &graph_to_weights_cuda);
}

}  // namespace scalegmn
