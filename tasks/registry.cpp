#include "tasks/registry.hpp"

#include <algorithm>
#include <stdexcept>

#include <fmt/format.h>

#include "nn/errors.hpp"

namespace lsb {

// The built-in tasks' record functions, one per lsbench_task() line of CMakeLists.txt.
#define LSB_LISTED_TASK(ident) TaskInfo task_record_##ident();
#include "lsbench_task_list.inc"
#undef LSB_LISTED_TASK

namespace {

void check_record(const TaskInfo& t, const std::deque<TaskInfo>& known) {
  if (t.name.empty() || !t.load || t.vocab <= 0 || (t.classes <= 0) != t.language_model() || t.default_length <= 0)
    throw std::logic_error("task record '" + t.name + "' without a name, loader, vocabulary, classes or length");
  if (t.language_model() && (t.vocab > 256 || !t.token_of_byte || !t.byte_of_token || t.metric != "bpc"))
    throw std::logic_error("language-model task '" + t.name + "' needs byte tokens (vocab <= 256) and the bpc metric");
  for (const auto& k : known)
    if (k.name == t.name) throw std::logic_error("task '" + t.name + "' registered twice");
}

std::size_t& builtin_count() {
  static std::size_t count = 0;
  return count;
}

std::deque<TaskInfo>& registry() {
  static std::deque<TaskInfo> r = [] {
    std::deque<TaskInfo> list;
    auto add = [&list](TaskInfo t) {
      check_record(t, list);
      list.push_back(std::move(t));
    };
#define LSB_LISTED_TASK(ident) add(task_record_##ident());
#include "lsbench_task_list.inc"
#undef LSB_LISTED_TASK
    builtin_count() = list.size();
    return list;
  }();
  return r;
}

}  // namespace

const char* task_kind_name(TaskKind k) {
  switch (k) {
    case TaskKind::pair_classification: return "two-document classification";
    case TaskKind::language_model: return "language modelling";
    default: return "classification";
  }
}

const TaskRecipe& TaskInfo::recipe(const std::string& preset) const {
  const auto it = presets.find(preset);
  if (it != presets.end()) return it->second;
  std::vector<std::string> names;
  for (const auto& [p, r] : presets) names.push_back(p);
  throw UsageError(fmt::format("--preset {}: the {} task has no such preset; expected one of {}", preset, name,
                               fmt::join(names, ", ")));
}

const std::deque<TaskInfo>& tasks() { return registry(); }

std::vector<std::string> task_names() {
  std::vector<std::string> out;
  for (const auto& t : registry()) out.push_back(t.name);
  return out;
}

std::string task_names_text() { return fmt::format("one of {}", fmt::join(task_names(), ", ")); }

const TaskInfo* find_task(const std::string& name) {
  for (const auto& t : registry())
    if (t.name == name) return &t;
  return nullptr;
}

const TaskInfo& task_info(const std::string& name, const char* option) {
  if (const TaskInfo* t = find_task(name)) return *t;
  throw UsageError(fmt::format("{} {}: unknown task; expected {}", option, name, task_names_text()));
}

void register_task(TaskInfo info) {
  check_record(info, registry());
  registry().push_back(std::move(info));
}

void unregister_task(const std::string& name) {
  auto& r = registry();
  const auto it = std::find_if(r.begin(), r.end(), [&](const TaskInfo& t) { return t.name == name; });
  if (it == r.end()) return;
  if (static_cast<std::size_t>(it - r.begin()) < builtin_count())
    throw std::logic_error("task '" + name + "' is built in and cannot be unregistered");
  r.erase(it);
}

std::vector<std::string> lra_task_names() {
  std::vector<std::string> out;
  for (const auto& t : registry())
    if (t.lra_suite) out.push_back(t.name);
  return out;
}

const TaskInfo& lra_efficiency_task() {
  for (const auto& t : registry())
    if (t.lra_efficiency) return t;
  throw std::logic_error("no task is marked lra_efficiency");
}

}  // namespace lsb
