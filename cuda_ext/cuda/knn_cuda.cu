// k nearest neighbours on CUDA: one thread per query scans the points in index order through
// shared-memory tiles and keeps a sorted insertion buffer of KMAX entries in registers/local
// memory (KMAX is the smallest of 16, 32, 64, 128, 256 that holds k; larger k is refused with a
// TORCH_CHECK). A candidate enters only with dist2 strictly below the current k-th, so equal
// distances keep the lower index, as in the reference.
#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include "cuda/cuda_common.cuh"

namespace pointlib {
namespace cuda {
namespace {

constexpr int64_t kMaxK = 256;
constexpr int kTile = 256;  // points staged in shared memory per step

template <typename T, int KMAX>
__global__ void knn_kernel(const T* __restrict__ points, const T* __restrict__ queries, int N,
                           int M, int k, int64_t* __restrict__ out_idx, T* __restrict__ out_d2) {
  __shared__ T sx[kTile], sy[kTile], sz[kTile];
  const int b = blockIdx.y;
  const int m = blockIdx.x * blockDim.x + threadIdx.x;
  const bool active = m < M;
  const T* P = points + static_cast<int64_t>(b) * N * 3;
  T qx = 0, qy = 0, qz = 0;
  if (active) {
    const T* q = queries + (static_cast<int64_t>(b) * M + m) * 3;
    qx = q[0];
    qy = q[1];
    qz = q[2];
  }
  T bd[KMAX];
  int bi[KMAX];
  int cnt = 0;
  for (int t0 = 0; t0 < N; t0 += kTile) {
    const int tn = min(kTile, N - t0);
    for (int s = threadIdx.x; s < tn; s += blockDim.x) {
      sx[s] = P[(t0 + s) * 3];
      sy[s] = P[(t0 + s) * 3 + 1];
      sz[s] = P[(t0 + s) * 3 + 2];
    }
    __syncthreads();
    if (active) {
      for (int s = 0; s < tn; ++s) {
        const T d = sqdist(qx - sx[s], qy - sy[s], qz - sz[s]);
        if (cnt < k || d < bd[k - 1]) {  // strict: an equal distance keeps the lower index
          int p = cnt < k ? cnt++ : k - 1;
          while (p > 0 && bd[p - 1] > d) {
            bd[p] = bd[p - 1];
            bi[p] = bi[p - 1];
            --p;
          }
          bd[p] = d;
          bi[p] = t0 + s;
        }
      }
    }
    __syncthreads();
  }
  if (active) {
    const int64_t o = (static_cast<int64_t>(b) * M + m) * k;
    for (int i = 0; i < k; ++i) {
      out_idx[o + i] = bi[i];
      out_d2[o + i] = bd[i];
    }
  }
}

template <typename T, int KMAX>
void launch(const at::Tensor& p, const at::Tensor& q, int64_t k, at::Tensor& idx, at::Tensor& d2) {
  const int64_t B = p.size(0), N = p.size(1), M = q.size(1);
  const dim3 grid(static_cast<unsigned>((M + kThreads - 1) / kThreads), static_cast<unsigned>(B));
  knn_kernel<T, KMAX><<<grid, kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
      p.data_ptr<T>(), q.data_ptr<T>(), static_cast<int>(N), static_cast<int>(M),
      static_cast<int>(k), idx.data_ptr<int64_t>(), d2.data_ptr<T>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

std::tuple<at::Tensor, at::Tensor> knn_cuda(const at::Tensor& points, const at::Tensor& queries,
                                            int64_t k) {
  POINTLIB_CHECK_CLOUD(points);
  POINTLIB_CHECK_CLOUD(queries);
  POINTLIB_CHECK_PAIR(points, queries);
  POINTLIB_CHECK_DEVICE(points, c10::DeviceType::CUDA);
  const int64_t B = points.size(0), N = points.size(1), M = queries.size(1);
  POINTLIB_CHECK_SIZE(N, "N");
  POINTLIB_CHECK_SIZE(M, "M");
  check_batch(B);
  TORCH_CHECK(k >= 1 && k <= N, "knn: k=", k, " must be in [1, N=", N, "]");
  TORCH_CHECK(k <= kMaxK, "knn (cuda backend): k=", k, " exceeds MAX_K=", kMaxK,
              " of the per-thread buffer; use backend='torch' for larger k");
  const c10::cuda::CUDAGuard guard(points.device());
  const at::Tensor p = points.contiguous();
  const at::Tensor q = queries.contiguous();
  at::Tensor idx = at::empty({B, M, k}, points.options().dtype(at::kLong));
  at::Tensor d2 = at::empty({B, M, k}, points.options());
  if (B * M == 0) return {idx, d2};
  AT_DISPATCH_FLOATING_TYPES(p.scalar_type(), "pointlib_knn_cuda", [&] {
    if (k <= 16) {
      launch<scalar_t, 16>(p, q, k, idx, d2);
    } else if (k <= 32) {
      launch<scalar_t, 32>(p, q, k, idx, d2);
    } else if (k <= 64) {
      launch<scalar_t, 64>(p, q, k, idx, d2);
    } else if (k <= 128) {
      launch<scalar_t, 128>(p, q, k, idx, d2);
    } else {
      launch<scalar_t, 256>(p, q, k, idx, d2);
    }
  });
  return {idx, d2};
}

}  // namespace
}  // namespace cuda
}  // namespace pointlib

TORCH_LIBRARY_IMPL(pointlib, CUDA, m) { m.impl("knn", &pointlib::cuda::knn_cuda); }
