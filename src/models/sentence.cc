#include "fff/models/sentence.h"

#include <algorithm>
#include <cmath>
#include <exception>
#include <utility>

namespace fff {

WordPieceTokenizer bert_model_tokenizer(const BertModel& m, const std::string& where) {
  if (m.vocab_text.empty())
    throw Error(where + " carries no tokenizer vocabulary (tokenizer.vocab)");
  WordPieceTokenizer t = make_wordpiece(m.vocab_text, where + " (tokenizer.vocab)", m.lowercase);
  if (static_cast<int64_t>(t.tokens.size()) > m.cfg.vocab)
    throw Error(where + ": the vocabulary has " + std::to_string(t.tokens.size()) +
                " tokens but the model only " + std::to_string(m.cfg.vocab));
  return t;
}

int64_t bert_sentence_limit(const BertModel& m, int64_t max_len) {
  if (max_len < 0 || max_len == 1)
    throw Error("max_len = " + std::to_string(max_len) +
                ": must be at least 2 (room for [CLS] and [SEP]), or 0 for the model's");
  const int64_t want = max_len > 0 ? max_len : m.sentence_max_len;
  return want > 0 ? std::min(want, m.cfg.max_seq) : m.cfg.max_seq;
}

int64_t SentenceEmbeddings::total_tokens() const {
  int64_t n = 0;
  for (int64_t t : tokens) n += t;
  return n;
}

int64_t SentenceEmbeddings::truncated_count() const {
  return std::count(truncated.begin(), truncated.end(), uint8_t{1});
}

SentenceEmbeddings bert_embed_sentences(Context& ctx, const BertModel& m,
                                        const WordPieceTokenizer& tok,
                                        const std::vector<std::string>& texts,
                                        const SentenceOptions& o) {
  if (o.batch <= 0)
    throw Error("SentenceOptions.batch = " + std::to_string(o.batch) + ": must be positive");
  const int64_t limit = bert_sentence_limit(m, o.max_len);
  const int64_t H = m.cfg.hidden, N = static_cast<int64_t>(texts.size());
  SentenceEmbeddings r;
  r.rows = N, r.dim = H;
  r.values.resize(static_cast<size_t>(N * H));
  r.tokens.resize(static_cast<size_t>(N));
  r.truncated.resize(static_cast<size_t>(N));
  std::vector<std::vector<int32_t>> seqs;
  std::vector<int32_t> ids;
  std::vector<uint8_t> mask;
  std::vector<float> hidden;
  for (int64_t lo = 0; lo < N; lo += o.batch) {
    const int64_t hi = std::min(N, lo + o.batch), B = hi - lo;
    // Token ids padded at the end to the batch's longest text; mask 1 on real tokens.
    seqs.clear();
    int64_t S = 0;
    for (int64_t i = lo; i < hi; ++i) {
      bool cut = false;
      seqs.push_back(wordpiece_encode_for_model(tok, texts[i], limit, &cut));
      r.tokens[i] = static_cast<int64_t>(seqs.back().size());
      r.truncated[i] = cut ? 1 : 0;
      S = std::max(S, r.tokens[i]);
    }
    ids.assign(static_cast<size_t>(B * S), static_cast<int32_t>(m.cfg.pad_id));
    mask.assign(ids.size(), 0);
    for (int64_t b = 0; b < B; ++b)
      for (size_t s = 0; s < seqs[b].size(); ++s) {
        ids[b * S + s] = seqs[b][s];
        mask[b * S + s] = 1;
      }
    hidden.resize(static_cast<size_t>(B * S * H));
    bert_encode(ctx, m, ids.data(), mask.data(), B, S, hidden.data());
    float* out = r.values.data() + lo * H;
    bert_mean_pool(hidden.data(), mask.data(), B, S, H, out);
    if (o.normalize) l2_normalize_rows(out, B, H);
    if (o.progress) o.progress(hi, N);
  }
  return r;
}

// ---- EmbeddingQueue ----

void EmbeddingQueueOptions::validate() const {
  if (max_batch <= 0)
    throw Error("EmbeddingQueueOptions.max_batch = " + std::to_string(max_batch) +
                ": must be positive");
  if (!(max_wait_s >= 0) || !std::isfinite(max_wait_s))
    throw Error("EmbeddingQueueOptions.max_wait_s = " + std::to_string(max_wait_s) +
                ": must be a non-negative number of seconds");
  if (max_queue <= 0)
    throw Error("EmbeddingQueueOptions.max_queue = " + std::to_string(max_queue) +
                ": must be positive");
  if (max_len < 0 || max_len == 1)
    throw Error("EmbeddingQueueOptions.max_len = " + std::to_string(max_len) +
                ": must be at least 2, or 0 for the model's");
}

struct EmbeddingQueue::Request {
  std::vector<std::string> texts;
  std::chrono::steady_clock::time_point arrived;
  size_t next = 0;  // first text not yet taken by the worker (under mu_)
  // The worker's alone:
  size_t done = 0;  // texts whose rows are in `out`
  bool failed = false;
  SentenceEmbeddings out;
  std::promise<SentenceEmbeddings> promise;
};

EmbeddingQueue::EmbeddingQueue(const BertModel& m, const WordPieceTokenizer& tok, int threads,
                               EmbeddingQueueOptions o)
    : model_(m), tok_(tok), opt_((o.validate(), o)), ctx_(threads) {
  bert_sentence_limit(m, opt_.max_len);  // a bad limit fails here, not in every request
  worker_ = std::thread([this] { run(); });
}

EmbeddingQueue::~EmbeddingQueue() {
  stop();
}

void EmbeddingQueue::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (worker_.joinable()) worker_.join();
}

