// Ball query on CPU. Clouds of at least 4 blocks are searched through BlockClouds of the points
// and of the queries: only blocks whose bounding box comes closer than the radius are scanned
// (vectorised over kBlock points); members are marked in a bitmap and the nsample lowest indices
// read back in index order. Small clouds use a plain index-order scan that stops after nsample
// members. An empty ball is filled with the nearest point (lowest index among equally near ones).
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

// Blocked search for the queries of one query block `qb`: the point blocks whose box comes
// within the radius of the query block's box are listed once; per query, those whose box comes
// within the radius of the query are scanned and members are marked in a bitmap over the original
// indices, which then yields the first nsample members in index order without sorting. An empty
// ball takes the nearest point (lowest index among equally near ones).
template <typename T>
void ball_query_block(const BlockCloud<T>& c, const BlockCloud<T>& qc, int64_t qb, T r2,
                      int64_t nsample, int64_t* cand_blk, uint64_t* bitmap, int64_t* out) {
  int64_t ncand = 0;
  for (int64_t blk = 0; blk < c.nblk; ++blk) {
    T gx = std::max(c.lx[blk] - qc.hx[qb], qc.lx[qb] - c.hx[blk]);
    T gy = std::max(c.ly[blk] - qc.hy[qb], qc.ly[qb] - c.hy[blk]);
    T gz = std::max(c.lz[blk] - qc.hz[qb], qc.lz[qb] - c.hz[blk]);
    gx = gx > T(0) ? gx : T(0);
    gy = gy > T(0) ? gy : T(0);
    gz = gz > T(0) ? gz : T(0);
    if (sqdist(gx, gy, gz) < r2) cand_blk[ncand++] = blk;
  }
  const int64_t q0 = qb * kBlock, q1 = std::min(qc.n, q0 + kBlock);
  T dd[kBlock];
  for (int64_t s = q0; s < q1; ++s) {
    const T qx = qc.x[s], qy = qc.y[s], qz = qc.z[s];
    int64_t* o = out + qc.id[s] * nsample;
    int64_t wmin = std::numeric_limits<int64_t>::max(), wmax = -1;
    for (int64_t ci = 0; ci < ncand; ++ci) {
      const int64_t blk = cand_blk[ci];
      T gx = std::max(c.lx[blk] - qx, qx - c.hx[blk]);
      T gy = std::max(c.ly[blk] - qy, qy - c.hy[blk]);
      T gz = std::max(c.lz[blk] - qz, qz - c.hz[blk]);
      gx = gx > T(0) ? gx : T(0);
      gy = gy > T(0) ? gy : T(0);
      gz = gz > T(0) ? gz : T(0);
      if (!(sqdist(gx, gy, gz) < r2)) continue;
      const int64_t s0 = blk * kBlock;
      const T* X = c.x.data() + s0;
      const T* Y = c.y.data() + s0;
      const T* Z = c.z.data() + s0;
      for (int64_t l = 0; l < kBlock; ++l) dd[l] = sqdist(qx - X[l], qy - Y[l], qz - Z[l]);
      int any = 0;
      for (int64_t l = 0; l < kBlock; ++l) any += dd[l] < r2 ? 1 : 0;
      if (!any) continue;
      for (int64_t l = 0; l < kBlock; ++l) {
        if (dd[l] < r2) {  // padding slots have dist2 = inf and never enter
          const int64_t j = c.id[s0 + l];
          bitmap[j >> 6] |= uint64_t(1) << (j & 63);
          wmin = std::min(wmin, j >> 6);
          wmax = std::max(wmax, j >> 6);
        }
      }
    }
    int64_t cnt = 0;
    for (int64_t w = wmin; w <= wmax; ++w) {
      uint64_t bits = bitmap[w];
      bitmap[w] = 0;
      while (bits && cnt < nsample) {
        o[cnt++] = (w << 6) + __builtin_ctzll(bits);
        bits &= bits - 1;
      }
    }
    int64_t fill;
    if (cnt > 0) {
      fill = o[0];
    } else {
      T best = std::numeric_limits<T>::infinity();
      fill = std::numeric_limits<int64_t>::max();
      for (int64_t t = 0; t < c.nblk * kBlock; ++t) {
        const T d = sqdist(qx - c.x[t], qy - c.y[t], qz - c.z[t]);
        if (d < best || (d == best && c.id[t] < fill)) {
          best = d;
          fill = c.id[t];
        }
      }
    }
    for (int64_t t = cnt; t < nsample; ++t) o[t] = fill;
  }
}

template <typename T>
void ball_query_kernel(const T* pts, const T* qry, int64_t B, int64_t N, int64_t M, T r2,
                       int64_t nsample, int64_t* out) {
  if (N >= 4 * kBlock) {
    const std::vector<BlockCloud<T>> clouds = build_block_clouds(pts, B, N);
    const bool self = qry == pts && M == N;  // queries are the points: share the blocks
    std::vector<BlockCloud<T>> qclouds;
    if (!self) qclouds = build_block_clouds(qry, B, M);
    const std::vector<BlockCloud<T>>& qcs = self ? clouds : qclouds;
    const int64_t nqb = qcs[0].nblk;
    at::parallel_for(0, B * nqb, 1, [&](int64_t t0, int64_t t1) {
      std::vector<int64_t> cand_blk(static_cast<size_t>(clouds[0].nblk));
      std::vector<uint64_t> bitmap(static_cast<size_t>((N + 63) / 64), 0);
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t b = t / nqb;
        ball_query_block(clouds[b], qcs[b], t % nqb, r2, nsample, cand_blk.data(), bitmap.data(),
                         out + b * M * nsample);
      }
    });
    return;
  }
  const std::vector<T> soa = to_soa(pts, B, N);
  const int64_t nblocks = (M + kQueryBlock - 1) / kQueryBlock;
  at::parallel_for(0, B * nblocks, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t b = t / nblocks;
      const int64_t m0 = (t % nblocks) * kQueryBlock;
      const int64_t m1 = std::min(M, m0 + kQueryBlock);
      const T* X = soa.data() + b * 3 * N;
      const T* Y = X + N;
      const T* Z = Y + N;
      for (int64_t m = m0; m < m1; ++m) {
        const T* q = qry + (b * M + m) * 3;
        const T qx = q[0], qy = q[1], qz = q[2];
        int64_t* o = out + (b * M + m) * nsample;
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
