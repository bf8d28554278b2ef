#pragma once
// MPI's lifetime and a program's failure policy for data-parallel jobs.
//
// The policy: a failure on one rank must end the whole job with a non-zero exit and a message,
// never leave the other ranks waiting in a collective for a partner that is gone. run_or_abort()
// does this with MPI_Abort; errors that every rank raises alike (CollectiveError, from a
// collective check) are reported by each rank and end the job normally instead.
//
// Example:
//   int main(int argc, char** argv) {
//     convgemm::distributed::Environment mpi(argc, argv);
//     return convgemm::distributed::run_or_abort("train", [&] { return train(mpi.rank()); });
//   }

#include <mpi.h>

#include <functional>
#include <string_view>

namespace convgemm::distributed {

// MPI_Init_thread with MPI_THREAD_FUNNELED (oneTBB and OpenBLAS threads never call MPI; all MPI
// calls come from the thread that created the Environment), MPI_Finalize on destruction. One per
// process. Throws std::runtime_error when MPI is already initialised or the library cannot
// provide MPI_THREAD_FUNNELED.
class Environment {
 public:
  Environment(int& argc, char**& argv);
  ~Environment();
  Environment(const Environment&) = delete;
  Environment& operator=(const Environment&) = delete;

  // In MPI_COMM_WORLD.
  int rank() const { return rank_; }
  int ranks() const { return ranks_; }

 private:
  int rank_ = 0, ranks_ = 1;
};

// Runs `body` and returns its result. On an exception it writes one line to stderr,
//   "<program>: rank <r> of <R>: <what()>"
// then a CollectiveError returns 1 (every rank raised it, none is left in a collective), and
// anything else adds " (MPI_Abort: ending every rank)" to the line and calls MPI_Abort(comm, 1),
// which ends every rank of the job, those blocked in a collective included; mpirun then exits
// non-zero.
int run_or_abort(std::string_view program, const std::function<int()>& body,
                 MPI_Comm comm = MPI_COMM_WORLD);

}  // namespace convgemm::distributed
