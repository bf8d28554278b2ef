// The distributed tests' driver: a few data-parallel training steps of the small CNN, after which
// rank 0 writes the raw bits of the result (every parameter value, each epoch's mean loss, the
// held-out accuracy) to --out. CTest runs it on 1, 2 and 4 ranks and with other thread counts,
// and compares the files byte for byte (tests/distributed/CMakeLists.txt).
//
//   train_steps --out FILE                 under mpirun -np R: GradientSynchronizer
//   train_steps --out FILE --serial        no MPI at all: the documented rule, written out again
//                                          with plain nn:: calls (the oracle)
//   --mismatch-rank R / --batch-rank R     rank R builds another model / asks for another batch
//   --fail-rank R --fail-step S            rank R throws after step S (the others go on)
//   --bucket-bytes B                       the synchroniser's buckets (default: its default)
//
// Every rank but 0 starts from other initial weights (seed + rank), so the runs only agree if the
// initial broadcast works.
#include <convgemm/distributed/distributed.hpp>
#include <convgemm/nn/nn.hpp>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace nn = convgemm::nn;
namespace distributed = convgemm::distributed;

namespace {

struct Options {
  std::string out;
  bool serial = false;
  int64_t epochs = 2;
  int64_t steps_per_epoch = 2;
  // 192-image chunks make Dense's GEMMs (6 x 256 x 192) big enough for OpenBLAS to thread them,
  // which is where its bits used to depend on OPENBLAS_NUM_THREADS.
  int64_t chunk = 192;
  int64_t global_batch = 768;  // 4 chunks: 4, 2 and 1 per rank on 1, 2 and 4 ranks
  int threads = 0;
  int mismatch_rank = -1, batch_rank = -1, fail_rank = -1;
  int64_t fail_step = 0;
  int64_t bucket_bytes = distributed::SynchronizerOptions{}.bucket_bytes;
};

constexpr uint64_t kDataSeed = 7, kModelSeed = 3, kOrderSeed = 11;
constexpr int64_t kImageSize = 28, kTestImages = 300, kEvalBatch = 64;
const nn::SgdOptions kSgd{.learning_rate = 0.05f, .momentum = 0.9f, .weight_decay = 1e-4f};

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string_view flag = argv[i];
    if (flag == "--serial") {
      o.serial = true;
      continue;
    }
    if (i + 1 >= argc) throw std::invalid_argument("missing value after " + std::string(flag));
    const std::string value = argv[++i];
    if (flag == "--out")
      o.out = value;
    else if (flag == "--epochs")
      o.epochs = std::stoll(value);
    else if (flag == "--steps")
      o.steps_per_epoch = std::stoll(value);
    else if (flag == "--chunk")
      o.chunk = std::stoll(value);
    else if (flag == "--global-batch")
      o.global_batch = std::stoll(value);
    else if (flag == "--threads")
      o.threads = std::stoi(value);
    else if (flag == "--mismatch-rank")
      o.mismatch_rank = std::stoi(value);
    else if (flag == "--batch-rank")
      o.batch_rank = std::stoi(value);
    else if (flag == "--fail-rank")
      o.fail_rank = std::stoi(value);
    else if (flag == "--fail-step")
      o.fail_step = std::stoll(value);
    else if (flag == "--bucket-bytes")
      o.bucket_bytes = std::stoll(value);
    else
      throw std::invalid_argument("unknown option " + std::string(flag));
  }
  return o;
}

// Leftover images (5) that each epoch must skip.
nn::Dataset training_set(const Options& o) {
  return nn::make_pattern_dataset({.count = o.steps_per_epoch * o.global_batch + 5,
                                   .image_size = kImageSize,
                                   .seed = kDataSeed});
}
nn::Dataset test_set() {
  return nn::make_pattern_dataset(
      {.count = kTestImages, .image_size = kImageSize, .seed = kDataSeed + 1});
}

std::vector<float> values_of(nn::Sequential& model) {
  std::vector<float> values;
  for (const nn::Parameter& p : model.parameters()) {
    values.insert(values.end(), p.values.begin(), p.values.end());
  }
  return values;
}

