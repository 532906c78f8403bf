// k nearest neighbours on CPU. Finite clouds of at least kGridMinN points with 4k <= N use a
// uniform grid (cell lists, see grid_cpu.h and the "Grid path" comment below): queries of one cell
// share a 3x3x3 candidate tile, a counted threshold picks ~k candidates, their exact ranks by
// (dist2, index) are counted branch-free, and an exact stop test grows the window when needed.
// Larger k (N/4 < k <= N/2, N >= 128) use the Morton-block search (BlockCloud, cpu_common.h)
// with a shrinking candidate threshold; other shapes compute all distances per query (vectorised
// over SoA points) and select with a sorted insertion buffer (small k) or std::partial_sort.
// Every path returns the reference order: ascending dist2, ties to the lower index.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <utility>
#include <numeric>
#include <vector>

#include "checks.h"
#include "cpu/cpu_common.h"
#include "cpu/dense_kernels.h"
#include "cpu/grid_cpu.h"

namespace pointlib {
namespace cpu {
namespace {

// Above this k the insertion buffer costs O(k) per accepted candidate; partial_sort wins.
constexpr int64_t kInsertionMaxK = 64;
// Queries handled by one parallel task (keeps the per-task set-up cost small).
constexpr int64_t kQueryBlock = 32;
// Clouds from this size up (with 4k <= N) use the grid path.
constexpr int64_t kGridMinN = 64;

// Cell edge = this factor x the sampled k-th neighbour distance. POINTLIB_KNN_EDGE (read once)
// overrides it for tuning and for stress tests (tiny cells force many window growths); results
// never depend on it.
inline double knn_edge_scale() {
  static const double v = [] {
    const char* e = std::getenv("POINTLIB_KNN_EDGE");
    return e ? std::atof(e) : 1.0;
  }();
  return v;
}

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

// ---- Grid path ---------------------------------------------------------------------------------
// Cells are sized from the k-th neighbour distance of a few sample points, so for most queries
// the 27 cells around the query's cell hold the k nearest. Per query cell that 3x3x3 window is
// copied once into an SoA tile (shared by all queries of the cell). Per query:
//  1. all tile distances (vectorised);
//  2. a threshold tau with k <= #{d <= tau} <= k + slack, found by a few counting passes
//     (vectorised) starting from the previous query's k-th distance;
//  3. the candidates with d <= tau are compacted (branch-free) and each gets its exact rank by
//     (dist2, index) by counting (vectorised, no data-dependent branches); ranks < k are written
//     straight to their output slots;
//  4. exact stop test: every point outside the window has dist2 >= window_lower_bound, so the
//     result is final when the k-th distance is strictly below it (or the window is the whole
//     grid). Otherwise the query is redone with the window grown by one ring.

// Candidates beyond this many (e.g. many exact duplicates at the threshold) are ordered with
// partial_sort instead of the quadratic rank count.
constexpr int64_t kRankMax = 192;

// The per-query work is vectorised loops; on x86-64 GCC also compiles an AVX2 clone picked at
// run time (same IEEE operations, no FMA: -ffp-contract=off), the baseline build stays SSE2.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define POINTLIB_SIMD_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define POINTLIB_SIMD_CLONES
#endif

template <typename T>
struct KnnScratch {
  Tile<T> tile, wide;
  std::vector<T> cd;
  std::vector<int32_t> ci, rank;
  std::vector<std::pair<T, int32_t>> pairs;
  KnnScratch() : rank(kRankMax) {}
};

// Runs steps 1-4 for one query against tile t; returns false if the window must grow. `tau` is
// the threshold hint on entry. Writes the k results to bd/bi.
template <typename T>
POINTLIB_SIMD_CLONES bool knn_tile_query(const Grid<T>& g, const Tile<T>& t, T qx, T qy, T qz, int64_t k, T tau,
                    KnnScratch<T>& sc, T* bd, int64_t* bi) {
  const int64_t C = t.n;
  const bool full = g.covers_all(t);
  if (C < k) return false;  // cannot happen for a full window (k <= N)
  T* d = const_cast<T*>(t.d.data());
  const T* X = t.x.data();
  const T* Y = t.y.data();
  const T* Z = t.z.data();
  for (int64_t j = 0; j < C; ++j) d[j] = sqdist(qx - X[j], qy - Y[j], qz - Z[j]);

  // Step 2: bracket [lo, hi] with count(lo) < k <= count(hi); aim at k + slack / 2.
  const int64_t slack = std::max<int64_t>(4, k / 4);
  const T inf = std::numeric_limits<T>::infinity();
  T lo = -1, hi = inf;
  T cur = tau > T(0) ? tau : T(-1);
  for (int iter = 0; iter < 8 && cur >= T(0); ++iter) {
    int64_t cnt = 0;
    for (int64_t j = 0; j < C; ++j) cnt += d[j] <= cur ? 1 : 0;
    if (cnt < k) {
      lo = cur;
    } else {
      hi = cur;
      if (cnt <= k + slack) break;
    }
    // Next guess: scale linearly with the wanted count (exact for points on a surface).
    T next = static_cast<T>(static_cast<double>(cur) * (static_cast<double>(k + slack / 2) /
                                                        static_cast<double>(std::max<int64_t>(cnt, 1))));
    if (!(next > lo && next < hi)) {
      if (hi == inf) {
        next = lo > T(0) ? lo * T(4) : T(-1);  // -1: give up, take everything
      } else {
        next = lo < T(0) ? hi / T(2) : lo + (hi - lo) / T(2);
        if (!(next > lo && next < hi)) break;
      }
    }
    cur = next;
  }

  // Step 3: compact d <= hi, then rank.
  T* cd = sc.cd.data();
  int32_t* ci = sc.ci.data();
  const int32_t* ids = t.id.data();
  int64_t n = 0;
  int64_t j = 0;
  for (; j + 8 <= C; j += 8) {  // groups of 8 (neighbours in the same cell) often all fail
    int any = 0;
    for (int64_t l = 0; l < 8; ++l) any |= d[j + l] <= hi ? 1 : 0;
    if (!any) continue;
    for (int64_t l = 0; l < 8; ++l) {
      cd[n] = d[j + l];
      ci[n] = ids[j + l];
      n += d[j + l] <= hi ? 1 : 0;
    }
  }
  for (; j < C; ++j) {
    cd[n] = d[j];
    ci[n] = ids[j];
    n += d[j] <= hi ? 1 : 0;
  }
  if (n <= kRankMax) {
    // Rank by distance alone (one compare per pair). Distinct distances give the ranks
    // 0..n-1, summing to n(n-1)/2; an exact tie gives equal (lower) ranks and a smaller sum, and
    // then the ranks are recounted with the index as tie-break.
    int32_t* rank = sc.rank.data();
    int64_t sum = 0;
    for (int64_t i = 0; i < n; ++i) {
      const T di = cd[i];
      int32_t r = 0;
      for (int64_t j = 0; j < n; ++j) r += cd[j] < di ? 1 : 0;
      rank[i] = r;
      sum += r;
    }
    if (sum != n * (n - 1) / 2) {
      for (int64_t i = 0; i < n; ++i) {
        const T di = cd[i];
        const int32_t ii = ci[i];
        int32_t r = 0;
        for (int64_t j = 0; j < n; ++j) {
          r += (cd[j] < di) | ((cd[j] == di) & (ci[j] < ii));
        }
        rank[i] = r;
      }
    }
    for (int64_t i = 0; i < n; ++i) {
      const int32_t r = rank[i];
      if (r < k) {
        bd[r] = cd[i];
        bi[r] = ci[i];
      }
    }
  } else {
    auto& pr = sc.pairs;
    pr.resize(static_cast<size_t>(n));
    for (int64_t i = 0; i < n; ++i) pr[i] = {cd[i], ci[i]};
    std::partial_sort(pr.begin(), pr.begin() + k, pr.end());
    for (int64_t i = 0; i < k; ++i) bd[i] = pr[i].first, bi[i] = pr[i].second;
  }
  return full || static_cast<double>(bd[k - 1]) < g.window_lower_bound(t, qx, qy, qz);
}

// Cell edge for a cloud: the largest k-th neighbour distance of a few evenly spaced samples.
template <typename T>
double knn_cell_edge(const T* p, int64_t N, int64_t k, std::vector<T>& buf) {
  const int64_t S = std::min<int64_t>(N, 8);
  buf.resize(static_cast<size_t>(N));
  double best = 0;
  for (int64_t s = 0; s < S; ++s) {
    const int64_t j0 = (s * N) / S + (N / S) / 2;
    const T qx = p[3 * j0], qy = p[3 * j0 + 1], qz = p[3 * j0 + 2];
    for (int64_t j = 0; j < N; ++j) {
      buf[j] = sqdist(qx - p[3 * j], qy - p[3 * j + 1], qz - p[3 * j + 2]);
    }
    std::nth_element(buf.begin(), buf.begin() + (k - 1), buf.end());
    best = std::max(best, static_cast<double>(buf[k - 1]));
  }
  return std::sqrt(best);
}

template <typename T>
void knn_grid(const T* pts, const T* qry, int64_t B, int64_t N, int64_t M, int64_t k,
              double edge_scale, int64_t* out_idx, T* out_d2) {
  const bool self = qry == pts && M == N;
  std::vector<Grid<T>> grids(static_cast<size_t>(B));
  std::vector<QueryBins<T>> bins(static_cast<size_t>(B));
  std::vector<T> hint(static_cast<size_t>(B));
  at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
    std::vector<int32_t> scratch;
    std::vector<T> buf;
    for (int64_t b = b0; b < b1; ++b) {
      const T* p = pts + b * N * 3;
      double lo[3], hi[3];
      cloud_box(p, N, lo, hi);
      const double edge = knn_cell_edge(p, N, k, buf) * edge_scale;
      hint[b] = static_cast<T>(edge * edge / (edge_scale * edge_scale));
      grids[b].shape(lo, hi, edge, 2 * N + 64);
      grids[b].fill(p, N, scratch);
      if (self) {
        bins[b].bind(grids[b]);
      } else {
        bins[b].build(grids[b], qry + b * M * 3, M, scratch);
      }
    }
  });
  // Work items: (cloud, range of cells).
  const int64_t nc = grids[0].ncells();  // differs per cloud; split each into P parts
  const int64_t P = std::max<int64_t>(1, std::min<int64_t>(8, nc));
  (void)nc;
  at::parallel_for(0, B * P, 1, [&](int64_t t0, int64_t t1) {
    KnnScratch<T> sc;
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t b = t / P, part = t % P;
      const Grid<T>& g = grids[b];
      const QueryBins<T>& qb = bins[b];
      const int64_t cells = g.ncells();
      const int64_t c0 = cells * part / P, c1 = cells * (part + 1) / P;
      T tau = hint[b];
      for (int64_t c = c0; c < c1; ++c) {
        const int64_t s0 = qb.qstart[c], s1 = qb.qstart[c + 1];
        if (s0 == s1) continue;
        const int64_t cx = c % g.g[0], cy = (c / g.g[0]) % g.g[1], cz = c / (g.g[0] * g.g[1]);
        g.gather(cx, cy, cz, 1, sc.tile);
        for (int64_t s = s0; s < s1; ++s) {
          const T qx = qb.qx[s], qy = qb.qy[s], qz = qb.qz[s];
          const int64_t qi = b * M + qb.qid[s];
          T* bd = out_d2 + qi * k;
          int64_t* bi = out_idx + qi * k;
          const Tile<T>* tp = &sc.tile;
          sc.cd.resize(std::max<size_t>(sc.cd.size(), static_cast<size_t>(tp->n + 1)));
          sc.ci.resize(std::max<size_t>(sc.ci.size(), static_cast<size_t>(tp->n + 1)));
          bool ok = knn_tile_query(g, *tp, qx, qy, qz, k, tau, sc, bd, bi);
          for (int64_t R = 2; !ok; ++R) {
            g.gather(cx, cy, cz, R, sc.wide);
            sc.cd.resize(std::max<size_t>(sc.cd.size(), static_cast<size_t>(sc.wide.n + 1)));
            sc.ci.resize(std::max<size_t>(sc.ci.size(), static_cast<size_t>(sc.wide.n + 1)));
            ok = knn_tile_query(g, sc.wide, qx, qy, qz, k, tau, sc, bd, bi);
          }
          tau = bd[k - 1];
        }
      }
    }
  });
}

