// Tests of sentence embeddings (fff/models/sentence.h): bert_embed_sentences against the encoder,
// pooling and normalisation called by hand, token counts and truncation, and EmbeddingQueue's
// batching of concurrent submissions, its bound and its shutdown.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <string>
#include <thread>
#include <vector>

#include "fff/core/context.h"
#include "fff/models/bert.h"
#include "fff/models/sentence.h"
#include "fff/text/wordpiece.h"
#include "test_util.h"

namespace {

// A small post-norm BERT (as all-MiniLM-L6-v2) with a made-up vocabulary, sentences of at most
// 8 tokens.
fff::BertModel small_model() {
  return fff_test::small_sentence_model(24, 3, 16, 40, 8, 31);
}

std::vector<std::string> some_texts(int n) {
  std::vector<std::string> t;
  for (int i = 0; i < n; ++i) {
    std::string s = "the capital";
    for (int k = 0; k < i % 9; ++k) s += " tok" + std::to_string(12 + (i * 7 + k) % 28);
    t.push_back(s);
  }
  return t;
}

double max_abs_diff(const float* a, const float* b, int64_t n) {
  double d = 0.0;
  for (int64_t i = 0; i < n; ++i) d = std::max(d, std::fabs(static_cast<double>(a[i]) - b[i]));
  return d;
}

}  // namespace

TEST(SentenceEmbeddings, MatchTheEncoderPoolAndNormaliseByHand) {
  const fff::BertModel m = small_model();
  const fff::WordPieceTokenizer tok = fff::bert_model_tokenizer(m, "small");
  const std::vector<std::string> texts = {"the capital of france", "paris .",
                                          "the capital of france is paris . tok12 tok13"};
  fff::Context ctx(2);
  fff::SentenceOptions o;
  o.batch = 3, o.normalize = true;
  const fff::SentenceEmbeddings e = fff::bert_embed_sentences(ctx, m, tok, texts, o);
  ASSERT_EQ(e.rows, 3);
  ASSERT_EQ(e.dim, 24);
  // [CLS] the capital of france [SEP]; [CLS] paris . [SEP]; the third cut at 8 tokens.
  EXPECT_EQ(e.tokens, (std::vector<int64_t>{6, 4, 8}));
  EXPECT_EQ(e.truncated, (std::vector<uint8_t>{0, 0, 1}));
  EXPECT_EQ(e.total_tokens(), 18);
  EXPECT_EQ(e.truncated_count(), 1);
  // The same batch by hand: ids padded to 8, the encoder, the masked mean, the unit norm.
  const int64_t S = 8, H = 24;
  std::vector<int32_t> ids(3 * S, 0);
  std::vector<uint8_t> mask(3 * S, 0);
  const std::vector<std::vector<int32_t>> seqs = {
      {2, 5, 6, 7, 8, 3}, {2, 10, 11, 3}, {2, 5, 6, 7, 8, 9, 10, 3}};
  for (int b = 0; b < 3; ++b)
    for (size_t s = 0; s < seqs[b].size(); ++s) ids[b * S + s] = seqs[b][s], mask[b * S + s] = 1;
  std::vector<float> hidden(3 * S * H), want(3 * H);
  fff::bert_encode(ctx, m, ids.data(), mask.data(), 3, S, hidden.data());
  fff::bert_mean_pool(hidden.data(), mask.data(), 3, S, H, want.data());
  fff::l2_normalize_rows(want.data(), 3, H);
  EXPECT_EQ(e.values, want);  // the same calls on the same batch: bit for bit
  for (int b = 0; b < 3; ++b) {
    double norm = 0.0;
    for (int j = 0; j < H; ++j)
      norm += static_cast<double>(e.values[b * H + j]) * e.values[b * H + j];
    EXPECT_NEAR(norm, 1.0, 1e-5);
  }
}

TEST(SentenceEmbeddings, RowsHardlyDependOnTheBatchAroundThem) {
  const fff::BertModel m = small_model();
  const fff::WordPieceTokenizer tok = fff::bert_model_tokenizer(m, "small");
  const std::vector<std::string> texts = some_texts(13);
  fff::Context ctx(2);
  fff::SentenceOptions all, one;
  all.batch = 13, one.batch = 1;
  all.normalize = one.normalize = true;
  const fff::SentenceEmbeddings a = fff::bert_embed_sentences(ctx, m, tok, texts, all);
  const fff::SentenceEmbeddings b = fff::bert_embed_sentences(ctx, m, tok, texts, one);
  EXPECT_EQ(a.tokens, b.tokens);
  // Alone, a text has no padding; in a batch, it is padded to the longest, which changes only the
  // encoder's summation order over the (masked) keys: rounding.
  EXPECT_LT(max_abs_diff(a.values.data(), b.values.data(), 13 * 24), 1e-6);
  // The progress callback sees every batch.
  std::vector<int64_t> seen;
  one.batch = 5;
  one.progress = [&](int64_t done, int64_t total) {
    EXPECT_EQ(total, 13);
    seen.push_back(done);
  };
  fff::bert_embed_sentences(ctx, m, tok, texts, one);
  EXPECT_EQ(seen, (std::vector<int64_t>{5, 10, 13}));
}