// The result file: raw parameter values, then each epoch's mean loss, then the accuracy.
void write_result(const Options& o, const std::vector<float>& initial, nn::Sequential& model,
                  const std::vector<double>& losses, double accuracy) {
  const std::vector<float> final_values = values_of(model);
  if (final_values.size() != initial.size() ||
      std::memcmp(final_values.data(), initial.data(), initial.size() * sizeof(float)) == 0) {
    throw std::runtime_error("training did not change the weights: nothing to compare");
  }
  for (double loss : losses) {
    if (!std::isfinite(loss)) throw std::runtime_error("a mean loss is not finite");
  }
  std::ofstream file(o.out, std::ios::binary | std::ios::trunc);
  file.write(reinterpret_cast<const char*>(final_values.data()),
             std::streamsize(final_values.size() * sizeof(float)));
  file.write(reinterpret_cast<const char*>(losses.data()),
             std::streamsize(losses.size() * sizeof(double)));
  file.write(reinterpret_cast<const char*>(&accuracy), sizeof accuracy);
  if (!file.flush()) throw std::runtime_error("cannot write " + o.out);
  std::printf("weights fnv1a64 %016llx, last loss %.17g, accuracy %.17g -> %s\n",
              static_cast<unsigned long long>(
                  nn::fnv1a64(final_values.data(), final_values.size() * sizeof(float))),
              losses.back(), accuracy, o.out.c_str());
}

// The rule's tree, written out again: sum(lo, n) = sum(lo, ceil(n/2)) + sum(lo + ceil(n/2), rest).
std::vector<float> pairwise_sum(const std::vector<std::vector<float>>& leaves, int64_t lo,
                                int64_t n) {
  if (n == 1) return leaves[std::size_t(lo)];
  const int64_t left_count = (n + 1) / 2;
  std::vector<float> left = pairwise_sum(leaves, lo, left_count);
  const std::vector<float> right = pairwise_sum(leaves, lo + left_count, n - left_count);
  for (std::size_t e = 0; e < left.size(); ++e) left[e] = left[e] + right[e];
  return left;
}
double pairwise_sum(const std::vector<double>& leaves, int64_t lo, int64_t n) {
  if (n == 1) return leaves[std::size_t(lo)];
  const int64_t left_count = (n + 1) / 2;
  return pairwise_sum(leaves, lo, left_count) +
         pairwise_sum(leaves, lo + left_count, n - left_count);
}

// The rule of convgemm/distributed/synchronizer.hpp with plain nn:: calls and no MPI.
int run_serial(const Options& o) {
  const nn::Dataset train = training_set(o), test = test_set();
  nn::Sequential model = nn::make_small_cnn(kImageSize, nn::kPatternClasses, 8, 16, o.threads);
  model.initialize(kModelSeed);
  const std::vector<float> initial = values_of(model);
  const std::vector<nn::Parameter> params = model.parameters();
  const int64_t chunks = o.global_batch / o.chunk;
  nn::SgdOptions sgd_options = kSgd;
  sgd_options.accumulation_steps = chunks;
  nn::Sgd sgd(params, sgd_options);
  nn::SoftmaxCrossEntropy loss;
  nn::Tensor images, dlogits;
  std::vector<int32_t> labels(static_cast<std::size_t>(o.chunk));
  // One gradient and one loss per chunk of the step, combined afterwards by the tree.
  std::vector<std::vector<float>> chunk_gradients(
      static_cast<std::size_t>(chunks),
      std::vector<float>(static_cast<std::size_t>(nn::total_size(params))));
  std::vector<double> chunk_losses(static_cast<std::size_t>(chunks));
  std::vector<double> losses;
  std::mt19937_64 rng(kOrderSeed);
  for (int64_t epoch = 0; epoch < o.epochs; ++epoch) {
    std::vector<int64_t> order(static_cast<std::size_t>(train.size()));
    for (std::size_t i = 0; i < order.size(); ++i) order[i] = int64_t(i);
    for (std::size_t i = order.size(); i > 1; --i) std::swap(order[i - 1], order[rng() % i]);
    const int64_t steps = train.size() / o.global_batch;
    double epoch_loss = 0.0;
    for (int64_t s = 0; s < steps; ++s) {
      for (int64_t j = 0; j < chunks; ++j) {
        images.resize({o.chunk, 1, kImageSize, kImageSize});
        for (int64_t n = 0; n < o.chunk; ++n) {
          const int64_t index = order[std::size_t(s * o.global_batch + j * o.chunk + n)];
          const std::span<const float> image = train.image(index);
          std::copy(image.begin(), image.end(), images.data() + n * train.image_elements());
          labels[std::size_t(n)] = train.labels[std::size_t(index)];
        }
        nn::zero_gradients(params);
        chunk_losses[std::size_t(j)] =
            loss.forward(model.forward(images), labels) * double(o.chunk);
        loss.backward(dlogits);
        model.backward(dlogits);
        nn::pack_gradients(params, chunk_gradients[std::size_t(j)]);
      }
      const std::vector<float> sum = pairwise_sum(chunk_gradients, 0, chunks);
      epoch_loss += pairwise_sum(chunk_losses, 0, chunks);
      nn::unpack_gradients(sum, params);
      for (int64_t j = 0; j < chunks; ++j) sgd.step();
    }
    losses.push_back(epoch_loss / double(steps * o.global_batch));
  }
  write_result(o, initial, model, losses, nn::evaluate_accuracy(model, test, kEvalBatch));
  return 0;
}

