// Trains conv 5x5 -> ReLU -> maxpool 2x2/2 -> conv 5x5 -> ReLU -> maxpool 2x2/2 -> flatten ->
// dense -> softmax on a generated set of stroke patterns (lines, corners, crosses, circles), or
// on MNIST when given its IDX files, printing per-epoch loss, held-out accuracy and throughput.
//
//   train_cnn                          generated patterns, default settings
//   train_cnn --mnist DIR --epochs 3   DIR/train-images-idx3-ubyte, ... (uncompressed)
//   train_cnn --epochs 1 --save model.ckpt   then: train_cnn --resume model.ckpt --epochs 2
//                                      continues with epoch 2, bit for bit as if never stopped
//   mpirun -np 2 train_cnn --distributed   data-parallel over MPI (builds with MPI only), the
//                                          same weights for any number of ranks
#include <convgemm/nn/nn.hpp>
#if CONVGEMM_TRAIN_CNN_MPI
#include <convgemm/distributed/distributed.hpp>
#endif

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace nn = convgemm::nn;

namespace {

struct Options {
  int64_t epochs = 5;
  int64_t batch = 32;
  float lr = 0.02f;
  float lr_decay = 0.7f;
  float momentum = 0.9f;
  int64_t accumulate = 1;
  uint64_t seed = 1;
  int threads = 0;
  int64_t train_images = 12000;
  int64_t test_images = 2000;
  float noise = 0.25f;
  std::optional<std::filesystem::path> mnist, save, resume;
  bool distributed = false;
  int64_t chunk = 8;
};

constexpr const char* kUsage = R"(usage: train_cnn [options]
  --epochs N        passes over the training set            (default 5)
  --batch N         images per micro-batch                  (default 32)
  --lr X            learning rate of the first epoch        (default 0.02)
  --lr-decay X      learning rate factor per epoch, (0, 1]  (default 0.7)
  --momentum X      SGD momentum in [0, 1)                  (default 0.9)
  --accumulate K    micro-batches per SGD step              (default 1)
  --seed N          seeds the data, the weights, the order  (default 1)
  --threads N       convolution threads, 0 = all cores      (default 0)
  --train N         generated training images               (default 12000)
  --test N          generated held-out images               (default 2000)
  --noise X         generated pixel noise (std. deviation)  (default 0.25)
  --mnist DIR       train on DIR/train-images-idx3-ubyte, train-labels-idx1-ubyte,
                    test on DIR/t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte
  --save PATH       write a checkpoint after training (PATH.tmp, then renamed):
                    parameters, optimizer state, epoch, data order
  --resume PATH     continue the run that saved PATH from its last epoch to --epochs
                    (the total); the other options must be that run's
  --distributed     data-parallel over MPI, under mpirun -np R (MPI builds only):
                    --batch is then the global batch of all ranks, cut into chunks
                    of --chunk images; it must be divisible by R x chunk
  --chunk N         images per gradient chunk with --distributed (default 8)
)";

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

[[noreturn]] void bad_value(std::string_view flag, std::string_view value, const char* rule) {
  std::string message = "invalid value for ";
  message += flag;
  message += ": '";
  message += value;
  message += "' (";
  message += rule;
  message += ")";
  throw UsageError(message);
}

int64_t parse_int(std::string_view flag, const std::string& value, int64_t minimum) {
  std::size_t used = 0;
  int64_t parsed = 0;
  try {
    parsed = std::stoll(value, &used);
  } catch (const std::exception&) {
    bad_value(flag, value, "not an integer");
  }
  if (used != value.size()) bad_value(flag, value, "not an integer");
  if (parsed < minimum) {
    const std::string rule = "must be >= " + std::to_string(minimum);
    bad_value(flag, value, rule.c_str());
  }
  return parsed;
}

float parse_float(std::string_view flag, const std::string& value) {
  std::size_t used = 0;
  float parsed = 0.0f;
  try {
    parsed = std::stof(value, &used);
  } catch (const std::exception&) {
    bad_value(flag, value, "not a number");
  }
  if (used != value.size() || !std::isfinite(parsed)) bad_value(flag, value, "not a number");
  return parsed;
}

