// Ball query on CPU. Clouds of at least 4 blocks are searched through a BlockCloud: only blocks
// whose bounding box comes closer than the radius are scanned (vectorised over kBlock points),
// members are collected and the nsample lowest indices kept, i.e. the first members in index
// order. Small clouds use a plain index-order scan that stops after nsample members. An empty
// ball is filled with the nearest point (lowest index among equally near ones).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <limits>
#include <vector>

#include "checks.h"
#include "cpu/cpu_common.h"

namespace pointlib {
namespace cpu {
namespace {

constexpr int64_t kQueryBlock = 32;

// Index of the nearest point (first minimum) to (qx, qy, qz).
template <typename T>
int64_t nearest(const T* X, const T* Y, const T* Z, int64_t N, T qx, T qy, T qz) {
  int64_t best = 0;
  T bd = std::numeric_limits<T>::infinity();
  for (int64_t j = 0; j < N; ++j) {
    const T d = sqdist(qx - X[j], qy - Y[j], qz - Z[j]);
    if (d < bd) {
      bd = d;
      best = j;
    }
  }
  return best;
}

// Blocked search: collect every member from the blocks whose box can reach within the radius,
// then keep the nsample lowest indices. An empty ball takes the nearest point (lowest index).
template <typename T>
void ball_query_blocked(const BlockCloud<T>& c, T qx, T qy, T qz, T r2, int64_t nsample, T* lb,
                        std::vector<int64_t>& members, int64_t* o) {
  c.lower_bounds(qx, qy, qz, lb);
  int64_t cnt = 0;
  T dd[kBlock];
  for (int64_t blk = 0; blk < c.nblk; ++blk) {
    if (!(lb[blk] < r2)) continue;
    const int64_t s0 = blk * kBlock;
    const T* X = c.x.data() + s0;
    const T* Y = c.y.data() + s0;
    const T* Z = c.z.data() + s0;
    int any = 0;
    for (int64_t l = 0; l < kBlock; ++l) {
      dd[l] = sqdist(qx - X[l], qy - Y[l], qz - Z[l]);
      any |= dd[l] < r2;
    }
    if (!any) continue;
    for (int64_t l = 0; l < kBlock; ++l) {
      if (dd[l] < r2) members[cnt++] = c.id[s0 + l];
    }
  }
  int64_t fill;
  if (cnt == 0) {
    T best = std::numeric_limits<T>::infinity();
    fill = std::numeric_limits<int64_t>::max();
    for (int64_t s = 0; s < c.nblk * kBlock; ++s) {
      const T d = sqdist(qx - c.x[s], qy - c.y[s], qz - c.z[s]);
      if (d < best || (d == best && c.id[s] < fill)) {
        best = d;
        fill = c.id[s];
      }
    }
  } else {
    const int64_t keep = std::min(cnt, nsample);
    if (cnt > keep) std::nth_element(members.begin(), members.begin() + keep, members.begin() + cnt);
    std::sort(members.begin(), members.begin() + keep);
    std::copy(members.begin(), members.begin() + keep, o);
    cnt = keep;
    fill = o[0];
  }
  for (int64_t s = cnt; s < nsample; ++s) o[s] = fill;
}

template <typename T>
void ball_query_kernel(const T* pts, const T* qry, int64_t B, int64_t N, int64_t M, T r2,
                       int64_t nsample, int64_t* out) {
  const bool blocked = N >= 4 * kBlock;
  std::vector<BlockCloud<T>> clouds;
  std::vector<T> soa;
  if (blocked) {
    clouds = build_block_clouds(pts, B, N);
  } else {
    soa = to_soa(pts, B, N);
  }
  const int64_t nblocks = (M + kQueryBlock - 1) / kQueryBlock;
  at::parallel_for(0, B * nblocks, 1, [&](int64_t t0, int64_t t1) {
    std::vector<T> lb(blocked ? static_cast<size_t>(clouds[0].nblk) : 0);
    std::vector<int64_t> members(blocked ? static_cast<size_t>(N) : 0);
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t b = t / nblocks;
      const int64_t m0 = (t % nblocks) * kQueryBlock;
      const int64_t m1 = std::min(M, m0 + kQueryBlock);
      for (int64_t m = m0; m < m1; ++m) {
        const T* q = qry + (b * M + m) * 3;
        const T qx = q[0], qy = q[1], qz = q[2];
        int64_t* o = out + (b * M + m) * nsample;
        if (blocked) {
          ball_query_blocked(clouds[b], qx, qy, qz, r2, nsample, lb.data(), members, o);
          continue;
        }
        const T* X = soa.data() + b * 3 * N;
        const T* Y = X + N;
        const T* Z = Y + N;
        int64_t cnt = 0;
        for (int64_t j = 0; j < N && cnt < nsample; ++j) {
          if (sqdist(qx - X[j], qy - Y[j], qz - Z[j]) < r2) o[cnt++] = j;
        }
        const int64_t fill = cnt > 0 ? o[0] : nearest(X, Y, Z, N, qx, qy, qz);
        for (int64_t s = cnt; s < nsample; ++s) o[s] = fill;
      }
    }
  });
}

at::Tensor ball_query_cpu(const at::Tensor& points, const at::Tensor& queries, double radius,
                          int64_t nsample) {
  POINTLIB_CHECK_CLOUD(points);
  POINTLIB_CHECK_CLOUD(queries);
  POINTLIB_CHECK_PAIR(points, queries);
  POINTLIB_CHECK_DEVICE(points, c10::DeviceType::CPU);
  const int64_t B = points.size(0), N = points.size(1), M = queries.size(1);
  POINTLIB_CHECK_SIZE(N, "N");
  TORCH_CHECK(N >= 1, "ball_query: the point cloud is empty");
  TORCH_CHECK(nsample >= 1, "ball_query: nsample=", nsample, " must be >= 1");
  TORCH_CHECK(radius > 0, "ball_query: radius=", radius, " must be > 0");
  const at::Tensor p = points.contiguous();
  const at::Tensor q = queries.contiguous();
  at::Tensor idx = at::empty({B, M, nsample}, points.options().dtype(at::kLong));
  if (B * M == 0) return idx;
  AT_DISPATCH_FLOATING_TYPES(p.scalar_type(), "pointlib_ball_query_cpu", [&] {
    // r2 rounded once to the dtype, like the reference's torch.tensor(radius ** 2, dtype).
    const scalar_t r2 = static_cast<scalar_t>(radius * radius);
    ball_query_kernel<scalar_t>(p.data_ptr<scalar_t>(), q.data_ptr<scalar_t>(), B, N, M, r2,
                                nsample, idx.data_ptr<int64_t>());
  });
  return idx;
}

}  // namespace
}  // namespace cpu
}  // namespace pointlib

TORCH_LIBRARY_IMPL(pointlib, CPU, m) { m.impl("ball_query", &pointlib::cpu::ball_query_cpu); }
