// Input checks shared by the CPU and CUDA kernels of pointlib._C.
//
// The Python layer (pointlib/ops/_validate.py) already gives friendly errors; these TORCH_CHECKs
// guard direct calls of torch.ops.pointlib.* so that a kernel never reads out of bounds.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <cstdint>
#include <limits>

// A (B, N, 3) floating-point coordinate tensor.
#define POINTLIB_CHECK_CLOUD(x)                                                              \
  do {                                                                                       \
    TORCH_CHECK((x).dim() == 3 && (x).size(2) == 3, #x " must have shape (B, N, 3), got ", \
                (x).sizes());                                                                \
    TORCH_CHECK((x).scalar_type() == at::kFloat || (x).scalar_type() == at::kDouble,        \
                #x " must be float32 or float64, got ", (x).scalar_type());                  \
  } while (0)

// points and queries: same batch size, dtype and device.
#define POINTLIB_CHECK_PAIR(p, q)                                                              \
  do {                                                                                         \
    TORCH_CHECK((p).device() == (q).device(), #p " is on ", (p).device(), " but " #q " is on ", \
                (q).device());                                                                 \
    TORCH_CHECK((p).scalar_type() == (q).scalar_type(), #p " is ", (p).scalar_type(),          \
                " but " #q " is ", (q).scalar_type());                                         \
    TORCH_CHECK((p).size(0) == (q).size(0), "batch sizes differ: " #p " ", (p).sizes(),       \
                " vs " #q " ", (q).sizes());                                                   \
  } while (0)

#define POINTLIB_CHECK_DEVICE(x, device_type)                                          \
  TORCH_CHECK((x).device().type() == (device_type), #x " must be a ",                   \
              c10::DeviceTypeName(device_type), " tensor, got one on ", (x).device())

// Indices are stored as int32 inside some kernels; keep sizes representable.
#define POINTLIB_CHECK_SIZE(n, name)                                                   \
  TORCH_CHECK((n) >= 0 && (n) < static_cast<int64_t>(std::numeric_limits<int32_t>::max()), \
              name "=", (n), " is too large for the kernels (must be < 2^31 - 1)")
