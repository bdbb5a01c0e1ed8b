// CUDA kernels of the CSR message ops (contracts in ops/segment_gather_mul.h):
//   segment_gather_mul  out[i]   = sum_p x[col[p]] * edge[eid(p)]
//   gather_mul_csr      out[eid] = a[row(p)] * b[col[p]]
//   gather_dot_csr      out[eid] = <a[row(p)], b[col[p]]>
//
// Design: one group of `lanes` threads per CSR row (lanes = 32, a warp, for wide features; a
// power of two >= the number of channel vectors for narrow ones), grid-stride over rows; the
// lanes split the channels in vectors of V elements (16-byte loads/stores when C % V == 0 and
// the pointers are 16-byte aligned, V = 1 otherwise) and walk the row's positions in CSR order.
// Every output element is produced by one thread (segment_gather_mul, gather_mul_csr) or one
// warp with a fixed shuffle tree (gather_dot_csr): no atomics, results are deterministic, and
// the [E, C] product of segment_gather_mul is never materialised. Sums accumulate in
// at::opmath_type (float for half/bfloat16). Index math: common/segment.h (shared with the CPU
// kernels). Bad indices trip a device-side assert (and are skipped, never dereferenced).
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <cstdint>

#include "../common/segment.h"
#include "../ops/segment_gather_mul.h"
#include "launch.cuh"

