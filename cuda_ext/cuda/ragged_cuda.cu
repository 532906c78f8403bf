// Any-dimension, ragged kNN and ball query on CUDA (semantics: knn_ragged / ball_query_ragged in
// pointlib/ops/reference.py). One thread per query (rows sorted by graph; the query's graph is
// found by a binary search in ptr_y) scans the rows of its graph in order. The query's D <=
// kMaxD coordinates sit in registers/local memory; distances accumulate left to right in the
// input dtype (--fmad=false). kNN keeps a sorted insertion buffer of KMAX entries (strict `<`:
// ties keep the lower row), the ball query stops after nsample members. Correctness first: no
// shared-memory tiling (queries of one block may belong to different graphs).
#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <cmath>
#include <limits>
#include <vector>

#include "cuda/cuda_common.cuh"
#include "ragged_checks.h"

namespace pointlib {
namespace cuda {
namespace {

constexpr int64_t kMaxK = 256;
constexpr int kMaxD = 64;

// Graph of row m: the last b with ptr[b] <= m (B + 1 offsets).
__device__ __forceinline__ int graph_of(const int64_t* __restrict__ ptr, int B, int64_t m) {
  int lo = 0, hi = B;  // invariant: ptr[lo] <= m < ptr[hi]
  while (hi - lo > 1) {
    const int mid = (lo + hi) >> 1;
    if (ptr[mid] <= m) {
      lo = mid;
    } else {
      hi = mid;
    }
  }
  return lo;
}

template <typename T>
__device__ __forceinline__ T row_dist2(const T* q, const T* __restrict__ p, int D) {
  T diff = q[0] - p[0];
  T acc = diff * diff;
  for (int c = 1; c < D; ++c) {
    diff = q[c] - p[c];
    acc = acc + diff * diff;
  }
  return acc;
}

template <typename T, int KMAX>
__global__ void knn_ragged_kernel(const T* __restrict__ points, const T* __restrict__ queries,
                                  const int64_t* __restrict__ ptr_x,
                                  const int64_t* __restrict__ ptr_y, int B, int D, int64_t M,
                                  int k, int64_t* __restrict__ out_idx, T* __restrict__ out_d2) {
  const int64_t m = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (m >= M) return;
  const int b = graph_of(ptr_y, B, m);
  const int64_t p0 = ptr_x[b], p1 = ptr_x[b + 1];
  T q[kMaxD];
  for (int c = 0; c < D; ++c) q[c] = queries[m * D + c];
  T bd[KMAX];
  int64_t bi[KMAX];
  int cnt = 0;
  for (int64_t j = p0; j < p1; ++j) {
    const T d = row_dist2(q, points + j * D, D);
    if (cnt < k || d < bd[k - 1]) {  // strict: an equal distance keeps the lower row
      int p = cnt < k ? cnt++ : k - 1;
      while (p > 0 && bd[p - 1] > d) {
        bd[p] = bd[p - 1];
        bi[p] = bi[p - 1];
        --p;
      }
      bd[p] = d;
      bi[p] = j;
    }
  }
  for (int i = 0; i < k; ++i) {
    out_idx[m * k + i] = i < cnt ? bi[i] : -1;
    out_d2[m * k + i] = i < cnt ? bd[i] : static_cast<T>(INFINITY);
  }
}

template <typename T>
__global__ void ball_query_ragged_kernel(const T* __restrict__ points,
                                         const T* __restrict__ queries,
                                         const int64_t* __restrict__ ptr_x,
                                         const int64_t* __restrict__ ptr_y, int B, int D,
                                         int64_t M, T r2, int64_t nsample,
                                         int64_t* __restrict__ out) {
  const int64_t m = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (m >= M) return;
  const int b = graph_of(ptr_y, B, m);
  const int64_t p0 = ptr_x[b], p1 = ptr_x[b + 1];
  T q[kMaxD];
  for (int c = 0; c < D; ++c) q[c] = queries[m * D + c];
  int64_t* o = out + m * nsample;
  int64_t cnt = 0;
  for (int64_t j = p0; j < p1 && cnt < nsample; ++j) {
    if (row_dist2(q, points + j * D, D) < r2) o[cnt++] = j;
  }
  for (int64_t s = cnt; s < nsample; ++s) o[s] = -1;
}

// Host copy of the offsets, checked (the kernels index with them).
std::vector<int64_t> checked_ptr(const at::Tensor& ptr, int64_t n, const char* name) {
  const at::Tensor h = ptr.to(at::kCPU).contiguous();
  const int64_t* v = h.data_ptr<int64_t>();
  std::vector<int64_t> out(v, v + h.numel());
  TORCH_CHECK(out.front() == 0 && out.back() == n, name, " must start at 0 and end at ", n);
  for (size_t i = 1; i < out.size(); ++i) {
    TORCH_CHECK(out[i] >= out[i - 1], name, " must be non-decreasing (entry ", i, ")");
  }
  return out;
}

void check_inputs(const at::Tensor& points, const at::Tensor& queries, const at::Tensor& ptr_x,
                  const at::Tensor& ptr_y) {
  POINTLIB_CHECK_ROWS(points);
  POINTLIB_CHECK_ROWS(queries);
  POINTLIB_CHECK_DEVICE(points, c10::DeviceType::CUDA);
  TORCH_CHECK(queries.device() == points.device(), "queries are on ", queries.device(),
              " but points are on ", points.device());
  TORCH_CHECK(queries.scalar_type() == points.scalar_type(), "points are ",
              points.scalar_type(), " but queries are ", queries.scalar_type());
  TORCH_CHECK(queries.size(1) == points.size(1), "points have D=", points.size(1),
              " but queries have D=", queries.size(1));
  TORCH_CHECK(points.size(1) <= kMaxD, "ragged ops (cuda backend): D=", points.size(1),
              " exceeds MAX_D=", kMaxD, "; use backend='torch' or 'cpu'");
  POINTLIB_CHECK_PTR(ptr_x, points);
  POINTLIB_CHECK_PTR(ptr_y, points);
  TORCH_CHECK(ptr_x.size(0) == ptr_y.size(0), "ptr_x has ", ptr_x.size(0) - 1,
              " graphs but ptr_y has ", ptr_y.size(0) - 1);
  TORCH_CHECK(ptr_x.size(0) - 1 <= std::numeric_limits<int32_t>::max(), "too many graphs");
  POINTLIB_CHECK_SIZE(points.size(0), "N");
  POINTLIB_CHECK_SIZE(queries.size(0), "M");
  checked_ptr(ptr_x, points.size(0), "ptr_x");
  checked_ptr(ptr_y, queries.size(0), "ptr_y");
}

template <typename T, int KMAX>
void launch_knn(const at::Tensor& p, const at::Tensor& q, const at::Tensor& px,
                const at::Tensor& py, int64_t k, at::Tensor& idx, at::Tensor& d2) {
  const int64_t M = q.size(0);
  const unsigned blocks = static_cast<unsigned>((M + kThreads - 1) / kThreads);
  knn_ragged_kernel<T, KMAX><<<blocks, kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
      p.data_ptr<T>(), q.data_ptr<T>(), px.data_ptr<int64_t>(), py.data_ptr<int64_t>(),
      static_cast<int>(px.size(0) - 1), static_cast<int>(p.size(1)), M, static_cast<int>(k),
      idx.data_ptr<int64_t>(), d2.data_ptr<T>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

std::tuple<at::Tensor, at::Tensor> knn_ragged_cuda(const at::Tensor& points,
                                                   const at::Tensor& queries,
                                                   const at::Tensor& ptr_x,
                                                   const at::Tensor& ptr_y, int64_t k) {
  check_inputs(points, queries, ptr_x, ptr_y);
  TORCH_CHECK(k >= 1, "knn_ragged: k=", k, " must be >= 1");
  TORCH_CHECK(k <= kMaxK, "knn_ragged (cuda backend): k=", k, " exceeds MAX_K=", kMaxK,
              "; use backend='torch' for larger k");
  const c10::cuda::CUDAGuard guard(points.device());
  const at::Tensor p = points.contiguous(), q = queries.contiguous();
  const at::Tensor px = ptr_x.contiguous(), py = ptr_y.contiguous();
  const int64_t M = q.size(0);
  at::Tensor idx = at::empty({M, k}, points.options().dtype(at::kLong));
  at::Tensor d2 = at::empty({M, k}, points.options());
  if (M == 0) return {idx, d2};
  AT_DISPATCH_FLOATING_TYPES(p.scalar_type(), "pointlib_knn_ragged_cuda", [&] {
    if (k <= 16) {
      launch_knn<scalar_t, 16>(p, q, px, py, k, idx, d2);
    } else if (k <= 32) {
      launch_knn<scalar_t, 32>(p, q, px, py, k, idx, d2);
    } else if (k <= 64) {
      launch_knn<scalar_t, 64>(p, q, px, py, k, idx, d2);
    } else {
      launch_knn<scalar_t, 256>(p, q, px, py, k, idx, d2);
    }
  });
  return {idx, d2};
}

at::Tensor ball_query_ragged_cuda(const at::Tensor& points, const at::Tensor& queries,
                                  const at::Tensor& ptr_x, const at::Tensor& ptr_y, double radius,
                                  int64_t nsample) {
  check_inputs(points, queries, ptr_x, ptr_y);
  TORCH_CHECK(nsample >= 1, "ball_query_ragged: nsample=", nsample, " must be >= 1");
  TORCH_CHECK(radius > 0, "ball_query_ragged: radius=", radius, " must be > 0");
  const c10::cuda::CUDAGuard guard(points.device());
  const at::Tensor p = points.contiguous(), q = queries.contiguous();
  const at::Tensor px = ptr_x.contiguous(), py = ptr_y.contiguous();
  const int64_t M = q.size(0);
  at::Tensor idx = at::empty({M, nsample}, points.options().dtype(at::kLong));
  if (M == 0) return idx;
  const unsigned blocks = static_cast<unsigned>((M + kThreads - 1) / kThreads);
  AT_DISPATCH_FLOATING_TYPES(p.scalar_type(), "pointlib_ball_query_ragged_cuda", [&] {
    const scalar_t r2 = static_cast<scalar_t>(radius * radius);
    ball_query_ragged_kernel<scalar_t><<<blocks, kThreads, 0,
                                         c10::cuda::getCurrentCUDAStream()>>>(
        p.data_ptr<scalar_t>(), q.data_ptr<scalar_t>(), px.data_ptr<int64_t>(),
        py.data_ptr<int64_t>(), static_cast<int>(px.size(0) - 1), static_cast<int>(p.size(1)),
        M, r2, nsample, idx.data_ptr<int64_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return idx;
}

}  // namespace
}  // namespace cuda
}  // namespace pointlib

TORCH_LIBRARY_IMPL(pointlib, CUDA, m) {
  m.impl("knn_ragged", &pointlib::cuda::knn_ragged_cuda);
  m.impl("ball_query_ragged", &pointlib::cuda::ball_query_ragged_cuda);
}
