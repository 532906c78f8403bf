// Ball query on CPU. Finite clouds of at least kGridMinN points use a uniform grid with cells of
// edge ~radius (grid_cpu.h, "Grid path" below): the queries of a cell share the 3x3x3 tile of
// candidate points, put once into index order, and each query scans it in index order and stops
// after nsample members. Small (or non-finite) clouds scan in index order and stop after nsample members. An
// empty ball is filled with the nearest point (lowest index among equally near ones).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "checks.h"
#include "cpu/cpu_common.h"
#include "cpu/dense_kernels.h"
#include "cpu/grid_cpu.h"

namespace pointlib {
namespace cpu {
namespace {

constexpr int64_t kQueryBlock = 32;
// Clouds from this size up use the grid path.
constexpr int64_t kGridMinN = 64;

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

// ---- Grid path ---------------------------------------------------------------------------------
// Cells of edge radius * (1 + 1e-3) (a point with dist2 < r2 in the dtype is within radius times
// 1 + 1e-6 of the query, so it lies in the query's cell or a neighbour; the grid is coarsened if
// it would exceed 2N + 64 cells, which only makes cells larger). Per query cell the 3x3x3 window
// is copied once into a tile and put into ascending index order (a bitmap over the cloud's
// indices, or std::sort when the cloud is much larger than the tile). Each query then scans the
// tile in index order, 16 distances at a time (vectorised), appends members branch-free and
// stops as soon as it holds nsample of them: these are the first nsample members by index.

constexpr int64_t kScanChunk = 16;

template <typename T>
void ball_query_grid(const T* pts, const T* qry, int64_t B, int64_t N, int64_t M, T r2,
                     double radius, int64_t nsample, int64_t* out) {
  const bool self = qry == pts && M == N;
  const std::vector<T> soa = to_soa(pts, B, N);
  std::vector<Grid<T>> grids(static_cast<size_t>(B));
  std::vector<QueryBins<T>> bins(static_cast<size_t>(B));
  at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
    std::vector<int32_t> scratch;
    for (int64_t b = b0; b < b1; ++b) {
      const T* p = pts + b * N * 3;
      double lo[3], hi[3];
      cloud_box(p, N, lo, hi);
      grids[b].shape(lo, hi, radius * (1 + 1e-3), 2 * N + 64);
      grids[b].fill(p, N, scratch);
      if (self) {
        bins[b].bind(grids[b]);
      } else {
        bins[b].build(grids[b], qry + b * M * 3, M, scratch);
      }
    }
  });
  constexpr int64_t P = 8;  // parts (cell ranges) per cloud
  at::parallel_for(0, B * P, 1, [&](int64_t t0, int64_t t1) {
    Tile<T> tile;
    std::vector<uint64_t> bitmap(static_cast<size_t>((N + 63) / 64), 0);
    std::vector<int32_t> sorted;
    std::vector<int64_t> mem(static_cast<size_t>(nsample + kScanChunk));
    T dd[kScanChunk];
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t b = t / P, part = t % P;
      const Grid<T>& g = grids[b];
      const QueryBins<T>& qb = bins[b];
      const T* PX = soa.data() + b * 3 * N;
      const T* PY = PX + N;
      const T* PZ = PY + N;
      const int64_t cells = g.ncells();
      const int64_t c0 = cells * part / P, c1 = cells * (part + 1) / P;
      for (int64_t c = c0; c < c1; ++c) {
        const int64_t s0 = qb.qstart[c], s1 = qb.qstart[c + 1];
        if (s0 == s1) continue;
        const int64_t cx = c % g.g[0], cy = (c / g.g[0]) % g.g[1], cz = c / (g.g[0] * g.g[1]);
        g.gather(cx, cy, cz, 1, tile);
        const int64_t C = tile.n;
        // Tile into ascending index order; pad to a multiple of kScanChunk with +inf points.
        int32_t* ids = tile.id.data();
        if ((N + 63) / 64 <= 8 * C + 64) {
          int64_t wmin = (N + 63) / 64, wmax = -1;
          for (int64_t j = 0; j < C; ++j) {
            const int64_t w = ids[j] >> 6;
            bitmap[w] |= uint64_t(1) << (ids[j] & 63);
            wmin = std::min(wmin, w);
            wmax = std::max(wmax, w);
          }
          int64_t n0 = 0;
          for (int64_t w = wmin; w <= wmax; ++w) {
            uint64_t bits = bitmap[w];
            bitmap[w] = 0;
            while (bits) {
              ids[n0++] = static_cast<int32_t>((w << 6) + __builtin_ctzll(bits));
              bits &= bits - 1;
            }
          }
        } else {
          std::sort(ids, ids + C);
        }
        const int64_t Cp = (C + kScanChunk - 1) / kScanChunk * kScanChunk;
        tile.fit(Cp + 1);
        ids = tile.id.data();
        T* X = tile.x.data();
        T* Y = tile.y.data();
        T* Z = tile.z.data();
        for (int64_t j = 0; j < C; ++j) X[j] = PX[ids[j]], Y[j] = PY[ids[j]], Z[j] = PZ[ids[j]];
        const T inf = std::numeric_limits<T>::infinity();
        for (int64_t j = C; j < Cp; ++j) X[j] = Y[j] = Z[j] = inf, ids[j] = 0;
        for (int64_t s = s0; s < s1; ++s) {
          const T qx = qb.qx[s], qy = qb.qy[s], qz = qb.qz[s];
          int64_t* o = out + (b * M + qb.qid[s]) * nsample;
          int64_t cnt = 0;
          for (int64_t j0 = 0; j0 < Cp && cnt < nsample; j0 += kScanChunk) {
            for (int64_t l = 0; l < kScanChunk; ++l) {
              dd[l] = sqdist(qx - X[j0 + l], qy - Y[j0 + l], qz - Z[j0 + l]);
            }
            for (int64_t l = 0; l < kScanChunk; ++l) {
              mem[cnt] = ids[j0 + l];
              cnt += dd[l] < r2 ? 1 : 0;  // padding: inf - q = +-inf, dist2 inf, never a member
            }
          }
          cnt = std::min(cnt, nsample);
          std::copy(mem.begin(), mem.begin() + cnt, o);
          const int64_t fill = cnt > 0 ? o[0] : nearest(PX, PY, PZ, N, qx, qy, qz);
          for (int64_t t2 = cnt; t2 < nsample; ++t2) o[t2] = fill;
        }
      }
    }
  });
}