Options parse(int argc, char** argv) {
  Options o;
  bool chunk_given = false;
  for (int i = 1; i < argc; ++i) {
    const std::string_view flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      std::fputs(kUsage, stdout);
      std::exit(0);
    }
    if (flag == "--distributed") {
      o.distributed = true;
      continue;
    }
    if (i + 1 >= argc) throw UsageError("missing value after " + std::string(flag));
    const std::string value = argv[++i];
    if (flag == "--epochs")
      o.epochs = parse_int(flag, value, 0);
    else if (flag == "--batch")
      o.batch = parse_int(flag, value, 1);
    else if (flag == "--lr")
      o.lr = parse_float(flag, value);
    else if (flag == "--lr-decay")
      o.lr_decay = parse_float(flag, value);
    else if (flag == "--momentum")
      o.momentum = parse_float(flag, value);
    else if (flag == "--accumulate")
      o.accumulate = parse_int(flag, value, 1);
    else if (flag == "--seed")
      o.seed = static_cast<uint64_t>(parse_int(flag, value, 0));
    else if (flag == "--threads")
      o.threads = static_cast<int>(parse_int(flag, value, 0));
    else if (flag == "--train")
      o.train_images = parse_int(flag, value, 1);
    else if (flag == "--test")
      o.test_images = parse_int(flag, value, 1);
    else if (flag == "--noise")
      o.noise = parse_float(flag, value);
    else if (flag == "--mnist")
      o.mnist = value;
    else if (flag == "--save")
      o.save = value;
    else if (flag == "--resume")
      o.resume = value;
    else if (flag == "--chunk") {
      o.chunk = parse_int(flag, value, 1);
      chunk_given = true;
    } else
      throw UsageError("unknown option " + std::string(flag));
  }
  if (!(o.lr_decay > 0.0f && o.lr_decay <= 1.0f)) {
    bad_value("--lr-decay", std::to_string(o.lr_decay), "must be in (0, 1]");
  }
  if (!o.distributed && chunk_given) {
    throw UsageError("--chunk is for --distributed runs (a single process takes --batch whole)");
  }
  if (o.distributed && o.accumulate != 1) {
    throw UsageError(
        "--accumulate is for single-process runs: with --distributed, --batch is the global "
        "batch, cut into --chunk images per chunk");
  }
  return o;
}

// Processes the launcher started (Open MPI's mpirun, MPICH's Hydra), or 0 when there is none.
int64_t launched_processes() {
  for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"}) {
    if (const char* value = std::getenv(name)) return std::atoll(value);
  }
  return 0;
}

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

// A one-line progress display on stderr, redrawn in place ('\r'), only when stderr is a
// terminal, at most ten times a second.
class Progress {
 public:
  explicit Progress(bool enabled) : enabled_(enabled) {}
  void update(int64_t epoch, int64_t epochs, int64_t done, int64_t total, double loss,
              double images_per_second) {
    if (!enabled_) return;
    const auto now = Clock::now();
    if (done < total && now - last_ < std::chrono::milliseconds(100)) return;
    last_ = now;
    constexpr int kWidth = 30;
    const int filled = static_cast<int>(kWidth * done / total);
    std::fprintf(stderr, "\repoch %lld/%lld [%.*s%*s] %6lld/%lld  loss %.4f  %.0f images/s ",
                 static_cast<long long>(epoch), static_cast<long long>(epochs), filled,
                 "##############################", kWidth - filled, "",
                 static_cast<long long>(done), static_cast<long long>(total), loss,
                 images_per_second);
    std::fflush(stderr);
  }
  void clear() {
    if (enabled_) std::fprintf(stderr, "\r%*s\r", 100, "");
  }

 private:
  bool enabled_;
  Clock::time_point last_{};
};

// The run's position as a checkpoint records it (nn::TrainingProgress): the data order comes from
// std::mt19937_64(seed + 1), and the learning rate of epoch e is lr x lr_decay^(e - 1).
nn::TrainingProgress fresh_progress(const Options& o) {
  return {.epochs_done = 0,
          .order_seed = o.seed + 1,
          .order_draws = 0,
          .base_learning_rate = o.lr,
          .learning_rate_decay = o.lr_decay};
}

