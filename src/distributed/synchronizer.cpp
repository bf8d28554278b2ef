#include "convgemm/distributed/synchronizer.hpp"

#include <algorithm>
#include <cassert>
#include <climits>
#include <cstring>
#include <string>

#include "check.hpp"
#include "convgemm/nn/checkpoint.hpp"

namespace convgemm::distributed {
namespace {

// What every rank must agree on before the first step. kVersion catches ranks started from
// different builds of this file's layout.
enum Field : int {
  kVersion,
  kTensors,
  kElements,
  kShapesHash,
  kGlobalBatch,
  kChunkSize,
  kImageRank,
  kImageChannels,
  kImageHeight,
  kImageWidth,
  kBucketBytes,
  kFieldCount
};
constexpr const char* kFieldNames[kFieldCount] = {"the fingerprint version (different builds?)",
                                                  "the number of parameter tensors",
                                                  "the number of parameter elements",
                                                  "the parameter names and shapes",
                                                  "global_batch",
                                                  "chunk_size",
                                                  "the rank of image_shape",
                                                  "image_shape[0] (channels)",
                                                  "image_shape[1] (height)",
                                                  "image_shape[2] (width)",
                                                  "bucket_bytes"};
constexpr int64_t kFingerprintVersion = 3;  // 2: the tree exchange; 3: in buckets

// Tags of the step's exchanges: the metrics, then bucket b as kFirstBucketTag + b. MPI promises
// tags up to 32767 at least.
constexpr int kMetricsTag = 0, kFirstBucketTag = 1;
constexpr int64_t kMaxBuckets = 32767 - kFirstBucketTag;

[[noreturn]] void collective_fail(const std::string& message) {
  throw CollectiveError("convgemm: " + message);
}

std::string describe(const nn::Parameter& p) {
  std::string text = p.name;
  text += " ";
  text += nn::shape_to_string(p.shape);
  return text;
}

uint64_t hash_names_and_shapes(std::span<const nn::Parameter> parameters) {
  uint64_t hash = nn::fnv1a64(nullptr, 0);
  for (const nn::Parameter& p : parameters) {
    hash = nn::fnv1a64(p.name.data(), p.name.size() + 1, hash);  // with the '\0': a separator
    const auto rank = static_cast<int64_t>(p.shape.size());
    hash = nn::fnv1a64(&rank, sizeof rank, hash);
    hash = nn::fnv1a64(p.shape.data(), p.shape.size() * sizeof(int64_t), hash);
  }
  return hash;
}

std::vector<int64_t> fingerprint(std::span<const nn::Parameter> parameters,
                                 const SynchronizerOptions& options) {
  std::vector<int64_t> f(kFieldCount, -1);  // -1: an image dimension the shape does not have
  f[kVersion] = kFingerprintVersion;
  f[kTensors] = static_cast<int64_t>(parameters.size());
  f[kElements] = nn::total_size(parameters);
  const uint64_t hash = hash_names_and_shapes(parameters);
  std::memcpy(&f[kShapesHash], &hash, sizeof hash);
  f[kGlobalBatch] = options.global_batch;
  f[kChunkSize] = options.chunk_size;
  f[kImageRank] = static_cast<int64_t>(options.image_shape.size());
  f[kBucketBytes] = options.bucket_bytes;
  for (std::size_t i = 0; i < options.image_shape.size() && i < 3; ++i) {
    f[kImageChannels + static_cast<int>(i)] = options.image_shape[i];
  }
  return f;
}

// Collective, on the error path only (every rank takes it, having seen the same fingerprints):
// gathers every rank's parameter list to name the first parameter that differs.
[[noreturn]] void fail_parameter_mismatch(std::span<const nn::Parameter> parameters, int ranks,
                                          MPI_Comm comm) {
  std::string mine;
  for (const nn::Parameter& p : parameters) {
    mine += describe(p);
    mine += '\n';
  }
  // 64 KiB per rank names thousands of parameters and keeps the gathered total an int; a cut
  // list loses only its last, partial line.
  constexpr std::size_t kMaxDescription = std::size_t(1) << 16;
  const int length = static_cast<int>(std::min(mine.size(), kMaxDescription));
  std::vector<int> lengths(static_cast<std::size_t>(ranks)), offsets(lengths.size());
  detail::check_mpi(MPI_Allgather(&length, 1, MPI_INT, lengths.data(), 1, MPI_INT, comm),
                    "MPI_Allgather");
  int total = 0;
  for (std::size_t r = 0; r < lengths.size(); ++r) {
    offsets[r] = total;
    total += lengths[r];
  }
  std::string all(static_cast<std::size_t>(total), '\0');
  detail::check_mpi(MPI_Allgatherv(mine.data(), length, MPI_CHAR, all.data(), lengths.data(),
                                   offsets.data(), MPI_CHAR, comm),
                    "MPI_Allgatherv");
  auto lines_of = [&](std::size_t r) {
    std::vector<std::string> lines;
    std::string_view text(all.data() + offsets[r], static_cast<std::size_t>(lengths[r]));
    for (std::size_t end; (end = text.find('\n')) != std::string_view::npos;) {
      lines.emplace_back(text.substr(0, end));
      text.remove_prefix(end + 1);
    }
    return lines;
  };
  const std::vector<std::string> reference = lines_of(0);
  for (std::size_t r = 1; r < lengths.size(); ++r) {
    const std::vector<std::string> other = lines_of(r);
    for (std::size_t i = 0; i < std::max(reference.size(), other.size()); ++i) {
      const bool same = i < reference.size() && i < other.size() && reference[i] == other[i];
      if (same) continue;
      std::string message = "ranks disagree on the model's parameters: parameter ";
      message += std::to_string(i);
      message += " is ";
      message += i < other.size() ? other[i] : "missing";
      message += " on rank ";
      message += std::to_string(r);
      message += " but ";
      message += i < reference.size() ? reference[i] : "missing";
      message += " on rank 0 (every rank must build the same model)";
      collective_fail(message);
    }
  }
  collective_fail(
      "ranks disagree on the model's parameters (every rank must build the same model)");
}

void copy_values(std::span<const nn::Parameter> parameters, std::span<float> fused, bool to_fused) {
  std::size_t offset = 0;
  for (const nn::Parameter& p : parameters) {
    std::span<float> part = fused.subspan(offset, p.values.size());
    if (to_fused) {
      std::copy(p.values.begin(), p.values.end(), part.begin());
    } else {
      std::copy(part.begin(), part.end(), p.values.begin());
    }
    offset += p.values.size();
  }
}

}  // namespace

GradientSynchronizer::GradientSynchronizer(nn::Sequential& model,
                                           const SynchronizerOptions& options, MPI_Comm comm)
    : model_(&model), options_(options), comm_(comm), parameters_(model.parameters()) {
  detail::check_mpi(MPI_Comm_rank(comm_, &rank_), "MPI_Comm_rank");
  detail::check_mpi(MPI_Comm_size(comm_, &ranks_), "MPI_Comm_size");
  parameter_count_ = nn::total_size(parameters_);
  // Nothing above throws on one rank alone for a well-formed model; from here on every check
  // runs on gathered values, so all ranks reach the same verdict.
  check_consistent_across_ranks();

  // A tree over n leaves is ceil(log2 n) + 1 levels deep (the left side is the deeper one).
  std::size_t levels = 1;
  for (int64_t n = chunks_per_rank(); n > 1; n = tree_left_leaves(n)) ++levels;
  level_gradients_.assign(levels, std::vector<float>(static_cast<std::size_t>(parameter_count_)));
  level_metrics_.assign(levels, {0.0, 0.0});
  plan_buckets();
  predicted_.resize(static_cast<std::size_t>(options_.chunk_size));
  broadcast_parameters();
}

void GradientSynchronizer::check_consistent_across_ranks() {
  const std::vector<int64_t> mine = fingerprint(parameters_, options_);
  std::vector<int64_t> all(static_cast<std::size_t>(ranks_) * kFieldCount);
  detail::check_mpi(MPI_Allgather(mine.data(), kFieldCount, MPI_INT64_T, all.data(), kFieldCount,
                                  MPI_INT64_T, comm_),
                    "MPI_Allgather");
  auto value = [&](int rank, int field) {
    return all[static_cast<std::size_t>(rank) * kFieldCount + static_cast<std::size_t>(field)];
  };
  for (int field = 0; field < kFieldCount; ++field) {
    for (int r = 1; r < ranks_; ++r) {
      if (value(r, field) == value(0, field)) continue;
      if (field == kTensors || field == kElements || field == kShapesHash) {
        fail_parameter_mismatch(parameters_, ranks_, comm_);
      }
      std::string message = "ranks disagree on ";
      message += kFieldNames[field];
      message += ": rank ";
      message += std::to_string(r);
      message += " has ";
      message += std::to_string(value(r, field));
      message += " but rank 0 has ";
      message += std::to_string(value(0, field));
      message += " (every rank must pass the same options)";
      collective_fail(message);
    }
  }

  // Every rank now holds rank 0's values: the rules below fail on all ranks or on none.
  const int64_t batch = options_.global_batch, chunk = options_.chunk_size;
  auto require_positive = [](const char* field, int64_t v) {
    if (v < 1)
      collective_fail(std::string(field) + " must be >= 1 (got " + std::to_string(v) + ")");
  };
  require_positive("global_batch", batch);
  require_positive("chunk_size", chunk);
  require_positive("bucket_bytes", options_.bucket_bytes);
  if ((ranks_ & (ranks_ - 1)) != 0) {
    collective_fail("the number of ranks (" + std::to_string(ranks_) +
                    ") must be a power of two (1, 2, 4, 8, ...): the bitwise rule of the chunk "
                    "tree (synchronizer.hpp)");
  }
  if (batch % (int64_t(ranks_) * chunk) != 0) {
    std::string message = "global_batch (";
    message += std::to_string(batch);
    message += ") must be divisible by ranks x chunk_size (";
    message += std::to_string(ranks_);
    message += " x ";
    message += std::to_string(chunk);
    message += " = ";
    message += std::to_string(int64_t(ranks_) * chunk);
    message += ")";
    collective_fail(message);
  }
  if (options_.image_shape.size() != 3) {
    collective_fail("image_shape must have rank 3 ([channels, height, width]) (got " +
                    nn::shape_to_string(options_.image_shape) + ")");
  }
  std::vector<int64_t> input_shape{chunk};
  input_shape.insert(input_shape.end(), options_.image_shape.begin(), options_.image_shape.end());
  std::vector<int64_t> output_shape;
  try {
    output_shape = model_->output_shape(input_shape);
  } catch (const std::invalid_argument& e) {
    collective_fail("image_shape " + nn::shape_to_string(options_.image_shape) +
                    " does not fit the model: " + e.what());
  }
  if (output_shape.size() != 2) {
    collective_fail("the model's output must be logits [N, classes] (got " +
                    nn::shape_to_string(output_shape) + " for input " +
                    nn::shape_to_string(input_shape) + ")");
  }
}

void GradientSynchronizer::plan_buckets() {
  int64_t offset = 0;
  for (int64_t i = 0; i < model_->size(); ++i) {
    layer_offsets_.push_back(offset);
    layer_parameters_.push_back(model_->layer(i).parameters());
    offset += nn::total_size(layer_parameters_.back());
  }
  // Walk back from the last layer, closing a bucket once it holds bucket_bytes (and at layer 0).
  int64_t end = offset;
  for (int64_t i = model_->size(); i-- > 0;) {
    const int64_t bytes =
        (end - layer_offsets_[static_cast<std::size_t>(i)]) * int64_t(sizeof(float));
    if (bytes == 0 || (bytes < options_.bucket_bytes && i > 0)) continue;
    buckets_.push_back({layer_offsets_[static_cast<std::size_t>(i)], end, i});
    end = buckets_.back().begin;
  }
  // Every rank has the same model and bucket_bytes (checked): all fail here or none does.
  if (static_cast<int64_t>(buckets_.size()) > kMaxBuckets) {
    collective_fail("bucket_bytes " + std::to_string(options_.bucket_bytes) +
                    " cuts the gradient into " + std::to_string(buckets_.size()) +
                    " buckets, more than the " + std::to_string(kMaxBuckets) +
                    " that MPI's tags can tell apart");
  }
  bucket_exchanges_ = std::vector<TreeAllreduce<float>>(buckets_.size());
}

nn::SgdOptions GradientSynchronizer::sgd_options(nn::SgdOptions base) const {
  base.accumulation_steps = chunks();
  return base;
}

StepResult GradientSynchronizer::compute_gradients(const nn::Tensor& images,
                                                   std::span<const int32_t> labels) {
  const int64_t chunk = options_.chunk_size;
  std::vector<int64_t> expected{local_batch()};
  expected.insert(expected.end(), options_.image_shape.begin(), options_.image_shape.end());
  if (images.shape() != expected) {
    detail::fail_shape("GradientSynchronizer", "images", images.shape(),
                       "must be this rank's local batch " + nn::shape_to_string(expected));
  }
  if (static_cast<int64_t>(labels.size()) != local_batch()) {
    detail::fail("GradientSynchronizer labels.size()", static_cast<int64_t>(labels.size()),
                 "must equal the local batch (" + std::to_string(local_batch()) + ")");
  }

  std::vector<int64_t> chunk_shape = expected;
  chunk_shape[0] = chunk;
  chunk_images_.resize(chunk_shape);
  // The last chunk starts the exchanges (compute_chunk); here they finish, in start order on
  // every rank (TreeAllreduce's rule).
  sum_chunks(images, labels, /*first=*/0, chunks_per_rank(), /*depth=*/0);
  metrics_exchange_.wait();
  last_traffic_ = metrics_exchange_.traffic();
  for (TreeAllreduce<float>& exchange : bucket_exchanges_) {
    exchange.wait();
    last_traffic_ += exchange.traffic();
  }

  StepResult result;
  result.images = options_.global_batch;
  result.loss_sum = level_metrics_[0][0];
  result.correct = static_cast<int64_t>(level_metrics_[0][1]);
  nn::unpack_gradients(level_gradients_[0], parameters_);
  return result;
}

void GradientSynchronizer::sum_chunks(const nn::Tensor& images, std::span<const int32_t> labels,
                                      int64_t first, int64_t n, std::size_t depth) {
  if (n == 1) {
    compute_chunk(images, labels, first, depth);
    return;
  }
  const int64_t left = tree_left_leaves(n);
  sum_chunks(images, labels, first, left, depth);
  sum_chunks(images, labels, first + left, n - left, depth + 1);
  // The node, left + right; on the right spine (above the last chunk) add_spine() did it, bucket
  // by bucket.
  if (first + n == chunks_per_rank()) return;
  std::vector<float>& sum = level_gradients_[depth];
  const std::vector<float>& right = level_gradients_[depth + 1];
  for (std::size_t e = 0; e < sum.size(); ++e) sum[e] = sum[e] + right[e];
  for (std::size_t m = 0; m < 2; ++m) {
    level_metrics_[depth][m] = level_metrics_[depth][m] + level_metrics_[depth + 1][m];
  }
}

void GradientSynchronizer::add_spine(std::size_t last_depth, int64_t begin, int64_t end) {
  for (std::size_t depth = last_depth; depth-- > 0;) {
    float* sum = level_gradients_[depth].data();
    const float* right = level_gradients_[depth + 1].data();
    for (int64_t e = begin; e < end; ++e) sum[e] = sum[e] + right[e];
  }
}

void GradientSynchronizer::compute_chunk(const nn::Tensor& images, std::span<const int32_t> labels,
                                         int64_t index, std::size_t depth) {
  const int64_t chunk = options_.chunk_size;
  const int64_t chunk_floats = chunk_images_.size();
  std::copy_n(images.data() + index * chunk_floats, chunk_floats, chunk_images_.data());
  const std::span<const int32_t> chunk_labels =
      labels.subspan(static_cast<std::size_t>(index * chunk), static_cast<std::size_t>(chunk));
  // Each chunk's gradient starts from zero, so its bits do not depend on the chunks this rank
  // happened to compute before it.
  nn::zero_gradients(parameters_);
  const nn::Tensor& logits = model_->forward(chunk_images_);
  const double mean_loss = loss_.forward(logits, chunk_labels);
  nn::argmax_rows(logits, predicted_);
  int64_t correct = 0;
  for (std::size_t i = 0; i < predicted_.size(); ++i) correct += predicted_[i] == chunk_labels[i];
  level_metrics_[depth] = {mean_loss * double(chunk), double(correct)};
  const bool last = index + 1 == chunks_per_rank();
  const ExchangeOptions unchecked{.check_sizes = false};  // the constructor checked the sizes
  if (last) {
    for (std::size_t d = depth; d-- > 0;) {
      for (std::size_t m = 0; m < 2; ++m) {
        level_metrics_[d][m] = level_metrics_[d][m] + level_metrics_[d + 1][m];
      }
    }
    metrics_exchange_.start(std::span<double>(level_metrics_[0]), comm_, kMetricsTag, unchecked);
  }
  loss_.backward(dlogits_);
  std::span<float> gradient(level_gradients_[depth]);
  std::size_t next_bucket = 0;
  model_->backward(dlogits_, nullptr, [&](int64_t layer) {
    const auto l = static_cast<std::size_t>(layer);
    const std::span<float> part =
        gradient.subspan(static_cast<std::size_t>(layer_offsets_[l]),
                         static_cast<std::size_t>(nn::total_size(layer_parameters_[l])));
    nn::pack_gradients(layer_parameters_[l], part);
    if (!last) return;
    if (next_bucket < buckets_.size() && buckets_[next_bucket].first_layer == layer) {
      const Bucket& b = buckets_[next_bucket];
      add_spine(depth, b.begin, b.end);
      const std::span<float> sum(level_gradients_[0]);
      bucket_exchanges_[next_bucket].start(
          sum.subspan(static_cast<std::size_t>(b.begin), static_cast<std::size_t>(b.end - b.begin)),
          comm_, kFirstBucketTag + static_cast<int>(next_bucket), unchecked);
      ++next_bucket;
    }
    for (std::size_t b = 0; b < next_bucket; ++b) bucket_exchanges_[b].progress();
    metrics_exchange_.progress();
  });
}

StepResult GradientSynchronizer::step(const nn::Tensor& images, std::span<const int32_t> labels,
                                      nn::Sgd& sgd) {
  const std::vector<nn::Parameter>& held = sgd.parameters();
  bool same = held.size() == parameters_.size();
  for (std::size_t i = 0; same && i < held.size(); ++i) {
    same = held[i].values.data() == parameters_[i].values.data() &&
           held[i].gradients.data() == parameters_[i].gradients.data();
  }
  if (!same)
    detail::fail_message("GradientSynchronizer::step: sgd must hold this model's parameters");
  if (sgd.options().accumulation_steps != chunks()) {
    detail::fail("sgd accumulation_steps", sgd.options().accumulation_steps,
                 "must equal the synchroniser's chunks() (" + std::to_string(chunks()) +
                     "); build the Sgd with sgd_options()");
  }
  if (sgd.pending_micro_batches() != 0) {
    detail::fail("sgd pending_micro_batches", sgd.pending_micro_batches(),
                 "must be 0 before a synchronised step");
  }
  const StepResult result = compute_gradients(images, labels);
  // The parameters now hold the sum of chunks() micro-batch gradients: tell the Sgd it has seen
  // that many, and its accumulation rule divides by chunks() on the last call.
  for (int64_t i = 0; i + 1 < chunks(); ++i) sgd.step();
  const bool applied = sgd.step();
  assert(applied);
  (void)applied;
  return result;
}

void GradientSynchronizer::broadcast_parameters() {
  fused_values_.resize(static_cast<std::size_t>(parameter_count_));
  copy_values(parameters_, fused_values_, /*to_fused=*/true);
  broadcast_in_pieces(fused_values_, comm_);
  copy_values(parameters_, fused_values_, /*to_fused=*/false);
}

void sum_over_ranks(std::span<double> values, MPI_Comm comm) {
  if (values.size() > static_cast<std::size_t>(INT_MAX)) {
    detail::fail("sum_over_ranks values.size()", static_cast<int64_t>(values.size()),
                 "must fit MPI's int count");
  }
  detail::check_mpi(MPI_Allreduce(MPI_IN_PLACE, values.data(), static_cast<int>(values.size()),
                                  MPI_DOUBLE, MPI_SUM, comm),
                    "MPI_Allreduce");
}

}  // namespace convgemm::distributed
