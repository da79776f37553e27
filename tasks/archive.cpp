#include "tasks/archive.hpp"

#include <archive.h>
#include <archive_entry.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>

#include <fmt/format.h>

#include "nn/errors.hpp"

namespace lsb {
namespace fs = std::filesystem;
namespace {

struct ReaderDeleter {
  void operator()(archive* a) const { archive_read_free(a); }
};
using Reader = std::unique_ptr<archive, ReaderDeleter>;

// A reader over every format and filter libarchive has, opened on `path`.
Reader open_reader(const std::string& path) {
  if (!fs::is_regular_file(path)) throw InputError(fmt::format("{}: not a readable archive file", path));
  Reader a(archive_read_new());
  archive_read_support_filter_all(a.get());
  archive_read_support_format_all(a.get());
  if (archive_read_open_filename(a.get(), path.c_str(), 1 << 16) != ARCHIVE_OK)
    throw InputError(fmt::format("{}: cannot open the archive: {}", path, archive_error_string(a.get())));
  return a;
}

// The next entry, or nullptr at the end; an InputError for a damaged archive.
archive_entry* next_entry(archive* a, const std::string& path) {
  archive_entry* e = nullptr;
  const int rc = archive_read_next_header(a, &e);
  if (rc == ARCHIVE_EOF) return nullptr;
  if (rc < ARCHIVE_WARN) throw InputError(fmt::format("{}: damaged archive: {}", path, archive_error_string(a)));
  return e;
}

// The current entry's data, appended to `out` in blocks.
template <typename Sink>
void read_data(archive* a, const std::string& path, const char* member, Sink&& sink) {
  char buf[1 << 16];
  for (;;) {
    const la_ssize_t got = archive_read_data(a, buf, sizeof buf);
    if (got == 0) return;
    if (got < 0) throw InputError(fmt::format("{}: member {}: {}", path, member, archive_error_string(a)));
    sink(buf, static_cast<std::size_t>(got));
  }
}

bool names_member(const std::string& entry, const std::string& member) {
  return entry == member ||
         (entry.size() > member.size() && entry.ends_with(member) && entry[entry.size() - member.size() - 1] == '/');
}

}  // namespace

std::vector<std::string> archive_members(const std::string& archive_path) {
  Reader a = open_reader(archive_path);
  std::vector<std::string> out;
  while (archive_entry* e = next_entry(a.get(), archive_path)) out.emplace_back(archive_entry_pathname(e));
  return out;
}

std::string read_archive_member(const std::string& archive_path, const std::string& member) {
  Reader a = open_reader(archive_path);
  std::vector<std::string> seen;
  while (archive_entry* e = next_entry(a.get(), archive_path)) {
    const std::string name = archive_entry_pathname(e);
    seen.push_back(name);
    if (archive_entry_filetype(e) != AE_IFREG || !names_member(name, member)) continue;
    std::string out;
    if (archive_entry_size_is_set(e)) out.reserve(static_cast<std::size_t>(archive_entry_size(e)));
    read_data(a.get(), archive_path, name.c_str(), [&](const char* p, std::size_t n) { out.append(p, n); });
    return out;
  }
  if (seen.size() > 8) seen.resize(8), seen.back() = "...";
  throw InputError(fmt::format("{}: no member named {} (it holds: {})", archive_path, member,
                               seen.empty() ? std::string("nothing") : fmt::format("{}", fmt::join(seen, ", "))));
}

void extract_archive(const std::string& archive_path, const std::string& dest) {
  Reader a = open_reader(archive_path);
  std::error_code ec;
  fs::create_directories(dest, ec);
  if (ec) throw InputError(fmt::format("{}: cannot create the folder: {}", dest, ec.message()));
  while (archive_entry* e = next_entry(a.get(), archive_path)) {
    const std::string name = archive_entry_pathname(e);
    const fs::path rel = fs::path(name).lexically_normal();
    bool escapes = rel.is_absolute() || rel.empty();
    for (const auto& part : rel) escapes = escapes || part == "..";
    if (escapes) throw InputError(fmt::format("{}: member {} points outside the folder; refused", archive_path, name));
    const fs::path target = fs::path(dest) / rel;
    const auto type = archive_entry_filetype(e);
    if (type == AE_IFDIR) {
      fs::create_directories(target, ec);
      if (ec) throw InputError(fmt::format("{}: cannot create the folder: {}", target.string(), ec.message()));
    } else if (type == AE_IFREG) {
      fs::create_directories(target.parent_path(), ec);
      if (ec) throw InputError(fmt::format("{}: cannot create the folder: {}", target.parent_path().string(), ec.message()));
      // Plain writes, no fsync per file: callers extract into a temporary folder and rename it whole.
      std::unique_ptr<std::FILE, int (*)(std::FILE*)> f(std::fopen(target.string().c_str(), "wb"), std::fclose);
      if (!f) throw InputError(fmt::format("{}: cannot write: {}", target.string(), std::strerror(errno)));
      read_data(a.get(), archive_path, name.c_str(), [&](const char* p, std::size_t n) {
        if (std::fwrite(p, 1, n, f.get()) != n)
          throw InputError(fmt::format("{}: cannot write: {}", target.string(), std::strerror(errno)));
      });
      if (std::fclose(f.release()) != 0)
        throw InputError(fmt::format("{}: cannot write: {}", target.string(), std::strerror(errno)));
    } else {
      throw InputError(fmt::format("{}: member {} is neither a file nor a folder (a link or device); refused",
                                   archive_path, name));
    }
  }
}

}  // namespace lsb
