// Index math of the weights <-> graph layout, shared by CPU and CUDA kernels.
//
// Graph layout (documented in scalegmn_ext/graph.py):
//   * nodes: all neurons (channels) in layer order; node features [B, N, 1].
//   * edges of layer l are stored receiver-major: edge (o, i) of layer l sits at
//     edge_offset[l] + o * in + i, which is exactly the row-major order of W[l] ([out, in, ...]),
//     so the edge list is globally sorted by receiver (CSR by receiver for free).
//   * edge features [B, E, Kh * Kw]: a kernel of size kh x kw is placed in the Kh x Kw grid at
//     row/col offset (oh, ow) and flattened row-major; other slots are zero. Conv kernels are
//     centred; dense weights (1 x 1) are centred or put in slot 0 (the public code's choice).
#pragma once

#include <cstdint>

#include "macros.h"

namespace scalegmn {

struct KernelPlacement {
  int64_t kh, kw;  // kernel size of this layer
  int64_t Kh, Kw;  // padded grid (largest kernel of the graph)
  int64_t oh, ow;  // where the kernel's (0, 0) lands in the grid
};

SGMN_HD_INLINE int64_t centred_offset(int64_t grid, int64_t k) {
  return (grid - k) / 2;
}

SGMN_HD_INLINE KernelPlacement make_placement(int64_t kh, int64_t kw, int64_t Kh, int64_t Kw, bool centre) {
  KernelPlacement p{kh, kw, Kh, Kw, 0, 0};
  if (centre) {
    p.oh = centred_offset(Kh, kh);
    p.ow = centred_offset(Kw, kw);
  }
  return p;
}

// Grid slot that holds flattened kernel index `k` (k = y * kw + x) of a layer's kernel.
SGMN_HD_INLINE int64_t kernel_index_to_slot(int64_t k, const KernelPlacement& p) {
  return (k / p.kw + p.oh) * p.Kw + (k % p.kw + p.ow);
}

// Inverse of kernel_index_to_slot: the flattened kernel index held by grid slot `s`, or -1 for a
// padding slot (which reads as zero). Lets a kernel write each edge's grid once, in order.
SGMN_HD_INLINE int64_t slot_to_kernel_index(int64_t s, const KernelPlacement& p) {
  const int64_t y = s / p.Kw - p.oh, x = s % p.Kw - p.ow;
  return (y >= 0 && y < p.kh && x >= 0 && x < p.kw) ? y * p.kw + x : -1;
}

// Flat index into edge features [B, E, Kh * Kw] of weight element (b, r, k) of one layer, where
// r = o * in + i enumerates the layer's edges receiver-major and k its kernel entries. The
// weight element itself sits at flat index (b * R + r) * kh * kw + k of the contiguous weight.
// The CUDA kernels index element-wise through this map; the CPU kernels move whole per-network
// layer blocks (base (b * E + edge_offset) * Kh * Kw) through the same slot map above.
SGMN_HD_INLINE int64_t edge_element(int64_t b, int64_t r, int64_t k, int64_t E, int64_t edge_offset,
                                    const KernelPlacement& p) {
  return (b * E + edge_offset + r) * (p.Kh * p.Kw) + kernel_index_to_slot(k, p);
}

}  // namespace scalegmn
