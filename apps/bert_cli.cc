// The `fff bert` commands and `fff bench bert`: masked-token prediction and sentence embeddings
// from an fff-bert model file, and encoder throughput of FFF against dense FF and PyTorch.
#include "bert_cli.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <numeric>

#include "cli_util.h"
#include "fff/core/common.h"
#include "fff/core/context.h"
#include "fff/cpu/simd.h"
#include "fff/io/atomic_file.h"
#include "fff/models/bert.h"
#include "fff/models/bert_convert.h"
#include "fff/models/sentence.h"
#include "fff/text/wordpiece.h"
#include "harness/timing.h"

namespace fff_cli {

namespace {

using json = nlohmann::json;

// Loads the model, with half-precision FFF weights if asked.
fff::BertModel load_model(const BertRunArgs& a) {
  if (a.fff_weights != "fp32" && a.fff_weights != "half")
    throw fff::Error("--fff-weights must be fp32 or half, not '" + a.fff_weights + "'");
  fff::BertModel m = fff::load_bert(a.model);
  if (a.fff_weights == "half") {
    if (m.cfg.ff.kind != fff::FFKind::neuron_fff)
      throw fff::Error("--fff-weights half: " + a.model + " is a dense model (" + m.cfg.describe() +
                       ")");
    fff::bert_use_half_fff(m);
  }
  return m;
}

fff::WordPieceTokenizer model_tokenizer(const fff::BertModel& m, const BertRunArgs& a) {
  if (a.max_len != 0 && a.max_len < 2)
    throw fff::Error("--max-len must be at least 2 (room for [CLS] and [SEP])");
  fff::WordPieceTokenizer t;
  if (!a.vocab.empty())
    t = fff::load_wordpiece(a.vocab, m.lowercase);
  else if (!m.vocab_text.empty())
    t = fff::make_wordpiece(m.vocab_text, a.model + " (tokenizer.vocab)", m.lowercase);
  else
    throw fff::Error(a.model +
                     " carries no tokenizer vocabulary; pass --vocab vocab.txt (the checkpoint's)");
  if (static_cast<int64_t>(t.tokens.size()) > m.cfg.vocab)
    throw fff::Error("the vocabulary has " + std::to_string(t.tokens.size()) +
                     " tokens but the model only " + std::to_string(m.cfg.vocab));
  return t;
}

// Token ids of a batch of texts, padded at the end to the longest; mask 1 on real tokens.
struct Batch {
  int64_t B = 0, S = 0;
  std::vector<int32_t> ids;
  std::vector<uint8_t> mask;
};

Batch encode_batch(const fff::WordPieceTokenizer& t, const fff::BertModel& m,
                   const std::vector<std::string>& texts, int64_t max_len) {
  const int64_t limit = max_len > 0 ? std::min(max_len, m.cfg.max_seq) : m.cfg.max_seq;
  std::vector<std::vector<int32_t>> seqs;
  Batch b;
  for (const std::string& text : texts) {
    seqs.push_back(fff::wordpiece_encode_for_model(t, text, limit));
    b.S = std::max<int64_t>(b.S, static_cast<int64_t>(seqs.back().size()));
  }
  b.B = static_cast<int64_t>(texts.size());
  b.ids.assign(static_cast<size_t>(b.B * b.S), static_cast<int32_t>(m.cfg.pad_id));
  b.mask.assign(b.ids.size(), 0);
  for (int64_t i = 0; i < b.B; ++i)
    for (size_t s = 0; s < seqs[i].size(); ++s) {
      b.ids[i * b.S + s] = seqs[i][s];
      b.mask[i * b.S + s] = 1;
    }
  return b;
}

int run_fill_mask(const BertRunArgs& a) {
  if (a.texts.empty()) throw fff::Error("fill-mask needs --text");
  if (a.top_k <= 0) throw fff::Error("--top-k must be positive");
  fff::Context ctx(a.threads);
  const fff::BertModel m = load_model(a);
  if (m.cfg.arch == fff::BertArch::bert)
    throw fff::Error(a.model +
                     " is an embedding model (arch bert, no MLM head): use fff bert embed");
  const fff::WordPieceTokenizer tok = model_tokenizer(m, a);
  if (tok.mask_id < 0) throw fff::Error("the vocabulary has no [MASK] token");
  json all = json::array();
  for (const std::string& text : a.texts) {
    const Batch b = encode_batch(tok, m, {text}, a.max_len);
    std::vector<int64_t> positions;
    for (int64_t s = 0; s < b.S; ++s)
      if (b.ids[s] == tok.mask_id) positions.push_back(s);
    if (positions.empty()) {
      // The text is quoted in part only, control characters escaped: a --text can be 100 KB of
      // anything, terminal escape sequences included.
      std::string quoted;
      for (size_t i = 0; i < std::min<size_t>(text.size(), 60); ++i) {
        const auto ch = static_cast<unsigned char>(text[i]);
        quoted += ch < 0x20 || ch == 0x7f ? std::string("\\x") + "0123456789abcdef"[ch >> 4] +
                                                "0123456789abcdef"[ch & 15]
                                          : std::string(1, text[i]);
      }
      if (text.size() > 60) quoted += "...";
      const bool cut = text.find(tok.token(tok.mask_id)) != std::string::npos;
      throw fff::Error("--text \"" + quoted + "\" has no [MASK] token" +
                       (cut ? " within the " + std::to_string(b.S) +
                                  " tokens the model reads (the text is truncated there; see "
                                  "--max-len)"
                            : " (write it as [MASK])"));
    }
    const int64_t H = m.cfg.hidden, V = m.cfg.vocab;
    std::vector<float> hidden(static_cast<size_t>(b.S * H)), logits(static_cast<size_t>(V));
    fff::bert_encode(ctx, m, b.ids.data(), b.mask.data(), 1, b.S, hidden.data());
    json masks = json::array();
    if (!a.json) std::printf("%s\n", text.c_str());
    for (size_t i = 0; i < positions.size(); ++i) {
      fff::bert_mlm_logits(ctx, m, hidden.data() + positions[i] * H, 1, logits.data());
      const float* l = logits.data();
      // Softmax over the tokenizer's tokens (ids past it are padding rows of the embedding).
      const int64_t n = static_cast<int64_t>(tok.tokens.size());
      const float mx = *std::max_element(l, l + n);
      double sum = 0.0;
      for (int64_t v = 0; v < n; ++v) sum += std::exp(static_cast<double>(l[v] - mx));
      std::vector<int32_t> order(static_cast<size_t>(n));
      std::iota(order.begin(), order.end(), 0);
      const int64_t k = std::min(a.top_k, n);
      std::partial_sort(order.begin(), order.begin() + k, order.end(),
                        [&](int32_t x, int32_t y) { return l[x] > l[y]; });
      json preds = json::array();
      if (!a.json) std::printf("  [MASK] at token %lld:\n", static_cast<long long>(positions[i]));
      for (int64_t j = 0; j < k; ++j) {
        const int32_t id = order[j];
        const double prob = std::exp(static_cast<double>(l[id] - mx)) / sum;
        preds.push_back({{"token", tok.token(id)}, {"id", id}, {"probability", prob}});
        if (!a.json) std::printf("    %-20s %.4f\n", tok.token(id).c_str(), prob);
      }
      masks.push_back({{"position", positions[i]}, {"predictions", preds}});
    }
    all.push_back({{"text", text}, {"masks", masks}});
  }
  if (a.json) std::cout << json_text(a.texts.size() == 1 ? all[0] : all) << std::endl;
  return 0;
}

// The lines of `path` ('-': stdin), given by `flag` (named in errors).
std::vector<std::string> read_lines(const std::string& path, const std::string& flag) {
  std::vector<std::string> lines;
  std::ifstream file;
  std::istream* in = &std::cin;
  if (path != "-") {
    std::error_code ec;
    // A directory opens as a stream that reads nothing: it would pass for an empty file.
    if (std::filesystem::is_directory(path, ec))
      throw fff::Error(flag + " " + path + ": is a directory, expected a text file");
    file.open(path);
    if (!file) throw fff::Error(flag + " " + path + ": cannot open: " + std::strerror(errno));
    in = &file;
  }
  for (std::string line; std::getline(*in, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    lines.push_back(line);
  }
  return lines;
}

// --text values, then --file's lines.
std::vector<std::string> input_texts(const BertRunArgs& a, const char* command) {
  std::vector<std::string> texts = a.texts;
  if (!a.file.empty()) {
    const std::vector<std::string> lines = read_lines(a.file, "--file");
    texts.insert(texts.end(), lines.begin(), lines.end());
  }
  if (texts.empty() && !a.file.empty())
    throw fff::Error("--file " + a.file + ": no lines of text (" + command +
                     " needs --text or a non-empty --file)");
  if (texts.empty()) throw fff::Error(std::string(command) + " needs --text or a non-empty --file");
  return texts;
}

// The token ids embed feeds the encoder, one JSON array per text: for checking the tokenizer
// against others on the model's own vocabulary and truncation.
int run_tokenize(const BertRunArgs& a) {
  const std::vector<std::string> texts = input_texts(a, "tokenize");
  const fff::BertModel m = load_model(a);
  const fff::WordPieceTokenizer tok = model_tokenizer(m, a);
  const int64_t max_len = a.max_len > 0 ? a.max_len : m.sentence_max_len;
  const int64_t limit = max_len > 0 ? std::min(max_len, m.cfg.max_seq) : m.cfg.max_seq;
  for (const std::string& text : texts)
    std::cout << json(fff::wordpiece_encode_for_model(tok, text, limit)).dump() << '\n';
  std::cout.flush();
  return 0;
}

int run_embed(const BertRunArgs& a) {
  const std::vector<std::string> texts = input_texts(a, "embed");
  if (a.batch <= 0) throw fff::Error("--batch must be positive");
  if (a.format != "json" && a.format != "binary")
    throw fff::Error("--format must be json or binary, not '" + a.format + "'");
  if (a.format == "binary" && a.output.empty())
    throw fff::Error("--format binary needs --output FILE");
  check_save_path(a.output, "--output");
  if (a.normalize != "auto" && a.normalize != "yes" && a.normalize != "no")
    throw fff::Error("--normalize must be auto, yes or no, not '" + a.normalize + "'");
  fff::Context ctx(a.threads);
  const fff::BertModel m = load_model(a);
  const bool normalize = a.normalize == "yes" || (a.normalize == "auto" && m.normalize_embeddings);
  const fff::WordPieceTokenizer tok = model_tokenizer(m, a);
  const int64_t H = m.cfg.hidden, N = static_cast<int64_t>(texts.size());
  fff::SentenceOptions so;
  so.batch = a.batch;
  so.normalize = normalize;
  so.max_len = a.max_len;
  const bool progress = N > a.batch && ::isatty(STDERR_FILENO);
  const double start = now_seconds();
  if (progress)
    so.progress = [&](int64_t done, int64_t total) {
      const double t = now_seconds() - start;
      std::fprintf(stderr, "\r%lld/%lld texts, ETA %s   ", static_cast<long long>(done),
                   static_cast<long long>(total),
                   duration_string(t / done * (total - done)).c_str());
    };
  const std::vector<float> pooled = fff::bert_embed_sentences(ctx, m, tok, texts, so).values;
  if (progress) std::fprintf(stderr, "\n");
  if (a.format == "binary") {
    fff::write_file_atomically(a.output, [&](std::ostream& out) {
      out.write(reinterpret_cast<const char*>(pooled.data()),
                static_cast<std::streamsize>(pooled.size() * sizeof(float)));
    });
    std::fprintf(stderr, "wrote %lld x %lld float32 (little-endian, row-major) to %s\n",
                 static_cast<long long>(N), static_cast<long long>(H), a.output.c_str());
    return 0;
  }
  auto write_json = [&](std::ostream& out) {
    for (int64_t i = 0; i < N; ++i) {
      json row = json::array();
      for (int64_t j = 0; j < H; ++j) row.push_back(pooled[i * H + j]);
      out << row.dump() << '\n';
    }
  };
  if (a.output.empty())
    write_json(std::cout);
  else
    fff::write_file_atomically(a.output, write_json);
  return 0;
}

// ---- fff bert convert ----

// The default conversion texts: Debian's fortunes (plain files of /usr/share/games/fortunes, not
// the .dat indexes or .u8 copies), one text per non-empty line, "%" separators dropped.
std::vector<std::string> fortune_lines() {
  const std::filesystem::path dir = "/usr/share/games/fortunes";
  std::vector<std::filesystem::path> files;
  if (std::filesystem::is_directory(dir))
    for (const auto& e : std::filesystem::directory_iterator(dir))
      if (e.is_regular_file() && !e.path().has_extension()) files.push_back(e.path());
  std::sort(files.begin(), files.end());
  std::vector<std::string> lines;
  for (const auto& f : files)
    for (std::string& line : read_lines(f.string(), "fortune file"))
      if (!line.empty() && line != "%") lines.push_back(std::move(line));
  if (lines.empty())
    throw fff::Error("no --texts given and no fortunes in " + dir.string() +
                     " (apt-get install fortunes-min, or pass --texts FILE)");
  return lines;
}

int run_convert(const BertConvertArgs& a) {
  if (a.to != "leaf-fff") throw fff::Error("--to must be leaf-fff, not '" + a.to + "'");
  if (a.samples <= 0) throw fff::Error("--samples must be positive");
  if (a.method != "token-split" && a.method != "coactivation")
    throw fff::Error("--method must be token-split or coactivation, not '" + a.method + "'");
  if (a.distill_steps < 0) throw fff::Error("--distill-steps must be non-negative");
  if (a.distill_batch <= 0) throw fff::Error("--distill-batch must be positive");
  if (!(a.distill_lr > 0)) throw fff::Error("--distill-lr must be positive");
  if (!(a.hardening >= 0)) throw fff::Error("--hardening must be non-negative");
  if (a.distill_mode != "soft" && a.distill_mode != "hard")
    throw fff::Error("--distill-mode must be soft or hard, not '" + a.distill_mode + "'");
  check_save_path(a.out, "OUT");
  const double start = now_seconds();
  fff::Context ctx(a.threads);
  const fff::BertModel dense = fff::load_bert(a.dense);
  if (dense.cfg.arch != fff::BertArch::bert || dense.cfg.ff.kind != fff::FFKind::ff)
    throw fff::Error(a.dense + ": " + dense.cfg.describe() +
                     "; fff bert convert needs a dense BERT (arch bert, dense ff blocks), such as "
                     "all-MiniLM-L6-v2");
  if (dense.vocab_text.empty())
    throw fff::Error(a.dense + " carries no tokenizer vocabulary (tokenizer.vocab)");
  const fff::WordPieceTokenizer tok =
      fff::make_wordpiece(dense.vocab_text, a.dense + " (tokenizer.vocab)", dense.lowercase);
  std::vector<std::string> texts;
  if (a.texts.empty()) {
    texts = fortune_lines();
  } else {
    for (std::string& line : read_lines(a.texts, "--texts"))
      if (!line.empty()) texts.push_back(std::move(line));
    if (texts.empty()) throw fff::Error(a.texts + ": no non-empty lines");
  }
  // A seeded shuffle: the samples come from all over the texts, not their first files.
  fff::Rng rng(a.seed);
  for (size_t i = texts.size(); i > 1; --i) std::swap(texts[i - 1], texts[rng.below(i)]);
  const int64_t limit = dense.sentence_max_len > 0
                            ? std::min(dense.sentence_max_len, dense.cfg.max_seq)
                            : dense.cfg.max_seq;
  std::vector<std::vector<int32_t>> seqs;
  int64_t tokens = 0;
  for (const std::string& t : texts) {
    if (tokens >= a.samples) break;
    seqs.push_back(fff::wordpiece_encode_for_model(tok, t, limit));
    tokens += static_cast<int64_t>(seqs.back().size());
  }
  fff::ConvertOptions o;
  o.method = fff::parse_convert_method(a.method);
  o.depth = a.depth;
  o.max_tokens = a.samples;
  o.seed = a.seed;
  o.distill_steps = a.distill_steps;
  o.distill_batch = a.distill_batch;
  o.distill_lr = a.distill_lr;
  o.hardening = a.hardening;
  o.distill_soft = a.distill_mode == "soft";
  const bool tty = ::isatty(STDERR_FILENO);
  o.progress = [&](double f, const std::string& what) {
    const double t = now_seconds() - start;
    std::fprintf(stderr, "%s%3.0f%% %s, %s elapsed, ETA %s%s", tty ? "\r" : "", 100 * f,
                 what.c_str(), duration_string(t).c_str(),
                 duration_string(f > 0 ? t / f * (1 - f) : 0).c_str(), tty ? "   " : "\n");
  };
  const fff::ConvertResult r = fff::convert_dense_to_leaf(ctx, dense, seqs, o);
  if (tty) std::fprintf(stderr, "\n");
  fff::save_bert(r.model, a.out);
  const double seconds = now_seconds() - start;
  json layers = json::array();
  for (size_t i = 0; i < r.layers.size(); ++i) {
    const fff::LayerConvertStats& s = r.layers[i];
    layers.push_back({{"layer", i},
                      {"tokens", s.tokens},
                      {"best_leaf_fraction", s.best_leaf_fraction},
                      {"relative_error", s.relative_error},
                      {"best_leaf_relative_error", s.best_relative_error},
                      {"seconds", s.seconds}});
    if (a.distill_steps > 0) {
      layers.back()["heldout_converted_error"] = s.heldout_converted_error;
      layers.back()["heldout_distilled_error"] = s.heldout_distilled_error;
      layers.back()["distilled"] = s.distilled;
    }
  }
  if (a.json) {
    json out = {{"dense", a.dense},     {"out", a.out},
                {"ff", "leaf-fff"},     {"method", a.method},
                {"depth", a.depth},     {"leaf_width", r.model.cfg.ff.leaf_width},
                {"texts", seqs.size()}, {"tokens", r.layers.empty() ? 0 : r.layers[0].tokens},
                {"seed", a.seed},       {"distill_steps", a.distill_steps},
                {"threads", a.threads}, {"seconds", seconds},
                {"layers", layers}};
    std::cout << json_text(out) << std::endl;
  } else {
    std::printf("%s -> %s: %s, %lld tokens from %zu texts, %.1f s\n", a.dense.c_str(),
                a.out.c_str(), r.model.cfg.describe().c_str(),
                static_cast<long long>(r.layers.empty() ? 0 : r.layers[0].tokens), seqs.size(),
                seconds);
    std::printf("layer  routed to best leaf  rel. error  (best leaf)\n");
    for (size_t i = 0; i < r.layers.size(); ++i)
      std::printf("%5zu  %18.1f%%  %10.3f  %11.3f\n", i, 100 * r.layers[i].best_leaf_fraction,
                  r.layers[i].relative_error, r.layers[i].best_relative_error);
  }
  return 0;
}

// ---- fff bench bert ----

struct EncoderTiming {
  double median_s = 0;
  fff::BertTimings share;  // fractions of the total
};

EncoderTiming time_encoder(fff::Context& ctx, const fff::BertModel& m, int64_t B, int64_t S,
                           int64_t repeats, uint64_t seed) {
  fff::Rng rng(seed);
  std::vector<int32_t> ids(static_cast<size_t>(B * S));
  for (int32_t& id : ids) id = static_cast<int32_t>(rng.below(static_cast<uint64_t>(m.cfg.vocab)));
  std::vector<float> hidden(static_cast<size_t>(B * S * m.cfg.hidden));
  fff::bert_encode(ctx, m, ids.data(), nullptr, B, S, hidden.data());  // warm-up, not in the shares
  fff::BertTimings sum;
  auto run = [&] {
    fff::BertTimings t;
    fff::bert_encode(ctx, m, ids.data(), nullptr, B, S, hidden.data(), &t);
    sum.embed += t.embed, sum.attention += t.attention, sum.ff += t.ff, sum.other += t.other;
  };
  EncoderTiming e;
  e.median_s =
      fff::bench::time_repeated(run, {.warmup = 0, .repeats = static_cast<int>(repeats)}).median;
  const double total = sum.total();
  e.share = {sum.embed / total, sum.attention / total, sum.ff / total, sum.other / total};
  return e;
}

json shares_json(const fff::BertTimings& s) {
  return {{"embedding", s.embed}, {"attention", s.attention}, {"ff", s.ff}, {"other", s.other}};
}

// A baseline's script `file`: the `flag_name` flag's value if given (it must exist), else `file`
// next to this executable (the build tree) or in ../share/fff/ beside it (an installed tree),
// found through /proc/self/exe so that no source path is compiled in. Empty when not found, with
// `where` receiving the places tried.
std::string find_bench_script(const char* file, const char* flag_name, const std::string& flag,
                              std::string* where) {
  namespace fs = std::filesystem;
  if (!flag.empty()) {
    if (!fs::is_regular_file(flag))
      throw fff::Error(std::string(flag_name) + " " + flag + ": no such file");
    return flag;
  }
  std::error_code ec;
  const fs::path exe_dir = fs::read_symlink("/proc/self/exe", ec).parent_path();
  std::vector<fs::path> tried;
  if (!ec) {
    for (const fs::path& p : {exe_dir / file, exe_dir / ".." / "share" / "fff" / file}) {
      if (fs::is_regular_file(p)) return p.lexically_normal().string();
      tried.push_back(p.lexically_normal());
    }
  }
  where->clear();
  for (const fs::path& p : tried) *where += (where->empty() ? "" : " or ") + p.string();
  return "";
}

// The PyTorch baseline's script (bert_torch_bench.py); empty (with a note on stderr) when not
// found.
std::string find_torch_script(const std::string& flag) {
  std::string where;
  const std::string script =
      find_bench_script("bert_torch_bench.py", "--torch-script", flag, &where);
  if (script.empty())
    std::fprintf(stderr,
                 "fff: note: PyTorch baseline skipped: bert_torch_bench.py not found%s%s; give "
                 "--torch-script PATH (scripts/ in the source tree) or --python none\n",
                 where.empty() ? "" : " at ", where.c_str());
  return script;
}

// s quoted for /bin/sh.
std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char ch : s) q += ch == '\'' ? std::string("'\\''") : std::string(1, ch);
  return q + "'";
}

// PyTorch timings keyed by (batch, threads), from bert_torch_bench.py run with `model_args` (the
// architecture and shape); empty if unavailable. `implementation` receives what ran it.
std::map<std::pair<int64_t, int>, double> pytorch_tokens_per_s(const BertBenchArgs& a,
                                                               const std::string& model_args,
                                                               std::string* implementation,
                                                               std::string* version = nullptr) {
  std::map<std::pair<int64_t, int>, double> out;
  if (a.python.empty() || a.python == "none") return out;
  const std::string script = find_torch_script(a.torch_script);
  if (script.empty()) return out;
  auto join = [](const auto& v) {
    std::string s;
    for (const auto& x : v) s += (s.empty() ? "" : ",") + std::to_string(x);
    return s;
  };
  // One process per thread count, with the BLAS pool pinned too: torch.set_num_threads alone
  // leaves OpenBLAS's own threads on every core; OpenMP's threads wait passively, or on a small
  // machine they spin against OpenBLAS's pool and make its 2-thread figures unfairly slow.
  for (int threads : a.threads) {
    const std::string t = std::to_string(threads);
    const std::string cmd = "OMP_NUM_THREADS=" + t + " OPENBLAS_NUM_THREADS=" + t +
                            " MKL_NUM_THREADS=" + t + " OMP_WAIT_POLICY=PASSIVE " + a.python +
                            " '" + script + "' " + model_args + " --seq " + std::to_string(a.seq) +
                            " --batches " + join(a.batches) + " --thread-list " + t +
                            " --repeats " + std::to_string(a.repeats) + " --json 2>/dev/null";
    std::unique_ptr<FILE, int (*)(FILE*)> pipe(::popen(cmd.c_str(), "r"), ::pclose);
    if (!pipe) continue;
    char buf[4096];
    while (std::fgets(buf, sizeof(buf), pipe.get())) {
      const json j = json::parse(buf, nullptr, false);
      if (j.is_discarded() || !j.contains("tokens_per_s")) continue;
      out[{j["batch"].get<int64_t>(), j["threads"].get<int>()}] = j["tokens_per_s"].get<double>();
      if (implementation && j.contains("implementation"))
        *implementation = j["implementation"].get<std::string>();
      if (version && j.contains("torch_version")) *version = j["torch_version"].get<std::string>();
    }
  }
  return out;
}

// ONNX Runtime's timings of the same shapes (bert_ort_bench.py), and its mean-pooled
// last_hidden_state of one fixed sentence.
struct OrtBaseline {
  std::map<std::pair<int64_t, int>, double> median_s;  // keyed by (batch, threads)
  std::string version;
  json settings;  // per thread count the same but intra_op_num_threads
  int warmup = 0;
  std::vector<double> pooled;
};

OrtBaseline ort_baseline(const BertBenchArgs& a, int64_t vocab,
                         const std::vector<int32_t>& check_ids) {
  if (a.python.empty() || a.python == "none")
    throw fff::Error("--onnx " + a.onnx +
                     " needs --python (an interpreter with onnxruntime, e.g. " +
                     "build/venv-ref/bin/python)");
  if (!std::filesystem::is_regular_file(a.onnx))
    throw fff::Error("--onnx " + a.onnx + ": no such file (scripts/export_onnx.py makes it)");
  std::string where;
  const std::string script =
      find_bench_script("bert_ort_bench.py", "--ort-script", a.ort_script, &where);
  if (script.empty())
    throw fff::Error("--onnx: bert_ort_bench.py not found" + (where.empty() ? "" : " at " + where) +
                     "; give --ort-script PATH (scripts/ in the source tree)");
  std::string batches, ids;
  for (int64_t b : a.batches) batches += (batches.empty() ? "" : ",") + std::to_string(b);
  for (int32_t id : check_ids) ids += (ids.empty() ? "" : ",") + std::to_string(id);
  OrtBaseline out;
  // One process per thread count, as for PyTorch; the sentence check runs in the first only.
  for (size_t k = 0; k < a.threads.size(); ++k) {
    const std::string t = std::to_string(a.threads[k]);
    std::string cmd = "OMP_NUM_THREADS=" + t + " OPENBLAS_NUM_THREADS=" + t + " " + a.python + " " +
                      shell_quote(script) + " --onnx " + shell_quote(a.onnx) + " --vocab " +
                      std::to_string(vocab) + " --seq " + std::to_string(a.seq) + " --batches " +
                      batches + " --threads " + t + " --repeats " + std::to_string(a.repeats) +
                      " --json";
    if (k == 0) cmd += " --pool-ids " + ids;
    FILE* pipe = ::popen(cmd.c_str(), "r");
    if (!pipe) throw fff::Error("--onnx: cannot run " + a.python);
    std::string error;
    size_t records = 0;
    auto handle = [&](const std::string& line) {
      const json j = json::parse(line, nullptr, false);
      if (j.is_discarded() || !j.is_object()) return;
      if (j.contains("error")) {
        error = j["error"].get<std::string>();
      } else if (j.contains("pooled")) {
        out.pooled = j["pooled"].get<std::vector<double>>();
      } else if (j.contains("median_s")) {
        out.median_s[{j["batch"].get<int64_t>(), j["threads"].get<int>()}] =
            j["median_s"].get<double>();
        out.version = j["onnxruntime_version"].get<std::string>();
        out.settings = j["settings"];
        out.settings.erase("intra_op_num_threads");  // the record's threads says it
        out.warmup = j["warmup"].get<int>();
        ++records;
      }
    };
    std::string line;
    char buf[1 << 16];
    while (std::fgets(buf, sizeof(buf), pipe)) {
      line += buf;
      if (line.back() != '\n') continue;  // the rest of a long line (the pooled vector) follows
      handle(line);
      line.clear();
    }
    if (!line.empty()) handle(line);
    const int status = ::pclose(pipe);
    if (!error.empty()) throw fff::Error("--onnx: " + script + ": " + error);
    if (status != 0 || records != a.batches.size())
      throw fff::Error("--onnx: " + a.python + " " + script + " failed (exit status " +
                       std::to_string(status) + "; see its messages above)");
  }
  if (out.pooled.empty()) throw fff::Error("--onnx: " + script + " printed no pooled embedding");
  return out;
}

// Refuses, before any model is made, encoder timings that cannot fit in this machine's memory:
// the weights of `models` models with feedforward width ff_width, and per --batches value B the
// encoder's activations (B x --seq tokens: hidden states, attention scores, feedforward).
void check_encoder_memory(const BertBenchArgs& a, const fff::BertConfig& c, double ff_width,
                          double models, const std::string& shape_flags) {
  const double H = static_cast<double>(c.hidden), S = static_cast<double>(a.seq);
  const double weights = static_cast<double>(c.layers) * (4 * H * H + 2 * H * ff_width) +
                         static_cast<double>(c.vocab + c.max_seq) * H;
  for (int64_t B : a.batches) {
    const double tokens = static_cast<double>(B) * S;
    const double activations = tokens * (8 * H + ff_width + static_cast<double>(c.heads) * S + 1);
    check_fits_in_memory(
        shape_flags + " --seq " + std::to_string(a.seq) + " --batches " + std::to_string(B),
        4 * (models * weights + activations));
  }
}

// fff bench bert --model FILE: that model (such as all-MiniLM-L6-v2) against PyTorch running a
// model of the same architecture and shape (transformers' BertModel for arch bert, when the
// --python has transformers; for a leaf-fff file the dense model it was converted from), random
// token ids, no padding.
int run_model_bench(const BertBenchArgs& a) {
  const fff::BertModel m = fff::load_bert(a.model);
  const fff::BertConfig& c = m.cfg;
  if (a.seq < 1 || a.seq > c.max_seq)
    throw fff::Error("--seq must be in [1, " + std::to_string(c.max_seq) + "] for " + a.model);
  check_encoder_memory(a, c, static_cast<double>(c.ff.training_width()), 1, "--model " + a.model);
  std::string model_args = "--vocab " + std::to_string(c.vocab) + " --layers " +
                           std::to_string(c.layers) + " --hidden " + std::to_string(c.hidden) +
                           " --heads " + std::to_string(c.heads) + " --max-seq " +
                           std::to_string(c.max_seq);
  // A converted (leaf-fff) file is timed against PyTorch's dense model of the same training
  // width: the model it was converted from.
  if (c.arch == fff::BertArch::bert)
    model_args += " --arch bert --width " + std::to_string(c.ff.training_width());
  else if (c.ff.kind == fff::FFKind::ff)
    model_args += " --ff dense --width " + std::to_string(c.ff.width);
  else
    model_args += " --ff fff --trees " + std::to_string(c.ff.trees) + " --depth " +
                  std::to_string(c.ff.depth);
  const bool with_ort = !a.onnx.empty();
  if (with_ort && c.arch != fff::BertArch::bert)
    throw fff::Error("--onnx: " + a.model + " is a " + fff::bert_arch_name(c.arch) +
                     " model; the ONNX baseline is a Hugging Face BertModel (arch bert)");
  if (!a.json) std::fprintf(stderr, "%s: %s\n", a.model.c_str(), c.describe().c_str());

  // ONNX Runtime on the exported dense model, and a sanity check that it is the same model: the
  // mean-pooled last_hidden_state of one fixed sentence (random ids, no padding) from ORT and
  // from fff. For a converted (leaf-fff) file the two are different models (the comparison people
  // care about: fff's converted model against the dense model they deploy), so the difference is
  // reported but not held to the tolerance.
  OrtBaseline ort;
  json check;
  bool check_failed = false;
  if (with_ort) {
    if (!a.json) std::fprintf(stderr, "timing ONNX Runtime (%s)...\n", a.onnx.c_str());
    const int64_t n = std::min<int64_t>(16, c.max_seq);
    std::vector<int32_t> ids(static_cast<size_t>(n));
    fff::Rng rng(11);
    for (int32_t& id : ids) id = static_cast<int32_t>(rng.below(static_cast<uint64_t>(c.vocab)));
    ort = ort_baseline(a, c.vocab, ids);
    fff::Context ctx(a.threads.front());
    std::vector<float> hidden(static_cast<size_t>(n * c.hidden)), pooled(c.hidden);
    fff::bert_encode(ctx, m, ids.data(), nullptr, 1, n, hidden.data());
    fff::bert_mean_pool(hidden.data(), nullptr, 1, n, c.hidden, pooled.data());
    if (ort.pooled.size() != static_cast<size_t>(c.hidden))
      throw fff::Error("--onnx " + a.onnx + ": its hidden size is " +
                       std::to_string(ort.pooled.size()) + ", " + a.model + "'s is " +
                       std::to_string(c.hidden));
    double diff = 0, dot = 0, nf = 0, no = 0;
    for (int64_t i = 0; i < c.hidden; ++i) {
      diff = std::max(diff, std::abs(pooled[i] - ort.pooled[i]));
      dot += pooled[i] * ort.pooled[i], nf += pooled[i] * pooled[i];
      no += ort.pooled[i] * ort.pooled[i];
    }
    const bool same_model = c.ff.kind == fff::FFKind::ff;
    constexpr double tolerance = 1e-4;
    check = {{"tokens", n},
             {"max_abs_diff", diff},
             {"cosine", dot / std::sqrt(nf * no)},
             {"tolerance", tolerance},
             {"applies", same_model}};
    check["pass"] = same_model ? json(diff <= tolerance) : json(nullptr);
    if (!same_model)
      check["note"] = "a converted (" + std::string(fff::ff_kind_name(c.ff.kind)) +
                      ") model against ONNX Runtime's dense model: not expected to agree";
    check_failed = same_model && !(diff <= tolerance);
    if (!a.json)
      std::printf(
          "embedding check (mean-pooled, %lld tokens): ORT vs fff max |diff| %.3g, "
          "cosine %.6f: %s\n",
          static_cast<long long>(n), diff, dot / std::sqrt(nf * no),
          !same_model     ? "different models (not checked)"
          : !check_failed ? "ok (<= 1e-4)"
                          : "FAILED (> 1e-4)");
  }
  // After ONNX Runtime, whose checks fail fast.
  if (!a.json) std::fprintf(stderr, "timing PyTorch (%s)...\n", a.python.c_str());
  std::string implementation = "n/a", torch_version;
  const auto torch = pytorch_tokens_per_s(a, model_args, &implementation, &torch_version);
  json ort_info;
  if (with_ort)
    ort_info = {{"onnx", a.onnx},
                {"version", ort.version},
                {"settings", ort.settings},
                {"warmup", ort.warmup},
                {"repeats", a.repeats}};

  if (!a.json) {
    std::printf("%6s %7s %5s %12s %12s %9s %9s %9s", "batch", "threads", "seq", "fff tok/s",
                "torch tok/s", "fff/pt", "fff attn", "fff ff");
    if (with_ort) std::printf(" %9s %9s %12s %9s", "fff ms", "ort ms", "ort tok/s", "fff/ort");
    std::printf("   (PyTorch%s%s: %s)\n", torch_version.empty() ? "" : " ", torch_version.c_str(),
                implementation.c_str());
  }
  for (int64_t B : a.batches)
    for (int threads : a.threads) {
      fff::Context ctx(threads);
      const EncoderTiming f = time_encoder(ctx, m, B, a.seq, a.repeats, 3);
      const double tps = static_cast<double>(B * a.seq) / f.median_s;
      const auto it = torch.find({B, threads});
      const double t_tps = it == torch.end() ? 0.0 : it->second;
      double o_s = 0;
      if (with_ort) o_s = ort.median_s.at({B, threads});
      const double o_tps = o_s > 0 ? static_cast<double>(B * a.seq) / o_s : 0.0;
      if (a.json) {
        json j = {{"benchmark", "bert-model"},
                  {"model", a.model},
                  {"simd", fff::simd_target()},
                  {"arch", fff::bert_arch_name(c.arch)},
                  {"describe", c.describe()},
                  {"seq", a.seq},
                  {"batch", B},
                  {"threads", threads},
                  {"repeats", a.repeats},
                  {"fff_tokens_per_s", tps},
                  {"fff_ms_per_batch", 1e3 * f.median_s},
                  {"fff_share", shares_json(f.share)},
                  {"pytorch_implementation", implementation}};
        j["pytorch_tokens_per_s"] = t_tps > 0 ? json(t_tps) : json(nullptr);
        if (t_tps > 0) j["fff_vs_pytorch"] = tps / t_tps;
        if (!torch_version.empty()) {
          j["pytorch_version"] = torch_version;
          j["pytorch_settings"] = {
              {"env", "OMP_NUM_THREADS=OPENBLAS_NUM_THREADS=MKL_NUM_THREADS=" +
                          std::to_string(threads) + " OMP_WAIT_POLICY=PASSIVE"},
              {"torch_num_threads", threads}};
        }
        if (with_ort) {
          j["ort_tokens_per_s"] = o_tps;
          j["ort_ms_per_batch"] = 1e3 * o_s;
          j["fff_vs_ort"] = tps / o_tps;
          j["ort"] = ort_info;
          j["ort_embedding_check"] = check;
        }
        std::cout << json_text(j) << std::endl;
      } else {
        std::printf("%6lld %7d %5lld %12.0f %12s %9s %8.1f%% %8.1f%%", static_cast<long long>(B),
                    threads, static_cast<long long>(a.seq), tps,
                    t_tps > 0 ? fmt("%.0f", t_tps).c_str() : "n/a",
                    t_tps > 0 ? fmt("%.2fx", tps / t_tps).c_str() : "n/a", 100 * f.share.attention,
                    100 * f.share.ff);
        if (with_ort)
          std::printf(" %9.2f %9.2f %12.0f %8.2fx", 1e3 * f.median_s, 1e3 * o_s, o_tps,
                      tps / o_tps);
        std::printf("\n");
        std::fflush(stdout);
      }
    }
  if (!a.json && with_ort)
    std::printf("ONNX Runtime %s (%s): %s, median of %lld after %d warm-up\n", ort.version.c_str(),
                a.onnx.c_str(), ort.settings.dump().c_str(), static_cast<long long>(a.repeats),
                ort.warmup);
  if (check_failed) {
    std::fprintf(
        stderr, "fff: error: --onnx %s does not compute %s's embeddings (max |diff| %.3g > 1e-4)\n",
        a.onnx.c_str(), a.model.c_str(), check["max_abs_diff"].get<double>());
    return 1;
  }
  return 0;
}

int run_bert_bench(const BertBenchArgs& a) {
  if (a.repeats <= 0) throw fff::Error("--repeats must be positive");
  if (!a.model.empty()) return run_model_bench(a);
  if (!a.onnx.empty()) throw fff::Error("--onnx needs --model (the fff file of the same model)");
  fff::BertConfig base;
  base.layers = a.layers, base.hidden = a.hidden, base.heads = a.heads;
  base.max_seq = std::max<int64_t>(a.seq, 1);
  fff::BertConfig fc = base, dc = base;
  fc.ff.kind = fff::FFKind::neuron_fff, fc.ff.trees = a.trees, fc.ff.depth = a.depth;
  dc.ff.kind = fff::FFKind::ff, dc.ff.width = a.dense_width;
  if (a.hidden % a.heads != 0)
    throw fff::Error("--heads " + std::to_string(a.heads) + " does not divide --hidden " +
                     std::to_string(a.hidden));
  // The FFF model (and its half-precision copy) and the dense one.
  const double nodes =
      static_cast<double>(a.trees) *
      (std::ldexp(1.0, static_cast<int>(std::clamp<int64_t>(a.depth, 0, 1024)) + 1) - 1);
  check_encoder_memory(a, base, std::max(nodes, static_cast<double>(a.dense_width)), 3,
                       "--layers " + std::to_string(a.layers) + " --hidden " +
                           std::to_string(a.hidden) + " --trees " + std::to_string(a.trees) +
                           " --depth " + std::to_string(a.depth) + " --dense-width " +
                           std::to_string(a.dense_width));
  if (!a.json)
    std::fprintf(stderr, "building random models (%s; %s)...\n", fc.describe().c_str(),
                 dc.describe().c_str());
  fff::BertModel fff_model = fff::make_random_bert(fc, 1);
  const fff::BertModel dense_model = fff::make_random_bert(dc, 2);
  // The FFF model runs on half-precision weights only while timed so: its layers make their half
  // copies before, and drop them after (no copy of the model).
  auto time_half = [&](fff::Context& ctx, int64_t B) {
    fff::bert_use_half_fff(fff_model, true);
    const EncoderTiming h = time_encoder(ctx, fff_model, B, a.seq, a.repeats, 3);
    fff::bert_use_half_fff(fff_model, false);
    return h;
  };
  if (!a.json) std::fprintf(stderr, "timing PyTorch (%s)...\n", a.python.c_str());
  const auto torch = pytorch_tokens_per_s(
      a,
      "--ff dense --layers " + std::to_string(a.layers) + " --hidden " + std::to_string(a.hidden) +
          " --heads " + std::to_string(a.heads) + " --width " + std::to_string(a.dense_width),
      nullptr);
  if (!a.json)
    std::printf("%6s %7s %12s %12s %8s %12s %9s %9s %9s %9s %12s %8s %9s\n", "batch", "threads",
                "fff tok/s", "dense tok/s", "speedup", "torch tok/s", "dense/pt", "fff attn",
                "fff ff", "dense ff", "half tok/s", "speedup", "half ff");
  // How far half-precision FFF weights move the final hidden states, on one random sequence,
  // relative to the largest hidden value.
  double half_diff = 0.0;
  int64_t half_tokens_moved = 0;
  {
    fff::Rng rng(4);
    std::vector<int32_t> ids(static_cast<size_t>(a.seq));
    for (int32_t& id : ids) id = static_cast<int32_t>(rng.below(static_cast<uint64_t>(fc.vocab)));
    std::vector<float> h32(static_cast<size_t>(a.seq * a.hidden)), h16(h32.size());
    fff::Context ctx(fff_cli::default_threads());
    fff::bert_encode(ctx, fff_model, ids.data(), nullptr, 1, a.seq, h32.data());
    fff::bert_use_half_fff(fff_model, true);
    fff::bert_encode(ctx, fff_model, ids.data(), nullptr, 1, a.seq, h16.data());
    fff::bert_use_half_fff(fff_model, false);
    double scale = 1e-30;
    for (float v : h32) scale = std::max(scale, static_cast<double>(std::fabs(v)));
    for (int64_t t = 0; t < a.seq; ++t) {
      double token_diff = 0.0;
      for (int64_t i = t * a.hidden; i < (t + 1) * a.hidden; ++i)
        token_diff = std::max(token_diff, std::fabs(static_cast<double>(h32[i]) - h16[i]) / scale);
      half_diff = std::max(half_diff, token_diff);
      if (token_diff > 1e-2) ++half_tokens_moved;
    }
  }
  if (!a.json)
    std::fprintf(stderr,
                 "half-precision FFF weights: max |hidden diff| %.3g of the largest hidden value; "
                 "%lld of %lld tokens moved by more than 1%% of it\n",
                 half_diff, static_cast<long long>(half_tokens_moved),
                 static_cast<long long>(a.seq));
  for (int64_t B : a.batches)
    for (int threads : a.threads) {
      fff::Context ctx(threads);
      const EncoderTiming f = time_encoder(ctx, fff_model, B, a.seq, a.repeats, 3);
      const EncoderTiming d = time_encoder(ctx, dense_model, B, a.seq, a.repeats, 3);
      const EncoderTiming h = time_half(ctx, B);
      const double tokens = static_cast<double>(B * a.seq);
      const double f_tps = tokens / f.median_s, d_tps = tokens / d.median_s;
      const double h_tps = tokens / h.median_s;
      const auto it = torch.find({B, threads});
      const double t_tps = it == torch.end() ? 0.0 : it->second;
      if (a.json) {
        json j = {{"benchmark", "bert"},
                  {"simd", fff::simd_target()},
                  {"layers", a.layers},
                  {"hidden", a.hidden},
                  {"heads", a.heads},
                  {"seq", a.seq},
                  {"batch", B},
                  {"threads", threads},
                  {"fff_shape", std::to_string(a.trees) + "x" + std::to_string(a.depth)},
                  {"dense_width", a.dense_width},
                  {"repeats", a.repeats},
                  {"fff_tokens_per_s", f_tps},
                  {"dense_tokens_per_s", d_tps},
                  {"speedup", f_tps / d_tps},
                  {"fff_share", shares_json(f.share)},
                  {"dense_share", shares_json(d.share)},
                  {"fff_half_tokens_per_s", h_tps},
                  {"speedup_half", h_tps / d_tps},
                  {"fff_half_share", shares_json(h.share)},
                  {"half_max_rel_diff", half_diff},
                  {"half_tokens_moved", half_tokens_moved}};
        if (t_tps > 0) {
          j["pytorch_dense_tokens_per_s"] = t_tps;
          j["dense_vs_pytorch"] = d_tps / t_tps;
        } else {
          j["pytorch_dense_tokens_per_s"] = nullptr;
        }
        std::cout << json_text(j) << std::endl;
      } else {
        std::printf(
            "%6lld %7d %12.0f %12.0f %7.2fx %12s %9s %8.1f%% %8.1f%% %8.1f%% %12.0f %7.2fx "
            "%8.1f%%\n",
            static_cast<long long>(B), threads, f_tps, d_tps, f_tps / d_tps,
            t_tps > 0 ? fmt("%.0f", t_tps).c_str() : "n/a",
            t_tps > 0 ? fmt("%.2fx", d_tps / t_tps).c_str() : "n/a", 100 * f.share.attention,
            100 * f.share.ff, 100 * d.share.ff, h_tps, h_tps / d_tps, 100 * h.share.ff);
        std::fflush(stdout);
      }
    }
  return 0;
}

void add_run_options(CLI::App* cmd, BertRunArgs& a) {
  cmd->add_option("MODEL", a.model, "fff-bert model file (from scripts/convert_bert.py)")
      ->required();
  cmd->add_option("--text", a.texts, "Input text (repeatable)");
  cmd->add_option("--vocab", a.vocab,
                  "WordPiece vocab.txt (default: the vocabulary stored in the model file)");
  cmd->add_option("--max-len", a.max_len,
                  "Truncate to this many tokens including [CLS] and [SEP] (default: the "
                  "model's positions, or for embed the file's sentence.max_seq_length)")
      ->check(max_len_value());
  cmd->add_option("--threads", a.threads, "Threads")->check(thread_count())->capture_default_str();
  cmd->add_option("--fff-weights", a.fff_weights,
                  "fp32, or half: the FFF blocks read their weights rounded to IEEE half "
                  "precision (half their memory traffic). Hard routing amplifies the rounding: "
                  "a token whose decision lies near zero can take another branch and change "
                  "a lot")
      ->capture_default_str();
}

}  // namespace