// A resumed run must be the saved run's continuation: its seed and schedule (the optimizer's
// options are checked by Sgd::restore).
void require_same_run(const nn::TrainingProgress& saved, const Options& o,
                      const std::filesystem::path& path) {
  const nn::TrainingProgress mine = fresh_progress(o);
  auto differs = [&](const char* flag, const std::string& theirs, const std::string& ours) {
    throw std::invalid_argument("train_cnn: --resume " + path.string() + ": " + flag + " " + ours +
                                " differs from the saved run's " + theirs +
                                " (a resumed run continues the saved one)");
  };
  if (saved.order_seed != mine.order_seed) {
    differs("--seed", std::to_string(saved.order_seed - 1), std::to_string(o.seed));
  }
  if (saved.base_learning_rate != mine.base_learning_rate) {
    differs("--lr", std::to_string(saved.base_learning_rate), std::to_string(o.lr));
  }
  if (saved.learning_rate_decay != mine.learning_rate_decay) {
    differs("--lr-decay", std::to_string(saved.learning_rate_decay), std::to_string(o.lr_decay));
  }
}

// Each epoch's Fisher-Yates shuffle (nn::train_epoch, distributed::train_epoch) draws
// size - 1 outputs from the order generator.
uint64_t draws_per_epoch(const nn::Dataset& train) {
  return train.size() > 1 ? static_cast<uint64_t>(train.size() - 1) : 0;
}

std::mt19937_64 order_generator(const nn::TrainingProgress& progress) {
  std::mt19937_64 rng(progress.order_seed);
  rng.discard(progress.order_draws);
  return rng;
}

struct Data {
  nn::Dataset train, test;
  std::string name;
};

Data load_data(const Options& o) {
  Data data;
  nn::Dataset &train = data.train, &test = data.test;
  std::string& data_name = data.name;
  if (o.mnist) {
    train =
        nn::load_mnist(*o.mnist / "train-images-idx3-ubyte", *o.mnist / "train-labels-idx1-ubyte");
    test = nn::load_mnist(*o.mnist / "t10k-images-idx3-ubyte", *o.mnist / "t10k-labels-idx1-ubyte");
    data_name = "MNIST from " + o.mnist->string();
  } else {
    // Held-out images are independent draws: another seed, so no image is shared.
    train = nn::make_pattern_dataset(
        {.count = o.train_images, .image_size = 28, .noise = o.noise, .seed = o.seed});
    test = nn::make_pattern_dataset({.count = o.test_images,
                                     .image_size = 28,
                                     .noise = o.noise,
                                     .seed = o.seed ^ 0x9e3779b97f4a7c15ull});
    data_name = "generated patterns (lines, diagonals, corners, crosses, circles)";
  }
  if (train.height != train.width || train.channels != 1) {
    throw std::runtime_error("the example expects square 1-channel images");
  }
  return data;
}

void print_data(const Data& data) {
  std::printf("data: %s: %lld training, %lld held-out images of %lldx%lld, %lld classes\n",
              data.name.c_str(), static_cast<long long>(data.train.size()),
              static_cast<long long>(data.test.size()), static_cast<long long>(data.train.height),
              static_cast<long long>(data.train.width), static_cast<long long>(data.train.classes));
}