template <typename T>
void ball_query_kernel(const T* pts, const T* qry, int64_t B, int64_t N, int64_t M, T r2,
                       double radius, int64_t nsample, int64_t* out) {
  if (N >= kGridMinN) {
    bool finite = std::isfinite(radius);
    double lo[3], hi[3];
    for (int64_t b = 0; b < B && finite; ++b) finite = cloud_box(pts + b * N * 3, N, lo, hi);
    for (int64_t b = 0; b < B && finite; ++b) finite = cloud_box(qry + b * M * 3, M, lo, hi);
    if (finite) {
      ball_query_grid(pts, qry, B, N, M, r2, radius, nsample, out);
      return;
    }
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
                                radius, nsample, idx.data_ptr<int64_t>());
  });
  return idx;
}

}  // namespace

// Exported for the ragged ops (cpu/dense_kernels.h).
template <typename T>
void ball_query_dense(const T* pts, const T* qry, int64_t B, int64_t N, int64_t M, T r2,
                      double radius, int64_t nsample, int64_t* out) {
  ball_query_kernel<T>(pts, qry, B, N, M, r2, radius, nsample, out);
}
template void ball_query_dense<float>(const float*, const float*, int64_t, int64_t, int64_t,
                                      float, double, int64_t, int64_t*);
template void ball_query_dense<double>(const double*, const double*, int64_t, int64_t, int64_t,
                                       double, double, int64_t, int64_t*);

}  // namespace cpu
}  // namespace pointlib

TORCH_LIBRARY_IMPL(pointlib, CPU, m) { m.impl("ball_query", &pointlib::cpu::ball_query_cpu); }
