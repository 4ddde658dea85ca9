// Atomic file writes: temporary file, fsync, rename, fsync of the directory.
#include "fff/io/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "fff/core/common.h"

namespace fff {

namespace {

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw Error(path + ": " + what);
}

std::string errno_text(int err) {
  return err ? std::string(": ") + std::strerror(err) : "";
}

// Removes the temporary file unless release() was called (after a successful rename).
class TempFileGuard {
 public:
  explicit TempFileGuard(std::string path) : path_(std::move(path)) {}
  ~TempFileGuard() {
    if (!path_.empty()) std::remove(path_.c_str());
  }
  TempFileGuard(const TempFileGuard&) = delete;
  TempFileGuard& operator=(const TempFileGuard&) = delete;
  void release() { path_.clear(); }

 private:
  std::string path_;
};

// Flushes the file's contents to stable storage.
void fsync_file(const std::string& path, const std::string& tmp) {
  const int fd = ::open(tmp.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(path, "cannot reopen temporary file " + tmp + " for fsync" + errno_text(errno));
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0) fail(path, "fsync of temporary file " + tmp + " failed" + errno_text(err));
}

// Best effort: makes the rename itself durable. Failures here are ignored.
void fsync_parent_dir(const std::string& path) {
  std::filesystem::path dir = std::filesystem::path(path).parent_path();
  if (dir.empty()) dir = ".";
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

}  // namespace

void write_file_atomically(const std::string& path,
                           const std::function<void(std::ostream&)>& write) {
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
  if (!out) fail(path, "cannot create temporary file " + tmp + errno_text(errno));
  TempFileGuard guard(tmp);
  write(out);
  out.flush();
  if (!out) fail(path, "writing " + tmp + " failed" + errno_text(errno));
  out.close();
  if (out.fail()) fail(path, "closing " + tmp + " failed" + errno_text(errno));
  fsync_file(path, tmp);
  if (std::rename(tmp.c_str(), path.c_str()) != 0)
    fail(path, "cannot rename " + tmp + " to the final name" + errno_text(errno));
  guard.release();
  fsync_parent_dir(path);
}

}  // namespace fff
