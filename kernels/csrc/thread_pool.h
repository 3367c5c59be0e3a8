// A small pool of worker threads for the row kernels (MLX runs a CPU op on one thread).
#pragma once

#include <cstddef>
#include <functional>

namespace mdpk {

// Threads used by parallel_for (workers + the calling thread): MDP_KERNEL_THREADS if set (>= 1),
// else the CPUs this process may run on.
size_t kernel_threads();

// Calls fn(task) for every task in [0, tasks), spread over the pool and the calling thread;
// returns when all are done. Small jobs (tasks == 1 or one thread) run inline.
void parallel_for(size_t tasks, const std::function<void(size_t)>& fn);

}  // namespace mdpk