template <typename T>
void knn_kernel(const T* pts, const T* qry, int64_t B, int64_t N, int64_t M, int64_t k,
                int64_t* out_idx, T* out_d2) {
  // Grid path for k well below N on finite clouds (otherwise the paths below).
  if (N >= kGridMinN && 4 * k <= N) {
    bool finite = true;
    double lo[3], hi[3];
    for (int64_t b = 0; b < B && finite; ++b) finite = cloud_box(pts + b * N * 3, N, lo, hi);
    for (int64_t b = 0; b < B && finite; ++b) finite = cloud_box(qry + b * M * 3, M, lo, hi);
    if (finite) {
      knn_grid(pts, qry, B, N, M, k, knn_edge_scale(), out_idx, out_d2);
      return;
    }
  }
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

// Exported for the ragged ops (cpu/dense_kernels.h).
template <typename T>
void knn_dense(const T* pts, const T* qry, int64_t B, int64_t N, int64_t M, int64_t k,
               int64_t* out_idx, T* out_d2) {
  knn_kernel<T>(pts, qry, B, N, M, k, out_idx, out_d2);
}
template void knn_dense<float>(const float*, const float*, int64_t, int64_t, int64_t, int64_t,
                               int64_t*, float*);
template void knn_dense<double>(const double*, const double*, int64_t, int64_t, int64_t,
                                int64_t, int64_t*, double*);

}  // namespace cpu
}  // namespace pointlib

TORCH_LIBRARY_IMPL(pointlib, CPU, m) { m.impl("knn", &pointlib::cpu::knn_cpu); }
