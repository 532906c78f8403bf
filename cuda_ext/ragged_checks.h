// Input checks of the ragged ops (CPU and CUDA). The Python layer (pointlib/ops/ragged.py)
// gives friendly errors first; these guard direct torch.ops.pointlib.* calls.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

// An (N, D) float32/float64 row tensor.
#define POINTLIB_CHECK_ROWS(x)                                                            \
  do {                                                                                    \
    TORCH_CHECK((x).dim() == 2 && (x).size(1) >= 1, #x " must have shape (N, D), got ",  \
                (x).sizes());                                                             \
    TORCH_CHECK((x).scalar_type() == at::kFloat || (x).scalar_type() == at::kDouble,     \
                #x " must be float32 or float64, got ", (x).scalar_type());               \
  } while (0)

// A (B + 1,) int64 offset vector on the device of `ref`, with rows(ref) total rows.
#define POINTLIB_CHECK_PTR(p, ref)                                                        \
  do {                                                                                    \
    TORCH_CHECK((p).dim() == 1 && (p).size(0) >= 1, #p " must have shape (B + 1,), got ", \
                (p).sizes());                                                             \
    TORCH_CHECK((p).scalar_type() == at::kLong, #p " must be int64, got ",               \
                (p).scalar_type());                                                       \
    TORCH_CHECK((p).device() == (ref).device(), #p " is on ", (p).device(), " but " #ref \
                " is on ", (ref).device());                                               \
  } while (0)
