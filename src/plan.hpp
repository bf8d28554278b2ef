#pragma once
// The engine behind Conv2d and ConvTranspose2d: how the work is cut into tasks (Blocking), the
// workspace those tasks use, and the dispatch of the three passes to the kernels.
//
// Tasks and why (depthwise shapes bypass all of this: one task per plane or filter, direct
// loops, see kernels.hpp):
//   forward           (image, group, block of output rows): every core is busy even at batch 1;
//                     when a small image makes too few blocks, also a panel of output channels.
//   backward_data     the same tasks (panels of input channels, which scatter into different
//                     planes); row blocks of one image scatter into overlapping input
//                     rows, so even blocks run first and odd blocks second (two parallel waves)
//                     when blocks two apart cannot touch the same pixel, and one task per
//                     (image, group) runs its blocks in that same order otherwise.
//   backward_weights  (group, panel of dW): X_col rows (dW columns), or output channels (dW rows)
//                     for a pointwise kernel, which lowers nothing. Each task sums its panel over
//                     every image and row block in index order, so each dW entry is the same
//                     sum in the same order whichever thread runs it: bitwise reproducible
//                     across thread counts. Each task lowers only its own X_col rows, so no
//                     im2col work is repeated. A small dW_g (at most 64K floats) is one panel of
//                     every X_col row, and its tasks are chunks of the (image, row block)
//                     sequence instead: fixed by the shape, each summed in index order into its
//                     own partial buffer, the partials then added in chunk order. Still the same
//                     sums in the same order on any thread count.
// The workspace is one column block per worker slot (a slot is picked by the running thread and
// never influences a result), plus the partial sums of a chunked weight gradient.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "convgemm/conv2d.hpp"
#include "convgemm/shape.hpp"
#include "gemm.hpp"
#include "packed/packed_conv.hpp"
#include "parallel.hpp"

namespace convgemm::detail {

// How the work is cut: a function of the shape and the options (block_bytes, workspace_limit),
// never of the thread count, except `slots`.
struct Blocking {
  bool depthwise = false;         // in_channels == groups: direct kernels, no GEMM
  bool pointwise = false;         // X_col is the input itself: no scratch at all
  int64_t rows_per_block = 1;     // most output rows of a block, forward and backward_data
  int64_t blocks_per_image = 1;   // ceil(OH / the budget's rows), sized evenly (RowSplit)
  int64_t output_panels = 1;      // forward tasks per (image, group, block), over output channels
  int64_t outputs_per_panel = 1;  // output channels per forward panel (the last may have fewer)
  int64_t input_panels = 1;       // backward_data tasks per (image, group, block), input channels
  int64_t inputs_per_panel = 1;   // input channels per backward_data panel
  bool data_waves = false;        // backward_data blocks two apart never overlap
  int64_t weight_panel_rows = 1;  // X_col rows (dW columns) per backward_weights task
  int64_t weight_channel_panels = 1;      // ranges of output channels (pointwise only)
  int64_t weight_channel_panel_rows = 1;  // output channels per range
  int64_t weight_panels = 1;              // ceil(K / weight_panel_rows)
  int64_t weight_rows_per_block = 1;      // most output rows of a backward_weights block
  int64_t weight_blocks_per_image = 1;    // likewise sized evenly
  int64_t weight_chunks = 1;   // backward_weights: chunks of the (image, row block) sequence
  int64_t partial_floats = 0;  // their partial dW sums (chunks - 1 of them), shared by the slots
                               // (nhwc depthwise: its tap-major filters)
  int64_t slot_floats = 0;     // scratch floats per worker slot
  int slots = 1;               // worker slots (threads a call can use)
};

// OH output rows cut into `blocks` blocks whose sizes differ by at most one row (56 rows in 12
// blocks: 4 and 5 rows, not eleven of 5 and one of 1), so that tasks of one image take about
// equally long and the last one does not leave a core idle.
struct RowSplit {
  int64_t rows, blocks;
  int64_t begin(int64_t block) const { return block * rows / blocks; }
  int64_t end(int64_t block) const { return (block + 1) * rows / blocks; }
  int64_t most() const { return (rows + blocks - 1) / blocks; }
  int64_t fewest() const { return rows / blocks; }
};

// Throws std::invalid_argument naming workspace_limit when one slot cannot fit under it.
Blocking choose_blocking(const Conv2dShape& shape, const Conv2dOptions& options, int threads);

// Per-worker block size when the options leave it open: this machine's L2 cache size.
std::size_t default_block_bytes();

// What a plan runs on, decided once at construction: the packed driver (kernel != nullptr, with
// its blocking) or the explicit im2col + BLAS path; depthwise shapes always take their direct
// kernels (blocking.depthwise).
struct Engine {
  const MicroKernel* kernel = nullptr;
  Blocking blocking;
  PackedBlocking packed;
};
Engine choose_engine(const Conv2dShape& shape, const Conv2dOptions& options);

class Plan {
 public:
  // `shape` must satisfy the kernels' preconditions (Conv2dShape::validate, or a transposed
  // shape's as_convolution() after ConvTranspose2dShape::validate).
  Plan(const Conv2dShape& shape, const Conv2dOptions& options)
      : Plan(shape, options, choose_engine(shape, options)) {}

  void forward(const float* x, const float* w, const float* bias, float* y, bool accumulate);
  void backward_data(const float* dy, const float* w, float* dx, bool accumulate);
  // dbias may be null.
  void backward_weights(const float* x, const float* dy, float* dw, float* dbias, bool accumulate);

  // Channel-wise helpers over a [N, channels, plane] tensor, run on the plan's workers.
  void add_channel_bias(const float* bias, int64_t channels, int64_t plane, float* t);
  void sum_channels(const float* t, int64_t channels, int64_t plane, float* sums, bool accumulate);

  const Conv2dShape& shape() const { return shape_; }
  const Blocking& blocking() const { return blocking_; }
  std::size_t workspace_bytes() const;
  // One line per pass: which kernel and GEMM library it runs on (for traces and benchmarks).
  std::string describe() const;

 private:
  Plan(const Conv2dShape& shape, const Conv2dOptions& options, const Engine& engine);
  bool runs_packed() const { return kernel_ != nullptr && !blocking_.depthwise; }
  std::size_t packed_floats() const;  // the packed passes' workspace, after the explicit one
  float* packed_workspace() { return workspace_.get() + blocking_.slots * slot_stride_; }

  float* scratch(int slot) { return workspace_.get() + slot * slot_stride_; }
  // The weight-gradient partials, or the nhwc depthwise kernels' tap-major filters.
  float* partials() { return workspace_.get() + blocking_.slots * slot_stride_; }

  struct AlignedDelete {
    void operator()(float* p) const;
  };

  Conv2dShape shape_;
  bool constant_weights_;
  const float* packed_weights_of_ = nullptr;  // the w whose packed copy the workspace holds
  const MicroKernel* kernel_;
  Blocking blocking_;
  PackedBlocking packed_;
  GemmLibrary forward_gemm_, backward_data_gemm_, backward_weights_gemm_;
  WorkerPool pool_;
  int64_t slot_stride_ = 0;  // floats, a whole number of cache lines so slots never share one
  std::unique_ptr<float[], AlignedDelete> workspace_;
};

}  // namespace convgemm::detail
