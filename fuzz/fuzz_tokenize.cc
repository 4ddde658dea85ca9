// The BERT tokenizer (basic tokenization, WordPiece, decoding) on arbitrary bytes as text, with
// a fixed vocabulary that has whole words, "##" pieces, accents, CJK and the special tokens.
#include "fff/text/wordpiece.h"
#include "fuzz_input.h"

namespace {

const fff::WordPieceTokenizer& tokenizer(bool lowercase) {
  static const std::string vocab =
      "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nthe\ncapital\nof\nfrance\nis\nparis\n.\n,\n!\n?\n"
      "un\n##aff\n##able\n##s\n##ing\nrun\ncafe\ncafé\nnaïve\n東\n京\n##京\nhello\nworld\na\n##a\n"
      "ß\n##ß\nİ\n##İ\n\xe2\x80\x8b\n\xef\xbf\xbd\nå\n##å\n";
  static const fff::WordPieceTokenizer lower = fff::make_wordpiece(vocab, "fuzz vocab", true);
  static const fff::WordPieceTokenizer cased = fff::make_wordpiece(vocab, "fuzz vocab", false);
  return lowercase ? lower : cased;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  // The first byte picks the case rule and the length limit; the rest is the text.
  const fff::WordPieceTokenizer& t = tokenizer(data[0] & 1);
  const int64_t max_len = 2 + (data[0] >> 1) % 16;
  const std::string_view text = fff_fuzz::as_text(data + 1, size - 1);
  fff_fuzz::expect_only_fff_errors([&] {
    fff::basic_tokenize(t, text);
    const std::vector<int32_t> ids = fff::wordpiece_encode(t, text);
    fff::wordpiece_decode(t, ids);
    bool truncated = false;
    const std::vector<int32_t> model_ids =
        fff::wordpiece_encode_for_model(t, text, max_len, &truncated);
    if (static_cast<int64_t>(model_ids.size()) > max_len) __builtin_trap();  // the limit holds
  });
  return 0;
}
