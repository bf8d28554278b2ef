#pragma once
// Checkpoints: a model's parameters and, for resuming training exactly, the optimizer's state and
// the training loop's position, in a small versioned binary file.
//
// Format, version 2, every integer little-endian, floats as IEEE-754 binary32 bits:
//   "CGNNCKPT"                    8-byte magic
//   u32 version                   2
//   u32 layer_count, then per layer: u32 length + kind ("conv2d", "relu", ...)
//   u32 parameter_count, then per parameter: u32 length + name ("0.conv2d.weight"),
//                                             u32 rank, rank x i64 dimensions
//   u64 value_count               sum of the parameters' element counts
//   u32 contents                  bit 0: training state; bit 1: momentum buffers (with bit 0)
//   if training state:            f32 learning_rate, f32 momentum, f32 weight_decay,
//                                 i64 accumulation_steps, i64 updates (SgdState),
//                                 i64 epochs_done, u64 order_seed, u64 order_draws,
//                                 f32 base_learning_rate, f32 learning_rate_decay
//                                 (TrainingProgress)
//   value_count x f32             the values, parameter by parameter
//   if momentum buffers:          value_count x f32, the velocity in the same order
//   u64 checksum                  FNV-1a 64 of every byte before it
//
// Version 1 (this layout without `contents` and what it announces: parameters only) is still
// read by the rule: its parameters load with load_checkpoint(model, path); resuming training from
// it is refused with a message naming version 1. Other versions are refused by number.
//
// Saving writes path + ".tmp", flushes it to disk (fsync) and renames it over `path`, so `path`
// holds the old checkpoint or the new one, never a partial file. Loading reads and verifies the
// whole file into a staging buffer (magic, version, size, checksum, then the architecture against
// the model, then the optimizer state against the Sgd) before it touches anything: on any error
// the model and the Sgd are unchanged.
//
// Example (a training loop that can stop after any epoch and continue bit for bit):
//   nn::TrainingProgress progress{.order_seed = 2, .base_learning_rate = 0.02f};
//   if (resume) progress = nn::load_checkpoint(model, sgd, path);
//   std::mt19937_64 order(progress.order_seed);
//   order.discard(progress.order_draws);
//   ... train epochs progress.epochs_done + 1 ... total, adding each epoch's draws ...
//   nn::save_checkpoint(model, sgd, progress, path);

#include <cstdint>
#include <filesystem>
#include <span>
#include <string_view>
#include <vector>

namespace convgemm::nn {

class Sequential;
class Sgd;

inline constexpr char kCheckpointMagic[8] = {'C', 'G', 'N', 'N', 'C', 'K', 'P', 'T'};
inline constexpr uint32_t kCheckpointVersion = 2;

// Where a training run stands after epochs_done whole epochs: the data order's generator
// (std::mt19937_64 seeded with order_seed, order_draws outputs consumed) and the learning-rate
// schedule, learning rate of epoch e (from 1) = base_learning_rate x learning_rate_decay^(e - 1).
struct TrainingProgress {
  int64_t epochs_done = 0;
  uint64_t order_seed = 0;
  uint64_t order_draws = 0;
  float base_learning_rate = 0.0f;
  float learning_rate_decay = 1.0f;
};

// Parameters only (contents 0). Throws std::runtime_error naming the path and the system error if
// the file cannot be written or renamed (the temporary file is removed).
void save_checkpoint(Sequential& model, const std::filesystem::path& path);
// Parameters, sgd.state() and progress. sgd must hold the model's parameters. Also throws
// std::invalid_argument when micro-batches are pending (Sgd::state()) or progress.epochs_done < 0,
// before writing anything.
void save_checkpoint(Sequential& model, const Sgd& sgd, const TrainingProgress& progress,
                     const std::filesystem::path& path);

// Loads the parameters of a version 1 or 2 file (any training state in it is ignored). Throws
// std::runtime_error when the file cannot be read or is not a valid checkpoint (bad magic,
// unknown version, truncated, trailing bytes, checksum mismatch), and std::invalid_argument when
// it is valid but for another architecture (layer count or kind, parameter name or shape; the
// message names the first difference). The model is unchanged then.
void load_checkpoint(Sequential& model, const std::filesystem::path& path);

// Loads parameters and the Sgd's state (Sgd::restore) and returns the progress. Throws as above,
// and std::runtime_error when the file holds no training state (version 1 files never do),
// std::invalid_argument when its state does not fit sgd (Sgd::restore's rules) or sgd does not
// hold the model's parameters. Neither the model nor the Sgd changes then.
TrainingProgress load_checkpoint(Sequential& model, Sgd& sgd, const std::filesystem::path& path);
// The same on a file's bytes already in memory (read by read_checkpoint_bytes(), e.g. on one
// rank and broadcast); `name` stands for the path in messages.
TrainingProgress load_checkpoint(Sequential& model, Sgd& sgd, std::span<const uint8_t> bytes,
                                 const std::filesystem::path& name);
// The file's bytes, unchecked. Throws std::runtime_error when it cannot be read.
std::vector<uint8_t> read_checkpoint_bytes(const std::filesystem::path& path);

// FNV-1a 64 of `size` bytes, continuing from `hash` (the checkpoint checksum).
uint64_t fnv1a64(const void* data, std::size_t size, uint64_t hash = 0xcbf29ce484222325ull);

}  // namespace convgemm::nn
