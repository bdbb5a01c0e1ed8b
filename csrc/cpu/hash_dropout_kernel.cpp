// CPU kernel of hash_dropout (contract in ops/hash_dropout.h, mask in common/dropout_hash.h):
// one pass, parallel over element chunks; the mask costs a few integer ops per element instead
// of a Bernoulli draw plus a stored mask.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>

#include "../common/dropout_hash.h"
#include "../ops/hash_dropout.h"

namespace scalegmn {
namespace {

// Elements [b, e) of the call; the high-word hash is hoisted out of each run of indices that
// share their upper 32 bits, so the inner loop is 32-bit integer math only (vectorises).
template <typename scalar_t>
void dropout_range(const scalar_t* __restrict__ x, scalar_t* __restrict__ out, int64_t b, int64_t e, int64_t offset,
                   uint32_t seed, uint32_t thr, at::opmath_type<scalar_t> scale) {
  using acc_t = at::opmath_type<scalar_t>;
  while (b < e) {
    const uint64_t g0 = static_cast<uint64_t>(offset + b);
    const int64_t run = std::min<int64_t>(e - b, static_cast<int64_t>((uint64_t{1} << 32) - (g0 & 0xffffffffu)));
    const uint32_t hi = hash32(static_cast<uint32_t>(g0 >> 32) ^ seed), lo0 = static_cast<uint32_t>(g0);
    const scalar_t* xr = x + b;
    scalar_t* orow = out + b;
#pragma omp simd
    for (int64_t j = 0; j < run; ++j) {
      const acc_t m = dropout_draw_lo(lo0 + static_cast<uint32_t>(j), hi, seed) >= thr ? scale : acc_t(0);
      orow[j] = static_cast<scalar_t>(static_cast<acc_t>(xr[j]) * m);
    }
    b += run;
  }
}

at::Tensor hash_dropout_cpu(const at::Tensor& x_in, double p, int64_t seed, int64_t offset) {
  const at::Tensor x = check_hash_dropout(x_in, p, offset);
  at::Tensor out = at::empty_like(x, at::MemoryFormat::Contiguous);
  const int64_t n = x.numel();
  if (n == 0) return out;
  const uint32_t thr = dropout_threshold(p), s = static_cast<uint32_t>(seed);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "hash_dropout_cpu", [&] {
    using acc_t = at::opmath_type<scalar_t>;
    const acc_t scale = static_cast<acc_t>(1.0 / (1.0 - p));
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    scalar_t* op = out.data_ptr<scalar_t>();
    at::parallel_for(0, n, 1 << 14,
                     [&](int64_t b, int64_t e) { dropout_range<scalar_t>(xp, op, b, e, offset, s, thr, scale); });
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(scalegmn, CPU, m) {
  m.impl("hash_dropout", &hash_dropout_cpu);
}

}  // namespace scalegmn
