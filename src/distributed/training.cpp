#include "convgemm/distributed/training.hpp"

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "check.hpp"
#include "convgemm/nn/checkpoint.hpp"
#include "convgemm/nn/loss.hpp"

namespace convgemm::distributed {
namespace {

[[noreturn]] void collective_fail(const std::string& message) {
  throw CollectiveError("convgemm: " + message);
}

// Gathers every rank's `mine` (same length everywhere) and throws CollectiveError on every rank
// at the first field where a rank differs from rank 0.
void require_same_on_every_rank(std::span<const int64_t> mine, std::span<const char* const> names,
                                const char* rule, MPI_Comm comm) {
  int rank = 0, ranks = 1;
  detail::check_mpi(MPI_Comm_rank(comm, &rank), "MPI_Comm_rank");
  detail::check_mpi(MPI_Comm_size(comm, &ranks), "MPI_Comm_size");
  const auto fields = static_cast<int>(mine.size());
  std::vector<int64_t> all(static_cast<std::size_t>(ranks) * mine.size());
  detail::check_mpi(
      MPI_Allgather(mine.data(), fields, MPI_INT64_T, all.data(), fields, MPI_INT64_T, comm),
      "MPI_Allgather");
  for (int field = 0; field < fields; ++field) {
    for (int r = 1; r < ranks; ++r) {
      const int64_t theirs = all[std::size_t(r) * mine.size() + std::size_t(field)];
      const int64_t reference = all[std::size_t(field)];
      if (theirs == reference) continue;
      std::string message = "ranks disagree on ";
      message += names[std::size_t(field)];
      message += ": rank ";
      message += std::to_string(r);
      message += " has ";
      message += std::to_string(theirs);
      message += " but rank 0 has ";
      message += std::to_string(reference);
      message += " (";
      message += rule;
      message += ")";
      collective_fail(message);
    }
  }
}

int64_t hash_as_int64(uint64_t hash) {
  int64_t value = 0;
  std::memcpy(&value, &hash, sizeof value);
  return value;
}

// Copies the images and labels at `positions` into a batch (reused buffers).
void gather(const nn::Dataset& data, std::span<const int64_t> positions, nn::Tensor& images,
            std::vector<int32_t>& labels) {
  const auto count = static_cast<int64_t>(positions.size());
  images.resize({count, data.channels, data.height, data.width});
  labels.resize(positions.size());
  const int64_t elements = data.image_elements();
  for (std::size_t i = 0; i < positions.size(); ++i) {
    const std::span<const float> image = data.image(positions[i]);
    std::copy(image.begin(), image.end(), images.data() + int64_t(i) * elements);
    labels[i] = data.labels[static_cast<std::size_t>(positions[i])];
  }
}

}  // namespace

nn::EpochResult train_epoch(GradientSynchronizer& sync, nn::Sgd& sgd, const nn::Dataset& data,
                            std::mt19937_64& rng, const nn::ProgressCallback& progress) {
  // nn::train_epoch's Fisher-Yates on the raw generator: the same seed gives the same global
  // order on every rank (and the same order as a single-process nn::train_epoch).
  std::vector<int64_t> order(static_cast<std::size_t>(data.size()));
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int64_t>(i);
  for (std::size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[rng() % i]);

  constexpr const char* kNames[] = {"the training set size",
                                    "the stored image values",
                                    "the image channels",
                                    "the image height",
                                    "the image width",
                                    "the training labels (hash)",
                                    "this epoch's order (hash; the shuffling seed)"};
  const int64_t mine[] = {
      data.size(),
      static_cast<int64_t>(data.images.size()),
      data.channels,
      data.height,
      data.width,
      hash_as_int64(nn::fnv1a64(data.labels.data(), data.labels.size() * sizeof(int32_t))),
      hash_as_int64(nn::fnv1a64(order.data(), order.size() * sizeof(int64_t)))};
  require_same_on_every_rank(mine, kNames,
                             "every rank must load the same data set and seed the same order",
                             sync.communicator());

  const int64_t batch = sync.options().global_batch;
  if (static_cast<int64_t>(data.images.size()) != data.size() * data.image_elements()) {
    collective_fail("dataset images.size() must be size() * channels * height * width (got " +
                    std::to_string(data.images.size()) + ")");
  }
  const std::vector<int64_t> image_shape{data.channels, data.height, data.width};
  if (image_shape != sync.options().image_shape) {
    collective_fail("the training images " + nn::shape_to_string(image_shape) +
                    " must have the synchroniser's image_shape " +
                    nn::shape_to_string(sync.options().image_shape));
  }
  if (data.size() < batch) {
    collective_fail("the training set (" + std::to_string(data.size()) +
                    " images) must hold at least one global_batch (" + std::to_string(batch) + ")");
  }

  const int64_t steps = data.size() / batch;
  nn::Tensor images;
  std::vector<int32_t> labels;
  double loss_sum = 0.0;
  for (int64_t s = 0; s < steps; ++s) {
    const std::span<const int64_t> mine_now = std::span<const int64_t>(order).subspan(
        static_cast<std::size_t>(s * batch + sync.local_offset()),
        static_cast<std::size_t>(sync.local_batch()));
    gather(data, mine_now, images, labels);
    loss_sum += sync.step(images, labels, sgd).loss_sum;
    if (progress) progress((s + 1) * batch, steps * batch, loss_sum / double((s + 1) * batch));
  }
  return {loss_sum / double(steps * batch), steps * batch};
}

double evaluate_accuracy(nn::Sequential& model, const nn::Dataset& data, int64_t batch_size,
                         MPI_Comm comm) {
  constexpr const char* kNames[] = {"the evaluation set size", "the evaluation batch_size"};
  const int64_t mine[] = {data.size(), batch_size};
  require_same_on_every_rank(mine, kNames, "every rank must evaluate the same data set", comm);
  // Rank 0's values, now every rank's: these fail on all ranks or on none.
  if (batch_size < 1) {
    collective_fail("batch_size must be >= 1 (got " + std::to_string(batch_size) + ")");
  }
  if (data.size() < 1) collective_fail("the evaluation set must not be empty (got 0 images)");

  int rank = 0, ranks = 1;
  detail::check_mpi(MPI_Comm_rank(comm, &rank), "MPI_Comm_rank");
  detail::check_mpi(MPI_Comm_size(comm, &ranks), "MPI_Comm_size");
  // Whole batches of nn::evaluate_accuracy per rank: each image meets the same batch-mates, and
  // so gets the same logits, as in the single-process evaluation.
  const int64_t batches = (data.size() + batch_size - 1) / batch_size;
  const int64_t first = batches * rank / ranks, last = batches * (rank + 1) / ranks;
  nn::Tensor images;
  std::vector<int32_t> labels, predicted;
  std::vector<int64_t> positions;
  double correct = 0.0;
  for (int64_t b = first; b < last; ++b) {
    const int64_t begin = b * batch_size, count = std::min(batch_size, data.size() - begin);
    positions.resize(static_cast<std::size_t>(count));
    for (int64_t i = 0; i < count; ++i) positions[std::size_t(i)] = begin + i;
    gather(data, positions, images, labels);
    predicted.resize(static_cast<std::size_t>(count));
    nn::argmax_rows(model.forward(images), predicted);
    for (std::size_t i = 0; i < predicted.size(); ++i) correct += predicted[i] == labels[i];
  }
  double counts[] = {correct};
  sum_over_ranks(counts, comm);  // integer-valued: exact
  return counts[0] / double(data.size());
}

}  // namespace convgemm::distributed
