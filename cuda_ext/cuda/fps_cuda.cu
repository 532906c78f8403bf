// Farthest point sampling on CUDA: one block of kFpsThreads threads per cloud. Each step, every
// thread updates the running minimum distance of its strided points and keeps its first
// maximum; a warp-shuffle + shared-memory reduction then picks the largest value, ties to the
// lowest index, like the reference's argmax.
#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/full.h>
#include <torch/library.h>

#include <limits>

#include "cuda/cuda_common.cuh"

namespace pointlib {
namespace cuda {
namespace {

constexpr int kFpsThreads = 512;
constexpr int kWarps = kFpsThreads / 32;

// (v, i) is better than (w, j): larger value, ties to the lower index.
template <typename T>
__device__ __forceinline__ bool better(T v, int i, T w, int j) {
  return v > w || (v == w && i < j);
}

template <typename T>
__global__ void __launch_bounds__(kFpsThreads)
    fps_kernel(const T* __restrict__ points, int N, int npoint, int start, T* __restrict__ mind,
               int64_t* __restrict__ out) {
  __shared__ T wv[kWarps];
  __shared__ int wi[kWarps];
  __shared__ int chosen;
  const int b = blockIdx.x;
  const T* P = points + static_cast<int64_t>(b) * N * 3;
  T* D = mind + static_cast<int64_t>(b) * N;
  int64_t* O = out + static_cast<int64_t>(b) * npoint;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  int last = start;
  for (int it = 0; it < npoint; ++it) {
    if (threadIdx.x == 0) O[it] = last;
    const T cx = P[last * 3], cy = P[last * 3 + 1], cz = P[last * 3 + 2];
    T bv = T(-1);  // below every minimum distance (those are >= 0)
    int bi = N;
    for (int j = threadIdx.x; j < N; j += kFpsThreads) {
      const T d = sqdist(cx - P[j * 3], cy - P[j * 3 + 1], cz - P[j * 3 + 2]);
      const T m = d < D[j] ? d : D[j];
      D[j] = m;
      if (m > bv) {  // strict: this thread's indices ascend, keep its first maximum
        bv = m;
        bi = j;
      }
    }
    for (int off = 16; off > 0; off >>= 1) {
      const T ov = __shfl_down_sync(0xffffffffu, bv, off);
      const int oi = __shfl_down_sync(0xffffffffu, bi, off);
      if (better(ov, oi, bv, bi)) {
        bv = ov;
        bi = oi;
      }
    }
    if (lane == 0) {
      wv[warp] = bv;
      wi[warp] = bi;
    }
    __syncthreads();
    if (warp == 0) {
      bv = lane < kWarps ? wv[lane] : T(-1);
      bi = lane < kWarps ? wi[lane] : N;
      for (int off = 16; off > 0; off >>= 1) {
        const T ov = __shfl_down_sync(0xffffffffu, bv, off);
        const int oi = __shfl_down_sync(0xffffffffu, bi, off);
        if (better(ov, oi, bv, bi)) {
          bv = ov;
          bi = oi;
        }
      }
      if (lane == 0) chosen = bi < N ? bi : 0;  // bi == N only with NaN coordinates
    }
    __syncthreads();
    last = chosen;
    __syncthreads();  // `chosen` is rewritten next step
  }
}

at::Tensor fps_cuda(const at::Tensor& points, int64_t npoint, int64_t start) {
  POINTLIB_CHECK_CLOUD(points);
  POINTLIB_CHECK_DEVICE(points, c10::DeviceType::CUDA);
  const int64_t B = points.size(0), N = points.size(1);
  POINTLIB_CHECK_SIZE(N, "N");
  TORCH_CHECK(B <= std::numeric_limits<int32_t>::max(), "fps: too many clouds, B=", B);
  TORCH_CHECK(npoint >= 1 && npoint <= N, "fps: npoint=", npoint, " must be in [1, N=", N, "]");
  TORCH_CHECK(start >= 0 && start < N, "fps: start=", start, " must be in [0, N=", N, ")");
  const c10::cuda::CUDAGuard guard(points.device());
  const at::Tensor p = points.contiguous();
  at::Tensor idx = at::empty({B, npoint}, points.options().dtype(at::kLong));
  if (B == 0) return idx;
  at::Tensor mind = at::full({B, N}, std::numeric_limits<double>::infinity(), points.options());
  AT_DISPATCH_FLOATING_TYPES(p.scalar_type(), "pointlib_fps_cuda", [&] {
    fps_kernel<scalar_t><<<static_cast<unsigned>(B), kFpsThreads, 0,
                           c10::cuda::getCurrentCUDAStream()>>>(
        p.data_ptr<scalar_t>(), static_cast<int>(N), static_cast<int>(npoint),
        static_cast<int>(start), mind.data_ptr<scalar_t>(), idx.data_ptr<int64_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return idx;
}

}  // namespace
}  // namespace cuda
}  // namespace pointlib

TORCH_LIBRARY_IMPL(pointlib, CUDA, m) { m.impl("fps", &pointlib::cuda::fps_cuda); }
