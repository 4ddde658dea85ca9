// Sentence embeddings from a BERT encoder, as sentence-transformers makes them: WordPiece
// tokens [CLS] text [SEP] (truncated at the model's sentence length), the encoder on batches
// padded to their longest text, the mean of the final hidden states over each text's tokens,
// L2-normalised when asked. One path for `fff bert embed`, `fff serve` and Python's
// fff.SentenceEncoder, so that the three give the same vectors.
//
// EmbeddingQueue batches texts that arrive from many threads (a server's request handlers) into
// one encoder call: one worker thread owns the Context and takes up to max_batch queued texts,
// or what is queued when the oldest has waited max_wait_s.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "fff/core/common.h"
#include "fff/core/context.h"
#include "fff/models/bert.h"
#include "fff/text/wordpiece.h"

namespace fff {

// The tokenizer stored in the model file (tokenizer.vocab, tokenizer.lowercase). `where` names
// the file in errors: a model without a vocabulary, or a vocabulary larger than the model's.
WordPieceTokenizer bert_model_tokenizer(const BertModel& m, const std::string& where);

// The longest input in tokens ([CLS] and [SEP] included): max_len if positive, else the file's
// sentence.max_seq_length if set, else the model's positions; never more than the positions.
// Throws fff::Error if max_len is 1 (no room for [CLS] and [SEP]) or negative.
int64_t bert_sentence_limit(const BertModel& m, int64_t max_len = 0);

struct SentenceOptions {
  int64_t batch = 32;      // texts per encoder call (each call pads to its longest text)
  bool normalize = false;  // L2-normalise each row (sentence-transformers' Normalize)
  int64_t max_len = 0;     // truncation; 0: as bert_sentence_limit says
  // Called after each batch with the texts done and the total (e.g. a progress line).
  std::function<void(int64_t done, int64_t total)> progress;
};

struct SentenceEmbeddings {
  int64_t rows = 0, dim = 0;
  std::vector<float> values;       // (rows, dim), row-major
  std::vector<int64_t> tokens;     // per text: tokens encoded, [CLS] and [SEP] included
  std::vector<uint8_t> truncated;  // per text: 1 if tokens were dropped to fit the limit
  int64_t total_tokens() const;
  int64_t truncated_count() const;
};

// Embeds texts (UTF-8; invalid bytes are dropped by the tokenizer) in batches of o.batch, in
// order. A row depends only on its own text and on the lengths of the texts in its batch (the
// batch's padding changes the encoder's summation order, by float rounding only). Throws
// fff::Error on o.batch <= 0 or a bad o.max_len.
SentenceEmbeddings bert_embed_sentences(Context& ctx, const BertModel& m,
                                        const WordPieceTokenizer& tok,
                                        const std::vector<std::string>& texts,
                                        const SentenceOptions& o);

struct EmbeddingQueueOptions {
  int64_t max_batch = 32;     // texts per encoder call, at most
  double max_wait_s = 0.002;  // how long the oldest queued text waits for others to join it
  int64_t max_queue = 1024;   // texts queued (not yet taken by the worker), at most
  bool normalize = false;
  int64_t max_len = 0;  // as SentenceOptions::max_len
  // Throws fff::Error naming the field if a value is out of range.
  void validate() const;
};

// Thrown by EmbeddingQueue::submit when the queue cannot take the texts (a server says 503).
struct QueueFull : Error {
  using Error::Error;
};

class EmbeddingQueue {
 public:
  // Starts the worker thread, which owns a Context of `threads` threads. m and tok must outlive
  // the queue.
  EmbeddingQueue(const BertModel& m, const WordPieceTokenizer& tok, int threads,
                 EmbeddingQueueOptions o);
  ~EmbeddingQueue();  // stop()
  EmbeddingQueue(const EmbeddingQueue&) = delete;
  EmbeddingQueue& operator=(const EmbeddingQueue&) = delete;

  // Queues the texts (at least one) and returns their embeddings to come, rows in the texts'
  // order; a request's texts may be split over several encoder calls. Throws QueueFull if the
  // queue has no room for all of them (none are queued), fff::Error if empty or stopped. The
  // future carries the encoder's exception, if it throws.
  std::future<SentenceEmbeddings> submit(std::vector<std::string> texts);

  // From now on batches close as soon as the worker is free, without waiting for more texts;
  // submits are still taken. For a server that is shutting down: the requests in flight are
  // answered without waiting out max_wait_s.
  void drain();

  // Encodes everything already queued, then ends the worker; later submits throw. Idempotent.
  void stop();

  int64_t queued() const;  // texts waiting for the worker
  int64_t dim() const { return model_.cfg.hidden; }

 private:
  struct Request;
  void run();

  const BertModel& model_;
  const WordPieceTokenizer& tok_;
  const EmbeddingQueueOptions opt_;
  Context ctx_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  // Requests with texts not yet taken; the front one may be partly taken.
  std::deque<std::shared_ptr<Request>> pending_;
  int64_t queued_ = 0;
  bool stopping_ = false, draining_ = false;
  std::thread worker_;
};

}  // namespace fff