void EmbeddingQueue::drain() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    draining_ = true;
  }
  cv_.notify_all();
}

int64_t EmbeddingQueue::queued() const {
  std::lock_guard<std::mutex> lock(mu_);
  return queued_;
}

std::future<SentenceEmbeddings> EmbeddingQueue::submit(std::vector<std::string> texts) {
  if (texts.empty()) throw Error("EmbeddingQueue::submit: no texts");
  auto r = std::make_shared<Request>();
  const int64_t n = static_cast<int64_t>(texts.size());
  r->texts = std::move(texts);
  r->out.rows = n, r->out.dim = model_.cfg.hidden;
  r->out.values.resize(static_cast<size_t>(n * model_.cfg.hidden));
  r->out.tokens.resize(static_cast<size_t>(n));
  r->out.truncated.resize(static_cast<size_t>(n));
  std::future<SentenceEmbeddings> f = r->promise.get_future();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) throw Error("EmbeddingQueue::submit: the queue is stopping");
    if (queued_ + n > opt_.max_queue)
      throw QueueFull("the queue holds " + std::to_string(queued_) + " of at most " +
                      std::to_string(opt_.max_queue) + " texts; no room for " + std::to_string(n) +
                      " more");
    r->arrived = std::chrono::steady_clock::now();
    pending_.push_back(std::move(r));
    queued_ += n;
  }
  cv_.notify_all();
  return f;
}

void EmbeddingQueue::run() {
  struct Part {
    std::shared_ptr<Request> req;
    size_t begin, end;  // the request's texts [begin, end) in this batch
  };
  std::vector<Part> parts;
  std::vector<std::string> batch;
  SentenceOptions so;
  so.batch = opt_.max_batch;
  so.normalize = opt_.normalize;
  so.max_len = opt_.max_len;
  const auto wait = std::chrono::duration_cast<std::chrono::steady_clock::duration>(
      std::chrono::duration<double>(opt_.max_wait_s));
  for (;;) {
    parts.clear();
    batch.clear();
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || queued_ > 0; });
      if (queued_ == 0) return;  // stopping, and nothing left
      // The batch closes when full, when the oldest text has waited long enough, or at once
      // when draining or stopping (what is queued is encoded without waiting for more).
      const auto deadline = pending_.front()->arrived + wait;
      cv_.wait_until(lock, deadline,
                     [&] { return stopping_ || draining_ || queued_ >= opt_.max_batch; });
      while (!pending_.empty() && static_cast<int64_t>(batch.size()) < opt_.max_batch) {
        Request& r = *pending_.front();
        const size_t take =
            std::min(r.texts.size() - r.next, static_cast<size_t>(opt_.max_batch) - batch.size());
        parts.push_back({pending_.front(), r.next, r.next + take});
        // Taken texts are read by no one else: moved, not copied.
        for (size_t i = r.next; i < r.next + take; ++i) batch.push_back(std::move(r.texts[i]));
        r.next += take;
        if (r.next == r.texts.size()) pending_.pop_front();
      }
      queued_ -= static_cast<int64_t>(batch.size());
    }
    try {
      const SentenceEmbeddings e = bert_embed_sentences(ctx_, model_, tok_, batch, so);
      const int64_t H = e.dim;
      size_t row = 0;
      for (Part& p : parts) {
        Request& r = *p.req;
        for (size_t i = p.begin; i < p.end; ++i, ++row) {
          std::copy_n(e.values.begin() + static_cast<std::ptrdiff_t>(row * H), H,
                      r.out.values.begin() + static_cast<std::ptrdiff_t>(i * H));
          r.out.tokens[i] = e.tokens[row];
          r.out.truncated[i] = e.truncated[row];
        }
        r.done += p.end - p.begin;
        if (r.done == r.texts.size() && !r.failed) r.promise.set_value(std::move(r.out));
      }
    } catch (...) {
      for (Part& p : parts) {
        Request& r = *p.req;
        r.done += p.end - p.begin;
        if (!r.failed) r.promise.set_exception(std::current_exception());
        r.failed = true;
      }
    }
  }
}

}  // namespace fff
