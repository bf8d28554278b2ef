#pragma once
// The convolution plan and the free functions over it.
//
// Tensor layouts (contiguous float32, row-major), chosen by Conv2dShape::layout:
//   nchw  x [N, C, H, W]   w [O, C/G, KH, KW] (OIHW)   y [N, O, OH, OW]
//   nhwc  x [N, H, W, C]   w [O, KH, KW, C/G] (OHWI)   y [N, OH, OW, O]
//   bias [O] either way; dx like x, dw like w, dbias like bias, dy like y.
// Sizes and the GEMM view are defined in shape.hpp. The nhwc layout runs on the packed driver
// only (every pass, groups, depthwise included; with its reproducibility contract): a plan
// asked for it with gemm_backend openblas or onednn, or in a build without BLIS, throws
// std::invalid_argument naming the layout.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "convgemm/shape.hpp"

namespace convgemm {

// What a plan's passes run on.
//   packed    convgemm's own GEMM driver on BLIS's micro-kernel for this CPU, with im2col done
//             inside the packing (no lowered matrix is ever stored). Every output element is
//             the same sequence of operations whatever the batch size, block_bytes,
//             workspace_limit and thread count: image i of a batch gives the bits it gives
//             alone. Built when CMake found BLIS (libblis-serial-dev).
//   openblas  the explicit path: blocks of X_col lowered by im2col, then OpenBLAS's
//             cblas_sgemm (the classic composition). Always built.
//   onednn    the explicit path on oneDNN's dnnl_sgemm; built when CMake found libdnnl-dev.
//   automatic the configured default (CMake cache variable CONVGEMM_GEMM_BACKEND, default
//             packed), for every pass; packed falls back to openblas where BLIS has only its
//             portable reference kernel. On the explicit path, backward_weights always runs on
//             OpenBLAS (as fast there, and its panels are thin).
// Depthwise shapes run on their direct kernels whatever the choice. The rule depends on the
// options and the CPU only, never on threads, so reproducibility holds.
enum class GemmBackend { automatic, openblas, onednn, packed };

// True when this build of the library contains `backend` (automatic and openblas always do).
bool gemm_backend_available(GemmBackend backend);

struct Conv2dOptions {
  // Gradients (dx, dw, dbias) are overwritten by default; with this set they are added to the
  // values already there, so that several micro-batches sum into one gradient.
  bool accumulate_gradients = false;

  // Worker threads of the plan. 0 takes oneTBB's default at construction, which honours an
  // active tbb::global_control(max_allowed_parallelism); a later global_control can still lower
  // it. Results never depend on it (see backward_weights).
  int num_threads = 0;

  // Hard cap on workspace_bytes(), all threads together; 0 means no cap. Worker slots are
  // dropped first, then blocks shrink. The constructor throws std::invalid_argument naming
  // workspace_limit when the smallest blocks on one thread cannot fit.
  // Packed driver: the workspace is the packed weights plus each worker's packing buffers, and
  // every accepted limit gives bitwise the same results. Explicit path: any limit that holds
  // one block of the unlimited plan gives the same bits; below that the GEMMs see other sizes
  // and results may differ in the last bits.
  std::size_t workspace_limit = 0;

  // Packed driver: a cap on each packing buffer (0: BLIS's block sizes); never changes a bit.
  // Explicit path: bytes of column block per worker, the unit of cache blocking; 0 sizes it to
  // this machine's L2 cache (detected, 1 MiB if unknown), a property of the machine, not of the
  // thread count.
  std::size_t block_bytes = 0;

  // Which GEMM library the passes call; a backend this build lacks throws std::invalid_argument.
  GemmBackend gemm_backend = GemmBackend::automatic;

  // Inference: the caller promises that the weights behind a given `w` pointer never change
  // between forward calls. The packed driver then packs them on the first forward call and
  // reuses the packed copy while forward gets the same pointer (another pointer, or a
  // backward_data call in between, packs again). Results are the same bits either way; only the
  // packing time goes. No effect on the explicit path.
  bool constant_weights = false;
};

// The plan: validates the shape once, sizes and allocates every buffer once, then runs the three
// passes any number of times without allocating.
//
// Not copyable, movable. Calls are non-const because they write the plan's workspace: use one
// plan per calling thread (each call is internally parallel over images, groups and row blocks).
// Every call throws std::invalid_argument on a null pointer (dbias and bias may be null), before
// writing any output.
//
// Example:
//   convgemm::Conv2dShape shape{.batch = 8, .in_channels = 64, .in_height = 56, .in_width = 56,
//                               .out_channels = 64, .kernel_height = 3, .kernel_width = 3};
//   shape.set_padding(1);
//   convgemm::Conv2d conv(shape);           // throws std::invalid_argument on a bad shape
//   conv.forward(x, w, bias, y);            // y = conv(x, w) + bias
//   conv.backward_data(dy, w, dx);          // dx = dL/dx
//   conv.backward_weights(x, dy, dw, db);   // dw = dL/dw, db = dL/dbias
class Conv2d {
 public:
  explicit Conv2d(const Conv2dShape& shape, const Conv2dOptions& options = {});
  ~Conv2d();
  Conv2d(Conv2d&&) noexcept;
  Conv2d& operator=(Conv2d&&) noexcept;
  Conv2d(const Conv2d&) = delete;
  Conv2d& operator=(const Conv2d&) = delete;

  // y = W * X_col (+ bias), overwriting y. bias may be nullptr.
  void forward(const float* x, const float* w, const float* bias, float* y);

  // dx = col2im(W^T * dY): overwrites dx, or adds to it with accumulate_gradients.
  void backward_data(const float* dy, const float* w, float* dx);

  // dw = sum over images and positions of dY * X_col^T, dbias = sum of dy over n, oh, ow
  // (dbias may be nullptr). Overwrites, or adds with accumulate_gradients.
  // Bitwise reproducible: partial sums belong to fixed chunks of (image, row block) whose bounds
  // depend on the shape and block size only, and are added in chunk order, so dw and dbias are
  // the same bits for every thread count and every run.
  void backward_weights(const float* x, const float* dy, float* dw, float* dbias);

  const Conv2dShape& shape() const;
  const Conv2dOptions& options() const;
  // Bytes owned by the plan for its column blocks and weight-gradient partials.
  std::size_t workspace_bytes() const;
  // Worker slots the plan was built with (the most threads a call can use).
  int num_threads() const;
  // What the passes run on, in one line: "packed(skx 32x12, kc 384, ...)", "explicit im2col +
  // sgemm (forward openblas, ...)" or "depthwise direct kernels".
  std::string describe() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Convenience functions: each builds a temporary plan (validating and allocating), runs one pass
// and discards it. Use Conv2d to run a shape more than once.
void conv2d_forward(const Conv2dShape& shape, const float* x, const float* w, const float* bias,
                    float* y);
void conv2d_backward_data(const Conv2dShape& shape, const float* dy, const float* w, float* dx);
void conv2d_backward_weights(const Conv2dShape& shape, const float* x, const float* dy, float* dw,
                             float* dbias /* nullptr: no bias gradient */);

}  // namespace convgemm
