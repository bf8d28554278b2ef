#pragma once
// Data-parallel training over MPI whose weights are bitwise independent of the number of ranks.
//
// A float sum's bits depend on its order, so "sum the gradients across ranks" (an MPI_Allreduce)
// gives other weights on 2 ranks than on 1. Instead the step is defined on fixed-size chunks:
//
//   global batch B (images per SGD step, all ranks together) = chunks x chunk_size c
//   chunk j's gradient g_j: zero the gradients, forward + backward on chunk j's c images alone
//   g = tree(0, chunks), the pairwise tree of exchange.hpp over g_0 ... g_{chunks-1}:
//       tree(lo, 1) = g_lo,  tree(lo, n) = tree(lo, ceil(n/2)) + tree(lo + ceil(n/2), floor(n/2))
//   then one Sgd update with g / chunks (an Sgd whose accumulation_steps is chunks(), i.e. the
//   gradient of the mean loss over the B images). The loss sum and correct count of the step
//   are summed in double along the same tree.
//
// The rule on R ranks (refused by name on every rank otherwise, CollectiveError):
//   R is a power of two (1, 2, 4, 8, ...) and B is divisible by R x c (chunks divisible by R).
// Then the tree's top log2(R) levels halve exactly and rank r's consecutive chunks
// [r chunks/R, (r+1) chunks/R) form one subtree: each rank sums its own chunks along the tree
// (keeping one buffer per tree level, not one per chunk), and tree_allreduce() combines the R
// subtree sums along the top levels, a reduce-scatter then an allgather.
//
// Which rank computed g_j never changes its bits (the engine's conv passes and Dense's GEMMs do
// not depend on thread counts), and every addition of the tree is the same on every rank and for
// every such R, so R = 1, 2, 4, 8 end with the same weights as the 1-process run of the rule.
//
// Overlap: only the rank's last chunk holds up the exchange, and its backward produces the
// gradient layer by layer, last layer first. So as soon as a bucket of layers (consecutive, about
// bucket_bytes of gradient, the last layers first) is done, the rank finishes that bucket's part
// of its subtree sum (the tree's additions are elementwise) and starts its TreeAllreduce, which
// then moves on between the remaining layers' backward passes while they compute. The bucket
// cut changes no bit: every element goes through the same additions in the same order.
//
// Cost per step and rank: 2 (1 - 1/R) x (parameters + 2 doubles) sent and as many received,
// whatever the number of chunks (last_traffic()); (1 - 1/R) x parameters additions for the
// exchange; chunks of c images run smaller GEMMs than one batch of B / R would.
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

#include <array>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <vector>

#include "convgemm/distributed/collective_error.hpp"
#include "convgemm/distributed/exchange.hpp"
#include "convgemm/nn/loss.hpp"
#include "convgemm/nn/parameter.hpp"
#include "convgemm/nn/sequential.hpp"
#include "convgemm/nn/sgd.hpp"
#include "convgemm/nn/tensor.hpp"

namespace convgemm::distributed {

struct SynchronizerOptions {
  int64_t global_batch = 32;         // images per SGD step over all ranks, >= 1
  int64_t chunk_size = 8;            // images per gradient chunk, >= 1; see the rule above
  std::vector<int64_t> image_shape;  // one input image, [channels, height, width]
  // The gradient is exchanged in buckets of whole layers, each at least this many bytes (or the
  // rest), started as the last chunk's backward finishes them; >= 1, the same on every rank. A
  // value of at least the gradient's size exchanges it all after backward, without overlap.
  int64_t bucket_bytes = int64_t{4} << 20;
};

struct StepResult {
  double loss_sum = 0.0;  // sum of the per-image losses of the global batch, along the tree
  int64_t correct = 0;    // images of the global batch whose largest logit is their label
  int64_t images = 0;     // the global batch
  double mean_loss() const { return images > 0 ? loss_sum / double(images) : 0.0; }
};

class GradientSynchronizer {
 public:
  // Collective. Gathers a fingerprint of every rank (parameter count, names and shapes, options)
  // with one MPI_Allgather and throws CollectiveError on every rank, naming the field and the
  // ranks' values, when they disagree or when rank 0's options break a rule (global_batch and
  // chunk_size >= 1, ranks a power of two, global_batch divisible by ranks x chunk_size,
  // image_shape of rank 3 that the model accepts, bucket_bytes >= 1 and at most 32766 buckets).
  // Then broadcasts rank 0's parameter
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
  // How many exchanges a step runs (the buckets of bucket_bytes).
  int64_t bucket_count() const { return static_cast<int64_t>(buckets_.size()); }

