#include "convgemm/nn/checkpoint.hpp"

#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <limits>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include "convgemm/nn/sequential.hpp"

namespace convgemm::nn {

uint64_t fnv1a64(const void* data, std::size_t size, uint64_t hash) {
  const auto* bytes = static_cast<const unsigned char*>(data);
  for (std::size_t i = 0; i < size; ++i) {
    hash ^= bytes[i];
    hash *= 0x100000001b3ull;
  }
  return hash;
}

namespace {

// Bounds on header fields: far above any real model, they stop a corrupted length from asking
// for gigabytes before the checksum is even looked at.
constexpr uint32_t kMaxStringLength = 4096;
constexpr uint32_t kMaxRank = 8;

std::string quoted(const std::filesystem::path& path) {
  std::string text = "convgemm: checkpoint '";
  text += path.string();
  text += "': ";
  return text;
}

// --- Writing -----------------------------------------------------------------------------------

class Writer {
 public:
  void bytes(const void* data, std::size_t size) {
    const auto* p = static_cast<const uint8_t*>(data);
    buffer_.insert(buffer_.end(), p, p + size);
  }
  template <class U>
  void integer(U value) {  // little-endian whatever the host
    for (std::size_t i = 0; i < sizeof(U); ++i) {
      buffer_.push_back(static_cast<uint8_t>(static_cast<uint64_t>(value) >> (8 * i)));
    }
  }
  void string(std::string_view text) {
    integer(static_cast<uint32_t>(text.size()));
    bytes(text.data(), text.size());
  }
  std::vector<uint8_t>& buffer() { return buffer_; }

 private:
  std::vector<uint8_t> buffer_;
};

// --- Reading -----------------------------------------------------------------------------------

struct StagedParameter {
  std::string name;
  std::vector<int64_t> shape;
};

class Reader {
 public:
  Reader(const std::vector<uint8_t>& data, std::size_t end, const std::filesystem::path& path)
      : data_(data), end_(end), path_(path) {}

  const uint8_t* take(std::size_t size, const char* what) {
    if (size > end_ - offset_) {
      std::string message = quoted(path_);
      message += "truncated: ";
      message += what;
      message += " at byte ";
      message += std::to_string(offset_);
      message += " needs ";
      message += std::to_string(size);
      message += " bytes, ";
      message += std::to_string(end_ - offset_);
      message += " left";
      throw std::runtime_error(message);
    }
    const uint8_t* p = data_.data() + offset_;
    offset_ += size;
    return p;
  }
  template <class U>
  U integer(const char* what) {
    const uint8_t* p = take(sizeof(U), what);
    uint64_t value = 0;
    for (std::size_t i = 0; i < sizeof(U); ++i) value |= uint64_t{p[i]} << (8 * i);
    return static_cast<U>(value);
  }
  std::string string(const char* what) {
    const uint32_t size = integer<uint32_t>(what);
    if (size > kMaxStringLength) corrupt(what, size);
    const uint8_t* p = take(size, what);
    return std::string(reinterpret_cast<const char*>(p), size);
  }
  [[noreturn]] void corrupt(const char* what, uint64_t value) const {
    std::string message = quoted(path_);
    message += "corrupted header: ";
    message += what;
    message += " ";
    message += std::to_string(value);
    message += " is out of range";
    throw std::runtime_error(message);
  }
  std::size_t offset() const { return offset_; }

 private:
  const std::vector<uint8_t>& data_;
  std::size_t end_;
  std::size_t offset_ = 0;
  const std::filesystem::path& path_;
};

std::vector<uint8_t> read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::string message = quoted(path);
    message += "cannot open for reading: ";
    message += std::strerror(errno);
    throw std::runtime_error(message);
  }
  std::vector<uint8_t> data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) {
    std::string message = quoted(path);
    message += "read error";
    throw std::runtime_error(message);
  }
  return data;
}

[[noreturn]] void fail_mismatch(const std::filesystem::path& path, const std::string& what) {
  std::string message = quoted(path);
  message += "does not fit this model: ";
  message += what;
  throw std::invalid_argument(message);
}

}  // namespace

