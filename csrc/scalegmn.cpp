// The one schema registry of the scalegmn op library, plus the stub that lets
// `from scalegmn_ext import _C` load this shared object (which runs the registrations).
#include <Python.h>
#include <torch/library.h>

extern "C" {
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
}

TORCH_LIBRARY(scalegmn, m) {
  // Batched graph construction from per-layer weights [B, out, in(, kh, kw)] and biases [B, out].
  // Returns node features [B, N, 1] and edge features [B, E, max_kh * max_kw].
  m.def(
      "weights_to_graph(Tensor[] weights, Tensor[] biases, SymInt max_kh, SymInt max_kw, "
      "bool dense_centre, float input_value) -> (Tensor, Tensor)");
  // The inverse (and the backward of weights_to_graph): graph features -> weights, biases.
  m.def(
      "graph_to_weights(Tensor node, Tensor edge, SymInt[] layout, int[] kernel_h, int[] kernel_w, "
      "bool[] is_conv, SymInt max_kh, SymInt max_kw, bool dense_centre) -> (Tensor[], Tensor[])");
}
