// Ball query on CUDA: one thread per query scans the points in index order and stops after
// nsample members (dist2 < r2, strict). An empty ball is filled with the nearest point (lowest
// index among equally near ones), found by a second scan.
#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include "cuda/cuda_common.cuh"

namespace pointlib {
namespace cuda {
namespace {

template <typename T>
__global__ void ball_query_kernel(const T* __restrict__ points, const T* __restrict__ queries,
                                  int N, int M, T r2, int64_t nsample,
                                  int64_t* __restrict__ out) {
  const int b = blockIdx.y;
  const int m = blockIdx.x * blockDim.x + threadIdx.x;
  if (m >= M) return;
  const T* P = points + static_cast<int64_t>(b) * N * 3;
  const T* q = queries + (static_cast<int64_t>(b) * M + m) * 3;
  const T qx = q[0], qy = q[1], qz = q[2];
  int64_t* o = out + (static_cast<int64_t>(b) * M + m) * nsample;
  int64_t cnt = 0;
  for (int j = 0; j < N && cnt < nsample; ++j) {
    if (sqdist(qx - P[j * 3], qy - P[j * 3 + 1], qz - P[j * 3 + 2]) < r2) o[cnt++] = j;
  }
  int64_t fill = 0;
  if (cnt > 0) {
    fill = o[0];
  } else {
    T best = sqdist(qx - P[0], qy - P[1], qz - P[2]);
    for (int j = 1; j < N; ++j) {
      const T d = sqdist(qx - P[j * 3], qy - P[j * 3 + 1], qz - P[j * 3 + 2]);
      if (d < best) {
        best = d;
        fill = j;
      }
    }
  }
  for (int64_t s = cnt; s < nsample; ++s) o[s] = fill;
}

at::Tensor ball_query_cuda(const at::Tensor& points, const at::Tensor& queries, double radius,
                           int64_t nsample) {
  POINTLIB_CHECK_CLOUD(points);
  POINTLIB_CHECK_CLOUD(queries);
  POINTLIB_CHECK_PAIR(points, queries);
  POINTLIB_CHECK_DEVICE(points, c10::DeviceType::CUDA);
  const int64_t B = points.size(0), N = points.size(1), M = queries.size(1);
  POINTLIB_CHECK_SIZE(N, "N");
  POINTLIB_CHECK_SIZE(M, "M");
  check_batch(B);
  TORCH_CHECK(N >= 1, "ball_query: the point cloud is empty");
  TORCH_CHECK(nsample >= 1, "ball_query: nsample=", nsample, " must be >= 1");
  TORCH_CHECK(radius > 0, "ball_query: radius=", radius, " must be > 0");
  const c10::cuda::CUDAGuard guard(points.device());
  const at::Tensor p = points.contiguous();
  const at::Tensor q = queries.contiguous();
  at::Tensor idx = at::empty({B, M, nsample}, points.options().dtype(at::kLong));
  if (B * M == 0) return idx;
  const dim3 grid(static_cast<unsigned>((M + kThreads - 1) / kThreads), static_cast<unsigned>(B));
  AT_DISPATCH_FLOATING_TYPES(p.scalar_type(), "pointlib_ball_query_cuda", [&] {
    // r2 rounded once to the dtype, like the reference's torch.tensor(radius ** 2, dtype).
    const scalar_t r2 = static_cast<scalar_t>(radius * radius);
    ball_query_kernel<scalar_t><<<grid, kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
        p.data_ptr<scalar_t>(), q.data_ptr<scalar_t>(), static_cast<int>(N),
        static_cast<int>(M), r2, nsample, idx.data_ptr<int64_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return idx;
}

}  // namespace
}  // namespace cuda
}  // namespace pointlib

TORCH_LIBRARY_IMPL(pointlib, CUDA, m) { m.impl("ball_query", &pointlib::cuda::ball_query_cuda); }
