// Farthest point sampling on CPU: one tight loop per cloud (clouds in parallel) over SoA
// coordinates and the running minimum distance. Each step updates the minima and their maximum
// in one vectorisable pass (kLanes partial maxima), then finds the first index holding that
// maximum, so ties go to the lowest index like the reference's argmax. With a tie tolerance
// (tie_rtol > 0) a second pass takes the lowest index whose distance is within
// tie_rtol * max|x| of the largest one (see pointlib/ops/reference.py).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <torch/library.h>

#include <cmath>
#include <limits>
#include <vector>

#include "checks.h"
#include "cpu/cpu_common.h"

namespace pointlib {
namespace cpu {
namespace {

template <typename T>
void fps_cloud(const T* p, int64_t N, int64_t npoint, int64_t start, double tie_rtol,
               int64_t* out) {
  std::vector<T> buf(static_cast<size_t>(4 * N));
  T* X = buf.data();
  T* Y = X + N;
  T* Z = Y + N;
  T* mind = Z + N;
  for (int64_t j = 0; j < N; ++j) {
    X[j] = p[3 * j];
    Y[j] = p[3 * j + 1];
    Z[j] = p[3 * j + 2];
    mind[j] = std::numeric_limits<T>::infinity();
  }
  T tol = T(0);
  if (tie_rtol > 0) {
    T r2 = T(0);  // max |x|^2, accumulated as the reference does: (x*x + y*y) + z*z
    for (int64_t j = 0; j < N; ++j) {
      const T d = sqdist(X[j], Y[j], Z[j]);
      r2 = d > r2 ? d : r2;
    }
    tol = static_cast<T>(tie_rtol) * std::sqrt(r2);
  }
  int64_t last = start;
  for (int64_t i = 0; i < npoint; ++i) {
    out[i] = last;
    const T cx = X[last], cy = Y[last], cz = Z[last];
    T lane_max[kLanes];
    for (int64_t l = 0; l < kLanes; ++l) lane_max[l] = -std::numeric_limits<T>::infinity();
    int64_t j = 0;
    for (; j + kLanes <= N; j += kLanes) {
      for (int64_t l = 0; l < kLanes; ++l) {
        const T d = sqdist(cx - X[j + l], cy - Y[j + l], cz - Z[j + l]);
        const T m = d < mind[j + l] ? d : mind[j + l];
        mind[j + l] = m;
        lane_max[l] = m > lane_max[l] ? m : lane_max[l];
      }
    }
    T best = -std::numeric_limits<T>::infinity();
    for (; j < N; ++j) {
      const T d = sqdist(cx - X[j], cy - Y[j], cz - Z[j]);
      const T m = d < mind[j] ? d : mind[j];
      mind[j] = m;
      best = m > best ? m : best;
    }
    for (int64_t l = 0; l < kLanes; ++l) best = lane_max[l] > best ? lane_max[l] : best;
    int64_t arg = 0;
    if (tie_rtol > 0) {
      // lowest index within the tolerance: sqrt(mind) >= sqrt(best) - tol
      const T t = std::sqrt(best) - tol;
      const T thr = t > T(0) ? t * t : -std::numeric_limits<T>::infinity();
      while (arg < N && !(mind[arg] >= thr)) ++arg;
    } else {
      while (arg < N && mind[arg] != best) ++arg;  // first maximum; `best` is one of the minima
    }
    last = arg < N ? arg : 0;  // only with NaN coordinates (never validated ones)
  }
}

at::Tensor fps_cpu(const at::Tensor& points, int64_t npoint, int64_t start, double tie_rtol) {
  POINTLIB_CHECK_CLOUD(points);
  POINTLIB_CHECK_DEVICE(points, c10::DeviceType::CPU);
  const int64_t B = points.size(0), N = points.size(1);
  POINTLIB_CHECK_SIZE(N, "N");
  TORCH_CHECK(npoint >= 1 && npoint <= N, "fps: npoint=", npoint, " must be in [1, N=", N, "]");
  TORCH_CHECK(start >= 0 && start < N, "fps: start=", start, " must be in [0, N=", N, ")");
  TORCH_CHECK(tie_rtol >= 0, "fps: tie_rtol=", tie_rtol, " must be >= 0");
  const at::Tensor p = points.contiguous();
  at::Tensor idx = at::empty({B, npoint}, points.options().dtype(at::kLong));
  AT_DISPATCH_FLOATING_TYPES(p.scalar_type(), "pointlib_fps_cpu", [&] {
    const scalar_t* src = p.data_ptr<scalar_t>();
    int64_t* out = idx.data_ptr<int64_t>();
    at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        fps_cloud(src + b * N * 3, N, npoint, start, tie_rtol, out + b * npoint);
      }
    });
  });
  return idx;
}

}  // namespace
}  // namespace cpu
}  // namespace pointlib

TORCH_LIBRARY_IMPL(pointlib, CPU, m) { m.impl("fps", &pointlib::cpu::fps_cpu); }
