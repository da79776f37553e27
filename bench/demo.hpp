// `lsbench demo`, the README's main job on embedded defaults: a short attention sweep of every
// variant, then short ListOps training runs (smoke preset, data generated when missing) of full
// attention and Transformer-LS, ending in a table a person can read and one report.
#pragma once
#include <string>
#include <vector>

namespace lsb {

struct DemoOptions {
  std::string json_path = "lsbench-demo.json";
  std::string data_dir = "lsbench-demo-data";  // ListOps is generated into DATA_DIR/listops once
  std::vector<std::string> command_line;
};

int run_demo(const DemoOptions& opt);

}  // namespace lsb
