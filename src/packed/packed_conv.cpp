#include "packed_conv.hpp"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <utility>

#include "../im2col.hpp"
#include "../kernels.hpp"
#include "bias_write_back.hpp"
#include "convgemm/detail/check.hpp"
#include "flipped_filter.hpp"
#include "operands.hpp"
#include "prepacked_weights.hpp"
#include "weight_gradient_tasks.hpp"

namespace convgemm::detail {
namespace {

constexpr int64_t kAlignFloats = kPackedPanelAlignment / sizeof(float);

int64_t round_up(int64_t value, int64_t multiple) { return ceil_div(value, multiple) * multiple; }

// Tasks a pass aims for per worker, so that unequal tasks still even out.
constexpr int64_t kTasksPerSlot = 2;

// backward_data: input channels per block aim for this many X_col rows (a whole number of
// channels, since col2im of one channel must stay in one task), and a block's output rows for
// this many positions. The rows are a rule on the shape alone: col2im adds a block's entries in
// (k, position) order and the blocks in order, so where a block ends is part of each dX sum.
constexpr int64_t kDataBlockRows = 96;
constexpr int64_t kDataBlockPositions = 1024;

// backward_weights cuts its reduction into chunks when dW_g has at most kChunkedWeightFloats
// (the lane ranges would be few and each would pack all of the other operand): chunks of at
// least kWeightChunkSteps positions, at most kMostWeightChunks of them, and partial dWs of at
// most kWeightPartialFloats in all. Chunks of two kc blocks let one 56x56 image make four
// tasks: with 2048 it made one, whose lane ranges each packed all of dY or X (3x3 64@56 and
// 1x1 64->256 at batch 1 on two threads, 1.6x one thread; 4 chunks, 1.9x).
constexpr int64_t kChunkedWeightFloats = 64 << 10;
constexpr int64_t kWeightChunkSteps = 768;
constexpr int64_t kMostWeightChunks = 8;
constexpr int64_t kWeightPartialFloats = 256 << 10;

// forward's position ranges keep at least this many panels each (every range streams the
// packed filter once); where that leaves too few tasks, they split the output channels.
constexpr int64_t kMinRangePanels = 4;

// A filter is packed once per call into the workspace and shared by the tasks only where the
// copy is at most kSharedFilterFloats (512 KiB): a larger one would be most of the workspace
// (9.4 MB for 3x3 512, against 1-2 MiB of packing buffers per worker), so the tasks pack their
// own output channels' rows block by block in cache instead, and forward splits its work so as
// to pack least (split_forward). Packing a float costs about what gathering one does, so a
// task of p positions and m output channels packs (p + m) * K floats for its 2 * p * m * K flops.
constexpr int64_t kSharedFilterFloats = 128 << 10;

// The default workspace of one worker, at most (choose_packed_blocking): 2 MiB.
constexpr int64_t kWorkerFloats = 512 << 10;

// forward puts several images side by side when one has at most this many positions (14x14),
// as many as keep the block buffer of M x positions within kForwardBlockFloats (1 MiB).
constexpr int64_t kSmallImagePositions = 256;
constexpr int64_t kForwardBlockFloats = 256 << 10;

struct PassLanes {
  int64_t rows, cols;  // lanes of A and of B one task covers, in the A * B view
};

// Counts of `per` lanes that split `lanes` into about `parts` ranges, in multiples of `width`.
int64_t lanes_per_range(int64_t lanes, int64_t parts, int64_t width) {
  return round_up(ceil_div(lanes, std::max<int64_t>(parts, 1)), width);
}

// Whether forward's output channels should be the tile rows (ForwardSplit): the share of the
// lanes the tiles compute, the rows' panels counted whole and the columns' by their lanes (an
// edge tile computes only its columns), at least kOutputRowsGain times that of positions on rows.
constexpr double kOutputRowsGain = 1.1;
bool outputs_on_tile_rows(const MicroKernel& kernel, int64_t positions, int64_t outputs) {
  if (kernel.prefers_rows) return false;  // (its rows are the outputs' already)
  const auto filled = [](int64_t lanes, int64_t width) {
    return static_cast<double>(lanes) / static_cast<double>(round_up(lanes, width));
  };
  return filled(outputs, kernel.mr) >
         kOutputRowsGain * filled(positions, kernel.mr) * filled(outputs, kernel.nr);
}

// Ranges of positions and of output channels for forward tasks that each pack their own filter
// rows: `units` (image groups x groups) of `lanes` positions (`width` per panel, at least
// kMinRangePanels panels per range) and M output channels (`weight_width` per panel). Of the
// pairs whose task count is a multiple of the workers or at least kTasksPerSlot per worker
// (at least one per worker where there can be that many), the one that packs least: each task
// packs its positions and its output channels' filter rows, (ranges_of_positions * M +
// ranges_of_outputs * lanes) x K floats per unit. 3x3 512@7 at batch 8 on two workers: two
// output ranges (the filter packed once, the 392 positions twice), not two position ranges.
std::pair<int64_t, int64_t> fewest_packed_ranges(int64_t units, int64_t lanes, int64_t width,
                                                 int64_t M, int64_t weight_width, int64_t slots) {
  const int64_t wanted = kTasksPerSlot * slots;
  const int64_t most_positions =
      std::clamp<int64_t>(ceil_div(lanes, width) / kMinRangePanels, 1, wanted);
  const int64_t most_outputs = std::clamp<int64_t>(ceil_div(M, weight_width), 1, wanted);
  const int64_t enough = std::min(slots, units * most_positions * most_outputs);
  std::pair<int64_t, int64_t> best{most_positions, most_outputs};
  int64_t best_packed = INT64_MAX;
  for (int64_t positions = 1; positions <= most_positions; ++positions) {
    for (int64_t outputs = 1; outputs <= most_outputs; ++outputs) {
      const int64_t tasks = units * positions * outputs;
      if (tasks < enough || (tasks % slots != 0 && tasks < wanted)) continue;
      const int64_t packed = positions * M + outputs * lanes;
      if (packed < best_packed) {
        best = {positions, outputs};
        best_packed = packed;
      }
    }
  }
  return best;
}

// forward's split for `slots` workers: small images side by side (as many per group as spread
// the batch evenly), the tiles' orientation, then about equal ranges of positions (in panels of
// their width), as many as keep kMinRangePanels panels each, and the rest of the tasks over
// ranges of output channels (in the filter's panels). Where the tasks are few, their count is
// made a multiple of the workers: three equal tasks on two workers ran 3x3 512@7 at batch 8 on
// two threads at 1.34x one thread. A filter that is not shared (`filter_shared` false) is packed
// by every task for its output channels, so the ranges are instead the balanced pair that packs
// least (fewest_packed_ranges).
ForwardSplit split_forward(const Conv2dShape& s, int64_t slots, const MicroKernel& kernel,
                           bool filter_shared) {
  const int64_t N = s.batch, G = s.groups, M = s.gemm_m(), P = s.gemm_p();
  const int64_t wanted = kTasksPerSlot * slots;
  ForwardSplit split;
  if (P <= kSmallImagePositions) {
    const int64_t most = std::clamp<int64_t>(kForwardBlockFloats / (M * P), 1, N);
    split.images = ceil_div(N, ceil_div(N, most));
  }
  const int64_t lanes = split.images * P, image_groups = ceil_div(N, split.images);
  // nhwc transposes the GEMM view: its weights are B already.
  const bool nhwc = s.layout == Layout::nhwc;
  split.outputs_on_rows =
      !nhwc && P <= kSmallImagePositions && outputs_on_tile_rows(kernel, lanes, M);
  const int64_t width = split.outputs_on_rows ? a_panel_width(kernel) : b_panel_width(kernel);
  const int64_t weight_width =
      nhwc || split.outputs_on_rows ? b_panel_width(kernel) : a_panel_width(kernel);
  split.filter_width = weight_width;
  const int64_t parts = ceil_div(wanted, image_groups * G);
  int64_t position_ranges =
      std::clamp<int64_t>(parts, 1, std::max<int64_t>(1, ceil_div(lanes, width) / kMinRangePanels));
  const auto balanced = [&](int64_t tasks) { return tasks >= wanted || tasks % slots == 0; };
  for (int64_t fewer = position_ranges; fewer > 1; --fewer) {
    if (balanced(image_groups * G * fewer)) {
      position_ranges = fewer;
      break;
    }
  }
  // Output ranges each gather all their positions, so no more of them than workers.
  const int64_t max_outputs = ceil_div(M, weight_width);
  const int64_t tasks = image_groups * G * position_ranges;
  int64_t output_ranges = std::clamp<int64_t>(ceil_div(slots, tasks), 1, max_outputs);
  while (!balanced(tasks * output_ranges) && output_ranges < std::min(slots, max_outputs)) {
    ++output_ranges;
  }
  split.filter_in_tasks = position_ranges == 1 && image_groups == 1;
  if (!filter_shared) {
    const auto [positions, outputs] =
        fewest_packed_ranges(image_groups * G, lanes, width, M, weight_width, slots);
    position_ranges = positions;
    output_ranges = outputs;
    split.filter_in_tasks = true;
  }
  split.positions = {lanes, width, position_ranges};
  split.outputs = {M, weight_width, output_ranges};
  split.positions_per_range = split.positions.longest();
  return split;
}

}  // namespace

// More than a core's share of the L3 (32 MiB for 8 cores on the Zen parts we run on).
constexpr int64_t kStreamedOutputFloats = 1 << 20;  // 4 MiB

bool streams_output(const Conv2dShape& s, const MicroKernel& kernel, bool accumulate) {
  return !accumulate && s.gemm_k() <= kernel.kc && kernel.mr * kernel.nr <= kMaxTileFloats &&
         s.output_elements() >= kStreamedOutputFloats;
}

int64_t EvenRanges::longest() const {
  int64_t most = 0;
  for (int64_t range = 0; range < ranges; ++range)
    most = std::max(most, begin(range + 1) - begin(range));
  return most;
}

int64_t data_block_columns(const PackedBlocking& b, int64_t OW, int64_t P) {
  return b.images_per_data_block > 1 ? b.images_per_data_block * P : b.rows_per_block * OW;
}

PackedBlocking choose_packed_blocking(const Conv2dShape& s, const MicroKernel& kernel, int& slots,
                                      std::size_t buffer_bytes_cap, std::size_t workspace_limit,
                                      bool keeps_filter) {
  const int64_t N = s.batch, G = s.groups, M = s.gemm_m(), K = s.gemm_k(), P = s.gemm_p();
  const int64_t OH = s.out_height(), OW = s.out_width(), T = s.kernel_height * s.kernel_width;
  const int64_t wa = a_panel_width(kernel), wb = b_panel_width(kernel);
  // nhwc transposes forward's and backward_data's GEMM view: the weights are B there.
  const bool nhwc = s.layout == Layout::nhwc;
  const int64_t weight_width = nhwc ? wb : wa;
  const int64_t wanted = kTasksPerSlot * std::max(slots, 1);
  PackedBlocking b;

  const bool small_filter = G * M * K <= kSharedFilterFloats;
  b.forward = split_forward(s, std::max(slots, 1), kernel, small_filter || keeps_filter);
  b.data_as_forward = data_gradient_is_a_forward(s);
  if (b.data_as_forward) {
    b.data_forward =
        split_forward(data_gradient_forward_shape(s), std::max(slots, 1), kernel, small_filter);
  }
  b.data_weights_shared = !b.data_as_forward && N > 1 && small_filter;

  const int64_t group_inputs = s.in_channels / G;
  const int64_t by_rows = std::clamp<int64_t>(ceil_div(kDataBlockRows, T), 1, group_inputs);
  const int64_t by_tasks = ceil_div(group_inputs, ceil_div(wanted, N * G));
  b.channels_per_range = std::max<int64_t>(1, std::min(by_rows, by_tasks));
  b.channel_ranges = ceil_div(group_inputs, b.channels_per_range);
  b.rows_per_block = std::clamp<int64_t>(ceil_div(kDataBlockPositions, OW), 1, OH);
  if (b.rows_per_block == OH && (nhwc || !is_pointwise(s))) {  // (nchw: pointwise is in place)
    b.images_per_data_block = std::clamp<int64_t>(kDataBlockPositions / P, 1, N);
  }

  b.weight_ranges_of_outputs = M > K;
  b.weight_lanes_per_range = b.weight_ranges_of_outputs
                                 ? lanes_per_range(M, ceil_div(wanted, G), wa)
                                 : lanes_per_range(K, ceil_div(wanted, G), wb);
  b.weight_ranges = ceil_div(b.weight_ranges_of_outputs ? M : K, b.weight_lanes_per_range);
  if (M * K <= kChunkedWeightFloats) {
    const int64_t most = std::min(kMostWeightChunks, 1 + kWeightPartialFloats / (G * M * K));
    const int64_t chunks = std::clamp<int64_t>(N * P / kWeightChunkSteps, 1, most);
    b.weight_chunk_steps = ceil_div(N * P, chunks);
    b.weight_chunks = ceil_div(N * P, b.weight_chunk_steps);
  }

  // Packed blocks as large as BLIS's, but no larger than any task's lanes need.
  const PassLanes forward{M, b.forward.positions_per_range};
  const PassLanes data = b.data_as_forward
                             ? PassLanes{group_inputs, b.data_forward.positions_per_range}
                             : PassLanes{b.channels_per_range * T, data_block_columns(b, OW, P)};
  // (In the A * B view the filter is B where nhwc or the outputs are the tile rows.)
  const bool data_swapped = nhwc || (b.data_as_forward && b.data_forward.outputs_on_rows);
  const PassLanes passes[] = {
      nhwc || b.forward.outputs_on_rows ? PassLanes{forward.cols, forward.rows} : forward,
      data_swapped ? PassLanes{data.cols, data.rows} : data,
      b.weight_chunks > 1          ? PassLanes{M, K}
      : b.weight_ranges_of_outputs ? PassLanes{b.weight_lanes_per_range, K}
                                   : PassLanes{M, b.weight_lanes_per_range}};
  int64_t mc = kernel.mr, nc = kernel.nr;
  for (const PassLanes& lanes : passes) {
    const int64_t kernel_rows = kernel.prefers_rows ? lanes.rows : lanes.cols;
    const int64_t kernel_cols = kernel.prefers_rows ? lanes.cols : lanes.rows;
    mc = std::max(mc, std::min(kernel.mc, round_up(kernel_rows, kernel.mr)));
    nc = std::max(nc, std::min(kernel.nc, round_up(kernel_cols, kernel.nr)));
  }
  if (buffer_bytes_cap != 0) {
    const auto lanes_in_cap = [&](int64_t width) {
      const int64_t lanes = static_cast<int64_t>(
          std::min<std::size_t>(buffer_bytes_cap / sizeof(float) / kernel.kc, INT64_MAX));
      return std::max(width, lanes / width * width);
    };
    mc = std::min(mc, lanes_in_cap(kernel.mr));
    nc = std::min(nc, lanes_in_cap(kernel.nr));
  }

  const auto data_weight_floats = [&]() -> int64_t {
    if (b.data_as_forward) {
      if (b.data_forward.filter_in_tasks) return 0;
      return G * prepacked_floats(group_inputs, M * T, b.data_forward.filter_width);
    }
    if (!b.data_weights_shared) return 0;
    return G * b.channel_ranges * prepacked_floats(b.channels_per_range * T, M, weight_width);
  };
  const int64_t forward_weights = keeps_filter || !b.forward.filter_in_tasks
                                      ? G * prepacked_floats(M, K, b.forward.filter_width)
                                      : 0;
  const int64_t weight_partials = weight_partial_floats(s, b.weight_chunks);
  const auto size_weights = [&] {
    b.packed_weight_floats =
        round_up(std::max({forward_weights, data_weight_floats(), weight_partials}), kAlignFloats);
  };
  size_weights();
  const auto size_slots = [&] {
    b.blocks = {mc, nc};
    b.row_buffer_floats = round_up(mc * kernel.kc, kAlignFloats);
    b.col_buffer_floats = round_up(kernel.kc * nc, kAlignFloats);
    // (nhwc writes y in place: its positions are uniformly strided across images)
    const auto forward_block = [&](const ForwardSplit& split, int64_t outputs) {
      const bool blocked = !nhwc && (split.images > 1 || split.outputs_on_rows);
      return blocked ? outputs * split.positions_per_range : 0;
    };
    const int64_t data_block = b.data_as_forward
                                   ? forward_block(b.data_forward, group_inputs)
                                   : b.channels_per_range * T * data_block_columns(b, OW, P);
    const int64_t block = std::max(forward_block(b.forward, M), data_block);
    b.slot_floats = b.row_buffer_floats + b.col_buffer_floats + round_up(block, kAlignFloats);
  };
  size_slots();
  // By default a worker's share stays within kWorkerFloats (the shared packed weights counted
  // whole; a filter kept for the next call, the caller's choice, not at all): the blocks of the
  // tile rows shrink first, which packs nothing twice (they are packed block by block anyway;
  // 3x3 512@7 at batch 8 had 2.2 MiB, most of it 416 positions' rows and the 512 outputs'
  // tiles), then those of the columns (whose blocks each pack the rows again).
  const auto shared_floats = [&] {
    return keeps_filter ? std::max(data_weight_floats(), weight_partials) : b.packed_weight_floats;
  };
  while (shared_floats() + b.slot_floats > kWorkerFloats && (mc > kernel.mr || nc > kernel.nr)) {
    if (mc > kernel.mr) {
      mc = std::max(kernel.mr, mc / 2 / kernel.mr * kernel.mr);
    } else {
      nc = std::max(kernel.nr, nc / 2 / kernel.nr * kernel.nr);
    }
    size_slots();
  }
  if (workspace_limit == 0) return b;

  const auto bytes = [](int64_t floats) { return static_cast<std::size_t>(floats) * 4; };
  const auto fits = [&](int64_t slot_count) {
    return bytes(b.packed_weight_floats) + bytes(b.slot_floats) * slot_count <= workspace_limit;
  };
  // Worker slots first, then the blocks: neither changes a bit of any result.
  while (!fits(1) && (mc > kernel.mr || nc > kernel.nr || b.channels_per_range > 1)) {
    mc = std::max(kernel.mr, mc / 2 / kernel.mr * kernel.mr);
    nc = std::max(kernel.nr, nc / 2 / kernel.nr * kernel.nr);
    b.channels_per_range = std::max<int64_t>(1, b.channels_per_range / 2);
    b.channel_ranges = ceil_div(group_inputs, b.channels_per_range);
    size_weights();
    size_slots();
  }
  if (!fits(1)) {
    fail("workspace_limit", static_cast<int64_t>(std::min<std::size_t>(workspace_limit, INT64_MAX)),
         "must be at least " + std::to_string(bytes(b.packed_weight_floats + b.slot_floats)) +
             " bytes, the packed weights and one worker's packing buffers for " + s.to_string());
  }
  const std::size_t room = (workspace_limit - bytes(b.packed_weight_floats)) / bytes(b.slot_floats);
  slots = static_cast<int>(std::min<std::size_t>(static_cast<std::size_t>(slots), room));
  return b;
}

SlotBuffers slot_buffers(const PackedBlocking& b, float* workspace, int slot) {
  float* base = workspace + b.packed_weight_floats + slot * b.slot_floats;
  return {base, base + b.row_buffer_floats, base + b.row_buffer_floats + b.col_buffer_floats};
}

namespace {

// forward's tasks (split as `split` says) on each group's filter, `filter_of(g)`: packed at the
// workspace's start, or an operand the tasks pack themselves.
template <class FilterOfGroup>
void forward_tasks(const Conv2dShape& s, const MicroKernel& kernel, const ForwardSplit& split,
                   const PackedBlocking& b, WorkerPool& pool, const FilterOfGroup& filter_of,
                   const float* x, const float* bias, float* y, bool accumulate, float* workspace) {
  const int64_t G = s.groups, M = s.gemm_m(), K = s.gemm_k(), P = s.gemm_p();
  const int64_t C = s.in_channels, O = s.out_channels, HW = s.in_height * s.in_width;
  const int64_t ranges = split.positions.ranges, parts = split.outputs.ranges;
  const int64_t images = split.images;
  pool.run(ceil_div(s.batch, images) * G * ranges * parts, [&](int64_t task, int slot) {
    const int64_t part = task % parts, range = task / parts % ranges;
    const int64_t g = task / parts / ranges % G, n = task / parts / ranges / G * images;
    const int64_t lanes = std::min(images, s.batch - n) * P;
    // (The last group of images may be smaller.)
    const int64_t lane_begin = split.positions.begin(range);
    const int64_t lane_end = std::min(lanes, split.positions.begin(range + 1));
    const int64_t m_begin = split.outputs.begin(part), m_end = split.outputs.begin(part + 1);
    if (lane_begin >= lane_end || m_begin >= m_end) return;
    const auto weights = filter_of(g);
    const ImageColumns columns{&s, x + (n * C + g * (C / G)) * HW, lane_begin};
    const float* bias_group = bias != nullptr ? bias + g * M : nullptr;
    const SlotBuffers buffers = slot_buffers(b, workspace, slot);
    if (images == 1 && !split.outputs_on_rows) {
      float* y_group = y + (n * O + g * M) * P;
      // The bias joins each tile right after its last reduction block, while it is in cache, or
      // is its first values where it has one block (and nothing to accumulate onto).
      const bool bias_first = bias_group != nullptr && !accumulate && K <= kernel.kc;
      auto add_bias = [&](int64_t row, int64_t rows, int64_t col, int64_t cols) {
        if (bias_group == nullptr || bias_first) return;
        add_bias_per_row(y_group + row * P + lane_begin + col, P, rows, cols, bias_group + row);
      };
      auto set_bias = [&](int64_t row, int64_t rows, int64_t col, int64_t cols) {
        if (!bias_first) return false;
        set_bias_per_row(y_group + row * P + lane_begin + col, P, rows, cols, bias_group + row);
        return true;
      };
      if (streams_output(s, kernel, accumulate)) {
        alignas(64) float tile[kMaxTileFloats];
        const int64_t tile_ld = b_panel_width(kernel);
        auto write_tile = [&](int64_t row, int64_t rows, int64_t col, int64_t cols) {
          stream_tile_rows(y_group + row * P + lane_begin + col, P, rows, cols, tile, tile_ld,
                           bias_group != nullptr ? bias_group + row : nullptr, nullptr);
        };
        packed_gemm(kernel, K, weights, columns, GemmOutput{y_group + lane_begin, P, 1, true, tile},
                    GemmRange{m_begin, m_end, 0, lane_end - lane_begin}, b.blocks, buffers.rows,
                    buffers.cols, write_tile);
        finish_streaming_stores();
        return;
      }
      packed_gemm(kernel, K, weights, columns, GemmOutput{y_group + lane_begin, P, 1, !accumulate},
                  GemmRange{m_begin, m_end, 0, lane_end - lane_begin}, b.blocks, buffers.rows,
                  buffers.cols, add_bias, set_bias);
      return;
    }
    // Several images, or the outputs on the tile rows: the range's tiles into the block buffer,
    // as Y [M x range] or as Y^T [range x M], then to y. Each element sees the operations it
    // would see in y directly (the buffer starts as y's values when accumulating; the bias comes
    // last). Entry (lane, m) is at block + (lane - lane_begin) * lane_step + m * output_step.
    const int64_t ld = lane_end - lane_begin;
    const int64_t lane_step = split.outputs_on_rows ? M : 1;
    const int64_t output_step = split.outputs_on_rows ? 1 : ld;
    float* block = buffers.data_block;
    auto for_each_run = [&](auto&& visit) {  // visit(block entry, y entry, run, m)
      for (int64_t lane = lane_begin; lane < lane_end;) {
        const int64_t image = lane / P, p = lane % P, run = std::min(P - p, lane_end - lane);
        for (int64_t m = m_begin; m < m_end; ++m) {
          float* y_row = y + ((n + image) * O + g * M + m) * P + p;
          visit(block + (lane - lane_begin) * lane_step + m * output_step, y_row, run, m);
        }
        lane += run;
      }
    };
    if (accumulate) {
      for_each_run([&](float* entry, const float* y_row, int64_t run, int64_t) {
        for (int64_t j = 0; j < run; ++j) entry[j * lane_step] = y_row[j];
      });
    }
    if (split.outputs_on_rows) {
      packed_gemm(kernel, K, columns, weights, GemmOutput{block, M, 1, !accumulate},
                  GemmRange{0, ld, m_begin, m_end}, b.blocks, buffers.rows, buffers.cols,
                  kNoWriteBack);
    } else {
      packed_gemm(kernel, K, weights, columns, GemmOutput{block, ld, 1, !accumulate},
                  GemmRange{m_begin, m_end, 0, ld}, b.blocks, buffers.rows, buffers.cols,
                  kNoWriteBack);
    }
    for_each_run([&](const float* entry, float* y_row, int64_t run, int64_t m) {
      if (bias_group == nullptr) {
        for (int64_t j = 0; j < run; ++j) y_row[j] = entry[j * lane_step];
      } else {
        for (int64_t j = 0; j < run; ++j) y_row[j] = entry[j * lane_step] + bias_group[m];
      }
    });
  });
}

}  // namespace

void packed_forward(const Conv2dShape& s, const MicroKernel& kernel, const PackedBlocking& b,
                    WorkerPool& pool, const float* x, const float* w, const float* bias, float* y,
                    bool accumulate, FilterPacking packing, float* workspace) {
  with_filter(
      s, kernel, pool, packing == FilterPacking::per_call && b.forward.filter_in_tasks,
      packing == FilterPacking::packed, b.forward.filter_width,
      [&](int64_t g) { return filter_rows(s, w, g); }, workspace,
      [&](const auto& filter_of) {
        forward_tasks(s, kernel, b.forward, b, pool, filter_of, x, bias, y, accumulate, workspace);
      });
}

void packed_backward_data(const Conv2dShape& s, const MicroKernel& kernel, const PackedBlocking& b,
                          WorkerPool& pool, const float* dy, const float* w, float* dx,
                          bool accumulate, float* workspace) {
  const int64_t G = s.groups, M = s.gemm_m(), K = s.gemm_k(), P = s.gemm_p();
  const int64_t C = s.in_channels, O = s.out_channels, HW = s.in_height * s.in_width;
  const int64_t OH = s.out_height(), OW = s.out_width(), T = s.kernel_height * s.kernel_width;
  if (b.data_as_forward) {
    const Conv2dShape as_forward = data_gradient_forward_shape(s);
    with_filter(
        as_forward, kernel, pool, b.data_forward.filter_in_tasks, false,
        b.data_forward.filter_width,
        [&](int64_t g) {
          return FlippedFilter{&s, w + g * M * K};
        },
        workspace,
        [&](const auto& filter_of) {
          forward_tasks(as_forward, kernel, b.data_forward, b, pool, filter_of, dy, nullptr, dx,
                        accumulate, workspace);
        });
    return;
  }
  const int64_t ranges = b.channel_ranges, group_inputs = C / G;
  const int64_t wa = a_panel_width(kernel);
  // W^T packed range by range (each range's lanes start on a panel).
  const int64_t range_floats = prepacked_floats(b.channels_per_range * T, M, wa);
  const int64_t m_blocks = ceil_div(M, kernel.kc);
  auto range_rows = [&](int64_t range) {
    return (std::min(group_inputs, (range + 1) * b.channels_per_range) -
            range * b.channels_per_range) *
           T;
  };
  // Packed once per call when several images share a small one; else each task packs its own
  // range's W^T block by block in cache (written out and read back, the 9.4 MB of a 3x3
  // 512-channel layer cost more than the packing itself: measured at 7x7, batch 1).
  const bool prepacked = b.data_weights_shared;
  if (prepacked)
    pool.run(G * ranges * m_blocks, [&](int64_t task, int) {
      const int64_t block = task % m_blocks, range = task / m_blocks % ranges;
      const int64_t g = task / m_blocks / ranges, step = block * kernel.kc;
      const LanesAlongRows w_transposed{w + g * M * K + range * b.channels_per_range * T, K};
      w_transposed.panels(
          0, range_rows(range), step, std::min(kernel.kc, M - step), wa,
          workspace + (g * ranges + range) * range_floats + step * round_up(range_rows(range), wa));
    });
  // Calls run(operand) with the range's W^T as packed above, or as a packing operand.
  auto with_weights = [&](int64_t g, int64_t range, auto&& run) {
    if (prepacked) {
      run(PrepackedPanels{workspace + (g * ranges + range) * range_floats,
                          round_up(range_rows(range), wa), kernel.kc});
    } else {
      run(LanesAlongRows{w + g * M * K + range * b.channels_per_range * T, K});
    }
  };
  if (is_pointwise(s)) {
    // dX_col is dX itself (K = C/G rows of H*W = P positions): the tiles land in place, each
    // pixel once, so there is nothing to zero and no col2im.
    pool.run(s.batch * G * ranges, [&](int64_t task, int slot) {
      const int64_t range = task % ranges, g = task / ranges % G, n = task / ranges / G;
      const int64_t c_begin = range * b.channels_per_range;
      const SlotBuffers buffers = slot_buffers(b, workspace, slot);
      with_weights(g, range, [&](const auto& w_transposed) {
        packed_gemm(kernel, M, w_transposed, LanesAlongRows{dy + (n * O + g * M) * P, P},
                    GemmOutput{dx + (n * C + g * group_inputs + c_begin) * HW, HW, 1, !accumulate},
                    GemmRange{0, range_rows(range), 0, P}, b.blocks, buffers.rows, buffers.cols,
                    kNoWriteBack);
      });
    });
    return;
  }
  if (!accumulate) {
    pool.run(s.batch * C, [&](int64_t plane, int) {
      std::memset(dx + plane * HW, 0, static_cast<std::size_t>(HW) * sizeof(float));
    });
  }
  // Tasks (group of images, group, range): each block is a range of output rows of one image,
  // or whole images side by side (their positions one after the other in the block's columns).
  // col2im adds image by image, each in the order it would have alone.
  const int64_t images = b.images_per_data_block, image_groups = ceil_div(s.batch, images);
  pool.run(image_groups * G * ranges, [&](int64_t task, int slot) {
    const int64_t range = task % ranges, g = task / ranges % G, n = task / ranges / G * images;
    const int64_t c_begin = range * b.channels_per_range;
    const int64_t c_end = std::min(group_inputs, c_begin + b.channels_per_range);
    const SlotBuffers buffers = slot_buffers(b, workspace, slot);
    if (images > 1) {
      const int64_t count = std::min(images, s.batch - n), columns = count * P;
      const LanesAlongRows dy_images{dy + (n * O + g * M) * P, P, /*per_image=*/P,
                                     /*image_stride=*/O * P};
      with_weights(g, range, [&](const auto& w_transposed) {
        packed_gemm(kernel, M, w_transposed, dy_images,
                    GemmOutput{buffers.data_block, columns, 1, /*overwrite=*/true},
                    GemmRange{0, range_rows(range), 0, columns}, b.blocks, buffers.rows,
                    buffers.cols, kNoWriteBack);
      });
      for (int64_t i = 0; i < count; ++i) {
        col2im_block(s, buffers.data_block + i * P, ColumnBlock{c_begin * T, c_end * T, 0, OH},
                     dx + ((n + i) * C + g * group_inputs) * HW, /*ld=*/columns);
      }
      return;
    }
    with_weights(g, range, [&](const auto& w_transposed) {
      for (int64_t oh_begin = 0; oh_begin < OH; oh_begin += b.rows_per_block) {
        const int64_t oh_end = std::min(OH, oh_begin + b.rows_per_block);
        const int64_t columns = (oh_end - oh_begin) * OW;
        const LanesAlongRows dy_block{dy + (n * O + g * M) * P + oh_begin * OW, P};
        packed_gemm(kernel, M, w_transposed, dy_block,
                    GemmOutput{buffers.data_block, columns, 1, /*overwrite=*/true},
                    GemmRange{0, range_rows(range), 0, columns}, b.blocks, buffers.rows,
                    buffers.cols, kNoWriteBack);
        col2im_block(s, buffers.data_block, ColumnBlock{c_begin * T, c_end * T, oh_begin, oh_end},
                     dx + (n * C + g * group_inputs) * HW);
      }
    });
  });
}

void packed_backward_weights(const Conv2dShape& s, const MicroKernel& kernel,
                             const PackedBlocking& b, WorkerPool& pool, const float* x,
                             const float* dy, float* dw, float* db, bool accumulate,
                             float* workspace) {
  const int64_t G = s.groups, M = s.gemm_m(), P = s.gemm_p();
  const int64_t C = s.in_channels, O = s.out_channels, HW = s.in_height * s.in_width;
  weight_gradient_tasks(
      s, kernel, b, pool,
      [&](int64_t g) {
        return std::pair{
            LanesAcrossRows{dy + g * M * P, P, /*per_image=*/P, /*image_stride=*/O * P},
            ImageRows{&s, x + g * (C / G) * HW}};
      },
      [&](int64_t g, int64_t begin, int64_t steps, double* sums) {
        for (int64_t m = 0; m < M; ++m) sums[m] = channel_sum(dy, O, P, g * M + m, begin, steps);
      },
      dw, db, accumulate, workspace);
}

std::string describe_packed(const MicroKernel& kernel) {
  return "packed(" + kernel.name + " " + std::to_string(kernel.mr) + "x" +
         std::to_string(kernel.nr) + ", kc " + std::to_string(kernel.kc) +
         ", tile rows = " + (kernel.prefers_rows ? "A's" : "B's") + " lanes)";
}

}  // namespace convgemm::detail
