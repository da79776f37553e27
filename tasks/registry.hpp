// The task registry: one record per task, defined in the task's own file (LSB_TASK) and listed by one
// lsbench_task() line of CMakeLists.txt, as variants are (attention_impls/registry.hpp). `train`, `lra`,
// `sweep`, `data` and the reports read these records; no task name is compared outside its own file.
// docs/TASKS.md: how to add one.
#pragma once
#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <vector>

#include "tasks/task.hpp"

namespace lsb {

enum class TaskKind {
  classification,       // one sequence, one label
  pair_classification,  // two sequences (documents) through one encoder, one label (LRA Retrieval)
  language_model,       // one token stream per split; predict each next token (../shared/spec/lm.md)
};
const char* task_kind_name(TaskKind k);

// The training recipe a preset gives this task (bench/train.cpp applies it over the preset's model).
struct TaskRecipe {
  std::int64_t length = 0;  // the model's sequence length; 0: the task's
  std::int64_t batch = 32, steps = 1000, warmup = 0;
  std::int64_t eval_every = 0;  // 0: steps / 20
  double lr = 1e-4, weight_decay = 0, dropout = 0, clip_norm = 0;  // clip_norm 0: none
  std::int64_t max_val = 0, max_test = 0;  // seeded evaluation subsets; 0: the whole split
  // The model, where the task's recipe differs from the preset's (0 or empty: the preset's).
  std::int64_t dim = 0, heads = 0, layers = 0, mlp_dim = 0;
};

// A published result on this task (LRA Table 1 and the like) in the task's metric: test accuracy in %
// (NAN for FAIL), or test bits per character.
struct PublishedResult {
  std::string variant;  // the lsbench variant whose counterpart it is
  std::string source;   // "LRA paper, Table 1"
  std::string model;    // the name the source gives it (for language models: with its size and budget)
  double value = 0;
};

// Where prepared data goes and where it may come from.
struct PrepareContext {
  std::string data_dir;  // the suite's data folder: generated data is written under it
  std::string archives;  // a folder with the shipped archives (../shared/data); "" = none
  bool small = false;    // the smoke preset: smaller generated splits
};
struct Prepared {
  std::string dir;   // what --data-dir the task's loader takes
  std::string skip;  // not empty: the data cannot be had here, and why (the run is recorded as skipped)
};

struct TaskInfo {
  std::string name;     // what --task names
  std::string summary;  // one line for --help and `info`
  TaskKind kind = TaskKind::classification;
  std::int64_t vocab = 0;          // token ids 0..vocab-1, 0 = padding (classification)
  int classes = 0;                 // labels 0..classes-1
  std::int64_t default_length = 0; // the model's sequence length when none is given
  bool fixed_length = false;       // images: the length is the pixel count, nothing else loads

  // The splits, from the task's official layout under opt.data_dir, cut to `length` tokens. InputError
  // naming the file for missing or malformed data; UsageError for an impossible option.
  TaskData (*load)(const TaskOptions& opt, std::int64_t length) = nullptr;
  // Makes the layout under ctx.data_dir (generated, or extracted from an archive) unless it is there.
  Prepared (*prepare)(const PrepareContext& ctx) = nullptr;
  // Extra statistics `data stats` prints after the common ones (pathfinder's per-image statistics).
  void (*print_stats)(const TaskOptions& opt, std::int64_t max_items) = nullptr;

  // The training recipe of each preset ("smoke", "lra-small").
  std::map<std::string, TaskRecipe> presets;
  // The metric the trainer reports and the tables print: "accuracy" (test accuracy at the best
  // validation step) or, for language models, "bpc" (bits per character, lower is better).
  std::string metric = "accuracy";
  std::vector<PublishedResult> published;

  // Its place in the suite. lra_suite: `lra` runs it by default and the accuracy table has its column;
  // lra_average: counted in that table's average (LRA Table 1 leaves Path-X out, where every model
  // failed); lra_efficiency: the data of the efficiency sweep in LRA Table 2's shape (byte-level text).
  bool lra_suite = false, lra_average = false, lra_efficiency = false;

  // Language modelling: a byte of a prompt as a token id (-1: outside the alphabet), and back.
  int (*token_of_byte)(unsigned char) = nullptr;
  unsigned char (*byte_of_token)(int) = nullptr;

  bool pairs() const { return kind == TaskKind::pair_classification; }
  bool language_model() const { return kind == TaskKind::language_model; }
  const TaskRecipe& recipe(const std::string& preset) const;  // UsageError naming the presets it has
};

// Defines the function that returns a built-in task's record (in namespace lsb, in the task's file):
//   LSB_TASK(listops) { TaskInfo t; ...; return t; }
// CMakeLists.txt's lsbench_task(listops ...) line lists it for the registry.
#define LSB_TASK(ident) ::lsb::TaskInfo task_record_##ident()

// Every task: the built-in ones in CMakeLists.txt's order, then those given to register_task().
const std::deque<TaskInfo>& tasks();
std::vector<std::string> task_names();
const TaskInfo* find_task(const std::string& name);  // nullptr when none has that name
// The record of `name`, or a UsageError naming `option` and the valid tasks.
const TaskInfo& task_info(const std::string& name, const char* option = "--task");
// A task from outside the built-in list (a test's). std::logic_error for a taken name or a record
// without a loader. unregister_task removes one again (never a built-in one).
void register_task(TaskInfo info);
void unregister_task(const std::string& name);
// The tasks `lra` runs when --tasks is not given (those with lra_suite), and the efficiency task.
std::vector<std::string> lra_task_names();
const TaskInfo& lra_efficiency_task();

// "one of a, b, c": the valid task names, for messages.
std::string task_names_text();

// For the task files. A generator's provenance file (lsbench-generator.json), InputError naming it when
// it is not JSON; and ctx.data_dir/inner, extracted from ctx.archives/archive (a .tar.xz holding inner/)
// when it is not there yet: "" when neither exists.
nlohmann::json read_generator_file(const std::string& path);
std::string from_archive(const PrepareContext& ctx, const std::string& inner, const std::string& archive);

}  // namespace lsb
