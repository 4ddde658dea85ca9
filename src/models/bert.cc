// BERT encoder inference (crammedBERT / UltraFastBERT and the original post-norm BERT): model
// files, random models, the encoder pass, the MLM decoder and mean pooling.
#include "fff/models/bert.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <deque>
#include <map>
#include <utility>

#include "core/parallel.h"
#include "fff/cpu/gemm.h"
#include "fff/io/safetensors.h"
#include "fff/layers/attention.h"
#include "fff/layers/ff/neuron_fff.h"

namespace fff {

namespace {

// Sinusoids as crammedBERT computes them, in float: pe[p, 2i] = sin(p w_i),
// pe[p, 2i+1] = cos(p w_i), w_i = exp(2i * -ln(10000) / H).
Tensor sinusoid_table(int64_t rows, int64_t H) {
  Tensor pe({rows, H});
  const float step = static_cast<float>(-std::log(10000.0) / static_cast<double>(H));
  for (int64_t i = 0; 2 * i < H; ++i) {
    const float w = std::exp(static_cast<float>(2 * i) * step);
    for (int64_t p = 0; p < rows; ++p) {
      const float angle = static_cast<float>(p) * w;
      pe.row(p)[2 * i] = std::sin(angle);
      if (2 * i + 1 < H) pe.row(p)[2 * i + 1] = std::cos(angle);
    }
  }
  return pe;
}

// Uniform with the given standard deviation: as good as normal for random test and benchmark
// models, and ten times faster to draw for the 300M weights of a full-size pair.
void fill_spread(Tensor& t, float stddev, Rng& rng) {
  fill_uniform(t, std::sqrt(3.0f) * stddev, rng);
}

// Gain 1, bias 0; its parameters carry their names in the file ("<name>.gain", "<name>.bias").
LayerNorm bert_norm(const BertConfig& c, const std::string& name) {
  LayerNorm n = make_layer_norm(c.hidden, name);
  n.eps = c.norm_eps;
  return n;
}

NeuronFFFConfig fff_config(const BertConfig& c) {
  const FFConfig f = c.ff_config();
  return {f.in, f.out, f.trees, f.depth, f.act, f.output_bias};
}

std::string layer_key(int64_t i, const char* name) {
  return "layers." + std::to_string(i) + "." + name;
}

// A tensor with its shape and no storage yet: the file or the initialiser provides the values.
Tensor shaped(std::vector<int64_t> shape) {
  Tensor t;
  t.shape = std::move(shape);
  return t;
}

// A model of the configured shapes without weights (norms at gain 1, bias 0).
BertModel bert_skeleton(const BertConfig& c) {
  const int64_t H = c.hidden;
  BertModel m;
  m.cfg = c;
  const bool bert = c.arch == BertArch::bert;
  m.word = shaped({c.vocab, H});
  if (bert) {
    m.positions = shaped({c.max_seq, H});
    m.token_type = shaped({c.type_vocab, H});
  } else {
    m.pos_scale = shaped({1});
    m.positions = sinusoid_table(c.max_seq, H);
  }
  m.embed_norm = bert_norm(c, "embedding.norm");
  if (!bert) m.final_norm = bert_norm(c, "final_norm");
  for (int64_t i = 0; i < c.layers; ++i) {
    BertLayer L;
    L.norm1 = bert_norm(c, layer_key(i, "norm1"));
    L.norm2 = bert_norm(c, layer_key(i, "norm2"));
    L.qkv = shaped({3 * H, H});
    L.out = shaped({H, H});
    if (bert) {
      L.qkv_bias = shaped({3 * H});
      L.out_bias = shaped({H});
    }
    m.layers.push_back(std::move(L));
  }
  return m;
}

// Every stored tensor of a model with its name in the file, in file order (M: maybe const).
template <class M>
auto stored_tensors(M& m) {
  std::vector<std::pair<std::string, decltype(&m.word)>> t;
  auto add_norm = [&](auto& n) {
    t.push_back({n.gain.name, &n.gain.value});
    t.push_back({n.bias.name, &n.bias.value});
  };
  if (m.cfg.arch == BertArch::bert) {
    t = {{"embedding.word", &m.word},
         {"embedding.position", &m.positions},
         {"embedding.token_type", &m.token_type}};
    add_norm(m.embed_norm);
    for (size_t i = 0; i < m.layers.size(); ++i) {
      auto& L = m.layers[i];
      const auto l = static_cast<int64_t>(i);
      t.push_back({layer_key(l, "attn.qkv"), &L.qkv});
      t.push_back({layer_key(l, "attn.qkv_bias"), &L.qkv_bias});
      t.push_back({layer_key(l, "attn.out"), &L.out});
      t.push_back({layer_key(l, "attn.out_bias"), &L.out_bias});
      add_norm(L.norm1);
      add_norm(L.norm2);
    }
    return t;
  }
  t = {{"embedding.word", &m.word}, {"embedding.pos_scale", &m.pos_scale}};
  add_norm(m.embed_norm);
  for (size_t i = 0; i < m.layers.size(); ++i) {
    auto& L = m.layers[i];
    const auto l = static_cast<int64_t>(i);
    add_norm(L.norm1);
    t.push_back({layer_key(l, "attn.qkv"), &L.qkv});
    t.push_back({layer_key(l, "attn.out"), &L.out});
    add_norm(L.norm2);
  }
  add_norm(m.final_norm);
  return t;
}

// The feedforward block's tensors as a file stores them: the name after "layers.i.", the block's
// parameter, the file's shape, and whether the block holds it transposed (a dense block's products
// are stored (out, in), as PyTorch's Linear stores them; DenseFF holds (in, out)).
struct FileTensor {
  const char* name;
  const char* param;
  std::vector<int64_t> shape;
  bool transposed;
};

std::vector<FileTensor> ff_file_tensors(const BertConfig& c) {
  const int64_t H = c.hidden;
  if (c.ff.kind == FFKind::ff && c.ff.output_bias)
    return {{"ff.w1", "w1", {c.ff.width, H}, true},
            {"ff.b1", "b1", {c.ff.width}, false},
            {"ff.w2", "w2", {H, c.ff.width}, true},
            {"ff.b2", "b2", {H}, false}};
  if (c.ff.kind == FFKind::ff)
    return {{"ff.w1", "w1", {c.ff.width, H}, true}, {"ff.w2", "w2", {H, c.ff.width}, true}};
  if (c.ff.kind == FFKind::leaf_fff) {
    // The block's own names and layout (leaf_fff.h): nothing to transpose.
    const LeafFFFConfig l = leaf_config(c.ff_config());
    const int64_t W = l.training_width();
    return {{"leaf.nodes_w", "nodes_w", {l.n_nodes(), H}, false},
            {"leaf.nodes_b", "nodes_b", {l.n_nodes()}, false},
            {"leaf.w1", "w1", {H, W}, false},
            {"leaf.b1", "b1", {W}, false},
            {"leaf.w2", "w2", {W, H}, false},
            {"leaf.b2", "b2", {l.n_leaves(), H}, false}};
  }
  const int64_t n = fff_config(c).n_nodes();
  return {{"fff.w1", "w1", {n, H}, false},
          {"fff.b1", "b1", {n}, false},
          {"fff.w2", "w2", {n, H}, false}};
}

// (r, c) -> (c, r).
Tensor transposed(const Tensor& t) {
  const int64_t r = t.rows(), c = t.cols();
  Tensor o({c, r});
  for (int64_t i = 0; i < r; ++i)
    for (int64_t j = 0; j < c; ++j) o.data[j * r + i] = t.data[i * c + j];
  return o;
}

// Layer i's block from its tensors in `file` (keyed by their names in the file; taken out of it).
std::unique_ptr<FFBlock> ff_block_from_file(const BertConfig& c, int64_t i,
                                            std::map<std::string, Tensor>& file,
                                            const std::string& where) {
  std::map<std::string, Tensor> params;
  for (const FileTensor& f : ff_file_tensors(c)) {
    const std::string key = layer_key(i, f.name);
    auto it = file.find(key);
    if (it == file.end()) throw Error(where + ": tensor '" + key + "' is missing");
    if (it->second.shape != f.shape)
      throw Error(where + ": tensor '" + key + "' has shape " + shape_string(it->second.shape) +
                  ", expected " + shape_string(f.shape) + " for " + c.describe());
    params[f.param] = f.transposed ? transposed(it->second) : std::move(it->second);
    file.erase(it);
  }
  return make_ff_block_from(c.ff_config(), params, where + ": " + layer_key(i, "ff"));
}

bool ends_with(const std::string& s, const char* suffix) {
  const std::string x(suffix);
  return s.size() >= x.size() && s.compare(s.size() - x.size(), x.size(), x) == 0;
}

}  // namespace

const char* bert_arch_name(BertArch a) {
  return a == BertArch::bert ? "bert" : "crammed";
}

void BertConfig::validate(const std::string& where) const {
  auto need = [&](bool ok, const std::string& what) {
    if (!ok) throw Error(where + ": " + what);
  };
  need(hidden > 0, "hidden must be positive");
  need(layers >= 0, "layers must be non-negative");
  need(heads > 0 && hidden % heads == 0,
       "heads (" + std::to_string(heads) + ") must divide hidden (" + std::to_string(hidden) + ")");
  need(vocab > 0, "vocab_size must be positive");
  need(max_seq > 0, "max_seq_length must be positive");
  need(pad_id >= 0 && pad_id < vocab, "pad_token_id must be in [0, vocab_size)");
  need(norm_eps >= 0.0f && std::isfinite(norm_eps), "norm_eps must be a non-negative number");
  if (ff.kind == FFKind::leaf_fff) {
    // Both architectures: the leaf block always carries its biases.
    need(ff.act == Activation::gelu, "the leaf-fff feedforward block is GELU");
    if (arch == BertArch::bert) need(type_vocab > 0, "type_vocab_size must be positive");
  } else if (arch == BertArch::bert) {
    need(type_vocab > 0, "type_vocab_size must be positive");
    need(ff.kind == FFKind::ff, std::string("ff = ") + ff_kind_name(ff.kind) +
                                    ": arch bert runs dense ff and leaf-fff feedforward blocks");
    need(ff.act == Activation::gelu && ff.output_bias,
         "arch bert: the feedforward block is GELU with biases");
  } else {
    need(ff.act == Activation::gelu && !ff.output_bias,
         "the feedforward block is GELU without an output bias");
  }
  try {
    ff_config().validate();
  } catch (const Error& e) {
    throw Error(where + ": " + e.what());
  }
}

FFConfig BertConfig::default_ff() {
  FFConfig f;
  f.kind = FFKind::neuron_fff;
  f.act = Activation::gelu;
  f.output_bias = false;
  f.width = 3072;
  f.trees = 1;
  f.depth = 11;
  return f;
}

FFConfig BertConfig::ff_config() const {
  FFConfig f = ff;
  f.in = f.out = hidden;
  return f;
}

std::string BertConfig::describe() const {
  std::string s = std::string(arch == BertArch::bert ? "BERT (post-norm), " : "") +
                  std::to_string(layers) + " layers, hidden " + std::to_string(hidden) + ", " +
                  std::to_string(heads) + " heads, ";
  if (ff.kind == FFKind::ff) return s + "dense FF " + std::to_string(ff.width);
  if (ff.kind == FFKind::leaf_fff)
    return s + "leaf FFF depth " + std::to_string(ff.depth) + ", leaf width " +
           std::to_string(ff.leaf_width);
  return s + "FFF " + std::to_string(ff.trees) + "x" + std::to_string(ff.depth);
}

BertModel make_random_bert(const BertConfig& cfg, uint64_t seed) {
  cfg.validate("random BERT");
  Rng rng(seed);
  BertModel m = bert_skeleton(cfg);
  auto fill = [&](const std::string& name, Tensor& t) {
    t.reshape(t.shape);
    if (name == "embedding.pos_scale")
      t.data[0] = 1.0f / std::sqrt(static_cast<float>(cfg.hidden));
    else if (name == "embedding.word" || name == "embedding.position" ||
             name == "embedding.token_type")
      fill_spread(t, 1.0f, rng);
    else if (ends_with(name, "_bias") || ends_with(name, "ff.b1") || ends_with(name, "ff.b2"))
      fill_spread(t, 0.1f, rng);  // the biases of arch bert
    else if (name.find(".leaf.") != std::string::npos) {
      const LeafFFFConfig l = leaf_config(cfg.ff_config());
      if (ends_with(name, "leaf.w1"))  // (in, W): the fan-in is the column length
        fill_spread(t, 1.0f / std::sqrt(static_cast<float>(cfg.hidden)), rng);
      else if (ends_with(name, "leaf.w2"))  // a token sums one leaf's rows
        fill_spread(t, 1.0f / std::sqrt(static_cast<float>(l.leaf_width)), rng);
      else if (ends_with(name, "leaf.nodes_w"))
        fill_spread(t, 1.0f / std::sqrt(static_cast<float>(cfg.hidden)), rng);
      else  // nodes_b, b1, b2
        fill_spread(t, 0.1f, rng);
    } else if (ends_with(name, "fff.b1"))
      fill_uniform(t, 0.5f, rng);
    else if (ends_with(name, "fff.w2"))  // (neurons, out): a token sums K (D + 1) of its rows
      fill_spread(t, 1.0f / std::sqrt(static_cast<float>(fff_config(cfg).path_length())), rng);
    else  // (out, in): the fan-in is the row length
      fill_spread(t, 1.0f / std::sqrt(static_cast<float>(t.cols())), rng);
  };
  for (auto& [name, t] : stored_tensors(m))
    if (!ends_with(name, ".gain") && !ends_with(name, ".bias")) fill(name, *t);  // norms: 1, 0
  for (int64_t i = 0; i < cfg.layers; ++i) {
    std::map<std::string, Tensor> file;
    for (const FileTensor& f : ff_file_tensors(cfg)) {
      const std::string key = layer_key(i, f.name);
      fill(key, file[key] = shaped(f.shape));
    }
    m.layers[static_cast<size_t>(i)].ff = ff_block_from_file(cfg, i, file, "random BERT");
  }
  bert_prepare_inference(m);
  return m;
}

BertModel load_bert(const std::string& path) {
  SafetensorsFile f = load_safetensors(path);
  const Metadata& meta = f.metadata;
  check_metadata_format(meta, path, "fff-bert", "an fff BERT file",
                        "; convert a checkpoint with scripts/convert_bert.py");
  // A damaged file: an encoder with NaN weights would give NaN embeddings (null in JSON) and
  // meaningless predictions without a word.
  for (const auto& [name, t] : f.tensors)
    for (float v : t.data)
      if (!std::isfinite(v)) throw Error(path + ": tensor '" + name + "' holds NaN or infinity");
  BertConfig c;
  // Files written before arch bert existed are crammedBERT / UltraFastBERT.
  const std::string arch = meta.count("arch") ? meta.at("arch") : "crammed";
  if (arch == "bert")
    c.arch = BertArch::bert;
  else if (arch != "crammed")
    throw Error(path + ": metadata 'arch' is '" + arch + "' (expected crammed or bert)");
  if (c.arch == BertArch::bert) c.type_vocab = metadata_int(meta, "type_vocab_size", path);
  c.hidden = metadata_int(meta, "hidden", path);
  c.layers = metadata_int(meta, "layers", path);
  c.heads = metadata_int(meta, "heads", path);
  c.vocab = metadata_int(meta, "vocab_size", path);
  c.max_seq = metadata_int(meta, "max_seq_length", path);
  c.pad_id = metadata_int(meta, "pad_token_id", path);
  c.norm_eps = metadata_float(meta, "norm_eps", path);
  // One spelling of the block's kind (ff, neuron-fff); files written before it say dense or fff.
  const std::string& ff = metadata_string(meta, "ff", path);
  try {
    c.ff.kind = parse_ff_kind(ff == "fff" ? "neuron-fff" : ff);
  } catch (const Error& e) {
    throw Error(path + ": metadata 'ff': " + e.what());
  }
  c.ff.output_bias = c.arch == BertArch::bert;
  if (c.ff.kind == FFKind::ff) {
    c.ff.width = metadata_int(meta, "ff_width", path);
  } else if (c.ff.kind == FFKind::leaf_fff) {
    c.ff.depth = metadata_int(meta, "leaf_depth", path);
    c.ff.leaf_width = metadata_int(meta, "leaf_width", path);
  } else {
    c.ff.trees = metadata_int(meta, "fff_trees", path);
    c.ff.depth = metadata_int(meta, "fff_depth", path);
  }
  if (meta.count("activation") && meta.at("activation") != "gelu")
    throw Error(path + ": metadata 'activation' is '" + meta.at("activation") +
                "' (only gelu is supported)");
  c.validate(path);

  // The file must hold exactly the tensors the config implies, with their shapes.
  BertModel m = bert_skeleton(c);
  for (auto& [name, t] : stored_tensors(m)) {
    auto it = f.tensors.find(name);
    if (it == f.tensors.end()) throw Error(path + ": tensor '" + name + "' is missing");
    if (it->second.shape != t->shape)
      throw Error(path + ": tensor '" + name + "' has shape " + shape_string(it->second.shape) +
                  ", expected " + shape_string(t->shape) + " for " + c.describe());
    *t = std::move(it->second);
    f.tensors.erase(it);
  }
  for (int64_t i = 0; i < c.layers; ++i)
    m.layers[static_cast<size_t>(i)].ff = ff_block_from_file(c, i, f.tensors, path);
  if (!f.tensors.empty())
    throw Error(path + ": unexpected tensor '" + f.tensors.begin()->first + "' (and " +
                std::to_string(f.tensors.size() - 1) + " more) for " + c.describe());
  if (meta.count("tokenizer.vocab")) m.vocab_text = meta.at("tokenizer.vocab");
  if (meta.count("tokenizer.lowercase")) m.lowercase = meta.at("tokenizer.lowercase") != "0";
  if (meta.count("sentence.normalize")) {
    const std::string& v = meta.at("sentence.normalize");
    if (v != "0" && v != "1")
      throw Error(path + ": metadata 'sentence.normalize' is '" + v + "' (expected 0 or 1)");
    m.normalize_embeddings = v == "1";
  }
  if (meta.count("sentence.max_seq_length")) {
    m.sentence_max_len = metadata_int(meta, "sentence.max_seq_length", path);
    if (m.sentence_max_len < 2)
      throw Error(path + ": metadata 'sentence.max_seq_length' must be at least 2");
  }
  bert_prepare_inference(m);
  return m;
}

void save_bert(const BertModel& m, const std::string& path) {
  const BertConfig& c = m.cfg;
  std::vector<std::pair<std::string, const Tensor*>> t;
  for (const auto& [name, tensor] : stored_tensors(m)) t.push_back({name, tensor});
  std::deque<Tensor> transposes;  // a dense block's products, as the file stores them
  for (size_t i = 0; i < m.layers.size(); ++i) {
    std::map<std::string, const Tensor*> params;
    for (Param* p : m.layers[i].ff->params()) params[p->name] = &p->value;
    for (const FileTensor& f : ff_file_tensors(c)) {
      const Tensor* value = params.at(f.param);
      if (f.transposed) value = &transposes.emplace_back(transposed(*value));
      t.push_back({layer_key(static_cast<int64_t>(i), f.name), value});
    }
  }
  char eps[32];
  std::snprintf(eps, sizeof(eps), "%.9g", static_cast<double>(c.norm_eps));
  std::map<std::string, std::string> meta = {
      {"format", "fff-bert"},
      {"format_version", "1"},
      {"hidden", std::to_string(c.hidden)},
      {"layers", std::to_string(c.layers)},
      {"heads", std::to_string(c.heads)},
      {"vocab_size", std::to_string(c.vocab)},
      {"max_seq_length", std::to_string(c.max_seq)},
      {"pad_token_id", std::to_string(c.pad_id)},
      {"norm_eps", eps},
      {"ff", ff_kind_name(c.ff.kind)},
      {"ff_width", std::to_string(c.ff.kind == FFKind::ff ? c.ff.width : 0)},
      {"fff_trees", std::to_string(c.ff.kind == FFKind::neuron_fff ? c.ff.trees : 0)},
      {"fff_depth", std::to_string(c.ff.kind == FFKind::neuron_fff ? c.ff.depth : 0)},
      {"leaf_depth", std::to_string(c.ff.kind == FFKind::leaf_fff ? c.ff.depth : 0)},
      {"leaf_width", std::to_string(c.ff.kind == FFKind::leaf_fff ? c.ff.leaf_width : 0)},
      {"activation", "gelu"},
      {"arch", bert_arch_name(c.arch)},
      {"sentence.normalize", m.normalize_embeddings ? "1" : "0"}};
  if (c.arch == BertArch::bert) meta["type_vocab_size"] = std::to_string(c.type_vocab);
  if (m.sentence_max_len > 0) meta["sentence.max_seq_length"] = std::to_string(m.sentence_max_len);
  if (!m.vocab_text.empty()) {
    meta["tokenizer.vocab"] = m.vocab_text;
    meta["tokenizer.lowercase"] = m.lowercase ? "1" : "0";
  }
  save_safetensors(path, t, meta);
}

void bert_use_half_fff(BertModel& m, bool use) {
  if (use && m.cfg.ff.kind != FFKind::neuron_fff)
    throw Error("half-precision FFF weights need an FFF model, not " + m.cfg.describe());
  for (size_t i = 0; i < m.layers.size(); ++i) {
    try {
      m.layers[i].ff->prepare_inference({.half_weights = use});
    } catch (const Error& e) {
      throw Error("layers." + std::to_string(i) + ".fff: " + e.what());
    }
  }
  m.half_fff = use;
}

void bert_prepare_inference(BertModel& m) {
  const int64_t H = m.cfg.hidden;
  for (size_t i = 0; i < m.layers.size(); ++i) {
    BertLayer& L = m.layers[i];
    L.qkv_packed = pack_matrix(L.qkv.ptr(), H, true, H, 3 * H);
    L.out_packed = pack_matrix(L.out.ptr(), H, true, H, H);
    try {
      L.ff->prepare_inference({.half_weights = m.half_fff});
    } catch (const Error& e) {
      throw Error("layers." + std::to_string(i) + ": " + e.what());
    }
  }
}

BertLayer::BertLayer(const BertLayer& o)
    : norm1(o.norm1),
      norm2(o.norm2),
      qkv(o.qkv),
      out(o.out),
      qkv_bias(o.qkv_bias),
      out_bias(o.out_bias),
      ff(o.ff ? o.ff->clone() : nullptr),
      qkv_packed(o.qkv_packed),
      out_packed(o.out_packed) {}

BertLayer& BertLayer::operator=(const BertLayer& o) {
  if (this != &o) *this = BertLayer(o);
  return *this;
}

namespace {

// The encoder's activations, kept in the context's workspace across calls: no allocation or
// zeroing per encode.
struct EncodeBuffers {
  Tensor normed, qkv, attn, key_bias;
};

}  // namespace

void bert_encode(Context& ctx, const BertModel& m, const int32_t* ids, const uint8_t* mask,
                 int64_t B, int64_t S, float* hidden, BertTimings* timings,
                 BertFFObserver* observer) {
  const BertConfig& c = m.cfg;
  const int64_t H = c.hidden, N = B * S;
  if (B < 0 || S < 0) throw Error("bert_encode: negative batch or sequence length");
  if (S > c.max_seq)
    throw Error("sequence of " + std::to_string(S) + " tokens is longer than the model's " +
                std::to_string(c.max_seq) + " positions");
  for (int64_t r = 0; r < N; ++r)
    if (ids[r] < 0 || ids[r] >= c.vocab)
      throw Error("token id " + std::to_string(ids[r]) + " is outside the vocabulary [0, " +
                  std::to_string(c.vocab) + ")");
  CallScope scope(ctx);
  BertTimings t;
  double mark = now_seconds();
  auto lap = [&](double& slot) {
    const double now = now_seconds();
    slot += now - mark;
    mark = now;
  };

  // Embeddings, normalised into the residual stream.
  EncodeBuffers& buffers = ctx.workspace.get<EncodeBuffers>();
  Tensor &normed = buffers.normed, &qkv = buffers.qkv, &attn = buffers.attn,
         &key_bias = buffers.key_bias;
  normed.reshape({N, H});
  qkv.reshape({N, 3 * H});
  attn.reshape({N, H});
  key_bias.reshape({N});
  const bool bert = c.arch == BertArch::bert;
  parallel_for(ctx, N, [&](int64_t r) {
    const float* w = m.word.row(ids[r]);
    const float* p = m.positions.row(r % S);
    float* e = normed.row(r);
    if (bert) {
      // Every token has type 0 (single sentences), as sentence-transformers encodes them.
      const float* type = m.token_type.row(0);
      for (int64_t j = 0; j < H; ++j) e[j] = w[j] + p[j] + type[j];
    } else {
      const float scale = m.pos_scale.data[0];
      for (int64_t j = 0; j < H; ++j) e[j] = w[j] + scale * p[j];
    }
  });
  layer_norm_infer(ctx, m.embed_norm, normed.ptr(), N, hidden);
  if (mask) attention_key_bias(mask, N, key_bias.ptr());
  lap(t.embed);

  const AttentionShape shape{B, S, c.heads, c.head_dim()};
  // Adds a bias to every row of x (n, w).
  auto add_bias = [&](float* x, int64_t n, int64_t w, const float* bias) {
    parallel_for(ctx, n, [&](int64_t r) {
      float* row = x + r * w;
      for (int64_t j = 0; j < w; ++j) row[j] += bias[j];
    });
  };
  // q = x Wqkv^T (+ bias); y += a Wo^T (+ bias): the residual add rides on the product. On the
  // packed weights when bert_prepare_inference made them.
  auto qkv_product = [&](const BertLayer& L, const float* x, float* q, const float* bias) {
    if (!L.qkv_packed.empty())
      return gemm_packed(ctx, N, x, H, L.qkv_packed, bias, false, q, 3 * H);
    gemm_inference(ctx, false, true, N, 3 * H, H, 1.0f, x, H, L.qkv.ptr(), H, 0.0f, q, 3 * H);
    if (bias) add_bias(q, N, 3 * H, bias);
  };
  auto out_product = [&](const BertLayer& L, const float* a, float* y, const float* bias) {
    if (!L.out_packed.empty()) return gemm_packed(ctx, N, a, H, L.out_packed, bias, true, y, H);
    gemm_inference(ctx, false, true, N, H, H, 1.0f, a, H, L.out.ptr(), H, 1.0f, y, H);
    if (bias) add_bias(y, N, H, bias);
  };
  if (bert) {
    // Post-norm: x = LN1(x + attn(x) Wo^T + bo); x = LN2(x + FF(x)), the norms in place.
    for (const BertLayer& L : m.layers) {
      qkv_product(L, hidden, qkv.ptr(), L.qkv_bias.ptr());
      self_attention(ctx, shape, qkv.ptr(), mask ? key_bias.ptr() : nullptr, attn.ptr());
      out_product(L, attn.ptr(), hidden, L.out_bias.ptr());
      lap(t.attention);
      layer_norm_infer(ctx, L.norm1, hidden, N, hidden);
      lap(t.other);
      L.ff->infer(ctx, hidden, N, attn.ptr(), nullptr);
      if (observer) observer->ff_block(&L - m.layers.data(), hidden, attn.ptr(), N);
      lap(t.ff);
      const float* f = attn.ptr();
      parallel_for(ctx, N * H, [&](int64_t i) { hidden[i] += f[i]; });
      layer_norm_infer(ctx, L.norm2, hidden, N, hidden);
      lap(t.other);
    }
    if (timings) *timings = t;
    return;
  }
  for (const BertLayer& L : m.layers) {
    layer_norm_infer(ctx, L.norm1, hidden, N, normed.ptr());
    lap(t.other);
    qkv_product(L, normed.ptr(), qkv.ptr(), nullptr);
    self_attention(ctx, shape, qkv.ptr(), mask ? key_bias.ptr() : nullptr, attn.ptr());
    out_product(L, attn.ptr(), hidden, nullptr);
    lap(t.attention);
    layer_norm_infer(ctx, L.norm2, hidden, N, normed.ptr());
    lap(t.other);
    // x += FF(LN2(x)): the block writes its output into attn's buffer, free again by now.
    L.ff->infer(ctx, normed.ptr(), N, attn.ptr(), nullptr);
    if (observer) observer->ff_block(&L - m.layers.data(), normed.ptr(), attn.ptr(), N);
    lap(t.ff);
    const float* f = attn.ptr();
    parallel_for(ctx, N * H, [&](int64_t i) { hidden[i] += f[i]; });
    lap(t.other);
  }
  layer_norm_infer(ctx, m.final_norm, hidden, N, hidden);
  lap(t.other);
  if (timings) *timings = t;
}

void bert_mlm_logits(Context& ctx, const BertModel& m, const float* hidden_rows, int64_t N,
                     float* logits) {
  if (m.cfg.arch == BertArch::bert)
    throw Error("this BERT model (arch bert) has no MLM head: it makes embeddings only");
  const int64_t H = m.cfg.hidden, V = m.cfg.vocab;
  gemm_inference(ctx, false, true, N, V, H, 1.0f, hidden_rows, H, m.word.ptr(), H, 0.0f, logits, V);
}

void bert_mean_pool(const float* hidden, const uint8_t* mask, int64_t B, int64_t S, int64_t H,
                    float* out) {
  for (int64_t b = 0; b < B; ++b) {
    std::vector<double> acc(static_cast<size_t>(H), 0.0);
    int64_t count = 0;
    for (int64_t s = 0; s < S; ++s) {
      if (mask && !mask[b * S + s]) continue;
      const float* h = hidden + (b * S + s) * H;
      for (int64_t j = 0; j < H; ++j) acc[j] += h[j];
      ++count;
    }
    for (int64_t j = 0; j < H; ++j)
      out[b * H + j] = count ? static_cast<float>(acc[j] / static_cast<double>(count)) : 0.0f;
  }
}

void l2_normalize_rows(float* x, int64_t B, int64_t H) {
  for (int64_t b = 0; b < B; ++b) {
    float* row = x + b * H;
    double sum = 0.0;
    for (int64_t j = 0; j < H; ++j) sum += static_cast<double>(row[j]) * row[j];
    const double scale = 1.0 / std::max(std::sqrt(sum), 1e-12);
    for (int64_t j = 0; j < H; ++j) row[j] = static_cast<float>(row[j] * scale);
  }
}

}  // namespace fff
