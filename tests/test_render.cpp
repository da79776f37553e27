// `lsbench report`: Markdown and CSV renders of a fixed report checked against golden files
// (tests/golden/), merging by id, and bad input named by file.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "reports/plot.hpp"
#include "reports/render.hpp"
#include "tasks/png.hpp"
#include "reports/report.hpp"
#include "tests/cli_helpers.hpp"
#include "tests/helpers.hpp"

using namespace lsb;
namespace fs = std::filesystem;

namespace {

nlohmann::json with_id(nlohmann::json r) {
  r["id"] = config_id(r["config"]);
  return r;
}

nlohmann::json sweep_point(const std::string& variant, nlohmann::json params, std::int64_t n, double median,
                           std::int64_t peak, const std::string& status = "ok") {
  nlohmann::json r = {{"kind", "sweep-point"},
                      {"status", status},
                      {"config", {{"variant", variant}, {"variant_params", params}, {"n", n}, {"padded_n", n},
                                  {"batch", 8}, {"dim", 64}, {"heads", 2}, {"layers", 2}, {"mlp_dim", 128},
                                  {"mode", "train-step"}, {"device", "cpu"}, {"precision", "fp32"}, {"threads", 2}}}};
  if (status == "ok") {
    r["time_s"] = {{"min", median}, {"median", median}, {"mean", median}, {"max", median}, {"stdev", median / 20}, {"samples", 5}};
    r["throughput"] = {{"tokens_per_s", 8 * n / median}, {"steps_per_s", 1 / median}, {"flops", 10.5e9 * median},
                       {"gflops", 10.5}, {"peak_fraction", 10.5 / 450.0}};
    r["memory"] = {{"peak_tracked_bytes", peak}, {"analytic_bytes", peak - 1024}};
  } else {
    r["message"] = "out of memory: full attention probabilities";
    r["memory"] = {{"requested_bytes", peak}, {"budget_bytes", 17179869184LL}};
  }
  return with_id(r);
}

nlohmann::json run(const std::string& variant, nlohmann::json params, const std::string& task, double test) {
  nlohmann::json r = {{"kind", "train-run"},
                      {"status", "ok"},
                      {"config", {{"variant", variant}, {"variant_params", params}, {"task", task}, {"preset", "lra-small"},
                                  {"mode", "train"}, {"device", "cpu"}, {"precision", "fp32"}}},
                      {"accuracy", {{"val_best", test + 0.01}, {"test_at_best_val", test}, {"test_final", test - 0.005}}},
                      {"curves", {{"step", {10, 20, 30}}, {"loss", {1.5, 1.2, 1.1}}, {"val_step", {15, 30}},
                                  {"val_accuracy", {test - 0.05, test}}}},
                      {"memory", {{"peak_tracked_bytes", 1 << 30}}},
                      {"data", nlohmann::json::object()}};
  return with_id(r);
}

// A report whose every field is fixed (the context too), so renders can be compared byte for byte.
nlohmann::json fixture() {
  nlohmann::json context = {
      {"tool_version", "0.1.0"}, {"git_commit", "0123456789ab"}, {"build_type", "Release"},
      {"command_line", {"lsbench", "sweep", "--mode", "train-step"}}, {"started_at", "2026-11-22T12:00:00Z"},
      {"host", "ci"}, {"os", "Debian 12"}, {"compiler", "gcc 12.2.0"},
      {"cpu", {{"model", "Test CPU"}, {"cores", 2}, {"threads_used", 2}, {"peak_gflops_fp32", 450.0}}},
      {"gpu", nullptr}, {"libraries", {{"onednn", "2.6.3"}}}, {"shard", {{"index", 0}, {"count", 1}}}};
  nlohmann::json results = nlohmann::json::array();
  const nlohmann::json ls = {{"w", 8}, {"r", 32}};
  results.push_back(sweep_point("full", nlohmann::json::object(), 1024, 0.113, 353698400));
  results.push_back(sweep_point("full", nlohmann::json::object(), 8192, 0, 4294967296, "oom"));
  results.push_back(sweep_point("ls", ls, 1024, 0.0633, 118370000));
  results.push_back(sweep_point("ls", ls, 8192, 0.5598, 922650000));
  for (const auto& [v, n] : std::vector<std::pair<std::string, std::int64_t>>{{"full", 7936}, {"ls", 153088}}) {
    nlohmann::json c = {{"variant", v}, {"variant_params", v == "ls" ? ls : nlohmann::json::object()},
                        {"mode", "train-step"}, {"device", "cpu"}, {"precision", "fp32"},
                        {"memory_budget_bytes", 17179869184LL}, {"granule", 256}};
    results.push_back(with_id({{"kind", "maxlen"}, {"status", "ok"}, {"config", c}, {"max_n", n},
                               {"attempts", {{{"n", 256}, {"status", "ok"}}}}}));
  }
  results.push_back(run("full", nlohmann::json::object(), "listops", 0.3712));
  results.push_back(run("ls", ls, "listops", 0.3805));
  results.push_back(run("ls", ls, "text", 0.6541));
  return make_report(context, results);
}

// Checks that every tag is closed in order (a small XML well-formedness test; comments, <? ?> and
// <!...> skipped) and returns the tags' names in document order.
std::vector<std::string> xml_tags(const std::string& xml) {
  std::vector<std::string> stack, names;
  for (std::size_t i = xml.find('<'); i != std::string::npos; i = xml.find('<', i + 1)) {
    const std::size_t end = xml.find('>', i);
    REQUIRE(end != std::string::npos);
    const std::string tag = xml.substr(i + 1, end - i - 1);
    if (tag.empty() || tag[0] == '?' || tag[0] == '!') continue;
    if (tag[0] == '/') {
      REQUIRE(!stack.empty());
      CHECK(tag.substr(1) == stack.back());
      stack.pop_back();
      continue;
    }
    const std::string name = tag.substr(0, tag.find_first_of(" \n/"));
    names.push_back(name);
    if (tag.back() != '/') stack.push_back(name);
  }
  CHECK(stack.empty());
  return names;
}

// Every value of attribute `attr` on elements whose opening tag contains `marker`, in order.
std::vector<std::string> attr_values(const std::string& xml, const std::string& marker, const std::string& attr) {
  std::vector<std::string> out;
  for (std::size_t i = xml.find(marker); i != std::string::npos; i = xml.find(marker, i + 1)) {
    const std::size_t open = xml.rfind('<', i), close = xml.find('>', i);
    const std::string tag = xml.substr(open, close - open);
    const std::size_t a = tag.find(" " + attr + "=\"");
    if (a == std::string::npos) continue;
    const std::size_t from = a + attr.size() + 3;
    out.push_back(tag.substr(from, tag.find('"', from) - from));
  }
  return out;
}

const Plot& plot_named(const std::vector<Plot>& plots, const std::string& slug) {
  for (const auto& p : plots)
    if (p.slug == slug) return p;
  FAIL("no plot " << slug);
  throw std::logic_error("unreachable");
}

std::string golden(const std::string& name) { return test::read_file(fs::path(LSBENCH_GOLDEN_DIR) / name); }

}  // namespace