int run(const Options& o) {
  const auto start = Clock::now();
  const Data data = load_data(o);
  const nn::Dataset &train = data.train, &test = data.test;
  print_data(data);

  nn::Sequential model =
      nn::make_small_cnn(train.height, train.classes, /*c1=*/8, /*c2=*/16, o.threads);
  model.initialize(o.seed);
  const int64_t input_shape[] = {o.batch, 1, train.height, train.width};
  std::printf("%s\n", model.summary(input_shape).c_str());
  nn::Sgd sgd(model.parameters(), {.learning_rate = o.lr,
                                   .momentum = o.momentum,
                                   .weight_decay = 0.0f,
                                   .accumulation_steps = o.accumulate});
  nn::TrainingProgress progress = fresh_progress(o);
  if (o.resume) {
    progress = nn::load_checkpoint(model, sgd, *o.resume);
    require_same_run(progress, o, *o.resume);
    std::printf("resumed from %s after epoch %lld: held-out accuracy %.2f%%\n", o.resume->c_str(),
                static_cast<long long>(progress.epochs_done),
                100.0 * nn::evaluate_accuracy(model, test, 256));
  }
  std::printf(
      "sgd: lr %g (x%g per epoch), momentum %g, batch %lld x %lld micro-batches, seed %llu, "
      "threads %s\n",
      double(o.lr), double(o.lr_decay), double(o.momentum), static_cast<long long>(o.batch),
      static_cast<long long>(o.accumulate), static_cast<unsigned long long>(o.seed),
      o.threads == 0 ? "all" : std::to_string(o.threads).c_str());
  std::fflush(stdout);

  std::mt19937_64 order_rng = order_generator(progress);
  Progress display(::isatty(STDERR_FILENO) == 1);
  double accuracy = 0.0;
  for (int64_t epoch = progress.epochs_done + 1; epoch <= o.epochs; ++epoch) {
    // Step decay: large steps while the loss falls fast, smaller ones to settle.
    sgd.set_learning_rate(o.lr * std::pow(o.lr_decay, float(epoch - 1)));
    const auto epoch_start = Clock::now();
    const nn::EpochResult result = nn::train_epoch(
        model, sgd, train, o.batch, order_rng, [&](int64_t done, int64_t total, double loss) {
          display.update(epoch, o.epochs, done, total, loss, done / seconds_since(epoch_start));
        });
    progress.epochs_done = epoch;
    progress.order_draws += draws_per_epoch(train);
    const double train_seconds = seconds_since(epoch_start);
    display.clear();
    accuracy = nn::evaluate_accuracy(model, test, 256);
    std::printf("epoch %lld/%lld  loss %.4f  held-out accuracy %6.2f%%  %6.0f images/s  (%.1f s)\n",
                static_cast<long long>(epoch), static_cast<long long>(o.epochs), result.mean_loss,
                100.0 * accuracy, double(result.images) / train_seconds,
                seconds_since(epoch_start));
    std::fflush(stdout);
  }
  if (o.save) {
    nn::save_checkpoint(model, sgd, progress, *o.save);
    std::printf("saved checkpoint %s after epoch %lld\n", o.save->c_str(),
                static_cast<long long>(progress.epochs_done));
  }
  std::printf("done in %.1f s\n", seconds_since(start));
  return 0;
}

#if CONVGEMM_TRAIN_CNN_MPI
namespace distributed = convgemm::distributed;

// Rank 0 reads the checkpoint's bytes and broadcasts them; every rank then loads the same bytes
// into its model and Sgd, so a file that only rank 0's machine has will do. A file rank 0 cannot
// read, or that does not fit, fails on every rank alike (CollectiveError: no MPI_Abort needed).
nn::TrainingProgress resume_on_every_rank(nn::Sequential& model, nn::Sgd& sgd,
                                          const std::filesystem::path& path, const Options& o,
                                          MPI_Comm comm) {
  int rank = 0;
  MPI_Comm_rank(comm, &rank);
  std::vector<uint8_t> bytes;
  std::vector<uint8_t> error;  // rank 0's read error, if any, travels as text
  if (rank == 0) {
    try {
      bytes = nn::read_checkpoint_bytes(path);
    } catch (const std::exception& e) {
      const std::string_view what = e.what();
      error.assign(what.begin(), what.end());
    }
  }
  distributed::broadcast_bytes(error, comm);
  if (!error.empty()) throw distributed::CollectiveError(std::string(error.begin(), error.end()));
  distributed::broadcast_bytes(bytes, comm);
  try {
    const nn::TrainingProgress progress = nn::load_checkpoint(model, sgd, bytes, path);
    require_same_run(progress, o, path);
    return progress;
  } catch (const std::exception& e) {
    // The same bytes and options on every rank: every rank fails here alike. (A refused file
    // changed nothing; a run refused by require_same_run ends anyway.)
    throw distributed::CollectiveError(e.what());
  }
}

