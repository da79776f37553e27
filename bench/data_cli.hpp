// `lsbench data`: writing the tasks that cannot be downloaded here in their official layouts
// (generate listops | pathfinder | retrieval-pairs), a task's data made as `lra` makes it (prepare), and
// looking at what was written (preview, stats).
#pragma once
#include <memory>

#include <CLI/CLI.hpp>

#include "tasks/registry.hpp"

namespace lsb {

// `data stats TASK DIR`: the task loaded as training loads it; per split the examples, quantiles of the
// tokens per example and the label shares, then the task's own statistics (TaskInfo::print_stats) over
// at most max_items items. Errors as load_task's.
void print_task_stats(const TaskInfo& task, const TaskOptions& opt, std::int64_t max_items);

class DataCli {
 public:
  explicit DataCli(CLI::App& app);  // adds the `data` subcommand tree
  ~DataCli();
  bool parsed() const;
  int run() const;  // the exit code

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace lsb