TEST(SentenceEmbeddings, LimitsAndErrors) {
  fff::BertModel m = small_model();
  EXPECT_EQ(fff::bert_sentence_limit(m), 8);
  EXPECT_EQ(fff::bert_sentence_limit(m, 5), 5);
  EXPECT_EQ(fff::bert_sentence_limit(m, 100), 16);  // never past the positions
  EXPECT_THROW(fff::bert_sentence_limit(m, 1), fff::Error);
  const fff::WordPieceTokenizer tok = fff::bert_model_tokenizer(m, "small");
  fff::Context ctx(1);
  fff::SentenceOptions o;
  o.batch = 0;
  EXPECT_THROW(fff::bert_embed_sentences(ctx, m, tok, {"x"}, o), fff::Error);
  m.vocab_text.clear();
  try {
    fff::bert_model_tokenizer(m, "nameless.safetensors");
    FAIL() << "no error without a vocabulary";
  } catch (const fff::Error& e) {
    EXPECT_NE(std::string(e.what()).find("nameless.safetensors"), std::string::npos) << e.what();
  }
}

TEST(EmbeddingQueue, ConcurrentSubmissionsGetTheirOwnRows) {
  const fff::BertModel m = small_model();
  const fff::WordPieceTokenizer tok = fff::bert_model_tokenizer(m, "small");
  const std::vector<std::string> texts = some_texts(40);
  fff::Context ctx(1);
  fff::SentenceOptions so;
  so.batch = 1, so.normalize = true;
  const fff::SentenceEmbeddings want = fff::bert_embed_sentences(ctx, m, tok, texts, so);
  fff::EmbeddingQueueOptions qo;
  qo.max_batch = 7, qo.max_wait_s = 0.005, qo.normalize = true;
  fff::EmbeddingQueue q(m, tok, 2, qo);
  EXPECT_EQ(q.dim(), 24);
  // 8 threads each submit requests of 1..6 texts from their own slice of texts.
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t)
    threads.emplace_back([&, t] {
      for (int round = 0; round < 5; ++round) {
        const int n = 1 + (t + round) % 6, first = (t * 5 + round * 3) % (40 - n);
        std::vector<std::string> mine(texts.begin() + first, texts.begin() + first + n);
        const fff::SentenceEmbeddings got = q.submit(mine).get();
        for (int i = 0; i < n; ++i) {
          if (got.tokens[i] != want.tokens[first + i]) ++failures;
          if (max_abs_diff(got.values.data() + i * 24, want.values.data() + (first + i) * 24, 24) >=
              1e-6)
            ++failures;
        }
      }
    });
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(q.queued(), 0);
}

TEST(EmbeddingQueue, FullQueueRefusesAndStopFinishesWhatIsQueued) {
  const fff::BertModel m = small_model();
  const fff::WordPieceTokenizer tok = fff::bert_model_tokenizer(m, "small");
  fff::EmbeddingQueueOptions qo;
  // A batch waits up to a minute for 100 texts: the queued ones stay queued until stop().
  qo.max_batch = 100, qo.max_wait_s = 60, qo.max_queue = 5;
  fff::EmbeddingQueue q(m, tok, 1, qo);
  auto a = q.submit({"the capital", "paris"});
  auto b = q.submit({"of", "france", "is"});
  EXPECT_EQ(q.queued(), 5);
  EXPECT_THROW(q.submit({"one more"}), fff::QueueFull);
  EXPECT_THROW(q.submit({}), fff::Error);
  const auto start = std::chrono::steady_clock::now();
  q.stop();  // encodes the five without waiting out the minute
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
  EXPECT_EQ(a.get().rows, 2);
  const fff::SentenceEmbeddings e = b.get();
  EXPECT_EQ(e.rows, 3);
  EXPECT_EQ(e.tokens, (std::vector<int64_t>{3, 3, 3}));
  EXPECT_THROW(q.submit({"late"}), fff::Error);
  q.stop();  // idempotent
}

TEST(EmbeddingQueue, DrainEndsTheWaitForABatchButStillTakesTexts) {
  const fff::BertModel m = small_model();
  const fff::WordPieceTokenizer tok = fff::bert_model_tokenizer(m, "small");
  fff::EmbeddingQueueOptions qo;
  qo.max_batch = 100, qo.max_wait_s = 60;
  fff::EmbeddingQueue q(m, tok, 1, qo);
  auto a = q.submit({"the capital", "paris"});
  const auto start = std::chrono::steady_clock::now();
  q.drain();
  EXPECT_EQ(a.get().rows, 2);  // not a minute later
  EXPECT_EQ(q.submit({"of france"}).get().tokens, (std::vector<int64_t>{4}));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
}

TEST(EmbeddingQueue, RejectsBadOptions) {
  const fff::BertModel m = small_model();
  const fff::WordPieceTokenizer tok = fff::bert_model_tokenizer(m, "small");
  auto with = [](auto change) {
    fff::EmbeddingQueueOptions o;
    change(o);
    return o;
  };
  EXPECT_THROW(fff::EmbeddingQueue(m, tok, 1, with([](auto& o) { o.max_batch = 0; })), fff::Error);
  EXPECT_THROW(fff::EmbeddingQueue(m, tok, 1, with([](auto& o) { o.max_wait_s = -1; })),
               fff::Error);
  EXPECT_THROW(fff::EmbeddingQueue(m, tok, 1, with([](auto& o) { o.max_queue = 0; })), fff::Error);
  EXPECT_THROW(fff::EmbeddingQueue(m, tok, 1, with([](auto& o) { o.max_len = 1; })), fff::Error);
  EXPECT_THROW(fff::EmbeddingQueue(m, tok, 0, {}), fff::Error);  // threads
}
