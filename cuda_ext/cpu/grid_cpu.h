// Uniform grid (cell lists) shared by the CPU kNN and ball-query kernels.
//
// A cloud is binned into g[0] x g[1] x g[2] cubic cells of edge h, starting at the cloud's box
// minimum; points are stored cell by cell (x fastest), ascending original index inside a cell
// (counting sort), as SoA arrays. Cells of one x-row are contiguous, so a window of cells is a
// few contiguous copies. Queries are binned with the same grid (clamped to its range) and
// processed cell by cell, so the queries of one cell share one candidate tile.
//
// Only speed depends on the binning: a point's cell is floor((p - o) / h) computed in double and
// clamped, which is monotone in p, so "p is outside the window" implies a lower bound on |p - q|
// along one axis (see window_lower_bound), which the kNN kernel uses for an exact stop test.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

namespace pointlib {
namespace cpu {

// Box of a (N, 3) cloud in double; false if any coordinate is not finite (the grid kernels are
// then not used).
template <typename T>
bool cloud_box(const T* p, int64_t N, double lo[3], double hi[3]) {
  for (int c = 0; c < 3; ++c) lo[c] = hi[c] = N > 0 ? static_cast<double>(p[c]) : 0.0;
  bool finite = true;
  for (int64_t j = 0; j < N; ++j) {
    for (int c = 0; c < 3; ++c) {
      const double v = p[3 * j + c];
      finite &= std::isfinite(v);
      lo[c] = std::min(lo[c], v);
      hi[c] = std::max(hi[c], v);
    }
  }
  return finite;
}

// A window of cells [lo[a], hi[a]] per axis, and the candidates it holds, in SoA form.
template <typename T>
struct Tile {
  int64_t lo[3] = {0, 0, 0}, hi[3] = {0, 0, 0};
  int64_t n = 0;
  std::vector<T> x, y, z, d;
  std::vector<int32_t> id;
  void fit(int64_t cap) {
    if (static_cast<int64_t>(x.size()) < cap) {
      x.resize(cap), y.resize(cap), z.resize(cap), d.resize(cap), id.resize(cap);
    }
  }
};

template <typename T>
struct Grid {
  int64_t n = 0;
  int64_t g[3] = {1, 1, 1};
  double o[3] = {0, 0, 0};
  double h = 1, s = 0;          // cell edge and 1 / h (s = 0: a single cell)
  std::vector<int32_t> start;   // slots of cell c: [start[c], start[c + 1])
  std::vector<T> x, y, z;       // coordinates in cell order
  std::vector<int32_t> id;      // original index of each slot

  int64_t ncells() const { return g[0] * g[1] * g[2]; }

  // Clamped cell coordinate of v along axis a (monotone in v).
  int64_t axis_cell(double v, int a) const {
    const double u = (v - o[a]) * s;
    if (!(u > 0)) return 0;
    if (u >= static_cast<double>(g[a] - 1)) return g[a] - 1;
    return static_cast<int64_t>(u);
  }
  int64_t cell_of(T px, T py, T pz) const {
    return (axis_cell(pz, 2) * g[1] + axis_cell(py, 1)) * g[0] + axis_cell(px, 0);
  }

  // Sets the geometry: cells of edge >= h0 over the box [lo, hi], at most max_cells in all.
  void shape(const double lo[3], const double hi[3], double h0, int64_t max_cells) {
    h = h0 > 0 && std::isfinite(h0) ? h0 : std::numeric_limits<double>::infinity();
    for (int c = 0; c < 3; ++c) o[c] = lo[c];
    for (int iter = 0; iter < 200; ++iter) {
      double total = 1;
      for (int c = 0; c < 3; ++c) {
        const double cells = std::isfinite(h) ? std::floor((hi[c] - lo[c]) / h) + 1 : 1;
        total *= cells;
        g[c] = cells < 1e9 ? static_cast<int64_t>(cells) : int64_t(1e9);
      }
      if (total <= static_cast<double>(max_cells)) break;
      h *= std::max(1.01, std::cbrt(total / static_cast<double>(max_cells)));
    }
    s = std::isfinite(h) ? 1.0 / h : 0.0;
  }

  // Counting sort of the N points into their cells (stable: ascending index inside a cell).
  void fill(const T* p, int64_t N, std::vector<int32_t>& scratch_cell) {
    n = N;
    const int64_t nc = ncells();
    start.assign(static_cast<size_t>(nc + 1), 0);
    scratch_cell.resize(static_cast<size_t>(N));
    for (int64_t j = 0; j < N; ++j) {
      const int64_t c = cell_of(p[3 * j], p[3 * j + 1], p[3 * j + 2]);
      scratch_cell[j] = static_cast<int32_t>(c);
      ++start[c + 1];
    }
    for (int64_t c = 0; c < nc; ++c) start[c + 1] += start[c];
    x.resize(N), y.resize(N), z.resize(N), id.resize(N);
    std::vector<int32_t> pos(start.begin(), start.end() - 1);
    for (int64_t j = 0; j < N; ++j) {
      const int32_t sl = pos[scratch_cell[j]]++;
      x[sl] = p[3 * j], y[sl] = p[3 * j + 1], z[sl] = p[3 * j + 2];
      id[sl] = static_cast<int32_t>(j);
    }
  }

