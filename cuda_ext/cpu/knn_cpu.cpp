// k nearest neighbours on CPU. Clouds of at least 4 blocks (and k <= N / 2) are searched through
// a BlockCloud (Morton-ordered blocks with bounding boxes, see cpu_common.h) with a shrinking
// candidate threshold; other shapes compute all distances per query (vectorised over SoA points)
// and select with a sorted insertion buffer (small k) or std::partial_sort. Every path returns the
// reference order: ascending dist2, ties to the lower index.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <cstring>
#include <limits>
#include <utility>
#include <numeric>
#include <vector>

#include "checks.h"
#include "cpu/cpu_common.h"

namespace pointlib {
namespace cpu {
namespace {

// Above this k the insertion buffer costs O(k) per accepted candidate; partial_sort wins.
constexpr int64_t kInsertionMaxK = 64;
// Queries handled by one parallel task (keeps the per-task set-up cost small).
constexpr int64_t kQueryBlock = 32;

// Inserts (d, j) into the ascending buffer bd/bi of length n (the last entry is dropped). `j`
// is larger than every index already present, so it goes after equal distances.
template <typename T>
inline void insert_sorted(T* bd, int64_t* bi, int64_t n, T d, int64_t j) {
  int64_t p = n - 1;
  while (p > 0 && bd[p - 1] > d) {
    bd[p] = bd[p - 1];
    bi[p] = bi[p - 1];
    --p;
  }
  bd[p] = d;
  bi[p] = j;
}

template <typename T>
void select_insertion(const T* d, int64_t N, int64_t k, T* bd, int64_t* bi) {
  for (int64_t j = 0; j < k; ++j) insert_sorted(bd, bi, j + 1, d[j], j);
  T worst = bd[k - 1];
  int64_t j = k;
  for (; j + kLanes <= N; j += kLanes) {
    int any = 0;
    for (int64_t t = 0; t < kLanes; ++t) any |= d[j + t] < worst;
    if (!any) continue;
    for (int64_t t = 0; t < kLanes; ++t) {
      if (d[j + t] < worst) {  // strict: an equal distance keeps the lower index already held
        insert_sorted(bd, bi, k, d[j + t], j + t);
        worst = bd[k - 1];
      }
    }
  }
  for (; j < N; ++j) {
    if (d[j] < worst) {
      insert_sorted(bd, bi, k, d[j], j);
      worst = bd[k - 1];
    }
  }
}

template <typename T>
void select_sort(const T* d, int64_t N, int64_t k, std::vector<int32_t>& order, T* bd,
                 int64_t* bi) {
  std::iota(order.begin(), order.end(), 0);
  auto less = [d](int32_t a, int32_t b) { return d[a] < d[b] || (d[a] == d[b] && a < b); };
  std::partial_sort(order.begin(), order.begin() + k, order.end(), less);
  for (int64_t i = 0; i < k; ++i) {
    bi[i] = order[i];
    bd[i] = d[order[i]];
  }
}

// A candidate (dist2, index) with the contract's order: dist2, then index. For float the pair is
// packed into one integer (non-negative float bits order like the values); for double it is a
// std::pair (lexicographic operator<).
template <typename T>
struct Cand {
  using type = std::pair<T, int64_t>;
  static type make(T d, int64_t j) { return {d, j}; }
  static T dist(const type& c) { return c.first; }
  static int64_t index(const type& c) { return c.second; }
};

template <>
struct Cand<float> {
  using type = uint64_t;
  static type make(float d, int64_t j) {
    uint32_t bits;
    std::memcpy(&bits, &d, sizeof(bits));
    return (static_cast<uint64_t>(bits) << 32) | static_cast<uint64_t>(j);
  }
  static float dist(type c) {
    const uint32_t bits = static_cast<uint32_t>(c >> 32);
    float d;
    std::memcpy(&d, &bits, sizeof(d));
    return d;
  }
  static int64_t index(type c) { return static_cast<int64_t>(c & 0xffffffffull); }
};

// Blocked kNN for the queries of one query block `qb` (a BlockCloud of the queries, so nearby
// queries are processed together). Point blocks are ordered once per query block by the
// box-to-box lower bound, which is below every query's own bound. Per query, candidates with
// dist2 <= tau are collected unsorted; when the list reaches 2k it is cut to its k best
// (nth_element), tightening tau to the k-th distance. tau starts from a bound derived from the
// previous query of the block (usually a close neighbour along the curve). A block is skipped
// when the query's own bound exceeds tau, and the sweep stops at the first shared bound above
// tau. The k best are finally sorted by (dist2, index).
template <typename T>
void knn_query_block(const BlockCloud<T>& c, const BlockCloud<T>& qc, int64_t qb, int64_t k,
                     typename Cand<T>::type* cand, typename Cand<T>::type* border,
                     int64_t* out_idx, T* out_d2) {
  using C = Cand<T>;
  for (int64_t blk = 0; blk < c.nblk; ++blk) {
    T gx = std::max(c.lx[blk] - qc.hx[qb], qc.lx[qb] - c.hx[blk]);
    T gy = std::max(c.ly[blk] - qc.hy[qb], qc.ly[qb] - c.hy[blk]);
    T gz = std::max(c.lz[blk] - qc.hz[qb], qc.lz[qb] - c.hz[blk]);
    gx = gx > T(0) ? gx : T(0);
    gy = gy > T(0) ? gy : T(0);
    gz = gz > T(0) ? gz : T(0);
    border[blk] = C::make(sqdist(gx, gy, gz), blk);
  }
  std::sort(border, border + c.nblk);
  const int64_t q0 = qb * kBlock, q1 = std::min(qc.n, q0 + kBlock);
  T dd[kBlock];
  const T inf = std::numeric_limits<T>::infinity();
  double prev_r = -1, px = 0, py = 0, pz = 0;  // previous query and its k-th distance
  for (int64_t s = q0; s < q1; ++s) {
    const T qx = qc.x[s], qy = qc.y[s], qz = qc.z[s];
    // Start from a bound on the k-th distance taken from the previous (nearby) query: its k
    // neighbours lie within prev_r + |q - q_prev| (triangle inequality), padded for rounding.
    // If the bound still ends up too small (fewer than k candidates), redo with tau = inf.
    T tau0 = inf;
    if (prev_r >= 0) {
      const double dq = std::sqrt((qx - px) * (qx - px) + (qy - py) * (qy - py) +
                                  (qz - pz) * (qz - pz));
      const double rr = (prev_r + dq) * (1 + 1e-5) + 1e-30;
      if (rr * rr < static_cast<double>(std::numeric_limits<T>::max())) {
        tau0 = static_cast<T>(rr * rr);
      }
    }
    int64_t cnt = 0;
    for (int pass = 0; pass < 2; ++pass) {
      T tau = pass == 0 ? tau0 : inf;
      cnt = 0;
      for (int64_t o = 0; o < c.nblk; ++o) {
        if (C::dist(border[o]) > tau) break;
        const int64_t blk = C::index(border[o]);
        T gx = std::max(c.lx[blk] - qx, qx - c.hx[blk]);
        T gy = std::max(c.ly[blk] - qy, qy - c.hy[blk]);
        T gz = std::max(c.lz[blk] - qz, qz - c.hz[blk]);
        gx = gx > T(0) ? gx : T(0);
        gy = gy > T(0) ? gy : T(0);
        gz = gz > T(0) ? gz : T(0);
        if (sqdist(gx, gy, gz) > tau) continue;
        const int64_t s0 = blk * kBlock;
        const T* X = c.x.data() + s0;
        const T* Y = c.y.data() + s0;
        const T* Z = c.z.data() + s0;
        for (int64_t l = 0; l < kBlock; ++l) dd[l] = sqdist(qx - X[l], qy - Y[l], qz - Z[l]);
        int any = 0;
        for (int64_t l = 0; l < kBlock; ++l) any += dd[l] <= tau ? 1 : 0;
        if (!any) continue;
        const int64_t* ids = c.id.data() + s0;
        const int64_t real = std::min(kBlock, c.n - s0);  // padding slots are never candidates
        for (int64_t l = 0; l < real; ++l) {
          if (dd[l] <= tau) cand[cnt++] = C::make(dd[l], ids[l]);
        }
        if (cnt >= 2 * k || (cnt >= k && tau == inf)) {
          std::nth_element(cand, cand + (k - 1), cand + cnt);
          cnt = k;
          tau = C::dist(cand[k - 1]);
        }
      }
      if (cnt >= k || tau0 == inf) break;
    }
    if (cnt > k) std::nth_element(cand, cand + (k - 1), cand + cnt);
    std::sort(cand, cand + k);
    T* bd = out_d2 + qc.id[s] * k;
    int64_t* bi = out_idx + qc.id[s] * k;
    for (int64_t i = 0; i < k; ++i) {
      bd[i] = C::dist(cand[i]);
      bi[i] = C::index(cand[i]);
    }
    prev_r = std::sqrt(static_cast<double>(bd[k - 1]));
    px = qx, py = qy, pz = qz;
  }
}

template <typename T>
void knn_kernel(const T* pts, const T* qry, int64_t B, int64_t N, int64_t M, int64_t k,
                int64_t* out_idx, T* out_d2) {
  // Blocked search for k up to N / 2 (float indices must fit the packed candidate).
  const bool blocked = N >= 4 * kBlock && 2 * k <= N && N < (int64_t(1) << 32);
  if (blocked) {
    const std::vector<BlockCloud<T>> clouds = build_block_clouds(pts, B, N);
    const bool self = qry == pts && M == N;  // queries are the points: share the blocks
    std::vector<BlockCloud<T>> qclouds;
    if (!self) qclouds = build_block_clouds(qry, B, M);
    const std::vector<BlockCloud<T>>& qcs = self ? clouds : qclouds;
    const int64_t nqb = qcs[0].nblk;
    at::parallel_for(0, B * nqb, 1, [&](int64_t t0, int64_t t1) {
      std::vector<typename Cand<T>::type> cand(static_cast<size_t>(2 * k + kBlock));
      std::vector<typename Cand<T>::type> border(static_cast<size_t>(clouds[0].nblk));
      for (int64_t t = t0; t < t1; ++t) {
        const int64_t b = t / nqb;
        knn_query_block(clouds[b], qcs[b], t % nqb, k, cand.data(), border.data(),
                        out_idx + b * M * k, out_d2 + b * M * k);
      }
    });
    return;
  }
  const std::vector<T> soa = to_soa(pts, B, N);
  const int64_t nblocks = (M + kQueryBlock - 1) / kQueryBlock;
  at::parallel_for(0, B * nblocks, 1, [&](int64_t t0, int64_t t1) {
    std::vector<T> d(static_cast<size_t>(N));
    std::vector<int32_t> order(k > kInsertionMaxK ? static_cast<size_t>(N) : 0);
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
        T* bd = out_d2 + (b * M + m) * k;
        int64_t* bi = out_idx + (b * M + m) * k;
        T* dd = d.data();
        for (int64_t j = 0; j < N; ++j) dd[j] = sqdist(qx - X[j], qy - Y[j], qz - Z[j]);
        if (k <= kInsertionMaxK) {
          select_insertion(dd, N, k, bd, bi);
        } else {
          select_sort(dd, N, k, order, bd, bi);
        }
      }
    }
  });
}

std::tuple<at::Tensor, at::Tensor> knn_cpu(const at::Tensor& points, const at::Tensor& queries,
                                           int64_t k) {
  POINTLIB_CHECK_CLOUD(points);
  POINTLIB_CHECK_CLOUD(queries);
  POINTLIB_CHECK_PAIR(points, queries);
  POINTLIB_CHECK_DEVICE(points, c10::DeviceType::CPU);
  const int64_t B = points.size(0), N = points.size(1), M = queries.size(1);
  POINTLIB_CHECK_SIZE(N, "N");
  TORCH_CHECK(k >= 1 && k <= N, "knn: k=", k, " must be in [1, N=", N, "]");
  const at::Tensor p = points.contiguous();
  const at::Tensor q = queries.contiguous();
  at::Tensor idx = at::empty({B, M, k}, points.options().dtype(at::kLong));
  at::Tensor d2 = at::empty({B, M, k}, points.options());
  if (B * M == 0) return {idx, d2};
  AT_DISPATCH_FLOATING_TYPES(p.scalar_type(), "pointlib_knn_cpu", [&] {
    knn_kernel<scalar_t>(p.data_ptr<scalar_t>(), q.data_ptr<scalar_t>(), B, N, M, k,
                         idx.data_ptr<int64_t>(), d2.data_ptr<scalar_t>());
  });
  return {idx, d2};
}

}  // namespace
}  // namespace cpu
}  // namespace pointlib

TORCH_LIBRARY_IMPL(pointlib, CPU, m) { m.impl("knn", &pointlib::cpu::knn_cpu); }
