// Schemas of the any-dimension / ragged ops of pointlib._C (a fragment of the `pointlib`
// library, so that pointlib_ops.cpp stays untouched). Kernels: cpu/ragged_cpu.cpp,
// cpu/fps_ragged_cpu.cpp, cuda/ragged_cuda.cu, cuda/fps_ragged_cuda.cu. Semantics: the *_ragged
// functions of pointlib/ops/reference.py.
#include <torch/library.h>

TORCH_LIBRARY_FRAGMENT(pointlib, m) {
  // points (N,D), queries (M,D) sorted by graph; ptr_x, ptr_y (B+1) int64 offsets; k >= 1
  // -> idx (M,k) int64 global rows (-1 padding), dist2 (M,k) (inf padding).
  m.def("knn_ragged(Tensor points, Tensor queries, Tensor ptr_x, Tensor ptr_y, int k) -> "
        "(Tensor, Tensor)");
  // -> idx (M,nsample) int64: first members by row with dist2 < radius**2, -1 padding.
  m.def("ball_query_ragged(Tensor points, Tensor queries, Tensor ptr_x, Tensor ptr_y, "
        "float radius, int nsample) -> Tensor");
  // points (N,D) sorted by graph, ptr (B+1), out_ptr (B+1) sample offsets, start (B) local
  // -> idx (out_ptr[B],) int64 global rows.
  m.def("fps_ragged(Tensor points, Tensor ptr, Tensor out_ptr, Tensor start) -> Tensor");
}
