// Tile size of the fused tiled ops (edge_update, scale_eq_message): a tile holds whole
// networks, as many as fit in `tile_edges` edges (at least one), so that every per-edge
// intermediate of a tile stays small while its GEMMs stay large enough for BLAS.
// Host-only (the tile loop runs on the host for CPU and CUDA tensors alike).
#pragma once

#include <algorithm>
#include <cstdint>

namespace scalegmn {

inline int64_t networks_per_tile(int64_t out, int64_t in, int64_t tile_edges) {
  return std::max<int64_t>(1, tile_edges / std::max<int64_t>(out * in, 1));
}

}  // namespace scalegmn
