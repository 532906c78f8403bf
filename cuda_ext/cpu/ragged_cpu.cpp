// Any-dimension, ragged kNN and ball query on CPU (semantics: knn_ragged / ball_query_ragged in
// pointlib/ops/reference.py). Rows are sorted by graph (offsets ptr); every graph is copied once
// into a (D, n_b) structure-of-arrays block, and each query computes its distances to the rows
// of its own graph one dimension at a time (vectorised over the rows, accumulated left to right
// in the input dtype, no FMA: -ffp-contract=off). kNN keeps a sorted insertion buffer (k <= 64,
// strict `<`, so ties keep the lower row) or uses partial_sort on (dist2, row); the ball query
// scans the rows in order, 16 at a time, and stops after nsample members.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/full.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <numeric>
#include <vector>

#include "checks.h"
#include "cpu/cpu_common.h"
#include "cpu/dense_kernels.h"
#include "ragged_checks.h"

namespace pointlib {
namespace cpu {
namespace {

constexpr int64_t kInsertionMaxK = 64;
constexpr int64_t kQueryBlock = 16;
constexpr int64_t kChunk = 16;
// D = 3 graphs from this size up run the dense grid kernels (graph by graph); smaller graphs
// (and other D) the brute-force scan below, all of them in one parallel pass.
constexpr int64_t kDenseMinN = 128;

inline bool dense_graph(int64_t D, int64_t n) { return D == 3 && n >= kDenseMinN; }

// Runs fn(b) for every large 3-D graph b. With at least as many graphs as threads, graphs run in
// parallel (each dense kernel then runs inline in its thread: nested at::parallel_for is
// serial); otherwise one at a time, each kernel parallel inside.
template <typename F>
void for_dense_graphs(int64_t D, const std::vector<int64_t>& px, const std::vector<int64_t>& py,
                      const F& fn) {
  std::vector<int64_t> big;
  for (int64_t b = 0; b + 1 < static_cast<int64_t>(px.size()); ++b) {
    if (dense_graph(D, px[b + 1] - px[b]) && py[b + 1] > py[b]) big.push_back(b);
  }
  const int64_t nb = static_cast<int64_t>(big.size());
  if (nb >= at::get_num_threads()) {
    at::parallel_for(0, nb, 1, [&](int64_t i0, int64_t i1) {
      for (int64_t i = i0; i < i1; ++i) fn(big[i]);
    });
  } else {
    for (int64_t i = 0; i < nb; ++i) fn(big[i]);
  }
}

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define POINTLIB_RAGGED_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define POINTLIB_RAGGED_CLONES
#endif

// Offsets as a host vector, checked: ptr[0] = 0, non-decreasing, ptr[B] = n.
std::vector<int64_t> host_ptr(const at::Tensor& ptr, int64_t n, const char* name) {
  const at::Tensor p = ptr.to(at::kCPU).contiguous();
  const int64_t* v = p.data_ptr<int64_t>();
  std::vector<int64_t> out(v, v + p.numel());
  TORCH_CHECK(out.front() == 0 && out.back() == n, name, " must start at 0 and end at ", n,
              ", got ", out.front(), " ... ", out.back());
  for (size_t i = 1; i < out.size(); ++i) {
    TORCH_CHECK(out[i] >= out[i - 1], name, " must be non-decreasing (entry ", i, ")");
  }
  return out;
}

// Graph-major SoA copy: graph b occupies soa[ptr[b] * D ...], dimension c at offset c * n_b.
template <typename T>
std::vector<T> graph_soa(const T* x, int64_t D, const std::vector<int64_t>& ptr) {
  const int64_t B = static_cast<int64_t>(ptr.size()) - 1;
  std::vector<T> soa(static_cast<size_t>(ptr.back() * D));
  at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t p0 = ptr[b], n = ptr[b + 1] - ptr[b];
      T* dst = soa.data() + p0 * D;
      for (int64_t j = 0; j < n; ++j) {
        for (int64_t c = 0; c < D; ++c) dst[c * n + j] = x[(p0 + j) * D + c];
      }
    }
  });
  return soa;
}

