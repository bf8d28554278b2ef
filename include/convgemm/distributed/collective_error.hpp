#pragma once
// The distributed component's collective failure.

#include <stdexcept>

namespace convgemm::distributed {

// Raised by a collective check with the same message on every rank of the communicator, so the
// job can report it on each rank and end without MPI_Abort (run_or_abort() does).
class CollectiveError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

}  // namespace convgemm::distributed
