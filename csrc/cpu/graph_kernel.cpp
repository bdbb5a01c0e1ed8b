// CPU kernels of weights_to_graph / graph_to_weights.
//
// Both ops are pure data movement, so they are written as copy loops: the parallel loop runs over
// networks, and each network's edge block [E, K] is written (forward) or read (inverse) front to
// back in one stream, layer after layer, while the per-layer weight blocks are read (written) in
// order too. Because the edge order is receiver-major = the row-major order of every weight, a
// layer whose kernel fills the grid (every dense layer of an MLP, any conv layer at the largest
// kernel size) is one memcpy per network; only kernels smaller than the grid take the slot loop.
// The slot math is graph_layout.h's, which the CUDA kernels also use.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "../ops/graph.h"

namespace scalegmn {
namespace {

// Networks per parallel task, so that a task moves >= kTaskElems elements (256 KiB of float32):
// starting an OpenMP region costs microseconds, about what copying that much takes, so smaller
// batches stay on the calling thread.
constexpr int64_t kTaskElems = 1 << 16;
inline int64_t batch_grain(int64_t elems_per_net) {
  return std::max<int64_t>(1, kTaskElems / std::max<int64_t>(elems_per_net, 1));
}

// How one layer's kernels sit in the edge grid; picks the copy loop.
enum class Fit {
  kFull,    // kernel == grid: the layer's edges are its weight verbatim (one memcpy per network)
  kSingle,  // 1x1 kernel (dense layer) in a larger grid: one value per edge, the rest zero
  kGeneral  // any other kernel smaller than the grid
};

struct LayerCopy {
  int64_t edges;       // out * in
  int64_t kk;          // kernel entries per edge in the weight
  int64_t edge_begin;  // first element of the layer in a network's edge block [E, K]
  int64_t node_begin;  // first node of the layer's outputs
  int64_t out;         // output neurons (bias length)
  Fit fit;
  int64_t slot;                    // kSingle: grid slot of the weight
  std::vector<int64_t> k_of_slot;  // kGeneral, forward: kernel index per grid slot, -1 = zero
  std::vector<int64_t> slot_of_k;  // kGeneral, inverse: grid slot per kernel index
};

std::vector<LayerCopy> plan_layers(const GraphMeta& m, bool dense_centre) {
  const int64_t K = m.K;  // overflow-checked in graph_meta
  std::vector<LayerCopy> plan;
  for (const LayerMeta& lm : m.layers) {
    const KernelPlacement p = placement(lm, m, dense_centre);
    LayerCopy c{lm.out * lm.in, lm.kh * lm.kw, lm.edge_offset * K, lm.node_offset, lm.out, Fit::kGeneral, 0, {}, {}};
    if (c.kk == K) {
      c.fit = Fit::kFull;  // kh == Kh and kw == Kw (sizes are validated <= the grid), offset 0
    } else if (c.kk == 1) {
      c.fit = Fit::kSingle;
      c.slot = kernel_index_to_slot(0, p);
    } else {
      for (int64_t s = 0; s < K; ++s) c.k_of_slot.push_back(slot_to_kernel_index(s, p));
      for (int64_t k = 0; k < c.kk; ++k) c.slot_of_k.push_back(kernel_index_to_slot(k, p));
    }
    plan.push_back(std::move(c));
  }
  return plan;
}

// The row copies need each network's block (every dim but the batch) contiguous; the batch
// stride may be anything, so a batch slice of a larger tensor is read in place without a copy.
at::Tensor per_net_contiguous(const at::Tensor& t) {
  int64_t expected = 1;
  for (int64_t d = t.dim() - 1; d >= 1; --d) {
    if (t.size(d) != 1 && t.stride(d) != expected) return t.contiguous();
    expected *= t.size(d);
  }
  return t;
}

// One network's edges of one layer: weight block src [edges, kk] -> edge block dst [edges, K].
// Every element of dst is written exactly once (padding slots with +0, as the reference's pad).
template <typename T>
void layer_to_edges(const T* src, T* dst, const LayerCopy& c, int64_t K) {
  if (c.edges == 0) return;  // empty tensors may have null data pointers (memcpy UB)
  switch (c.fit) {
    case Fit::kFull:
      std::memcpy(dst, src, sizeof(T) * c.edges * K);
      return;
    case Fit::kSingle:
      std::memset(static_cast<void*>(dst), 0, sizeof(T) * c.edges * K);  // all-zero bits == +0
      for (int64_t r = 0; r < c.edges; ++r) dst[r * K + c.slot] = src[r];
      return;
    case Fit::kGeneral: {
      const int64_t* k_of_slot = c.k_of_slot.data();
      for (int64_t r = 0; r < c.edges; ++r, src += c.kk, dst += K)
        for (int64_t s = 0; s < K; ++s) dst[s] = k_of_slot[s] >= 0 ? src[k_of_slot[s]] : T(0);
      return;
    }
  }
}

// The transpose: edge block src [edges, K] -> weight block dst [edges, kk] (padding ignored).
template <typename T>
void edges_to_layer(const T* src, T* dst, const LayerCopy& c, int64_t K) {
  if (c.edges == 0) return;  // empty tensors may have null data pointers (memcpy UB)
  switch (c.fit) {
    case Fit::kFull:
      std::memcpy(dst, src, sizeof(T) * c.edges * K);
      return;
    case Fit::kSingle:
      for (int64_t r = 0; r < c.edges; ++r) dst[r] = src[r * K + c.slot];
      return;
    case Fit::kGeneral: {
      const int64_t* slot_of_k = c.slot_of_k.data();
      for (int64_t r = 0; r < c.edges; ++r, src += K, dst += c.kk)
        for (int64_t k = 0; k < c.kk; ++k) dst[k] = src[slot_of_k[k]];
      return;
    }
  }
}

// n values at src with a stride (biases / node features) -> contiguous dst; stride 1 (the usual
// case) is a plain copy.
template <typename T>
inline void gather_strided(const T* src, int64_t stride, int64_t n, T* dst) {
  if (stride == 1) {
    std::copy(src, src + n, dst);
    return;
  }
  for (int64_t i = 0; i < n; ++i) dst[i] = src[i * stride];
}

std::tuple<at::Tensor, at::Tensor> weights_to_graph_cpu(at::TensorList weights, at::TensorList biases, int64_t max_kh,
                                                        int64_t max_kw, bool dense_centre, double input_value) {
  const GraphMeta m = weights_meta(weights, biases, max_kh, max_kw);
  const int64_t K = m.K;  // overflow-checked in graph_meta
  const auto opt = weights[0].options();
  // node is filled here, in the same per-network pass, rather than by alloc_graph's per-layer
  // strided tensor copies (several ATen calls each, which dominated small batches)
  at::Tensor node = at::empty({m.B, m.N, 1}, opt);
  at::Tensor edge = at::empty({m.B, m.E, K}, opt);
  if (m.B == 0) return {node, edge};
  const std::vector<LayerCopy> plan = plan_layers(m, dense_centre);
  std::vector<at::Tensor> ws;
  for (const auto& w : weights) ws.push_back(per_net_contiguous(w));
  const int64_t n_inputs = weights[0].size(2);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, edge.scalar_type(), "weights_to_graph_cpu", [&] {
    const scalar_t in_val = at::Scalar(input_value).to<scalar_t>();  // what fill_ would store
    std::vector<const scalar_t*> wp, bp;
    std::vector<int64_t> w_bstride, b_stride0, b_stride1;
    for (size_t l = 0; l < plan.size(); ++l) {
      wp.push_back(ws[l].const_data_ptr<scalar_t>());
      w_bstride.push_back(ws[l].stride(0));
      bp.push_back(biases[l].const_data_ptr<scalar_t>());
      b_stride0.push_back(biases[l].stride(0));
      b_stride1.push_back(biases[l].stride(1));
    }
    scalar_t* np = node.data_ptr<scalar_t>();
    scalar_t* ep = edge.data_ptr<scalar_t>();
    at::parallel_for(0, m.B, batch_grain(m.E * K + m.N), [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        scalar_t* nb = np + b * m.N;
        std::fill(nb, nb + n_inputs, in_val);
        scalar_t* eb = ep + b * m.E * K;
        for (size_t l = 0; l < plan.size(); ++l) {
          const LayerCopy& c = plan[l];
          gather_strided(bp[l] + b * b_stride0[l], b_stride1[l], c.out, nb + c.node_begin);
          layer_to_edges(wp[l] + b * w_bstride[l], eb + c.edge_begin, c, K);
        }
      }
    });
  });
  return {node, edge};
}