// d[j] = ((q0 - X0[j])^2 + (q1 - X1[j])^2) + ... for the n rows of one graph block.
template <typename T>
POINTLIB_RAGGED_CLONES void distances(const T* q, const T* X, int64_t D, int64_t n, T* d) {
  for (int64_t j = 0; j < n; ++j) {
    const T diff = q[0] - X[j];
    d[j] = diff * diff;
  }
  for (int64_t c = 1; c < D; ++c) {
    const T qc = q[c];
    const T* Xc = X + c * n;
    for (int64_t j = 0; j < n; ++j) {
      const T diff = qc - Xc[j];
      d[j] = d[j] + diff * diff;
    }
  }
}

template <typename T>
void select_k(const T* d, int64_t n, int64_t k, std::vector<int32_t>& order, T* bd, int64_t* bi,
              int64_t base) {
  if (k <= kInsertionMaxK) {
    int64_t cnt = 0;
    for (int64_t j = 0; j < n; ++j) {
      const T v = d[j];
      if (cnt < k || v < bd[k - 1]) {  // strict: an equal distance keeps the lower row
        int64_t p = cnt < k ? cnt++ : k - 1;
        while (p > 0 && bd[p - 1] > v) {
          bd[p] = bd[p - 1];
          bi[p] = bi[p - 1];
          --p;
        }
        bd[p] = v;
        bi[p] = j;
      }
    }
  } else {
    order.resize(static_cast<size_t>(n));
    std::iota(order.begin(), order.end(), 0);
    auto less = [d](int32_t a, int32_t b) { return d[a] < d[b] || (d[a] == d[b] && a < b); };
    std::partial_sort(order.begin(), order.begin() + k, order.end(), less);
    for (int64_t i = 0; i < k; ++i) {
      bi[i] = order[i];
      bd[i] = d[order[i]];
    }
  }
  for (int64_t i = 0; i < k; ++i) bi[i] += base;
}

template <typename T>
void knn_ragged_kernel(const T* pts, const T* qry, int64_t D, const std::vector<int64_t>& px,
                       const std::vector<int64_t>& py, int64_t k, int64_t* out_idx, T* out_d2) {
  const int64_t M = py.back();
  const std::vector<T> soa = graph_soa(pts, D, px);
  const int64_t nblocks = (M + kQueryBlock - 1) / kQueryBlock;
  at::parallel_for(0, nblocks, 1, [&](int64_t t0, int64_t t1) {
    std::vector<T> d;
    std::vector<int32_t> order;
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t m0 = t * kQueryBlock, m1 = std::min(M, m0 + kQueryBlock);
      // graph of query m0: the last b with py[b] <= m0 (skipping empty graphs)
      int64_t b = std::upper_bound(py.begin(), py.end(), m0) - py.begin() - 1;
      for (int64_t m = m0; m < m1; ++m) {
        while (py[b + 1] <= m) ++b;
        const int64_t p0 = px[b], n = px[b + 1] - px[b];
        if (dense_graph(D, n)) continue;  // below
        const int64_t kk = std::min(k, n);
        T* bd = out_d2 + m * k;
        int64_t* bi = out_idx + m * k;
        if (kk > 0) {
          d.resize(static_cast<size_t>(n));
          distances(qry + m * D, soa.data() + p0 * D, D, n, d.data());
          select_k(d.data(), n, kk, order, bd, bi, p0);
        }
        for (int64_t i = kk; i < k; ++i) {
          bi[i] = -1;
          bd[i] = std::numeric_limits<T>::infinity();
        }
      }
    }
  });
  // Large 3-D graphs: the dense kernel (grid path).
  for_dense_graphs(D, px, py, [&](int64_t b) {
    const int64_t p0 = px[b], n = px[b + 1] - px[b], q0 = py[b], mb = py[b + 1] - py[b];
    const int64_t kk = std::min(k, n);
    std::vector<int64_t> ti(static_cast<size_t>(mb * kk));
    std::vector<T> td(static_cast<size_t>(mb * kk));
    knn_dense<T>(pts + p0 * 3, qry + q0 * 3, 1, n, mb, kk, ti.data(), td.data());
    for (int64_t s = 0; s < mb; ++s) {
      int64_t* bi = out_idx + (q0 + s) * k;
      T* bd = out_d2 + (q0 + s) * k;
      for (int64_t i = 0; i < kk; ++i) {
        bi[i] = ti[s * kk + i] + p0;
        bd[i] = td[s * kk + i];
      }
      for (int64_t i = kk; i < k; ++i) {
        bi[i] = -1;
        bd[i] = std::numeric_limits<T>::infinity();
      }
    }
  });
}

