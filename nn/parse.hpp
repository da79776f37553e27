// Whole-string integers, for option values and variant spec keys.
#pragma once
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>

namespace lsb {

// The integer `text` spells in full, read as strtoll reads it (leading blanks and a sign allowed), or
// nothing where it is empty, has characters after the digits, or lies outside the int64 range.
inline std::optional<std::int64_t> parse_int(const std::string& text) {
  errno = 0;
  char* end = nullptr;
  const long long v = std::strtoll(text.c_str(), &end, 10);
  if (end == text.c_str() || *end != '\0' || errno == ERANGE) return std::nullopt;
  return v;
}

}  // namespace lsb