// Data-parallel training (src/distributed/README.md): every rank builds the data set and the
// model, takes its own chunks of each global batch and evaluates its share of the held-out
// batches; rank 0 alone prints and writes the checkpoint. The weights, losses and accuracies are
// the same for any number of ranks.
int run_distributed(const Options& o, int rank) {
  const auto start = Clock::now();
  const bool lead = rank == 0;
  const Data data = load_data(o);
  const nn::Dataset &train = data.train, &test = data.test;
  if (lead) print_data(data);

  nn::Sequential model =
      nn::make_small_cnn(train.height, train.classes, /*c1=*/8, /*c2=*/16, o.threads);
  model.initialize(o.seed);
  const int64_t chunk_shape[] = {o.chunk, 1, train.height, train.width};
  if (lead) std::printf("%s\n", model.summary(chunk_shape).c_str());
  distributed::GradientSynchronizer sync(
      model, {.global_batch = o.batch,
              .chunk_size = o.chunk,
              .image_shape = {train.channels, train.height, train.width}});
  nn::Sgd sgd(model.parameters(),
              sync.sgd_options({.learning_rate = o.lr, .momentum = o.momentum}));
  nn::TrainingProgress progress = fresh_progress(o);
  if (o.resume) {
    progress = resume_on_every_rank(model, sgd, *o.resume, o, sync.communicator());
    const double accuracy = distributed::evaluate_accuracy(model, test, 256);
    if (lead) {
      std::printf("resumed from %s after epoch %lld: held-out accuracy %.2f%%\n", o.resume->c_str(),
                  static_cast<long long>(progress.epochs_done), 100.0 * accuracy);
    }
  }
  const int64_t steps = train.size() / o.batch;
  if (lead) {
    std::printf(
        "distributed: %d ranks, global batch %lld = %lld chunks of %lld images (%lld per rank), "
        "%lld steps per epoch (%lld images left out each epoch)\n",
        sync.ranks(), static_cast<long long>(o.batch), static_cast<long long>(sync.chunks()),
        static_cast<long long>(o.chunk), static_cast<long long>(sync.chunks_per_rank()),
        static_cast<long long>(steps), static_cast<long long>(train.size() - steps * o.batch));
    std::printf("sgd: lr %g (x%g per epoch), momentum %g, seed %llu, threads %s per rank\n",
                double(o.lr), double(o.lr_decay), double(o.momentum),
                static_cast<unsigned long long>(o.seed),
                o.threads == 0 ? "all" : std::to_string(o.threads).c_str());
    std::fflush(stdout);
  }

  std::mt19937_64 order_rng = order_generator(progress);
  Progress display(lead && ::isatty(STDERR_FILENO) == 1);
  for (int64_t epoch = progress.epochs_done + 1; epoch <= o.epochs; ++epoch) {
    sgd.set_learning_rate(o.lr * std::pow(o.lr_decay, float(epoch - 1)));
    const auto epoch_start = Clock::now();
    const nn::EpochResult result = distributed::train_epoch(
        sync, sgd, train, order_rng, [&](int64_t done, int64_t total, double loss) {
          display.update(epoch, o.epochs, done, total, loss, done / seconds_since(epoch_start));
        });
    progress.epochs_done = epoch;
    progress.order_draws += draws_per_epoch(train);
    const double train_seconds = seconds_since(epoch_start);
    display.clear();
    const double accuracy = distributed::evaluate_accuracy(model, test, 256);
    if (lead) {
      std::printf(
          "epoch %lld/%lld  loss %.4f  held-out accuracy %6.2f%%  %6.0f images/s  (%.1f s)\n",
          static_cast<long long>(epoch), static_cast<long long>(o.epochs), result.mean_loss,
          100.0 * accuracy, double(result.images) / train_seconds, seconds_since(epoch_start));
      std::fflush(stdout);
    }
  }
  // Every rank holds the same model, Sgd state and progress: rank 0's file is everybody's.
  if (o.save && lead) {
    nn::save_checkpoint(model, sgd, progress, *o.save);
    std::printf("saved checkpoint %s after epoch %lld\n", o.save->c_str(),
                static_cast<long long>(progress.epochs_done));
  }
  if (lead) std::printf("done in %.1f s\n", seconds_since(start));
  return 0;
}
#endif

}  // namespace

int main(int argc, char** argv) {
  Options options;
  try {
    options = parse(argc, argv);
    const int64_t processes = launched_processes();
    if (!options.distributed && processes > 1) {
      throw UsageError("started by an MPI launcher with " + std::to_string(processes) +
                       " processes: add --distributed (each process would otherwise train "
                       "alone and write the same files)");
    }
#if !CONVGEMM_TRAIN_CNN_MPI
    if (options.distributed) {
      throw UsageError(
          "--distributed needs a train_cnn built with MPI (install libopenmpi-dev and "
          "reconfigure)");
    }
#endif
    if (!options.distributed) return run(options);
  } catch (const UsageError& e) {
    std::fprintf(stderr, "train_cnn: %s\n%s", e.what(), kUsage);
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "train_cnn: %s\n", e.what());
    return 1;
  }
#if CONVGEMM_TRAIN_CNN_MPI
  // A failure on any rank ends the whole job (MPI_Abort), never leaves the others waiting.
  distributed::Environment mpi(argc, argv);
  return distributed::run_or_abort("train_cnn",
                                   [&] { return run_distributed(options, mpi.rank()); });
#else
  return 1;  // not reached: --distributed was refused above
#endif
}
