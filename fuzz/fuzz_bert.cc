// The BERT model loader (`fff bert ...`, `fff serve`, fff.bert.load): config, vocabulary and
// sentence settings from the metadata, every tensor's shape; a model that loads must then
// embed a sentence (or encode a few ids when it has no vocabulary).
#include <vector>

#include "fff/core/context.h"
#include "fff/models/bert.h"
#include "fff/models/sentence.h"
#include "fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = fff_fuzz::input_file(fff_fuzz::as_text(data, size));
  fff_fuzz::expect_only_fff_errors([&] {
    const fff::BertModel m = fff::load_bert(path);
    fff::Context ctx(1);
    if (!m.vocab_text.empty()) {
      const fff::WordPieceTokenizer tok = fff::bert_model_tokenizer(m, path);
      fff::bert_embed_sentences(ctx, m, tok, {"the capital of france", ""}, {});
    } else {
      const int64_t S = std::min<int64_t>(3, m.cfg.max_seq);
      std::vector<int32_t> ids(S, 0);
      std::vector<uint8_t> mask(S, 1);
      std::vector<float> hidden(S * m.cfg.hidden);
      fff::bert_encode(ctx, m, ids.data(), mask.data(), 1, S, hidden.data());
    }
  });
  return 0;
}