std::tuple<std::vector<at::Tensor>, std::vector<at::Tensor>> graph_to_weights_cpu(
    const at::Tensor& node, const at::Tensor& edge, at::IntArrayRef layout, at::IntArrayRef kernel_h,
    at::IntArrayRef kernel_w, c10::List<bool> is_conv, int64_t max_kh, int64_t max_kw, bool dense_centre) {
  const std::vector<bool> conv(is_conv.begin(), is_conv.end());
  const GraphMeta m = graph_meta(node, edge, layout, kernel_h, kernel_w, conv, max_kh, max_kw);
  const int64_t K = m.K;  // overflow-checked in graph_meta
  // outputs allocated here (not by alloc_weights) so that the biases are gathered in the same
  // per-network pass instead of one strided clone per layer
  std::vector<at::Tensor> ws, bs;
  for (const LayerMeta& l : m.layers) {
    ws.push_back(l.is_conv ? at::empty({m.B, l.out, l.in, l.kh, l.kw}, node.options())
                           : at::empty({m.B, l.out, l.in}, node.options()));
    bs.push_back(at::empty({m.B, l.out}, node.options()));
  }
  if (m.B == 0) return {ws, bs};
  const std::vector<LayerCopy> plan = plan_layers(m, dense_centre);
  const at::Tensor e = per_net_contiguous(edge);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, e.scalar_type(), "graph_to_weights_cpu", [&] {
    const scalar_t* ep = e.const_data_ptr<scalar_t>();
    const scalar_t* np = node.const_data_ptr<scalar_t>();
    const int64_t e_bstride = e.stride(0), n_stride0 = node.stride(0), n_stride1 = node.stride(1);
    std::vector<scalar_t*> wp, bp;
    for (size_t l = 0; l < plan.size(); ++l) {
      wp.push_back(ws[l].data_ptr<scalar_t>());
      bp.push_back(bs[l].data_ptr<scalar_t>());
    }
    at::parallel_for(0, m.B, batch_grain(m.E * K + m.N), [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        const scalar_t* eb = ep + b * e_bstride;
        const scalar_t* nb = np + b * n_stride0;
        for (size_t l = 0; l < plan.size(); ++l) {
          const LayerCopy& c = plan[l];
          edges_to_layer(eb + c.edge_begin, wp[l] + b * c.edges * c.kk, c, K);
          gather_strided(nb + c.node_begin * n_stride1, n_stride1, c.out, bp[l] + b * c.out);
        }
      }
    });
  });
  return {ws, bs};
}

}  // namespace

TORCH_LIBRARY_IMPL(scalegmn, CPU, m) {
  m.impl("weights_to_graph", &weights_to_graph_cpu);
  m.impl("graph_to_weights", &graph_to_weights_cpu);
}

}  // namespace scalegmn
