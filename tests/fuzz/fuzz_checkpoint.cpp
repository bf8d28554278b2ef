// libFuzzer target: load_checkpoint on arbitrary bytes either loads a valid checkpoint or throws
// std::runtime_error (not a checkpoint) or std::invalid_argument (another architecture), and then
// leaves every bit of the model as it was.
//
// Random bytes almost never carry a valid checksum, which would keep the fuzzer at the first
// check. So the first input byte is a switch: when it is odd, the file is the rest of the input
// with its last 8 bytes replaced by the right FNV-1a checksum, and the parser behind it is
// reached too. When bit 1 of that byte is set, the file is loaded with an Sgd as for resuming
// (version 2's training state), and the Sgd's state must be unchanged on refusal too.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "convgemm/nn/checkpoint.hpp"
#include "convgemm/nn/sequential.hpp"
#include "convgemm/nn/sgd.hpp"
#include "convgemm/nn/training.hpp"
#include "file_fuzzing.hpp"

namespace {

std::vector<float> values(convgemm::nn::Sequential& model) {
  std::vector<float> all;
  for (const convgemm::nn::Parameter& p : model.parameters()) {
    all.insert(all.end(), p.values.begin(), p.values.end());
  }
  return all;
}

void set_values(convgemm::nn::Sequential& model, const std::vector<float>& all) {
  std::size_t next = 0;
  for (convgemm::nn::Parameter& p : model.parameters()) {
    for (float& v : p.values) v = all[next++];
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  std::vector<uint8_t> file(data + 1, data + size);
  if ((data[0] & 1) && file.size() >= 8) {
    const uint64_t checksum = convgemm::nn::fnv1a64(file.data(), file.size() - 8);
    for (int i = 0; i < 8; ++i)
      file[file.size() - 8 + std::size_t(i)] = uint8_t(checksum >> (8 * i));
  }
  // make_small_cnn(16, 3, 2, 3) initialized from seed 1: the seed corpus holds its checkpoint
  // and one of a wider variant (c1 = 3), each as save_checkpoint wrote it behind a 0x01 byte.
  static convgemm::nn::Sequential model = [] {
    convgemm::nn::Sequential m = convgemm::nn::make_small_cnn(16, 3, 2, 3);
    m.initialize(1);
    return m;
  }();
  // Momentum 0.9 as in the seed corpus's version-2 files.
  static convgemm::nn::Sgd sgd(model.parameters(), {.learning_rate = 0.01f, .momentum = 0.9f});
  const std::vector<float> before = values(model);
  const convgemm::nn::SgdState sgd_before = sgd.state();
  const bool with_sgd = (data[0] & 2) != 0;
  bool loaded = true;
  try {
    const auto path = convgemm::fuzz::scratch_file(file, "checkpoint");
    if (with_sgd) {
      convgemm::nn::load_checkpoint(model, sgd, path);
    } else {
      convgemm::nn::load_checkpoint(model, path);
    }
  } catch (const std::runtime_error&) {
    loaded = false;
  } catch (const std::invalid_argument&) {
    loaded = false;
  }
  const std::vector<float> after = values(model);
  if (!loaded && (after.size() != before.size() ||
                  std::memcmp(after.data(), before.data(), after.size() * sizeof(float)) != 0)) {
    std::fprintf(stderr, "MISMATCH: a refused checkpoint changed the model\n");
    __builtin_trap();
  }
  const convgemm::nn::SgdState sgd_after = sgd.state();
  if (!loaded && (sgd_after.updates != sgd_before.updates ||
                  sgd_after.options.learning_rate != sgd_before.options.learning_rate ||
                  std::memcmp(sgd_after.velocity.data(), sgd_before.velocity.data(),
                              sgd_before.velocity.size() * sizeof(float)) != 0)) {
    std::fprintf(stderr, "MISMATCH: a refused checkpoint changed the Sgd\n");
    __builtin_trap();
  }
  if (loaded) {  // the next input starts from the same model and Sgd
    set_values(model, before);
    sgd.restore(sgd_before);
  }
  return 0;
}
