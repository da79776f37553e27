// Archives read with libarchive (zip, tar with xz/gzip/bzip2, whatever the library knows): one member
// into memory (enwik8.zip's `enwik8`), or a whole archive extracted into a folder (the shipped .tar.xz
// files). No shell, no external tool. Every failure is an InputError naming the archive.
#pragma once
#include <string>
#include <vector>

namespace lsb {

// The bytes of the regular-file member whose path is `member` (or ends in "/member"); an InputError
// naming the archive and the members it has when there is none.
std::string read_archive_member(const std::string& archive, const std::string& member);
// The paths of every member, in archive order.
std::vector<std::string> archive_members(const std::string& archive);
// Extracts every directory and regular file under `dest` (created if needed). Absolute paths, ".."
// components, links and devices are refused (an InputError naming the member), never written.
void extract_archive(const std::string& archive, const std::string& dest);

}  // namespace lsb
