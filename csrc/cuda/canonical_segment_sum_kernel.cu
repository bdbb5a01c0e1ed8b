// CUDA kernels of canonical_segment_sum and its backward (contracts in ops/canonical_segment_sum.h;
// per-row math in common/canonical.h, shared with the CPU kernels).
//
// Forward: one block per (segment, channel tile of <= kTileC channels); each of the block's
// kWarps warps takes every kWarps-th row of the segment (mode 2: the warp reduces the row's
// max |h_c| and then ||h / max||^2 over all C channels with shuffles -- the max-scaled evaluation
// of common/canonical.h -- then scales), accumulating c(h) for the tile into
// its own shared-memory row; the warps' partial rows are then added in warp order. Fixed
// assignment and order: deterministic, no atomics.
// Backward: one warp per row (grid-stride); the row's segment comes from a binary search in ptr;
// mode 2 reduces max |h_c|, then ||h / max||^2 and (h / max) . grad per row with shuffles, then
// writes the gradient row.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>

#include "../common/canonical.h"
#include "../common/segment.h"
#include "../ops/canonical_segment_sum.h"
#include "launch.cuh"

namespace scalegmn {
namespace {

constexpr int kWarps = 8;        // warps per forward block
constexpr int64_t kTileC = 256;  // channels per forward block

template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

template <typename T>
__device__ __forceinline__ T warp_max(T v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const T w = __shfl_xor_sync(0xffffffffu, v, o);
    v = w > v ? w : v;
  }
  return v;
}

// The mode-2 state of row hr, computed cooperatively by one warp (every lane gets the same row,
// so the branches on row.path / row.fast_m are warp-uniform). Mirrors l2_row of
// cpu/canonical_segment_sum_kernel.cpp.
template <bool GRAD, typename scalar_t, typename acc_t>
__device__ __forceinline__ CanonRow<acc_t> l2_row_warp(const scalar_t* hr, const scalar_t* gr, int64_t C, acc_t eps,
                                                       int lane) {
  acc_t m = acc_t(0), p = acc_t(0);
  for (int64_t c = lane; c < C; c += 32) {
    const acc_t hv = static_cast<acc_t>(hr[c]);
    m = l2_max_step(m, hv);
    p = l2_probe_step(p, hv);
  }
  CanonRow<acc_t> row = l2_row_begin(warp_max(m) + warp_sum(p), eps);
  if (row.path == kL2Dominated) return row;
  acc_t ss = acc_t(0), yg = acc_t(0);
  for (int64_t c = lane; c < C; c += 32) {
    const acc_t y = l2_y(static_cast<acc_t>(hr[c]), row);
    ss += y * y;
    if constexpr (GRAD) yg += y * static_cast<acc_t>(gr[c]);
  }
  if constexpr (GRAD)
    l2_grad_row_finish(row, warp_sum(ss), warp_sum(yg));
  else
    l2_row_finish(row, warp_sum(ss));
  return row;
}

template <int64_t MODE, typename scalar_t, typename index_t>
__global__ void canonical_sum_kernel(const scalar_t* __restrict__ h, const index_t* __restrict__ ptr,
                                     const bool* __restrict__ mask, scalar_t* __restrict__ out, int64_t N, int64_t C,
                                     at::opmath_type<scalar_t> eps) {
  using acc_t = at::opmath_type<scalar_t>;
  extern __shared__ unsigned char smem_raw[];
  acc_t* part = reinterpret_cast<acc_t*>(smem_raw);  // [kWarps][kTileC]
  const int64_t g = blockIdx.x;
  const int64_t c0 = blockIdx.y * kTileC;
  const int64_t tw = C - c0 < kTileC ? C - c0 : kTileC;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  acc_t* mine = part + warp * kTileC;
  for (int64_t c = lane; c < tw; c += 32) mine[c] = acc_t(0);
  const int64_t start = ptr[g], end = ptr[g + 1];
  const bool ok = 0 <= start && start <= end && end <= N;
  CUDA_KERNEL_ASSERT_MSG(ok, "canonical_segment_sum: ptr must be non-decreasing within [0, N]");
  if (ok) {
    for (int64_t i = start + warp; i < end; i += kWarps) {
      if (mask != nullptr && !mask[i]) continue;  // warp-uniform
      const scalar_t* hr = h + i * C;
      CanonRow<acc_t> row;
      if constexpr (MODE == kCanonL2) row = l2_row_warp<false>(hr, hr, C, eps, lane);
      for (int64_t c = lane; c < tw; c += 32) mine[c] += canonical_value<MODE>(static_cast<acc_t>(hr[c0 + c]), row);
    }
  }
  __syncthreads();
  for (int64_t c = threadIdx.x; c < tw; c += blockDim.x) {
    acc_t s = acc_t(0);
#pragma unroll
    for (int w = 0; w < kWarps; ++w) s += part[w * kTileC + c];
    out[g * C + c0 + c] = static_cast<scalar_t>(s);
  }
}

template <int64_t MODE, typename scalar_t, typename index_t>
__global__ void canonical_backward_kernel(const scalar_t* __restrict__ grad, const scalar_t* __restrict__ h,
                                          const index_t* __restrict__ ptr, const bool* __restrict__ mask,
                                          scalar_t* __restrict__ out, int64_t N, int64_t G, int64_t C,
                                          at::opmath_type<scalar_t> eps) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t tid = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const int lane = threadIdx.x % 32;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * blockDim.x / 32;
  // ptr sanity (the binary search below needs it): each of the first G + 1 threads checks one entry.
  if (tid <= G) {
    const int64_t lo = tid == 0 ? 0 : static_cast<int64_t>(ptr[tid - 1]);
    const int64_t v = ptr[tid];
    CUDA_KERNEL_ASSERT_MSG(lo <= v && (tid < G || v <= N),
                           "canonical_segment_sum_backward: ptr must be non-decreasing within [0, N]");
  }
  for (int64_t i = tid / 32; i < N; i += warps) {
    const int64_t g = segment_of_position(ptr, G, i);
    scalar_t* o = out + i * C;
    if (g < 0 || g >= G || (mask != nullptr && !mask[i])) {
      for (int64_t c = lane; c < C; c += 32) o[c] = scalar_t(0);
      continue;
    }
    const scalar_t* hr = h + i * C;
    const scalar_t* gr = grad + g * C;
    CanonRow<acc_t> row;
    if constexpr (MODE == kCanonL2) row = l2_row_warp<true>(hr, gr, C, eps, lane);
    for (int64_t c = lane; c < C; c += 32)
      o[c] = static_cast<scalar_t>(canonical_grad<MODE>(static_cast<acc_t>(hr[c]), static_cast<acc_t>(gr[c]), row));
  }
}

