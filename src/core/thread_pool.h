// The worker threads of a Context (internal header; core/parallel.h is the interface the
// library's code uses). fff used OpenMP, whose regions cost ~70 us each when the process sets
// OMP_WAIT_POLICY=PASSIVE (as PyTorch users do): every region woke sleeping threads through a
// futex. The pool's workers instead spin for a bounded time after each region, so that the
// back-to-back regions of a call, and of consecutive calls, find them awake whatever the
// environment says, then sleep, so that they stop burning a core soon after fff returns.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

namespace fff::detail {

// How long a waiting thread spins (with a pause instruction) before it sleeps.
#ifndef FFF_POOL_SPIN_US
#define FFF_POOL_SPIN_US 100
#endif
inline constexpr std::chrono::microseconds kDefaultSpin{FFF_POOL_SPIN_US};
// How long it spins before it also yields the core between looks at the clock.
#ifndef FFF_POOL_YIELD_AFTER_US
#define FFF_POOL_YIELD_AFTER_US 10
#endif
inline constexpr std::chrono::microseconds kSpinBeforeYield{FFF_POOL_YIELD_AFTER_US};

// A place to wait for a condition that other threads make true: spin, then sleep on a condition
// variable. Whoever makes the condition true (with a seq_cst store) calls wake(), which costs one
// load while nobody sleeps.
class Parker {
 public:
  template <class Done>
  void wait(Done done, std::chrono::microseconds spin);
  void wake();

 private:
  std::atomic<int> sleepers_{0};
  std::mutex mutex_;
  std::condition_variable cv_;
};

// True while the calling thread runs a region of some pool (as its worker or as the caller):
// parallel calls made there run inline, and CallScope knows it is inside a call's region.
bool in_region();

class ThreadPool;

// A thread's view of the region it runs: its number (0 is the calling thread), the team's size,
// and a barrier of the team.
class Team {
 public:
  int id() const { return id_; }
  int size() const { return size_; }
  // Waits until every thread of the team has reached it (nothing with a team of one). If another
  // thread of the region has thrown, it throws too, so that no thread waits for it forever.
  void barrier();
  // fn() on thread 0 while the others wait, then a barrier: OpenMP's `single`.
  template <class F>
  void single(F&& fn) {
    if (id_ == 0) fn();
    barrier();
  }

 private:
  friend class ThreadPool;
  Team(ThreadPool* pool, int id, int size) : pool_(pool), id_(id), size_(size) {}
  ThreadPool* pool_;  // null for a region run inline
  int id_, size_;
  friend Team inline_team();
};

inline Team inline_team() {
  return Team(nullptr, 0, 1);
}

class ThreadPool {
 public:
  // `threads` counts the calling thread: threads - 1 workers are started.
  explicit ThreadPool(int threads, std::chrono::microseconds spin = kDefaultSpin);
  ~ThreadPool();  // joins the workers (they must be between regions)
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int threads() const { return static_cast<int>(workers_.size()) + 1; }
  // False in a child process forked after the pool started: its workers did not survive the
  // fork, so the pool can neither run a region nor be joined there.
  bool alive() const;

  using RegionFn = void (*)(void* arg, Team& team);
  // fn(arg, team) on threads 0 .. team - 1 (2 <= team <= threads()), thread 0 being the caller;
  // workers run it in floating-point mode `fp_mode` (as fp_mode() gives it) and leave their own
  // mode as it was. Returns when all have finished; rethrows the first exception thrown.
  void run(int team, RegionFn fn, void* arg, unsigned fp_mode);

 private:
  friend class Team;
  void worker(int id);
  void record_failure();
  void barrier_wait(Team& t);

  const std::chrono::microseconds spin_;
  const uint64_t forks_;  // fork_count() when the pool started
  std::vector<std::thread> workers_;

  // A region is published by one store of `state_`: its number (bits 16 and up, never zero for a
  // region) and its team size (the low 16 bits), so a worker learns whether it is in the team
  // without reading the job, which the caller may already have replaced for a later region when
  // the worker is not in the team. kStop asks the workers to exit.
  static constexpr uint64_t kStop = ~uint64_t{0};
  std::atomic<uint64_t> state_{0};
  Parker start_;
  // The job: written by the caller before the store of state_, read by team members after.
  RegionFn fn_ = nullptr;
  void* arg_ = nullptr;
  unsigned fp_mode_ = 0;

  std::atomic<int> pending_{0};  // team members (workers) still running the region
  Parker done_;

  // The barrier: arrivals in the current phase, and the phase number.
  std::atomic<int> arrived_{0};
  std::atomic<uint32_t> phase_{0};
  Parker phase_parker_;

  std::atomic<bool> failed_{false};
  std::mutex failure_mutex_;
  std::exception_ptr failure_;
};

template <class Done>
void Parker::wait(Done done, std::chrono::microseconds spin) {
  if (done()) return;
  // Reading the clock costs tens of nanoseconds: look at it every 64 pauses. After the first
  // kSpinBeforeYield, yield the core at each look: that lets the thread we wait for run when
  // there are more threads than cores (a pure spin then cost ~200 us per region on 3 threads
  // and 2 cores), and a yield that finds nothing else to run returns at once.
  const auto now = std::chrono::steady_clock::now();
  const auto deadline = now + spin, yield_from = now + kSpinBeforeYield;
  for (;;) {
    for (int i = 0; i < 64; ++i) {
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause();
#elif defined(__aarch64__)
      asm volatile("yield");
#endif
      if (done()) return;
    }
    const auto t = std::chrono::steady_clock::now();
    if (t >= deadline) break;
    if (t >= yield_from) {
      std::this_thread::yield();
      if (done()) return;
    }
  }
  // Registered before the last check of done(): a waker that stores after it sees the count (both
  // seq_cst) and takes the mutex, so the notification cannot fall between check and sleep.
  sleepers_.fetch_add(1);
  {
    std::unique_lock<std::mutex> lock(mutex_);
    cv_.wait(lock, done);
  }
  sleepers_.fetch_sub(1);
}

inline void Parker::wake() {
  if (sleepers_.load() == 0) return;
  { std::lock_guard<std::mutex> lock(mutex_); }
  cv_.notify_all();
}

}  // namespace fff::detail
