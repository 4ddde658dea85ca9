// Atomic file writes: an unnamed temporary file (O_TMPFILE) in the target's directory, written,
// fsynced, given a temporary name, renamed over the target, then the directory fsynced.
#include "fff/io/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <ostream>
#include <streambuf>
#include <vector>

#include "fff/core/common.h"

namespace fff {

namespace {

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw Error(path + ": " + what);
}

std::string errno_text(int err) {
  return err ? std::string(": ") + std::strerror(err) : "";
}

// Removes the named temporary file unless release() was called (after a successful rename).
class TempFileGuard {
 public:
  TempFileGuard() = default;
  ~TempFileGuard() {
    if (!path_.empty()) ::unlink(path_.c_str());
  }
  TempFileGuard(const TempFileGuard&) = delete;
  TempFileGuard& operator=(const TempFileGuard&) = delete;
  void arm(std::string path) { path_ = std::move(path); }
  void release() { path_.clear(); }

 private:
  std::string path_;
};

// Closes a descriptor on the way out (error paths); close() reports the final close's result.
class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  int close() {
    const int rc = ::close(fd_);
    fd_ = -1;
    return rc;
  }

 private:
  int fd_;
};

// An output buffer straight on a descriptor that keeps the errno of the first failed write, so
// the error says why ("No space left on device", "File too large") whatever ran in between.
class FdStreamBuf : public std::streambuf {
 public:
  explicit FdStreamBuf(int fd) : fd_(fd), buf_(1 << 16) {
    setp(buf_.data(), buf_.data() + buf_.size());
  }
  int error() const { return err_; }

 protected:
  int_type overflow(int_type c) override {
    if (!drain()) return traits_type::eof();
    if (!traits_type::eq_int_type(c, traits_type::eof())) {
      *pptr() = traits_type::to_char_type(c);
      pbump(1);
    }
    return traits_type::not_eof(c);
  }
  std::streamsize xsputn(const char* s, std::streamsize n) override {
    // Large blocks (tensor data) skip the buffer.
    if (n < static_cast<std::streamsize>(buf_.size()) / 2) return std::streambuf::xsputn(s, n);
    if (!drain() || !write_all(s, static_cast<size_t>(n))) return 0;
    return n;
  }
  int sync() override { return drain() ? 0 : -1; }

 private:
  bool drain() {
    const size_t n = static_cast<size_t>(pptr() - pbase());
    const bool ok = write_all(pbase(), n);
    setp(buf_.data(), buf_.data() + buf_.size());
    return ok;
  }
  bool write_all(const char* p, size_t n) {
    if (err_) return false;
    while (n > 0) {
      const ssize_t w = ::write(fd_, p, n);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) {
        err_ = w < 0 ? errno : EIO;
        return false;
      }
      p += w;
      n -= static_cast<size_t>(w);
    }
    return true;
  }

  int fd_;
  std::vector<char> buf_;
  int err_ = 0;
};

// Best effort: makes the rename itself durable. Failures here are ignored: the new file is
// already in place and complete, and some file systems refuse fsync on a directory.
void fsync_dir(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

}  // namespace

void write_file_atomically(const std::string& path, const std::function<void(std::ostream&)>& write,
                           const std::function<void(const std::string&)>& check) {
  const std::filesystem::path parent = std::filesystem::path(path).parent_path();
  const std::string dir = parent.empty() ? std::string(".") : parent.string();
  const std::string tmp = path + ".tmp." + std::to_string(::getpid());
  TempFileGuard guard;
  // An unnamed file first: a process killed while writing (SIGKILL, SIGXFSZ, the OOM killer)
  // then leaves nothing behind; the file gets a name only once complete and on disk. It is
  // linked through /proc, which needs no privilege (linkat's AT_EMPTY_PATH does).
  int fd = -1;
  if (::access("/proc/self/fd", X_OK) == 0) {
    fd = ::open(dir.c_str(), O_TMPFILE | O_WRONLY | O_CLOEXEC, 0666);
    // EOPNOTSUPP, EISDIR, EINVAL: no O_TMPFILE in this kernel or file system (a named file then).
    if (fd < 0 && errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL)
      fail(path, "cannot create a file in directory " + dir + errno_text(errno));
  }
  const bool unnamed = fd >= 0;
  if (!unnamed) {
    fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
    if (fd < 0) fail(path, "cannot create temporary file " + tmp + errno_text(errno));
    guard.arm(tmp);
  }
  Fd file(fd);
  FdStreamBuf buf(fd);
  {
    std::ostream out(&buf);
    write(out);
    out.flush();
    if (buf.error() || !out)
      fail(path, "writing " + (unnamed ? "a temporary file in " + dir : tmp) + " failed" +
                     errno_text(buf.error()));
  }
  // While the file has no name, /proc/self/fd/N opens it: the check then runs before the name
  // exists, so a process killed during a long check (loading a large model back) leaves nothing.
  const std::string proc = "/proc/self/fd/" + std::to_string(fd);
  if (check) {
    try {
      check(unnamed ? proc : tmp);
    } catch (const Error& e) {
      std::string what = e.what();
      for (size_t at; unnamed && (at = what.find(proc)) != std::string::npos;)
        what.replace(at, proc.size(), "the new file");
      throw Error(what);
    }
  }
  // The data on disk before a name points at it (power loss could otherwise leave a renamed but
  // empty file on some file systems).
  if (::fsync(fd) != 0) fail(path, "fsync of the temporary file failed" + errno_text(errno));
  if (unnamed) {
    int rc = ::linkat(AT_FDCWD, proc.c_str(), AT_FDCWD, tmp.c_str(), AT_SYMLINK_FOLLOW);
    if (rc != 0 && errno == EEXIST) {
      // Left by an earlier, killed process that had this process id: ours to replace.
      ::unlink(tmp.c_str());
      rc = ::linkat(AT_FDCWD, proc.c_str(), AT_FDCWD, tmp.c_str(), AT_SYMLINK_FOLLOW);
    }
    if (rc != 0) fail(path, "cannot name the temporary file " + tmp + errno_text(errno));
    guard.arm(tmp);
  }
  // Nothing between the name and the rename: a process killed there (the one moment a kill
  // leaves a file behind, a complete one) is as unlikely as can be. The descriptor is closed
  // after: the fsync above has reported any write error close could.
  if (::rename(tmp.c_str(), path.c_str()) != 0)
    fail(path, "cannot rename " + tmp + " to the final name" + errno_text(errno));
  guard.release();
  file.close();
  fsync_dir(dir);
}

}  // namespace fff
