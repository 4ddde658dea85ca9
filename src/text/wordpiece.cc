// BERT WordPiece tokenizer: vocabulary loading, basic tokenization, WordPiece and decoding.
#include "fff/text/wordpiece.h"

#include <utf8proc.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>

namespace fff {

namespace {

struct SpecialToken {
  std::string_view text;
  int32_t WordPieceTokenizer::*id;
};

// None is a prefix of another, so the first match at a position is the only one.
constexpr std::array<SpecialToken, 5> kSpecialTokens = {{
    {"[UNK]", &WordPieceTokenizer::unk_id},
    {"[CLS]", &WordPieceTokenizer::cls_id},
    {"[SEP]", &WordPieceTokenizer::sep_id},
    {"[MASK]", &WordPieceTokenizer::mask_id},
    {"[PAD]", &WordPieceTokenizer::pad_id},
}};

[[noreturn]] void fail(const std::string& source, const std::string& what) {
  throw Error(source + ": " + what);
}

utf8proc_category_t category(int32_t cp) {
  return utf8proc_category(cp);
}

struct CodePointRange {
  int32_t first, last;
};

constexpr CodePointRange kUnicode8Assigned[] = {
#include "unicode8_assigned.inc"
};

bool assigned_in_unicode_8(int32_t cp) {
  const auto* end = std::end(kUnicode8Assigned);
  const auto* it = std::upper_bound(std::begin(kUnicode8Assigned), end, cp,
                                    [](int32_t v, const CodePointRange& r) { return v < r.first; });
  return it != std::begin(kUnicode8Assigned) && cp <= (it - 1)->last;
}

// Characters of Unicode 8.0 whose category has changed since in a way that matters here, with
// their 8.0 category.
struct OldCategory {
  int32_t cp;
  utf8proc_category_t category;
};
constexpr OldCategory kUnicode8Categories[] = {
    {0x1734, UTF8PROC_CATEGORY_MN},   // HANUNOO SIGN PAMUDPOD: Mc since 14.0
    {0x166D, UTF8PROC_CATEGORY_PO},   // CANADIAN SYLLABICS CHI SIGN: So since 12.0
    {0x1885, UTF8PROC_CATEGORY_LO},   // MONGOLIAN LETTER ALI GALI BALUDA: Mn since 9.0
    {0x1886, UTF8PROC_CATEGORY_LO},   // MONGOLIAN LETTER ALI GALI THREE BALUDA: Mn since 9.0
    {0xA9BD, UTF8PROC_CATEGORY_MC},   // JAVANESE CONSONANT SIGN KERET: Mn since 12.0
    {0x111C9, UTF8PROC_CATEGORY_PO},  // SHARADA SANDHI MARK: Mn since 10.0
};

// The category Hugging Face's fast tokenizer sees, for control/format, punctuation and
// nonspacing marks: its tables (the unicode_categories crate) are Unicode 8.0's, so a character
// assigned since is unassigned there (an ordinary letter to BERT: U+2E43 DASH WITH LEFT UPTURN is
// not punctuation, U+08E2 DISPUTED END OF AYAH not dropped), and the few whose category has
// changed since have their old one. tests/reference/test_wordpiece_hf.py checks every code point.
utf8proc_category_t hf_category(int32_t cp) {
  const auto c = category(cp);
  if (cp < 0x378) return c;  // the first code point assigned after 8.0
  if (c != UTF8PROC_CATEGORY_CN && !assigned_in_unicode_8(cp)) return UTF8PROC_CATEGORY_CN;
  for (const auto& old : kUnicode8Categories)
    if (old.cp == cp) return old.category;
  return c;
}

// Unicode's White_Space (Rust's char::is_whitespace in Hugging Face's tokenizer, also what
// Python's str.split() splits on): space separators and the line and paragraph separators.
bool is_whitespace(int32_t cp) {
  if (cp == ' ' || cp == '\t' || cp == '\n' || cp == '\r') return true;
  const auto c = category(cp);
  return c == UTF8PROC_CATEGORY_ZS || c == UTF8PROC_CATEGORY_ZL || c == UTF8PROC_CATEGORY_ZP;
}

// BERT drops control, format, surrogate and private-use characters, NUL and the replacement
// character. Whitespace is tested first, so \t \n \r survive as spaces. Unassigned code points
// (Cn) stay, as in Hugging Face's fast tokenizer, whose "other" category leaves them out (its
// Python BertTokenizer drops them): they end up in an [UNK] word.
bool is_dropped(int32_t cp) {
  if (cp == 0 || cp == 0xFFFD) return true;
  const auto c = hf_category(cp);
  return c == UTF8PROC_CATEGORY_CC || c == UTF8PROC_CATEGORY_CF || c == UTF8PROC_CATEGORY_CS ||
         c == UTF8PROC_CATEGORY_CO;
}

// The CJK Unified Ideographs blocks BERT singles out; Hangul, kana etc. are not included. The
// fifth range starts at U+2B920 as in Hugging Face's fast tokenizer (BERT's Python code has
// U+2B820), so the first 256 ideographs of Extension E stay inside words, as there.
bool is_cjk(int32_t cp) {
  return (cp >= 0x4E00 && cp <= 0x9FFF) || (cp >= 0x3400 && cp <= 0x4DBF) ||
         (cp >= 0x20000 && cp <= 0x2A6DF) || (cp >= 0x2A700 && cp <= 0x2B73F) ||
         (cp >= 0x2B740 && cp <= 0x2B81F) || (cp >= 0x2B920 && cp <= 0x2CEAF) ||
         (cp >= 0xF900 && cp <= 0xFAFF) || (cp >= 0x2F800 && cp <= 0x2FA1F);
}

// All non-alphanumeric printable ASCII counts, including symbols such as $ + < = > ^ ` | ~.
bool is_punctuation(int32_t cp) {
  if ((cp >= 33 && cp <= 47) || (cp >= 58 && cp <= 64) || (cp >= 91 && cp <= 96) ||
      (cp >= 123 && cp <= 126))
    return true;
  const auto c = hf_category(cp);
  return c >= UTF8PROC_CATEGORY_PC && c <= UTF8PROC_CATEGORY_PO;
}

// Lower-cases one code point at a time, as Hugging Face's fast tokenizer does (Rust's
// char::to_lowercase): a capital sigma always becomes σ, never the final ς that Python's
// str.lower() (and so the slow BertTokenizer) writes at the end of a word.
void lower_case(const std::vector<int32_t>& word, std::vector<int32_t>& out) {
  out.clear();
  for (const int32_t cp : word) {
    if (cp == 0x0130) {
      // The only full lower-case mapping longer than one code point: dotted capital I.
      out.push_back('i');
      out.push_back(0x0307);
    } else {
      out.push_back(utf8proc_tolower(cp));
    }
  }
}

int combining_class(int32_t cp) {
  return utf8proc_get_property(cp)->combining_class;
}

// NFD, then drop nonspacing marks. Marks are reordered before dropping, as NFD does, so that a
// run split only by a dropped mark is still ordered as one run.
void strip_accents(const std::vector<int32_t>& word, std::vector<int32_t>& out) {
  out.clear();
  std::array<utf8proc_int32_t, 8> buf;
  for (const int32_t cp : word) {
    const auto n = utf8proc_decompose_char(cp, buf.data(), buf.size(), UTF8PROC_DECOMPOSE, nullptr);
    // Canonical decompositions are at most 4 code points; n < 0 cannot happen for a valid cp.
    if (n < 0 || n > static_cast<utf8proc_ssize_t>(buf.size())) {
      out.push_back(cp);
      continue;
    }
    out.insert(out.end(), buf.begin(), buf.begin() + n);
  }
  for (size_t i = 0; i < out.size();) {
    if (combining_class(out[i]) == 0) {
      ++i;
      continue;
    }
    size_t end = i + 1;
    while (end < out.size() && combining_class(out[end]) != 0) ++end;
    std::stable_sort(out.begin() + static_cast<std::ptrdiff_t>(i),
                     out.begin() + static_cast<std::ptrdiff_t>(end),
                     [](int32_t a, int32_t b) { return combining_class(a) < combining_class(b); });
    i = end;
  }
  std::erase_if(out, [](int32_t cp) { return hf_category(cp) == UTF8PROC_CATEGORY_MN; });
}

void append_utf8(std::string& out, int32_t cp) {
  utf8proc_uint8_t buf[4];
  const auto n = utf8proc_encode_char(cp, buf);
  out.append(reinterpret_cast<const char*>(buf), static_cast<size_t>(n));
}

// Buffers reused across words so that tokenizing allocates per token at most.
struct Scratch {
  std::vector<int32_t> word, lowered, stripped;
  std::string piece;
};

// Strips accents, lower-cases and splits one whitespace-delimited word on punctuation, calling
// emit(token, is_special). Accents go first, as in Hugging Face's BertNormalizer.
template <class Emit>
void finish_word(const WordPieceTokenizer& t, Scratch& s, Emit& emit) {
  const std::vector<int32_t>* cps = &s.word;
  if (t.strip_accents) {
    strip_accents(*cps, s.stripped);
    cps = &s.stripped;
  }
  if (t.lowercase) {
    lower_case(*cps, s.lowered);
    cps = &s.lowered;
  }
  s.piece.clear();
  for (const int32_t cp : *cps) {
    if (!is_punctuation(cp)) {
      append_utf8(s.piece, cp);
      continue;
    }
    if (!s.piece.empty()) emit(std::string_view(s.piece), false);
    s.piece.clear();
    append_utf8(s.piece, cp);
    emit(std::string_view(s.piece), false);
    s.piece.clear();
  }
  if (!s.piece.empty()) emit(std::string_view(s.piece), false);
}

// Basic tokenization of text that contains no special token.
template <class Emit>
void split_plain(const WordPieceTokenizer& t, std::string_view text, Scratch& s, Emit& emit) {
  auto flush = [&] {
    if (s.word.empty()) return;
    finish_word(t, s, emit);
    s.word.clear();
  };
  const auto* p = reinterpret_cast<const utf8proc_uint8_t*>(text.data());
  const auto n = static_cast<utf8proc_ssize_t>(text.size());
  for (utf8proc_ssize_t i = 0; i < n;) {
    utf8proc_int32_t cp;
    const auto len = utf8proc_iterate(p + i, n - i, &cp);
    if (len <= 0) {
      ++i;  // an invalid byte reads as U+FFFD, which BERT drops
      continue;
    }
    i += len;
    if (is_whitespace(cp)) {
      flush();
    } else if (is_dropped(cp)) {
      continue;
    } else if (is_cjk(cp)) {
      flush();
      s.word.push_back(cp);
      flush();  // still lower-cased and normalized: F900-FAFF decompose to other ideographs
    } else {
      s.word.push_back(cp);
    }
  }
  flush();
}

// Calls emit(token, is_special) for each basic token of `text`, in order. Special tokens are
// found on the raw text first, as HuggingFace does before any cleaning.
template <class Emit>
void for_each_basic_token(const WordPieceTokenizer& t, std::string_view text, Emit&& emit) {
  Scratch s;
  size_t plain_begin = 0;
  for (size_t pos = text.find('['); pos != std::string_view::npos; pos = text.find('[', pos)) {
    const SpecialToken* match = nullptr;
    for (const auto& special : kSpecialTokens)
      if (t.*special.id >= 0 && text.substr(pos).starts_with(special.text)) {
        match = &special;
        break;
      }
    if (match == nullptr) {
      ++pos;
      continue;
    }
    split_plain(t, text.substr(plain_begin, pos - plain_begin), s, emit);
    emit(match->text, true);
    pos += match->text.size();
    plain_begin = pos;
  }
  split_plain(t, text.substr(plain_begin), s, emit);
}

// Greedy longest-match-first over code points; any unmatched remainder makes the whole word
// [UNK]. `offsets` and `key` are caller buffers so that no lookup allocates.
void wordpiece_word(const WordPieceTokenizer& t, std::string_view word,
                    std::vector<size_t>& offsets, std::string& key, std::vector<int32_t>& out) {
  offsets.clear();
  for (size_t i = 0; i < word.size(); ++i)
    if ((static_cast<unsigned char>(word[i]) & 0xC0) != 0x80) offsets.push_back(i);
  const size_t n = offsets.size();
  offsets.push_back(word.size());
  if (static_cast<int64_t>(n) > t.max_chars_per_word) {
    out.push_back(t.unk_id);
    return;
  }
  const size_t out_begin = out.size();
  for (size_t start = 0; start < n;) {
    int32_t found = -1;
    size_t end = n;
    for (; end > start; --end) {
      key.assign(start > 0 ? "##" : "");
      key.append(word.substr(offsets[start], offsets[end] - offsets[start]));
      const auto it = t.ids.find(key);
      if (it != t.ids.end()) {
        found = it->second;
        break;
      }
    }
    if (found < 0) {
      out.resize(out_begin);
      out.push_back(t.unk_id);
      return;
    }
    out.push_back(found);
    start = end;
  }
}

}  // namespace

int32_t WordPieceTokenizer::id(std::string_view token) const {
  const auto it = ids.find(std::string(token));
  return it == ids.end() ? -1 : it->second;
}

const std::string& WordPieceTokenizer::token(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= tokens.size())
    fail(source, "token id " + std::to_string(id) + " is outside the vocabulary of " +
                     std::to_string(tokens.size()) + " tokens");
  return tokens[static_cast<size_t>(id)];
}