// The exchange's bound (synchronizer.hpp): each rank sends and receives at most about twice the
// parameter bytes per step, whatever the number of chunks; here within 2.2x, and nothing at all
// on one rank.
void check_traffic(const distributed::GradientSynchronizer& sync) {
  const distributed::ExchangeTraffic& t = sync.last_traffic();
  const double bound = 2.2 * double(sync.parameter_count()) * double(sizeof(float));
  const bool alone = sync.ranks() == 1;
  if (double(t.bytes_sent) > bound || double(t.bytes_received) > bound ||
      (alone != (t.bytes_sent == 0)) || (alone != (t.bytes_received == 0))) {
    throw std::runtime_error("step traffic out of bounds: sent " + std::to_string(t.bytes_sent) +
                             " and received " + std::to_string(t.bytes_received) + " bytes for " +
                             std::to_string(sync.parameter_count()) + " parameters on " +
                             std::to_string(sync.ranks()) + " ranks");
  }
}

int run_distributed(const Options& o, int rank) {
  // Rank 0 alone writes; a stale file must not survive a failed run.
  if (rank == 0) std::filesystem::remove(o.out);
  const nn::Dataset train = training_set(o), test = test_set();
  const int64_t c1 = rank == o.mismatch_rank ? 4 : 8;
  nn::Sequential model = nn::make_small_cnn(kImageSize, nn::kPatternClasses, c1, 16, o.threads);
  model.initialize(kModelSeed + uint64_t(rank));
  const int64_t batch = rank == o.batch_rank ? o.global_batch / 2 : o.global_batch;
  distributed::GradientSynchronizer sync(model, {.global_batch = batch,
                                                 .chunk_size = o.chunk,
                                                 .image_shape = {1, kImageSize, kImageSize},
                                                 .bucket_bytes = o.bucket_bytes});
  if (o.bucket_bytes == 1) {  // one bucket per layer with parameters: the overlap is exercised
    int64_t layers_with_parameters = 0;
    for (int64_t i = 0; i < model.size(); ++i)
      layers_with_parameters += !model.layer(i).parameters().empty();
    if (sync.bucket_count() != layers_with_parameters || layers_with_parameters < 2) {
      throw std::runtime_error("bucket_bytes 1 gave " + std::to_string(sync.bucket_count()) +
                               " buckets for " + std::to_string(layers_with_parameters) +
                               " layers with parameters");
    }
  }
  const std::vector<float> initial = values_of(model);  // rank 0's, after the broadcast
  nn::Sgd sgd(model.parameters(), sync.sgd_options(kSgd));
  std::mt19937_64 rng(kOrderSeed);
  std::vector<double> losses;
  int64_t steps_done = 0;
  for (int64_t epoch = 0; epoch < o.epochs; ++epoch) {
    const nn::EpochResult result =
        distributed::train_epoch(sync, sgd, train, rng, [&](int64_t, int64_t, double) {
          check_traffic(sync);
          if (++steps_done == o.fail_step && rank == o.fail_rank) {
            throw std::runtime_error("injected failure after step " + std::to_string(steps_done));
          }
        });
    losses.push_back(result.mean_loss);
  }
  const double accuracy = distributed::evaluate_accuracy(model, test, kEvalBatch);
  if (rank == 0) write_result(o, initial, model, losses, accuracy);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  try {
    o = parse(argc, argv);
    if (o.out.empty()) throw std::invalid_argument("--out FILE is required");
    if (o.serial) return run_serial(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "train_steps: %s\n", e.what());
    return 1;
  }
  distributed::Environment mpi(argc, argv);
  return distributed::run_or_abort("train_steps", [&] { return run_distributed(o, mpi.rank()); });
}