namespace scalegmn {
namespace {

template <typename T, int V>
struct alignas(sizeof(T) * V) Pack {
  T v[V];
};

template <int V, typename T>
__device__ __forceinline__ Pack<T, V> load_pack(const T* p) {
  return *reinterpret_cast<const Pack<T, V>*>(p);
}

template <int V, typename T>
__device__ __forceinline__ void store_pack(T* p, const Pack<T, V>& v) {
  *reinterpret_cast<Pack<T, V>*>(p) = v;
}

template <typename T>
__device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Checks one CSR row's bounds (device assert) and returns whether it is usable.
__device__ __forceinline__ bool row_bounds_ok(int64_t row, int64_t rows, int64_t start, int64_t end, int64_t nnz) {
  const bool ok = csr_row_ok(start, end, nnz) && (row != 0 || start == 0) && (row != rows - 1 || end == nnz);
  CUDA_KERNEL_ASSERT_MSG(ok, "CSR rowptr must be non-decreasing from 0 to E = col.numel()");
  return ok;
}

__device__ __forceinline__ bool position_ok(int64_t j, int64_t n_src, int64_t e, int64_t nnz) {
  const bool ok = index_in_range(j, n_src) && index_in_range(e, nnz);
  CUDA_KERNEL_ASSERT_MSG(ok, "CSR col (sender) or perm (edge id) out of range");
  return ok;
}

template <typename scalar_t, typename index_t, int V, bool BCAST>
__global__ void segment_gather_mul_kernel(const scalar_t* __restrict__ x, const scalar_t* __restrict__ edge,
                                          const index_t* __restrict__ rowptr, const index_t* __restrict__ col,
                                          const index_t* __restrict__ perm, scalar_t* __restrict__ out, int64_t rows,
                                          int64_t C, int64_t n_src, int64_t nnz, int lanes) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t tid = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const int lane = threadIdx.x % lanes;
  const int64_t groups = static_cast<int64_t>(gridDim.x) * blockDim.x / lanes;
  const int64_t CV = C / V;
  for (int64_t row = tid / lanes; row < rows; row += groups) {
    const int64_t start = rowptr[row], end = rowptr[row + 1];
    if (!row_bounds_ok(row, rows, start, end, nnz)) continue;
    for (int64_t cv = lane; cv < CV; cv += lanes) {
      acc_t acc[V];
#pragma unroll
      for (int k = 0; k < V; ++k) acc[k] = acc_t(0);
      for (int64_t p = start; p < end; ++p) {
        const int64_t j = col[p];
        const int64_t e = csr_edge_id(perm, p);
        if (!position_ok(j, n_src, e, nnz)) continue;
        const Pack<scalar_t, V> xv = load_pack<V>(x + j * C + cv * V);
        if constexpr (BCAST) {
          const acc_t ev = static_cast<acc_t>(edge[e]);
#pragma unroll
          for (int k = 0; k < V; ++k) acc[k] += static_cast<acc_t>(xv.v[k]) * ev;
        } else {
          const Pack<scalar_t, V> ev = load_pack<V>(edge + e * C + cv * V);
#pragma unroll
          for (int k = 0; k < V; ++k) acc[k] = mul_acc(acc[k], xv.v[k], ev.v[k]);
        }
      }
      Pack<scalar_t, V> o;
#pragma unroll
      for (int k = 0; k < V; ++k) o.v[k] = static_cast<scalar_t>(acc[k]);
      store_pack<V>(out + row * C + cv * V, o);
    }
  }
}

template <typename scalar_t, typename index_t, int V>
__global__ void gather_mul_kernel(const scalar_t* __restrict__ a, const scalar_t* __restrict__ b,
                                  const index_t* __restrict__ rowptr, const index_t* __restrict__ col,
                                  const index_t* __restrict__ perm, scalar_t* __restrict__ out, int64_t rows, int64_t C,
                                  int64_t n_src, int64_t nnz, int lanes) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t tid = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const int lane = threadIdx.x % lanes;
  const int64_t groups = static_cast<int64_t>(gridDim.x) * blockDim.x / lanes;
  const int64_t CV = C / V;
  for (int64_t row = tid / lanes; row < rows; row += groups) {
    const int64_t start = rowptr[row], end = rowptr[row + 1];
    if (!row_bounds_ok(row, rows, start, end, nnz)) continue;
    for (int64_t cv = lane; cv < CV; cv += lanes) {
      const Pack<scalar_t, V> av = load_pack<V>(a + row * C + cv * V);
      for (int64_t p = start; p < end; ++p) {
        const int64_t j = col[p];
        const int64_t e = csr_edge_id(perm, p);
        if (!position_ok(j, n_src, e, nnz)) continue;
        const Pack<scalar_t, V> bv = load_pack<V>(b + j * C + cv * V);
        Pack<scalar_t, V> o;
#pragma unroll
        for (int k = 0; k < V; ++k)
          o.v[k] = static_cast<scalar_t>(static_cast<acc_t>(av.v[k]) * static_cast<acc_t>(bv.v[k]));
        store_pack<V>(out + e * C + cv * V, o);
      }
    }
  }
}

// One warp per row (all 32 lanes stay converged for the shuffle reduction).
template <typename scalar_t, typename index_t, int V>
__global__ void gather_dot_kernel(const scalar_t* __restrict__ a, const scalar_t* __restrict__ b,
                                  const index_t* __restrict__ rowptr, const index_t* __restrict__ col,
                                  const index_t* __restrict__ perm, scalar_t* __restrict__ out, int64_t rows, int64_t C,
                                  int64_t n_src, int64_t nnz) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t tid = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  const int lane = threadIdx.x % 32;
  const int64_t warps = static_cast<int64_t>(gridDim.x) * blockDim.x / 32;
  const int64_t CV = C / V;
  for (int64_t row = tid / 32; row < rows; row += warps) {
    const int64_t start = rowptr[row], end = rowptr[row + 1];
    if (!row_bounds_ok(row, rows, start, end, nnz)) continue;
    const scalar_t* ar = a + row * C;
    for (int64_t p = start; p < end; ++p) {
      const int64_t j = col[p];
      const int64_t e = csr_edge_id(perm, p);
      if (!position_ok(j, n_src, e, nnz)) continue;
      acc_t s = acc_t(0);
      for (int64_t cv = lane; cv < CV; cv += 32) {
        const Pack<scalar_t, V> av = load_pack<V>(ar + cv * V);
        const Pack<scalar_t, V> bv = load_pack<V>(b + j * C + cv * V);
#pragma unroll
        for (int k = 0; k < V; ++k) s = mul_acc(s, av.v[k], bv.v[k]);
      }
      s = warp_sum(s);
      if (lane == 0) out[e] = static_cast<scalar_t>(s);
    }
  }
}

