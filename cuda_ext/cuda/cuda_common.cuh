// Helpers shared by the CUDA kernels of pointlib._C (compiled with --fmad=false).
// Streams come from c10 (c10::cuda::getCurrentCUDAStream is what at::cuda re-exports); this
// avoids ATen/cuda/CUDAContext.h, which needs the cuSPARSE/cuBLAS headers.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAStream.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

#include "checks.h"

namespace pointlib {
namespace cuda {

// Threads per block of the per-query kernels.
constexpr int kThreads = 256;
// Largest batch size (gridDim.y).
constexpr int64_t kMaxBatch = 65535;

// The contract's distance expression, (dx*dx + dy*dy) + dz*dz, with no FMA contraction
// (--fmad=false), so every product and sum rounds like the reference.
template <typename T>
__device__ __forceinline__ T sqdist(T dx, T dy, T dz) {
  return (dx * dx + dy * dy) + dz * dz;
}

inline void check_batch(int64_t B) {
  TORCH_CHECK(B <= kMaxBatch, "pointlib CUDA kernels support at most ", kMaxBatch,
              " clouds per call, got B=", B, "; split the batch");
}

}  // namespace cuda
}  // namespace pointlib
