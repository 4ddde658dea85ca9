// BERT encoders at inference, two architectures (BertArch):
// crammed: crammedBERT / UltraFastBERT: embeddings, pre-norm transformer layers whose
// feedforward block is dense FF or neuron FFF (on the CMM engine), final norm, tied MLM decoder.
//   ids, mask: (B, S)   hidden: (B, S, H)   logits: (N, V) for N chosen rows of hidden
// Per layer: x += attn(LN1(x)) Wo^T;  x += FF(LN2(x)),  FF = GELU(x W1^T) W2^T  or  neuron FFF.
// Embedding: LN(word[id] + pos_scale * sinusoid[pos]). Logits = hidden word^T (no bias).
// bert: the original BERT (Devlin et al.; all-MiniLM-L6-v2 is one): post-norm layers, biases on
// every product, learned positions and token types, no final norm, no MLM head here.
// Embedding: LN(word[id] + position[pos] + token_type[0]).
// Per layer: x = LN1(x + attn(x) Wo^T + bo);  x = LN2(x + FF(x)),  FF = GELU(x W1^T + b1) W2^T +
// b2. Weights live in fff's own safetensors file (format "fff-bert"), made from a published
// checkpoint by scripts/convert_bert.py; the layout is in docs/bert.md.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "fff/core/common.h"
#include "fff/core/context.h"
#include "fff/cpu/packed_gemm.h"
#include "fff/layers/ff/ff_block.h"
#include "fff/layers/layer_norm.h"

namespace fff {

// crammed: crammedBERT / UltraFastBERT (pre-norm, no biases); bert: the original post-norm BERT.
enum class BertArch { crammed, bert };
const char* bert_arch_name(BertArch a);  // "crammed", "bert"

struct BertConfig {
  BertArch arch = BertArch::crammed;
  int64_t type_vocab = 2;  // bert: rows of the token-type table (type 0 is used)
  int64_t hidden = 768, layers = 16, heads = 12, vocab = 32768, max_seq = 128, pad_id = 0;
  float norm_eps = 1e-12f;
  // The feedforward block of every layer: ff (crammedBERT: width 3072) or neuron-fff
  // (UltraFastBERT-1x11: 1 tree of depth 11); GELU, no output bias; in and out are `hidden`
  // (ff_config() fills them in). arch bert: ff with both biases (output_bias true), or leaf-fff
  // (depth, leaf_width; GELU; always with its biases), e.g. made from a dense model by
  // convert_dense_to_leaf (bert_convert.h). crammed also runs leaf-fff blocks.
  FFConfig ff = default_ff();

  static FFConfig default_ff();
  FFConfig ff_config() const;  // ff with in = out = hidden
  int64_t head_dim() const { return hidden / heads; }
  // Throws fff::Error naming `where` and the offending field.
  void validate(const std::string& where) const;
  std::string describe() const;  // e.g. "16 layers, hidden 768, 12 heads, FFF 1x11"
};

struct BertLayer {
  // Named as in the file: "layers.i.norm1" ... crammed: before attention and before FF; bert:
  // after the attention residual and after the FF residual.
  LayerNorm norm1, norm2;
  Tensor qkv;       // (3H, H), rows per head: q, k, v
  Tensor out;       // (H, H)
  Tensor qkv_bias;  // bert: (3H), in qkv's row order ("layers.i.attn.qkv_bias"); crammed: empty
  Tensor out_bias;  // bert: (H) ("layers.i.attn.out_bias"); crammed: empty
  // The feedforward block (cfg.ff_config()). ff: a bias-free DenseFF, w1 (H, I), w2 (I, H); the
  // file stores each product (out, in) as PyTorch's Linear does ("layers.i.ff.w1" (I, H),
  // "layers.i.ff.w2" (H, I)), and loading and saving transpose; arch bert adds "layers.i.ff.b1"
  // (I) and "layers.i.ff.b2" (H). neuron-fff: w1 (K n, H), b1 (K n),
  // w2 (K n, H), no output bias, as the file stores them ("layers.i.fff.w1" ...). leaf-fff: the
  // block's own tensors in its own layout (leaf_fff.h), "layers.i.leaf.nodes_w" (2^D - 1, H),
  // ".nodes_b" (2^D - 1), ".w1" (H, 2^D l), ".b1" (2^D l), ".w2" (2^D l, H), ".b2" (2^D, H).
  std::unique_ptr<FFBlock> ff;
  // qkv and out packed for inference (fff/cpu/packed_gemm.h) by bert_prepare_inference; while
  // empty, the encoder multiplies by qkv and out through OpenBLAS, which packs them every call.
  PackedMatrix qkv_packed, out_packed;