// Widest vector (16 bytes) usable for rows of C elements at these pointers, else 1.
template <typename scalar_t>
constexpr int kMaxVec = static_cast<int>(16 / sizeof(scalar_t));

template <typename scalar_t>
bool can_vectorise(int64_t C, std::initializer_list<const void*> ptrs) {
  if (C % kMaxVec<scalar_t> != 0) return false;
  for (const void* p : ptrs)
    if (reinterpret_cast<uintptr_t>(p) % 16 != 0) return false;
  return true;
}

// Threads per row: a warp for wide rows, else the smallest power of two covering the vectors.
inline int lanes_for(int64_t vectors) {
  int lanes = 1;
  while (lanes < 32 && lanes < vectors) lanes *= 2;
  return lanes;
}

inline unsigned int blocks_for(int64_t rows, int lanes) {
  return grid_for(rows * lanes);
}

at::Tensor segment_gather_mul_cuda(const at::Tensor& x, const at::Tensor& edge, const at::Tensor& rowptr,
                                   const at::Tensor& col, const std::optional<at::Tensor>& perm,
                                   const std::optional<at::Tensor>& t_rowptr, const std::optional<at::Tensor>& t_col,
                                   const std::optional<at::Tensor>& t_perm) {
  const SegmentGatherMulArgs m = check_segment_gather_mul(x, edge, rowptr, col, perm, t_rowptr, t_col, t_perm);
  const CsrArgs& csr = m.csr;
  const c10::cuda::CUDAGuard guard(x.device());
  auto out = at::empty({csr.rows, m.C}, x.options());
  if (csr.rows == 0 || m.C == 0) return out;
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_INDEX_TYPES(csr.rowptr.scalar_type(), "segment_gather_mul_cuda", [&] {
    const index_t* rp = csr.rowptr.const_data_ptr<index_t>();
    const index_t* cl = csr.col.const_data_ptr<index_t>();
    const index_t* pm = csr.perm.defined() ? csr.perm.const_data_ptr<index_t>() : nullptr;
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "segment_gather_mul_cuda", [&] {
      const scalar_t* xp = m.x.const_data_ptr<scalar_t>();
      const scalar_t* ep = m.edge.const_data_ptr<scalar_t>();
      scalar_t* op = out.data_ptr<scalar_t>();
      const bool vec = can_vectorise<scalar_t>(m.C, {xp, op, m.bcast ? nullptr : ep});
      auto launch = [&](auto v_tag, auto bcast_tag) {
        constexpr int V = decltype(v_tag)::value;
        constexpr bool BCAST = decltype(bcast_tag)::value;
        const int lanes = lanes_for(m.C / V);
        segment_gather_mul_kernel<scalar_t, index_t, V, BCAST><<<blocks_for(csr.rows, lanes), kThreads, 0, stream>>>(
            xp, ep, rp, cl, pm, op, csr.rows, m.C, csr.cols, csr.nnz, lanes);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      };
      using VMax = std::integral_constant<int, kMaxVec<scalar_t>>;
      using V1 = std::integral_constant<int, 1>;
      if (vec) {
        if (m.bcast)
          launch(VMax{}, std::true_type{});
        else
          launch(VMax{}, std::false_type{});
      } else {
        if (m.bcast)
          launch(V1{}, std::true_type{});
        else
          launch(V1{}, std::false_type{});
      }
    });
  });
  check_perm_is_permutation("segment_gather_mul", csr);
  return out;
}

