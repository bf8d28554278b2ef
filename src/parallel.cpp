#include "parallel.hpp"

#include <tbb/blocked_range.h>
#include <tbb/global_control.h>
#include <tbb/info.h>
#include <tbb/parallel_for.h>
#include <tbb/task_arena.h>

#include <algorithm>
#include <cassert>

namespace convgemm::detail {

struct WorkerPool::Arena {
  explicit Arena(int slots) : arena(slots) {}
  tbb::task_arena arena;
};

int default_thread_count() {
  const auto cap = tbb::global_control::active_value(tbb::global_control::max_allowed_parallelism);
  return static_cast<int>(std::max<std::size_t>(
      1, std::min<std::size_t>(static_cast<std::size_t>(tbb::info::default_concurrency()), cap)));
}

WorkerPool::WorkerPool(int slots) : slots_(slots), arena_(std::make_unique<Arena>(slots)) {
  assert(slots >= 1);
}
WorkerPool::~WorkerPool() = default;
WorkerPool::WorkerPool(WorkerPool&&) noexcept = default;
WorkerPool& WorkerPool::operator=(WorkerPool&&) noexcept = default;

void WorkerPool::run(int64_t count, const std::function<void(int64_t, int)>& task) {
  if (count <= 0) return;
  arena_->arena.execute([&] {
    // Tasks are coarse (a GEMM each), so one index per TBB task; the simple partitioner keeps
    // the split independent of timing (not that results could depend on it).
    tbb::parallel_for(
        tbb::blocked_range<int64_t>(0, count, 1),
        [&](const tbb::blocked_range<int64_t>& range) {
          const int slot = tbb::this_task_arena::current_thread_index();
          assert(slot >= 0 && slot < slots_);
          for (int64_t index = range.begin(); index != range.end(); ++index) task(index, slot);
        },
        tbb::simple_partitioner());
  });
}

void WorkerPool::run_parts(int64_t count, const std::function<void(int64_t)>& part) {
  if (count == 1) {
    part(0);
    return;
  }
  // Isolated: while this thread waits for the parts, it must not pick up another task of run(),
  // which would reuse this slot's scratch under the parts still reading it.
  tbb::this_task_arena::isolate([&] {
    tbb::parallel_for(
        tbb::blocked_range<int64_t>(0, count, 1),
        [&](const tbb::blocked_range<int64_t>& range) {
          for (int64_t index = range.begin(); index != range.end(); ++index) part(index);
        },
        tbb::simple_partitioner());
  });
}

}  // namespace convgemm::detail
