#pragma once
// Data-parallel training over MPI whose weights are bitwise independent of the number of ranks.
//
// A float sum's bits depend on its order, so "sum the gradients across ranks" (an MPI_Allreduce)
// gives other weights on 2 ranks than on 1. Instead the step is defined on fixed-size chunks:
//
//   global batch B (images per SGD step, all ranks together) = chunks x chunk_size c
//   rule: B divisible by R x c (R ranks), so every rank owns B / (R c) consecutive chunks
//   chunk j's gradient g_j: zero the gradients, forward + backward on chunk j's c images alone
//   every rank gathers every g_j (one MPI_Allgather of fused per-chunk slots) and adds them in
//   chunk order, g = ((g_0 + g_1) + g_2) + ...; then one Sgd update with g / chunks (an Sgd whose
//   accumulation_steps is chunks(), i.e. the gradient of the mean loss over the B images)
//
// Which rank computed g_j never changes its bits (the engine's conv passes and Dense's GEMMs do
// not depend on thread counts), and the combination is the same on every rank and for every R,
// so R = 1, 2, 4, ... end with the same weights as the 1-process run of the same rule.
//
// Cost: each step moves chunks x (parameters + 4) floats to every rank instead of an allreduce's
// ~2 x parameters, holds all of them in memory, and repeats the (chunks - 1) x parameters additions
// on every rank; chunks of c images also run smaller GEMMs than one batch of B / R would.
//
// Collective calls (the constructor, step(), broadcast_parameters()) must be made by every rank
// of the communicator in the same order, from the thread that initialised MPI.
//
// Example (every rank runs the same code; images and labels are this rank's local_batch()):
//   nn::Sequential model = nn::make_small_cnn(28, 6);
//   model.initialize(/*seed=*/1);
//   distributed::GradientSynchronizer sync(model, {.global_batch = 32, .chunk_size = 8,
//                                                  .image_shape = {1, 28, 28}});
//   nn::Sgd sgd(model.parameters(), sync.sgd_options({.learning_rate = 0.02f, .momentum = 0.9f}));
//   distributed::StepResult r = sync.step(images, labels, sgd);  // r.mean_loss() on every rank

#include <mpi.h>  // the component exists to speak MPI; it links MPI::MPI_CXX publicly

#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "convgemm/nn/loss.hpp"
#include "convgemm/nn/parameter.hpp"
#include "convgemm/nn/sequential.hpp"
#include "convgemm/nn/sgd.hpp"
#include "convgemm/nn/tensor.hpp"

namespace convgemm::distributed {

// Raised by a collective check with the same message on every rank of the communicator, so the
// job can report it on each rank and end without MPI_Abort (run_or_abort() does).
class CollectiveError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

struct SynchronizerOptions {
  int64_t global_batch = 32;         // images per SGD step over all ranks, >= 1
  int64_t chunk_size = 8;            // images per gradient chunk, >= 1; see the rule above
  std::vector<int64_t> image_shape;  // one input image, [channels, height, width]
};

struct StepResult {
  double loss_sum = 0.0;  // sum of the per-image losses of the global batch, in chunk order
  int64_t correct = 0;    // images of the global batch whose largest logit is their label
  int64_t images = 0;     // the global batch
  double mean_loss() const { return images > 0 ? loss_sum / double(images) : 0.0; }
};

class GradientSynchronizer {
 public:
  // Collective. Gathers a fingerprint of every rank (parameter count, names and shapes, options)
  // with one MPI_Allgather and throws CollectiveError on every rank, naming the field and the
  // ranks' values, when they disagree or when rank 0's options break a rule (global_batch and
  // chunk_size >= 1, global_batch divisible by ranks x chunk_size, image_shape of rank 3 that the
  // model accepts, message sizes within MPI's int counts). Then broadcasts rank 0's parameter
  // values to every rank. `model` must outlive the synchroniser and keep its layers.
  GradientSynchronizer(nn::Sequential& model, const SynchronizerOptions& options,
                       MPI_Comm comm = MPI_COMM_WORLD);

  int rank() const { return rank_; }
  int ranks() const { return ranks_; }
  MPI_Comm communicator() const { return comm_; }
  nn::Sequential& model() { return *model_; }
  const SynchronizerOptions& options() const { return options_; }
  int64_t chunks() const { return options_.global_batch / options_.chunk_size; }
  int64_t chunks_per_rank() const { return chunks() / ranks_; }
  // This rank's images per step, and the position of the first in the global batch.
  int64_t local_batch() const { return chunks_per_rank() * options_.chunk_size; }
  int64_t local_offset() const { return rank_ * local_batch(); }
  int64_t parameter_count() const { return parameter_count_; }

  // `base` with accumulation_steps = chunks(): the Sgd that step() needs.
  nn::SgdOptions sgd_options(nn::SgdOptions base) const;

  // Collective. images [local_batch(), C, H, W] (image_shape), labels local_batch() entries:
  // this rank's chunks of the global batch, in order. Leaves in every parameter gradient the
  // chunk-ordered sum over all chunks of all ranks (overwriting what was there) and returns the
  // global metrics, the same on every rank. Throws std::invalid_argument (on this rank only) on
  // a wrong images or labels size; errors of the layers propagate.
  StepResult compute_gradients(const nn::Tensor& images, std::span<const int32_t> labels);

  // compute_gradients(), then one update of `sgd` with the gradient divided by chunks(). sgd must
  // hold this model's parameters, accumulation_steps == chunks() and no pending micro-batches
  // (std::invalid_argument naming the option otherwise).
  StepResult step(const nn::Tensor& images, std::span<const int32_t> labels, nn::Sgd& sgd);

  // Collective: every rank's parameter values become rank 0's (one MPI_Bcast of a fused buffer).
  void broadcast_parameters();

 private:
  void check_consistent_across_ranks();

  nn::Sequential* model_;
  SynchronizerOptions options_;
  MPI_Comm comm_;
  int rank_ = 0, ranks_ = 1;
  std::vector<nn::Parameter> parameters_;
  int64_t parameter_count_ = 0;
  int64_t slot_floats_ = 0;         // one chunk's slot: kMetricFloats, then the gradients
  std::vector<float> local_slots_;  // chunks_per_rank() slots, this rank's chunks
  std::vector<float> all_slots_;    // chunks() slots, every chunk in chunk order
  std::vector<float> combined_;     // the chunk-ordered sum of the gradients
  nn::Tensor chunk_images_, dlogits_;
  std::vector<int32_t> predicted_;
  nn::SoftmaxCrossEntropy loss_;
};

// Collective: element-wise sum over the ranks of `values`, in place, in one MPI_Allreduce. Exact
// (hence independent of R) for integer-valued entries below 2^53, such as counts of images.
void sum_over_ranks(std::span<double> values, MPI_Comm comm = MPI_COMM_WORLD);

}  // namespace convgemm::distributed
