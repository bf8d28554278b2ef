#pragma once
// oneTBB over the plan's tasks. The only place that touches TBB.
//
// A plan owns a WorkerPool with one slot per worker thread: run() executes tasks inside a
// tbb::task_arena of exactly that many slots, so this_task_arena::current_thread_index() is
// always a valid slot index for the workspace. tbb::global_control can still lower the number of
// threads that actually join. Results never depend on which slot runs which task: slots only
// pick scratch memory.

#include <cstdint>
#include <functional>
#include <memory>

namespace convgemm::detail {

// Worker count a plan gets when the options leave it open: oneTBB's default concurrency, capped
// by an active tbb::global_control(max_allowed_parallelism).
int default_thread_count();

class WorkerPool {
 public:
  explicit WorkerPool(int slots);
  ~WorkerPool();
  WorkerPool(WorkerPool&&) noexcept;
  WorkerPool& operator=(WorkerPool&&) noexcept;

  int slots() const { return slots_; }

  // Calls task(index, slot) for every index in [0, count), in parallel. Returns when all have
  // finished. (Callers that run BLAS inside tasks keep it single-threaded: see gemm.hpp.)
  void run(int64_t count, const std::function<void(int64_t index, int slot)>& task);

  // From inside a task of run(): calls part(index) for every index in [0, count) in parallel on
  // the same workers, sharing the calling task's slot (parts must not need scratch of their own).
  void run_parts(int64_t count, const std::function<void(int64_t index)>& part);

 private:
  struct Arena;
  int slots_ = 1;
  std::unique_ptr<Arena> arena_;
};

}  // namespace convgemm::detail
