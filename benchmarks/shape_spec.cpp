#include "shape_spec.hpp"

#include <charconv>
#include <map>
#include <stdexcept>
#include <string>

namespace convgemm::bench {
namespace {

[[noreturn]] void spec_error(const std::string& message) {
  throw std::invalid_argument("--shape: " + message);
}

int64_t parse_value(std::string_view key, std::string_view text) {
  int64_t value = 0;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc() || end != text.data() + text.size()) {
    spec_error("value of " + std::string(key) + " must be an integer (got '" + std::string(text) +
               "')");
  }
  return value;
}

}  // namespace

Conv2dShape parse_shape_spec(std::string_view spec) {
  static const char* const known[] = {"N",  "C",  "H",   "W",      "O",      "K",
                                      "KH", "KW", "pad", "stride", "groups", "dilation"};
  std::map<std::string, int64_t, std::less<>> values;
  while (!spec.empty()) {
    const size_t comma = spec.find(',');
    const std::string_view item = spec.substr(0, comma);
    spec = comma == std::string_view::npos ? std::string_view() : spec.substr(comma + 1);
    const size_t equals = item.find('=');
    if (equals == std::string_view::npos) {
      spec_error("expected key=value, got '" + std::string(item) + "'");
    }
    const std::string key(item.substr(0, equals));
    bool is_known = false;
    for (const char* name : known) is_known = is_known || key == name;
    if (!is_known) {
      spec_error("unknown key '" + key + "' (known: N C H W O K KH KW pad stride groups dilation)");
    }
    if (values.contains(key)) spec_error("key " + key + " given twice");
    values[key] = parse_value(key, item.substr(equals + 1));
  }
  for (const char* required : {"N", "C", "H", "W", "O"}) {
    if (!values.contains(required)) spec_error(std::string("missing ") + required);
  }
  if (values.contains("K") && (values.contains("KH") || values.contains("KW"))) {
    spec_error("give either K or KH and KW, not both");
  }
  if (!values.contains("K") && !(values.contains("KH") && values.contains("KW"))) {
    spec_error("missing the kernel size: K, or KH and KW");
  }
  const auto get = [&](const char* key, int64_t fallback) {
    const auto found = values.find(key);
    return found == values.end() ? fallback : found->second;
  };
  const int64_t kernel = get("K", 0), stride = get("stride", 1), dilation = get("dilation", 1);
  Conv2dShape shape{.batch = values["N"],
                    .in_channels = values["C"],
                    .in_height = values["H"],
                    .in_width = values["W"],
                    .out_channels = values["O"],
                    .kernel_height = get("KH", kernel),
                    .kernel_width = get("KW", kernel),
                    .stride_height = stride,
                    .stride_width = stride,
                    .dilation_height = dilation,
                    .dilation_width = dilation,
                    .groups = get("groups", 1)};
  shape.set_padding(get("pad", 0));
  try {
    shape.validate();
  } catch (const std::invalid_argument& error) {  // names the field: "convgemm: stride_height ..."
    spec_error(error.what());
  }
  return shape;
}

}  // namespace convgemm::bench
