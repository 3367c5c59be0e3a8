#include "thread_pool.h"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include <unistd.h>
#if defined(__linux__)
#include <sched.h>
#endif

namespace mdpk {
namespace {

size_t detect_threads() {
  if (const char* env = std::getenv("MDP_KERNEL_THREADS")) {
    long requested = std::strtol(env, nullptr, 10);
    if (requested >= 1) {
      return static_cast<size_t>(std::min(requested, 64L));
    }
  }
#if defined(__linux__)
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    return static_cast<size_t>(std::max(1, CPU_COUNT(&set)));
  }
#endif
  return std::max(1u, std::thread::hardware_concurrency());
}

// Workers sleep on a condition variable between jobs; a job is a task counter they drain.
class Pool {
 public:
  explicit Pool(size_t workers) : owner_pid_(getpid()) {
    for (size_t i = 0; i < workers; ++i) {
      std::thread([this] { work(); }).detach();
    }
    workers_ = workers;
  }

  pid_t owner_pid() const {
    return owner_pid_;
  }

  void run(size_t tasks, const std::function<void(size_t)>& fn) {
    std::lock_guard<std::mutex> serial(run_mutex_);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      job_ = &fn;
      tasks_ = tasks;
      next_.store(0);
      busy_ = workers_;
      error_ = nullptr;
      ++generation_;
    }
    wake_.notify_all();
    drain();
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [this] { return busy_ == 0; });
    job_ = nullptr;
    if (error_) {
      std::rethrow_exception(error_);
    }
  }

 private:
  void drain() {
    for (size_t t = next_.fetch_add(1); t < tasks_; t = next_.fetch_add(1)) {
      try {
        (*job_)(t);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mutex_);
        if (!error_) {
          error_ = std::current_exception();
        }
      }
    }
  }

  void work() {
    unsigned long long seen = 0;
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return generation_ != seen; });
        seen = generation_;
      }
      drain();
      {
        std::lock_guard<std::mutex> lock(mutex_);
        --busy_;
      }
      done_.notify_one();
    }
  }

  pid_t owner_pid_;
  size_t workers_ = 0;
  std::mutex run_mutex_;
  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable done_;
  const std::function<void(size_t)>* job_ = nullptr;
  size_t tasks_ = 0;
  std::atomic<size_t> next_{0};
  size_t busy_ = 0;
  unsigned long long generation_ = 0;
  std::exception_ptr error_;
};

std::mutex pool_mutex;
Pool* pool = nullptr;  // never freed: detached workers may outlive static destructors at exit

Pool& get_pool() {
  std::lock_guard<std::mutex> lock(pool_mutex);
  // After fork() the child has no worker threads: start a fresh pool there.
  if (pool == nullptr || pool->owner_pid() != getpid()) {
    pool = new Pool(kernel_threads() - 1);
  }
  return *pool;
}

}  // namespace

size_t kernel_threads() {
  static const size_t threads = detect_threads();
  return threads;
}

void parallel_for(size_t tasks, const std::function<void(size_t)>& fn) {
  if (tasks == 0) {
    return;
  }
  if (tasks == 1 || kernel_threads() == 1) {
    for (size_t t = 0; t < tasks; ++t) {
      fn(t);
    }
    return;
  }
  get_pool().run(tasks, fn);
}

}  // namespace mdpk
