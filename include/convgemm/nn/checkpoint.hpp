#pragma once
// Checkpoints: a model's parameters in a small versioned binary file.
//
// Format, version 1, every integer little-endian:
//   "CGNNCKPT"                    8-byte magic
//   u32 version                   1
//   u32 layer_count, then per layer: u32 length + kind ("conv2d", "relu", ...)
//   u32 parameter_count, then per parameter: u32 length + name ("0.conv2d.weight"),
//                                             u32 rank, rank x i64 dimensions
//   u64 value_count               sum of the parameters' element counts
//   value_count x f32             the values, parameter by parameter (IEEE-754 binary32)
//   u64 checksum                  FNV-1a 64 of every byte before it
//
// Saving writes path + ".tmp", flushes it to disk (fsync) and renames it over `path`, so `path`
// holds the old checkpoint or the new one, never a partial file. Loading reads and verifies the
// whole file into a staging buffer (magic, version, size, checksum, then the architecture against
// the model) before it touches the model: on any error the model is unchanged.

#include <cstdint>
#include <filesystem>

namespace convgemm::nn {

class Sequential;

inline constexpr char kCheckpointMagic[8] = {'C', 'G', 'N', 'N', 'C', 'K', 'P', 'T'};
inline constexpr uint32_t kCheckpointVersion = 1;

// Throws std::runtime_error naming the path and the system error if the file cannot be written
// or renamed (the temporary file is removed).
void save_checkpoint(Sequential& model, const std::filesystem::path& path);

// Throws std::runtime_error when the file cannot be read or is not a valid checkpoint (bad
// magic, unknown version, truncated, trailing bytes, checksum mismatch), and
// std::invalid_argument when it is valid but for another architecture (layer count or kind,
// parameter name or shape; the message names the first difference). The model is unchanged.
void load_checkpoint(Sequential& model, const std::filesystem::path& path);

// FNV-1a 64 of `size` bytes, continuing from `hash` (the checkpoint checksum).
uint64_t fnv1a64(const void* data, std::size_t size, uint64_t hash = 0xcbf29ce484222325ull);

}  // namespace convgemm::nn
