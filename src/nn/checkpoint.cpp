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
#include "convgemm/nn/sgd.hpp"

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
  void binary32(float value) { integer(std::bit_cast<uint32_t>(value)); }
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
  Reader(std::span<const uint8_t> data, std::size_t end, const std::filesystem::path& path)
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
  float binary32(const char* what) { return std::bit_cast<float>(integer<uint32_t>(what)); }
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
  std::span<const uint8_t> data_;
  std::size_t end_;
  std::size_t offset_ = 0;
  const std::filesystem::path& path_;
};

std::vector<uint8_t> read_file_bytes(const std::filesystem::path& path) {
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

constexpr uint32_t kHasTrainingState = 1u << 0;
constexpr uint32_t kHasMomentum = 1u << 1;
constexpr uint32_t kKnownContents = kHasTrainingState | kHasMomentum;

std::vector<uint8_t> encode(Sequential& model, const SgdState* state,
                            const TrainingProgress* progress) {
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
  uint32_t contents = 0;
  if (state != nullptr) contents |= kHasTrainingState;
  if (state != nullptr && !state->velocity.empty()) contents |= kHasMomentum;
  w.integer(contents);
  if (state != nullptr) {
    w.binary32(state->options.learning_rate);
    w.binary32(state->options.momentum);
    w.binary32(state->options.weight_decay);
    w.integer(state->options.accumulation_steps);
    w.integer(state->updates);
    w.integer(progress->epochs_done);
    w.integer(progress->order_seed);
    w.integer(progress->order_draws);
    w.binary32(progress->base_learning_rate);
    w.binary32(progress->learning_rate_decay);
  }
  for (const Parameter& p : parameters) {
    for (float v : p.values) w.binary32(v);
  }
  if (state != nullptr) {
    for (float v : state->velocity) w.binary32(v);
  }
  w.integer(fnv1a64(w.buffer().data(), w.buffer().size()));
  return std::move(w.buffer());
}

void write_atomically(const std::vector<uint8_t>& bytes, const std::filesystem::path& path) {
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

// A verified file, decoded but applied to nothing yet.
struct Decoded {
  uint32_t version = 0;
  std::vector<std::string> kinds;
  std::vector<StagedParameter> parameters;
  std::vector<float> values;
  bool has_state = false;
  SgdState state;
  TrainingProgress progress;
};

Decoded decode(std::span<const uint8_t> data, const std::filesystem::path& path) {
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
  Decoded d;
  Reader r(data, data.size(), path);
  r.take(sizeof(kCheckpointMagic), "magic");
  d.version = r.integer<uint32_t>("version");
  if (d.version != 1 && d.version != kCheckpointVersion) {
    std::string message = quoted(path);
    message += "unsupported version ";
    message += std::to_string(d.version);
    message += " (this build reads versions 1 and ";
    message += std::to_string(kCheckpointVersion);
    message += ")";
    throw std::runtime_error(message);
  }
  const uint32_t layer_count = r.integer<uint32_t>("layer count");
  if (layer_count > data.size()) r.corrupt("layer count", layer_count);
  for (uint32_t i = 0; i < layer_count; ++i) d.kinds.push_back(r.string("layer kind"));
  const uint32_t parameter_count = r.integer<uint32_t>("parameter count");
  if (parameter_count > data.size()) r.corrupt("parameter count", parameter_count);
  uint64_t counted_values = 0;
  for (uint32_t i = 0; i < parameter_count; ++i) {
    StagedParameter p;
    p.name = r.string("parameter name");
    const uint32_t rank = r.integer<uint32_t>("parameter rank");
    if (rank > kMaxRank) r.corrupt("parameter rank", rank);
    uint64_t elements = 1;
    for (uint32_t dim_index = 0; dim_index < rank; ++dim_index) {
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
    d.parameters.push_back(std::move(p));
  }
  const uint64_t value_count = r.integer<uint64_t>("value count");
  if (value_count != counted_values) r.corrupt("value count", value_count);
  uint32_t contents = 0;
  if (d.version >= 2) {
    contents = r.integer<uint32_t>("contents");
    if ((contents & ~kKnownContents) != 0 ||
        ((contents & kHasMomentum) != 0 && (contents & kHasTrainingState) == 0)) {
      r.corrupt("contents", contents);
    }
  }
  d.has_state = (contents & kHasTrainingState) != 0;
  if (d.has_state) {
    d.state.options.learning_rate = r.binary32("learning rate");
    d.state.options.momentum = r.binary32("momentum");
    d.state.options.weight_decay = r.binary32("weight decay");
    d.state.options.accumulation_steps = r.integer<int64_t>("accumulation steps");
    d.state.updates = r.integer<int64_t>("updates");
    d.progress.epochs_done = r.integer<int64_t>("epochs done");
    d.progress.order_seed = r.integer<uint64_t>("order seed");
    d.progress.order_draws = r.integer<uint64_t>("order draws");
    d.progress.base_learning_rate = r.binary32("base learning rate");
    d.progress.learning_rate_decay = r.binary32("learning rate decay");
  }
  const uint64_t arrays = (contents & kHasMomentum) != 0 ? 2 : 1;
  // Sizes come from the header alone; nothing proportional to them is allocated before the file
  // is known to be exactly that long.
  uint64_t expected_size = 0;
  if (__builtin_mul_overflow(value_count, uint64_t{sizeof(float)} * arrays, &expected_size) ||
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
  d.values.resize(value_count);
  for (float& v : d.values) v = r.binary32("values");
  if ((contents & kHasMomentum) != 0) {
    d.state.velocity.resize(value_count);
    for (float& v : d.state.velocity) v = r.binary32("momentum buffers");
  }
  return d;
}

// 2. Architecture: the same layers and the same parameters, names and shapes, in order.
void check_architecture(Sequential& model, const Decoded& d, const std::filesystem::path& path) {
  if (d.kinds.size() != uint64_t(model.size())) {
    std::string what = "it has ";
    what += std::to_string(d.kinds.size());
    what += " layers, the model ";
    what += std::to_string(model.size());
    fail_mismatch(path, what);
  }
  for (std::size_t i = 0; i < d.kinds.size(); ++i) {
    if (d.kinds[i] != model.layer(int64_t(i)).kind()) {
      std::string what = "layer ";
      what += std::to_string(i);
      what += " is ";
      what += d.kinds[i];
      what += " in the file, ";
      what += model.layer(int64_t(i)).kind();
      what += " in the model";
      fail_mismatch(path, what);
    }
  }
  const std::vector<Parameter> parameters = model.parameters();
  if (parameters.size() != d.parameters.size()) {
    std::string what = "it has ";
    what += std::to_string(d.parameters.size());
    what += " parameters, the model ";
    what += std::to_string(parameters.size());
    fail_mismatch(path, what);
  }
  for (std::size_t i = 0; i < d.parameters.size(); ++i) {
    const StagedParameter& staged = d.parameters[i];
    if (staged.name != parameters[i].name || staged.shape != parameters[i].shape) {
      std::string what = "parameter ";
      what += std::to_string(i);
      what += " is ";
      what += staged.name;
      what += " ";
      what += shape_to_string(staged.shape);
      what += " in the file, ";
      what += parameters[i].name;
      what += " ";
      what += shape_to_string(parameters[i].shape);
      what += " in the model";
      fail_mismatch(path, what);
    }
  }
}

void copy_values(Sequential& model, const std::vector<float>& values) {
  auto next = values.begin();
  for (const Parameter& p : model.parameters()) {
    std::copy(next, next + static_cast<std::ptrdiff_t>(p.values.size()), p.values.begin());
    next += static_cast<std::ptrdiff_t>(p.values.size());
  }
}

void require_same_parameters(Sequential& model, const Sgd& sgd, const char* where) {
  const std::vector<Parameter> mine = model.parameters();
  const std::vector<Parameter>& held = sgd.parameters();
  bool same = held.size() == mine.size();
  for (std::size_t i = 0; same && i < held.size(); ++i) {
    same = held[i].values.data() == mine[i].values.data() &&
           held[i].values.size() == mine[i].values.size();
  }
  if (!same) {
    throw std::invalid_argument(std::string("convgemm: ") + where +
                                ": sgd must hold the model's parameters");
  }
}

}  // namespace

std::vector<uint8_t> read_checkpoint_bytes(const std::filesystem::path& path) {
  return read_file_bytes(path);
}

void save_checkpoint(Sequential& model, const std::filesystem::path& path) {
  write_atomically(encode(model, nullptr, nullptr), path);
}

void save_checkpoint(Sequential& model, const Sgd& sgd, const TrainingProgress& progress,
                     const std::filesystem::path& path) {
  require_same_parameters(model, sgd, "save_checkpoint");
  if (progress.epochs_done < 0) {
    throw std::invalid_argument(
        "convgemm: save_checkpoint progress.epochs_done must be >= 0 (got " +
        std::to_string(progress.epochs_done) + ")");
  }
  const SgdState state = sgd.state();  // throws while micro-batches are pending
  write_atomically(encode(model, &state, &progress), path);
}

void load_checkpoint(Sequential& model, const std::filesystem::path& path) {
  const std::vector<uint8_t> data = read_file_bytes(path);
  const Decoded d = decode(data, path);
  check_architecture(model, d, path);
  // 3. Only now, with every check passed, does the model change.
  copy_values(model, d.values);
}

TrainingProgress load_checkpoint(Sequential& model, Sgd& sgd, const std::filesystem::path& path) {
  const std::vector<uint8_t> data = read_file_bytes(path);
  return load_checkpoint(model, sgd, data, path);
}

TrainingProgress load_checkpoint(Sequential& model, Sgd& sgd, std::span<const uint8_t> bytes,
                                 const std::filesystem::path& name) {
  const Decoded d = decode(bytes, name);
  if (!d.has_state) {
    std::string message = quoted(name);
    message += d.version == 1 ? "version 1 holds parameters only, no optimizer state: it can "
                                "initialise a model but not resume training exactly"
                              : "holds parameters only, no optimizer state (saved without an "
                                "Sgd): it cannot resume training exactly";
    throw std::runtime_error(message);
  }
  check_architecture(model, d, name);
  require_same_parameters(model, sgd, "load_checkpoint");
  // Sgd::restore checks everything before it changes anything; the values' copy cannot fail.
  sgd.restore(d.state);
  copy_values(model, d.values);
  return d.progress;
}

}  // namespace convgemm::nn
