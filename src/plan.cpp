#include "plan.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <new>
#include <string>

#include "convgemm/detail/check.hpp"
#include "kernels.hpp"

namespace convgemm::detail {
namespace {

constexpr std::size_t kCacheLineFloats = 64 / sizeof(float);
constexpr std::align_val_t kWorkspaceAlignment{64};

// backward_weights splits dW_g into at most this many panels (tasks per group), each at least
// kMinPanelRows rows or columns wide so that its GEMM stays efficient.
constexpr int64_t kMaxWeightPanels = 4;
constexpr int64_t kMinPanelRows = 32;

// Below this many columns a block's GEMM spends more time packing W_g than multiplying (a 7x7
// image with K = 4608 would otherwise be cut into 28-column blocks): the default budget gives
// way to it. An explicit block_bytes or workspace_limit is obeyed exactly.
constexpr int64_t kMinBlockColumns = 256;

// Forward and backward_data aim for at least this many tasks per call.
constexpr int64_t kMinTasks = 4;

// A dW_g of at most this many floats (256 KiB) is computed as one panel of every X_col row, with
// the sum over images and row blocks cut into chunks instead (see plan.hpp).
constexpr int64_t kMaxChunkedWeightFloats = 64 << 10;

int64_t round_up(int64_t value, int64_t multiple) { return ceil_div(value, multiple) * multiple; }

}  // namespace

std::size_t default_block_bytes() {
  static const std::size_t bytes = [] {
    constexpr long kFallback = 1 << 20;  // 1 MiB, a common L2 size per core
    const long l2 = sysconf(_SC_LEVEL2_CACHE_SIZE);
    return static_cast<std::size_t>(std::clamp(l2 > 0 ? l2 : kFallback, 64L << 10, 8L << 20));
  }();
  return bytes;
}

namespace {

// Depthwise shapes (in_channels == groups) run on the direct kernels, not on a GEMM. A pointwise
// one stays on the in-place GEMM path in nchw: no scratch at all beats the direct kernels'
// padded copy for a per-channel scaling. In nchw, shapes whose padded copy would be huge take the
// GEMM path too; the nhwc kernels make no copy.
bool runs_depthwise_kernels(const Conv2dShape& s) {
  if (s.in_channels != s.groups) return false;
  if (s.layout == Layout::nhwc) return true;
  return !is_pointwise(s) && depthwise_scratch_is_modest(s);
}

// The blocking for a per-worker column budget of `budget_floats` (blocks of at least
// `min_columns` columns when the budget allows fewer), everything but `slots`; backward_weights
// may sum in chunks (with partial buffers) only when `allow_chunks`.
Blocking blocking_for_budget(const Conv2dShape& s, int64_t budget_floats, int64_t min_columns,
                             bool allow_chunks) {
  const int64_t K = s.gemm_k(), OH = s.out_height(), OW = s.out_width();
  Blocking b;
  b.pointwise = is_pointwise(s);
  b.depthwise = runs_depthwise_kernels(s);

  auto rows_within_budget = [&](int64_t x_col_rows) {
    const int64_t rows = std::max(budget_floats / (x_col_rows * OW), ceil_div(min_columns, OW));
    return std::clamp<int64_t>(rows, 1, OH);
  };
  b.blocks_per_image = ceil_div(OH, rows_within_budget(K));
  const RowSplit data_rows{OH, b.blocks_per_image};
  b.rows_per_block = data_rows.most();
  // Too few (image, group, block) tasks to keep every core busy (a small image at batch 1):
  // forward splits the group's output channels, backward_data its input channels, into panels
  // that keep at least kMinPanelRows rows in their GEMM. A rule on the shape only, like blocks.
  const int64_t tasks = s.batch * s.groups * b.blocks_per_image;
  auto panels_for = [&](int64_t channels, int64_t min_channels) {
    return std::clamp<int64_t>(ceil_div(kMinTasks, tasks), 1,
                               std::max<int64_t>(1, channels / min_channels));
  };
  const int64_t taps = s.kernel_height * s.kernel_width;
  b.outputs_per_panel = ceil_div(s.gemm_m(), panels_for(s.gemm_m(), kMinPanelRows));
  b.output_panels = ceil_div(s.gemm_m(), b.outputs_per_panel);
  const int64_t group_inputs = s.in_channels / s.groups;
  b.inputs_per_panel =
      ceil_div(group_inputs, panels_for(group_inputs, ceil_div(kMinPanelRows, taps)));
  b.input_panels = ceil_div(group_inputs, b.inputs_per_panel);

  // Block i ends at input row (end_i - 1)*sh - pt + dh*(KH-1); block i+2 starts at
  // (end_i + rows_{i+1})*sh - pt. They are disjoint when (rows_{i+1} + 1)*sh > dh*(KH-1).
  b.data_waves =
      (data_rows.fewest() + 1) * s.stride_height > s.dilation_height * (s.kernel_height - 1);

  // Panels of dW_g: for a pointwise kernel, ranges of output channels (rows of dW_g), since no
  // im2col is repeated when several tasks read the same input channels; otherwise ranges of X_col
  // rows (columns of dW_g), so that each task lowers only its own rows.
  // A small dW_g (the 3-channel stem, narrow layers) instead keeps every X_col row in one panel,
  // whose GEMM is as wide as the weights and packs dY once, and gets its tasks from chunks of
  // the (image, row block) sequence.
  const int64_t M = s.gemm_m();
  const bool chunked = allow_chunks && !b.pointwise && !b.depthwise &&
                       M * K <= kMaxChunkedWeightFloats && s.groups < kMinTasks;
  b.weight_channel_panels =
      b.pointwise ? std::clamp<int64_t>(M / kMinPanelRows, 1, kMaxWeightPanels) : 1;
  b.weight_channel_panel_rows = ceil_div(M, b.weight_channel_panels);
  b.weight_channel_panels = ceil_div(M, b.weight_channel_panel_rows);
  b.weight_panels =
      b.pointwise || chunked ? 1 : std::clamp<int64_t>(K / kMinPanelRows, 1, kMaxWeightPanels);
  b.weight_panel_rows = ceil_div(K, b.weight_panels);
  b.weight_panels = ceil_div(K, b.weight_panel_rows);
  b.weight_blocks_per_image = ceil_div(OH, rows_within_budget(b.weight_panel_rows));
  b.weight_rows_per_block = RowSplit{OH, b.weight_blocks_per_image}.most();
  if (chunked) {
    b.weight_chunks =
        std::clamp<int64_t>(ceil_div(kMinTasks, s.groups), 1, s.batch * b.weight_blocks_per_image);
    b.partial_floats = round_up((b.weight_chunks - 1) * s.groups * M * K, kCacheLineFloats);
  }

  if (b.depthwise && s.layout == Layout::nhwc) {
    // The partials hold the tap-major filters (forward, backward_data) or dw's chunk sums.
    b.partial_floats =
        round_up(std::max(depthwise_nhwc_filter_floats(s),
                          depthwise_nhwc_weight_chunks(s) * depthwise_nhwc_chunk_floats(s)),
                 kCacheLineFloats);
  } else if (b.depthwise) {
    b.slot_floats = round_up(depthwise_scratch_floats(s), kCacheLineFloats);
  } else if (!b.pointwise) {
    const int64_t data_floats = K * b.rows_per_block * OW;
    const int64_t weight_floats = b.weight_panel_rows * b.weight_rows_per_block * OW;
    b.slot_floats = round_up(std::max(data_floats, weight_floats), kCacheLineFloats);
  }
  return b;
}

int64_t floats_in(std::size_t bytes) {
  return static_cast<int64_t>(std::min<std::size_t>(bytes / sizeof(float), INT64_MAX));
}

}  // namespace

Blocking choose_blocking(const Conv2dShape& s, const Conv2dOptions& options, int threads) {
  // The blocks depend on the machine (its L2 size) and the options only, so that the sums a
  // block structure implies never change with the thread count.
  const bool explicit_budget = options.block_bytes != 0;
  const std::size_t block_bytes = explicit_budget ? options.block_bytes : default_block_bytes();
  Blocking b = blocking_for_budget(s, floats_in(block_bytes),
                                   explicit_budget ? 1 : kMinBlockColumns, /*allow_chunks=*/true);
  const std::size_t limit = options.workspace_limit;
  b.slots = std::max(threads, 1);
  const auto bytes = [](int64_t floats) {
    return static_cast<std::size_t>(floats) * sizeof(float);
  };
  // The partial sums are shared; each worker slot adds one block.
  const auto fits_one_slot = [&](const Blocking& candidate) {
    return bytes(candidate.partial_floats) + bytes(candidate.slot_floats) <= limit;
  };
  if (limit == 0 || (b.slot_floats == 0 && b.partial_floats == 0)) return b;

  // A workspace_limit drops worker slots first and keeps the blocks, so every limit that holds
  // one block (and the partial sums) computes bit for bit what the unlimited plan computes. Only
  // a smaller limit shrinks the blocks to fit it, and then drops the partial sums: the GEMMs
  // then see a different N, and OpenBLAS's and oneDNN's rounding of an entry depends on N
  // (measured), so results may change in the last bits.
  if (!fits_one_slot(b)) {
    const int64_t budget = floats_in(std::min(block_bytes, limit));
    b = blocking_for_budget(s, budget, 1, /*allow_chunks=*/true);
    if (!fits_one_slot(b)) b = blocking_for_budget(s, budget, 1, /*allow_chunks=*/false);
    b.slots = std::max(threads, 1);
  }
  if (!fits_one_slot(b)) {
    fail("workspace_limit", static_cast<int64_t>(std::min<std::size_t>(limit, INT64_MAX)),
         "must be at least " + std::to_string(bytes(b.partial_floats + b.slot_floats)) +
             " bytes, one row block on one worker and the shared partial sums, for " +
             s.to_string());
  }
  if (b.slot_floats > 0) {
    b.slots = static_cast<int>(
        std::min<std::size_t>(static_cast<std::size_t>(b.slots),
                              (limit - bytes(b.partial_floats)) / bytes(b.slot_floats)));
  }
  return b;
}

void Plan::AlignedDelete::operator()(float* p) const {
  ::operator delete[](p, kWorkspaceAlignment);
}

namespace {

// The explicit path's GEMM library for one pass: an explicit choice applies to every pass;
// automatic (and packed, whose fallback this is) runs backward_weights on OpenBLAS (measured:
// as fast there, its panels are thin) and the other passes on the configured library.
GemmLibrary resolve_gemm(GemmBackend requested, Pass pass) {
  switch (requested) {
    case GemmBackend::openblas:
      return GemmLibrary::openblas;
    case GemmBackend::onednn:
      if (!onednn_gemm_built()) {
        fail_message(
            "gemm_backend onednn is not built into this library (configure it with "
            "libdnnl-dev installed)");
      }
      return GemmLibrary::onednn;
    case GemmBackend::packed:
    case GemmBackend::automatic:
      break;
  }
  if (pass == Pass::backward_weights) return GemmLibrary::openblas;
  return configured_explicit_gemm();
}

// The packed driver's kernel for a plan with these options, or nullptr for the explicit path:
// GemmBackend::packed asks for it (std::invalid_argument naming gemm_backend when the library
// was built without BLIS), automatic takes it when it is the configured default and BLIS has an
// optimized kernel for this CPU (with only BLIS's reference kernel, OpenBLAS is faster).
const MicroKernel* packed_kernel_for(const Conv2dShape& shape, const Conv2dOptions& options) {
  const MicroKernel* kernel = blis_micro_kernel();
  if (shape.layout == Layout::nhwc) {
    // Only the packed driver reads nhwc; it runs even on BLIS's reference kernel (slower, the
    // same contract), since the explicit path has no channels-last lowering to fall back on.
    if (options.gemm_backend == GemmBackend::openblas ||
        options.gemm_backend == GemmBackend::onednn) {
      fail_message(
          "layout nhwc runs on gemm_backend packed only, not on the explicit path's " +
          std::string(options.gemm_backend == GemmBackend::openblas ? "openblas" : "onednn"));
    }
    if (kernel == nullptr) {
      fail_message(
          "layout nhwc needs the packed driver, which is not built into this library (configure "
          "it with libblis-serial-dev installed)");
    }
    return kernel;
  }
  switch (options.gemm_backend) {
    case GemmBackend::packed:
      if (kernel == nullptr) {
        fail_message(
            "gemm_backend packed is not built into this library (configure it with "
            "libblis-serial-dev installed)");
      }
      return kernel;
    case GemmBackend::automatic:
      return CONVGEMM_DEFAULT_PACKED && kernel != nullptr && kernel->optimized ? kernel : nullptr;
    case GemmBackend::openblas:
    case GemmBackend::onednn:
      return nullptr;
  }
  return nullptr;
}

}  // namespace

Engine choose_engine(const Conv2dShape& shape, const Conv2dOptions& options) {
  int threads = options.num_threads > 0 ? options.num_threads : default_thread_count();
  Engine engine;
  if (shape.layout == Layout::nhwc && runs_depthwise_kernels(shape)) {  // any backend, no BLIS
    engine.blocking = choose_blocking(shape, options, threads);
    return engine;
  }
  engine.kernel = packed_kernel_for(shape, options);
  if (engine.kernel == nullptr) {
    engine.blocking = choose_blocking(shape, options, threads);
    return engine;
  }
  // The packed passes need none of the explicit path's column blocks; the depthwise direct
  // kernels keep their own scratch.
  Conv2dOptions uncapped = options;
  uncapped.workspace_limit = 0;
  engine.blocking = choose_blocking(shape, uncapped, threads);
  if (engine.blocking.depthwise) {
    engine.blocking = choose_blocking(shape, options, threads);
    return engine;
  }
  engine.blocking.slot_floats = 0;
  engine.blocking.partial_floats = 0;
  engine.packed = choose_packed_blocking(shape, *engine.kernel, threads, options.block_bytes,
                                         options.workspace_limit, options.constant_weights);
  engine.blocking.slots = threads;
  return engine;
}

Plan::Plan(const Conv2dShape& shape, const Conv2dOptions& options, const Engine& engine)
    : shape_(shape),
      constant_weights_(options.constant_weights),
      kernel_(engine.kernel),
      blocking_(engine.blocking),
      packed_(engine.packed),
      forward_gemm_(resolve_gemm(options.gemm_backend, Pass::forward)),
      backward_data_gemm_(resolve_gemm(options.gemm_backend, Pass::backward_data)),
      backward_weights_gemm_(resolve_gemm(options.gemm_backend, Pass::backward_weights)),
      pool_(blocking_.slots),
      slot_stride_(blocking_.slot_floats) {
  const std::size_t floats = static_cast<std::size_t>(slot_stride_) * blocking_.slots +
                             blocking_.partial_floats + packed_floats();
  if (floats > 0) {
    workspace_.reset(
        static_cast<float*>(::operator new[](floats * sizeof(float), kWorkspaceAlignment)));
  }
}

std::size_t Plan::packed_floats() const {
  if (!runs_packed()) return 0;
  return static_cast<std::size_t>(packed_.packed_weight_floats) +
         static_cast<std::size_t>(packed_.slot_floats) * blocking_.slots;
}

std::size_t Plan::workspace_bytes() const {
  return (static_cast<std::size_t>(slot_stride_) * blocking_.slots + blocking_.partial_floats +
          packed_floats()) *
         sizeof(float);
}

std::string Plan::describe() const {
  if (blocking_.depthwise && shape_.layout == Layout::nhwc) return "depthwise direct kernels, nhwc";
  if (blocking_.depthwise) return "depthwise direct kernels";
  if (runs_packed()) {
    const bool data_rows = packed_.data_as_forward && packed_.data_forward.outputs_on_rows;
    return describe_packed(*kernel_) + ", " + to_string(shape_.layout) +
           (packed_.data_as_forward ? ", backward_data as a forward convolution (flipped filter)"
                                    : "") +
           (packed_.forward.outputs_on_rows ? ", forward tiles' rows = output channels" : "") +
           (data_rows ? ", backward_data tiles' rows = input channels" : "");
  }
  const auto name = [](GemmLibrary library) {
    return library == GemmLibrary::onednn ? std::string("onednn") : std::string("openblas");
  };
  return "explicit im2col + sgemm (forward " + name(forward_gemm_) + ", backward_data " +
         name(backward_data_gemm_) + ", backward_weights " + name(backward_weights_gemm_) + ")";
}

void Plan::forward(const float* x, const float* w, const float* bias, float* y, bool accumulate) {
  const Conv2dShape& s = shape_;
  const int64_t G = s.groups, M = s.gemm_m(), K = s.gemm_k(), P = s.gemm_p();
  const int64_t C = s.in_channels, O = s.out_channels, HW = s.in_height * s.in_width;
  const int64_t blocks = blocking_.blocks_per_image;
  const RowSplit split{s.out_height(), blocks};
  if (blocking_.depthwise && s.layout == Layout::nhwc) {
    depthwise_nhwc_tap_major(s, w, /*reversed=*/false, partials());
    const int64_t OH = s.out_height(), image = s.in_height * s.in_width * C;
    pool_.run(s.batch * OH, [&](int64_t task, int) {  // one output row each
      const int64_t n = task / OH, oh = task % OH;
      depthwise_nhwc_forward_rows(s, x + n * image, partials(), bias, accumulate, y + n * P * O, oh,
                                  oh + 1);
    });
    return;
  }
  if (blocking_.depthwise) {
    pool_.run(s.batch * O, [&](int64_t task, int slot) {
      const int64_t n = task / O, o = task % O;
      depthwise_forward_plane(s, x + (n * C + o / M) * HW, w + o * K,
                              bias != nullptr ? bias + o : nullptr, accumulate, y + (n * O + o) * P,
                              scratch(slot));
    });
    return;
  }
  if (runs_packed()) {
    const FilterPacking packing = !constant_weights_        ? FilterPacking::per_call
                                  : packed_weights_of_ == w ? FilterPacking::packed
                                                            : FilterPacking::keep;
    const auto pass = s.layout == Layout::nhwc ? packed_forward_nhwc : packed_forward;
    pass(s, *kernel_, packed_, pool_, x, w, bias, y, accumulate, packing, packed_workspace());
    packed_weights_of_ = constant_weights_ ? w : nullptr;
    return;
  }
  const SingleThreadedBlas single_threaded;  // the explicit path's GEMMs run inside tasks
  const int64_t panels = blocking_.output_panels, per_panel = blocking_.outputs_per_panel;
  pool_.run(s.batch * G * blocks, [&](int64_t task, int slot) {
    const int64_t block = task % blocks, g = task / blocks % G, n = task / blocks / G;
    const int64_t oh_begin = split.begin(block), oh_end = split.end(block);
    // Lowered once, by the panels in parallel when there are several (each a share of the
    // X_col rows); the panels of output channels then multiply the same block.
    const float* x_group = x + (n * C + g * (C / G)) * HW;
    float* columns = scratch(slot);
    if (panels == 1) {
      lower_share(s, x_group, oh_begin, oh_end, 0, 1, columns);
    } else {
      pool_.run_parts(panels, [&](int64_t share) {
        lower_share(s, x_group, oh_begin, oh_end, share, panels, columns);
      });
    }
    const ColumnView x_col = block_columns(s, x_group, oh_begin, oh_end, columns);
    pool_.run_parts(panels, [&](int64_t panel) {
      const ChannelRange outputs{panel * per_panel, std::min(M, (panel + 1) * per_panel)};
      forward_rows(forward_gemm_, s, x_col, w + g * M * K, bias != nullptr ? bias + g * M : nullptr,
                   outputs, oh_begin, oh_end, accumulate, y + (n * O + g * M) * P);
    });
  });
}

void Plan::backward_data(const float* dy, const float* w, float* dx, bool accumulate) {
  const Conv2dShape& s = shape_;
  const int64_t G = s.groups, M = s.gemm_m(), K = s.gemm_k(), P = s.gemm_p();
  const int64_t C = s.in_channels, O = s.out_channels, HW = s.in_height * s.in_width;
  const int64_t blocks = blocking_.blocks_per_image;
  const RowSplit split{s.out_height(), blocks};
  const int64_t panels = blocking_.input_panels, per_panel = blocking_.inputs_per_panel;
  // One (image, group, block): its panels of input channels share the slot's column buffer,
  // each writing its own rows of it and scattering into its own planes.
  auto run_block = [&](int64_t n_g, int64_t block, int slot) {
    const int64_t g = n_g % G, n = n_g / G;
    const int64_t oh_begin = split.begin(block), oh_end = split.end(block);
    pool_.run_parts(panels, [&](int64_t panel) {
      const ChannelRange inputs{panel * per_panel, std::min(C / G, (panel + 1) * per_panel)};
      backward_data_rows(backward_data_gemm_, s, dy + (n * O + g * M) * P, w + g * M * K, inputs,
                         oh_begin, oh_end, accumulate, dx + (n * C + g * (C / G)) * HW,
                         scratch(slot));
    });
  };
  const int64_t images_groups = s.batch * G;

  if (blocking_.depthwise && s.layout == Layout::nhwc) {
    depthwise_nhwc_tap_major(s, w, depthwise_nhwc_data_gradient_is_a_forward(s), partials());
    const int64_t H = s.in_height;
    pool_.run(s.batch * H, [&](int64_t task, int) {  // one input row each
      const int64_t n = task / H, ih = task % H;
      depthwise_nhwc_backward_data_rows(s, dy + n * P * O, partials(), accumulate, dx + n * HW * C,
                                        ih, ih + 1);
    });
    return;
  }
  if (blocking_.depthwise) {
    pool_.run(s.batch * C, [&](int64_t task, int slot) {
      const int64_t n = task / C, c = task % C;
      depthwise_backward_data_plane(s, dy + (n * O + c * M) * P, w + c * M * K, M, accumulate,
                                    dx + (n * C + c) * HW, scratch(slot));
    });
    return;
  }
  if (runs_packed()) {
    packed_weights_of_ = nullptr;  // its W^T takes the packed weights' place
    const auto pass = s.layout == Layout::nhwc ? packed_backward_data_nhwc : packed_backward_data;
    pass(s, *kernel_, packed_, pool_, dy, w, dx, accumulate, packed_workspace());
    return;
  }
  const SingleThreadedBlas single_threaded;  // the explicit path's GEMMs run inside tasks
  if (blocking_.pointwise) {                 // the GEMM writes dx itself, block by disjoint block
    pool_.run(images_groups * blocks,
              [&](int64_t task, int slot) { run_block(task / blocks, task % blocks, slot); });
    return;
  }
  if (!accumulate) {  // plane by plane, so that one image alone still spreads over the workers
    pool_.run(s.batch * C, [&](int64_t plane, int) {
      std::memset(dx + plane * HW, 0, static_cast<std::size_t>(HW) * sizeof(float));
    });
  }
  // Every pixel receives its block contributions in one fixed order, even blocks before odd
  // ones, whether the blocks run in parallel waves or in one task.
  if (blocking_.data_waves) {
    for (int64_t parity = 0; parity < 2; ++parity) {
      const int64_t count = (blocks - parity + 1) / 2;
      pool_.run(images_groups * count, [&](int64_t task, int slot) {
        run_block(task / count, parity + 2 * (task % count), slot);
      });
    }
  } else {
    pool_.run(images_groups, [&](int64_t task, int slot) {
      for (int64_t parity = 0; parity < 2; ++parity) {
        for (int64_t block = parity; block < blocks; block += 2) run_block(task, block, slot);
      }
    });
  }
}

void Plan::backward_weights(const float* x, const float* dy, float* dw, float* dbias,
                            bool accumulate) {
  const Conv2dShape& s = shape_;
  const int64_t G = s.groups, M = s.gemm_m(), K = s.gemm_k(), P = s.gemm_p();
  const int64_t C = s.in_channels, O = s.out_channels, HW = s.in_height * s.in_width;
  const int64_t blocks = blocking_.weight_blocks_per_image;
  const RowSplit split{s.out_height(), blocks};
  const int64_t panels = blocking_.weight_panels, panel_rows = blocking_.weight_panel_rows;
  const int64_t channel_panels = blocking_.weight_channel_panels;
  const int64_t channel_rows = blocking_.weight_channel_panel_rows;
  if (blocking_.depthwise && s.layout == Layout::nhwc) {
    const int64_t chunk_floats = depthwise_nhwc_chunk_floats(s);
    pool_.run(depthwise_nhwc_weight_chunks(s), [&](int64_t chunk, int) {
      depthwise_nhwc_backward_weights_chunk(s, x, dy, chunk, dbias != nullptr,
                                            partials() + chunk * chunk_floats);
    });
    depthwise_nhwc_add_weight_chunks(s, partials(), accumulate, dw, dbias);
    return;
  }
  if (blocking_.depthwise) {
    pool_.run(O, [&](int64_t o, int slot) {
      depthwise_backward_weights_filter(s, x + o / M * HW, C * HW, dy + o * P, O * P, accumulate,
                                        dw + o * K, scratch(slot));
    });
    if (dbias != nullptr) sum_channels(dy, O, P, dbias, accumulate);
    return;
  }
  if (runs_packed()) {
    if (packed_.weight_chunks > 1) packed_weights_of_ = nullptr;  // its partials take their place
    const auto pass =
        s.layout == Layout::nhwc ? packed_backward_weights_nhwc : packed_backward_weights;
    const bool chunked = packed_.weight_chunks > 1;  // (then the chunks' tasks sum db too)
    pass(s, *kernel_, packed_, pool_, x, dy, dw, chunked ? dbias : nullptr, accumulate,
         packed_workspace());
    if (dbias != nullptr && !chunked) sum_channels(dy, O, P, dbias, accumulate);
    return;
  }
  const SingleThreadedBlas single_threaded;  // the explicit path's GEMMs run inside tasks
  // Chunk c of the (image, row block) sequence sums into dW_g itself (chunk 0, which also
  // carries beta) or into its own partial buffer; the partials are added in chunk order below.
  const int64_t chunks = blocking_.weight_chunks;
  const RowSplit sequence{s.batch * blocks, chunks};
  auto target = [&](int64_t chunk, int64_t g) {
    return chunk == 0 ? dw + g * M * K : partials() + ((chunk - 1) * G + g) * M * K;
  };
  pool_.run(G * channel_panels * panels * chunks, [&](int64_t task, int slot) {
    const int64_t chunk = task % chunks, panel_task = task / chunks;
    const int64_t g = panel_task / panels / channel_panels;
    const int64_t m_begin = panel_task / panels % channel_panels * channel_rows;
    const int64_t m_end = std::min(M, m_begin + channel_rows);
    const int64_t k_begin = panel_task % panels * panel_rows;
    const int64_t k_end = std::min(K, k_begin + panel_rows);
    // The panel's sum runs over images, then row blocks, in index order (see plan.hpp).
    float beta = accumulate && chunk == 0 ? 1.0f : 0.0f;
    for (int64_t step = sequence.begin(chunk); step < sequence.end(chunk); ++step) {
      const int64_t n = step / blocks, block = step % blocks;
      const ColumnBlock columns{k_begin, k_end, split.begin(block), split.end(block)};
      backward_weights_block(backward_weights_gemm_, s, x + (n * C + g * (C / G)) * HW,
                             dy + (n * O + g * M) * P, columns, m_begin, m_end, beta,
                             target(chunk, g), scratch(slot));
      beta = 1.0f;
    }
  });
  if (chunks > 1) {
    const int64_t weights = G * M * K, pieces = std::min<int64_t>(weights, 64);
    pool_.run(pieces, [&](int64_t piece, int) {
      for (int64_t i = piece * weights / pieces; i < (piece + 1) * weights / pieces; ++i) {
        float sum = dw[i];
        for (int64_t chunk = 1; chunk < chunks; ++chunk)
          sum += partials()[(chunk - 1) * weights + i];
        dw[i] = sum;
      }
    });
  }
  if (dbias != nullptr) sum_channels(dy, O, P, dbias, accumulate);
}

void Plan::add_channel_bias(const float* bias, int64_t channels, int64_t plane, float* t) {
  if (shape_.layout == Layout::nhwc) {  // t [N, plane, channels]: row by row
    const int64_t rows = shape_.batch * plane, pieces = std::min<int64_t>(rows, 64);
    pool_.run(pieces, [&](int64_t piece, int) {
      for (int64_t row = piece * rows / pieces; row < (piece + 1) * rows / pieces; ++row) {
        float* values = t + row * channels;
        for (int64_t c = 0; c < channels; ++c) values[c] += bias[c];
      }
    });
    return;
  }
  pool_.run(shape_.batch * channels, [&](int64_t task, int) {
    float* values = t + task * plane;
    const float b = bias[task % channels];
    for (int64_t i = 0; i < plane; ++i) values[i] += b;
  });
}

void Plan::sum_channels(const float* t, int64_t channels, int64_t plane, float* sums,
                        bool accumulate) {
  if (shape_.layout == Layout::nhwc) {  // t [N, plane, channels]: ranges of channels
    const int64_t ranges = ceil_div(channels, kChannelsPerSum);
    pool_.run(ranges, [&](int64_t range, int) {
      const int64_t begin = range * kChannelsPerSum;
      const int64_t count = std::min(kChannelsPerSum, channels - begin);
      double range_sums[kChannelsPerSum];
      channel_sums_nhwc(t, shape_.batch * plane, channels, begin, count, range_sums);
      for (int64_t c = 0; c < count; ++c) {
        const auto sum = static_cast<float>(range_sums[c]);
        sums[begin + c] = accumulate ? sums[begin + c] + sum : sum;
      }
    });
    return;
  }
  pool_.run(channels, [&](int64_t channel, int) {
    const auto sum =
        static_cast<float>(channel_sum(t, channels, plane, channel, 0, shape_.batch * plane));
    sums[channel] = accumulate ? sums[channel] + sum : sum;
  });
}

}  // namespace convgemm::detail
