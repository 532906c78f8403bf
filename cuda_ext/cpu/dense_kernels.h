// The dense 3-D CPU kernels (knn_cpu.cpp, ball_query_cpu.cpp), exported so that the ragged ops
// can run them graph by graph for D = 3 (grid paths). Same contract as the dense ops: kNN needs
// 1 <= k <= N; the ball query pads with the first member and fills an empty ball with the
// nearest point. float and double are instantiated.
#pragma once

#include <cstdint>

namespace pointlib {
namespace cpu {

template <typename T>
void knn_dense(const T* pts, const T* qry, int64_t B, int64_t N, int64_t M, int64_t k,
               int64_t* out_idx, T* out_d2);

template <typename T>
void ball_query_dense(const T* pts, const T* qry, int64_t B, int64_t N, int64_t M, T r2,
                      double radius, int64_t nsample, int64_t* out);

}  // namespace cpu
}  // namespace pointlib
