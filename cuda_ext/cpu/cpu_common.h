// Helpers shared by the CPU kernels: structure-of-arrays copies and the distance expression.
#pragma once

#include <ATen/Parallel.h>

#include <cstdint>
#include <vector>

namespace pointlib {
namespace cpu {

// Lanes processed together by the vectorisable inner loops (a multiple of any SIMD width).
constexpr int64_t kLanes = 16;

// The one distance expression every backend uses: (dx*dx + dy*dy) + dz*dz, rounded in T after
// every operation (the build passes -ffp-contract=off, so no FMA contraction).
template <typename T>
inline T sqdist(T dx, T dy, T dz) {
  return (dx * dx + dy * dy) + dz * dz;
}

// Copies (B, N, 3) contiguous points into a (B, 3, N) structure-of-arrays buffer.
template <typename T>
std::vector<T> to_soa(const T* pts, int64_t B, int64_t N) {
  std::vector<T> soa(static_cast<size_t>(B * 3 * N));
  at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      const T* p = pts + b * N * 3;
      T* x = soa.data() + b * 3 * N;
      T* y = x + N;
      T* z = y + N;
      for (int64_t j = 0; j < N; ++j) {
        x[j] = p[3 * j];
        y[j] = p[3 * j + 1];
        z[j] = p[3 * j + 2];
      }
    }
  });
  return soa;
}

}  // namespace cpu
}  // namespace pointlib

#include <algorithm>
#include <cmath>
#include <limits>

namespace pointlib {
namespace cpu {

// Points per block of a BlockCloud.
constexpr int64_t kBlock = 32;

// One cloud sorted along a Morton (Z-order) curve and cut into blocks of kBlock points with
// axis-aligned bounding boxes. Queries visit blocks by ascending lower-bound distance and skip
// blocks that cannot contain a better (or any) answer; results are then put back into the
// contract's order (dist2, then original index), so the layout only changes speed.
template <typename T>
struct BlockCloud {
  int64_t n = 0, nblk = 0;
  std::vector<T> x, y, z;      // kBlock * nblk coordinates in curve order; padding is +inf
  std::vector<int64_t> id;     // original index of each slot; padding is INT64_MAX
  std::vector<T> lx, ly, lz;   // per-block box minimum
  std::vector<T> hx, hy, hz;   // per-block box maximum

  void build(const T* p, int64_t N) {
    n = N;
    nblk = (N + kBlock - 1) / kBlock;
    T lo[3], hi[3];
    for (int c = 0; c < 3; ++c) lo[c] = hi[c] = p[c];
    for (int64_t j = 1; j < N; ++j) {
      for (int c = 0; c < 3; ++c) {
        lo[c] = std::min(lo[c], p[3 * j + c]);
        hi[c] = std::max(hi[c], p[3 * j + c]);
      }
    }
    std::vector<uint64_t> key(static_cast<size_t>(N));
    for (int64_t j = 0; j < N; ++j) {
      uint64_t code = 0;
      for (int c = 0; c < 3; ++c) {
        const double ext = static_cast<double>(hi[c]) - static_cast<double>(lo[c]);
        double f = ext > 0 ? (static_cast<double>(p[3 * j + c]) - lo[c]) / ext : 0.0;
        if (!(f >= 0)) f = 0;  // NaN guard; only speed depends on the code
        const uint64_t q = static_cast<uint64_t>(std::min(f * 1024.0, 1023.0));
        for (int bit = 0; bit < 10; ++bit) code |= ((q >> bit) & 1ull) << (3 * bit + c);
      }
      key[j] = (code << 32) | static_cast<uint64_t>(j);
    }
    std::sort(key.begin(), key.end());
    const size_t slots = static_cast<size_t>(nblk * kBlock);
    const T inf = std::numeric_limits<T>::infinity();
    x.assign(slots, inf);
    y.assign(slots, inf);
    z.assign(slots, inf);
    id.assign(slots, std::numeric_limits<int64_t>::max());
    for (int64_t s = 0; s < N; ++s) {
      const int64_t j = static_cast<int64_t>(key[s] & 0xffffffffull);
      x[s] = p[3 * j];
      y[s] = p[3 * j + 1];
      z[s] = p[3 * j + 2];
      id[s] = j;
    }
    lx.resize(nblk), ly.resize(nblk), lz.resize(nblk);
    hx.resize(nblk), hy.resize(nblk), hz.resize(nblk);
    for (int64_t blk = 0; blk < nblk; ++blk) {
      const int64_t s0 = blk * kBlock, s1 = std::min(N, s0 + kBlock);
      lx[blk] = hx[blk] = x[s0];
      ly[blk] = hy[blk] = y[s0];
      lz[blk] = hz[blk] = z[s0];
      for (int64_t s = s0 + 1; s < s1; ++s) {
        lx[blk] = std::min(lx[blk], x[s]), hx[blk] = std::max(hx[blk], x[s]);
        ly[blk] = std::min(ly[blk], y[s]), hy[blk] = std::max(hy[blk], y[s]);
        lz[blk] = std::min(lz[blk], z[s]), hz[blk] = std::max(hz[blk], z[s]);
      }
    }
  }

  // Lower bound of the rounded dist2 from q to any point of each block. Rounding is monotone,
  // so for a point inside the box every rounded difference is at least the rounded gap, and the
  // bound never exceeds the dist2 the kernels compute.
  void lower_bounds(T qx, T qy, T qz, T* lb) const {
    for (int64_t blk = 0; blk < nblk; ++blk) {
      T gx = std::max(lx[blk] - qx, qx - hx[blk]);
      T gy = std::max(ly[blk] - qy, qy - hy[blk]);
      T gz = std::max(lz[blk] - qz, qz - hz[blk]);
      gx = gx > T(0) ? gx : T(0);
      gy = gy > T(0) ? gy : T(0);
      gz = gz > T(0) ? gz : T(0);
      lb[blk] = sqdist(gx, gy, gz);
    }
  }
};

// Builds one BlockCloud per batch element, in parallel.
template <typename T>
std::vector<BlockCloud<T>> build_block_clouds(const T* pts, int64_t B, int64_t N) {
  std::vector<BlockCloud<T>> clouds(static_cast<size_t>(B));
  at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) clouds[b].build(pts + b * N * 3, N);
  });
  return clouds;
}

}  // namespace cpu
}  // namespace pointlib
