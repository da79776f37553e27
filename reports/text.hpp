// How reports write quantities, Markdown cells and XML text for people (compare, the renders and the
// plots share these).
#pragma once
#include <cctype>
#include <string>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace lsb {

// A name safe for files and URLs: lower case letters and digits, every other run of characters one '-'
// ("ls:w=8,r=32" -> "ls-w-8-r-32"). Plot files and lra's checkpoint directories are named with it.
inline std::string slugify(const std::string& s) {
  std::string out;
  for (char ch : s) {
    const char c = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
    if (std::isalnum(static_cast<unsigned char>(c)))
      out += c;
    else if (!out.empty() && out.back() != '-')
      out += '-';
  }
  while (!out.empty() && out.back() == '-') out.pop_back();
  return out;
}

// 1.50 GiB, 12.3 MiB, 4.0 KiB.
inline std::string bytes_text(double b) {
  if (b >= 1024.0 * 1024 * 1024) return fmt::format("{:.2f} GiB", b / (1024.0 * 1024 * 1024));
  if (b >= 1024.0 * 1024) return fmt::format("{:.1f} MiB", b / (1024.0 * 1024));
  return fmt::format("{:.1f} KiB", b / 1024.0);
}

// Seconds as s, ms or us with `decimals` digits (us always with one).
inline std::string time_text(double s, int decimals = 2) {
  if (s >= 1) return fmt::format("{:.{}f} s", s, decimals);
  if (s >= 1e-3) return fmt::format("{:.{}f} ms", s * 1e3, decimals);
  return fmt::format("{:.1f} us", s * 1e6);
}

// 1.23M, 45.6K, 789.
inline std::string rate_text(double r) {
  if (r >= 1e6) return fmt::format("{:.2f}M", r / 1e6);
  if (r >= 1e3) return fmt::format("{:.1f}K", r / 1e3);
  return fmt::format("{:.0f}", r);
}

// Text safe inside a Markdown table cell ('|' escaped).
inline std::string md_cell(const std::string& s) {
  std::string out;
  for (char ch : s) {
    if (ch == '|') out += '\\';
    out += ch;
  }
  return out;
}

// Text safe inside XML / HTML text and attribute values.
inline std::string xml_escape(const std::string& s) {
  std::string out;
  for (char ch : s) {
    switch (ch) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += ch;
    }
  }
  return out;
}

// A report field as text: strings as they are, other values as JSON; `fallback` when absent.
inline std::string field_text(const nlohmann::json& j, const char* key, const std::string& fallback = "") {
  if (!j.is_object() || !j.contains(key)) return fallback;
  return j[key].is_string() ? j[key].get<std::string>() : j[key].dump();
}

}  // namespace lsb
