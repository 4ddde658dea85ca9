// Language model training on byte streams (truncated backpropagation with carried state),
// evaluation in bits per character, checkpoints that resume exactly, and sampling.
#include "fff/training/lm_train.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>

#include "core/parallel.h"
#include "fff/io/safetensors.h"
#include "fff/layers/loss.h"

namespace fff {

namespace {

constexpr double kLn2 = 0.69314718055994531;

std::vector<char> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open for reading");
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw Error(path + ": read error");
  return bytes;
}

// Inputs and next-byte targets of T steps from offset `start` of every stream: stream b is the
// b-th of `streams` equal contiguous parts of text.
void segment(const std::vector<int32_t>& text, int64_t streams, int64_t start, int64_t T,
             std::vector<int32_t>& in, std::vector<int32_t>& target) {
  const int64_t len = (static_cast<int64_t>(text.size()) - 1) / streams;
  in.resize(static_cast<size_t>(T * streams));
  target.resize(static_cast<size_t>(T * streams));
  for (int64_t t = 0; t < T; ++t)
    for (int64_t b = 0; b < streams; ++b) {
      const int64_t pos = b * len + start + t;
      in[t * streams + b] = text[pos];
      target[t * streams + b] = text[pos + 1];
    }
}

int64_t segments_per_stream(const std::vector<int32_t>& text, int64_t streams, int64_t T) {
  return ((static_cast<int64_t>(text.size()) - 1) / streams) / T;
}

std::string num(double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.17g", v);
  return buf;
}

}  // namespace

TextSplit load_text(const std::string& path, double val_fraction) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::exists(path, ec))
    throw Error(path + ": no such file or directory" +
                (path == kDefaultLmText ? " (install Debian's 'fortunes' package)" : ""));
  std::vector<char> bytes;
  if (fs::is_directory(path, ec)) {
    std::vector<std::string> files;
    for (const auto& e : fs::directory_iterator(path, ec)) {
      const std::string ext = e.path().extension().string();
      if (e.is_regular_file() && ext != ".dat" && ext != ".u8") files.push_back(e.path().string());
    }
    if (ec) throw Error(path + ": cannot list the directory: " + ec.message());
    std::sort(files.begin(), files.end());
    for (const auto& f : files) {
      const std::vector<char> b = read_bytes(f);
      bytes.insert(bytes.end(), b.begin(), b.end());
    }
  } else {
    bytes = read_bytes(path);
  }
  if (bytes.empty()) throw Error(path + ": no text (empty)");
  if (!(val_fraction > 0.0 && val_fraction < 1.0))
    throw Error("validation fraction must be in (0, 1)");
  const int64_t n = static_cast<int64_t>(bytes.size());
  const int64_t n_val = static_cast<int64_t>(static_cast<double>(n) * val_fraction);
  if (n_val < 2 || n - n_val < 2)
    throw Error(path + ": too short (" + std::to_string(n) +
                " bytes) to split into training and "
                "validation text");
  TextSplit s;
  for (int64_t i = 0; i < n; ++i)
    (i < n - n_val ? s.train : s.val).push_back(static_cast<unsigned char>(bytes[i]));
  return s;
}

LmTrainer::LmTrainer(LmModel m, const LmTrainOptions& o)
    : model(std::move(m)),
      opt({OptimizerKind::adam, o.lr, 0.0f, 0.9f, 0.999f, 1e-8f}, model.params()),
      options(o) {}

