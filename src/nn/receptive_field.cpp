#include "convgemm/nn/receptive_field.hpp"

#include "check.hpp"

namespace convgemm::nn {

Window2d window_of(const Conv2dShape& shape) {
  return {{shape.kernel_height, shape.stride_height, shape.pad_top, shape.dilation_height},
          {shape.kernel_width, shape.stride_width, shape.pad_left, shape.dilation_width}};
}

namespace {

void fold(ReceptiveFieldAxis& field, const WindowAxis& window, std::size_t layer,
          const char* axis) {
  std::string prefix = "receptive_field layer ";
  prefix += std::to_string(layer);
  prefix += " ";
  prefix += axis;
  auto named = [&prefix](const char* field) {
    std::string name = prefix;
    name += " ";
    name += field;
    return name;
  };
  detail::require_at_least(named("kernel"), window.kernel, 1);
  detail::require_at_least(named("stride"), window.stride, 1);
  detail::require_at_least(named("dilation"), window.dilation, 1);
  detail::require_at_least(named("pad_begin"), window.pad_begin, 0);
  // The recurrence of receptive_field.hpp.
  const int64_t extent = detail::checked_mul(window.dilation, window.kernel - 1, prefix) + 1;
  field.size =
      detail::checked_add(field.size, detail::checked_mul(extent - 1, field.jump, prefix), prefix);
  field.start -= detail::checked_mul(window.pad_begin, field.jump, prefix);
  field.jump = detail::checked_mul(field.jump, window.stride, prefix);
}

}  // namespace

ReceptiveField receptive_field(std::span<const Window2d> stack) {
  ReceptiveField field;
  for (std::size_t layer = 0; layer < stack.size(); ++layer) {
    fold(field.height, stack[layer].height, layer, "height");
    fold(field.width, stack[layer].width, layer, "width");
  }
  return field;
}

std::string ReceptiveField::to_string() const {
  std::string text = "size ";
  text += std::to_string(height.size);
  text += "x";
  text += std::to_string(width.size);
  text += ", jump ";
  text += std::to_string(height.jump);
  text += "x";
  text += std::to_string(width.jump);
  text += ", start ";
  text += std::to_string(height.start);
  text += ",";
  text += std::to_string(width.start);
  return text;
}

}  // namespace convgemm::nn
