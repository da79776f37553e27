#include "bench/sweep.hpp"

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include <fmt/format.h>

#include "bench/context.hpp"
#include "bench/progress.hpp"
#include "bench/sweep_points.hpp"
#include "nn/errors.hpp"
#include "nn/files.hpp"
#include "nn/threads.hpp"
#include "reports/report.hpp"

namespace lsb {
namespace {
using namespace sweep_internal;

// A one-line summary of a finished point.
// Results of an earlier run of the same report (the report itself and the journal beside it).
std::map<std::string, nlohmann::json> finished_results(const std::string& out) {
  std::map<std::string, nlohmann::json> done;
  if (std::filesystem::exists(out)) {
    const nlohmann::json old = read_report(out);
    require_result_kinds(old, out, {"sweep-point"}, "sweep --resume");
    for (const auto& r : old["results"]) done[r["id"].get<std::string>()] = r;
  }
  std::ifstream j(out + ".journal");
  std::string line;
  while (std::getline(j, line)) {
    try {
      const auto r = nlohmann::json::parse(line);
      done[r.at("id").get<std::string>()] = r;
    } catch (const std::exception&) {  // a line cut short by the kill: that point runs again
    }
  }
  return done;
}

}  // namespace

int run_sweep(const SweepOptions& o) {
  const std::vector<SweepPoint> all = sweep_points(o);
  std::vector<SweepPoint> pts;
  for (std::size_t i = 0; i < all.size(); ++i)
    if (static_cast<int>(i % static_cast<std::size_t>(o.shard_count)) == o.shard_index) pts.push_back(all[i]);
  if (o.list) {
    for (const auto& p : pts) fmt::print("{}\n", p.command());
    return kOk;
  }
  if (o.resume && o.out.empty()) throw UsageError("--resume needs --out: the report to continue");
  const OutputLock report_lock(o.out);
  set_budgets(o.memory_budget);

  PointRunner runner(o.timing, o.seed);
  nlohmann::json context = make_context({o.command_line, current_threads(), runner.cpu_peak(),
                                         runner.cpu_peak_measurement().to_json()});
  context["shard"] = {{"index", o.shard_index}, {"count", o.shard_count}};
  std::map<std::string, nlohmann::json> results = o.resume ? finished_results(o.out) : decltype(results){};
  if (!o.resume && !o.out.empty()) std::filesystem::remove(o.out + ".journal");

  // Configs and ids of the points in canonical order (the report lists results in this order).
  std::vector<ResolvedPoint> resolved;
  std::vector<std::string> ids;
  for (const auto& p : pts) {
    resolved.push_back(resolve(p));
    ids.push_back(config_id(resolved.back().config));
  }
  // A resumed report keeps every finished point it held, also those this run's axes do not name: they
  // follow this run's points (never is a report rewritten smaller).
  const std::set<std::string> this_run(ids.begin(), ids.end());
  std::vector<std::string> kept_earlier;
  for (const auto& [id, r] : results)
    if (!this_run.count(id)) kept_earlier.push_back(id);
  auto save = [&] {
    if (o.out.empty()) return;
    nlohmann::json arr = nlohmann::json::array();
    for (const auto& id : ids)
      if (results.count(id)) arr.push_back(results[id]);
    for (const auto& id : kept_earlier) arr.push_back(results[id]);
    write_report(o.out, make_report(context, arr));
  };
  std::ofstream journal;
  if (!o.out.empty()) journal.open(o.out + ".journal", std::ios::app);

  Progress progress(static_cast<std::int64_t>(pts.size()));
  int resumed = 0, exit_code = kOk;
  double run_seconds = 0;
  int measured = 0;
  for (std::size_t i = 0; i < pts.size(); ++i) {
    if (results.count(ids[i])) {
      ++resumed;
      continue;
    }
    if (o.progress)
      progress.update(static_cast<std::int64_t>(i), fmt::format("point {}/{}: {}", i + 1, pts.size(), pts[i].command()),
                      measured ? run_seconds / measured : 0.0);
    const auto t0 = std::chrono::steady_clock::now();
    nlohmann::json r = runner.run(pts[i], resolved[i]);
    run_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    ++measured;
    results[ids[i]] = r;
    if (journal.is_open()) journal << r.dump() << "\n" << std::flush;
    save();
    const std::string line = fmt::format("[{}/{}] {}", i + 1, pts.size(), point_line(r));
    if (o.progress)
      progress.message(line);
    else
      fmt::print("{}\n", line);
  }
  if (o.progress) progress.finish();
  save();
  if (journal.is_open()) {
    journal.close();
    std::filesystem::remove(o.out + ".journal");
  }
  std::map<std::string, int> by_status;
  for (const auto& id : ids) by_status[results[id]["status"].get<std::string>()]++;
  std::string summary;
  for (const auto& [st, k] : by_status) summary += fmt::format("{}{} {}", summary.empty() ? "" : ", ", k, st);
  fmt::print("sweep: {} points ({}){}{}{}\n", pts.size(), summary,
             resumed ? fmt::format(", {} taken from the earlier run", resumed) : "",
             kept_earlier.empty() ? "" : fmt::format(", {} other points of the earlier report kept", kept_earlier.size()),
             o.out.empty() ? "" : ", report " + o.out);
  if (by_status.count("error")) exit_code = kInternal;
  else if (by_status.count("oom")) exit_code = kOutOfMemory;
  return exit_code;
}

}  // namespace lsb
