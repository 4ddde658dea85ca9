// Tests for the BERT WordPiece tokenizer: vocabulary loading, basic tokenization edge cases
// (case, accents, punctuation, special tokens, Unicode cleaning), WordPiece and decoding.
#include <gtest/gtest.h>

#include <fstream>
#include <string>
#include <vector>

#include "fff/text/wordpiece.h"
#include "temp_dir.h"

namespace {

using fff::WordPieceTokenizer;
using Ids = std::vector<int32_t>;
using Strings = std::vector<std::string>;

// Ids are line numbers, written next to each token so expected vectors can be read off.
const char* const kVocab =
    "[PAD]\n"     // 0
    "[UNK]\n"     // 1
    "[CLS]\n"     // 2
    "[SEP]\n"     // 3
    "[MASK]\n"    // 4
    "the\n"       // 5
    "quick\n"     // 6
    "brown\n"     // 7
    "fox\n"       // 8
    "hello\n"     // 9
    "world\n"     // 10
    "naive\n"     // 11
    "un\n"        // 12
    "##aff\n"     // 13
    "##able\n"    // 14
    "wait\n"      // 15
    ".\n"         // 16
    "!\n"         // 17
    ",\n"         // 18
    ";\n"         // 19
    "a\n"         // 20
    "b\n"         // 21
    "c\n"         // 22
    "don\n"       // 23
    "'\n"         // 24
    "t\n"         // 25
    "-\n"         // 26
    "well\n"      // 27
    "known\n"     // 28
    "paris\n"     // 29
    "is\n"        // 30
    "capital\n"   // 31
    "of\n"        // 32
    "france\n"    // 33
    "[\n"         // 34
    "]\n"         // 35
    "mask\n"      // 36
    "\u4e2d\n"    // 37 中
    "\u56fd\n"    // 38 国
    "x\n"         // 39
    "##x\n"       // 40
    "Hello\n"     // 41
    "\u00e9\n"    // 42 é
    "##\u00e9\n"  // 43 ##é
    "##c\n";      // 44

WordPieceTokenizer vocab(bool lowercase = true) {
  return fff::make_wordpiece(kVocab, "test_vocab.txt", lowercase);
}

std::string repeat(const std::string& s, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out += s;
  return out;
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << path;
}

std::string error_of(const auto& f) {
  try {
    f();
  } catch (const fff::Error& e) {
    return e.what();
  }
  return "(no fff::Error thrown)";
}

TEST(WordPieceVocab, SpecialIdsAndLookup) {
  const auto t = vocab();
  EXPECT_EQ(t.tokens.size(), 45u);
  EXPECT_EQ(t.pad_id, 0);
  EXPECT_EQ(t.unk_id, 1);
  EXPECT_EQ(t.cls_id, 2);
  EXPECT_EQ(t.sep_id, 3);
  EXPECT_EQ(t.mask_id, 4);
  EXPECT_EQ(t.id("##able"), 14);
  EXPECT_EQ(t.id("absent"), -1);
  EXPECT_EQ(t.token(9), "hello");
  EXPECT_TRUE(t.lowercase);
  EXPECT_TRUE(t.strip_accents);
  EXPECT_THROW(t.token(45), fff::Error);
  EXPECT_THROW(t.token(-1), fff::Error);
  const auto cased = vocab(false);
  EXPECT_FALSE(cased.lowercase);
  EXPECT_FALSE(cased.strip_accents);
}

TEST(WordPieceVocab, FinalNewlineOptionalAndMissingSpecials) {
  const auto a = fff::make_wordpiece("[UNK]\nx", "v", true);
  const auto b = fff::make_wordpiece("[UNK]\nx\n", "v", true);
  EXPECT_EQ(a.tokens, (Strings{"[UNK]", "x"}));
  EXPECT_EQ(b.tokens, (Strings{"[UNK]", "x"}));
  EXPECT_EQ(a.cls_id, -1);
  EXPECT_EQ(a.sep_id, -1);
  EXPECT_EQ(a.mask_id, -1);
  EXPECT_EQ(a.pad_id, -1);
}

TEST(WordPieceVocab, LoadCrLfFile) {
  TempDir dir;
  const std::string path = dir.file("vocab.txt");
  write_file(path, "[PAD]\r\n[UNK]\r\n[CLS]\r\n[SEP]\r\nhello\r\nworld\r\n");
  const auto t = fff::load_wordpiece(path);
  EXPECT_EQ(t.tokens, (Strings{"[PAD]", "[UNK]", "[CLS]", "[SEP]", "hello", "world"}));
  EXPECT_EQ(t.id("world"), 5);
  EXPECT_EQ(fff::wordpiece_encode_for_model(t, "Hello, World", 16), (Ids{2, 4, 1, 5, 3}));
}

TEST(WordPieceVocab, Errors) {
  TempDir dir;
  const std::string missing = dir.file("no_such_vocab.txt");
  const std::string e1 = error_of([&] { fff::load_wordpiece(missing); });
  EXPECT_NE(e1.find(missing), std::string::npos) << e1;

  const std::string dup_path = dir.file("dup.txt");
  write_file(dup_path, "[UNK]\nab\ncd\nab\n");
  const std::string e2 = error_of([&] { fff::load_wordpiece(dup_path); });
  EXPECT_NE(e2.find(dup_path), std::string::npos) << e2;
  EXPECT_NE(e2.find("line 4"), std::string::npos) << e2;
  EXPECT_NE(e2.find("duplicate"), std::string::npos) << e2;

  const std::string e3 = error_of([] { fff::make_wordpiece("a\nb\n", "nounk.txt"); });
  EXPECT_NE(e3.find("nounk.txt"), std::string::npos) << e3;
  EXPECT_NE(e3.find("[UNK]"), std::string::npos) << e3;

  const std::string e4 = error_of([] { fff::make_wordpiece("", "empty.txt"); });
  EXPECT_NE(e4.find("empty.txt"), std::string::npos) << e4;
  EXPECT_NE(e4.find("empty"), std::string::npos) << e4;
}

TEST(WordPieceBasic, LowerCaseAndAccents) {
  const auto t = vocab();
  EXPECT_EQ(fff::basic_tokenize(t, "The QUICK Brown FOX"),
            (Strings{"the", "quick", "brown", "fox"}));
  EXPECT_EQ(fff::wordpiece_encode(t, "The QUICK Brown FOX"), (Ids{5, 6, 7, 8}));
  EXPECT_EQ(fff::basic_tokenize(t, "H\u00e9llo W\u00f6rld"), (Strings{"hello", "world"}));
  EXPECT_EQ(fff::wordpiece_encode(t, "H\u00e9llo W\u00f6rld"), (Ids{9, 10}));
  EXPECT_EQ(fff::wordpiece_encode(t, "na\u00efve"), (Ids{11}));
  // Already decomposed input: e + COMBINING ACUTE ACCENT.
  EXPECT_EQ(fff::basic_tokenize(t, "He\u0301llo"), (Strings{"hello"}));
}

TEST(WordPieceBasic, CasedKeepsCaseAndAccents) {
  const auto t = vocab(false);
  EXPECT_EQ(fff::basic_tokenize(t, "H\u00e9llo W\u00f6rld"), (Strings{"H\u00e9llo", "W\u00f6rld"}));
  EXPECT_EQ(fff::wordpiece_encode(t, "Hello hello H\u00e9llo"), (Ids{41, 9, 1}));
  EXPECT_EQ(fff::wordpiece_encode(t, "The"), (Ids{1}));
}

TEST(WordPieceBasic, StripAccentsOnlyDropsNonspacingMarks) {
  const auto t = vocab();
  // Devanagari: the vowel sign I (U+093F) is Mc and stays; the anusvara (U+0902) is Mn and goes.
  EXPECT_EQ(fff::basic_tokenize(t, "\u0939\u093f\u0902"), (Strings{"\u0939\u093f"}));
  // Hangul syllables decompose to jamo under NFD, as in uncased multilingual BERT.
  EXPECT_EQ(fff::basic_tokenize(t, "\ud55c"), (Strings{"\u1112\u1161\u11ab"}));
  auto no_strip = vocab();
  no_strip.strip_accents = false;
  EXPECT_EQ(fff::basic_tokenize(no_strip, "H\u00c9LLO"), (Strings{"h\u00e9llo"}));
}

TEST(WordPieceBasic, LowerCaseSpecialCases) {
  const auto t = vocab();
  // Code point by code point, as Hugging Face's fast tokenizer: capital sigma is always σ, also
  // at the end of a word, where Python's str.lower() would write final ς.
  EXPECT_EQ(fff::basic_tokenize(t, "\u039f\u0394\u039f\u03a3 \u03a3\u0391 \u039f\u03a3."),
            (Strings{"\u03bf\u03b4\u03bf\u03c3", "\u03c3\u03b1", "\u03bf\u03c3", "."}));
  // A final sigma written as such stays.
  EXPECT_EQ(fff::basic_tokenize(t, "\u03bf\u03b4\u03bf\u03c2"),
            (Strings{"\u03bf\u03b4\u03bf\u03c2"}));
  // Dotted capital I: accent stripping (NFD: I + COMBINING DOT ABOVE, then the mark dropped)
  // leaves I, lower-cased to i; without stripping it lower-cases to i + COMBINING DOT ABOVE.
  EXPECT_EQ(fff::basic_tokenize(t, "\u0130"), (Strings{"i"}));
  auto no_strip = vocab();
  no_strip.strip_accents = false;
  EXPECT_EQ(fff::basic_tokenize(no_strip, "\u0130"), (Strings{"i\u0307"}));
}

TEST(WordPieceBasic, UnicodeEightClasses) {
  // Hugging Face's fast tokenizer classifies with Unicode 8.0's tables: characters assigned since
  // are ordinary letters there, neither punctuation nor dropped nor stripped.
  const auto t = vocab();
  EXPECT_EQ(fff::basic_tokenize(t, "a\u2e42b"), (Strings{"a", "\u2e42", "b"}));  // 8.0, Ps
  EXPECT_EQ(fff::basic_tokenize(t, "a\u2e43b"), (Strings{"a\u2e43b"}));          // Pd since 9.0
  EXPECT_EQ(fff::basic_tokenize(t, "a\u200bb"), (Strings{"ab"}));                // 1.1, Cf: dropped
  EXPECT_EQ(fff::basic_tokenize(t, "a\u08e2b"), (Strings{"a\u08e2b"}));          // Cf since 9.0
  EXPECT_EQ(fff::basic_tokenize(t, "a\u0301b"), (Strings{"ab"}));        // 1.1, Mn: stripped
  EXPECT_EQ(fff::basic_tokenize(t, "a\u1abfb"), (Strings{"a\u1abfb"}));  // Mn since 13.0
  // Characters whose category changed after 8.0 keep their 8.0 one.
  EXPECT_EQ(fff::basic_tokenize(t, "a\u1734b"), (Strings{"ab"}));  // Mn in 8.0, now Mc
  EXPECT_EQ(fff::basic_tokenize(t, "a\U000111c9b"), (Strings{"a", "\U000111c9", "b"}));  // Po
  EXPECT_EQ(fff::basic_tokenize(t, "a\u1885b"), (Strings{"a\u1885b"}));  // Lo in 8.0, now Mn
  EXPECT_EQ(fff::basic_tokenize(t, "a\u166db"), (Strings{"a", "\u166d", "b"}));  // Po, now So
}

TEST(WordPieceBasic, Punctuation) {
  const auto t = vocab();
  EXPECT_EQ(fff::basic_tokenize(t, "wait...!!"), (Strings{"wait", ".", ".", ".", "!", "!"}));
  EXPECT_EQ(fff::wordpiece_encode(t, "wait...!!"), (Ids{15, 16, 16, 16, 17, 17}));
  EXPECT_EQ(fff::wordpiece_encode(t, "a,b;c"), (Ids{20, 18, 21, 19, 22}));
  EXPECT_EQ(fff::basic_tokenize(t, "don't"), (Strings{"don", "'", "t"}));
  EXPECT_EQ(fff::wordpiece_encode(t, "don't"), (Ids{23, 24, 25}));
  EXPECT_EQ(fff::wordpiece_encode(t, "well-known"), (Ids{27, 26, 28}));
  // ASCII symbols count as punctuation; non-ASCII symbols (Sc, Sm) do not; Unicode P* does.
  EXPECT_EQ(fff::basic_tokenize(t, "$5+3=8 5\u20ac x\u00d7y"),
            (Strings{"$", "5", "+", "3", "=", "8", "5\u20ac", "x\u00d7y"}));
  EXPECT_EQ(fff::basic_tokenize(t, "\u00abhello\u00bb\u2014world\u00bf"),
            (Strings{"\u00ab", "hello", "\u00bb", "\u2014", "world", "\u00bf"}));
}

TEST(WordPieceEncode, ContinuationPieces) {
  const auto t = vocab();
  EXPECT_EQ(fff::basic_tokenize(t, "unaffable"), (Strings{"unaffable"}));
  EXPECT_EQ(fff::wordpiece_encode(t, "unaffable"), (Ids{12, 13, 14}));
  EXPECT_EQ(fff::wordpiece_encode(t, "zzz"), (Ids{1}));
  // "un" and "##aff" match, then "##z" does not: the whole word is one [UNK], not un ##aff [UNK].
  EXPECT_EQ(fff::wordpiece_encode(t, "the unaffz fox"), (Ids{5, 1, 8}));
  // A continuation piece is never used at the start of a word, nor a whole word mid-word.
  EXPECT_EQ(fff::wordpiece_encode(t, "aff"), (Ids{1}));
  EXPECT_EQ(fff::wordpiece_encode(t, "unun"), (Ids{1}));
}

TEST(WordPieceEncode, MaxCharsPerWord) {
  const auto t = vocab();
  Ids hundred{39};
  hundred.insert(hundred.end(), 99, 40);
  EXPECT_EQ(fff::wordpiece_encode(t, repeat("x", 100)), hundred);
  EXPECT_EQ(fff::wordpiece_encode(t, repeat("x", 101)), (Ids{1}));
  EXPECT_EQ(fff::wordpiece_encode(t, "a " + repeat("x", 101) + " b"), (Ids{20, 1, 21}));
  // The limit counts code points, not bytes: 100 two-byte characters are still within it.
  const auto cased = vocab(false);
  Ids hundred_e{42};
  hundred_e.insert(hundred_e.end(), 99, 43);
  EXPECT_EQ(fff::wordpiece_encode(cased, repeat("\u00e9", 100)), hundred_e);
  EXPECT_EQ(fff::wordpiece_encode(cased, repeat("\u00e9", 101)), (Ids{1}));
  auto short_words = vocab();
  short_words.max_chars_per_word = 3;
  EXPECT_EQ(fff::wordpiece_encode(short_words, "xxx xxxx"), (Ids{39, 40, 40, 1}));
}

TEST(WordPieceEncode, SpecialTokensKeptWhole) {
  const auto t = vocab();
  EXPECT_EQ(fff::basic_tokenize(t, "[MASK]"), (Strings{"[MASK]"}));
  EXPECT_EQ(fff::wordpiece_encode(t, "[MASK]"), (Ids{4}));
  EXPECT_EQ(fff::basic_tokenize(t, "Paris is [MASK]."), (Strings{"paris", "is", "[MASK]", "."}));
  EXPECT_EQ(fff::wordpiece_encode(t, "Paris is [MASK]."), (Ids{29, 30, 4, 16}));
  EXPECT_EQ(fff::wordpiece_encode(t, "The capital of France is [MASK]."),
            (Ids{5, 31, 32, 33, 30, 4, 16}));
  // Lower-case is not special: punctuation then a word.
  EXPECT_EQ(fff::basic_tokenize(t, "[mask]"), (Strings{"[", "mask", "]"}));
  EXPECT_EQ(fff::wordpiece_encode(t, "[mask]"), (Ids{34, 36, 35}));
  EXPECT_EQ(fff::wordpiece_encode(t, "[CLS][SEP]"), (Ids{2, 3}));
  EXPECT_EQ(fff::wordpiece_encode(t, "paris[MASK]is"), (Ids{29, 4, 30}));
  EXPECT_EQ(fff::wordpiece_encode(t, "[UNK] [PAD]"), (Ids{1, 0}));
  EXPECT_EQ(fff::wordpiece_encode(t, "[[MASK]]"), (Ids{34, 4, 35}));
  // Cased tokenizers keep them too.
  EXPECT_EQ(fff::wordpiece_encode(vocab(false), "[CLS]Hello[SEP]"), (Ids{2, 41, 3}));
  // Not in the vocabulary: not special.
  const auto minimal = fff::make_wordpiece("[UNK]\n[\n]\nmask\n", "v");
  EXPECT_EQ(fff::wordpiece_encode(minimal, "[MASK]"), (Ids{1, 3, 2}));
}

TEST(WordPieceEncode, CjkCharactersSplit) {
  const auto t = vocab();
  EXPECT_EQ(fff::basic_tokenize(t, "\u4e2d\u56fd"), (Strings{"\u4e2d", "\u56fd"}));
  EXPECT_EQ(fff::wordpiece_encode(t, "hello\u4e2d\u56fdworld"), (Ids{9, 37, 38, 10}));
  // A CJK compatibility ideograph is normalized by NFD to its unified form.
  EXPECT_EQ(fff::basic_tokenize(t, "a\uf900b"), (Strings{"a", "\u8c48", "b"}));
  // Hiragana is not in BERT's CJK ranges: it stays in the word.
  EXPECT_EQ(fff::basic_tokenize(t, "\u3072\u3089\u4e2d"), (Strings{"\u3072\u3089", "\u4e2d"}));
  // Extension E: Hugging Face's fast tokenizer splits from U+2B920 on, not from its first
  // ideograph U+2B820.
  EXPECT_EQ(fff::basic_tokenize(t, "a\U0002b820b"), (Strings{"a\U0002b820b"}));
  EXPECT_EQ(fff::basic_tokenize(t, "a\U0002b91fb\U0002b920c"),
            (Strings{"a\U0002b91fb", "\U0002b920", "c"}));
  EXPECT_EQ(fff::basic_tokenize(t, "a\U0002ceafb"), (Strings{"a", "\U0002ceaf", "b"}));
}

TEST(WordPieceEncode, WhitespaceAndDroppedCharacters) {
  const auto t = vocab();
  EXPECT_EQ(fff::basic_tokenize(t, "hello\u00a0world"), (Strings{"hello", "world"}));
  EXPECT_EQ(fff::basic_tokenize(t, "hello\u3000world\u2028fox"),
            (Strings{"hello", "world", "fox"}));
  EXPECT_EQ(fff::basic_tokenize(t, " hello\tworld\r\nfox\n"), (Strings{"hello", "world", "fox"}));
  // Zero-width space and joiner (Cf) vanish without splitting.
  EXPECT_EQ(fff::basic_tokenize(t, "hel\u200blo wo\u200drld"), (Strings{"hello", "world"}));
  EXPECT_EQ(fff::basic_tokenize(t, std::string("hel\x01lo\x7f wor\0ld\x1b", 15)),
            (Strings{"hello", "world"}));
  // Private use (Co) and U+FFFD are dropped as well.
  EXPECT_EQ(fff::basic_tokenize(t, "he\ue000llo\ufffd"), (Strings{"hello"}));
  // Unassigned code points (Cn) are not: they stay in their word, which becomes [UNK], as in
  // Hugging Face's fast tokenizer.
  EXPECT_EQ(fff::basic_tokenize(t, "he\u0378llo \U000effff"),
            (Strings{"he\u0378llo", "\U000effff"}));
  EXPECT_EQ(fff::wordpiece_encode(t, "hello he\u0378llo \ufffe"), (Ids{9, 1, 1}));
}

TEST(WordPieceEncode, InvalidUtf8Dropped) {
  const auto t = vocab();
  EXPECT_EQ(fff::basic_tokenize(t, "hel\xff\xfelo"), (Strings{"hello"}));
  // A truncated 3-byte sequence loses only its own bytes, not the ASCII that follows.
  EXPECT_EQ(fff::basic_tokenize(t,
                                "\xe4\xb8"
                                "a b\xe4"),
            (Strings{"a", "b"}));
  // Overlong encoding of '/' and an encoded surrogate are invalid too.
  EXPECT_EQ(fff::wordpiece_encode(t,
                                  "a\xc0\xaf"
                                  "b \xed\xa0\x80"),
            (Ids{1}));
  EXPECT_EQ(fff::basic_tokenize(t, "\x80\x80\xff"), (Strings{}));
}

TEST(WordPieceEncode, EmojiIsUnknown) {
  const auto t = vocab();
  EXPECT_EQ(fff::basic_tokenize(t, "hello \xf0\x9f\x98\x80!"),
            (Strings{"hello", "\xf0\x9f\x98\x80", "!"}));
  EXPECT_EQ(fff::wordpiece_encode(t, "hello \xf0\x9f\x98\x80!"), (Ids{9, 1, 17}));
  EXPECT_EQ(fff::wordpiece_encode(t, "hello\xf0\x9f\x98\x80"), (Ids{1}));
}

TEST(WordPieceEncode, EmptyInput) {
  const auto t = vocab();
  EXPECT_EQ(fff::basic_tokenize(t, ""), (Strings{}));
  EXPECT_EQ(fff::wordpiece_encode(t, ""), (Ids{}));
  EXPECT_EQ(fff::wordpiece_encode(t, " \t\r\n\u00a0 "), (Ids{}));
  EXPECT_EQ(fff::wordpiece_encode(t, "\u200b\x01"), (Ids{}));
}

TEST(WordPieceEncode, ForModel) {
  const auto t = vocab();
  EXPECT_EQ(fff::wordpiece_encode_for_model(t, "hello unaffable world", 512),
            (Ids{2, 9, 12, 13, 14, 10, 3}));
  EXPECT_EQ(fff::wordpiece_encode_for_model(t, "hello unaffable world", 7),
            (Ids{2, 9, 12, 13, 14, 10, 3}));
  EXPECT_EQ(fff::wordpiece_encode_for_model(t, "hello unaffable world", 5), (Ids{2, 9, 12, 13, 3}));
  EXPECT_EQ(fff::wordpiece_encode_for_model(t, "hello unaffable world", 2), (Ids{2, 3}));
  EXPECT_EQ(fff::wordpiece_encode_for_model(t, "", 8), (Ids{2, 3}));
  EXPECT_THROW(fff::wordpiece_encode_for_model(t, "hello", 1), fff::Error);
  EXPECT_THROW(fff::wordpiece_encode_for_model(t, "hello", 0), fff::Error);
  const auto no_cls = fff::make_wordpiece("[UNK]\n[SEP]\nhello\n", "nocls.txt");
  const std::string e = error_of([&] { fff::wordpiece_encode_for_model(no_cls, "hello", 8); });
  EXPECT_NE(e.find("nocls.txt"), std::string::npos) << e;
}

TEST(WordPieceDecode, RoundTrip) {
  const auto t = vocab();
  const Ids ids = fff::wordpiece_encode_for_model(t, "The quick brown fox is unaffable.", 64);
  EXPECT_EQ(ids, (Ids{2, 5, 6, 7, 8, 30, 12, 13, 14, 16, 3}));
  EXPECT_EQ(fff::wordpiece_decode(t, ids), "the quick brown fox is unaffable .");
  EXPECT_EQ(fff::wordpiece_decode(t, {2, 29, 30, 4, 16, 3, 0, 0}), "paris is [MASK] .");
  EXPECT_EQ(fff::wordpiece_decode(t, {}), "");
  // A continuation piece with nothing before it keeps its "##".
  EXPECT_EQ(fff::wordpiece_decode(t, {2, 44, 20, 44}), "##c ac");
  EXPECT_THROW(fff::wordpiece_decode(t, {9, 45}), fff::Error);
}

}  // namespace
