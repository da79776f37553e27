#include "bench/result_fields.hpp"

#include "nn/parse.hpp"

namespace lsb {

nlohmann::json variant_params_json(const std::map<std::string, std::string>& resolved) {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& [k, v] : resolved) {
    const std::optional<std::int64_t> iv = parse_int(v);
    out[k] = iv ? nlohmann::json(*iv) : nlohmann::json(v);
  }
  return out;
}

nlohmann::json tracked_memory_json(const MemoryStats& stats) {
  nlohmann::json cats = nlohmann::json::object();
  for (int c = 0; c < kNumCategories; ++c)
    if (stats.at_peak_by_category[c]) cats[category_name(static_cast<MemCategory>(c))] = stats.at_peak_by_category[c];
  nlohmann::json j = {{"peak_tracked_bytes", stats.peak}, {"by_category", cats}};
  // CUDA: what the caching allocator held from the driver at most (in use and cached).
  if (stats.peak_reserved > 0) j["reserved_bytes_peak"] = stats.peak_reserved;
  return j;
}

}  // namespace lsb
