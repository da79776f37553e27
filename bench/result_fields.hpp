// Pieces of a report result that several drivers fill the same way.
#pragma once
#include <map>
#include <string>

#include <nlohmann/json.hpp>

#include "nn/memory.hpp"

namespace lsb {

// A variant's resolved parameters: numbers as numbers, choices as strings ({"w": 8, "share": "kv"}).
nlohmann::json variant_params_json(const std::map<std::string, std::string>& resolved);

// {"peak_tracked_bytes", "by_category" (live bytes per category at the peak, zeros omitted)}.
nlohmann::json tracked_memory_json(const MemoryStats& stats);

}  // namespace lsb
