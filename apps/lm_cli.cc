// The `fff lm` commands: options, progress with ETA, JSON results, checkpoints and sampling.
#include "lm_cli.h"

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli_util.h"
#include "fff/core/context.h"
#include "fff/training/lm_train.h"

namespace fff_cli {

namespace {

// Options that fix the model: a resumed run takes them from its checkpoint.
const char* const kModelFlags[] = {"--mixer",     "--dim",          "--layers", "--window",
                                   "--width",     "--leaf-width",   "--trees",  "--depth",
                                   "--scan",      "--seq",          "--batch",  "--lr",
                                   "--hardening", "--harden-after", "--seed"};

// Refuses a model that cannot fit in this machine's memory before it is made, naming the flags
// that size it: per layer the QRNN's products and the feedforward block with their gradients and
// Adam's moments, and a step's activations (--seq x --batch tokens).
void check_lm_memory(const LmTrainArgs& a, fff::FFKind mixer) {
  fff::FFConfig f;
  f.kind = mixer;
  f.in = f.out = a.dim;
  f.width = a.width;
  f.leaf_width = a.leaf_width;
  f.trees = a.trees;
  f.depth = a.depth;
  if (mixer == fff::FFKind::leaf_fff) {  // LmConfig::leaf_depth, in double
    f.depth = 0;
    while (f.depth < 62 && static_cast<double>(a.leaf_width) * std::ldexp(2.0, f.depth) <=
                               static_cast<double>(a.width))
      ++f.depth;
  }
  const double d = static_cast<double>(a.dim), tokens = static_cast<double>(a.seq) * a.batch;
  const double layers = static_cast<double>(a.layers);
  const double bytes =
      layers * (fff_cli::ff_training_bytes(f, tokens) +
                16.0 * 3 * static_cast<double>(a.window) * d * d + 4.0 * tokens * 8 * d) +
      16.0 * 2 * 256 * d;
  check_fits_in_memory(
      "--mixer " + std::string(fff::ff_kind_name(mixer)) + " --dim " + std::to_string(a.dim) +
          " --layers " + std::to_string(a.layers) +
          (mixer == fff::FFKind::neuron_fff
               ? " --trees " + std::to_string(a.trees) + " --depth " + std::to_string(a.depth)
               : " --width " + std::to_string(a.width) +
                     (mixer == fff::FFKind::leaf_fff
                          ? " --leaf-width " + std::to_string(a.leaf_width)
                          : std::string())) +
          " --seq " + std::to_string(a.seq) + " --batch " + std::to_string(a.batch),
      bytes);
}

int run_train(const LmTrainArgs& a, const CLI::App& cmd) {
  fff::Context ctx(a.threads > 0 ? a.threads : default_threads());
  const std::string text_path = a.text.empty() ? fff::kDefaultLmText : a.text;
  if (!a.resume.empty())
    for (const char* flag : kModelFlags)
      if (cmd.count(flag) > 0)
        throw fff::Error(std::string(flag) + " cannot be combined with --resume: the checkpoint " +
                         a.resume + " fixes the model and its training settings");
  check_save_path(a.save);
  // Flags before data: a bad (or old) --mixer is reported before the text is read. (With
  // --resume the checkpoint fixes the mixer and this value is not used.)
  const fff::FFKind mixer =
      a.resume.empty() ? fff_cli::parse_kind_flag("--mixer", a.mixer) : fff::FFKind::leaf_fff;
  if (a.resume.empty()) check_lm_memory(a, mixer);
  const fff::TextSplit text = fff::load_text(text_path, a.val_fraction);

  auto trainer = [&]() {
    if (!a.resume.empty()) return fff::load_lm_checkpoint(a.resume);
    fff::LmConfig c;
    c.dim = a.dim;
    c.layers = a.layers;
    c.window = a.window;
    c.scan = fff::parse_scan_algo(a.scan);
    c.mixer = mixer;
    c.width = a.width;
    c.leaf_width = a.leaf_width;
    c.trees = a.trees;
    c.depth = a.depth;
    fff::LmTrainOptions o;
    o.seq = a.seq;
    o.batch = a.batch;
    o.lr = static_cast<float>(a.lr);
    o.hardening = static_cast<float>(a.hardening);
    o.harden_after = a.harden_after;
    fff::Rng rng(a.seed);
    return fff::LmTrainer(fff::make_lm(c, rng), o);
  };
  fff::LmTrainer tr = trainer();
  tr.options.steps = a.steps;
  tr.options.eval_every = a.eval_every;
  tr.options.checkpoint_every = a.checkpoint_every;
  tr.options.save_path = a.save;
  if (tr.step >= tr.options.steps)
    throw fff::Error("nothing to do: the run is at step " + std::to_string(tr.step) +
                     " and --steps is " + std::to_string(tr.options.steps));
  const auto& c = tr.model.cfg;
  int64_t n_params = 0;
  for (fff::Param* p : tr.model.params()) n_params += p->value.size();
  std::fprintf(stderr,
               "fff lm: %s mixer, dim %lld, %lld layers, %lld parameters; %zu training and %zu "
               "validation bytes from %s; step %lld of %lld\n",
               fff::ff_kind_name(c.mixer), static_cast<long long>(c.dim),
               static_cast<long long>(c.layers), static_cast<long long>(n_params),
               text.train.size(), text.val.size(), text_path.c_str(),
               static_cast<long long>(tr.step), static_cast<long long>(tr.options.steps));
  const bool tty = isatty(STDERR_FILENO);
  const int64_t start_step = tr.step;
  double last_draw = 0.0;
  const fff::LmTrainResult r = fff::train_lm(ctx, tr, text, [&](const fff::LmProgress& p) {
    const double done = static_cast<double>(p.step - start_step);
    const double eta = p.seconds / done * static_cast<double>(p.steps - p.step);
    if (p.val_bpc >= 0.0) {
      if (tty) std::fprintf(stderr, "\r%80s\r", "");
      std::fprintf(stderr, "step %6lld/%lld  train %.3f bpc  val %.3f bpc  %s elapsed, %s left\n",
                   static_cast<long long>(p.step), static_cast<long long>(p.steps), p.train_bpc,
                   p.val_bpc, duration_string(p.seconds).c_str(), duration_string(eta).c_str());
    } else if (tty && p.seconds - last_draw > 0.2) {
      last_draw = p.seconds;
      std::fprintf(stderr, "\r  step %lld/%lld  train %.3f bpc  ETA %s   ",
                   static_cast<long long>(p.step), static_cast<long long>(p.steps), p.train_bpc,
                   duration_string(eta).c_str());
    }
    std::fflush(stderr);
  });
  // Feedforward FLOPs per token at inference, beside the dense FF of the same training width.
  fff::LmConfig dense = c;
  dense.mixer = fff::FFKind::ff;
  // A neuron FFF trains K (2^(D+1) - 1) neurons, not --width: its dense counterpart has that width.
  dense.width = c.ff_config().training_width();
  const double ff_flops = c.ff_inference_flops(), dense_flops = dense.ff_inference_flops();
  nlohmann::json out = {{"mixer", fff::ff_kind_name(c.mixer)},
                        {"dim", c.dim},
                        {"layers", c.layers},
                        {"window", c.window},
                        {"width", c.width},
                        {"dense_width", dense.width},
                        {"leaf_width", c.leaf_width},
                        {"parameters", n_params},
                        {"steps", r.steps},
                        {"train_bpc", r.train_bpc},
                        {"val_bpc", r.val_bpc},
                        {"best_val_bpc", r.best_val_bpc},
                        {"seconds", r.seconds},
                        {"tokens_per_second", r.tokens_per_second},
                        {"ff_flops_per_token", ff_flops},
                        {"dense_ff_flops_per_token", dense_flops},
                        {"ff_flop_reduction", dense_flops / ff_flops},
                        {"threads", ctx.threads}};
  if (!a.save.empty()) out["checkpoint"] = a.save;
  if (a.json) {
    std::cout << json_text(out) << std::endl;
  } else {
    std::printf(
        "validation %.4f bpc (best %.4f) after %lld steps, %.0f tokens/s; feedforward "
        "%.0f FLOPs/token at inference (dense FF of width %lld: %.0f, %.1fx)\n",
        r.val_bpc, r.best_val_bpc, static_cast<long long>(r.steps), r.tokens_per_second, ff_flops,
        static_cast<long long>(dense.width), dense_flops, dense_flops / ff_flops);
  }
  return 0;
}

int run_sample(const LmSampleArgs& a) {
  fff::Context ctx(a.threads > 0 ? a.threads : 1);
  if (a.tokens < 0) throw fff::Error("--tokens must be non-negative");
  // The text is held in memory (a byte per token, and the prompt's tokens as int32).
  check_fits_in_memory("--tokens " + std::to_string(a.tokens),
                       static_cast<double>(a.tokens) + 4.0 * static_cast<double>(a.prompt.size()));
  fff::LmTrainer tr = fff::load_lm_checkpoint(a.model);
  const std::string text =
      fff::sample_lm(ctx, tr.model, a.prompt, a.tokens, static_cast<float>(a.temperature), a.seed);
  std::cout << a.prompt << text << std::endl;
  return 0;
}

}  // namespace

void add_lm_commands(CLI::App& app, LmCommands& cmds) {
  cmds.lm = app.add_subcommand(
      "lm", "Byte-level language model from QRNN sequence mixing and FFF channel mixing");
  cmds.lm->require_subcommand(1);
  auto& t = cmds.train_args;
  auto* tr = cmds.train = cmds.lm->add_subcommand(
      "train", "Train on a text file or directory; report validation bits per character");
  tr->add_option("--text", t.text,
                 std::string("Text file, or a directory of text files (default: ") +
                     fff::kDefaultLmText + ", Debian package 'fortunes')");
  tr->add_option("--val-fraction", t.val_fraction,
                 "Share of the text kept for validation (its end)")
      ->check(CLI::Range(0.001, 0.5))
      ->check(finite_number())
      ->capture_default_str();
  tr->add_option("--mixer", t.mixer,
                 "Channel mixing: ff (dense), leaf-fff (leaf FFF) or neuron-fff; 'fff' is still "
                 "read as leaf-fff")
      ->check(CLI::IsMember({"ff", "leaf-fff", "neuron-fff", "fff"}))
      ->capture_default_str();
  tr->add_option("--dim", t.dim, "Model width")->check(CLI::Range(1, 65536))->capture_default_str();
  tr->add_option("--layers", t.layers, "Blocks")->check(CLI::Range(1, 1024))->capture_default_str();
  tr->add_option("--window", t.window, "QRNN convolution width in bytes")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  tr->add_option("--scan", t.scan, "QRNN scan: sequential, hillis-steele, blelloch or chunked")
      ->check(CLI::IsMember({"sequential", "hillis-steele", "blelloch", "chunked"}))
      ->capture_default_str();
  tr->add_option("--width", t.width, "ff: hidden width; fff: training width (leaves x leaf width)")
      ->check(positive())
      ->capture_default_str();
  tr->add_option("--leaf-width", t.leaf_width, "fff: neurons per leaf")
      ->check(positive())
      ->capture_default_str();
  tr->add_option("--trees", t.trees, "neuron-fff: trees")->check(positive())->capture_default_str();
  tr->add_option("--depth", t.depth, "neuron-fff: tree depth")
      ->check(CLI::Range(0, 20))
      ->capture_default_str();
  tr->add_option("--seq", t.seq, "Bytes per segment (backpropagation is truncated between them)")
      ->check(positive())
      ->capture_default_str();
  tr->add_option("--batch", t.batch, "Parallel streams of text")
      ->check(positive())
      ->capture_default_str();
  tr->add_option("--steps", t.steps, "Total optimizer steps (a resumed run continues to this)")
      ->check(positive())
      ->capture_default_str();
  tr->add_option("--lr", t.lr, "Adam learning rate")
      ->check(positive())
      ->check(finite_number())
      ->capture_default_str();
  tr->add_option("--hardening", t.hardening, "fff: weight of the mean node entropy in the loss")
      ->check(non_negative())
      ->check(finite_number())
      ->capture_default_str();
  tr->add_option("--harden-after", t.harden_after,
                 "fff: share of --steps after which node decisions train hardened (0/1), as "
                 "inference runs them; 1 = never")
      ->check(CLI::Range(0.0, 1.0))
      ->check(finite_number())
      ->capture_default_str();
  tr->add_option("--eval-every", t.eval_every, "Steps between validation runs")
      ->check(positive())
      ->capture_default_str();
  tr->add_option("--save", t.save, "Checkpoint file (safetensors, written atomically)");
  tr->add_option("--checkpoint-every", t.checkpoint_every, "Steps between checkpoints")
      ->check(positive())
      ->capture_default_str();
  tr->add_option("--resume", t.resume, "Continue the run saved in this checkpoint");
  tr->add_option("--seed", t.seed, "Initialisation seed")
      ->check(non_negative())
      ->capture_default_str();
  tr->add_option("--threads", t.threads,
                 "Threads (default: all cores; resume on the same count "
                 "to continue bit for bit)")
      ->check(thread_count());
  tr->add_flag("--json", t.json, "Print one JSON object with the results on stdout");

  auto& s = cmds.sample_args;
  auto* sa = cmds.sample =
      cmds.lm->add_subcommand("sample", "Generate text from a checkpoint of 'fff lm train'");
  sa->add_option("MODEL", s.model, "Checkpoint file")->required();
  sa->add_option("--prompt", s.prompt, "Text to start from");
  sa->add_option("--tokens", s.tokens, "Bytes to generate")
      ->check(non_negative())
      ->capture_default_str();
  sa->add_option("--temperature", s.temperature, "Softmax temperature (0: always the most likely)")
      ->check(CLI::Range(0.0, 100.0))
      ->check(finite_number())
      ->capture_default_str();
  sa->add_option("--seed", s.seed, "Sampling seed (the same seed gives the same text)")
      ->check(non_negative())
      ->capture_default_str();
  sa->add_option("--threads", s.threads, "Threads")->check(thread_count())->capture_default_str();
}

int run_lm(const LmCommands& cmds) {
  if (*cmds.train) return run_train(cmds.train_args, *cmds.train);
  return run_sample(cmds.sample_args);
}

}  // namespace fff_cli
