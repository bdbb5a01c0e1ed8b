#include "segment_gather_mul.h"

#include <ATen/Dispatch.h>

#include <vector>

namespace scalegmn {
namespace {

void check_index(const char* op, const char* name, const at::Tensor& t, at::ScalarType dtype, const at::Device& device,
                 int64_t numel) {
  TORCH_CHECK(t.dim() == 1, op, ": ", name, " must be 1-D [", numel, "], got shape ", t.sizes());
  TORCH_CHECK(t.scalar_type() == dtype, op, ": ", name, " must have the index dtype of rowptr (", dtype, "), got ",
              t.scalar_type());
  TORCH_CHECK(t.device() == device, op, ": ", name, " is on ", t.device(), ", expected ", device);
  TORCH_CHECK(t.numel() == numel, op, ": ", name, " must have ", numel, " entries, got ", t.numel());
}

}  // namespace

CsrArgs check_csr(const char* op, const at::Tensor& rowptr, const at::Tensor& col,
                  const std::optional<at::Tensor>& perm, const std::optional<at::Tensor>& t_rowptr,
                  const std::optional<at::Tensor>& t_col, const std::optional<at::Tensor>& t_perm, int64_t n_cols,
                  const at::Device& device) {
  TORCH_CHECK(rowptr.dim() == 1 && rowptr.numel() >= 1, op,
              ": rowptr must be 1-D [N_dst + 1] with at least one entry, got shape ", rowptr.sizes());
  const auto dtype = rowptr.scalar_type();
  TORCH_CHECK(dtype == at::kLong || dtype == at::kInt, op, ": rowptr must be int64 or int32, got ", dtype);
  TORCH_CHECK(rowptr.device() == device, op, ": rowptr is on ", rowptr.device(), ", expected ", device);
  TORCH_CHECK(col.dim() == 1, op, ": col must be 1-D [E], got shape ", col.sizes());
  CsrArgs a;
  a.rows = rowptr.numel() - 1;
  a.nnz = col.numel();
  a.cols = n_cols;
  // rowptr[0] = 0 and rowptr[rows] = E: with no rows there can be no edges. Checked here from
  // the shapes because the kernels return early for rows == 0 without reading rowptr.
  TORCH_CHECK(a.rows > 0 || a.nnz == 0, op, ": rowptr has no rows (shape [1]) but col holds E = ", a.nnz,
              " edges; rowptr must be [N_dst + 1] with rowptr[-1] = E");
  check_index(op, "col", col, dtype, device, a.nnz);
  a.rowptr = rowptr.contiguous();
  a.col = col.contiguous();
  if (perm.has_value()) {
    check_index(op, "perm", *perm, dtype, device, a.nnz);
    a.perm = perm->contiguous();
  }
  TORCH_CHECK(t_rowptr.has_value() == t_col.has_value(), op,
              ": t_rowptr and t_col must be given together (or both None)");
  TORCH_CHECK(t_rowptr.has_value() || !t_perm.has_value(), op, ": t_perm given without t_rowptr/t_col");
  if (t_rowptr.has_value()) {
    check_index(op, "t_rowptr", *t_rowptr, dtype, device, n_cols + 1);
    check_index(op, "t_col", *t_col, dtype, device, a.nnz);
    if (t_perm.has_value()) check_index(op, "t_perm", *t_perm, dtype, device, a.nnz);
  }
  return a;
}

void check_features(const char* op, const char* name, const at::Tensor& t, const at::Tensor& like) {
  TORCH_CHECK(t.dim() == 2, op, ": ", name, " must be 2-D [rows, C], got shape ", t.sizes());
  TORCH_CHECK(at::isFloatingType(t.scalar_type()), op, ": ", name, " must be a floating tensor, got ", t.scalar_type());
  TORCH_CHECK(t.scalar_type() == like.scalar_type() && t.device() == like.device(), op, ": ", name, " is ",
              t.scalar_type(), " on ", t.device(), ", expected ", like.scalar_type(), " on ", like.device());
}

SegmentGatherMulArgs check_segment_gather_mul(const at::Tensor& x, const at::Tensor& edge, const at::Tensor& rowptr,
                                              const at::Tensor& col, const std::optional<at::Tensor>& perm,
                                              const std::optional<at::Tensor>& t_rowptr,
                                              const std::optional<at::Tensor>& t_col,
                                              const std::optional<at::Tensor>& t_perm) {
  constexpr const char* op = "segment_gather_mul";
  check_features(op, "x", x, x);
  check_features(op, "edge", edge, x);
  SegmentGatherMulArgs m;
  m.csr = check_csr(op, rowptr, col, perm, t_rowptr, t_col, t_perm, x.size(0), x.device());
  m.C = x.size(1);
  TORCH_CHECK(edge.size(0) == m.csr.nnz && (edge.size(1) == m.C || edge.size(1) == 1), op, ": edge must be [E, C] = [",
              m.csr.nnz, ", ", m.C, "] or [E, 1] (one scalar weight ", "per edge; E = col.numel()), got shape ",
              edge.sizes());
  m.bcast = edge.size(1) == 1 && m.C != 1;
  m.x = x.contiguous();
  m.edge = edge.contiguous();
  return m;
}

PairArgs check_gather_pair(const char* op, const at::Tensor& a, const at::Tensor& b, const at::Tensor& rowptr,
                           const at::Tensor& col, const std::optional<at::Tensor>& perm,
                           const std::optional<at::Tensor>& t_rowptr, const std::optional<at::Tensor>& t_col,
                           const std::optional<at::Tensor>& t_perm) {
  check_features(op, "a", a, a);
  check_features(op, "b", b, a);
  PairArgs m;
  m.csr = check_csr(op, rowptr, col, perm, t_rowptr, t_col, t_perm, b.size(0), a.device());
  m.C = a.size(1);
  TORCH_CHECK(a.size(0) == m.csr.rows, op, ": a must have one row per CSR row (rowptr.numel() - 1 = ", m.csr.rows,
              "), got shape ", a.sizes());
  TORCH_CHECK(b.size(1) == m.C, op, ": b must have the ", m.C, " channels of a, got shape ", b.sizes());
  m.a = a.contiguous();
  m.b = b.contiguous();
  return m;
}

void check_perm_is_permutation(const char* op, const CsrArgs& csr) {
  if (!csr.perm.defined() || csr.nnz == 0) return;
  if (csr.perm.is_cpu()) {
    // E values in [0, E) form a permutation iff none repeats: one pass with a seen-flag per id.
    std::vector<uint8_t> seen(static_cast<size_t>(csr.nnz), 0);
    AT_DISPATCH_INDEX_TYPES(csr.perm.scalar_type(), "check_perm_is_permutation", [&] {
      const index_t* pm = csr.perm.const_data_ptr<index_t>();
      for (int64_t p = 0; p < csr.nnz; ++p) {
        const int64_t e = static_cast<int64_t>(pm[p]);
        if (e < 0 || e >= csr.nnz) continue;  // out of range: reported by raise_bad_csr
        TORCH_CHECK(!seen[e], op, ": perm must be a permutation of [0, E = ", csr.nnz, "), but perm[", p, "] = ", e,
                    " repeats an earlier entry");
        seen[e] = 1;
      }
    });
    return;
  }
  // Device tensors: mark every id that occurs and assert (on the device, no host sync) that
  // all were marked. Runs after the kernels' own range asserts on the same stream.
  at::Tensor seen = at::zeros({csr.nnz}, csr.perm.options().dtype(at::kBool));
  seen.index_fill_(0, csr.perm.to(at::kLong), true);
  at::_assert_async(seen.all(), "perm must be a permutation of [0, E) (every edge id exactly once)");
}

void raise_bad_csr(const char* op, const CsrArgs& csr, const char* cols_name) {
  // Slow path, only after a kernel saw bad indices: find the first offender for the message.
  const auto rp = csr.rowptr.to(at::kLong);
  TORCH_CHECK(rp[0].item<int64_t>() == 0, op, ": rowptr[0] must be 0, got ", rp[0].item<int64_t>());
  TORCH_CHECK(rp[csr.rows].item<int64_t>() == csr.nnz, op, ": rowptr[-1] must equal the number of ",
              "edges (col.numel() = ", csr.nnz, "), got ", rp[csr.rows].item<int64_t>());
  if (csr.rows > 0) {
    const auto dec = (rp.slice(0, 1) < rp.slice(0, 0, csr.rows)).nonzero();
    TORCH_CHECK(dec.numel() == 0, op, ": rowptr must be non-decreasing, but rowptr[", dec[0].item<int64_t>() + 1,
                "] < rowptr[", dec[0].item<int64_t>(), "]");
  }
  const auto c = csr.col.to(at::kLong);
  const auto bad_c = ((c < 0) | (c >= csr.cols)).nonzero();
  TORCH_CHECK(bad_c.numel() == 0, op, ": col[", bad_c[0].item<int64_t>(),
              "] = ", c[bad_c[0].item<int64_t>()].item<int64_t>(), " is out of range for ", cols_name, " with ",
              csr.cols, " rows");
  if (csr.perm.defined()) {
    const auto pm = csr.perm.to(at::kLong);
    const auto bad_p = ((pm < 0) | (pm >= csr.nnz)).nonzero();
    TORCH_CHECK(bad_p.numel() == 0, op, ": perm[", bad_p[0].item<int64_t>(),
                "] = ", pm[bad_p[0].item<int64_t>()].item<int64_t>(), " is out of range [0, ", csr.nnz, ")");
  }
  TORCH_CHECK(false, op, ": invalid CSR indices");
}

}  // namespace scalegmn