WordPieceTokenizer make_wordpiece(const std::string& vocab_text, const std::string& source,
                                  bool lowercase) {
  WordPieceTokenizer t;
  t.source = source;
  t.lowercase = lowercase;
  t.strip_accents = lowercase;
  std::string_view rest = vocab_text;
  while (!rest.empty()) {
    const size_t nl = rest.find('\n');
    std::string_view line = rest.substr(0, nl);
    rest = nl == std::string_view::npos ? std::string_view() : rest.substr(nl + 1);
    if (line.ends_with('\r')) line.remove_suffix(1);
    if (t.tokens.size() >= static_cast<size_t>(std::numeric_limits<int32_t>::max()))
      fail(source, "vocabulary has more than 2^31 - 1 tokens");
    const auto id = static_cast<int32_t>(t.tokens.size());
    const auto [it, inserted] = t.ids.emplace(std::string(line), id);
    if (!inserted)
      fail(source, "line " + std::to_string(id + 1) + ": duplicate token \"" + std::string(line) +
                       "\" (first on line " + std::to_string(it->second + 1) + ")");
    t.tokens.emplace_back(line);
  }
  if (t.tokens.empty()) fail(source, "vocabulary is empty");
  for (const auto& special : kSpecialTokens) t.*special.id = t.id(special.text);
  if (t.unk_id < 0) fail(source, "vocabulary has no [UNK] token");
  return t;
}

