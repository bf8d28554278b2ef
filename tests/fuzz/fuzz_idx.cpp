// libFuzzer target: read_idx on arbitrary bytes either returns an array whose data size is the
// product of its dimensions or throws std::runtime_error; it never reads or allocates past what
// the file holds.
#include <cstdint>
#include <cstdio>
#include <stdexcept>

#include "convgemm/nn/data.hpp"
#include "file_fuzzing.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  convgemm::nn::IdxArray array;
  try {
    array = convgemm::nn::read_idx(convgemm::fuzz::scratch_file({data, size}, "idx"));
  } catch (const std::runtime_error&) {
    return 0;
  }
  uint64_t elements = 1;
  for (const int64_t d : array.dims) {
    if (d < 1 || __builtin_mul_overflow(elements, uint64_t(d), &elements)) __builtin_trap();
  }
  if (elements != array.data.size() || array.data.size() > size) {
    std::fprintf(stderr, "MISMATCH: %zu data bytes for dimensions of %llu elements\n",
                 array.data.size(), static_cast<unsigned long long>(elements));
    __builtin_trap();
  }
  return 0;
}
