#pragma once
// Stochastic gradient descent with optional momentum, weight decay and gradient accumulation,
// PyTorch's update rule:
//   g = (sum of the k accumulated micro-batch gradients) / k + weight_decay * w
//   v = momentum * v + g          (v starts at 0; skipped when momentum is 0, then v = g)
//   w = w - learning_rate * v
// Each micro-batch's loss is a mean over its images, so with k equal micro-batches g is the
// gradient of the mean loss over all k*batch images: k accumulated steps equal one full step.

#include <cstdint>
#include <vector>

#include "convgemm/nn/parameter.hpp"

namespace convgemm::nn {

struct SgdOptions {
  float learning_rate = 0.01f;
  float momentum = 0.0f;           // in [0, 1)
  float weight_decay = 0.0f;       // L2 coefficient, >= 0
  int64_t accumulation_steps = 1;  // k micro-batches per update, >= 1
};

// What a checkpoint needs to continue an Sgd exactly: its options, the number of updates applied
// so far and the momentum buffers, fused in parameter order (empty without momentum).
struct SgdState {
  SgdOptions options;
  int64_t updates = 0;
  std::vector<float> velocity;
};

class Sgd {
 public:
  // Allocates the momentum buffers (one per parameter, zero). Throws std::invalid_argument
  // naming the option and value: learning_rate not finite and > 0, momentum outside [0, 1),
  // weight_decay negative or not finite, accumulation_steps below 1.
  Sgd(std::vector<Parameter> parameters, const SgdOptions& options);

  // Call once per micro-batch, after its backward. Every accumulation_steps-th call applies the
  // update above and zeros the gradients; returns whether it did.
  bool step();
  // Applies an update from the micro-batches accumulated so far (g divided by their count), e.g.
  // at the end of an epoch that is not a multiple of k; returns false when there were none.
  bool flush();
  void zero_grad();

  int64_t pending_micro_batches() const { return pending_; }
  // Updates applied since construction (or since the restored state's count).
  int64_t updates() const { return updates_; }

  // The state to checkpoint. Throws std::invalid_argument when micro-batches are pending (their
  // gradients would be lost: save after an update or flush()).
  SgdState state() const;
  // Continues from `saved`: its learning rate, update count and momentum buffers. Throws
  // std::invalid_argument naming the field, and changes nothing, when saved's momentum,
  // weight_decay or accumulation_steps differ from this Sgd's, its learning rate is invalid, its
  // velocity size is not this Sgd's parameters' total (0 without momentum) or its updates < 0.
  void restore(const SgdState& saved);
  const SgdOptions& options() const { return options_; }
  void set_learning_rate(float learning_rate);
  const std::vector<Parameter>& parameters() const { return parameters_; }

 private:
  void apply(int64_t micro_batches);

  std::vector<Parameter> parameters_;
  SgdOptions options_;
  std::vector<std::vector<float>> velocity_;  // one per parameter, empty without momentum
  int64_t pending_ = 0;
  int64_t updates_ = 0;
};

}  // namespace convgemm::nn