template <typename T>
POINTLIB_RAGGED_CLONES int64_t ball_scan(const T* q, const T* X, int64_t D, int64_t n, T r2,
                                         int64_t nsample, int64_t base, int64_t* o) {
  int64_t cnt = 0;
  T dd[kChunk];
  for (int64_t j0 = 0; j0 < n && cnt < nsample; j0 += kChunk) {
    const int64_t len = std::min(kChunk, n - j0);
    for (int64_t l = 0; l < len; ++l) {
      const T diff = q[0] - X[j0 + l];
      dd[l] = diff * diff;
    }
    for (int64_t c = 1; c < D; ++c) {
      const T qc = q[c];
      const T* Xc = X + c * n + j0;
      for (int64_t l = 0; l < len; ++l) {
        const T diff = qc - Xc[l];
        dd[l] = dd[l] + diff * diff;
      }
    }
    for (int64_t l = 0; l < len && cnt < nsample; ++l) {
      if (dd[l] < r2) o[cnt++] = base + j0 + l;
    }
  }
  return cnt;
}

template <typename T>
void ball_query_ragged_kernel(const T* pts, const T* qry, int64_t D,
                              const std::vector<int64_t>& px, const std::vector<int64_t>& py,
                              T r2, double radius, int64_t nsample, int64_t* out) {
  const int64_t M = py.back();
  const std::vector<T> soa = graph_soa(pts, D, px);
  const int64_t nblocks = (M + kQueryBlock - 1) / kQueryBlock;
  at::parallel_for(0, nblocks, 1, [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t m0 = t * kQueryBlock, m1 = std::min(M, m0 + kQueryBlock);
      int64_t b = std::upper_bound(py.begin(), py.end(), m0) - py.begin() - 1;
      for (int64_t m = m0; m < m1; ++m) {
        while (py[b + 1] <= m) ++b;
        const int64_t p0 = px[b], n = px[b + 1] - px[b];
        if (dense_graph(D, n)) continue;  // below
        int64_t* o = out + m * nsample;
        const int64_t cnt = ball_scan(qry + m * D, soa.data() + p0 * D, D, n, r2, nsample, p0, o);
        for (int64_t s = cnt; s < nsample; ++s) o[s] = -1;
      }
    }
  });
  // Large 3-D graphs: the dense grid kernel, then its padding (first member repeated, or the
  // nearest point for an empty ball) turned into -1: members ascend strictly, so they end at
  // the first entry that does not increase; an empty ball's entry 0 is not within r.
  for_dense_graphs(D, px, py, [&](int64_t b) {
    const int64_t p0 = px[b], n = px[b + 1] - px[b], q0 = py[b], mb = py[b + 1] - py[b];
    std::vector<int64_t> tmp(static_cast<size_t>(mb * nsample));
    const T* P = pts + p0 * 3;
    ball_query_dense<T>(P, qry + q0 * 3, 1, n, mb, r2, radius, nsample, tmp.data());
    for (int64_t s = 0; s < mb; ++s) {
      const int64_t* t = tmp.data() + s * nsample;
      const T* q = qry + (q0 + s) * 3;
      const T* f = P + t[0] * 3;
      int64_t cnt = 0;
      if (sqdist(q[0] - f[0], q[1] - f[1], q[2] - f[2]) < r2) {
        cnt = 1;
        while (cnt < nsample && t[cnt] > t[cnt - 1]) ++cnt;
      }
      int64_t* o = out + (q0 + s) * nsample;
      for (int64_t i = 0; i < cnt; ++i) o[i] = t[i] + p0;
      for (int64_t i = cnt; i < nsample; ++i) o[i] = -1;
    }
  });
}

