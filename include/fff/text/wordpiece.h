// BERT WordPiece tokenizer: vocab.txt loading, BERT's basic (Unicode) tokenization, greedy
// longest-match-first WordPiece, and decoding. Its ids are those of Hugging Face's fast tokenizer
// (the `tokenizers` BertNormalizer + BertPreTokenizer + WordPiece of a tokenizer.json), which
// differs from the slow Python BertTokenizer in a few corners: no final sigma, unassigned code
// points kept, the CJK range the fast one uses, and character classes as of Unicode 8.0
// (tests/reference/test_wordpiece_hf.py).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "fff/core/common.h"

namespace fff {

struct WordPieceTokenizer {
  std::vector<std::string> tokens;               // id -> token
  std::unordered_map<std::string, int32_t> ids;  // token -> id
  std::string source;                            // vocabulary file, named in error messages
  bool lowercase = true;  // lower-case (Unicode, code point by code point) before splitting
  // NFD then drop nonspacing marks (Mn). Applied whenever set, like HuggingFace's explicit
  // strip_accents; make_wordpiece sets it equal to `lowercase`, as BERT does by default.
  bool strip_accents = true;
  int64_t max_chars_per_word = 100;  // longer words (in code points) become [UNK]
  // -1 when the vocabulary lacks the token.
  int32_t unk_id = -1, cls_id = -1, sep_id = -1, mask_id = -1, pad_id = -1;

  int32_t id(std::string_view token) const;    // -1 if absent
  const std::string& token(int32_t id) const;  // throws fff::Error if out of range
};

// Builds a tokenizer from vocab.txt content: one token per line (id = 0-based line number),
// "\n" or "\r\n" line ends, the final newline optional. `source` names the file in error
// messages. Throws fff::Error on an empty vocabulary, a duplicate token (naming its line) or a
// vocabulary without [UNK].
WordPieceTokenizer make_wordpiece(const std::string& vocab_text, const std::string& source,
                                  bool lowercase = true);

// Reads vocab.txt from `vocab_path`; a missing or unreadable file throws fff::Error naming it.
WordPieceTokenizer load_wordpiece(const std::string& vocab_path, bool lowercase = true);

// BERT's basic tokenization (everything before WordPiece): special tokens of the vocabulary
// ([UNK] [CLS] [SEP] [MASK] [PAD], exact case) kept whole; invalid UTF-8, NUL, U+FFFD and
// control/format/private-use characters dropped; CJK ideographs and punctuation split off one per
// token; lower-casing and accent stripping as configured.
std::vector<std::string> basic_tokenize(const WordPieceTokenizer& t, std::string_view text);

// Token ids of `text`, without [CLS]/[SEP]. A word with no complete WordPiece split (or longer
// than max_chars_per_word) becomes a single [UNK].
std::vector<int32_t> wordpiece_encode(const WordPieceTokenizer& t, std::string_view text);

// [CLS] ids [SEP], with ids of the text dropped from the end so that the total length is at most
// max_len. truncated (optional) tells whether any were dropped. Throws fff::Error if
// max_len < 2 or the vocabulary lacks [CLS] or [SEP].
std::vector<int32_t> wordpiece_encode_for_model(const WordPieceTokenizer& t, std::string_view text,
                                                int64_t max_len, bool* truncated = nullptr);

// Tokens joined by spaces, "##" continuation pieces glued to the previous token, [PAD], [CLS]
// and [SEP] skipped. Throws fff::Error on an id outside the vocabulary.
std::string wordpiece_decode(const WordPieceTokenizer& t, const std::vector<int32_t>& ids);

}  // namespace fff