TEST_CASE("report renders Markdown and CSV equal to the golden files", "[render]") {
  const auto rep = fixture();
  REQUIRE(validate_report(rep).empty());
  const std::string md = render_markdown(rep), csv = render_csv(rep);
  // To refresh after an intended change: LSBENCH_WRITE_GOLDEN=1 rewrites the files, then review the diff.
  if (std::getenv("LSBENCH_WRITE_GOLDEN")) {
    std::ofstream(fs::path(LSBENCH_GOLDEN_DIR) / "report.md") << md;
    std::ofstream(fs::path(LSBENCH_GOLDEN_DIR) / "report.csv") << csv;
  }
  CHECK(md == golden("report.md"));
  CHECK(csv == golden("report.csv"));
}

TEST_CASE("a share of the peak above 100% is not printed as a share", "[render]") {
  auto rep = fixture();
  for (auto& r : rep["results"])
    if (r.contains("throughput")) r["throughput"]["peak_fraction"] = 3.22;  // a peak measured on a busy machine
  const std::string md = render_markdown(rep);
  CHECK_THAT(md, Catch::Contains("above the measured peak (not trustworthy)"));
  CHECK_THAT(md, !Catch::Contains("322%"));
  CHECK_THAT(render_markdown(fixture()), Catch::Contains("2% of peak"));  // 10.5 of 450 GFLOP/s
}

TEST_CASE("fp32 and bf16 runs of one variant stay apart in the tables, plots and CSV", "[render][bf16]") {
  nlohmann::json rep = fixture();
  nlohmann::json bf16_run = run("ls", {{"w", 8}, {"r", 32}}, "listops", 0.31);
  bf16_run["config"]["precision"] = "bf16";
  rep["results"].push_back(with_id(bf16_run));
  REQUIRE(validate_report(rep).empty());
  const std::string md = render_markdown(rep), csv = render_csv(rep);
  CHECK_THAT(md, Catch::Contains("| lsbench ls:r=32,w=8 bf16 |"));
  CHECK_THAT(md, Catch::Contains("| lsbench ls:r=32,w=8 |"));  // the fp32 run keeps its own row
  CHECK_THAT(csv, Catch::Contains(",train,cpu,bf16,listops,"));
}

