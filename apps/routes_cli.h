// `fff routes`: the routing report of a trained tree classifier (leaf FFF or neuron FFF): where
// its hard inference sends a data set's test rows, per leaf and per node, with optional gnuplot
// pictures of the tree and of each leaf's mean input image (docs/training.md, "Routing report").
#pragma once

#include <CLI/CLI.hpp>
#include <cstdint>
#include <string>

namespace fff_cli {

struct RoutesArgs {
  std::string model_path, data = "fashion-mnist";
  int64_t limit = 0;
  int threads = 0;  // 0: every core
  bool json = false;
  std::string plot, images;
};

CLI::App* add_routes_command(CLI::App& app, RoutesArgs& a);
// Prints the report (a table, or one JSON object with --json) and writes the pictures asked
// for. Throws fff::Error naming the file or flag on bad input: a dense model, a data set that
// does not fit the model, an unwritable picture path, gnuplot missing for --plot / --images.
int run_routes(const RoutesArgs& a);

}  // namespace fff_cli
