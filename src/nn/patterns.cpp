// The generated pattern set (data.hpp): strokes drawn anti-aliased over Gaussian noise.
#include <algorithm>
#include <array>
#include <cmath>
#include <random>

#include "check.hpp"
#include "convgemm/nn/data.hpp"
#include "convgemm/nn/init.hpp"

namespace convgemm::nn {

std::span<const float> Dataset::image(int64_t index) const {
  if (index < 0 || index >= size()) {
    std::string rule = "must be in [0, size()) = [0, ";
    rule += std::to_string(size());
    rule += ")";
    detail::fail("index", index, rule);
  }
  return std::span(images).subspan(static_cast<std::size_t>(index * image_elements()),
                                   static_cast<std::size_t>(image_elements()));
}

std::string_view pattern_name(int32_t label) {
  static constexpr std::array<std::string_view, kPatternClasses> kNames = {
      "horizontal line", "vertical line", "diagonal line", "corner", "cross", "circle"};
  if (label < 0 || label >= kPatternClasses) {
    detail::fail("label", label, "must be in [0, kPatternClasses) = [0, 6)");
  }
  return kNames[static_cast<std::size_t>(label)];
}

namespace {

// Standard normal by Box-Muller on our own uniform(): std::normal_distribution's algorithm is
// the library's choice, and the set must be the same everywhere for a given seed.
float gaussian(std::mt19937_64& rng) {
  const float u1 = 1.0f - uniform(rng, 0.0f, 1.0f);  // (0, 1]: log stays finite
  const float u2 = uniform(rng, 0.0f, 1.0f);
  return std::sqrt(-2.0f * std::log(u1)) * std::cos(6.2831853f * u2);
}

struct Point {
  float x, y;
};

class Canvas {
 public:
  Canvas(float* pixels, int64_t size) : pixels_(pixels), size_(size) {}

  // A stroke of the given thickness; a pixel's coverage falls off linearly over one pixel at
  // the edge (anti-aliasing), and overlapping strokes take the brighter value.
  template <class Distance>
  void stroke(Distance distance, float thickness, float intensity) {
    for (int64_t row = 0; row < size_; ++row) {
      for (int64_t col = 0; col < size_; ++col) {
        const float d = distance(Point{float(col), float(row)});
        const float coverage = std::clamp(thickness / 2.0f + 0.5f - d, 0.0f, 1.0f);
        float& pixel = pixels_[row * size_ + col];
        pixel = std::max(pixel, intensity * coverage);
      }
    }
  }
  void segment(Point a, Point b, float thickness, float intensity) {
    stroke(
        [a, b](Point p) {
          const float dx = b.x - a.x, dy = b.y - a.y;
          const float t =
              std::clamp(((p.x - a.x) * dx + (p.y - a.y) * dy) / (dx * dx + dy * dy), 0.0f, 1.0f);
          return std::hypot(p.x - (a.x + t * dx), p.y - (a.y + t * dy));
        },
        thickness, intensity);
  }
  void ring(Point centre, float radius, float thickness, float intensity) {
    stroke([centre, radius](
               Point p) { return std::fabs(std::hypot(p.x - centre.x, p.y - centre.y) - radius); },
           thickness, intensity);
  }

 private:
  float* pixels_;
  int64_t size_;
};

// One pattern of kind `label` at a random place; every stroke stays `margin` pixels inside.
void draw(Canvas& canvas, Pattern kind, float s, std::mt19937_64& rng) {
  const float margin = 2.0f, hi = s - 1.0f - margin;
  const float thickness = uniform(rng, 1.0f, 2.2f);
  const float intensity = uniform(rng, 0.6f, 1.0f);
  auto in = [&rng](float low, float high) { return uniform(rng, low, high); };
  switch (kind) {
    case Pattern::horizontal_line:
    case Pattern::vertical_line: {
      const float length = in(0.35f * s, 0.7f * s);
      const float along = in(margin, hi - length), across = in(margin, hi);
      Point a{along, across}, b{along + length, across};
      if (kind == Pattern::vertical_line) {
        std::swap(a.x, a.y);
        std::swap(b.x, b.y);
      }
      canvas.segment(a, b, thickness, intensity);
      break;
    }
    case Pattern::diagonal_line: {
      const float extent = in(0.3f * s, 0.55f * s);
      const float x = in(margin, hi - extent), y = in(margin, hi - extent);
      if (rng() & 1) {
        canvas.segment({x, y}, {x + extent, y + extent}, thickness, intensity);  // falling
      } else {
        canvas.segment({x, y + extent}, {x + extent, y}, thickness, intensity);  // rising
      }
      break;
    }
    case Pattern::corner: {
      const float arm_x = in(0.25f * s, 0.45f * s), arm_y = in(0.25f * s, 0.45f * s);
      const float sx = (rng() & 1) ? 1.0f : -1.0f, sy = (rng() & 1) ? 1.0f : -1.0f;
      // The vertex leaves room for the arms on their side.
      const float vx = sx > 0 ? in(margin, hi - arm_x) : in(margin + arm_x, hi);
      const float vy = sy > 0 ? in(margin, hi - arm_y) : in(margin + arm_y, hi);
      canvas.segment({vx, vy}, {vx + sx * arm_x, vy}, thickness, intensity);
      canvas.segment({vx, vy}, {vx, vy + sy * arm_y}, thickness, intensity);
      break;
    }
    case Pattern::cross: {
      const float half_x = in(0.15f * s, 0.3f * s), half_y = in(0.15f * s, 0.3f * s);
      const float cx = in(margin + half_x, hi - half_x), cy = in(margin + half_y, hi - half_y);
      canvas.segment({cx - half_x, cy}, {cx + half_x, cy}, thickness, intensity);
      canvas.segment({cx, cy - half_y}, {cx, cy + half_y}, thickness, intensity);
      break;
    }
    case Pattern::circle: {
      const float radius = in(0.14f * s, 0.3f * s);
      const float cx = in(margin + radius, hi - radius), cy = in(margin + radius, hi - radius);
      canvas.ring({cx, cy}, radius, thickness, intensity);
      break;
    }
  }
}

}  // namespace

Dataset make_pattern_dataset(const PatternOptions& options) {
  detail::require_at_least("count", options.count, 1);
  detail::require_at_least("image_size", options.image_size, 16);
  if (!(options.noise >= 0.0f) || !std::isfinite(options.noise)) {
    std::string message = "noise must be finite and >= 0 (got ";
    message += std::to_string(options.noise);
    message += ")";
    detail::fail_message(message);
  }
  const int64_t s = options.image_size;
  Dataset data;
  data.channels = 1;
  data.height = data.width = s;
  data.classes = kPatternClasses;
  data.images.assign(
      static_cast<std::size_t>(detail::checked_mul(options.count, s * s, "count * image_size^2")),
      0.0f);
  data.labels.resize(static_cast<std::size_t>(options.count));
  std::mt19937_64 rng(options.seed);
  for (int64_t i = 0; i < options.count; ++i) {
    const auto label = static_cast<int32_t>(i % kPatternClasses);
    data.labels[static_cast<std::size_t>(i)] = label;
    float* pixels = data.images.data() + i * s * s;
    Canvas canvas(pixels, s);
    draw(canvas, static_cast<Pattern>(label), float(s), rng);
    for (int64_t p = 0; p < s * s; ++p) pixels[p] += options.noise * gaussian(rng);
  }
  return data;
}

}  // namespace convgemm::nn
