// Atomic file writes: a temporary file in the same directory, flushed to disk, then renamed over
// the target, so that a crash never leaves a half-written file.
#pragma once

#include <functional>
#include <ostream>
#include <string>

namespace fff {

// Calls write(out) on a temporary file next to `path`, then fsyncs and renames it to `path`.
// Throws fff::Error starting with the path on any failure, and removes the temporary file.
void write_file_atomically(const std::string& path,
                           const std::function<void(std::ostream&)>& write);

}  // namespace fff
