// `fff routes`: the routing report of a trained leaf FFF or neuron FFF classifier. The numbers
// come from fff::route_report (the library); this file prints them (a table or one JSON object)
// and draws the tree and each leaf's mean input image with gnuplot.
#include "routes_cli.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <system_error>
#include <vector>

#include "cli_util.h"
#include "fff/io/atomic_file.h"
#include "fff/models/classifier.h"
#include "fff/training/train.h"

extern char** environ;

namespace fff_cli {

namespace {

using json = nlohmann::json;

const char* const kFashionMnistClasses[10] = {"T-shirt/top", "Trouser",   "Pullover", "Dress",
                                              "Coat",        "Sandal",    "Shirt",    "Sneaker",
                                              "Bag",         "Ankle boot"};

// A picture of more leaves than this (a tree deeper than 8) would not be readable.
constexpr int64_t kMaxPictureLeaves = 256;

constexpr const char* kInstallGnuplot = "apt-get install gnuplot-nox";

std::vector<std::string> class_names(const std::string& data, int64_t classes) {
  std::vector<std::string> names;
  for (int64_t c = 0; c < classes; ++c)
    names.push_back(data == "fashion-mnist" && classes == 10 ? kFashionMnistClasses[c]
                                                             : std::to_string(c));
  return names;
}

// ---- what the report says, from the library's counts ------------------------------------------

struct Dominant {
  int64_t cls = -1, rows = 0;  // cls -1: the leaf has no rows
};

Dominant dominant(const fff::RouteReport& rep, int64_t leaf) {
  Dominant d;
  const int64_t* h = rep.leaf_class_rows.data() + leaf * rep.classes;
  for (int64_t c = 0; c < rep.classes; ++c)
    if (h[c] > d.rows) d = {c, h[c]};
  return d;
}

double ratio(int64_t a, int64_t b) {
  return b > 0 ? static_cast<double>(a) / static_cast<double>(b) : 0.0;
}

// Entropy in bits of tree t's leaf shares.
double leaf_entropy_bits(const fff::RouteReport& rep, int64_t t) {
  double h = 0.0;
  const int64_t L = rep.leaves_per_tree();
  for (int64_t j = 0; j < L; ++j) {
    const double p = ratio(rep.leaf_rows[t * L + j], rep.rows);
    if (p > 0) h -= p * std::log2(p);
  }
  return h;
}

// Leaf FFF: the entropy of its leaf shares; neuron FFF: the mean over its trees.
double mean_leaf_entropy_bits(const fff::RouteReport& rep) {
  double sum = 0.0;
  for (int64_t t = 0; t < rep.trees; ++t) sum += leaf_entropy_bits(rep, t);
  return rep.trees > 0 ? sum / static_cast<double>(rep.trees) : 0.0;
}

int64_t leaves_used(const fff::RouteReport& rep) {
  return std::count_if(rep.leaf_rows.begin(), rep.leaf_rows.end(), [](int64_t r) { return r > 0; });
}

int64_t node_level(int64_t i) {
  int64_t level = 0;
  while ((int64_t{2} << level) - 1 <= i) ++level;
  return level;
}

json report_json(const fff::RouteReport& rep, const std::vector<std::string>& names) {
  const int64_t L = rep.leaves_per_tree(), n = rep.nodes_per_tree(), C = rep.classes;
  json leaves = json::array();
  for (int64_t t = 0; t < rep.trees; ++t)
    for (int64_t leaf = 0; leaf < L; ++leaf) {
      const int64_t j = t * L + leaf, rows = rep.leaf_rows[j];
      const Dominant d = dominant(rep, j);
      const int64_t* h = rep.leaf_class_rows.data() + j * C;
      leaves.push_back({{"tree", t},
                        {"leaf", leaf},
                        {"node", n + leaf},
                        {"rows", rows},
                        {"share", ratio(rows, rep.rows)},
                        {"class_rows", std::vector<int64_t>(h, h + C)},
                        {"accuracy", rows > 0 ? json(ratio(rep.leaf_correct[j], rows)) : nullptr},
                        {"dominant_class", rows > 0 ? json(d.cls) : nullptr},
                        {"dominant_class_name", rows > 0 ? json(names[d.cls]) : nullptr},
                        {"dominant_share", rows > 0 ? json(ratio(d.rows, rows)) : nullptr}});
    }
  json nodes = json::array();
  for (int64_t t = 0; t < rep.trees; ++t)
    for (int64_t i = 0; i < n; ++i) {
      const int64_t k = t * n + i, rows = rep.node_rows[k], right = rep.node_right[k];
      const auto if_rows = [&](double v) { return rows > 0 ? json(v) : json(nullptr); };
      nodes.push_back({{"tree", t},
                       {"node", i},
                       {"level", node_level(i)},
                       {"rows", rows},
                       {"share", ratio(rows, rep.rows)},
                       {"left", rows - right},
                       {"right", right},
                       {"left_share", if_rows(ratio(rows - right, rows))},
                       {"right_share", if_rows(ratio(right, rows))},
                       {"mean_entropy_bits", if_rows(rep.node_mean_entropy_bits[k])},
                       {"mean_abs_logit", if_rows(rep.node_mean_abs_logit[k])}});
    }
  return {{"rows", rep.rows},
          {"class_names", names},
          {"accuracy", rep.rows > 0 ? json(ratio(rep.correct, rep.rows)) : nullptr},
          {"tree_count", rep.trees},
          {"leaves_per_tree", L},
          {"leaf_count", rep.trees * L},
          {"leaves_used", leaves_used(rep)},
          {"leaf_entropy_bits", mean_leaf_entropy_bits(rep)},
          {"leaf_entropy_max_bits", static_cast<double>(rep.depth)},
          {"leaves", leaves},
          {"nodes", nodes}};
}

// ---- the table ------------------------------------------------------------------------------

// Leaves and nodes listed in full up to these counts; beyond them, the used leaves and the top
// levels (everything is in --json).
constexpr int64_t kMaxListedLeaves = 256;
constexpr int64_t kMaxListedNodeLevels = 6;

void print_report(const RoutesArgs& a, const fff::ModelConfig& cfg, const std::string& data_name,
                  const fff::RouteReport& rep, const std::vector<std::string>& names) {
  const int64_t L = rep.leaves_per_tree(), n = rep.nodes_per_tree(), C = rep.classes;
  const bool neuron = cfg.kind == fff::ModelKind::neuron_fff, many = rep.trees > 1;
  std::printf("%s: %s\n", a.model_path.c_str(), cfg.describe().c_str());
  std::printf("%s, test split: %lld rows, accuracy %.2f%%\n", data_name.c_str(),
              static_cast<long long>(rep.rows), 100 * ratio(rep.correct, rep.rows));
  std::printf("leaves used: %lld of %lld%s; entropy of the leaf shares %.3f bits (%smax %lld)\n",
              static_cast<long long>(leaves_used(rep)), static_cast<long long>(rep.trees * L),
              many ? " (all trees)" : "", mean_leaf_entropy_bits(rep),
              many ? "mean per tree; " : "", static_cast<long long>(rep.depth));
  if (names[0] != "0") {
    std::printf("classes:");
    for (int64_t c = 0; c < C; ++c)
      std::printf(" %lld %s%s", static_cast<long long>(c), names[c].c_str(),
                  c + 1 < C ? "," : "\n");
  }

  const bool all_leaves = rep.trees * L <= kMaxListedLeaves;
  std::printf(
      "\nleaves%s: rows reaching each, their share, the accuracy on them, the dominant "
      "class; rows by class\n",
      neuron ? " (last-level nodes)" : "");
  if (many) std::printf("%5s ", "tree");
  std::printf("%5s %5s %7s %7s %8s  %-16s %6s ", "leaf", "node", "rows", "share", "accuracy",
              "dominant", "of it");
  for (int64_t c = 0; c < C; ++c) std::printf(" %6lld", static_cast<long long>(c));
  std::printf("\n");
  int64_t omitted = 0;
  for (int64_t t = 0; t < rep.trees; ++t)
    for (int64_t leaf = 0; leaf < L; ++leaf) {
      const int64_t j = t * L + leaf, rows = rep.leaf_rows[j];
      if (!all_leaves && rows == 0) {
        ++omitted;
        continue;
      }
      const Dominant d = dominant(rep, j);
      if (many) std::printf("%5lld ", static_cast<long long>(t));
      std::printf("%5lld %5lld %7lld %6.2f%% ", static_cast<long long>(leaf),
                  static_cast<long long>(n + leaf), static_cast<long long>(rows),
                  100 * ratio(rows, rep.rows));
      if (rows > 0)
        std::printf("%7.2f%%  %-16s %5.1f%% ", 100 * ratio(rep.leaf_correct[j], rows),
                    names[d.cls].c_str(), 100 * ratio(d.rows, rows));
      else
        std::printf("%8s  %-16s %6s ", "-", "(empty)", "");
      for (int64_t c = 0; c < C; ++c)
        std::printf(" %6lld", static_cast<long long>(rep.leaf_class_rows[j * C + c]));
      std::printf("\n");
    }
  if (omitted > 0)
    std::printf("(%lld leaves no row reaches are not listed; --json lists every leaf)\n",
                static_cast<long long>(omitted));

  if (n == 0) return;
  std::printf(
      "\nnodes: rows reaching each, the split (%s), the mean binary entropy of "
      "sigmoid(logit) in bits and the mean |logit| over those rows\n",
      neuron ? "right iff the neuron's pre-activation > 0" : "right iff N x + c >= 0");
  if (many) std::printf("%5s ", "tree");
  std::printf("%5s %5s %7s %7s %7s %7s %7s %7s %8s %11s\n", "node", "level", "rows", "share",
              "left", "right", "left%", "right%", "entropy", "mean|logit|");
  bool cut = false;
  for (int64_t t = 0; t < rep.trees; ++t)
    for (int64_t i = 0; i < n; ++i) {
      const int64_t level = node_level(i);
      if (rep.trees * n > 255 && level >= kMaxListedNodeLevels) {
        cut = true;
        continue;
      }
      const int64_t k = t * n + i, rows = rep.node_rows[k], right = rep.node_right[k];
      if (many) std::printf("%5lld ", static_cast<long long>(t));
      std::printf("%5lld %5lld %7lld %6.2f%% %7lld %7lld ", static_cast<long long>(i),
                  static_cast<long long>(level), static_cast<long long>(rows),
                  100 * ratio(rows, rep.rows), static_cast<long long>(rows - right),
                  static_cast<long long>(right));
      if (rows > 0)
        std::printf("%6.1f%% %6.1f%% %8.4f %11.3f\n", 100 * ratio(rows - right, rows),
                    100 * ratio(right, rows), rep.node_mean_entropy_bits[k],
                    rep.node_mean_abs_logit[k]);
      else
        std::printf("%7s %7s %8s %11s\n", "-", "-", "-", "-");
    }
  if (cut)
    std::printf("(levels %lld and deeper are not listed; --json lists every node)\n",
                static_cast<long long>(kMaxListedNodeLevels));
}

// ---- gnuplot --------------------------------------------------------------------------------

// The gnuplot executable on PATH, or "" if there is none.
std::string find_gnuplot() {
  const char* path = std::getenv("PATH");
  if (!path) return "";
  std::stringstream dirs(path);
  for (std::string dir; std::getline(dirs, dir, ':');) {
    const std::string f = (dir.empty() ? std::string(".") : dir) + "/gnuplot";
    struct stat st {};
    if (::stat(f.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(f.c_str(), X_OK) == 0)
      return f;
  }
  return "";
}

// A string for a gnuplot command in single quotes (no escapes inside; '' is a quote), without
// control characters.
std::string gp_single(const std::string& s) {
  std::string out = "'";
  for (char c : s) {
    if (static_cast<unsigned char>(c) < 0x20) continue;
    out += c;
    if (c == '\'') out += '\'';
  }
  return out + "'";
}

// A string in double quotes, for a datablock, a title or a label: \ and " escaped, line breaks
// as \n, other control characters left out.
std::string gp_double(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    if (static_cast<unsigned char>(c) < 0x20) continue;
    if (c == '\\' || c == '"') out += '\\';
    out += c;
  }
  return out + "\"";
}

std::string num(const char* f, double v) {
  return fmt(f, v);
}

// A share as a percentage with the digits a small one needs: "12.3%", "0.04%".
std::string share_text(double share) {
  return num(share >= 0.01 || share == 0.0 ? "%.1f%%" : "%.2f%%", 100 * share);
}

// A class as a picture names it: its name, or "class 3" for a data set without names.
std::string class_label(const std::vector<std::string>& names, int64_t c) {
  return names[c] == std::to_string(c) ? "class " + names[c] : names[c];
}

// A private directory for gnuplot's script and pictures, removed with everything in it.
class ScratchDir {
 public:
  ScratchDir() {
    std::error_code ec;
    std::filesystem::path base = std::filesystem::temp_directory_path(ec);
    if (ec) base = "/tmp";
    std::string tmpl = (base / "fff_routes_XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr)
      throw fff::Error("cannot make a temporary directory in " + base.string() + ": " +
                       std::strerror(errno));
    path_ = tmpl;
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  ScratchDir(const ScratchDir&) = delete;
  ScratchDir& operator=(const ScratchDir&) = delete;
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// Runs gnuplot on the script file; on failure throws an fff::Error starting with `what` and
// quoting gnuplot's messages.
void run_gnuplot(const std::string& gnuplot, const ScratchDir& dir, const std::string& script,
                 const std::string& what) {
  const std::string script_path = dir.file("plot.gp"), err_path = dir.file("gnuplot.err");
  {
    std::ofstream f(script_path, std::ios::binary);
    f << script;
    if (!f.flush()) throw fff::Error(what + ": cannot write the gnuplot script " + script_path);
  }
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 2, err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  std::string arg0 = "gnuplot", arg1 = script_path;
  char* argv[] = {arg0.data(), arg1.data(), nullptr};
  pid_t pid = 0;
  const int rc = ::posix_spawn(&pid, gnuplot.c_str(), &fa, nullptr, argv, environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0)
    throw fff::Error(what + ": cannot run " + gnuplot + ": " + std::strerror(rc) + " (" +
                     kInstallGnuplot + ")");
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) throw fff::Error(what + ": waiting for gnuplot: " + std::strerror(errno));
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::string msg = read_bytes(err_path);
    if (msg.size() > 2000) msg = msg.substr(0, 2000) + "...";
    throw fff::Error(what + ": gnuplot (" + gnuplot + ") failed" +
                     (WIFEXITED(status) ? " with status " + std::to_string(WEXITSTATUS(status))
                                        : std::string(" on a signal")) +
                     (msg.empty() ? std::string() : ":\n" + msg));
  }
}

// Copies the PNG gnuplot wrote (at `from`) to `to` atomically (temporary file, then rename).
void install_png(const std::string& from, const std::string& to, const std::string& flag) {
  const std::string png = read_bytes(from);
  if (png.size() < 8 || png.compare(0, 8, "\x89PNG\r\n\x1a\n") != 0)
    throw fff::Error(flag + " " + to + ": gnuplot wrote no PNG picture");
  try {
    fff::write_file_atomically(to, [&](std::ostream& out) {
      out.write(png.data(), static_cast<std::streamsize>(png.size()));
    });
  } catch (const fff::Error& e) {
    throw fff::Error(flag + " " + e.what());
  }
}

// The tree (tree 0 of a neuron FFF): nodes by level, root at the top, edges, leaves sized and
// coloured by their share of the rows and labelled with it and their dominant class.
std::string tree_script(const fff::RouteReport& rep, const std::vector<std::string>& names,
                        const std::string& title, const std::string& out) {
  const int64_t L = rep.leaves_per_tree(), n = rep.nodes_per_tree(), D = rep.depth;
  const int width = static_cast<int>(std::clamp<int64_t>(160 + 70 * L, 900, 6000));
  const int height = static_cast<int>(std::max<int64_t>(520, 330 + 80 * D));
  const double px_per_leaf = (width - 160.0) / static_cast<double>(L);
  auto x_of = [&](int64_t level, int64_t k) {
    return (static_cast<double>(k) + 0.5) * std::ldexp(1.0, static_cast<int>(D - level)) - 0.5;
  };
  std::string edges, nodes, leaves, empty;
  double max_share = 0.0;
  for (int64_t j = 0; j < L; ++j)
    max_share = std::max(max_share, ratio(rep.leaf_rows[j], rep.rows));
  for (int64_t i = 0; i < n; ++i) {
    const int64_t level = node_level(i), k = i - ((int64_t{1} << level) - 1);
    const double x = x_of(level, k), y = static_cast<double>(D - level);
    for (int64_t side = 0; side < 2; ++side)
      edges += num("%.4f", x) + " " + num("%.4f", y) + " " +
               num("%.4f", x_of(level + 1, 2 * k + side) - x) + " -1\n";
    const int64_t rows = rep.node_rows[i], right = rep.node_right[i];
    // Labelled where there is room for the label.
    const bool room = px_per_leaf * std::ldexp(1.0, static_cast<int>(D - level)) >= 120;
    std::string label = !room       ? ""
                        : rows == 0 ? "no rows"
                                    : std::to_string(rows) + ": L " +
                                          num("%.0f", 100 * ratio(rows - right, rows)) + "% / R " +
                                          num("%.0f", 100 * ratio(right, rows)) + "%";
    nodes += num("%.4f", x) + " " + num("%.4f", y) + " " + gp_double(label) + "\n";
  }
  for (int64_t j = 0; j < L; ++j) {
    const int64_t rows = rep.leaf_rows[j];
    const double share = ratio(rows, rep.rows);
    if (rows == 0) {
      empty += num("%.4f", static_cast<double>(j)) + " 0 " +
               gp_double("leaf " + std::to_string(j) + ": empty") + "\n";
      continue;
    }
    const Dominant d = dominant(rep, j);
    const double size = 1.0 + 4.0 * std::sqrt(max_share > 0 ? share / max_share : 0.0);
    const std::string label = share_text(share) + "  " + class_label(names, d.cls) + " (" +
                              num("%.0f", 100 * ratio(d.rows, rows)) + "%)";
    leaves += num("%.4f", static_cast<double>(j)) + " 0 " + num("%.3f", size) + " " +
              num("%.3f", 100 * share) + " " + gp_double(label) + "\n";
  }
  std::string s;
  s += "set terminal pngcairo noenhanced size " + std::to_string(width) + "," +
       std::to_string(height) + " font 'sans,9'\n";
  s += "set output " + gp_single(out) + "\n";
  s += "set title " + gp_double(title) + "\n";
  s += "unset key\nunset border\nunset xtics\nunset ytics\n";
  s += "set xrange [-0.8:" + num("%.2f", static_cast<double>(L) - 0.2) + "]\n";
  s += "set yrange [-0.3:" + num("%.2f", static_cast<double>(D) + 0.5) + "]\n";
  s += "set bmargin 15\nset lmargin 2\nset rmargin 12\n";
  s += "set palette defined (0 '#c6dbef', 1 '#6baed6', 2 '#08306b')\n";
  s += "set cbrange [0:" + num("%.4f", std::max(100 * max_share, 1e-3)) + "]\n";
  s += "set cblabel 'share of the rows (%)'\n";
  s += "$edges << EOD\n" + edges + "EOD\n";
  s += "$nodes << EOD\n" + nodes + "EOD\n";
  s += "$leaves << EOD\n" + leaves + "EOD\n";
  s += "$empty << EOD\n" + empty + "EOD\n";
  std::vector<std::string> parts;
  if (!edges.empty()) {
    parts.push_back("$edges using 1:2:3:4 with vectors nohead lc rgb '#9a9a9a' lw 1.5");
    parts.push_back("$nodes using 1:2 with points pt 7 ps 1.6 lc rgb '#404040'");
    parts.push_back("$nodes using 1:2:3 with labels offset 0,1.1 font ',8'");
  }
  if (!leaves.empty()) {
    parts.push_back("$leaves using 1:2:3:4 with points pt 5 ps variable lc palette");
    parts.push_back("$leaves using 1:2:5 with labels rotate by 90 right offset 0,-2");
  }
  if (!empty.empty()) {
    parts.push_back("$empty using 1:2 with points pt 4 ps 1.2 lc rgb '#a0a0a0'");
    parts.push_back(
        "$empty using 1:2:3 with labels rotate by 90 right offset 0,-2 tc rgb "
        "'#808080'");
  }
  if (leaves.empty()) s += "unset colorbox\n";
  s += "plot ";
  for (size_t i = 0; i < parts.size(); ++i) s += (i ? ", \\\n     " : "") + parts[i];
  s += "\nunset output\n";
  return s;
}

// A grid of the mean input image (raw pixels: the model's standardisation undone) of the rows
// reaching each leaf of tree 0; empty leaves blank and labelled.
std::string images_script(const fff::RouteReport& rep, const std::vector<std::string>& names,
                          const fff::Dataset& d, const fff::Standardization& norm,
                          const std::string& title, const std::string& out) {
  const int64_t L = rep.leaves_per_tree(), h = d.image_height, w = d.image_width;
  const int64_t ch = d.image_channels, in = d.features();
  const int64_t cols = static_cast<int64_t>(std::ceil(std::sqrt(static_cast<double>(L))));
  const int64_t rows = (L + cols - 1) / cols;
  const int64_t scale = std::max<int64_t>(1, (140 + w / 2) / w);  // screen pixels per pixel
  const int64_t gap = (24 + scale - 1) / scale, label = (46 + scale - 1) / scale;
  const int64_t cell_w = w + gap, cell_h = h + label;
  // At least 640 screen pixels wide (for the title), the grid centred.
  const int64_t grid_w = cols * cell_w + gap, X = std::max(grid_w, (640 + scale - 1) / scale);
  const int64_t left = (X - grid_w) / 2 + gap, Y = rows * cell_h + gap / 2 + 1;
  const int64_t title_px = 50;
  // White everywhere, then each used leaf's mean image.
  std::vector<uint8_t> rgb(static_cast<size_t>(X * Y * 3), 255);
  for (int64_t j = 0; j < L; ++j) {
    if (rep.leaf_rows[j] == 0) continue;
    const int64_t x0 = left + (j % cols) * cell_w, y0 = (j / cols) * cell_h + label;
    const double* mean = rep.leaf_input_mean.data() + j * in;
    for (int64_t y = 0; y < h; ++y)
      for (int64_t x = 0; x < w; ++x)
        for (int64_t c = 0; c < 3; ++c) {
          const double v = mean[(ch == 3 ? c : 0) * h * w + y * w + x] * norm.std + norm.mean;
          rgb[static_cast<size_t>(((y0 + y) * X + x0 + x) * 3 + c)] =
              static_cast<uint8_t>(std::lround(255.0 * std::clamp(v, 0.0, 1.0)));
        }
  }
  std::string s;
  s += "reset\n";
  s += "set terminal pngcairo noenhanced size " + std::to_string(X * scale) + "," +
       std::to_string(Y * scale + title_px) + " font 'sans,8'\n";
  s += "set output " + gp_single(out) + "\n";
  s += "set title " + gp_double(title) + " font ',10'\n";
  s += "unset key\nunset border\nunset tics\nunset colorbox\n";
  s += "set lmargin at screen 0\nset rmargin at screen 1\nset bmargin at screen 0\n";
  s += "set tmargin at screen " +
       num("%.6f", static_cast<double>(Y * scale) / static_cast<double>(Y * scale + title_px)) +
       "\n";
  s += "set xrange [-0.5:" + std::to_string(X) + "-0.5]\n";
  s += "set yrange [" + std::to_string(Y) + "-0.5:-0.5]\n";
  for (int64_t j = 0; j < L; ++j) {
    const int64_t r = rep.leaf_rows[j];
    std::string text = "leaf " + std::to_string(j) + ": ";
    if (r == 0) {
      text += "empty";
    } else {
      const Dominant dom = dominant(rep, j);
      text += std::to_string(r) + " (" + share_text(ratio(r, rep.rows)) + ")\n" +
              class_label(names, dom.cls) + " " + num("%.0f", 100 * ratio(dom.rows, r)) + "%";
    }
    const double lx =
        static_cast<double>(left + (j % cols) * cell_w) + 0.5 * static_cast<double>(w) - 0.5;
    const double ly = static_cast<double>((j / cols) * cell_h) + 0.45 * static_cast<double>(label);
    s += "set label " + gp_double(text) + " at " + num("%.2f", lx) + "," + num("%.2f", ly) +
         " center front\n";
  }
  s += "$img << EOD\n";
  for (int64_t y = 0; y < Y; ++y)
    for (int64_t x = 0; x < X; ++x) {
      const uint8_t* p = rgb.data() + (y * X + x) * 3;
      s += std::to_string(x) + " " + std::to_string(y) + " " + std::to_string(p[0]) + " " +
           std::to_string(p[1]) + " " + std::to_string(p[2]) + "\n";
    }
  s += "EOD\n";
  s += "plot $img using 1:2:3:4:5 with rgbimage\nunset output\n";
  return s;
}

// Checks a picture flag's path before any work; fails if gnuplot is missing.
void check_picture_flag(const std::string& flag, const std::string& path,
                        const std::string& gnuplot) {
  if (path.empty()) return;
  check_save_path(path, flag);
  if (gnuplot.empty())
    throw fff::Error(flag + " " + path + ": needs gnuplot, which is not installed (none on PATH; " +
                     "Debian: " + kInstallGnuplot + "); the report itself works without it");
}

// A picture of the tree needs at most kMaxPictureLeaves leaves per tree.
void check_picture_size(const std::string& flag, const std::string& path, int64_t depth) {
  if (path.empty() || (depth <= 30 && (int64_t{1} << depth) <= kMaxPictureLeaves)) return;
  throw fff::Error(flag + " " + path + ": the tree has 2^" + std::to_string(depth) +
                   " leaves; a picture is drawn for at most " + std::to_string(kMaxPictureLeaves) +
                   " (depth 8; --json lists every leaf)");
}

}  // namespace

CLI::App* add_routes_command(CLI::App& app, RoutesArgs& a) {
  auto* cmd = app.add_subcommand(
      "routes",
      "Routing report of a leaf FFF or neuron FFF classifier on a data set's test split: rows, "
      "share, class histogram, accuracy and dominant class per leaf; rows, left/right split, "
      "mean decision entropy and |logit| per node; overall accuracy, leaves used and the "
      "entropy of the leaf shares. Optional pictures of the tree and of each leaf's mean input "
      "image (gnuplot)");
  cmd->add_option("MODEL", a.model_path, "Model file written by 'fff train --save'")->required();
  cmd->add_option("--data", a.data, "Data set name or directory (as for train)")
      ->capture_default_str();
  cmd->add_option("--limit", a.limit, "Use only the first N test rows (0: all)")
      ->check(non_negative());
  cmd->add_option("--threads", a.threads, "Threads (default: all cores)")->check(thread_count());
  cmd->add_flag("--json", a.json,
                "Print one JSON object on stdout: the model's config (model, depth, ...), file, "
                "data, rows, class_names, accuracy, tree_count, leaves_per_tree, leaf_count, "
                "leaves_used, leaf_entropy_bits (neuron FFF: mean over trees), "
                "leaf_entropy_max_bits, plot, images, and the arrays leaves [{tree, leaf, node "
                "(heap index), rows, share, class_rows, accuracy, dominant_class, "
                "dominant_class_name, dominant_share}] and nodes [{tree, node, level, rows, "
                "share, left, right, left_share, right_share, mean_entropy_bits (binary entropy "
                "of sigmoid(logit); for a neuron FFF of its pre-activation, which routes by its "
                "sign), mean_abs_logit}]; shares are fractions, a leaf or node no row reaches "
                "has null accuracy, dominant class and shares");
  cmd->add_option("--plot", a.plot,
                  "Draw the tree (a neuron FFF's first tree) into this PNG with gnuplot: nodes "
                  "by level, edges, leaves sized and coloured by their share of the rows and "
                  "labelled with it and their dominant class (at most 256 leaves)");
  cmd->add_option("--images", a.images,
                  "Draw the mean input image (raw pixels) of the rows reaching each leaf (a "
                  "neuron FFF's first tree) into this PNG with gnuplot; empty leaves blank (image "
                  "data only: IDX (n, h, w) or CIFAR-10; at most 256 leaves)");
  return cmd;
}

int run_routes(const RoutesArgs& a) {
  // The pictures' paths and gnuplot first: a typo should not wait for the data.
  const std::string gnuplot = a.plot.empty() && a.images.empty() ? std::string() : find_gnuplot();
  check_picture_flag("--plot", a.plot, gnuplot);
  check_picture_flag("--images", a.images, gnuplot);

  fff::Context ctx(a.threads > 0 ? a.threads : default_threads());
  fff::LoadedModel loaded = fff::load_model(a.model_path);
  fff::Model& model = *loaded.model;
  const fff::ModelConfig& cfg = model.config();
  if (cfg.kind == fff::ModelKind::ff)
    throw fff::Error(a.model_path +
                     ": a dense ff classifier has no tree, so no routes to report (fff routes "
                     "reads leaf-fff and neuron-fff models)");
  check_picture_size("--plot", a.plot, cfg.depth);
  check_picture_size("--images", a.images, cfg.depth);

  const fff::TrainTest data = load_data_for_model(a.data, a.limit, a.model_path, cfg,
                                                  /*keep_train=*/false);
  const fff::Dataset& test = data.test;
  if (!a.images.empty()) {
    const bool image = (test.image_channels == 1 || test.image_channels == 3) &&
                       test.image_height * test.image_width * test.image_channels == cfg.in;
    if (!image)
      throw fff::Error("--images " + a.images + ": the rows of --data " + a.data +
                       " are not known to be images (" + std::to_string(cfg.in) +
                       " features; --images draws IDX (n, h, w) images and CIFAR-10's)");
  }
  const fff::RouteReport rep =
      fff::route_report(ctx, model, test, {.leaf_inputs = !a.images.empty()});
  const std::vector<std::string> names = class_names(data.name, rep.classes);

  if (!a.plot.empty() || !a.images.empty()) {
    const std::string file = std::filesystem::path(a.model_path).filename().string();
    const std::string which =
        rep.trees > 1 ? ", tree 0 of " + std::to_string(rep.trees) : std::string();
    ScratchDir dir;
    std::string script;
    if (!a.plot.empty())
      script += tree_script(rep, names,
                            file + ": " + cfg.describe() + which + "\n" + data.name + ", " +
                                std::to_string(rep.rows) + " test rows: accuracy " +
                                num("%.2f", 100 * ratio(rep.correct, rep.rows)) +
                                "%, leaves used " + std::to_string(leaves_used(rep)) + " of " +
                                std::to_string(rep.trees * rep.leaves_per_tree()) +
                                ", leaf-share entropy " + num("%.2f", mean_leaf_entropy_bits(rep)) +
                                " of " + std::to_string(rep.depth) + " bits",
                            dir.file("tree.png"));
    if (!a.images.empty())
      script += images_script(rep, names, test, cfg.input_norm,
                              "Mean input (raw pixels) of the rows reaching each leaf" + which +
                                  "\n" + file + ", " + data.name + " test split",
                              dir.file("images.png"));
    const std::string what = !a.plot.empty() ? "--plot " + a.plot : "--images " + a.images;
    run_gnuplot(gnuplot, dir, script, what);
    if (!a.plot.empty()) install_png(dir.file("tree.png"), a.plot, "--plot");
    if (!a.images.empty()) install_png(dir.file("images.png"), a.images, "--images");
  }

  if (a.json) {
    json out = config_json(cfg);
    out["file"] = a.model_path;
    out["data"] = data.name;
    out.update(report_json(rep, names));
    out["plot"] = a.plot.empty() ? json(nullptr) : json(a.plot);
    out["images"] = a.images.empty() ? json(nullptr) : json(a.images);
    std::cout << json_text(out) << "\n";
    return 0;
  }
  print_report(a, cfg, data.name, rep, names);
  if (!a.plot.empty()) std::printf("\nwrote %s\n", a.plot.c_str());
  if (!a.images.empty()) std::printf("%swrote %s\n", a.plot.empty() ? "\n" : "", a.images.c_str());
  return 0;
}

}  // namespace fff_cli
