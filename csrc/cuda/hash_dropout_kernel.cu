// CUDA kernel of hash_dropout (contract in ops/hash_dropout.h): grid-stride over elements, the
// mask from the same common/dropout_hash.h function as the CPU kernel (identical masks).
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include "../common/dropout_hash.h"
#include "../ops/hash_dropout.h"
#include "launch.cuh"

namespace scalegmn {
namespace {

template <typename scalar_t>
__global__ void hash_dropout_kernel(const scalar_t* __restrict__ x, scalar_t* __restrict__ out, int64_t n,
                                    int64_t offset, uint32_t seed, uint32_t thr, at::opmath_type<scalar_t> scale) {
  using acc_t = at::opmath_type<scalar_t>;
  for (int64_t k = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; k < n;
       k += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const acc_t m = dropout_keep(static_cast<uint64_t>(offset + k), seed, thr) ? scale : acc_t(0);
    out[k] = static_cast<scalar_t>(static_cast<acc_t>(x[k]) * m);
  }
}

at::Tensor hash_dropout_cuda(const at::Tensor& x_in, double p, int64_t seed, int64_t offset) {
  const at::Tensor x = check_hash_dropout(x_in, p, offset);
  at::Tensor out = at::empty_like(x, at::MemoryFormat::Contiguous);
  const int64_t n = x.numel();
  if (n == 0) return out;
  const c10::cuda::CUDAGuard guard(x.device());
  auto stream = c10::cuda::getCurrentCUDAStream();
  const uint32_t thr = dropout_threshold(p), s = static_cast<uint32_t>(seed);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "hash_dropout_cuda", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    hash_dropout_kernel<scalar_t><<<grid_for(n), kThreads, 0, stream>>>(
        x.const_data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), n, offset, s, thr, static_cast<acc_t>(1.0 / (1.0 - p)));
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(scalegmn, CUDA, m) {
  m.impl("hash_dropout", &hash_dropout_cuda);
}

}  // namespace scalegmn
