// fff.WordPiece: the C++ BERT WordPiece tokenizer (fff/text/wordpiece.h) from Python, so that its
// ids can be compared with Hugging Face's and fed to fff's BERT models. Strings cross as UTF-8.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <vector>

#include "fff/text/wordpiece.h"

namespace py = pybind11;

namespace {

// No truncation: the length limit is the largest possible.
constexpr int64_t kNoLimit = std::numeric_limits<int64_t>::max();

fff::WordPieceTokenizer load(const std::string& vocab_path, bool lowercase,
                             std::optional<bool> strip_accents, int64_t max_chars_per_word) {
  if (max_chars_per_word < 1)
    throw fff::Error(vocab_path + ": max_chars_per_word = " + std::to_string(max_chars_per_word) +
                     ": must be at least 1");
  fff::WordPieceTokenizer t = fff::load_wordpiece(vocab_path, lowercase);
  if (strip_accents) t.strip_accents = *strip_accents;
  t.max_chars_per_word = max_chars_per_word;
  return t;
}

std::vector<int32_t> encode(const fff::WordPieceTokenizer& t, std::string_view text,
                            bool add_special_tokens) {
  return add_special_tokens ? fff::wordpiece_encode_for_model(t, text, kNoLimit)
                            : fff::wordpiece_encode(t, text);
}

// A special token's id, or None when the vocabulary lacks it.
template <int32_t fff::WordPieceTokenizer::*Field>
std::optional<int32_t> special_id(const fff::WordPieceTokenizer& t) {
  return t.*Field < 0 ? std::nullopt : std::optional<int32_t>(t.*Field);
}

}  // namespace

void bind_text(py::module_& m) {
  py::class_<fff::WordPieceTokenizer>(
      m, "WordPiece",
      "BERT's WordPiece tokenizer over a vocab.txt (one token per line, id = line number): "
      "BERT's basic tokenization (cleaning, CJK and punctuation splitting, lower-casing, accent "
      "stripping) then greedy longest-match-first WordPiece, as Hugging Face's BertTokenizer.")
      .def(py::init(&load), py::arg("vocab_path"), py::arg("lowercase") = true,
           py::arg("strip_accents") = py::none(), py::arg("max_chars_per_word") = 100,
           "Reads vocab_path. strip_accents: None follows lowercase (BERT's default). Words "
           "longer than max_chars_per_word code points become [UNK]. Raises fff.Error naming the "
           "file if it is missing, empty, has a duplicate token or lacks [UNK].")
      .def_static("from_file", &load, py::arg("vocab_path"), py::arg("lowercase") = true,
                  py::arg("strip_accents") = py::none(), py::arg("max_chars_per_word") = 100,
                  "Same as WordPiece(vocab_path, ...).")
      .def(
          "encode",
          [](const fff::WordPieceTokenizer& t, const std::string& text, bool add_special_tokens) {
            return encode(t, text, add_special_tokens);
          },
          py::arg("text"), py::arg("add_special_tokens") = true,
          "Token ids of text; with add_special_tokens, [CLS] ids [SEP]. No truncation.")
      .def(
          "encode_batch",
          [](const fff::WordPieceTokenizer& t, const std::vector<std::string>& texts,
             bool add_special_tokens) {
            std::vector<std::vector<int32_t>> out(texts.size());
            py::gil_scoped_release release;
            for (size_t i = 0; i < texts.size(); ++i)
              out[i] = encode(t, texts[i], add_special_tokens);
            return out;
          },
          py::arg("texts"), py::arg("add_special_tokens") = true,
          "encode() of each text (the GIL is released while tokenizing).")
      .def(
          "tokens",
          [](const fff::WordPieceTokenizer& t, const std::string& text, bool add_special_tokens) {
            std::vector<std::string> out;
            for (const int32_t id : encode(t, text, add_special_tokens)) out.push_back(t.token(id));
            return out;
          },
          py::arg("text"), py::arg("add_special_tokens") = false,
          "The token strings of encode(text) (continuation pieces start with '##').")
      .def("decode", &fff::wordpiece_decode, py::arg("ids"),
           "Tokens joined by spaces, '##' pieces glued on, [PAD] [CLS] [SEP] skipped.")
      .def(
          "token_to_id",
          [](const fff::WordPieceTokenizer& t, const std::string& token) -> std::optional<int32_t> {
            const int32_t id = t.id(token);
            return id < 0 ? std::nullopt : std::optional<int32_t>(id);
          },
          py::arg("token"), "The id of a vocabulary token, or None.")
      .def("id_to_token", &fff::WordPieceTokenizer::token, py::arg("id"),
           "The token of an id; fff.Error outside the vocabulary.")
      .def_property_readonly("vocab_size",
                             [](const fff::WordPieceTokenizer& t) { return t.tokens.size(); })
      .def_readonly("path", &fff::WordPieceTokenizer::source)
      .def_readonly("lowercase", &fff::WordPieceTokenizer::lowercase)
      .def_readonly("strip_accents", &fff::WordPieceTokenizer::strip_accents)
      .def_readonly("max_chars_per_word", &fff::WordPieceTokenizer::max_chars_per_word)
      .def_property_readonly("unk_id", special_id<&fff::WordPieceTokenizer::unk_id>)
      .def_property_readonly("cls_id", special_id<&fff::WordPieceTokenizer::cls_id>)
      .def_property_readonly("sep_id", special_id<&fff::WordPieceTokenizer::sep_id>)
      .def_property_readonly("mask_id", special_id<&fff::WordPieceTokenizer::mask_id>)
      .def_property_readonly("pad_id", special_id<&fff::WordPieceTokenizer::pad_id>)
      .def("__len__", [](const fff::WordPieceTokenizer& t) { return t.tokens.size(); })
      .def("__repr__", [](const fff::WordPieceTokenizer& t) {
        return "fff.WordPiece('" + t.source + "', vocab_size=" + std::to_string(t.tokens.size()) +
               ", lowercase=" + (t.lowercase ? "True" : "False") +
               ", strip_accents=" + (t.strip_accents ? "True" : "False") + ")";
      });
}