WordPieceTokenizer load_wordpiece(const std::string& vocab_path, bool lowercase) {
  // A directory opens as a stream whose first read throws (basic_filebuf::underflow): say so.
  std::error_code ec;
  if (std::filesystem::is_directory(vocab_path, ec))
    fail(vocab_path, "is a directory, expected a vocabulary file (vocab.txt)");
  std::ifstream in(vocab_path, std::ios::binary);
  if (!in) fail(vocab_path, std::string("cannot open vocabulary file: ") + std::strerror(errno));
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) fail(vocab_path, "cannot read vocabulary file");
  return make_wordpiece(text, vocab_path, lowercase);
}

std::vector<std::string> basic_tokenize(const WordPieceTokenizer& t, std::string_view text) {
  std::vector<std::string> out;
  for_each_basic_token(t, text, [&](std::string_view token, bool) { out.emplace_back(token); });
  return out;
}

std::vector<int32_t> wordpiece_encode(const WordPieceTokenizer& t, std::string_view text) {
  if (t.unk_id < 0) fail(t.source, "vocabulary has no [UNK] token");
  std::vector<int32_t> out;
  std::vector<size_t> offsets;
  std::string key;
  for_each_basic_token(t, text, [&](std::string_view token, bool special) {
    if (special)
      out.push_back(t.id(token));
    else
      wordpiece_word(t, token, offsets, key, out);
  });
  return out;
}

