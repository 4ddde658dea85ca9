// The execution context: validation, its worker threads and the workspace's bookkeeping.
#include "fff/core/context.h"

#include <string>

#include "core/parallel.h"
#include "core/thread_pool.h"
#include "fff/core/common.h"

namespace fff {

namespace detail {

void ThreadPoolDeleter::operator()(ThreadPool* pool) const noexcept {
  // A pool from before a fork is left alone in the child: its workers exist in the parent only.
  if (pool && pool->alive()) delete pool;
}

ThreadPool& PoolAccess::pool(Context& ctx) {
  // In a child forked after the pool started (a PyTorch DataLoader worker) its threads are gone,
  // so a new pool starts (the deleter abandons the old one).
  if (!ctx.pool_ || ctx.pool_->threads() != ctx.threads || !ctx.pool_->alive()) {
    ctx.pool_.reset();  // join the old workers before starting new ones
    ctx.pool_.reset(new ThreadPool(ctx.threads));
  }
  return *ctx.pool_;
}

}  // namespace detail

Context::Context(int threads_) : threads(threads_) {
  validate();
}

void Context::validate() const {
  if (threads < 1 || threads > kMaxThreads)
    throw Error("context: threads must be in [1, " + std::to_string(kMaxThreads) + "], got " +
                std::to_string(threads));
}

size_t Workspace::objects() const {
  size_t n = 0;
  for (const Entry& e : entries_)
    for (const Object& o : e.objects) n += o != nullptr;
  return n;
}

Workspace::Entry& Workspace::entry(const std::type_info& type) {
  for (Entry& e : entries_)
    if (e.type == type) return e;
  entries_.push_back(Entry{std::type_index(type), {}});
  return entries_.back();
}

}  // namespace fff
