// Host-side validation and bookkeeping for weights_to_graph / graph_to_weights, shared by the
// CPU and CUDA kernels (only the per-edge loops differ between devices).
#pragma once

#include <ATen/ATen.h>

#include <vector>

#include "../common/graph_layout.h"

namespace scalegmn {

struct LayerMeta {
  int64_t out, in, kh, kw;
  bool is_conv;
  int64_t edge_offset;  // first edge of the layer
  int64_t node_offset;  // first node of the layer's outputs
};

struct GraphMeta {
  int64_t B = 0, N = 0, E = 0, Kh = 1, Kw = 1;
  int64_t K = 1;  // Kh * Kw, overflow-checked by the meta functions (kernels index with it)
  std::vector<LayerMeta> layers;
};

// Checks the per-layer weights [B, out, in] / [B, out, in, kh, kw] and biases [B, out].
GraphMeta weights_meta(at::TensorList weights, at::TensorList biases, int64_t Kh, int64_t Kw);

// Checks node [B, N, 1] / edge [B, E, Kh * Kw] against the layout and per-layer kernel sizes.
GraphMeta graph_meta(const at::Tensor& node, const at::Tensor& edge, at::IntArrayRef layout, at::IntArrayRef kernel_h,
                     at::IntArrayRef kernel_w, const std::vector<bool>& is_conv, int64_t Kh, int64_t Kw);

// Allocates node [B, N, 1] (filled: input nodes = input_value, others = biases) and an
// uninitialised edge tensor [B, E, Kh * Kw].
std::tuple<at::Tensor, at::Tensor> alloc_graph(at::TensorList biases, const GraphMeta& m, double input_value,
                                               const at::TensorOptions& opt, int64_t n_inputs);

// Allocates uninitialised weights and biases filled from the node features.
std::tuple<std::vector<at::Tensor>, std::vector<at::Tensor>> alloc_weights(const at::Tensor& node, const GraphMeta& m);

inline KernelPlacement placement(const LayerMeta& l, const GraphMeta& m, bool dense_centre) {
  return make_placement(l.kh, l.kw, m.Kh, m.Kw, l.is_conv || dense_centre);
}

}  // namespace scalegmn
