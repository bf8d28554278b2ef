#pragma once
// The file readers take a path: each input is written to one scratch file per process (in the
// temporary directory), which the reader then opens like any other file.

#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <span>
#include <string>

namespace convgemm::fuzz {

inline std::filesystem::path scratch_file(std::span<const uint8_t> bytes, const char* name) {
  static const std::filesystem::path path =
      std::filesystem::temp_directory_path() /
      ("convgemm_fuzz_" + std::string(name) + "_" + std::to_string(::getpid()));
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()), std::streamsize(bytes.size()));
  return path;
}

}  // namespace convgemm::fuzz
