// The one schema registry of the scalegmn op library, plus the stub that lets
// `from scalegmn_ext import _C` load this shared object (which runs the registrations).
//
// Every op family F has one name through all layers: schema here, argument checks and
// shape functions in csrc/ops/F.{h,cpp}, kernels in csrc/cpu/F_kernel.cpp and
// csrc/cuda/F_kernel.cu, the Python wrapper (fake kernel + autograd) in scalegmn_ext/ops/F.py,
// the pure-PyTorch oracle in scalegmn_ext/reference/F.py and the tests in python_tests/test_F.py.
#include <Python.h>
#include <torch/library.h>

extern "C" {
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}

TORCH_LIBRARY(scalegmn, m) {
  // ---- Family `graph`.
  // Batched graph construction from per-layer weights [B, out, in(, kh, kw)] and biases [B, out].
  // Returns node features [B, N, 1] and edge features [B, E, max_kh * max_kw].
  m.def(
      "weights_to_graph(Tensor[] weights, Tensor[] biases, SymInt max_kh, SymInt max_kw, "
      "bool dense_centre, float input_value) -> (Tensor, Tensor)");
  // The inverse (and the backward of weights_to_graph): graph features -> weights, biases.
  m.def(
      "graph_to_weights(Tensor node, Tensor edge, SymInt[] layout, int[] kernel_h, int[] kernel_w, "
      "bool[] is_conv, SymInt max_kh, SymInt max_kw, bool dense_centre) -> (Tensor[], Tensor[])");

  // ---- Family `segment_gather_mul`: CSR message passing (contracts in
  // ops/segment_gather_mul.h). rowptr/col/perm: CSR by receiver (perm[p] = edge id of position p, None
  // = identity); t_rowptr/t_col/t_perm: the same edges by sender (used by the backward only).
  // Fused gather * edge -> segment sum: out[i] = sum_p x[col[p]] * edge[perm[p]]; edge [E, C] or
  // [E, 1] (scalar weight per edge). Returns [N_dst, C].
  m.def(
      "segment_gather_mul(Tensor x, Tensor edge, Tensor rowptr, Tensor col, Tensor? perm, "
      "Tensor? t_rowptr, Tensor? t_col, Tensor? t_perm) -> Tensor");
  // Per-edge product out[perm[p]] = a[row(p)] * b[col[p]] -> [E, C] (edge grad of the above).
  m.def(
      "gather_mul_csr(Tensor a, Tensor b, Tensor rowptr, Tensor col, Tensor? perm, "
      "Tensor? t_rowptr, Tensor? t_col, Tensor? t_perm) -> Tensor");
  // Per-edge dot product out[perm[p]] = <a[row(p)], b[col[p]]> -> [E, 1] (edge grad for [E, 1]).
  m.def(
      "gather_dot_csr(Tensor a, Tensor b, Tensor rowptr, Tensor col, Tensor? perm, "
      "Tensor? t_rowptr, Tensor? t_col, Tensor? t_perm) -> Tensor");
  // ---- Family `canonical_segment_sum`, the canonical readout (ops/canonical_segment_sum.h):
  // out[g] = sum_{i in [ptr[g], ptr[g+1]), mask[i]} c(h[i]); mode 0 identity, 1 abs, 2 l2 norm.
  m.def("canonical_segment_sum(Tensor h, Tensor ptr, Tensor? mask, int mode, float eps) -> Tensor");
  m.def(
      "canonical_segment_sum_backward(Tensor grad, Tensor h, Tensor ptr, Tensor? mask, int mode, "
      "float eps) -> Tensor");
  // ---- Family `scale_eq_message`: fused ScaleGMN edge message, dense-layer layout:
  // out[b, o] = sum_i ScaleEq((w_e e[b, o, i]) * hv[b, i]), tiled, recomputed in backward.
  // Returns (out, workspace); save = true fills the workspace with the per-edge GEMM outputs
  // (backward then recomputes only element-wise parts), else it is empty.
  m.def(
      "scale_eq_message(Tensor edge, Tensor hv, Tensor w_e, Tensor w_in, Tensor? b1, Tensor? ln1_w, "
      "Tensor? ln1_b, Tensor w_f, Tensor b_f, Tensor? ln2_w, Tensor? ln2_b, Tensor w_2, Tensor b_2, "
      "int mode, float eps, SymInt tile_edges, bool save) -> (Tensor, Tensor)");
  m.def(
      "scale_eq_message_backward(Tensor grad, Tensor edge, Tensor hv, Tensor w_e, Tensor w_in, "
      "Tensor? b1, Tensor? ln1_w, Tensor? ln1_b, Tensor w_f, Tensor b_f, Tensor? ln2_w, "
      "Tensor? ln2_b, Tensor w_2, Tensor b_2, int mode, float eps, SymInt tile_edges, "
      "Tensor? saved) -> Tensor[]");
  // ---- Family `edge_update`: fused ScaleGMN edge update, dense-layer layout:
  // out[b, o, i] = drop((w_2 SiLU(LN(dst[b, o] + src[b, i])) + b_2) * (w_g e[b, o, i])), tiled,
  // recomputed in backward; drop = hash_dropout with the output's flat indices (p = 0: none).
  m.def(
      "edge_update(Tensor edge, Tensor dst, Tensor src, Tensor? ln_w, Tensor? ln_b, Tensor w_2, "
      "Tensor b_2, Tensor w_g, float p, int seed, SymInt tile_edges) -> Tensor");
  m.def(
      "edge_update_backward(Tensor grad, Tensor edge, Tensor dst, Tensor src, Tensor? ln_w, "
      "Tensor? ln_b, Tensor w_2, Tensor b_2, Tensor w_g, float p, int seed, SymInt tile_edges) "
      "-> Tensor[]");
  // ---- Family `hash_dropout`: counter-based dropout (ops/hash_dropout.h):
  // x * keep(offset + k) / (1 - p), k = flat index; the mask is a hash of (seed, index), so the
  // op is its own backward and nothing is stored.
  m.def("hash_dropout(Tensor x, float p, int seed, int offset) -> Tensor");
}