double evaluate_bpc(Context& ctx, LmModel& m, const std::vector<int32_t>& text, int64_t streams,
                    int64_t seq) {
  CallScope scope(ctx);
  streams = std::max<int64_t>(1, std::min<int64_t>(streams, static_cast<int64_t>(text.size()) / 2));
  const int64_t len = (static_cast<int64_t>(text.size()) - 1) / streams;
  if (len < 1) throw Error("evaluation text too short");
  LmState state;
  LmContext cache;
  std::vector<int32_t> in, target;
  std::vector<float> logits;
  double total = 0.0;
  int64_t count = 0;
  for (int64_t start = 0; start < len; start += seq) {
    const int64_t T = std::min(seq, len - start);
    segment(text, streams, start, T, in, target);
    logits.resize(static_cast<size_t>(T * streams * LmConfig::kVocab));
    lm_forward(ctx, m, in.data(), T, streams, state, false, logits.data(), cache);
    total += softmax_cross_entropy(logits.data(), target.data(), T * streams, LmConfig::kVocab,
                                   nullptr, nullptr) *
             static_cast<double>(T * streams);
    count += T * streams;
  }
  return total / static_cast<double>(count) / kLn2;
}

LmTrainResult train_lm(Context& ctx, LmTrainer& tr, const TextSplit& text,
                       const std::function<void(const LmProgress&)>& on_progress) {
  const auto& o = tr.options;
  // Comparisons written so that NaN fails them (a NaN hardening trained to NaN without a word).
  if (!(o.hardening >= 0.0f) || !std::isfinite(o.hardening))
    throw Error("LmTrainOptions.hardening = " + std::to_string(o.hardening) +
                ": must be a non-negative number");
  if (!(o.harden_after >= 0.0 && o.harden_after <= 1.0))
    throw Error("LmTrainOptions.harden_after = " + std::to_string(o.harden_after) +
                ": must be in [0, 1]");
  const int64_t T = o.seq, B = o.batch;
  const int64_t per_stream = segments_per_stream(text.train, B, T);
  if (per_stream < 1)
    throw Error("training text too short for LmTrainOptions.batch = " + std::to_string(B) +
                " streams of LmTrainOptions.seq = " + std::to_string(T) + " bytes");
  CallScope scope(ctx);  // one setup for the whole run (optimizer steps included)
  LmContext cache;
  std::vector<int32_t> in, target;
  std::vector<float> logits(static_cast<size_t>(T * B * LmConfig::kVocab)), dlogits(logits.size());
  LmTrainResult r;
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t first_step = tr.step;
  double bpc_sum = 0.0;
  int64_t bpc_n = 0;
  while (tr.step < o.steps) {
    const int64_t j = tr.step % per_stream;
    if (j == 0) tr.state.reset(tr.model, B);  // each pass over the text starts afresh
    segment(text.train, B, j * T, T, in, target);
    const bool hardened =
        static_cast<double>(tr.step) >= o.harden_after * static_cast<double>(o.steps);
    lm_forward(ctx, tr.model, in.data(), T, B, tr.state, true, logits.data(), cache, hardened);
    const double loss = softmax_cross_entropy(logits.data(), target.data(), T * B, LmConfig::kVocab,
                                              dlogits.data(), nullptr);
    if (!std::isfinite(loss)) {
      char lr[32];
      std::snprintf(lr, sizeof(lr), "%g", static_cast<double>(o.lr));
      throw Error("training diverged at step " + std::to_string(tr.step) + " (loss " +
                  std::to_string(loss) +
                  "); try a smaller learning rate than LmTrainOptions.lr = " + lr);
    }
    lm_backward(ctx, tr.model, in.data(), dlogits.data(), o.hardening, cache);
    tr.opt.step();
    ++tr.step;
    bpc_sum += loss / kLn2;
    ++bpc_n;
    const bool last = tr.step == o.steps;
    LmProgress p;
    p.step = tr.step;
    p.steps = o.steps;
    p.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (last || (o.eval_every > 0 && tr.step % o.eval_every == 0)) {
      tr.opt.flush();
      p.val_bpc = evaluate_bpc(ctx, tr.model, text.val);
      if (tr.best_val_bpc == 0.0 || p.val_bpc < tr.best_val_bpc) tr.best_val_bpc = p.val_bpc;
      r.val_bpc = p.val_bpc;
    }
    p.train_bpc = bpc_sum / static_cast<double>(bpc_n);
    r.train_bpc = p.train_bpc;
    if (!o.save_path.empty() &&
        (last || (o.checkpoint_every > 0 && tr.step % o.checkpoint_every == 0)))
      save_lm_checkpoint(o.save_path, tr);
    if (on_progress) on_progress(p);
    if (p.val_bpc >= 0.0) bpc_sum = 0.0, bpc_n = 0;
  }
  r.steps = tr.step;
  r.best_val_bpc = tr.best_val_bpc;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.tokens_per_second =
      r.seconds > 0.0 ? static_cast<double>((tr.step - first_step) * T * B) / r.seconds : 0.0;
  if (r.val_bpc == 0.0 && tr.step > 0) r.val_bpc = evaluate_bpc(ctx, tr.model, text.val);
  return r;
}