void add_bert_commands(CLI::App& app, CLI::App& bench, BertCommands& c) {
  c.bert = app.add_subcommand(
      "bert",
      "BERT encoders (UltraFastBERT / crammedBERT, original BERT such as all-MiniLM-L6-v2): "
      "masked-token prediction and sentence embeddings");
  c.bert->require_subcommand(1);
  c.fill_mask = c.bert->add_subcommand(
      "fill-mask", "Predict the tokens at each [MASK] of a text (top-k with probabilities)");
  add_run_options(c.fill_mask, c.fill_args);
  c.fill_mask->add_option("--top-k", c.fill_args.top_k, "Predictions per [MASK]")
      ->check(positive())
      ->capture_default_str();
  c.fill_mask->add_flag("--json", c.fill_args.json, "Print one JSON object on stdout");

  c.embed = c.bert->add_subcommand(
      "embed",
      "Sentence embeddings: the mean of the final hidden states over each text's "
      "tokens (padding excluded), L2-normalised if the model says so, one vector per text");
  add_run_options(c.embed, c.embed_args);
  c.embed->add_option("--file", c.embed_args.file, "Texts, one per line ('-' for stdin)");
  c.embed->add_option("--batch", c.embed_args.batch, "Texts encoded together")
      ->check(positive())
      ->capture_default_str();
  c.embed
      ->add_option("--format", c.embed_args.format,
                   "json: one JSON array per line; binary: float32 rows (needs --output)")
      ->capture_default_str();
  c.embed->add_option("--output", c.embed_args.output, "Write here (atomically) instead of stdout");
  c.embed
      ->add_option("--normalize", c.embed_args.normalize,
                   "L2-normalise each embedding: auto (as the model file says: "
                   "sentence-transformers models with a Normalize module, such as "
                   "all-MiniLM-L6-v2), yes or no")
      ->capture_default_str();

  c.tokenize = c.bert->add_subcommand(
      "tokenize",
      "Print the token ids embed uses for each text (one JSON array per line, [CLS] and [SEP] "
      "included, truncated as embed truncates)");
  add_run_options(c.tokenize, c.tokenize_args);
  c.tokenize->add_option("--file", c.tokenize_args.file, "Texts, one per line ('-' for stdin)");

  BertConvertArgs& v = c.convert_args;
  c.convert = c.bert->add_subcommand(
      "convert",
      "Convert a dense BERT (arch bert, e.g. all-MiniLM-L6-v2) into leaf FFF feedforward blocks "
      "without training (docs/minilm.md)");
  c.convert->add_option("DENSE", v.dense, "Dense fff-bert model file")->required();
  c.convert->add_option("OUT", v.out, "Converted model file (written atomically)")->required();
  c.convert->add_option("--to", v.to, "Target block kind (leaf-fff)")->capture_default_str();
  c.convert
      ->add_option("--method", v.method,
                   "token-split: the tree splits the sampled tokens in halves (2-means), each "
                   "leaf takes the neurons that matter most for its tokens and refits its output "
                   "layer by least squares; coactivation: the neurons grouped into 2^D leaves by "
                   "co-activation (MoEfication), the nodes fitted to send each token to the leaf "
                   "that best reproduces the dense output")
      ->capture_default_str();
  c.convert->add_option("--depth", v.depth, "Tree depth D: 2^D leaves of width/2^D neurons")
      ->check(CLI::Range(1, 10))  // convert_dense_to_leaf's range
      ->capture_default_str();
  c.convert->add_option("--texts", v.texts,
                        "Texts, one per line, whose tokens are the samples (default: the lines "
                        "of /usr/share/games/fortunes/*)");
  c.convert->add_option("--samples", v.samples, "Token rows sampled per layer")
      ->check(positive())
      ->capture_default_str();
  c.convert
      ->add_option("--distill-steps", v.distill_steps,
                   "Blockwise distillation steps per layer after conversion (0: none): Adam on "
                   "the relative squared error to the dense block on 90% of the samples; a layer "
                   "keeps the trained block if it is better on the other 10%")
      ->capture_default_str();
  c.convert->add_option("--distill-batch", v.distill_batch, "Rows per distillation step")
      ->check(positive())
      ->capture_default_str();
  c.convert->add_option("--distill-lr", v.distill_lr, "Adam learning rate")
      ->check(positive())
      ->check(finite_number())
      ->capture_default_str();
  c.convert
      ->add_option("--distill-mode", v.distill_mode,
                   "soft: the soft mixture of leaves with --hardening (nodes learn too); hard: "
                   "hardened decisions, only the leaves learn")
      ->capture_default_str();
  c.convert->add_option("--hardening", v.hardening, "Weight of the mean node entropy (soft)")
      ->check(non_negative())
      ->check(finite_number())
      ->capture_default_str();
  c.convert->add_option("--seed", v.seed, "Seed (text shuffle, k-means start)")
      ->check(non_negative())
      ->capture_default_str();
  c.convert->add_option("--threads", v.threads, "Threads")
      ->check(thread_count())
      ->capture_default_str();
  c.convert->add_flag("--json", v.json, "Print a JSON summary (per-layer figures) on stdout");

  BertBenchArgs& b = c.bench_args;
  c.bench =
      bench.add_subcommand("bert",
                           "Encoder tokens/s: UltraFastBERT (FFF) vs the same engine with dense FF "
                           "(crammedBERT) vs PyTorch CPU on the dense model; random weights");
  c.bench->add_option("--layers", b.layers, "Transformer layers")
      ->check(positive())
      ->capture_default_str();
  c.bench->add_option("--hidden", b.hidden, "Hidden size")
      ->check(positive())
      ->capture_default_str();
  c.bench->add_option("--heads", b.heads, "Attention heads (dividing --hidden)")
      ->check(positive())
      ->capture_default_str();
  c.bench->add_option("--seq", b.seq, "Sequence length")->check(positive())->capture_default_str();
  c.bench->add_option("--batches", b.batches, "Sequences per call (list)")
      ->delimiter(',')
      ->check(positive())
      ->capture_default_str();
  c.bench->add_option("--threads", b.threads, "Thread counts (list)")
      ->delimiter(',')
      ->check(thread_count())
      ->capture_default_str();
  c.bench->add_option("--trees", b.trees, "FFF trees K")->check(positive())->capture_default_str();
  c.bench->add_option("--depth", b.depth, "FFF depth D")
      ->check(CLI::Range(0, 24))  // the neuron FFF's limit (FFConfig::validate)
      ->capture_default_str();
  c.bench->add_option("--dense-width", b.dense_width, "Dense FF width")
      ->check(positive())
      ->capture_default_str();
  c.bench->add_option("--repeats", b.repeats, "Timed repeats (median) after one warm-up")
      ->check(positive())
      ->capture_default_str();
  c.bench
      ->add_option("--python", b.python,
                   "Python with torch for the PyTorch baseline ('none' to skip)")
      ->capture_default_str();
  c.bench->add_option("--torch-script", b.torch_script,
                      "Path of bert_torch_bench.py (default: next to the fff executable, or in "
                      "../share/fff/ beside it)");
  c.bench->add_option("--model", b.model,
                      "Time this fff-bert model file (e.g. models/all-MiniLM-L6-v2.safetensors) "
                      "against PyTorch running the same architecture and shape (transformers' "
                      "BertModel for arch bert if --python has transformers, e.g. "
                      "build/venv-ref/bin/python); the shape flags are then ignored");
  c.bench->add_option("--onnx", b.onnx,
                      "With --model: also time ONNX Runtime on this exported model "
                      "(scripts/export_onnx.py) with --python (it needs onnxruntime, e.g. "
                      "build/venv-ref/bin/python), and check that its mean-pooled embedding of "
                      "a fixed sentence is fff's within 1e-4 (dense models)");
  c.bench->add_option("--ort-script", b.ort_script,
                      "Path of bert_ort_bench.py (default: next to the fff executable, or in "
                      "../share/fff/ beside it)");
  c.bench->add_flag("--json", b.json, "One JSON object per configuration on stdout");
}

int run_bert(const BertCommands& c) {
  if (c.fill_mask && *c.fill_mask) return run_fill_mask(c.fill_args);
  if (c.embed && *c.embed) return run_embed(c.embed_args);
  if (c.tokenize && *c.tokenize) return run_tokenize(c.tokenize_args);
  if (c.convert && *c.convert) return run_convert(c.convert_args);
  if (c.bench && *c.bench) return run_bert_bench(c.bench_args);
  return -1;
}

}  // namespace fff_cli
