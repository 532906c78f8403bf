// Operator schemas of pointlib._C and the Python module entry point.
//
// Kernels register per device in cpu/*.cpp (TORCH_LIBRARY_IMPL(pointlib, CPU, m)) and
// cuda/*.cu (TORCH_LIBRARY_IMPL(pointlib, CUDA, m)). The exact semantics are those of
// pointlib/ops/reference.py; the Python wrappers in pointlib/ops validate arguments first.
#include <Python.h>
#include <torch/library.h>

#include <string>

#ifdef WITH_CUDA
#include <cuda.h>
#endif

namespace pointlib {

// "cpu;cuda=none" or "cpu;cuda=<major>.<minor>" (the CUDA toolkit the kernels were built with).
std::string build_info() {
  std::string info = "cpu";
#ifdef WITH_CUDA
  info += ";cuda=" + std::to_string(CUDA_VERSION / 1000) + "." +
          std::to_string((CUDA_VERSION % 1000) / 10);
#else
  info += ";cuda=none";
#endif
  return info;
}

}  // namespace pointlib

TORCH_LIBRARY(pointlib, m) {
  // points (B,N,3), queries (B,M,3), 1 <= k <= N -> idx (B,M,k) int64, dist2 (B,M,k).
  m.def("knn(Tensor points, Tensor queries, int k) -> (Tensor, Tensor)");
  // -> idx (B,M,nsample) int64; strict dist2 < radius**2 (rounded once to the dtype).
  m.def("ball_query(Tensor points, Tensor queries, float radius, int nsample) -> Tensor");
  // -> idx (B,npoint) int64; tie_rtol > 0: lowest index within tie_rtol * max|x| of the max.
  m.def("fps(Tensor points, int npoint, int start, float tie_rtol=0.0) -> Tensor");
  m.def("build_info() -> str", &pointlib::build_info);
}

// The library registers itself when the shared object is loaded; `import pointlib._C` only needs
// an (empty) module object.
extern "C" PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {
      PyModuleDef_HEAD_INIT, "_C", "pointlib compiled ops (see torch.ops.pointlib)", -1, nullptr,
  };
  return PyModule_Create(&module_def);
}
