// IDX files (data.hpp): the container of the MNIST distribution.
#include <cerrno>
#include <cstring>
#include <fstream>
#include <stdexcept>
#include <string>

#include "check.hpp"
#include "convgemm/nn/data.hpp"

namespace convgemm::nn {
namespace {

constexpr uint8_t kUnsignedByte = 0x08;

[[noreturn]] void fail_file(const std::filesystem::path& path, const std::string& problem) {
  std::string message = "convgemm: IDX file '";
  message += path.string();
  message += "': ";
  message += problem;
  throw std::runtime_error(message);
}

uint32_t big_endian32(const uint8_t* p) {
  return uint32_t{p[0]} << 24 | uint32_t{p[1]} << 16 | uint32_t{p[2]} << 8 | uint32_t{p[3]};
}

std::string hex32(uint32_t value) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string text = "0x";
  for (int shift = 28; shift >= 0; shift -= 4) text += kDigits[(value >> shift) & 0xf];
  return text;
}

}  // namespace

IdxArray read_idx(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail_file(path, std::string("cannot open: ") + std::strerror(errno));
  const std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                                   std::istreambuf_iterator<char>());
  if (in.bad()) fail_file(path, "read error");
  if (bytes.size() >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b) {
    fail_file(path, "is gzip-compressed; decompress it first (gunzip)");
  }
  if (bytes.size() < 4) {
    std::string problem = "truncated: ";
    problem += std::to_string(bytes.size());
    problem += " bytes, too short for the 4-byte magic";
    fail_file(path, problem);
  }
  const uint32_t magic = big_endian32(bytes.data());
  if (bytes[0] != 0 || bytes[1] != 0 || bytes[3] == 0) {
    std::string problem = "bad magic ";
    problem += hex32(magic);
    problem += " (expected 0x000008NN, NN = number of dimensions)";
    fail_file(path, problem);
  }
  if (bytes[2] != kUnsignedByte) {
    std::string problem = "element type ";
    problem += hex32(bytes[2]);
    problem += " is not unsigned byte (0x08), the only one supported";
    fail_file(path, problem);
  }
  const std::size_t rank = bytes[3];
  const std::size_t header = 4 + 4 * rank;
  if (bytes.size() < header) {
    std::string problem = "truncated: the header of ";
    problem += std::to_string(rank);
    problem += " dimensions needs ";
    problem += std::to_string(header);
    problem += " bytes, the file has ";
    problem += std::to_string(bytes.size());
    fail_file(path, problem);
  }
  IdxArray array;
  uint64_t count = 1;
  for (std::size_t d = 0; d < rank; ++d) {
    const uint32_t dim = big_endian32(bytes.data() + 4 + 4 * d);
    if (dim == 0) {
      std::string problem = "dimension ";
      problem += std::to_string(d);
      problem += " is 0";
      fail_file(path, problem);
    }
    array.dims.push_back(dim);
    if (__builtin_mul_overflow(count, uint64_t{dim}, &count)) fail_file(path, "size overflows");
  }
  const uint64_t data_bytes = bytes.size() - header;
  if (data_bytes != count) {
    std::string problem = data_bytes < count ? "truncated: " : "trailing bytes: ";
    problem += "the dimensions ";
    problem += shape_to_string(array.dims);
    problem += " need ";
    problem += std::to_string(count);
    problem += " data bytes, the file has ";
    problem += std::to_string(data_bytes);
    fail_file(path, problem);
  }
  array.data.assign(bytes.begin() + static_cast<std::ptrdiff_t>(header), bytes.end());
  return array;
}

void write_idx(const std::filesystem::path& path, std::span<const int64_t> dims,
               std::span<const uint8_t> data) {
  if (dims.empty() || dims.size() > 255) {
    detail::fail("dims.size()", static_cast<int64_t>(dims.size()), "must be in [1, 255]");
  }
  for (int64_t d : dims) {
    if (d < 1 || d > int64_t{UINT32_MAX}) detail::fail("dimension", d, "must be in [1, 2^32)");
  }
  const int64_t count = element_count(dims, "IDX dims");
  if (count != static_cast<int64_t>(data.size())) {
    std::string rule = "must equal the product of the dimensions (";
    rule += std::to_string(count);
    rule += ")";
    detail::fail("data.size()", static_cast<int64_t>(data.size()), rule);
  }
  std::vector<uint8_t> bytes = {0, 0, kUnsignedByte, static_cast<uint8_t>(dims.size())};
  for (int64_t d : dims) {
    for (int shift = 24; shift >= 0; shift -= 8) bytes.push_back(uint8_t(uint64_t(d) >> shift));
  }
  bytes.insert(bytes.end(), data.begin(), data.end());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
  out.close();
  if (!out) fail_file(path, std::string("write failed: ") + std::strerror(errno));
}

Dataset load_mnist(const std::filesystem::path& images_path,
                   const std::filesystem::path& labels_path) {
  const IdxArray images = read_idx(images_path);
  const IdxArray labels = read_idx(labels_path);
  if (images.dims.size() != 3) {
    fail_file(images_path, "images need 3 dimensions [count, rows, cols], the file has " +
                               shape_to_string(images.dims));
  }
  if (labels.dims.size() != 1) {
    fail_file(labels_path,
              "labels need 1 dimension [count], the file has " + shape_to_string(labels.dims));
  }
  if (images.dims[0] != labels.dims[0]) {
    std::string problem = "has ";
    problem += std::to_string(labels.dims[0]);
    problem += " labels for ";
    problem += std::to_string(images.dims[0]);
    problem += " images in '";
    problem += images_path.string();
    problem += "'";
    fail_file(labels_path, problem);
  }
  Dataset data;
  data.channels = 1;
  data.height = images.dims[1];
  data.width = images.dims[2];
  data.classes = 10;
  data.images.resize(images.data.size());
  for (std::size_t i = 0; i < images.data.size(); ++i) data.images[i] = images.data[i] / 255.0f;
  data.labels.resize(labels.data.size());
  for (std::size_t i = 0; i < labels.data.size(); ++i) {
    if (labels.data[i] >= 10) {
      std::string problem = "label ";
      problem += std::to_string(i);
      problem += " is ";
      problem += std::to_string(labels.data[i]);
      problem += ", not a digit 0-9";
      fail_file(labels_path, problem);
    }
    data.labels[i] = labels.data[i];
  }
  return data;
}

}  // namespace convgemm::nn
