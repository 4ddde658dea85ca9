// Atomic file writes: a temporary file in the same directory, flushed to disk, then renamed over
// the target, so that a crash never leaves a half-written file.
#pragma once

#include <functional>
#include <ostream>
#include <string>

namespace fff {

// Calls write(out) on a temporary file next to `path`, fsyncs it, then renames it to `path` and
// fsyncs the directory. Where the file system allows (O_TMPFILE), the file has no name until it
// is complete, so a process killed while writing leaves nothing behind; it is then named
// `path`.tmp.<pid> only for the moment before the rename. check, if given, is called with a
// name that opens the complete file before it replaces `path` (to load it back, say): that
// temporary name, or /proc/self/fd/N while the file has none (an fff::Error it throws names
// "the new file" instead); if it throws, the target is left as it was. Throws fff::Error starting
// with the path on any failure (the errno text included: "No space left on device", "Permission
// denied", ...) and removes the temporary file.
void write_file_atomically(const std::string& path, const std::function<void(std::ostream&)>& write,
                           const std::function<void(const std::string&)>& check = {});

}  // namespace fff