TEST_CASE("report merges files by id and names a bad one", "[render][cli]") {
  const auto dir = test::fresh_dir("render");
  auto rep = fixture();
  write_report((dir / "a.json").string(), rep);
  auto part = rep;
  part["results"] = nlohmann::json::array({rep["results"][0], rep["results"][2]});  // duplicates of a.json's
  write_report((dir / "b.json").string(), part);
  const auto r = test::run_cli(fmt::format("report {} {} --format csv -o {}", (dir / "a.json").string(),
                                           (dir / "b.json").string(), (dir / "all.csv").string()));
  INFO(r.output);
  REQUIRE(r.code == 0);
  CHECK(test::read_file(dir / "all.csv") == render_csv(rep));  // the duplicates are dropped
  std::ofstream(dir / "bad.json") << "{\"schema\": \"lsbench-report\"";
  const auto bad = test::run_cli(fmt::format("report {} {}", (dir / "a.json").string(), (dir / "bad.json").string()));
  CHECK(bad.code == 3);
  CHECK(bad.output.find("bad.json") != std::string::npos);
  CHECK(bad.output.find("# lsbench report") == std::string::npos);  // nothing rendered half
}

TEST_CASE("report plots are SVG with every series and both axes", "[render]") {
  const auto plots = report_plots(fixture());
  std::vector<std::string> slugs;
  for (const auto& p : plots) slugs.push_back(p.slug);
  CHECK(slugs == std::vector<std::string>{"train-step-cpu-b8-d64-h2-l2-mlp128-time", "train-step-cpu-b8-d64-h2-l2-mlp128-memory",
                                          "train-listops-loss", "train-listops-val-accuracy", "train-text-loss",
                                          "train-text-val-accuracy"});
  const std::string time_svg = render_svg(plot_named(plots, "train-step-cpu-b8-d64-h2-l2-mlp128-time"));
  const std::string mem_svg = render_svg(plot_named(plots, "train-step-cpu-b8-d64-h2-l2-mlp128-memory"));
  for (const auto* svg : {&time_svg, &mem_svg}) {
    const auto tags = xml_tags(*svg);
    REQUIRE(!tags.empty());
    CHECK(tags.front() == "svg");
    CHECK(attr_values(*svg, "class=\"series\"", "data-name") == std::vector<std::string>{"full", "ls:r=32,w=8"});
    CHECK(attr_values(*svg, "class=\"axis\"", "data-axis") == std::vector<std::string>{"x", "y"});
    // x ticks at powers of 2 between the lengths (log axis), in order, labelled with units.
    const auto xt = attr_values(*svg, "class=\"tick\"", "data-value");
    CHECK(std::find(xt.begin(), xt.end(), "1024") != xt.end());
    CHECK(std::find(xt.begin(), xt.end(), "8192") != xt.end());
    CHECK(svg->find(">1K</text>") != std::string::npos);
    CHECK(svg->find(">8K</text>") != std::string::npos);
    CHECK(svg->find("sequence length n (log scale)") != std::string::npos);
    // full: one point and the oom mark at 8192; ls: two points.
    CHECK(attr_values(*svg, "class=\"oom\"", "data-x") == std::vector<std::string>{"8192"});
    CHECK(svg->find("out of memory") != std::string::npos);
  }
  // Points sit where their values say: longer n further right, more time higher up (smaller y).
  const auto cx = attr_values(time_svg, "<circle", "cx"), cy = attr_values(time_svg, "<circle", "cy");
  REQUIRE(cx.size() == 3);  // full 1024; ls 1024, 8192
  CHECK(std::stod(cx[0]) == Approx(std::stod(cx[1])));
  CHECK(std::stod(cx[2]) > std::stod(cx[1]) + 100);
  CHECK(std::stod(cy[0]) < std::stod(cy[1]));  // full is slower than ls at 1024
  CHECK(std::stod(cy[2]) < std::stod(cy[1]));  // ls at 8192 is slower than at 1024
  CHECK(time_svg.find("median time (log scale)") != std::string::npos);
  CHECK(time_svg.find(" ms</text>") != std::string::npos);
  // The memory plot draws the budget the oom point hit, and the oom mark on it.
  CHECK(mem_svg.find("class=\"budget\"") != std::string::npos);
  CHECK(mem_svg.find(">budget 16 GiB</text>") != std::string::npos);
  CHECK(mem_svg.find(" MiB</text>") != std::string::npos);
  // Training curves: one series per run of the task, linear axes, accuracy in percent.
  const std::string acc_svg = render_svg(plot_named(plots, "train-listops-val-accuracy"));
  xml_tags(acc_svg);
  CHECK(attr_values(acc_svg, "class=\"series\"", "data-name") ==
        std::vector<std::string>{"full [lra-small]", "ls:r=32,w=8 [lra-small]"});
  CHECK(attr_values(acc_svg, "<circle", "data-y").size() == 4);
  CHECK(acc_svg.find("%</text>") != std::string::npos);
}