void save_checkpoint(Sequential& model, const std::filesystem::path& path) {
  static_assert(std::numeric_limits<float>::is_iec559, "checkpoints store IEEE-754 binary32");
  const std::vector<Parameter> parameters = model.parameters();
  Writer w;
  w.bytes(kCheckpointMagic, sizeof(kCheckpointMagic));
  w.integer(kCheckpointVersion);
  w.integer(static_cast<uint32_t>(model.size()));
  for (int64_t i = 0; i < model.size(); ++i) w.string(model.layer(i).kind());
  w.integer(static_cast<uint32_t>(parameters.size()));
  uint64_t value_count = 0;
  for (const Parameter& p : parameters) {
    w.string(p.name);
    w.integer(static_cast<uint32_t>(p.shape.size()));
    for (int64_t d : p.shape) w.integer(d);
    value_count += p.values.size();
  }
  w.integer(value_count);
  for (const Parameter& p : parameters) {
    for (float v : p.values) w.integer(std::bit_cast<uint32_t>(v));
  }
  w.integer(fnv1a64(w.buffer().data(), w.buffer().size()));

  // Write the temporary file completely and durably, then rename it over the target: a reader
  // (or a crash) sees the old checkpoint or the new one, never a mix.
  std::filesystem::path temporary = path;
  temporary += ".tmp";
  std::FILE* file = std::fopen(temporary.c_str(), "wb");
  if (file == nullptr) {
    std::string message = quoted(temporary);
    message += "cannot open for writing: ";
    message += std::strerror(errno);
    throw std::runtime_error(message);
  }
  const std::vector<uint8_t>& bytes = w.buffer();
  bool ok = std::fwrite(bytes.data(), 1, bytes.size(), file) == bytes.size();
  ok = std::fflush(file) == 0 && ok;
  ok = ::fsync(::fileno(file)) == 0 && ok;
  const int saved_errno = errno;
  ok = std::fclose(file) == 0 && ok;
  if (!ok) {
    std::error_code ignored;
    std::filesystem::remove(temporary, ignored);
    std::string message = quoted(temporary);
    message += "write failed: ";
    message += std::strerror(saved_errno);
    throw std::runtime_error(message);
  }
  std::error_code error;
  std::filesystem::rename(temporary, path, error);
  if (error) {
    std::error_code ignored;
    std::filesystem::remove(temporary, ignored);
    std::string message = quoted(path);
    message += "cannot rename the temporary file over it: ";
    message += error.message();
    throw std::runtime_error(message);
  }
}

