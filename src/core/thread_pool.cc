// The worker threads of a Context: starting and joining them, running a region, the barrier.
#include "core/thread_pool.h"

#include <pthread.h>

#include <mutex>

#include "core/parallel.h"

namespace fff::detail {

namespace {

thread_local bool t_in_region = false;

// Forks this process has gone through, counted in the child (a handler registered once, when the
// first pool starts; it touches nothing but this counter).
std::atomic<uint64_t> g_forks{0};
uint64_t fork_count() {
  static std::once_flag registered;
  std::call_once(registered,
                 [] { pthread_atfork(nullptr, nullptr, [] { g_forks.fetch_add(1); }); });
  return g_forks.load();
}

// Thrown by a barrier when another thread of the region has failed, to unwind the threads that
// would otherwise wait for it; never leaves the region.
struct RegionAborted {};

// Runs one thread's part of a region with the in-region flag set; a failure is recorded for the
// caller, an abort (another thread's failure) swallowed.
template <class Record>
void run_part(ThreadPool::RegionFn fn, void* arg, Team& team, Record record) {
  t_in_region = true;
  try {
    fn(arg, team);
  } catch (const RegionAborted&) {
  } catch (...) {
    record();
  }
  t_in_region = false;
}

}  // namespace

bool in_region() {
  return t_in_region;
}

void Team::barrier() {
  if (pool_) pool_->barrier_wait(*this);
}

bool ThreadPool::alive() const {
  return fork_count() == forks_;
}

ThreadPool::ThreadPool(int threads, std::chrono::microseconds spin)
    : spin_(spin), forks_(fork_count()) {
  workers_.reserve(static_cast<size_t>(threads > 1 ? threads - 1 : 0));
  try {
    for (int id = 1; id < threads; ++id) workers_.emplace_back([this, id] { worker(id); });
  } catch (...) {  // a thread could not start: stop those that did
    state_.store(kStop);
    start_.wake();
    for (std::thread& w : workers_) w.join();
    throw;
  }
}

ThreadPool::~ThreadPool() {
  state_.store(kStop);
  start_.wake();
  for (std::thread& w : workers_) w.join();
}

void ThreadPool::worker(int id) {
  uint64_t seen = 0;
  for (;;) {
    start_.wait([&] { return state_.load() != seen; }, spin_);
    seen = state_.load();
    if (seen == kStop) return;
    // A region without this worker: the caller does not wait for it, and may already be writing
    // the next region's job, so nothing but state_ is read.
    const int team = static_cast<int>(seen & 0xffff);
    if (id >= team) continue;
    {
      FpModeGuard guard(fp_mode_);
      Team t(this, id, team);
      run_part(fn_, arg_, t, [this] { record_failure(); });
    }
    if (pending_.fetch_sub(1) == 1) done_.wake();
  }
}

void ThreadPool::run(int team, RegionFn fn, void* arg, unsigned fp_mode) {
  fn_ = fn;
  arg_ = arg;
  fp_mode_ = fp_mode;
  arrived_.store(0);
  failed_.store(false);
  failure_ = nullptr;
  pending_.store(team - 1);
  // Region numbers start at 1 above the team bits and never reach kStop (2^48 regions).
  const uint64_t region = (state_.load() >> 16) + 1;
  state_.store(region << 16 | static_cast<uint64_t>(team));
  start_.wake();
  {
    Team t(this, 0, team);
    run_part(fn, arg, t, [this] { record_failure(); });
  }
  done_.wait([&] { return pending_.load() == 0; }, spin_);
  if (failure_) {
    std::exception_ptr e = std::move(failure_);
    failure_ = nullptr;
    std::rethrow_exception(e);
  }
}

void ThreadPool::record_failure() {
  {
    std::lock_guard<std::mutex> lock(failure_mutex_);
    if (!failure_) failure_ = std::current_exception();
  }
  failed_.store(true);
  // Release the threads waiting at a barrier: they see failed_ and unwind.
  phase_.fetch_add(1);
  phase_parker_.wake();
}

void ThreadPool::barrier_wait(Team& t) {
  if (failed_.load()) throw RegionAborted{};
  const uint32_t phase = phase_.load();
  if (arrived_.fetch_add(1) + 1 == t.size()) {
    arrived_.store(0);
    phase_.fetch_add(1);
    phase_parker_.wake();
  } else {
    phase_parker_.wait([&] { return phase_.load() != phase; }, spin_);
  }
  if (failed_.load()) throw RegionAborted{};
}

}  // namespace fff::detail
