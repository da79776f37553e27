#include "reports/json_schema.hpp"

#include <fstream>

#include <fmt/format.h>

#include "nn/errors.hpp"

namespace lsb {
namespace {

bool has_type(const nlohmann::json& v, const std::string& t) {
  if (t == "object") return v.is_object();
  if (t == "array") return v.is_array();
  if (t == "string") return v.is_string();
  if (t == "integer") return v.is_number_integer() || (v.is_number_float() && v.get<double>() == static_cast<double>(static_cast<long long>(v.get<double>())));
  if (t == "number") return v.is_number();
  if (t == "boolean") return v.is_boolean();
  if (t == "null") return v.is_null();
  return false;
}

class Validator {
 public:
  explicit Validator(const nlohmann::json& root) : root_(root) {}

  void check(const nlohmann::json& v, const nlohmann::json& s, const std::string& path) {
    if (s.is_boolean()) {
      if (!s.get<bool>()) fail(path, "no value is allowed here");
      return;
    }
    if (!s.is_object()) return;
    if (s.contains("$ref")) check(v, resolve(s["$ref"].get<std::string>()), path);
    if (s.contains("type")) {
      const auto& t = s["type"];
      bool ok = false;
      if (t.is_string()) ok = has_type(v, t.get<std::string>());
      for (const auto& x : t.is_array() ? t : nlohmann::json::array()) ok = ok || has_type(v, x.get<std::string>());
      if (!ok) return fail(path, fmt::format("expected type {}, got {}", t.dump(), v.type_name()));
    }
    if (s.contains("const") && v != s["const"]) fail(path, fmt::format("must be {}", s["const"].dump()));
    if (s.contains("enum")) {
      bool found = false;
      for (const auto& e : s["enum"]) found = found || e == v;
      if (!found) fail(path, fmt::format("must be one of {}", s["enum"].dump()));
    }
    if (s.contains("minimum") && v.is_number() && v.get<double>() < s["minimum"].get<double>())
      fail(path, fmt::format("must be >= {}", s["minimum"].dump()));
    if (v.is_object()) {
      for (const auto& r : s.value("required", nlohmann::json::array()))
        if (!v.contains(r.get<std::string>())) fail(path, fmt::format("missing \"{}\"", r.get<std::string>()));
      const auto props = s.value("properties", nlohmann::json::object());
      for (const auto& [k, x] : v.items()) {
        const std::string sub = path + "." + k;
        if (props.contains(k))
          check(x, props[k], sub);
        else if (s.contains("additionalProperties"))
          check(x, s["additionalProperties"], sub);
      }
    }
    if (v.is_array() && s.contains("items"))
      for (std::size_t i = 0; i < v.size(); ++i) check(v[i], s["items"], fmt::format("{}[{}]", path, i));
    for (const auto& sub : s.value("allOf", nlohmann::json::array())) check(v, sub, path);
    if (s.contains("anyOf")) {
      bool any = false;
      for (const auto& sub : s["anyOf"]) any = any || passes(v, sub);
      if (!any) fail(path, "matches none of anyOf");
    }
    if (s.contains("if")) {
      if (passes(v, s["if"])) {
        if (s.contains("then")) check(v, s["then"], path);
      } else if (s.contains("else")) {
        check(v, s["else"], path);
      }
    }
  }

  std::vector<std::string> problems;

 private:
  bool passes(const nlohmann::json& v, const nlohmann::json& s) {
    Validator inner(root_);
    inner.check(v, s, "");
    return inner.problems.empty();
  }
  const nlohmann::json& resolve(const std::string& ref) {
    const std::string prefix = "#/$defs/";
    if (ref.rfind(prefix, 0) != 0 || !root_.contains("$defs") || !root_["$defs"].contains(ref.substr(prefix.size())))
      throw InputError("JSON schema: unresolvable $ref " + ref);
    return root_["$defs"][ref.substr(prefix.size())];
  }
  void fail(const std::string& path, const std::string& what) { problems.push_back((path.empty() ? "$" : path) + ": " + what); }

  const nlohmann::json& root_;
};

}  // namespace

std::vector<std::string> validate_json_schema(const nlohmann::json& doc, const nlohmann::json& schema) {
  Validator v(schema);
  v.check(doc, schema, "$");
  return v.problems;
}

nlohmann::json load_json_schema(const std::string& path) {
  std::ifstream f(path);
  if (!f) throw InputError(fmt::format("{}: cannot open the JSON schema", path));
  try {
    return nlohmann::json::parse(f);
  } catch (const nlohmann::json::parse_error& e) {
    throw InputError(fmt::format("{}: not JSON ({})", path, e.what()));
  }
}

}  // namespace lsb
