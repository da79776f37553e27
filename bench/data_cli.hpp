// `lsbench data`: writing the tasks that cannot be downloaded here in their official layouts
// (generate listops | pathfinder | retrieval-pairs) and looking at what was written (preview).
#pragma once
#include <memory>

#include <CLI/CLI.hpp>

namespace lsb {

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