void load_checkpoint(Sequential& model, const std::filesystem::path& path) {
  const std::vector<uint8_t> data = read_file(path);

  // 1. The container: magic, version, the header, the exact size, then the checksum. The header
  //    is parsed before the checksum can be checked (it says where the checksum is), so every
  //    length in it is bounded by the bytes actually present before it is used.
  constexpr std::size_t kChecksumBytes = sizeof(uint64_t);
  if (data.size() < sizeof(kCheckpointMagic) ||
      !std::equal(std::begin(kCheckpointMagic), std::end(kCheckpointMagic), data.begin())) {
    std::string message = quoted(path);
    message += "not a convgemm checkpoint (bad magic)";
    throw std::runtime_error(message);
  }
  Reader r(data, data.size(), path);
  r.take(sizeof(kCheckpointMagic), "magic");
  const uint32_t version = r.integer<uint32_t>("version");
  if (version != kCheckpointVersion) {
    std::string message = quoted(path);
    message += "unsupported version ";
    message += std::to_string(version);
    message += " (this build reads version ";
    message += std::to_string(kCheckpointVersion);
    message += ")";
    throw std::runtime_error(message);
  }
  const uint32_t layer_count = r.integer<uint32_t>("layer count");
  if (layer_count > data.size()) r.corrupt("layer count", layer_count);
  std::vector<std::string> kinds;
  for (uint32_t i = 0; i < layer_count; ++i) kinds.push_back(r.string("layer kind"));
  const uint32_t parameter_count = r.integer<uint32_t>("parameter count");
  if (parameter_count > data.size()) r.corrupt("parameter count", parameter_count);
  std::vector<StagedParameter> staged;
  uint64_t counted_values = 0;
  for (uint32_t i = 0; i < parameter_count; ++i) {
    StagedParameter p;
    p.name = r.string("parameter name");
    const uint32_t rank = r.integer<uint32_t>("parameter rank");
    if (rank > kMaxRank) r.corrupt("parameter rank", rank);
    uint64_t elements = 1;
    for (uint32_t d = 0; d < rank; ++d) {
      const int64_t dim = r.integer<int64_t>("parameter dimension");
      if (dim < 0) r.corrupt("parameter dimension", uint64_t(dim));
      p.shape.push_back(dim);
      if (__builtin_mul_overflow(elements, uint64_t(dim), &elements)) {
        r.corrupt("parameter element count", elements);
      }
    }
    if (__builtin_add_overflow(counted_values, elements, &counted_values)) {
      r.corrupt("total element count", counted_values);
    }
    staged.push_back(std::move(p));
  }
  const uint64_t value_count = r.integer<uint64_t>("value count");
  if (value_count != counted_values) r.corrupt("value count", value_count);
  // Sizes come from the header alone; nothing proportional to them is allocated before the file
  // is known to be exactly that long.
  uint64_t expected_size = 0;
  if (__builtin_mul_overflow(value_count, uint64_t{sizeof(float)}, &expected_size) ||
      __builtin_add_overflow(expected_size, uint64_t{r.offset() + kChecksumBytes},
                             &expected_size)) {
    r.corrupt("value count", value_count);
  }
  if (data.size() != expected_size) {
    std::string message = quoted(path);
    message += data.size() < expected_size ? "truncated: " : "trailing bytes: ";
    message += "the header describes ";
    message += std::to_string(expected_size);
    message += " bytes, the file has ";
    message += std::to_string(data.size());
    throw std::runtime_error(message);
  }
  const std::size_t body = data.size() - kChecksumBytes;
  Reader tail(data, data.size(), path);
  tail.take(body, "body");
  const uint64_t stored = tail.integer<uint64_t>("checksum");
  const uint64_t computed = fnv1a64(data.data(), body);
  if (stored != computed) {
    std::string message = quoted(path);
    message += "checksum mismatch (file corrupted): stored ";
    message += std::to_string(stored);
    message += ", computed ";
    message += std::to_string(computed);
    throw std::runtime_error(message);
  }

  // 2. Architecture: the same layers and the same parameters, names and shapes, in order.
  if (layer_count != uint64_t(model.size())) {
    std::string what = "it has ";
    what += std::to_string(layer_count);
    what += " layers, the model ";
    what += std::to_string(model.size());
    fail_mismatch(path, what);
  }
  for (uint32_t i = 0; i < layer_count; ++i) {
    if (kinds[i] != model.layer(i).kind()) {
      std::string what = "layer ";
      what += std::to_string(i);
      what += " is ";
      what += kinds[i];
      what += " in the file, ";
      what += model.layer(i).kind();
      what += " in the model";
      fail_mismatch(path, what);
    }
  }
  const std::vector<Parameter> parameters = model.parameters();
  if (parameters.size() != staged.size()) {
    std::string what = "it has ";
    what += std::to_string(staged.size());
    what += " parameters, the model ";
    what += std::to_string(parameters.size());
    fail_mismatch(path, what);
  }
  for (std::size_t i = 0; i < staged.size(); ++i) {
    if (staged[i].name != parameters[i].name || staged[i].shape != parameters[i].shape) {
      std::string what = "parameter ";
      what += std::to_string(i);
      what += " is ";
      what += staged[i].name;
      what += " ";
      what += shape_to_string(staged[i].shape);
      what += " in the file, ";
      what += parameters[i].name;
      what += " ";
      what += shape_to_string(parameters[i].shape);
      what += " in the model";
      fail_mismatch(path, what);
    }
  }

  // 3. Decode into a staging buffer, then copy: the model changes only after every check passed.
  std::vector<float> values(value_count);
  for (float& v : values) v = std::bit_cast<float>(r.integer<uint32_t>("values"));
  auto next = values.begin();
  for (const Parameter& p : parameters) {
    std::copy(next, next + static_cast<std::ptrdiff_t>(p.values.size()), p.values.begin());
    next += static_cast<std::ptrdiff_t>(p.values.size());
  }
}

}  // namespace convgemm::nn
