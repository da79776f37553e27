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

}  // namespace lsb
