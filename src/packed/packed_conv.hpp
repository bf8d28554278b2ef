#pragma once
// The three convolution passes on the packed driver (packed_gemm.hpp): no X_col anywhere. The
// GEMM view is shape.hpp's, per image n and group g:
//   forward           Y_g = W_g [M x K] * X_col [K x P] (+ bias in the tile write-back); X_col's
//                     panels are gathered from the image (ImageColumns), W_g is packed once per
//                     call into the plan's workspace and shared by every task where it is small
//                     or kept (constant weights), else by each task for its output channels.
//   backward_data     dX_col = W_g^T [K x M] * dY_g [M x P] (W^T packed once per call where it
//                     is small and several images share it, else block by block), a block
//                     of whole input channels and whole output rows at a time into the slot's
//                     buffer, then added into dX by col2im (its order: k, then position) before
//                     the next block; or, for the stride-1 shapes flipped_filter.hpp names, the
//                     forward convolution of dY with the flipped filter (no block, no col2im).
//   backward_weights  dW_g [M x K] (+)= sum over n of dY_g [M x P] * X_col^T [P x K], one GEMM
//                     whose reduction runs over the positions of every image in order, cut into
//                     chunks fixed by the shape for a small dW (weight_gradient_tasks.hpp).
// Tasks split lanes only (positions or output channels for forward, input channels for
// backward_data, X_col rows for backward_weights) or a small dW's reduction at points fixed by
// the shape, and every reduction (or chunk) is cut at multiples of the kernel's kc from its
// start; a block of backward_data covers output rows fixed by the shape. So an element's
// operations depend on the shape and the CPU's kernel only: not on the batch it is in (dW and
// db sum over the batch), the thread count, block sizes or the workspace limit.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>

#include "../parallel.hpp"
#include "convgemm/shape.hpp"
#include "micro_kernel.hpp"
#include "packed_gemm.hpp"

