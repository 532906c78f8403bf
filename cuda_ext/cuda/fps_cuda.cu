// Farthest point sampling on CUDA: one block of kFpsThreads threads per cloud. Each step, every
// thread updates the running minimum distance of its strided points and keeps its first
// maximum; a warp-shuffle + shared-memory reduction then picks the largest value, ties to the
// lowest index, like the reference's argmax. With a tie tolerance (tie_rtol > 0) a second
// reduction takes the lowest index whose distance is within tie_rtol * max|x| of the largest.
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
    fps_kernel(const T* __restrict__ points, int N, int npoint, int start, double tie_rtol,
               T* __restrict__ mind, int64_t* __restrict__ out) {
  __shared__ T wv[kWarps];
  __shared__ int wi[kWarps];
  __shared__ int chosen;
  __shared__ T best_value;
  __shared__ T tol;
  const int b = blockIdx.x;
  const T* P = points + static_cast<int64_t>(b) * N * 3;
  T* D = mind + static_cast<int64_t>(b) * N;
  int64_t* O = out + static_cast<int64_t>(b) * npoint;
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  if (tie_rtol > 0) {  // tol = tie_rtol * max|x|, max|x|^2 accumulated as (x*x + y*y) + z*z
    T r2 = T(0);
    for (int j = threadIdx.x; j < N; j += kFpsThreads) {
      const T d = sqdist(P[j * 3], P[j * 3 + 1], P[j * 3 + 2]);
      r2 = d > r2 ? d : r2;
    }
    for (int off = 16; off > 0; off >>= 1) {
      const T o = __shfl_down_sync(0xffffffffu, r2, off);
      r2 = o > r2 ? o : r2;
    }
    if (lane == 0) wv[warp] = r2;
    __syncthreads();
    if (threadIdx.x == 0) {
      T m = T(0);
      for (int w = 0; w < kWarps; ++w) m = wv[w] > m ? wv[w] : m;
      tol = static_cast<T>(tie_rtol) * sqrt(m);
    }
    __syncthreads();
  }
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
      if (lane == 0) {
        chosen = bi < N ? bi : 0;  // bi == N only with NaN coordinates
        best_value = bv;
      }
    }
    __syncthreads();
    if (tie_rtol > 0) {  // lowest index with sqrt(mind) >= sqrt(best) - tol
      const T t = sqrt(best_value) - tol;
      const T thr = t > T(0) ? t * t : T(-1);
      int li = N;
      for (int j = threadIdx.x; j < N && li == N; j += kFpsThreads) {
        if (D[j] >= thr) li = j;  // this thread's first candidate
      }
      for (int off = 16; off > 0; off >>= 1) {
        const int o = __shfl_down_sync(0xffffffffu, li, off);
        li = o < li ? o : li;
      }
      __syncthreads();  // every thread has read best_value / wi from the previous step
      if (lane == 0) wi[warp] = li;
      __syncthreads();
      if (threadIdx.x == 0) {
        int m = N;
        for (int w = 0; w < kWarps; ++w) m = wi[w] < m ? wi[w] : m;
        if (m < N) chosen = m;
      }
      __syncthreads();
    }
    last = chosen;
    __syncthreads();  // `chosen` is rewritten next step
  }
}

at::Tensor fps_cuda(const at::Tensor& points, int64_t npoint, int64_t start, double tie_rtol) {
  POINTLIB_CHECK_CLOUD(points);
  POINTLIB_CHECK_DEVICE(points, c10::DeviceType::CUDA);
  const int64_t B = points.size(0), N = points.size(1);
  POINTLIB_CHECK_SIZE(N, "N");
  TORCH_CHECK(B <= std::numeric_limits<int32_t>::max(), "fps: too many clouds, B=", B);
  TORCH_CHECK(npoint >= 1 && npoint <= N, "fps: npoint=", npoint, " must be in [1, N=", N, "]");
  TORCH_CHECK(start >= 0 && start < N, "fps: start=", start, " must be in [0, N=", N, ")");
  TORCH_CHECK(tie_rtol >= 0, "fps: tie_rtol=", tie_rtol, " must be >= 0");
  const c10::cuda::CUDAGuard guard(points.device());
  const at::Tensor p = points.contiguous();
  at::Tensor idx = at::empty({B, npoint}, points.options().dtype(at::kLong));
  if (B == 0) return idx;
  at::Tensor mind = at::full({B, N}, std::numeric_limits<double>::infinity(), points.options());
  AT_DISPATCH_FLOATING_TYPES(p.scalar_type(), "pointlib_fps_cuda", [&] {
    fps_kernel<scalar_t><<<static_cast<unsigned>(B), kFpsThreads, 0,
                           c10::cuda::getCurrentCUDAStream()>>>(
        p.data_ptr<scalar_t>(), static_cast<int>(N), static_cast<int>(npoint),
        static_cast<int>(start), tie_rtol, mind.data_ptr<scalar_t>(), idx.data_ptr<int64_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return idx;
}

}  // namespace
}  // namespace cuda
}  // namespace pointlib

TORCH_LIBRARY_IMPL(pointlib, CUDA, m) { m.impl("fps", &pointlib::cuda::fps_cuda); }
