// A small JSON Schema validator for the subset reports/lsbench-report.schema.json uses (draft 2020-12
// keywords): type, properties, required, additionalProperties, items, enum, const, minimum, $ref to
// "#/$defs/...", allOf, anyOf, if/then/else. Unknown keywords are ignored, as the draft says.
#pragma once
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace lsb {

// Problems found, each "JSON path: what" (empty = valid).
std::vector<std::string> validate_json_schema(const nlohmann::json& doc, const nlohmann::json& schema);

// The schema file next to the code that writes reports, read from `path`. InputError naming the file.
nlohmann::json load_json_schema(const std::string& path);

}  // namespace lsb
