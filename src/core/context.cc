// The execution context: validation and the workspace's bookkeeping.
#include "fff/core/context.h"

#include <string>

#include "fff/core/common.h"

namespace fff {

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
