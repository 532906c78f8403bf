// Farthest point sampling per graph of ragged rows on CPU (semantics: fps_ragged in
// pointlib/ops/reference.py). Graphs run in parallel; each keeps its rows as (D, n_b)
// structure-of-arrays and the running minimum squared distance of every row to the samples so
// far; a step updates the minima (vectorised, distances accumulated left to right in the input
// dtype) and takes the first maximum, so ties go to the lowest row.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

#include "checks.h"
#include "ragged_checks.h"

namespace pointlib {
namespace cpu {
namespace {

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define POINTLIB_FPS_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define POINTLIB_FPS_CLONES
#endif

std::vector<int64_t> host_vec(const at::Tensor& t) {
  const at::Tensor c = t.to(at::kCPU).contiguous();
  return std::vector<int64_t>(c.data_ptr<int64_t>(), c.data_ptr<int64_t>() + c.numel());
}

// One step: mind[j] = min(mind[j], dist2(row j, centre)); returns the first argmax.
template <typename T>
POINTLIB_FPS_CLONES int64_t fps_step(const T* X, int64_t D, int64_t n, const T* centre, T* d,
                                     T* mind) {
  for (int64_t j = 0; j < n; ++j) {
    const T diff = centre[0] - X[j];
    d[j] = diff * diff;
  }
  for (int64_t c = 1; c < D; ++c) {
    const T cc = centre[c];
    const T* Xc = X + c * n;
    for (int64_t j = 0; j < n; ++j) {
      const T diff = cc - Xc[j];
      d[j] = d[j] + diff * diff;
    }
  }
  for (int64_t j = 0; j < n; ++j) mind[j] = d[j] < mind[j] ? d[j] : mind[j];
  int64_t best = 0;
  T bv = mind[0];
  for (int64_t j = 1; j < n; ++j) {
    if (mind[j] > bv) {  // strict: the first maximum wins
      bv = mind[j];
      best = j;
    }
  }
  return best;
}

template <typename T>
void fps_ragged_kernel(const T* pts, int64_t D, const std::vector<int64_t>& ptr,
                       const std::vector<int64_t>& optr, const std::vector<int64_t>& start,
                       int64_t* out) {
  const int64_t B = static_cast<int64_t>(ptr.size()) - 1;
  at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
    std::vector<T> X, d, mind, centre(static_cast<size_t>(D));
    for (int64_t b = b0; b < b1; ++b) {
      const int64_t p0 = ptr[b], n = ptr[b + 1] - ptr[b];
      const int64_t want = optr[b + 1] - optr[b];
      if (want == 0) continue;
      X.resize(static_cast<size_t>(n * D));
      d.resize(static_cast<size_t>(n));
      mind.assign(static_cast<size_t>(n), std::numeric_limits<T>::infinity());
      for (int64_t j = 0; j < n; ++j) {
        for (int64_t c = 0; c < D; ++c) X[c * n + j] = pts[(p0 + j) * D + c];
      }
      int64_t last = start[b];
      for (int64_t i = 0; i < want; ++i) {
        out[optr[b] + i] = p0 + last;
        if (i + 1 == want) break;
        for (int64_t c = 0; c < D; ++c) centre[c] = X[c * n + last];
        last = fps_step(X.data(), D, n, centre.data(), d.data(), mind.data());
      }
    }
  });
}

at::Tensor fps_ragged_cpu(const at::Tensor& points, const at::Tensor& ptr,
                          const at::Tensor& out_ptr, const at::Tensor& start) {
  POINTLIB_CHECK_ROWS(points);
  POINTLIB_CHECK_DEVICE(points, c10::DeviceType::CPU);
  POINTLIB_CHECK_PTR(ptr, points);
  POINTLIB_CHECK_PTR(out_ptr, points);
  POINTLIB_CHECK_SIZE(points.size(0), "N");
  TORCH_CHECK(out_ptr.size(0) == ptr.size(0), "out_ptr must have ", ptr.size(0),
              " entries, got ", out_ptr.size(0));
  TORCH_CHECK(start.dim() == 1 && start.size(0) == ptr.size(0) - 1 &&
                  start.scalar_type() == at::kLong,
              "start must be an int64 tensor of shape (B,)");
  const int64_t N = points.size(0), D = points.size(1);
  const std::vector<int64_t> p = host_vec(ptr), o = host_vec(out_ptr), s = host_vec(start);
  const int64_t B = static_cast<int64_t>(p.size()) - 1;
  TORCH_CHECK(p.front() == 0 && p.back() == N, "ptr must start at 0 and end at N=", N);
  TORCH_CHECK(o.front() == 0, "out_ptr must start at 0");
  for (int64_t b = 0; b < B; ++b) {
    const int64_t n = p[b + 1] - p[b], want = o[b + 1] - o[b];
    TORCH_CHECK(n >= 0, "ptr must be non-decreasing (entry ", b + 1, ")");
    TORCH_CHECK(want >= 0 && want <= n, "graph ", b, ": ", want, " samples of ", n, " rows");
    TORCH_CHECK(want == 0 || (s[b] >= 0 && s[b] < n), "graph ", b, ": start=", s[b],
                " outside [0, ", n, ")");
  }
  const at::Tensor pc = points.contiguous();
  at::Tensor idx = at::empty({o.back()}, points.options().dtype(at::kLong));
  if (o.back() == 0) return idx;
  AT_DISPATCH_FLOATING_TYPES(pc.scalar_type(), "pointlib_fps_ragged_cpu", [&] {
    fps_ragged_kernel<scalar_t>(pc.data_ptr<scalar_t>(), D, p, o, s, idx.data_ptr<int64_t>());
  });
  return idx;
}

}  // namespace
}  // namespace cpu
}  // namespace pointlib

TORCH_LIBRARY_IMPL(pointlib, CPU, m) { m.impl("fps_ragged", &pointlib::cpu::fps_ragged_cpu); }
