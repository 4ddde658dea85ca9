// The WordPiece vocabulary loader (vocab.txt) on arbitrary bytes; a vocabulary that loads must
// then tokenize and decode.
#include <algorithm>

#include "fff/text/wordpiece.h"
#include "fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = fff_fuzz::input_file(fff_fuzz::as_text(data, size));
  fff_fuzz::expect_only_fff_errors([&] {
    const fff::WordPieceTokenizer t = fff::load_wordpiece(path, size % 2 == 0);
    const std::vector<int32_t> ids = fff::wordpiece_encode(t, "Hello, wörld! 東京 [MASK] ##ing");
    fff::wordpiece_decode(t, ids);
    std::vector<int32_t> all(std::min<size_t>(t.tokens.size(), 64));
    for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<int32_t>(i);
    fff::wordpiece_decode(t, all);
    fff::wordpiece_encode_for_model(t, "a b c", 4);
  });
  return 0;
}
