#include "nn/files.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "nn/errors.hpp"

namespace lsb {
namespace {

[[noreturn]] void fail(const std::string& path, const char* what, int err) {
  throw InputError(fmt::format("{}: {}: {}", path, what, std::strerror(err)));
}

// Writes all of `content` to fd (retrying short writes and interrupts); errno on failure, 0 when done.
int write_all(int fd, std::string_view content) {
  const char* p = content.data();
  std::size_t left = content.size();
  while (left > 0) {
    const ssize_t n = ::write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    p += n;
    left -= static_cast<std::size_t>(n);
  }
  return 0;
}

}  // namespace

void write_file_atomic(const std::string& path, std::string_view content) {
  if (path.empty()) throw UsageError("an output path is empty");
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) throw InputError(fmt::format("{}: is a directory; give a file name", path));
    if (!S_ISREG(st.st_mode)) {  // a device or FIFO: written in place, never renamed over
      const int fd = ::open(path.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
      if (fd < 0) fail(path, "cannot open for writing", errno);
      const int err = write_all(fd, content);
      if (::close(fd) != 0 && err == 0) fail(path, "closing failed", errno);
      if (err != 0) fail(path, "writing failed", err);
      return;
    }
  }
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) fail(path, "cannot open for writing", errno);
  int err = write_all(fd, content);
  if (err == 0 && ::fsync(fd) != 0 && errno != EINVAL) err = errno;  // EINVAL: a file system without fsync
  if (::close(fd) != 0 && err == 0) err = errno;
  if (err != 0) {
    ::unlink(tmp.c_str());
    fail(path, "writing failed (the previous file, if any, is unchanged)", err);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    err = errno;
    ::unlink(tmp.c_str());
    fail(path, "cannot move into place", err);
  }
}

void require_regular_file(const std::string& path, const std::string& what) {
  if (path.empty()) throw UsageError(fmt::format("the path of the {} is empty", what));
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0)
    throw InputError(fmt::format("{}: cannot open the {}: {}", path, what, std::strerror(errno)));
  if (S_ISDIR(st.st_mode)) throw InputError(fmt::format("{}: a directory, not the {} file", path, what));
  if (!S_ISREG(st.st_mode))
    throw InputError(fmt::format("{}: not a regular file (a device, FIFO or socket), not the {}", path, what));
  if (::access(path.c_str(), R_OK) != 0)
    throw InputError(fmt::format("{}: cannot read the {}: {}", path, what, std::strerror(errno)));
}

OutputLock::OutputLock(const std::string& path) {
  struct stat st {};
  if (path.empty() || (::stat(path.c_str(), &st) == 0 && !S_ISREG(st.st_mode))) return;
  lock_path_ = path + ".lock";
  fd_ = ::open(lock_path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) fail(lock_path_, "cannot create the report's lock file", errno);
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    ::close(fd_);
    fd_ = -1;
    if (err == EWOULDBLOCK)
      throw UsageError(fmt::format("{}: another lsbench is writing this report now; wait for it, or give another --out",
                                   path));
    fail(lock_path_, "cannot lock", err);
  }
}

OutputLock::~OutputLock() {
  if (fd_ < 0) return;
  ::unlink(lock_path_.c_str());  // while still held: a waiting process then locks a fresh file of its own
  ::close(fd_);
}

}  // namespace lsb