std::vector<int32_t> wordpiece_encode_for_model(const WordPieceTokenizer& t, std::string_view text,
                                                int64_t max_len, bool* truncated) {
  if (max_len < 2)
    fail(t.source, "max_len " + std::to_string(max_len) + " leaves no room for [CLS] and [SEP]");
  if (t.cls_id < 0 || t.sep_id < 0) fail(t.source, "vocabulary lacks [CLS] or [SEP]");
  const std::vector<int32_t> body = wordpiece_encode(t, text);
  const size_t keep = std::min(body.size(), static_cast<size_t>(max_len - 2));
  if (truncated) *truncated = keep < body.size();
  std::vector<int32_t> out;
  out.reserve(keep + 2);
  out.push_back(t.cls_id);
  out.insert(out.end(), body.begin(), body.begin() + static_cast<std::ptrdiff_t>(keep));
  out.push_back(t.sep_id);
  return out;
}

std::string wordpiece_decode(const WordPieceTokenizer& t, const std::vector<int32_t>& ids) {
  std::string out;
  for (const int32_t id : ids) {
    const std::string& token = t.token(id);
    if (id == t.pad_id || id == t.cls_id || id == t.sep_id) continue;
    // Like HuggingFace's join-then-replace(" ##", ""): a leading "##" piece keeps its prefix.
    if (!out.empty() && token.starts_with("##")) {
      out.append(token, 2);
    } else {
      if (!out.empty()) out += ' ';
      out += token;
    }
  }
  return out;
}

}  // namespace fff