template <bool DOT>
at::Tensor gather_pair_cuda(const char* name, const at::Tensor& a, const at::Tensor& b, const at::Tensor& rowptr,
                            const at::Tensor& col, const std::optional<at::Tensor>& perm,
                            const std::optional<at::Tensor>& t_rowptr, const std::optional<at::Tensor>& t_col,
                            const std::optional<at::Tensor>& t_perm) {
  const PairArgs m = check_gather_pair(name, a, b, rowptr, col, perm, t_rowptr, t_col, t_perm);
  const CsrArgs& csr = m.csr;
  const c10::cuda::CUDAGuard guard(a.device());
  auto out = at::empty({csr.nnz, DOT ? int64_t(1) : m.C}, a.options());
  if (csr.rows == 0 || csr.nnz == 0 || (!DOT && m.C == 0)) return out;
  auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_INDEX_TYPES(csr.rowptr.scalar_type(), "gather_pair_cuda", [&] {
    const index_t* rp = csr.rowptr.const_data_ptr<index_t>();
    const index_t* cl = csr.col.const_data_ptr<index_t>();
    const index_t* pm = csr.perm.defined() ? csr.perm.const_data_ptr<index_t>() : nullptr;
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, a.scalar_type(), "gather_pair_cuda", [&] {
      const scalar_t* ap = m.a.const_data_ptr<scalar_t>();
      const scalar_t* bp = m.b.const_data_ptr<scalar_t>();
      scalar_t* op = out.data_ptr<scalar_t>();
      const bool vec = can_vectorise<scalar_t>(m.C, {ap, bp, DOT ? nullptr : op});
      auto launch = [&](auto v_tag) {
        constexpr int V = decltype(v_tag)::value;
        if constexpr (DOT) {
          gather_dot_kernel<scalar_t, index_t, V><<<blocks_for(csr.rows, 32), kThreads, 0, stream>>>(
              ap, bp, rp, cl, pm, op, csr.rows, m.C, csr.cols, csr.nnz);
        } else {
          const int lanes = lanes_for(m.C / V);
          gather_mul_kernel<scalar_t, index_t, V><<<blocks_for(csr.rows, lanes), kThreads, 0, stream>>>(
              ap, bp, rp, cl, pm, op, csr.rows, m.C, csr.cols, csr.nnz, lanes);
        }
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      };
      if (vec)
        launch(std::integral_constant<int, kMaxVec<scalar_t>>{});
      else
        launch(std::integral_constant<int, 1>{});
    });
  });
  // in range but repeated edge ids would leave rows of `out` unwritten
  check_perm_is_permutation(name, csr);
  return out;
}

at::Tensor gather_mul_csr_cuda(const at::Tensor& a, const at::Tensor& b, const at::Tensor& rowptr,
                               const at::Tensor& col, const std::optional<at::Tensor>& perm,
                               const std::optional<at::Tensor>& t_rowptr, const std::optional<at::Tensor>& t_col,
                               const std::optional<at::Tensor>& t_perm) {
  return gather_pair_cuda<false>("gather_mul_csr", a, b, rowptr, col, perm, t_rowptr, t_col, t_perm);
}

at::Tensor gather_dot_csr_cuda(const at::Tensor& a, const at::Tensor& b, const at::Tensor& rowptr,
                               const at::Tensor& col, const std::optional<at::Tensor>& perm,
                               const std::optional<at::Tensor>& t_rowptr, const std::optional<at::Tensor>& t_col,
                               const std::optional<at::Tensor>& t_perm) {
  return gather_pair_cuda<true>("gather_dot_csr", a, b, rowptr, col, perm, t_rowptr, t_col, t_perm);
}

}  // namespace

TORCH_LIBRARY_IMPL(scalegmn, CUDA, m) {
  m.impl("segment_gather_mul", &segment_gather_mul_cuda);
  m.impl("gather_mul_csr", &gather_mul_csr_cuda);
  m.impl("gather_dot_csr", &gather_dot_csr_cuda);
}

}  // namespace scalegmn