void check_pair_rows(const at::Tensor& points, const at::Tensor& queries, const at::Tensor& ptr_x,
                     const at::Tensor& ptr_y) {
  POINTLIB_CHECK_ROWS(points);
  POINTLIB_CHECK_ROWS(queries);
  POINTLIB_CHECK_DEVICE(points, c10::DeviceType::CPU);
  TORCH_CHECK(queries.device() == points.device(), "queries are on ", queries.device(),
              " but points are on ", points.device());
  TORCH_CHECK(queries.scalar_type() == points.scalar_type(), "points are ",
              points.scalar_type(), " but queries are ", queries.scalar_type());
  TORCH_CHECK(queries.size(1) == points.size(1), "points have D=", points.size(1),
              " but queries have D=", queries.size(1));
  POINTLIB_CHECK_PTR(ptr_x, points);
  POINTLIB_CHECK_PTR(ptr_y, points);
  TORCH_CHECK(ptr_x.size(0) == ptr_y.size(0), "ptr_x has ", ptr_x.size(0) - 1,
              " graphs but ptr_y has ", ptr_y.size(0) - 1);
  POINTLIB_CHECK_SIZE(points.size(0), "N");
  POINTLIB_CHECK_SIZE(queries.size(0), "M");
}

std::tuple<at::Tensor, at::Tensor> knn_ragged_cpu(const at::Tensor& points,
                                                  const at::Tensor& queries,
                                                  const at::Tensor& ptr_x,
                                                  const at::Tensor& ptr_y, int64_t k) {
  check_pair_rows(points, queries, ptr_x, ptr_y);
  TORCH_CHECK(k >= 1, "knn_ragged: k=", k, " must be >= 1");
  const int64_t N = points.size(0), M = queries.size(0), D = points.size(1);
  const std::vector<int64_t> px = host_ptr(ptr_x, N, "ptr_x");
  const std::vector<int64_t> py = host_ptr(ptr_y, M, "ptr_y");
  const at::Tensor p = points.contiguous();
  const at::Tensor q = queries.contiguous();
  at::Tensor idx = at::empty({M, k}, points.options().dtype(at::kLong));
  at::Tensor d2 = at::empty({M, k}, points.options());
  if (M == 0) return {idx, d2};
  AT_DISPATCH_FLOATING_TYPES(p.scalar_type(), "pointlib_knn_ragged_cpu", [&] {
    knn_ragged_kernel<scalar_t>(p.data_ptr<scalar_t>(), q.data_ptr<scalar_t>(), D, px, py, k,
                                idx.data_ptr<int64_t>(), d2.data_ptr<scalar_t>());
  });
  return {idx, d2};
}

at::Tensor ball_query_ragged_cpu(const at::Tensor& points, const at::Tensor& queries,
                                 const at::Tensor& ptr_x, const at::Tensor& ptr_y, double radius,
                                 int64_t nsample) {
  check_pair_rows(points, queries, ptr_x, ptr_y);
  TORCH_CHECK(nsample >= 1, "ball_query_ragged: nsample=", nsample, " must be >= 1");
  TORCH_CHECK(radius > 0, "ball_query_ragged: radius=", radius, " must be > 0");
  const int64_t N = points.size(0), M = queries.size(0), D = points.size(1);
  const std::vector<int64_t> px = host_ptr(ptr_x, N, "ptr_x");
  const std::vector<int64_t> py = host_ptr(ptr_y, M, "ptr_y");
  const at::Tensor p = points.contiguous();
  const at::Tensor q = queries.contiguous();
  at::Tensor idx = at::empty({M, nsample}, points.options().dtype(at::kLong));
  if (M == 0) return idx;
  AT_DISPATCH_FLOATING_TYPES(p.scalar_type(), "pointlib_ball_query_ragged_cpu", [&] {
    const scalar_t r2 = static_cast<scalar_t>(radius * radius);  // rounded once, as the reference
    ball_query_ragged_kernel<scalar_t>(p.data_ptr<scalar_t>(), q.data_ptr<scalar_t>(), D, px, py,
                                       r2, radius, nsample, idx.data_ptr<int64_t>());
  });
  return idx;
}

}  // namespace
}  // namespace cpu
}  // namespace pointlib

TORCH_LIBRARY_IMPL(pointlib, CPU, m) {
  m.impl("knn_ragged", &pointlib::cpu::knn_ragged_cpu);
  m.impl("ball_query_ragged", &pointlib::cpu::ball_query_ragged_cpu);
}