  // Copies the points of the cells within R of cell (cx, cy, cz) (clamped) into t.
  void gather(int64_t cx, int64_t cy, int64_t cz, int64_t R, Tile<T>& t) const {
    const int64_t c[3] = {cx, cy, cz};
    for (int a = 0; a < 3; ++a) {
      t.lo[a] = std::max<int64_t>(0, c[a] - R);
      t.hi[a] = std::min<int64_t>(g[a] - 1, c[a] + R);
    }
    int64_t total = 0;
    for (int64_t z0 = t.lo[2]; z0 <= t.hi[2]; ++z0) {
      for (int64_t y0 = t.lo[1]; y0 <= t.hi[1]; ++y0) {
        const int64_t row = (z0 * g[1] + y0) * g[0];
        total += start[row + t.hi[0] + 1] - start[row + t.lo[0]];
      }
    }
    t.fit(total + 1);
    int64_t n0 = 0;
    for (int64_t z0 = t.lo[2]; z0 <= t.hi[2]; ++z0) {
      for (int64_t y0 = t.lo[1]; y0 <= t.hi[1]; ++y0) {
        const int64_t row = (z0 * g[1] + y0) * g[0];
        const int64_t s0 = start[row + t.lo[0]], s1 = start[row + t.hi[0] + 1];
        const size_t len = static_cast<size_t>(s1 - s0);
        std::memcpy(t.x.data() + n0, x.data() + s0, len * sizeof(T));
        std::memcpy(t.y.data() + n0, y.data() + s0, len * sizeof(T));
        std::memcpy(t.z.data() + n0, z.data() + s0, len * sizeof(T));
        std::memcpy(t.id.data() + n0, id.data() + s0, len * sizeof(int32_t));
        n0 += static_cast<int64_t>(len);
      }
    }
    t.n = n0;
  }

  // True when the window of t holds every cell (no point lies outside it).
  bool covers_all(const Tile<T>& t) const {
    for (int a = 0; a < 3; ++a) {
      if (t.lo[a] > 0 || t.hi[a] < g[a] - 1) return false;
    }
    return true;
  }

  // A value every dist2 computed in T between q and a point outside t's window exceeds or equals.
  // A point in a cell below lo[a] has (p - o) * s < lo[a] (monotone binning), so p lies below
  // o + lo[a] * h up to a few ulps of double (the margin); symmetrically above hi[a]. The smallest
  // such axis gap, squared, bounds the exact dist2; the rounded T result is at least that times
  // (1 - 16 eps) minus a few subnormal units (at most 5 roundings, each relative or absolute).
  double window_lower_bound(const Tile<T>& t, T qx, T qy, T qz) const {
    const double q[3] = {qx, qy, qz};
    double gap = std::numeric_limits<double>::infinity();
    for (int a = 0; a < 3; ++a) {
      const double scale = std::abs(o[a]) + std::abs(q[a]) + (t.hi[a] + 2) * h;
      const double margin = 1e-12 * scale;
      if (t.lo[a] > 0) gap = std::min(gap, q[a] - (o[a] + t.lo[a] * h) - margin);
      if (t.hi[a] < g[a] - 1) gap = std::min(gap, (o[a] + (t.hi[a] + 1) * h) - q[a] - margin);
    }
    if (gap == std::numeric_limits<double>::infinity()) return gap;
    if (!(gap > 0)) return -1;
    const double eps = std::numeric_limits<T>::epsilon();
    const double tiny = static_cast<double>(std::numeric_limits<T>::denorm_min());
    return gap * gap * (1 - 16 * eps) - 8 * tiny;
  }
};

// The queries of one cloud binned into a grid's cells: queries of cell c are
// [qstart[c], qstart[c + 1]) of the binned arrays. For self-queries the grid's own arrays are used.
template <typename T>
struct QueryBins {
  const int32_t* qstart = nullptr;
  const T *qx = nullptr, *qy = nullptr, *qz = nullptr;
  const int32_t* qid = nullptr;
  Grid<T> own;  // storage when the queries differ from the points

  void bind(const Grid<T>& g) {
    qstart = g.start.data(), qx = g.x.data(), qy = g.y.data(), qz = g.z.data();
    qid = g.id.data();
  }
  // Bins M queries with the geometry of `g` (queries outside its box go to the border cells).
  void build(const Grid<T>& g, const T* q, int64_t M, std::vector<int32_t>& scratch) {
    own.n = 0;
    for (int a = 0; a < 3; ++a) own.g[a] = g.g[a], own.o[a] = g.o[a];
    own.h = g.h, own.s = g.s;
    own.fill(q, M, scratch);
    bind(own);
  }
};

}  // namespace cpu
}  // namespace pointlib
