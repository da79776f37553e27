// The one way lsbench writes an output file: whole or not at all, never a destroyed target.
#pragma once
#include <string>
#include <string_view>

namespace lsb {

// Writes `content` to `path`. A regular file (or a new one) is written to PATH.tmp, flushed to disk, then
// renamed over PATH, so PATH is the old file or the new one, never a part; a failed write leaves the old
// file as it was. A target that exists and is not a regular file (a character device such as /dev/null,
// a FIFO) is written in place, never replaced. Every write, flush and close is checked: an empty path is
// a UsageError; a directory, a missing folder, no permission, a name too long or a full disk is an
// InputError naming the path and the system's reason (exit 3).
void write_file_atomic(const std::string& path, std::string_view content);

// The one check before lsbench opens an input file: `path` must name a regular file (after symlinks). A
// missing file, a directory, a device, a FIFO (which would block the read forever), a socket, a symlink loop
// or a permission error is an InputError naming the path, what it was to be (`what`, "checkpoint") and why.
void require_regular_file(const std::string& path, const std::string& what);

// Held for as long as a command keeps rewriting the report at `path` (sweep, train, lra, maxlen): an
// exclusive lock on PATH.lock, so a second command writing the same report at once is refused (a
// UsageError naming the path) instead of the two interleaving and losing each other's results. The lock
// dies with the process (flock), so a killed run leaves nothing to clean up but the empty PATH.lock, which
// the next holder reuses and removes. An empty path locks nothing; a target that is not a regular file
// (/dev/null) is not locked either.
class OutputLock {
 public:
  explicit OutputLock(const std::string& path);
  ~OutputLock();
  OutputLock(const OutputLock&) = delete;
  OutputLock& operator=(const OutputLock&) = delete;

 private:
  std::string lock_path_;
  int fd_ = -1;
};

}  // namespace lsb
