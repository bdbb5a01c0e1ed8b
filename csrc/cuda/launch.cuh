// Launch helpers for the CUDA kernels.
#pragma once

#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>
#include <cstdint>

namespace scalegmn {

constexpr int kThreads = 256;

// Grid for a grid-stride loop over n elements (capped: each thread loops over the rest).
inline unsigned int grid_for(int64_t n) {
  const int64_t blocks = (n + kThreads - 1) / kThreads;
  return static_cast<unsigned int>(std::min<int64_t>(std::max<int64_t>(blocks, 1), 65535LL * 8));
}

}  // namespace scalegmn