  // `base` with accumulation_steps = chunks(): the Sgd that step() needs.
  nn::SgdOptions sgd_options(nn::SgdOptions base) const;

  // Collective. images [local_batch(), C, H, W] (image_shape), labels local_batch() entries:
  // this rank's chunks of the global batch, in order. Leaves in every parameter gradient the
  // tree sum over all chunks of all ranks (overwriting what was there) and returns the
  // global metrics, the same on every rank. Throws std::invalid_argument (on this rank only) on
  // a wrong images or labels size; errors of the layers propagate.
  StepResult compute_gradients(const nn::Tensor& images, std::span<const int32_t> labels);

  // compute_gradients(), then one update of `sgd` with the gradient divided by chunks(). sgd must
  // hold this model's parameters, accumulation_steps == chunks() and no pending micro-batches
  // (std::invalid_argument naming the option otherwise).
  StepResult step(const nn::Tensor& images, std::span<const int32_t> labels, nn::Sgd& sgd);

  // Collective: every rank's parameter values become rank 0's (MPI_Bcast of a fused buffer, in
  // pieces).
  void broadcast_parameters();

  // What the last compute_gradients() sent and received on this rank.
  const ExchangeTraffic& last_traffic() const { return last_traffic_; }

 private:
  void check_consistent_across_ranks();
  // Leaves tree(first, n) of this rank's chunks (local indices) in level_gradients_[depth] and
  // its metrics in level_metrics_[depth], computing each chunk when the tree's post-order, which
  // visits the chunks in index order, reaches it.
  void sum_chunks(const nn::Tensor& images, std::span<const int32_t> labels, int64_t first,
                  int64_t n, std::size_t depth);
  void compute_chunk(const nn::Tensor& images, std::span<const int32_t> labels, int64_t index,
                     std::size_t depth);
  // The additions of the tree's right spine (the nodes above the last chunk, at depths
  // last_depth - 1 down to 0), on the elements [begin, end): level 0 then holds the rank's
  // subtree sum there.
  void add_spine(std::size_t last_depth, int64_t begin, int64_t end);
  void plan_buckets();

  // A bucket: the gradient elements [begin, end) of layers first_layer and up, started when the
  // last chunk's backward has done first_layer.
  struct Bucket {
    int64_t begin = 0, end = 0;
    int64_t first_layer = 0;
  };

  nn::Sequential* model_;
  SynchronizerOptions options_;
  MPI_Comm comm_;
  int rank_ = 0, ranks_ = 1;
  std::vector<nn::Parameter> parameters_;
  int64_t parameter_count_ = 0;
  // One per level of the local tree (ceil(log2(chunks_per_rank())) + 1): a node's gradient sum
  // and its metrics {loss sum, correct count}; level 0 ends up with the rank's subtree sum.
  std::vector<std::vector<float>> level_gradients_;
  std::vector<std::array<double, 2>> level_metrics_;
  // Per layer: its parameters and where their gradients start in the fused vector.
  std::vector<std::vector<nn::Parameter>> layer_parameters_;
  std::vector<int64_t> layer_offsets_;
  std::vector<Bucket> buckets_;  // last layers first
  std::vector<TreeAllreduce<float>> bucket_exchanges_;
  TreeAllreduce<double> metrics_exchange_;
  std::vector<float> fused_values_;  // broadcast_parameters()'s buffer
  ExchangeTraffic last_traffic_;
  nn::Tensor chunk_images_, dlogits_;
  std::vector<int32_t> predicted_;
  nn::SoftmaxCrossEntropy loss_;
};

// Collective: element-wise sum over the ranks of `values`, in place, in one MPI_Allreduce. Exact
// (hence independent of R) for integer-valued entries below 2^53, such as counts of images.
void sum_over_ranks(std::span<double> values, MPI_Comm comm = MPI_COMM_WORLD);

}  // namespace convgemm::distributed
