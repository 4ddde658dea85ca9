// The execution context every computing function of fff takes as its first parameter: how many
// threads a call may use, the floating-point mode it runs in, the scratch memory it reuses from
// call to call, and the worker threads it computes on. fff keeps no process-wide setting of its
// own and leaves the caller's settings as it found them: its threads are the context's own (not
// OpenMP's, so OpenMP's settings, OMP_WAIT_POLICY included, do not affect it), it sets OpenBLAS
// to one thread only for the call's duration (fff splits products into single-threaded sgemm
// calls itself, in blocks that do not depend on the thread count) and restores the
// floating-point control register (MXCSR) of every thread it computes on.
//
// The worker threads (threads - 1 of them; the calling thread computes too) start on the first
// call that runs in parallel, start again when `threads` has changed, and are joined when the
// Context is destroyed. Between calls they wait: for about 100 us by spinning, so that the next
// parallel region finds them awake, then asleep, using no CPU.
//
// A Context is used by one calling thread at a time, like a stream: two threads calling fff at
// once need a Context each. It is not const in calls because its workspace changes. OpenBLAS's
// thread count is a single process-wide setting: while calls on several contexts overlap, each
// restores the value it found, so the last one to finish decides what remains.
#pragma once

#include <cstddef>
#include <memory>
#include <typeindex>
#include <typeinfo>
#include <utility>
#include <vector>

namespace fff {

namespace detail {
class ThreadPool;
struct ThreadPoolDeleter {
  void operator()(ThreadPool* pool) const noexcept;
};
struct PoolAccess;
}  // namespace detail

// Scratch objects owned by a Context and released with it (or by clear()): buffers that the CMM
// engine and the BERT encoder keep between calls so that a call of a fixed shape allocates
// nothing. Objects are keyed by their type and a slot number (a thread's number in a parallel
// region, or 0), default-constructed on first use.
class Workspace {
 public:
  Workspace() = default;
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;
  Workspace(Workspace&&) = default;
  Workspace& operator=(Workspace&&) = default;

  // The object of type T in `slot`, made on first use. Making one is not thread-safe: before a
  // parallel region whose threads each take their own slot, the calling thread reserves them.
  template <class T>
  T& get(size_t slot = 0) {
    Entry& e = entry(typeid(T));
    if (slot >= e.objects.size() || !e.objects[slot]) make<T>(e, slot);
    return *static_cast<T*>(e.objects[slot].get());
  }
  // Makes slots 0 .. n-1 of type T exist, so that threads may then get<T>(i) for distinct i at
  // once (lookups of existing objects only read).
  template <class T>
  void reserve(size_t n) {
    Entry& e = entry(typeid(T));
    for (size_t i = 0; i < n; ++i)
      if (i >= e.objects.size() || !e.objects[i]) make<T>(e, i);
  }
  // Number of objects held (all types and slots).
  size_t objects() const;
  // Destroys every object (the next call makes them again).
  void clear() { entries_.clear(); }

 private:
  using Object = std::unique_ptr<void, void (*)(void*)>;
  struct Entry {
    std::type_index type;
    std::vector<Object> objects;
  };
  Entry& entry(const std::type_info& type);
  template <class T>
  static void make(Entry& e, size_t slot) {
    while (e.objects.size() <= slot) e.objects.emplace_back(nullptr, [](void*) {});
    e.objects[slot] = Object(new T(), [](void* p) { delete static_cast<T*>(p); });
  }
  std::vector<Entry> entries_;  // a few types: a linear search beats hashing
};

struct Context {
  // Threads fff uses for a call (its parallel regions and its sgemm blocks), 1 .. kMaxThreads.
  // Results do not depend on it: work is split by rows with fixed reductions.
  int threads = 1;
  // Subnormal floats are treated as zero (FTZ and DAZ set in MXCSR) on every thread that
  // computes, for the duration of a call; the caller's MXCSR is restored after. Hardened trees
  // drive path probabilities far below 1e-38, and arithmetic on such subnormals is tens of times
  // slower on x86, in sgemm too. Results stay deterministic (only values below 1.2e-38 change, to
  // zero). When false, the calling thread's own mode is used on every thread of the call.
  bool flush_subnormals = true;
  Workspace workspace;

  static constexpr int kMaxThreads = 1024;

  Context() = default;
  // Throws fff::Error naming `threads` unless 1 <= threads <= kMaxThreads.
  explicit Context(int threads_);
  Context(const Context&) = delete;
  Context& operator=(const Context&) = delete;
  Context(Context&&) = default;
  Context& operator=(Context&&) = default;

  // Throws fff::Error naming the field if a setting is out of range (every call checks).
  void validate() const;

 private:
  friend class CallScope;
  friend struct detail::PoolAccess;
  int depth_ = 0;  // calls of fff under way on this context (nested calls share the outer setup)
  // The worker threads, made on first use (a pointer, so that a Context stays movable).
  std::unique_ptr<detail::ThreadPool, detail::ThreadPoolDeleter> pool_;
};

}  // namespace fff
