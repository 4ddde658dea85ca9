// Dense -> leaf FFF conversion of a pretrained BERT's feedforward blocks, without training
// (issue 15 part 3; docs/minilm.md). Per layer, on the block's inputs recorded from real tokens,
// by one of two methods.
//
// token_split (the default): the tree first, then the leaves.
//  1. top down, each node splits the tokens its ancestors send it into two equal halves by
//     balanced 2-means on the standardised inputs; its hyperplane is that split, so inference
//     routes the recorded tokens exactly as the split did;
//  2. leaf j takes the width / 2^D dense neurons with the most output energy on its tokens,
//     sum over them of a_i^2 ||w2_i||^2 (neurons may serve several leaves): W1_j, b1_j those
//     columns of w1 and entries of b1;
//  3. its W2_j and b2_j are refitted by ridge least squares to the dense outputs of its tokens,
//     so they absorb what the neurons left out contributed in as far as the kept ones predict it
//     (the penalty chosen per leaf on a tenth of its tokens held out, then refitted on all).
//
// coactivation (MoEfication, Zhang et al. 2022): the leaves first, then the tree.
//  1. the dense block's `width` hidden neurons are split into 2^D groups of equal size by
//     co-activation: balanced k-means on each neuron's GELU activations over the sampled tokens
//     (unit-normalised), equal-capacity greedy assignment;
//  2. leaf j is the dense block restricted to group j: W1_j = w1's columns, b1_j, W2_j = w2's
//     rows; b2_j = the dense output bias, plus (fit_leaf_bias) the mean over the tokens that reach
//     leaf j of what its missing neurons contribute (the least-squares bias for that routing);
//  3. each token's best leaf is argmin_j ||dense(x) - leaf_j(x)||^2; the nodes are fitted top
//     down, node i a ridge logistic regression on [x, 1] (Newton steps) separating the tokens the
//     fitted ancestors route to it by whether their best leaf within i's subtree lies right, each
//     token weighted by how much worse the other side's best leaf is; logit >= 0 means right.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "fff/core/context.h"
#include "fff/models/bert.h"

namespace fff {

enum class ConvertMethod { token_split, coactivation };
ConvertMethod parse_convert_method(const std::string& name);  // "token-split" | "coactivation"
const char* convert_method_name(ConvertMethod m);

struct ConvertOptions {
  ConvertMethod method = ConvertMethod::token_split;
  int64_t depth = 3;             // 2^depth leaves of width / 2^depth neurons each
  int64_t max_tokens = 32768;    // token rows recorded per layer (sequences beyond are unused)
  int64_t kmeans_tokens = 4096;  // tokens whose activations form a neuron's clustering feature
  int64_t kmeans_iters = 15;     // both methods' k-means (neurons) and 2-means (tokens)
  // coactivation:
  int64_t newton_steps = 12;  // per node
  float ridge = 1e-3f;        // node L2 penalty, relative to the mean Hessian diagonal
  bool fit_leaf_bias = true;  // see step 2 above; false: b2_j = the dense b2
  // token_split: the leaves' least-squares penalty, relative to the mean of A_j^T A_j's diagonal;
  // negative: chosen per leaf among 1e-4 ... 1 by the error on a tenth of its tokens held out.
  float leaf_ridge = -1.0f;
  uint64_t seed = 1;
  // Blockwise distillation after conversion (0 steps: none): each leaf FFF block is trained on
  // the first 90% of its layer's recorded (input, dense output) pairs with Adam on the relative
  // squared error ||y - dense||^2 / mean ||dense||^2 plus hardening * the mean node entropy, and
  // kept if its hard-inference error on the last 10% (held out) is lower than the converted
  // block's. soft: the soft mixture of leaves (leaf_fff.h), nodes trained too; hard: hardened
  // decisions, the routing stays as fitted and only the leaves learn.
  int64_t distill_steps = 0, distill_batch = 256;
  float distill_lr = 1e-4f, hardening = 0.1f;
  bool distill_soft = true;
  // Called after each stage with the fraction done and what was done (for progress and ETA).
  std::function<void(double fraction, const std::string& what)> progress;
};

struct LayerConvertStats {
  int64_t tokens = 0;
  double best_leaf_fraction = 0;   // tokens whose routed leaf is their best leaf
  double relative_error = 0;       // ||fff(x) - dense(x)|| / ||dense(x)|| over the tokens
  double best_relative_error = 0;  // every token sent to its best leaf (coactivation: leaf
                                   // biases the dense b2, a lower bound on relative_error when
                                   // fit_leaf_bias is off; token_split: the fitted leaves)
  double seconds = 0;
  // With distillation: hard-inference relative error on the held-out 10% of the tokens, of the
  // converted block and of the distilled one, and whether the distilled one was kept.
  double heldout_converted_error = 0, heldout_distilled_error = 0;
  bool distilled = false;
};

struct ConvertResult {
  BertModel model;  // the dense model with leaf-fff blocks
  std::vector<LayerConvertStats> layers;
};

// Converts every feedforward block of `dense` (kind ff, with biases, GELU) into a leaf FFF of
// options.depth; sequences are token id sequences (each encoded alone, every token real) whose
// block inputs, from the dense model, are the samples. Throws fff::Error for a model that is not
// dense, a width not divisible by 2^depth, depth outside [1, 10] or no tokens.
ConvertResult convert_dense_to_leaf(Context& ctx, const BertModel& dense,
                                    const std::vector<std::vector<int32_t>>& sequences,
                                    const ConvertOptions& options);

// Every layer's feedforward inputs and dense outputs on the given sequences, rows appended in
// order until max_tokens: x[l] and y[l] are (tokens, H) row-major.
struct BertFFSamples {
  int64_t tokens = 0;
  std::vector<std::vector<float>> x, y;
};
BertFFSamples record_ff_samples(Context& ctx, const BertModel& m,
                                const std::vector<std::vector<int32_t>>& sequences,
                                int64_t max_tokens);

}  // namespace fff
