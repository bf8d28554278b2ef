#include "convgemm/distributed/environment.hpp"

#include <cstdio>
#include <exception>
#include <stdexcept>
#include <string>

#include "check.hpp"
#include "convgemm/distributed/synchronizer.hpp"

namespace convgemm::distributed {

Environment::Environment(int& argc, char**& argv) {
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (initialized != 0) {
    throw std::runtime_error(
        "convgemm: MPI is already initialised (one distributed::Environment per process)");
  }
  int provided = MPI_THREAD_SINGLE;
  detail::check_mpi(MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided),
                    "MPI_Init_thread");
  if (provided < MPI_THREAD_FUNNELED) {
    MPI_Finalize();
    throw std::runtime_error(
        "convgemm: the MPI library does not provide MPI_THREAD_FUNNELED (got level " +
        std::to_string(provided) + ")");
  }
  MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
  MPI_Comm_size(MPI_COMM_WORLD, &ranks_);
}

Environment::~Environment() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized == 0) MPI_Finalize();
}

namespace {

// One fprintf per message, so that the lines of different ranks, which mpirun forwards as they
// come, do not interleave mid-line.
void report(std::string_view program, MPI_Comm comm, const char* what, bool aborting) {
  int rank = 0, ranks = 1;
  MPI_Comm_rank(comm, &rank);
  MPI_Comm_size(comm, &ranks);
  std::string line(program);
  line += ": rank ";
  line += std::to_string(rank);
  line += " of ";
  line += std::to_string(ranks);
  line += ": ";
  line += what;
  // Said before the call: Open MPI's own MPI_ABORT notice races with the killing of the
  // processes and is sometimes lost.
  if (aborting) line += " (MPI_Abort: ending every rank)";
  line += "\n";
  std::fputs(line.c_str(), stderr);
  std::fflush(stderr);
}

}  // namespace

int run_or_abort(std::string_view program, const std::function<int()>& body, MPI_Comm comm) {
  try {
    return body();
  } catch (const CollectiveError& e) {
    // Every rank of comm threw this from the same collective check: nobody waits for anybody.
    report(program, comm, e.what(), /*aborting=*/false);
    return 1;
  } catch (const std::exception& e) {
    report(program, comm, e.what(), /*aborting=*/true);
  } catch (...) {
    report(program, comm, "unknown exception", /*aborting=*/true);
  }
  // The other ranks may be blocked in a collective that this rank will never join.
  MPI_Abort(comm, 1);
  return 1;  // not reached: MPI_Abort does not return
}

}  // namespace convgemm::distributed