void save_lm_checkpoint(const std::string& path, LmTrainer& tr) {
  tr.opt.flush();
  const auto& c = tr.model.cfg;
  const auto& o = tr.options;
  std::map<std::string, std::string> meta = {
      {"format", "fff-lm"},
      {"format_version", "1"},
      {"dim", std::to_string(c.dim)},
      {"layers", std::to_string(c.layers)},
      {"window", std::to_string(c.window)},
      {"scan", scan_algo_name(c.scan)},
      {"mixer", ff_kind_name(c.mixer)},
      {"width", std::to_string(c.width)},
      {"leaf_width", std::to_string(c.leaf_width)},
      {"trees", std::to_string(c.trees)},
      {"depth", std::to_string(c.depth)},
      {"step", std::to_string(tr.step)},
      {"optimizer_steps", std::to_string(tr.opt.steps())},
      {"best_val_bpc", num(tr.best_val_bpc)},
      {"seq", std::to_string(o.seq)},
      {"batch", std::to_string(o.batch)},
      {"steps", std::to_string(o.steps)},
      {"lr", num(o.lr)},
      {"hardening", num(o.hardening)},
      {"harden_after", num(o.harden_after)},
      {"eval_every", std::to_string(o.eval_every)},
      {"checkpoint_every", std::to_string(o.checkpoint_every)},
      {"state_batch", std::to_string(tr.state.batch)}};
  std::vector<std::pair<std::string, const Tensor*>> tensors;
  for (Param* p : tr.model.params()) tensors.emplace_back(p->name, &p->value);
  for (const auto& [name, t] : tr.opt.state_tensors()) tensors.emplace_back("adam." + name, t);
  for (size_t l = 0; l < tr.state.h.size(); ++l) {
    tensors.emplace_back("state.h." + std::to_string(l), &tr.state.h[l]);
    tensors.emplace_back("state.history." + std::to_string(l), &tr.state.history[l]);
  }
  save_safetensors(path, tensors, meta);
}