template <typename F>
void dispatch_mode(int64_t mode, const F& fn) {
  switch (mode) {
    case kCanonAbs:
      fn(std::integral_constant<int64_t, kCanonAbs>{});
      break;
    case kCanonL2:
      fn(std::integral_constant<int64_t, kCanonL2>{});
      break;
    default:
      fn(std::integral_constant<int64_t, kCanonIdentity>{});
      break;
  }
}

at::Tensor canonical_segment_sum_cuda(const at::Tensor& h, const at::Tensor& ptr, const std::optional<at::Tensor>& mask,
                                      int64_t mode, double eps) {
  const CanonicalSegmentSumArgs a = check_canonical_segment_sum("canonical_segment_sum", h, ptr, mask, mode, eps);
  const c10::cuda::CUDAGuard guard(h.device());
  auto out = at::empty({a.G, a.C}, h.options());
  if (a.G == 0 || a.C == 0) return out;
  auto stream = c10::cuda::getCurrentCUDAStream();
  const dim3 grid(static_cast<unsigned int>(a.G), static_cast<unsigned int>((a.C + kTileC - 1) / kTileC));
  TORCH_CHECK(a.G < (int64_t(1) << 31) && grid.y <= 65535, "canonical_segment_sum: too many segments/channels");
  AT_DISPATCH_INDEX_TYPES(a.ptr.scalar_type(), "canonical_segment_sum_cuda", [&] {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, h.scalar_type(), "canonical_segment_sum_cuda", [&] {
      using acc_t = at::opmath_type<scalar_t>;
      const size_t smem = kWarps * kTileC * sizeof(acc_t);
      const bool* mp = a.mask.defined() ? a.mask.const_data_ptr<bool>() : nullptr;
      dispatch_mode(mode, [&](auto M) {
        canonical_sum_kernel<decltype(M)::value, scalar_t, index_t>
            <<<grid, kWarps * 32, smem, stream>>>(a.h.const_data_ptr<scalar_t>(), a.ptr.const_data_ptr<index_t>(), mp,
                                                  out.data_ptr<scalar_t>(), a.N, a.C, static_cast<acc_t>(eps));
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
    });
  });
  return out;
}

at::Tensor canonical_segment_sum_backward_cuda(const at::Tensor& grad, const at::Tensor& h, const at::Tensor& ptr,
                                               const std::optional<at::Tensor>& mask, int64_t mode, double eps) {
  constexpr const char* op = "canonical_segment_sum_backward";
  const CanonicalSegmentSumArgs a = check_canonical_segment_sum(op, h, ptr, mask, mode, eps);
  TORCH_CHECK(grad.dim() == 2 && grad.size(0) == a.G && grad.size(1) == a.C, op, ": grad must be [G, C] = [", a.G, ", ",
              a.C, "], got shape ", grad.sizes());
  TORCH_CHECK(grad.scalar_type() == h.scalar_type() && grad.device() == h.device(), op, ": grad is ",
              grad.scalar_type(), " on ", grad.device(), ", expected ", h.scalar_type(), " on ", h.device());
  const c10::cuda::CUDAGuard guard(h.device());
  const at::Tensor gc = grad.contiguous();
  auto out = at::empty({a.N, a.C}, h.options());
  if (a.N == 0 || a.C == 0) return out;
  auto stream = c10::cuda::getCurrentCUDAStream();
  const unsigned int blocks = grid_for(std::max(a.N * 32, a.G + 1));
  AT_DISPATCH_INDEX_TYPES(a.ptr.scalar_type(), "canonical_segment_sum_backward_cuda", [&] {
    AT_DISPATCH_FLOATING_TYPES_AND2(
        at::kHalf, at::kBFloat16, h.scalar_type(), "canonical_segment_sum_backward_cuda", [&] {
          using acc_t = at::opmath_type<scalar_t>;
          const bool* mp = a.mask.defined() ? a.mask.const_data_ptr<bool>() : nullptr;
          dispatch_mode(mode, [&](auto M) {
            canonical_backward_kernel<decltype(M)::value, scalar_t, index_t><<<blocks, kThreads, 0, stream>>>(
                gc.const_data_ptr<scalar_t>(), a.h.const_data_ptr<scalar_t>(), a.ptr.const_data_ptr<index_t>(), mp,
                out.data_ptr<scalar_t>(), a.N, a.G, a.C, static_cast<acc_t>(eps));
            C10_CUDA_KERNEL_LAUNCH_CHECK();
          });
        });
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(scalegmn, CUDA, m) {
  m.impl("canonical_segment_sum", &canonical_segment_sum_cuda);
  m.impl("canonical_segment_sum_backward", &canonical_segment_sum_backward_cuda);
}

}  // namespace scalegmn
