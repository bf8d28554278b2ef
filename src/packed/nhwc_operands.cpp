// The gathers from nhwc images (operands.hpp). In this layout a tap of a patch is a contiguous
// run of C/G channels, so nothing is gathered element by element: forward transposes those runs
// into panels (positions are its lanes), backward_weights copies them into panel rows (its lanes
// are the runs themselves). Taps in the padding read zeros.
#include <algorithm>
#include <cassert>

#include "nhwc_taps.hpp"
#include "operands.hpp"
#include "panel_copies.hpp"

namespace convgemm::detail {

using namespace panel;

namespace {

// What a padding tap reads: one chunk of zeros, the longest run transposed at a time.
alignas(64) const float kZeros[kChunk] = {};

// The first channel of tap (kh, kw) seen from `o`, or nullptr in the padding.
const float* tap_pixel(const Conv2dShape& s, const float* x_group, const nhwc::Origin& o,
                       int64_t kh, int64_t kw) {
  const int64_t offset = nhwc::tap_offset(s, o, kh, kw);
  return offset < 0 ? nullptr : x_group + offset;
}

// Whether every kernel column of each of the `lanes` origins lies inside the image: then each
// kernel row of each is one run of the image or a padding row. Columns without dilation.
bool columns_inside(const Conv2dShape& s, const nhwc::Origin* origins, int64_t lanes) {
  assert(s.dilation_width == 1);
  for (int64_t lane = 0; lane < lanes; ++lane) {
    if (origins[lane].iw < 0 || origins[lane].iw + s.kernel_width > s.in_width) return false;
  }
  return true;
}

// Whether taps kw to last_kw of kernel row kh are, for each of the `lanes` origins, either all
// inside the image (one run of it) or all in padding rows (zeros). Columns without dilation.
bool rows_inside(const Conv2dShape& s, const nhwc::Origin* origins, int64_t lanes, int64_t kh,
                 int64_t kw, int64_t last_kw) {
  assert(s.dilation_width == 1);
  for (int64_t lane = 0; lane < lanes; ++lane) {
    const nhwc::Origin& o = origins[lane];
    const int64_t ih = o.ih + kh * s.dilation_height;
    if (ih < 0 || ih >= s.in_height) continue;
    if (o.iw + kw < 0 || o.iw + last_kw >= s.in_width) return false;
  }
  return true;
}

}  // namespace

const float* NhwcImageColumns::panels(int64_t first, int64_t lanes, int64_t step, int64_t steps,
                                      int64_t width, float* buffer) const {
  const Conv2dShape& s = *shape;
  const int64_t group_channels = s.in_channels / s.groups, KW = s.kernel_width;
  assert(width <= kMaxWidth);
  // Without groups and column dilation, taps kw, kw + 1, ... of a kernel row are neighbouring
  // pixels, so their channel runs follow each other in the image: one longer run (the stem's
  // three-channel taps would otherwise be copied three floats at a time).
  const bool rows_are_runs = group_channels == s.in_channels && s.dilation_width == 1;
  nhwc::Origin origins[kMaxWidth];
  for (int64_t panel = 0; panel * width < lanes; ++panel) {
    const int64_t used = std::min(width, lanes - panel * width);
    nhwc::Origins walk(s, first_lane + first + panel * width);
    for (int64_t lane = 0; lane < used; ++lane, walk.next()) origins[lane] = *walk;
    // Found once per panel, not once per kernel row: the test of every lane took as long as the
    // copies on the 3-channel layers.
    const bool runs_everywhere = rows_are_runs && columns_inside(s, origins, used);
    float* panel_rows = buffer + panel * steps * width;
    // The steps cut into runs of one tap's channels, at most a chunk long (the zeros' length),
    // or of the rest of a kernel row where that is one run of the image for every lane.
    for (int64_t t = 0; t < steps;) {
      const int64_t k = step + t, tap = k / group_channels, c = k % group_channels;
      const int64_t kh = tap / KW, kw = tap % KW;
      int64_t run = std::min({group_channels - c, steps - t, kChunk});
      if (rows_are_runs) {
        const int64_t row_run = std::min({(kh + 1) * KW * group_channels - k, steps - t, kChunk});
        const int64_t last_kw = (k + row_run - 1) / group_channels - kh * KW;
        if (row_run > run && (runs_everywhere || rows_inside(s, origins, used, kh, kw, last_kw))) {
          run = row_run;
        }
      }
      float* rows_out = panel_rows + t * width;
      const int64_t lanes4 = used / 4 * 4;
      for (int64_t lane = 0; lane < lanes4; lane += 4) {
        const float* sources[4];
        for (int64_t i = 0; i < 4; ++i) {
          const float* pixel = tap_pixel(s, x_group, origins[lane + i], kh, kw);
          sources[i] = pixel != nullptr ? pixel + c : kZeros;
        }
        transpose_four_lanes(sources, run, width, rows_out + lane);
      }
      for (int64_t lane = lanes4; lane < used; ++lane) {
        const float* pixel = tap_pixel(s, x_group, origins[lane], kh, kw);
        for (int64_t j = 0; j < run; ++j) rows_out[j * width + lane] = pixel ? pixel[c + j] : 0.0f;
      }
      for (int64_t j = 0; j < run; ++j) zero_lanes(rows_out + j * width + used, width - used);
      t += run;
    }
  }
  return buffer;
}

const float* NhwcImageRows::panels(int64_t first, int64_t lanes, int64_t step, int64_t steps,
                                   int64_t width, float* buffer) const {
  const Conv2dShape& s = *shape;
  const int64_t group_channels = s.in_channels / s.groups, KW = s.kernel_width;
  assert(width <= kMaxWidth);
  // A panel's lanes cut into runs of consecutive taps of one kernel row, kw to last_kw, from
  // channel c: one tap's channels, or (without groups and column dilation, as in the forward
  // gather) several neighbouring pixels' channels, one run of the image where all its taps are
  // inside it.
  const bool rows_are_runs = group_channels == s.in_channels && s.dilation_width == 1;
  struct Run {
    int64_t kh, kw, last_kw, c, length, lane;
  };
  Run runs[kMaxWidth];
  for (int64_t panel = 0; panel * width < lanes; ++panel) {
    const int64_t used = std::min(width, lanes - panel * width);
    int64_t run_count = 0;
    for (int64_t lane = 0; lane < used;) {
      const int64_t k = first + panel * width + lane, tap = k / group_channels;
      const int64_t c = k % group_channels, length = std::min(group_channels - c, used - lane);
      Run* last = run_count > 0 ? &runs[run_count - 1] : nullptr;
      if (rows_are_runs && last != nullptr && last->kh == tap / KW && c == 0) {
        last->last_kw = tap % KW;  // the previous run ended this kernel row's previous tap
        last->length += length;
      } else {
        runs[run_count++] = {tap / KW, tap % KW, tap % KW, c, length, lane};
      }
      lane += length;
    }
    float* panel_rows = buffer + panel * steps * width;
    nhwc::Origins walk(s, step);
    for (int64_t t = 0; t < steps; ++t, walk.next()) {
      const nhwc::Origin& origin = *walk;
      float* out = panel_rows + t * width;
      for (int64_t r = 0; r < run_count; ++r) {
        const Run& run = runs[r];
        if (run.last_kw > run.kw && rows_inside(s, &origin, 1, run.kh, run.kw, run.last_kw)) {
          const float* pixel = tap_pixel(s, x_group, origin, run.kh, run.kw);
          if (pixel != nullptr) {
            copy_strided(pixel + run.c, 1, run.length, out + run.lane);
          } else {
            zero_lanes(out + run.lane, run.length);  // a row in the padding
          }
          continue;
        }
        // One tap, or some of the run's taps in the padding columns: tap by tap.
        int64_t lane = run.lane, c = run.c, left = run.length;
        for (int64_t kw = run.kw; left > 0; ++kw, c = 0) {
          const int64_t length = std::min(group_channels - c, left);
          const float* pixel = tap_pixel(s, x_group, origin, run.kh, kw);
          if (pixel != nullptr) {
            copy_strided(pixel + c, 1, length, out + lane);
          } else {
            zero_lanes(out + lane, length);
          }
          lane += length;
          left -= length;
        }
      }
      zero_lanes(out + used, width - used);
    }
  }
  return buffer;
}

}  // namespace convgemm::detail