  BertLayer() = default;
  BertLayer(const BertLayer& o);  // copies the block (FFBlock::clone)
  BertLayer& operator=(const BertLayer& o);
  BertLayer(BertLayer&&) = default;
  BertLayer& operator=(BertLayer&&) = default;
};

struct BertModel {
  BertConfig cfg;
  Tensor word;        // (V, H), also the MLM decoder (crammed)
  Tensor pos_scale;   // crammed: (1)
  Tensor positions;   // crammed: (max_seq, H) sinusoids, not stored in files; bert: the learned
                      // table (max_seq, H), stored as "embedding.position"
  Tensor token_type;  // bert: (type_vocab, H) ("embedding.token_type"); crammed: empty
  LayerNorm embed_norm, final_norm;  // final_norm: crammed only
  std::vector<BertLayer> layers;
  // The WordPiece vocabulary (one token per line, id order) and its case rule, when the file
  // carries one.
  std::string vocab_text;
  bool lowercase = true;
  // Whether sentence embeddings are L2-normalised after mean pooling (the file's
  // "sentence.normalize"; sentence-transformers models with a Normalize module set it).
  bool normalize_embeddings = false;
  // The longest input, in tokens, sentence embeddings are made of ("sentence.max_seq_length";
  // sentence-transformers truncates all-MiniLM-L6-v2's inputs at 256); 0: the model's positions.
  int64_t sentence_max_len = 0;
  bool half_fff = false;  // set by bert_use_half_fff
};

// Random weights of the given shape (for benchmarks and tests): uniform with standard deviation
// 1/sqrt(fan_in) for matrices, uniform +-0.5 FFF biases, unit norms; prepared for inference.
BertModel make_random_bert(const BertConfig& cfg, uint64_t seed);

// Loads and validates a "fff-bert" file: every tensor present with the shape the config implies.
// Errors name the path and the tensor or metadata key.
BertModel load_bert(const std::string& path);
void save_bert(const BertModel& m, const std::string& path);  // atomic

// Makes the FFF blocks read w1 and w2 in IEEE half precision (FFInferOptions): half the bytes
// a token's path reads, at a rounding error of at most 2^-11 per weight; files are unchanged.
// `use` false goes back to fp32 (and frees the half copies). Throws fff::Error for a dense model
// or a weight beyond half's range.
void bert_use_half_fff(BertModel& m, bool use = true);

// Packs every layer's attention products for inference and prepares its feedforward block
// (FFBlock::prepare_inference, keeping half weights if set). load_bert and make_random_bert call
// it; call it again after changing any weight of a model, or the encoder keeps the old packs.
void bert_prepare_inference(BertModel& m);

// Time spent in each part of the last encode, seconds (summed over layers).
struct BertTimings {
  double embed = 0, attention = 0, ff = 0, other = 0;  // other: norms, residuals, final norm
  double total() const { return embed + attention + ff + other; }
};

// Sees every layer's feedforward block at work during bert_encode: x its N = B S input rows
// (N, H) (arch bert: the normed post-attention stream; crammed: LN2 of the stream) and y the
// block's output (N, H), both valid during the call only. For recording training pairs.
struct BertFFObserver {
  virtual ~BertFFObserver() = default;
  virtual void ff_block(int64_t layer, const float* x, const float* y, int64_t N) = 0;
};

// Runs the encoder on B sequences of S tokens (S <= max_seq). mask[b*S+s] != 0 marks real tokens;
// padding is masked out as keys (its own rows are still computed, as in the reference). mask may
// be null (no padding). Throws fff::Error on an id outside [0, V) or S > max_seq. The activations
// stay in ctx.workspace for the next call.
void bert_encode(Context& ctx, const BertModel& m, const int32_t* ids, const uint8_t* mask,
                 int64_t B, int64_t S, float* hidden, BertTimings* timings = nullptr,
                 BertFFObserver* observer = nullptr);

// logits[r] = hidden_rows[r] word^T for r < N. Throws fff::Error for arch bert (no MLM head).
void bert_mlm_logits(Context& ctx, const BertModel& m, const float* hidden_rows, int64_t N,
                     float* logits);

// out[b] = mean over s with mask != 0 of hidden[b, s] (all positions when mask is null).
void bert_mean_pool(const float* hidden, const uint8_t* mask, int64_t B, int64_t S, int64_t H,
                    float* out);

// Scales each of the B rows of x (B, H) to unit Euclidean norm (a zero row stays zero), as
// sentence-transformers' Normalize module does (x / max(|x|, 1e-12)).
void l2_normalize_rows(float* x, int64_t B, int64_t H);

}  // namespace fff