LmTrainer load_lm_checkpoint(const std::string& path) {
  SafetensorsFile f = load_safetensors(path);
  const auto& meta = f.metadata;
  check_metadata_format(meta, path, "fff-lm", "an fff language model checkpoint");
  LmConfig c;
  c.dim = metadata_int(meta, "dim", path);
  c.layers = metadata_int(meta, "layers", path);
  c.window = metadata_int(meta, "window", path);
  c.scan = parse_scan_algo(metadata_string(meta, "scan", path));
  c.mixer = parse_ff_kind(metadata_string(meta, "mixer", path));
  c.width = metadata_int(meta, "width", path);
  c.leaf_width = metadata_int(meta, "leaf_width", path);
  c.trees = metadata_int(meta, "trees", path);
  c.depth = metadata_int(meta, "depth", path);
  if (c.dim <= 0 || c.dim > 65536 || c.layers <= 0 || c.layers > 1024 || c.window <= 0 ||
      c.window > 64 || c.depth < 0 || c.depth > 24 || c.trees <= 0 || c.width <= 0)
    throw Error(path + ": implausible model configuration in the metadata");
  LmTrainOptions o;
  o.seq = metadata_int(meta, "seq", path);
  o.batch = metadata_int(meta, "batch", path);
  o.steps = metadata_int(meta, "steps", path);
  o.lr = static_cast<float>(metadata_double(meta, "lr", path));
  o.hardening = static_cast<float>(metadata_double(meta, "hardening", path));
  // Checkpoints from before hardened training existed never hardened.
  o.harden_after = meta.count("harden_after") ? metadata_double(meta, "harden_after", path) : 1.0;
  o.eval_every = metadata_int(meta, "eval_every", path);
  o.checkpoint_every = metadata_int(meta, "checkpoint_every", path);
  Rng rng(0);
  LmTrainer tr(make_lm(c, rng), o);
  auto take = [&](const std::string& name, Tensor& dst) {
    auto it = f.tensors.find(name);
    if (it == f.tensors.end()) throw Error(path + ": tensor '" + name + "' is missing");
    if (it->second.shape != dst.shape)
      throw Error(path + ": tensor '" + name + "' has shape " + shape_string(it->second.shape) +
                  ", expected " + shape_string(dst.shape));
    // A damaged or diverged checkpoint: sampling from it would print noise without a word, and
    // resuming would train on NaN.
    for (float v : it->second.data)
      if (!std::isfinite(v)) throw Error(path + ": tensor '" + name + "' holds NaN or infinity");
    dst = std::move(it->second);
  };
  for (Param* p : tr.model.params()) take(p->name, p->value);
  for (const auto& [name, t] : tr.opt.state_tensors()) take("adam." + name, *t);
  tr.step = metadata_int(meta, "step", path);
  tr.opt.set_steps(metadata_int(meta, "optimizer_steps", path));
  tr.best_val_bpc = metadata_double(meta, "best_val_bpc", path);
  const int64_t state_batch = metadata_int(meta, "state_batch", path);
  if (state_batch > 0) {
    tr.state.reset(tr.model, state_batch);
    for (size_t l = 0; l < tr.state.h.size(); ++l) {
      take("state.h." + std::to_string(l), tr.state.h[l]);
      take("state.history." + std::to_string(l), tr.state.history[l]);
    }
  }
  return tr;
}

std::string sample_lm(Context& ctx, LmModel& m, const std::string& prompt, int64_t n,
                      float temperature, uint64_t seed) {
  // NaN fails this too: with a NaN temperature every probability is NaN.
  if (!(temperature >= 0.0f) || !std::isfinite(temperature))
    throw Error("sample_lm: temperature = " + std::to_string(temperature) +
                ": must be a non-negative number");
  CallScope scope(ctx);
  Rng rng(seed);
  LmState state;
  LmContext cache;
  std::vector<float> logits;
  std::vector<int32_t> tokens;
  for (unsigned char ch : prompt) tokens.push_back(ch);
  if (tokens.empty()) tokens.push_back('\n');  // something to start from
  std::string out;
  for (int64_t i = 0; i < n; ++i) {
    const int64_t T = static_cast<int64_t>(tokens.size());
    logits.resize(static_cast<size_t>(T * LmConfig::kVocab));
    lm_forward(ctx, m, tokens.data(), T, 1, state, false, logits.data(), cache);
    const float* last = logits.data() + (T - 1) * LmConfig::kVocab;
    int32_t next = 0;
    if (temperature <= 0.0f) {
      next = static_cast<int32_t>(argmax(last, LmConfig::kVocab));
    } else {
      const float mx = *std::max_element(last, last + LmConfig::kVocab);
      std::vector<double> p(LmConfig::kVocab);
      double sum = 0.0;
      for (int64_t v = 0; v < LmConfig::kVocab; ++v)
        sum += p[v] = std::exp((static_cast<double>(last[v]) - mx) / temperature);
      double u = rng.uniform() * sum;
      next = LmConfig::kVocab - 1;
      for (int64_t v = 0; v < LmConfig::kVocab; ++v)
        if ((u -= p[v]) < 0.0) {
          next = static_cast<int32_t>(v);
          break;
        }
    }
    out.push_back(static_cast<char>(next));
    tokens.assign(1, next);  // the state carries everything before it
  }
  return out;
}

}  // namespace fff