namespace convgemm::detail {

// Lanes cut into about equal ranges, range r starting at r * lanes / ranges rounded to the
// nearest panel (rounded up, one range of a 14x14 image was 4 positions and its neighbour 64,
// so two threads ran 128 and 68). A range may be empty.
struct EvenRanges {
  int64_t lanes = 1, width = 1, ranges = 1;
  int64_t begin(int64_t range) const {
    if (range >= ranges) return lanes;
    const int64_t exact = range * lanes / ranges;
    return std::min(lanes, (exact + width / 2) / width * width);
  }
  int64_t longest() const;
};

// How forward cuts its work: tasks (group of images, group, range of positions, range of
// output channels); a position range covers the positions of the group's images one after the
// other. With several images, tiles cross images, so nchw's land in the slot's block buffer and
// are copied to y (with the bias) afterwards. Output channels are split only where the
// positions make too few ranges (small images); when one range covers every position of the
// call, each task packs its own output channels' filter rows itself (filter_in_tasks), which
// reads the filter once instead of writing and rereading a packed copy (9.4 MB at 3x3 512).
// A filter too large to share (kSharedFilterFloats) is packed in the tasks whatever the split,
// and the split is the one that packs the least (see split_forward).
// Tiles: on a kernel that prefers columns, nchw's positions are the tile rows (Y's contiguous
// side, as C's columns must be) unless outputs_on_rows: then the output channels are, the tiles
// land in the slot's block as Y^T [positions x outputs] and go to y from there. Chosen where the
// positions fill the rows' panels much worse than the outputs would (3x3 512@7 at batch 1: 49
// positions in two 32-row panels; as columns, four 12-wide panels and one lane), a rule on the
// shape and the kernel; each element's operations are the same either way.
struct ForwardSplit {
  int64_t images = 1;
  EvenRanges positions, outputs;
  int64_t positions_per_range = 1;  // the longest position range
  bool filter_in_tasks = false;
  bool outputs_on_rows = false;
  int64_t filter_width = 1;  // the filter's panel width
};

// How the packed passes cut their work; chosen once by the plan.
struct PackedBlocking {
  ForwardSplit forward;
  // backward_data of a stride-1 shape runs as a forward convolution (flipped_filter.hpp) when
  // data_as_forward is set, cut as data_forward says; otherwise as below.
  bool data_as_forward = false;
  ForwardSplit data_forward;
  // backward_data: tasks (image, group, range of input channels), each a sequence of blocks of
  // output rows (fixed by the shape: the order col2im adds them in)
  int64_t channels_per_range = 1, channel_ranges = 1, rows_per_block = 1;
  // Small images (a block is the whole image): this many images side by side in one block, so
  // that the positions fill the micro-kernel's panels (7x7 = 49 positions, 2 panels of 32).
  int64_t images_per_data_block = 1;
  // W^T packed once per call and shared (several images, a small filter), else by each task.
  bool data_weights_shared = false;
  // backward_weights: tasks (group, range of dW's lanes): ranges of X_col rows (dW columns), or
  // of output channels (dW rows) when there are more of those. A range's task packs only its
  // own lanes of one operand but all of the other, so the longer side is the one split.
  bool weight_ranges_of_outputs = false;
  int64_t weight_lanes_per_range = 1, weight_ranges = 1;
  // backward_weights of a small dW (weight_chunks > 1) cuts its reduction instead: tasks
  // (group, chunk of weight_chunk_steps positions of the batch in order, the last shorter),
  // each packing only its own steps of both operands; chunk 0 sums into dw, the others into
  // partial dWs, then added to dw in chunk order. The chunks are a rule on the shape alone.
  int64_t weight_chunks = 1, weight_chunk_steps = 0;
  // With chunks, each chunk's task also sums its steps of dY per output channel (the bias
  // gradient's piece, while that dY is in cache) into chunk_bias_sums, added in chunk order.
  PackBlocks blocks{1, 1};  // lanes per packed block (bits do not depend on them)
  // The packed weights, shared by the tasks of one call: forward's W (lanes output channels),
  // or backward_data's W^T (lanes X_col rows), packed per channel range so that each range
  // starts on a panel, or its flipped filter; backward_weights' partial dWs in the same place.
  // None of it where every pass packs its weights in the tasks.
  int64_t packed_weight_floats = 0;
  int64_t slot_floats = 0;  // per worker: row and column buffers, backward_data's block
  int64_t row_buffer_floats = 0, col_buffer_floats = 0;
};

// The blocking for `slots` workers under an optional byte cap per packing buffer
// (`buffer_bytes_cap`, 0 for none) and for the whole workspace (`workspace_limit`, 0 for none;
// slots are dropped first, then the packed blocks shrink). `keeps_filter`: forward keeps its
// packed filter in the workspace between calls (constant weights), so its tasks share it.
// Throws std::invalid_argument naming workspace_limit when the smallest blocks on one worker do
// not fit.
PackedBlocking choose_packed_blocking(const Conv2dShape& shape, const MicroKernel& kernel,
                                      int& slots, std::size_t buffer_bytes_cap,
                                      std::size_t workspace_limit, bool keeps_filter);

// backward_weights' chunk partials at the workspace's start: the partial dWs of chunks 1 to
// chunks - 1 (G * M * K floats each), then every chunk's bias sums (G * M doubles each).
inline int64_t weight_partial_dw_floats(const Conv2dShape& s, int64_t chunks) {
  constexpr int64_t kAlignFloats = kPackedPanelAlignment / sizeof(float);
  const int64_t floats = (chunks - 1) * s.groups * s.gemm_m() * s.gemm_k();
  return (floats + kAlignFloats - 1) / kAlignFloats * kAlignFloats;
}
inline int64_t weight_partial_floats(const Conv2dShape& s, int64_t chunks) {
  if (chunks <= 1) return 0;
  return weight_partial_dw_floats(s, chunks) +
         chunks * s.groups * s.gemm_m() * static_cast<int64_t>(sizeof(double) / sizeof(float));
}

// A worker's share of the workspace (below): its row and column packing buffers and its block.
struct SlotBuffers {
  float *rows, *cols, *data_block;
};
SlotBuffers slot_buffers(const PackedBlocking& b, float* workspace, int slot);
// Positions in one backward_data block: its output rows, or its images side by side.
int64_t data_block_columns(const PackedBlocking& b, int64_t OW, int64_t P);
inline constexpr auto kNoWriteBack = [](int64_t, int64_t, int64_t, int64_t) {};

// Whether forward writes its tiles to y with stores that bypass the caches (GemmOutput's tile):
// one reduction block (a tile is final when the kernel is done with it), nothing to accumulate
// onto, and an output larger than a core's share of the cache.
bool streams_output(const Conv2dShape& s, const MicroKernel& kernel, bool accumulate);

// The passes. `workspace` holds packed_weight_floats, then slot_floats per slot (64-byte
// aligned, slot_floats a multiple of 16). Pointers as in plan.hpp; accumulate adds to y / dx /
// dw (and db) instead of overwriting. backward_weights computes db (when not null) only where
// the blocking chunks its reduction (weight_chunks > 1); the caller sums it otherwise.
// What forward does with the filter: `per_call`, pack it for this call (into the workspace, or
// in the tasks where ForwardSplit says so); `keep`, pack it into the workspace, where the next
// call finds it (constant weights); `packed`, it is there already.
enum class FilterPacking { per_call, keep, packed };
void packed_forward(const Conv2dShape& shape, const MicroKernel& kernel, const PackedBlocking& b,
                    WorkerPool& pool, const float* x, const float* w, const float* bias, float* y,
                    bool accumulate, FilterPacking packing, float* workspace);
void packed_backward_data(const Conv2dShape& shape, const MicroKernel& kernel,
                          const PackedBlocking& b, WorkerPool& pool, const float* dy,
                          const float* w, float* dx, bool accumulate, float* workspace);
void packed_backward_weights(const Conv2dShape& shape, const MicroKernel& kernel,
                             const PackedBlocking& b, WorkerPool& pool, const float* x,
                             const float* dy, float* dw, float* db, bool accumulate,
                             float* workspace);

// The same passes on nhwc tensors (packed_conv_nhwc.cpp), with the same blocking, workspace
// and contract. The GEMM view is transposed (Y [P x O] = X_col^T * W^T, dX_col^T = dY^T * W)
// so that the output's rows stay contiguous, as the driver expects of C.
void packed_forward_nhwc(const Conv2dShape& shape, const MicroKernel& kernel,
                         const PackedBlocking& b, WorkerPool& pool, const float* x, const float* w,
                         const float* bias, float* y, bool accumulate, FilterPacking packing,
                         float* workspace);
void packed_backward_data_nhwc(const Conv2dShape& shape, const MicroKernel& kernel,
                               const PackedBlocking& b, WorkerPool& pool, const float* dy,
                               const float* w, float* dx, bool accumulate, float* workspace);
void packed_backward_weights_nhwc(const Conv2dShape& shape, const MicroKernel& kernel,
                                  const PackedBlocking& b, WorkerPool& pool, const float* x,
                                  const float* dy, float* dw, float* db, bool accumulate,
                                  float* workspace);

// "packed(skx 32x12, tile rows = positions)" and the like, for describe().
std::string describe_packed(const MicroKernel& kernel);

}  // namespace convgemm::detail
