// Farthest point sampling per graph of ragged rows on CUDA (semantics: fps_ragged in
// pointlib/ops/reference.py): one block of kThreadsFps threads per graph, rows of any D <= 64.
// Each step the current sample's coordinates are staged in shared memory, every thread updates
// the running minima of its strided rows (a (N,) scratch tensor) and keeps its first maximum,
// and a shared-memory reduction picks the largest value, ties to the lowest row.
#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/full.h>
#include <torch/library.h>

#include <limits>
#include <vector>

#include "cuda/cuda_common.cuh"
#include "ragged_checks.h"

namespace pointlib {
namespace cuda {
namespace {

constexpr int kThreadsFps = 256;
constexpr int kMaxDFps = 64;

template <typename T>
__global__ void __launch_bounds__(kThreadsFps)
    fps_ragged_kernel(const T* __restrict__ points, const int64_t* __restrict__ ptr,
                      const int64_t* __restrict__ out_ptr, const int64_t* __restrict__ start,
                      int D, T* __restrict__ mind, int64_t* __restrict__ out) {
  __shared__ T centre[kMaxDFps];
  __shared__ T sv[kThreadsFps];
  __shared__ int64_t si[kThreadsFps];
  const int b = blockIdx.x;
  const int64_t p0 = ptr[b], n = ptr[b + 1] - ptr[b];
  const int64_t o0 = out_ptr[b], want = out_ptr[b + 1] - out_ptr[b];
  if (want <= 0) return;
  T* md = mind + p0;
  int64_t last = start[b];
  for (int64_t it = 0; it < want; ++it) {
    if (threadIdx.x == 0) out[o0 + it] = p0 + last;
    if (it + 1 == want) break;
    for (int c = threadIdx.x; c < D; c += blockDim.x) centre[c] = points[(p0 + last) * D + c];
    __syncthreads();
    T bv = T(-1);
    int64_t bi = n;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
      const T* r = points + (p0 + j) * D;
      T diff = centre[0] - r[0];
      T d = diff * diff;
      for (int c = 1; c < D; ++c) {
        diff = centre[c] - r[c];
        d = d + diff * diff;
      }
      const T m = d < md[j] ? d : md[j];
      md[j] = m;
      if (m > bv) {  // this thread's rows ascend: keep its first maximum
        bv = m;
        bi = j;
      }
    }
    sv[threadIdx.x] = bv;
    si[threadIdx.x] = bi;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
      if (threadIdx.x < s) {
        const T ov = sv[threadIdx.x + s];
        const int64_t oi = si[threadIdx.x + s];
        if (ov > sv[threadIdx.x] || (ov == sv[threadIdx.x] && oi < si[threadIdx.x])) {
          sv[threadIdx.x] = ov;
          si[threadIdx.x] = oi;
        }
      }
      __syncthreads();
    }
    last = si[0] < n ? si[0] : 0;
    __syncthreads();  // sv/si/centre are rewritten next step
  }
}

at::Tensor fps_ragged_cuda(const at::Tensor& points, const at::Tensor& ptr,
                           const at::Tensor& out_ptr, const at::Tensor& start) {
  POINTLIB_CHECK_ROWS(points);
  POINTLIB_CHECK_DEVICE(points, c10::DeviceType::CUDA);
  POINTLIB_CHECK_PTR(ptr, points);
  POINTLIB_CHECK_PTR(out_ptr, points);
  POINTLIB_CHECK_SIZE(points.size(0), "N");
  TORCH_CHECK(points.size(1) <= kMaxDFps, "fps_ragged (cuda backend): D=", points.size(1),
              " exceeds MAX_D=", kMaxDFps);
  TORCH_CHECK(out_ptr.size(0) == ptr.size(0), "out_ptr must have ", ptr.size(0), " entries");
  TORCH_CHECK(start.dim() == 1 && start.size(0) == ptr.size(0) - 1 &&
                  start.scalar_type() == at::kLong && start.device() == points.device(),
              "start must be an int64 tensor of shape (B,) on the points' device");
  const int64_t N = points.size(0), B = ptr.size(0) - 1;
  TORCH_CHECK(B <= std::numeric_limits<int32_t>::max(), "fps_ragged: too many graphs");
  const at::Tensor hp = ptr.to(at::kCPU), ho = out_ptr.to(at::kCPU), hs = start.to(at::kCPU);
  const int64_t *p = hp.data_ptr<int64_t>(), *o = ho.data_ptr<int64_t>(),
                *s = hs.data_ptr<int64_t>();
  TORCH_CHECK(p[0] == 0 && p[B] == N && o[0] == 0, "ptr must run from 0 to N=", N,
              " and out_ptr start at 0");
  for (int64_t b = 0; b < B; ++b) {
    const int64_t n = p[b + 1] - p[b], want = o[b + 1] - o[b];
    TORCH_CHECK(n >= 0 && want >= 0 && want <= n, "graph ", b, ": ", want, " samples of ", n);
    TORCH_CHECK(want == 0 || (s[b] >= 0 && s[b] < n), "graph ", b, ": start outside the graph");
  }
  const c10::cuda::CUDAGuard guard(points.device());
  const at::Tensor pc = points.contiguous();
  at::Tensor idx = at::empty({o[B]}, points.options().dtype(at::kLong));
  if (o[B] == 0 || B == 0) return idx;
  at::Tensor mind = at::full({N}, std::numeric_limits<double>::infinity(), points.options());
  const at::Tensor dp = ptr.contiguous(), dop = out_ptr.contiguous(), ds = start.contiguous();
  AT_DISPATCH_FLOATING_TYPES(pc.scalar_type(), "pointlib_fps_ragged_cuda", [&] {
    fps_ragged_kernel<scalar_t><<<static_cast<unsigned>(B), kThreadsFps, 0,
                                  c10::cuda::getCurrentCUDAStream()>>>(
        pc.data_ptr<scalar_t>(), dp.data_ptr<int64_t>(), dop.data_ptr<int64_t>(),
        ds.data_ptr<int64_t>(), static_cast<int>(pc.size(1)), mind.data_ptr<scalar_t>(),
        idx.data_ptr<int64_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return idx;
}

}  // namespace
}  // namespace cuda
}  // namespace pointlib

TORCH_LIBRARY_IMPL(pointlib, CUDA, m) { m.impl("fps_ragged", &pointlib::cuda::fps_ragged_cuda); }
