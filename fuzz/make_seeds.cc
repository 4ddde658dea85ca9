// Writes the fuzz targets' seed inputs with fff's own writers (tiny models of every kind, an LM
// checkpoint with its optimizer state, BERT files with a vocabulary) and small hand-made data
// files, one folder per target: make_seeds OUT_DIR. scripts/fuzz.sh starts each fuzzer from
// these plus the checked-in corpus.
#include <zlib.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "fff/core/common.h"
#include "fff/models/bert.h"
#include "fff/models/classifier.h"
#include "fff/training/lm_train.h"

namespace fs = std::filesystem;

namespace {

std::string read_all(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

void write_all(const fs::path& p, const std::string& bytes) {
  fs::create_directories(p.parent_path());
  std::ofstream out(p, std::ios::binary);
  out << bytes;
  if (!out) throw fff::Error(p.string() + ": cannot write");
}

std::string gzip(const std::string& raw) {
  z_stream z{};
  if (deflateInit2(&z, 9, Z_DEFLATED, 16 + 15, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    throw fff::Error("deflateInit2 failed");
  std::string out(deflateBound(&z, raw.size()), '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(raw.data()));
  z.avail_in = static_cast<uInt>(raw.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  deflate(&z, Z_FINISH);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

// An IDX file of unsigned bytes: magic 0 0 8 ndims, big-endian dimensions, then the values.
std::string idx(const std::vector<uint32_t>& dims, uint8_t first_value) {
  std::string s = {0, 0, 8, static_cast<char>(dims.size())};
  size_t n = 1;
  for (uint32_t d : dims) {
    for (int shift = 24; shift >= 0; shift -= 8) s += static_cast<char>((d >> shift) & 0xFF);
    n *= d;
  }
  for (size_t i = 0; i < n; ++i) s += static_cast<char>((first_value + i) % 10);
  return s;
}

// fuzz_idx's input: two little-endian length bytes, the images file, the labels file.
std::string idx_pair(const std::string& images, const std::string& labels) {
  return std::string{static_cast<char>(images.size() & 0xFF),
                     static_cast<char>(images.size() >> 8)} +
         images + labels;
}

}  // namespace

int main(int argc, char** argv) try {
  if (argc != 2) {
    std::fprintf(stderr, "usage: make_seeds OUT_DIR\n");
    return 2;
  }
  const fs::path out = argv[1];
  fff::Rng rng(7);

  // Classifiers of every kind.
  std::vector<fff::ModelConfig> classifiers(3);
  classifiers[0].kind = fff::FFKind::ff, classifiers[0].width = 3;
  classifiers[1].kind = fff::FFKind::leaf_fff, classifiers[1].depth = 2,
  classifiers[1].leaf_width = 2;
  classifiers[2].kind = fff::FFKind::neuron_fff, classifiers[2].depth = 1, classifiers[2].trees = 2;
  for (size_t i = 0; i < classifiers.size(); ++i) {
    fff::ModelConfig& c = classifiers[i];
    c.in = 5, c.out = 3, c.act = i == 1 ? fff::Activation::gelu : fff::Activation::relu;
    fff::Model m(c, rng);
    const fs::path p = out / "classifier" / ("model-" + std::to_string(i) + ".safetensors");
    fs::create_directories(p.parent_path());
    fff::save_model(p.string(), m, {{"note", "seed"}});
  }

  // LM checkpoints, one per mixer.
  const fff::FFKind mixers[] = {fff::FFKind::ff, fff::FFKind::leaf_fff, fff::FFKind::neuron_fff};
  for (fff::FFKind mixer : mixers) {
    fff::LmConfig c;
    c.dim = 2, c.layers = 1, c.window = 2, c.mixer = mixer;
    c.width = 4, c.leaf_width = 2, c.trees = 1, c.depth = 1;
    fff::LmTrainOptions o;
    o.steps = 3;
    fff::LmTrainer tr(fff::make_lm(c, rng), o);
    tr.step = 1;
    const fs::path p =
        out / "lm_checkpoint" / (std::string(fff::ff_kind_name(mixer)) + ".safetensors");
    fs::create_directories(p.parent_path());
    fff::save_lm_checkpoint(p.string(), tr);
  }

  // BERT files: original BERT (dense, leaf FFF) with a vocabulary and sentence settings, and a
  // crammed one with neuron FFF and none.
  for (int variant = 0; variant < 3; ++variant) {
    fff::BertConfig c;
    c.arch = variant < 2 ? fff::BertArch::bert : fff::BertArch::crammed;
    c.hidden = 4, c.layers = 1, c.heads = 2, c.vocab = 8, c.max_seq = 6;
    c.ff.act = fff::Activation::gelu;
    if (variant == 0) c.ff.kind = fff::FFKind::ff, c.ff.width = 3, c.ff.output_bias = true;
    if (variant == 1) c.ff.kind = fff::FFKind::leaf_fff, c.ff.depth = 1, c.ff.leaf_width = 2;
    if (variant == 2)
      c.ff.kind = fff::FFKind::neuron_fff, c.ff.depth = 1, c.ff.trees = 1, c.ff.output_bias = false;
    fff::BertModel m = fff::make_random_bert(c, 11 + variant);
    if (variant < 2) {
      m.vocab_text = "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nthe\ncapital\n##s";
      m.normalize_embeddings = variant == 0;
      m.sentence_max_len = 5;
    }
    const fs::path p = out / "bert" / ("bert-" + std::to_string(variant) + ".safetensors");
    fs::create_directories(p.parent_path());
    fff::save_bert(m, p.string());
  }

  // Every model file is also a safetensors seed.
  for (const char* kind : {"classifier", "lm_checkpoint", "bert"})
    for (const auto& e : fs::directory_iterator(out / kind))
      write_all(out / "safetensors" / (std::string(kind) + "-" + e.path().filename().string()),
                read_all(e.path()));

  // IDX pairs: images (n, h, w) and (n, features), raw and gzipped, with their labels.
  const std::string images3 = idx({3, 2, 2}, 0), images2 = idx({2, 3}, 5), labels3 = idx({3}, 1),
                    labels2 = idx({2}, 7);
  write_all(out / "idx" / "raw-3d", idx_pair(images3, labels3));
  write_all(out / "idx" / "raw-2d", idx_pair(images2, labels2));
  write_all(out / "idx" / "gzip", idx_pair(gzip(images3), gzip(labels3)));
  write_all(out / "idx" / "mismatch", idx_pair(images2, labels3));

  // CIFAR-10: two records.
  std::string cifar;
  for (int r = 0; r < 2; ++r) {
    cifar += static_cast<char>(r * 9);
    for (int i = 0; i < 3072; ++i) cifar += static_cast<char>((i * 7 + r) & 0xFF);
  }
  write_all(out / "cifar" / "two-records", cifar);

  // Vocabularies and texts.
  write_all(out / "vocab" / "small.txt",
            "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nhello\n##ing\nw\n##ö\n");
  write_all(out / "vocab" / "crlf.txt", "[UNK]\r\n[CLS]\r\n[SEP]\r\n東\r\n,\r\n");
  const char* texts[] = {"\x01The capital of France is Paris.", "\x00unaffable cafés, naïve!",
                         "\x03\xe6\x9d\xb1\xe4\xba\xac [MASK] [UNK]hello",
                         "\x05\xc3\x28 invalid \xff utf-8\x00",
                         "\x06   \t\n\r\xe2\x80\x8b zero\xe2\x80\x8bwidth"};
  for (size_t i = 0; i < std::size(texts); ++i) {
    const std::string t(texts[i], std::char_traits<char>::length(texts[i] + 1) + 1);
    write_all(out / "tokenize" / ("text-" + std::to_string(i)), t);
    write_all(out / "text" / ("text-" + std::to_string(i)), "\x19" + t + t + t);
  }
  std::printf("seeds written under %s\n", out.c_str());
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "make_seeds: %s\n", e.what());
  return 1;
}
