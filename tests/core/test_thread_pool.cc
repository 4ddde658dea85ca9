// The Context's worker threads (core/thread_pool.h, core/parallel.h): every index runs exactly
// once, regions run on distinct threads with the caller as thread 0, nested calls run inline,
// barriers and `single` synchronise a team, workers compute in the caller's floating-point mode,
// the pool follows ctx.threads and moves with its Context, and exceptions reach the caller.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
#if defined(__SSE__)
#include <xmmintrin.h>
#endif

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <thread>
#include <vector>

#include "core/parallel.h"
#include "core/thread_pool.h"
#include "fff/core/context.h"

namespace {

using fff::Context;
using fff::Team;
using std::chrono::microseconds;

#if defined(__SSE__)
constexpr unsigned kFlushBits = 0x8040;
unsigned flush_bits() {
  return _mm_getcsr() & kFlushBits;
}
// Sets the calling thread's FTZ/DAZ bits; the destructor puts the old MXCSR back.
struct ScopedMode {
  explicit ScopedMode(bool flush) : saved(_mm_getcsr()) {
    _mm_setcsr(flush ? saved | kFlushBits : saved & ~kFlushBits);
  }
  ~ScopedMode() { _mm_setcsr(saved); }
  unsigned saved;
};
#endif

// Runs fn on `team` threads and returns each thread's id as the OS knows it, by team.id().
std::vector<std::thread::id> thread_ids(Context& ctx, int team) {
  std::vector<std::thread::id> ids(static_cast<size_t>(team));
  int seen = 0;
  fff::parallel_region(ctx, team, [&](Team& t) {
    ids[static_cast<size_t>(t.id())] = std::this_thread::get_id();
    if (t.id() == 0) seen = t.size();
  });
  ids.resize(static_cast<size_t>(seen));
  return ids;
}

void expect_distinct(const std::vector<std::thread::id>& ids) {
  for (size_t i = 0; i < ids.size(); ++i)
    for (size_t j = i + 1; j < ids.size(); ++j) EXPECT_NE(ids[i], ids[j]) << i << " " << j;
}

TEST(ThreadPool, EveryIndexRunsExactlyOnce) {
  for (int threads : {1, 2, 3, 4, 7}) {
    Context ctx(threads);
    for (int64_t n : {0, 1, 2, 3, 5, 7, 8, 64, 1000, 4097}) {
      std::vector<std::atomic<int>> hits(static_cast<size_t>(n));
      fff::parallel_for(ctx, n, [&](int64_t i) { hits[static_cast<size_t>(i)].fetch_add(1); });
      for (int64_t i = 0; i < n; ++i)
        ASSERT_EQ(hits[static_cast<size_t>(i)].load(), 1)
            << "static, threads " << threads << ", n " << n << ", i " << i;
      std::vector<std::atomic<int>> dyn(static_cast<size_t>(n));
      fff::parallel_for_dynamic(ctx, n, 3, [&](int64_t i) { dyn[static_cast<size_t>(i)]++; });
      for (int64_t i = 0; i < n; ++i)
        ASSERT_EQ(dyn[static_cast<size_t>(i)].load(), 1)
            << "dynamic, threads " << threads << ", n " << n << ", i " << i;
    }
  }
}

TEST(ThreadPool, StaticRangesAreContiguousAndBalanced) {
  for (int team : {1, 2, 3, 5, 16})
    for (int64_t n : {0, 1, 4, 15, 16, 17, 1001}) {
      int64_t next = 0;
      for (int id = 0; id < team; ++id) {
        const fff::Range r = fff::static_range(n, id, team);
        EXPECT_EQ(r.begin, next);
        const int64_t len = r.end - r.begin;
        EXPECT_TRUE(len == n / team || len == n / team + 1) << n << " over " << team;
        next = r.end;
      }
      EXPECT_EQ(next, n);
    }
}

// Slices of whole groups of `align` (but the last): contiguous, covering n, each at most one
// group longer than an equal share.
TEST(ThreadPool, AlignedRangesAreContiguousWholeGroupsAndBalanced) {
  for (int team : {1, 2, 3, 5})
    for (int64_t align : {1, 6})
      for (int64_t n : {0, 1, 5, 6, 7, 512, 1001}) {
        int64_t next = 0;
        for (int id = 0; id < team; ++id) {
          const fff::Range r = fff::aligned_range(n, align, id, team);
          EXPECT_EQ(r.begin, next);
          const int64_t len = r.end - r.begin;
          EXPECT_GE(len, 0);
          if (r.end < n) EXPECT_EQ(len % align, 0) << n << " over " << team;
          EXPECT_LT(len, (n + team - 1) / team + align) << n << " over " << team;
          next = r.end;
        }
        EXPECT_EQ(next, n) << n << " over " << team << " in groups of " << align;
      }
  EXPECT_EQ(fff::aligned_range(512, 6, 0, 2).end, 258);  // 258 and 254 rows, not 288 and 224
}

TEST(ThreadPool, ParallelForUsesAtMostNThreadsInContiguousSlices) {
  Context ctx(4);
  // Three indices on a 4-thread context: three threads, one index each.
  std::vector<std::thread::id> by_index(3);
  fff::parallel_for(ctx, 3, [&](int64_t i) { by_index[i] = std::this_thread::get_id(); });
  EXPECT_EQ(by_index[0], std::this_thread::get_id());  // the caller is thread 0
  expect_distinct(by_index);
  // 10 indices: slices of 3, 3, 2, 2 in order, each on one thread.
  std::vector<std::thread::id> ten(10);
  fff::parallel_for(ctx, 10, [&](int64_t i) { ten[i] = std::this_thread::get_id(); });
  const std::vector<std::thread::id> first = {ten[0], ten[3], ten[6], ten[8]};
  expect_distinct(first);
  EXPECT_EQ(ten[1], ten[0]);
  EXPECT_EQ(ten[2], ten[0]);
  EXPECT_EQ(ten[5], ten[3]);
  EXPECT_EQ(ten[7], ten[6]);
  EXPECT_EQ(ten[9], ten[8]);
}

TEST(ThreadPool, RegionsRunOnDistinctThreadsWithTheCallerFirst) {
  Context ctx(4);
  const auto ids = thread_ids(ctx, 4);
  ASSERT_EQ(ids.size(), 4u);
  EXPECT_EQ(ids[0], std::this_thread::get_id());
  expect_distinct(ids);
  EXPECT_EQ(thread_ids(ctx, 9).size(), 4u);  // never more than ctx.threads
  EXPECT_EQ(thread_ids(ctx, 1).size(), 1u);
  EXPECT_FALSE(fff::detail::in_region());
}

TEST(ThreadPool, NestedCallsRunInline) {
  Context ctx(3), other(2);
  std::atomic<int> bad{0}, nested{0};
  fff::parallel_region(ctx, 3, [&](Team& t) {
    if (!fff::detail::in_region()) bad++;
    const auto me = std::this_thread::get_id();
    // The same context (as a layer calling gemm inside its region) and another one.
    for (Context* c : {&ctx, &other}) {
      fff::parallel_for(*c, 8, [&](int64_t) {
        if (std::this_thread::get_id() != me) bad++;
        nested++;
      });
      fff::parallel_region(*c, 3, [&](Team& inner) {
        if (inner.size() != 1 || inner.id() != 0 || std::this_thread::get_id() != me) bad++;
        inner.barrier();  // a team of one does not wait
      });
      fff::parallel_for_dynamic(*c, 5, 2, [&](int64_t) {
        if (std::this_thread::get_id() != me) bad++;
      });
    }
    t.barrier();
  });
  EXPECT_EQ(bad.load(), 0);
  EXPECT_EQ(nested.load(), 3 * 2 * 8);
  EXPECT_FALSE(fff::detail::in_region());
}

TEST(ThreadPool, BarrierAndSingleSynchroniseTheTeam) {
  for (int threads : {2, 3, 4}) {
    Context ctx(threads);
    const int rounds = 100;
    std::vector<std::atomic<int>> stage(static_cast<size_t>(threads));
    std::atomic<int> singles{0}, bad{0};
    int shared = 0;  // written by single() alone, read by all after its barrier
    fff::parallel_region(ctx, threads, [&](Team& t) {
      for (int round = 1; round <= rounds; ++round) {
        stage[static_cast<size_t>(t.id())].store(round);
        t.barrier();
        for (int k = 0; k < t.size(); ++k)
          if (stage[static_cast<size_t>(k)].load() != round) bad++;
        t.barrier();
        t.single([&] {
          singles++;
          shared = round;
        });
        if (shared != round) bad++;
        t.barrier();  // nobody writes `shared` again before everyone has read it
      }
    });
    EXPECT_EQ(bad.load(), 0) << threads << " threads";
    EXPECT_EQ(singles.load(), rounds);
  }
}

#if defined(__SSE__)
TEST(ThreadPool, WorkersComputeInTheCallersModeAndDoNotKeepIt) {
  Context ctx(3);
  for (bool flush : {true, false, true, false}) {
    ScopedMode mode(flush);
    std::vector<unsigned> seen(3, 1);
    fff::parallel_region(ctx, 3,
                         [&](Team& t) { seen[static_cast<size_t>(t.id())] = flush_bits(); });
    for (int k = 0; k < 3; ++k)
      EXPECT_EQ(seen[static_cast<size_t>(k)], flush ? kFlushBits : 0u)
          << "thread " << k << ", caller flush " << flush;
  }
  // A worker that changes its own MXCSR inside a region finds the mode of the next caller
  // anyway, and the caller's own control bits are untouched.
  {
    ScopedMode mode(true);
    fff::parallel_region(ctx, 3, [&](Team& t) {
      if (t.id() > 0) _mm_setcsr(_mm_getcsr() & ~kFlushBits);
    });
    std::vector<unsigned> seen(3, 1);
    fff::parallel_region(ctx, 3,
                         [&](Team& t) { seen[static_cast<size_t>(t.id())] = flush_bits(); });
    for (int k = 0; k < 3; ++k) EXPECT_EQ(seen[static_cast<size_t>(k)], kFlushBits) << k;
    EXPECT_EQ(flush_bits(), kFlushBits);
  }
}
#endif

TEST(ThreadPool, FollowsTheContextsThreadCount) {
  Context ctx(2);
  EXPECT_EQ(thread_ids(ctx, 8).size(), 2u);
  const auto two = thread_ids(ctx, 8);
  ctx.threads = 4;
  const auto four = thread_ids(ctx, 8);
  ASSERT_EQ(four.size(), 4u);
  expect_distinct(four);
  ctx.threads = 3;
  const auto three = thread_ids(ctx, 8);
  ASSERT_EQ(three.size(), 3u);
  expect_distinct(three);
  ctx.threads = 1;
  EXPECT_EQ(thread_ids(ctx, 8).size(), 1u);
  ctx.threads = 2;
  EXPECT_EQ(thread_ids(ctx, 8).size(), 2u);
  (void)two;
}

TEST(ThreadPool, MovesWithItsContext) {
  Context a(3);
  std::atomic<int64_t> sum{0};
  fff::parallel_for(a, 100, [&](int64_t i) { sum += i; });
  Context b(std::move(a));
  fff::parallel_for(b, 100, [&](int64_t i) { sum += i; });
  EXPECT_EQ(thread_ids(b, 3).size(), 3u);
  Context c(2);
  fff::parallel_for(c, 100, [&](int64_t i) { sum += i; });
  c = std::move(b);  // c's own workers are joined, b's move over
  fff::parallel_for(c, 100, [&](int64_t i) { sum += i; });
  EXPECT_EQ(thread_ids(c, 3).size(), 3u);
  EXPECT_EQ(sum.load(), 4 * 4950);
  // A moved-from context still works: it starts a pool of its own when next used.
  a.threads = 2;
  EXPECT_EQ(thread_ids(a, 2).size(), 2u);
}

TEST(ThreadPool, DestroysWithSleepingOrSpinningWorkers) {
  for (int k = 0; k < 20; ++k) {  // spinning: destroyed right after a region
    Context ctx(3);
    fff::parallel_for(ctx, 3, [](int64_t) {});
  }
  Context ctx(4);
  fff::parallel_for(ctx, 4, [](int64_t) {});
  // Well past the spin: the workers sleep, and are woken to exit.
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  // A context whose pool never started has nothing to join.
  Context unused(8);
}

TEST(ThreadPool, ManyBackToBackRegions) {
  // Two threads: more than the machine's cores would make this a test of the OS's scheduler.
  Context ctx(2);
  std::vector<int64_t> per_index(2, 0);
  const int regions = 10000;
  for (int r = 0; r < regions; ++r)
    fff::parallel_for(ctx, 2, [&](int64_t i) { per_index[static_cast<size_t>(i)] += i + 1; });
  EXPECT_EQ(per_index[0], regions);
  EXPECT_EQ(per_index[1], 2 * regions);
}

// Regions separated by pauses around the spin time: workers go to sleep at all moments of a
// region's start, which must never lose a wake-up.
TEST(ThreadPool, WakesSleepingWorkers) {
  for (int spin_us : {0, 20}) {
    fff::detail::ThreadPool pool(3, microseconds(spin_us));
    std::atomic<int> count{0};
    auto fn = [](void* arg, Team& t) {
      static_cast<std::atomic<int>*>(arg)->fetch_add(1);
      t.barrier();
    };
    for (int r = 0; r < 400; ++r) {
      pool.run(3, fn, &count, 0);
      if (r % 4 == 1) std::this_thread::sleep_for(microseconds(r % 50));
    }
    EXPECT_EQ(count.load(), 3 * 400) << "spin " << spin_us;
  }
}

TEST(ThreadPool, ExceptionsReachTheCaller) {
  Context ctx(3);
  // From a worker, from the caller, and from several threads at once (one of them arrives).
  for (int64_t bad : {8, 0, -1}) {
    try {
      fff::parallel_for(ctx, 9, [&](int64_t i) {
        if (i == bad || (bad < 0 && i % 3 == 0))
          throw std::runtime_error("index " + std::to_string(i));
      });
      ADD_FAILURE() << "no exception for " << bad;
    } catch (const std::runtime_error& e) {
      if (bad >= 0) {
        EXPECT_EQ(std::string(e.what()), "index " + std::to_string(bad));
      }
    }
  }
  // A thread that throws while the others wait at a barrier does not leave them waiting.
  for (int thrower : {0, 1, 2}) {
    std::atomic<int> after{0};
    EXPECT_THROW(fff::parallel_region(ctx, 3,
                                      [&](Team& t) {
                                        if (t.id() == thrower) throw std::logic_error("no");
                                        t.barrier();
                                        after++;
                                      }),
                 std::logic_error);
    EXPECT_EQ(after.load(), 0) << thrower;
  }
  // The pool works on after a failure.
  std::atomic<int> n{0};
  fff::parallel_region(ctx, 3, [&](Team& t) {
    t.barrier();
    n++;
  });
  EXPECT_EQ(n.load(), 3);
  // Inline (one thread), the exception simply propagates.
  Context one(1);
  EXPECT_THROW(fff::parallel_for(one, 2, [](int64_t) { throw std::runtime_error("x"); }),
               std::runtime_error);
}

// A child forked while the pool's workers exist (a DataLoader worker under PyTorch) has none of
// them: its calls start a pool of their own instead of waiting for workers that are not there.
TEST(ThreadPool, WorksInAForkedChild) {
  Context ctx(3);
  std::atomic<int64_t> sum{0};
  fff::parallel_for(ctx, 10, [&](int64_t i) { sum += i; });
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    std::atomic<int64_t> s{0};
    fff::parallel_for(ctx, 10, [&](int64_t i) { s += i; });
    ctx.threads = 2;
    fff::parallel_for(ctx, 10, [&](int64_t i) { s += i; });
    _exit(s.load() == 90 ? 0 : 1);
  }
  int status = 0;
  pid_t done = 0;
  for (int k = 0; k < 1000 && done == 0; ++k) {  // 10 s at most
    done = waitpid(child, &status, WNOHANG);
    if (done == 0) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  if (done == 0) {
    kill(child, SIGKILL);
    waitpid(child, &status, 0);
    FAIL() << "the forked child hung";
  }
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  fff::parallel_for(ctx, 10, [&](int64_t i) { sum += i; });  // the parent's pool is unharmed
  EXPECT_EQ(sum.load(), 90);
}

}  // namespace
