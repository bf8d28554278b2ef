#pragma once
// The distributed component's error helpers: the layer library's one-sentence messages
// (../nn/check.hpp), and MPI return codes turned into exceptions.

#include <mpi.h>

#include <stdexcept>
#include <string>

#include "../nn/check.hpp"

namespace convgemm::distributed::detail {

using convgemm::nn::detail::fail;
using convgemm::nn::detail::fail_message;
using convgemm::nn::detail::fail_shape;
using convgemm::nn::detail::require_at_least;

// MPI_COMM_WORLD's default handler aborts on any error; a communicator set to MPI_ERRORS_RETURN
// hands the code back, and this names the call that failed.
inline void check_mpi(int code, const char* call) {
  if (code == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING] = {};
  int length = 0;
  MPI_Error_string(code, text, &length);
  std::string message = "convgemm: ";
  message += call;
  message += " failed: ";
  message.append(text, static_cast<std::size_t>(length));
  throw std::runtime_error(message);
}

}  // namespace convgemm::distributed::detail