TEST_CASE("report plots render headless to PNG", "[render]") {
  if (std::system("command -v rsvg-convert >/dev/null 2>&1") != 0) {
    WARN("skipped: rsvg-convert (Debian librsvg2-bin, installed by ./dev.sh) is not on PATH");
    return;
  }
  const auto dir = test::fresh_dir("render_png");
  const auto plots = report_plots(fixture());
  const Plot& p = plot_named(plots, "train-step-cpu-b8-d64-h2-l2-mlp128-time");
  const auto svg = dir / "time.svg", png = dir / "time.png";
  std::ofstream(svg) << render_svg(p);
  REQUIRE(std::system(fmt::format("rsvg-convert -o {} {}", png.string(), svg.string()).c_str()) == 0);
  const Image8 img = read_png(png.string(), 3);
  CHECK(img.width == 760);
  CHECK(img.height == 420);
  // Both series' colours are drawn (lines and markers), and the rest is mostly white background.
  auto count_colour = [&](int r, int g, int b) {
    int k = 0;
    for (int y = 0; y < img.height; ++y)
      for (int x = 0; x < img.width; ++x)
        k += std::abs(img.at(y, x, 0) - r) < 24 && std::abs(img.at(y, x, 1) - g) < 24 && std::abs(img.at(y, x, 2) - b) < 24;
    return k;
  };
  CHECK(count_colour(0x4e, 0x79, 0xa7) > 40);  // full
  CHECK(count_colour(0xf2, 0x8e, 0x2b) > 40);  // ls
  CHECK(count_colour(255, 255, 255) > img.width * img.height / 2);
}

TEST_CASE("report writes self-contained HTML and SVG files that Markdown links", "[render][cli]") {
  const auto dir = test::fresh_dir("render_html");
  write_report((dir / "a.json").string(), fixture());
  const auto r = test::run_cli(fmt::format("report {} --format html -o {}", (dir / "a.json").string(),
                                           (dir / "r.html").string()));
  INFO(r.output);
  REQUIRE(r.code == 0);
  const std::string html = test::read_file(dir / "r.html");
  const auto tags = xml_tags(html.substr(html.find("<html")));
  CHECK(std::count(tags.begin(), tags.end(), "svg") == 6);
  CHECK(std::count(tags.begin(), tags.end(), "table") == 4);  // context, one sweep group, maxlen, accuracy
  CHECK(html.find("<code>sliding</code>") != std::string::npos);
  CHECK(html.find("http") == html.find("http://www.w3.org/2000/svg"));  // nothing fetched from elsewhere
  CHECK(html.find("<td class=\"r\">7936</td>") != std::string::npos);

  const auto md = test::run_cli(fmt::format("report {} -o {} --plots {}", (dir / "a.json").string(),
                                            (dir / "r.md").string(), (dir / "plots").string()));
  REQUIRE(md.code == 0);
  const std::string md_text = test::read_file(dir / "r.md");
  CHECK(md_text.find("![train-step-cpu-b8-d64-h2-l2-mlp128-time](plots/train-step-cpu-b8-d64-h2-l2-mlp128-time.svg)") !=
        std::string::npos);
  CHECK(md_text.find("## Training curves") != std::string::npos);
  for (const auto& p : report_plots(fixture())) CHECK(fs::exists(dir / "plots" / (p.slug + ".svg")));
}

TEST_CASE("PNG files round-trip and a corrupt one is an input error naming it", "[render]") {
  const auto dir = test::fresh_dir("png");
  Image8 grey{5, 3, 1, {}}, rgb{2, 2, 3, {}};
  for (int i = 0; i < 15; ++i) grey.pixels.push_back(static_cast<std::uint8_t>(17 * i));
  for (int i = 0; i < 12; ++i) rgb.pixels.push_back(static_cast<std::uint8_t>(20 * i + 3));
  write_png((dir / "g.png").string(), grey);
  write_png((dir / "c.png").string(), rgb);
  const Image8 g = read_png((dir / "g.png").string(), 1), c = read_png((dir / "c.png").string(), 3);
  CHECK(g.width == 5);
  CHECK(g.height == 3);
  CHECK(g.pixels == grey.pixels);
  CHECK(c.pixels == rgb.pixels);
  CHECK(read_png((dir / "g.png").string(), 3).pixels[3 * 4] == grey.pixels[4]);  // grey read as RGB: r = g = b
  std::ofstream(dir / "bad.png") << "\x89PNG\r\n\x1a\n not really";
  CHECK_THROWS_WITH(read_png((dir / "bad.png").string()), Catch::Contains("bad.png"));
  CHECK_THROWS_WITH(read_png((dir / "missing.png").string()), Catch::Contains("missing.png"));
}
