"""PyTorch reference of crammedBERT / UltraFastBERT (dense or FFF) and of the original post-norm BERT
(Hugging Face BertModel's layout, as all-MiniLM-L6-v2), and a random HF-style checkpoint generator."""
import argparse
import json
import math
import os
import sys
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import numpy as np
import torch
from torch import nn

from safetensors_io import atomic_write, write_safetensors

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
PAD_ID, CLS_ID = 0, 2
FIRST_ORDINARY_ID = len(SPECIAL_TOKENS)

# Made-up vocabulary after the specials; `tok{i}` fillers follow until vocab_size is reached.
WORDS = [
    "the", "capital", "of", "france", "is", "paris", "a", "an", "and", "in", "to", "it", "was",
    "city", "river", "large", "small", "country", "germany", "berlin", "italy", "rome", "spain",
    "madrid", "london", "england", "water", "flows", "through", "many", "people", "live", "there",
    "fast", "feed", "forward", "network", "tree", "leaf", "node", ".", ",", "?", "!", "'",
    "##s", "##ing", "##ed", "##er", "##ly", "##est", "##tion", "un", "##able", "re",
]


class UserError(Exception):
    """A problem with the user's input; printed as `error: ...` without a traceback."""


@dataclass
class BertConfig:
    vocab: int = 120
    hidden: int = 64
    heads: int = 4
    layers: int = 2
    ff: str = "fff"  # "fff" or "dense"
    width: int = 96  # dense intermediate width I
    trees: int = 2  # FFF: number of trees K
    depth: int = 3  # FFF: tree depth D (nodes per tree n = 2^(D+1) - 1)
    max_seq: int = 128
    norm_eps: float = 1e-12
    arch: str = "crammed"  # "crammed" (pre-norm crammedBERT) or "bert" (post-norm, biases)
    type_vocab: int = 2  # bert: token types

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads

    @property
    def fff_nodes(self) -> int:
        return 2 ** (self.depth + 1) - 1

    def validate(self) -> None:
        if self.ff not in ("fff", "dense"):
            raise UserError(f"--ff must be 'fff' or 'dense', not {self.ff!r}")
        if self.arch not in ("crammed", "bert"):
            raise UserError(f"--arch must be 'crammed' or 'bert', not {self.arch!r}")
        if self.arch == "bert" and self.ff != "dense":
            raise UserError("--arch bert has dense feedforward blocks only (--ff dense)")
        for name in ("vocab", "hidden", "heads", "layers", "max_seq"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be at least 1 (got {getattr(self, name)})")
        if self.hidden % self.heads != 0:
            raise UserError(f"--hidden ({self.hidden}) must be divisible by --heads ({self.heads})")
        if self.hidden % 2 != 0 and self.arch == "crammed":
            raise UserError(f"--hidden ({self.hidden}) must be even for the sinusoidal positions")
        if self.ff == "dense" and self.width < 1:
            raise UserError(f"--width must be at least 1 (got {self.width})")
        if self.ff == "fff":
            if self.trees < 1:
                raise UserError(f"--trees must be at least 1 (got {self.trees})")
            if not 0 <= self.depth <= 20:
                raise UserError(f"--depth must be in [0, 20] (got {self.depth})")
        if not (self.norm_eps > 0 and math.isfinite(self.norm_eps)):
            raise UserError(f"--norm-eps must be a positive finite number (got {self.norm_eps})")


class ScaledSinusoidal(nn.Module):
    """pe[p, 2i] = sin(p * exp(2i * -ln(10000)/H)), pe[p, 2i+1] = cos(same), times a learnable scale."""

    def __init__(self, hidden: int, max_seq: int):
        super().__init__()
        position = torch.arange(0, max_seq, dtype=torch.float).unsqueeze(1)
        freq = torch.exp(torch.arange(0, hidden, 2).float() * (-math.log(10000.0) / hidden))
        pe = torch.zeros(max_seq, hidden)
        pe[:, 0::2] = torch.sin(position * freq)
        pe[:, 1::2] = torch.cos(position * freq)
        self.register_buffer("pe", pe, persistent=False)
        self.scale_factor = nn.Parameter(torch.tensor([1.0 / hidden**0.5]))

    def forward(self, seq_len: int) -> torch.Tensor:
        return self.scale_factor * self.pe[:seq_len]


class Embedding(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.word_embedding = nn.Embedding(cfg.vocab, cfg.hidden, padding_idx=PAD_ID)
        self.pos_embedding = ScaledSinusoidal(cfg.hidden, cfg.max_seq)
        self.norm = nn.LayerNorm(cfg.hidden, eps=cfg.norm_eps)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        e = self.word_embedding(input_ids) + self.pos_embedding(input_ids.shape[1])
        return self.norm(e)


class SelfAttention(nn.Module):
    """Multi-head self-attention; the fused projection's 3H outputs are (heads, [q k v] x head_dim)."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.heads = cfg.heads
        self.head_dim = cfg.head_dim
        self.register_buffer("norm_factor", torch.tensor(float(cfg.head_dim)).rsqrt())
        self.query_key_value = nn.Linear(cfg.hidden, 3 * cfg.hidden, bias=False)

    def forward(self, x: torch.Tensor, mask_add: Optional[torch.Tensor]) -> torch.Tensor:
        b, s, h = x.shape
        qkv = self.query_key_value(x).view(b, s, self.heads, 3 * self.head_dim)
        q, k, v = (t.permute(0, 2, 1, 3) for t in qkv.split(self.head_dim, dim=-1))  # (b, heads, s, hd)
        scores = torch.matmul(q, k.transpose(-1, -2)) * self.norm_factor
        if mask_add is not None:
            scores = scores + mask_add  # (b, 1, 1, s): masks keys only
        probs = torch.softmax(scores, dim=-1)
        context = torch.matmul(probs, v)  # (b, heads, s, hd)
        return context.permute(0, 2, 1, 3).reshape(b, s, h)


class Attention(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.self_attention = SelfAttention(cfg)
        self.dense = nn.Linear(cfg.hidden, cfg.hidden, bias=False)

    def forward(self, x: torch.Tensor, mask_add: Optional[torch.Tensor]) -> torch.Tensor:
        return self.dense(self.self_attention(x, mask_add))


class DenseFF(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.dense_in = nn.Linear(cfg.hidden, cfg.width, bias=False)
        self.nonlin = nn.GELU()
        self.dense_out = nn.Linear(cfg.width, cfg.hidden, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dense_out(self.nonlin(self.dense_in(x)))


class FFF(nn.Module):
    """Fast feedforward layer, computed the UltraFastBERT way: every neuron, then masked to the path.

    K trees of depth D, n = 2^(D+1)-1 nodes each, heap order, tree t owning neurons [t*n, (t+1)*n).
    From node 0, each step moves to child 2*node+1+(logit > 0); the D+1 visited nodes keep GELU(logit).
    """

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.trees = cfg.trees
        self.depth = cfg.depth
        self.n_nodes = cfg.fff_nodes
        self.linear_in = nn.Linear(cfg.hidden, cfg.trees * self.n_nodes, bias=True)
        self.linear_out = nn.Linear(cfg.trees * self.n_nodes, cfg.hidden, bias=False)
        self.nonlin = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1])
        rows = flat.shape[0]
        logits = self.linear_in(flat).view(rows, self.trees, self.n_nodes)
        activations = self.nonlin(logits)
        go_right = (logits > 0).long()
        node = torch.zeros(rows, self.trees, 1, dtype=torch.long, device=x.device)
        visited = torch.zeros_like(activations)
        visited.scatter_(2, node, 1.0)
        for _ in range(self.depth):
            node = 2 * node + 1 + torch.gather(go_right, 2, node)
            visited.scatter_(2, node, 1.0)
        out = self.linear_out((activations * visited).view(rows, self.trees * self.n_nodes))
        return out.view(x.shape)


class Layer(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.hidden, eps=cfg.norm_eps)
        self.attn = Attention(cfg)
        self.norm2 = nn.LayerNorm(cfg.hidden, eps=cfg.norm_eps)
        self.ffn = FFF(cfg) if cfg.ff == "fff" else DenseFF(cfg)

    def forward(self, x: torch.Tensor, mask_add: Optional[torch.Tensor]) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), mask_add)
        return x + self.ffn(self.norm2(x))


class Encoder(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.cfg = cfg
        self.embedding = Embedding(cfg)
        self.layers = nn.ModuleList([Layer(cfg) for _ in range(cfg.layers)])
        self.final_norm = nn.LayerNorm(cfg.hidden, eps=cfg.norm_eps)

    def forward(self, input_ids: torch.Tensor, attention_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must be (batch, seq), got shape {tuple(input_ids.shape)}")
        if input_ids.shape[1] > self.cfg.max_seq:
            raise ValueError(f"sequence length {input_ids.shape[1]} exceeds max_seq {self.cfg.max_seq}")
        mask_add = None
        if attention_mask is not None:
            if attention_mask.shape != input_ids.shape:
                raise ValueError(f"attention_mask shape {tuple(attention_mask.shape)} != input_ids shape "
                                 f"{tuple(input_ids.shape)}")
            mask_add = ((1.0 - attention_mask.to(torch.float32)) * -10000.0)[:, None, None, :]
        x = self.embedding(input_ids)
        for layer in self.layers:
            x = layer(x, mask_add)
        return self.final_norm(x)


class BertForMLM(nn.Module):
    """State-dict names match cramming's ScriptableLMForPreTraining (the UltraFastBERT HF upload)."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.decoder = nn.Linear(cfg.hidden, cfg.vocab, bias=False)
        self.decoder.weight = self.encoder.embedding.word_embedding.weight  # tied

    def forward(self, input_ids: torch.Tensor,
                attention_mask: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        hidden = self.encoder(input_ids, attention_mask)
        return hidden, self.decoder(hidden)


# ---------------------------------------------------------------------------- original BERT
# Module names give the state-dict keys of Hugging Face's BertModel (embeddings.word_embeddings.
# weight, encoder.layer.0.attention.self.query.weight, ...); the computation is written here
# from the BERT paper, not taken from transformers.

class PostNormEmbeddings(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(cfg.vocab, cfg.hidden)
        self.position_embeddings = nn.Embedding(cfg.max_seq, cfg.hidden)
        self.token_type_embeddings = nn.Embedding(cfg.type_vocab, cfg.hidden)
        self.LayerNorm = nn.LayerNorm(cfg.hidden, eps=cfg.norm_eps)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(input_ids.shape[1])
        types = torch.zeros_like(input_ids)  # single sentences: type 0 everywhere
        e = self.word_embeddings(input_ids) + self.position_embeddings(positions)[None] + \
            self.token_type_embeddings(types)
        return self.LayerNorm(e)


class PostNormSelfAttention(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.heads, self.head_dim = cfg.heads, cfg.head_dim
        self.query = nn.Linear(cfg.hidden, cfg.hidden)
        self.key = nn.Linear(cfg.hidden, cfg.hidden)
        self.value = nn.Linear(cfg.hidden, cfg.hidden)

    def forward(self, x: torch.Tensor, mask_add: Optional[torch.Tensor]) -> torch.Tensor:
        b, s, h = x.shape
        q, k, v = (lin(x).view(b, s, self.heads, self.head_dim).transpose(1, 2)
                   for lin in (self.query, self.key, self.value))  # (b, heads, s, hd)
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim)
        if mask_add is not None:
            scores = scores + mask_add
        context = torch.matmul(torch.softmax(scores, dim=-1), v)
        return context.transpose(1, 2).reshape(b, s, h)


class DenseAndNorm(nn.Module):
    """LN(residual + x W^T + b): the output half of a post-norm sublayer."""

    def __init__(self, cfg: BertConfig, width_in: int):
        super().__init__()
        self.dense = nn.Linear(width_in, cfg.hidden)
        self.LayerNorm = nn.LayerNorm(cfg.hidden, eps=cfg.norm_eps)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(residual + self.dense(x))


class PostNormAttention(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        setattr(self, "self", PostNormSelfAttention(cfg))  # the key is "attention.self.query..."
        self.output = DenseAndNorm(cfg, cfg.hidden)

    def forward(self, x: torch.Tensor, mask_add: Optional[torch.Tensor]) -> torch.Tensor:
        return self.output(getattr(self, "self")(x, mask_add), x)


class Intermediate(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden, cfg.width)
        self.act = nn.GELU()  # exact (erf) GELU, BERT's "gelu"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.dense(x))


class PostNormLayer(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.attention = PostNormAttention(cfg)
        self.intermediate = Intermediate(cfg)
        self.output = DenseAndNorm(cfg, cfg.width)

    def forward(self, x: torch.Tensor, mask_add: Optional[torch.Tensor]) -> torch.Tensor:
        x = self.attention(x, mask_add)
        return self.output(self.intermediate(x), x)


class PostNormEncoder(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.layer = nn.ModuleList([PostNormLayer(cfg) for _ in range(cfg.layers)])


class Pooler(nn.Module):
    """BertModel's pooler (tanh of the first token's projection): stored in checkpoints, unused by
    sentence embeddings and by fff, kept so that converted checkpoints look like real ones."""

    def __init__(self, cfg: BertConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden, cfg.hidden)


class PostNormBert(nn.Module):
    def __init__(self, cfg: BertConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.embeddings = PostNormEmbeddings(cfg)
        self.encoder = PostNormEncoder(cfg)
        self.pooler = Pooler(cfg)

    def forward(self, input_ids: torch.Tensor,
                attention_mask: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, None]:
        if input_ids.shape[1] > self.cfg.max_seq:
            raise ValueError(f"sequence length {input_ids.shape[1]} exceeds max_seq {self.cfg.max_seq}")
        mask_add = None
        if attention_mask is not None:
            mask_add = ((1.0 - attention_mask.to(torch.float32)) * -10000.0)[:, None, None, :]
        x = self.embeddings(input_ids)
        for layer in self.encoder.layer:
            x = layer(x, mask_add)
        return x, None


def hf_bert_config(cfg: BertConfig) -> dict:
    """config.json of Hugging Face's BertModel for this shape."""
    return {
        "architectures": ["BertModel"], "model_type": "bert", "hidden_size": cfg.hidden,
        "num_hidden_layers": cfg.layers, "num_attention_heads": cfg.heads, "intermediate_size": cfg.width,
        "hidden_act": "gelu", "max_position_embeddings": cfg.max_seq, "type_vocab_size": cfg.type_vocab,
        "vocab_size": cfg.vocab, "layer_norm_eps": cfg.norm_eps, "pad_token_id": PAD_ID,
        "position_embedding_type": "absolute", "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
    }


@torch.no_grad()
def init_random_(model: BertForMLM, seed: int) -> None:
    """Random weights that exercise every part: O(1) activations, no near-ties in tree decisions."""
    torch.manual_seed(seed)
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            if name == "decoder":
                continue  # tied to the word embedding
            module.weight.normal_(0.0, 1.0 / math.sqrt(module.in_features))
            if module.bias is not None:
                module.bias.uniform_(-0.5, 0.5)
        elif isinstance(module, nn.Embedding):
            # The spread of trained BERT embeddings (std about 0.05): the tied decoder then gives
            # logits of a real model's size. A unit-variance table makes them O(30), where the
            # summation order of a 768-term float32 dot product alone moves them by ~1e-4.
            module.weight.normal_(0.0, 0.05)
            if name.endswith(("word_embedding", "word_embeddings")):
                module.weight[PAD_ID].zero_()  # positions and types keep row 0: every token uses it
        elif isinstance(module, nn.LayerNorm):
            module.weight.copy_(1.0 + 0.1 * torch.randn_like(module.weight))
            module.bias.copy_(0.1 * torch.randn_like(module.bias))
        elif isinstance(module, ScaledSinusoidal):
            module.scale_factor.fill_(1.5 / math.sqrt(module.pe.shape[1]))


def build_model(cfg: BertConfig, seed: int) -> nn.Module:
    model = PostNormBert(cfg) if cfg.arch == "bert" else BertForMLM(cfg)
    init_random_(model, seed)
    return model.eval()


def arch_config(cfg: BertConfig) -> dict:
    """The `arch` block of an HF config.json for this model, with the crammed-bert yaml's keys."""
    arch = {
        "num_transformer_layers": cfg.layers,
        "hidden_size": cfg.hidden,
        "intermed_type": "fff" if cfg.ff == "fff" else "ff",
        "intermed_size": cfg.trees if cfg.ff == "fff" else cfg.width,
    }
    if cfg.ff == "fff":
        arch["intermed_depth"] = cfg.depth
    arch.update({
        "hidden_dropout_prob": 0.1,
        "norm": "LayerNorm",
        "norm_eps": cfg.norm_eps,
        "norm_scheme": "pre",
        "nonlin": "GELU",
        "tie_weights": True,
        "decoder_bias": False,
        "objective_layout": "MLM",
        "embedding": {
            "vocab_size": cfg.vocab,
            "pos_embedding": "scaled-sinusoidal",
            "dropout_prob": 0.1,
            "pad_token_id": PAD_ID,
            "max_seq_length": cfg.max_seq,
            "embedding_dim": cfg.hidden,
            "normalization": True,
            "stable_low_precision": False,
        },
        "attention": {
            "type": "self-attention",
            "causal_attention": False,
            "num_attention_heads": cfg.heads,
            "dropout_prob": 0.1,
            "skip_output_projection": False,
            "qkv_bias": False,
            "rotary_embedding": False,
            "seq_op_in_fp32": False,
            "sequence_op": "torch-softmax",
        },
        "ffn_layer_frequency": 1,
        "skip_head_transform": True,
        "use_bias": False,
        "final_norm": True,
    })
    return arch


def make_vocab(size: int) -> list:
    if size < len(SPECIAL_TOKENS):
        raise UserError(f"vocab must hold at least the {len(SPECIAL_TOKENS)} special tokens (got {size})")
    tokens = list(SPECIAL_TOKENS) + WORDS[: size - len(SPECIAL_TOKENS)]
    i = 0
    while len(tokens) < size:
        tokens.append(f"tok{i}")
        i += 1
    return tokens


def make_inputs(cfg: BertConfig, batch: int, seq: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Random ids in [5, V) with [CLS] first; row 0 full length, other rows padded at the end."""
    ids = torch.randint(FIRST_ORDINARY_ID, cfg.vocab, (batch, seq), dtype=torch.long)
    ids[:, 0] = CLS_ID
    mask = torch.ones(batch, seq, dtype=torch.float32)
    lengths = [seq] + [seq - int(torch.randint(0, seq, ())) for _ in range(batch - 1)]
    if batch >= 2 and seq >= 2 and all(n == seq for n in lengths):
        lengths[-1] = max(1, seq - max(1, seq // 3))
    for row, n in enumerate(lengths):
        ids[row, n:] = PAD_ID
        mask[row, n:] = 0.0
    return ids, mask


# ---------------------------------------------------------------------------- output files

def write_text(path: str, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def state_dict_arrays(model: nn.Module, skip_tied_decoder: bool) -> Dict[str, np.ndarray]:
    out = {}
    for name, tensor in model.state_dict().items():
        if skip_tied_decoder and name == "decoder.weight":
            continue
        out[name] = tensor.detach().cpu().to(torch.float32).contiguous().numpy()
    return out


# ---------------------------------------------------------------------------- CLI

def parse_args(argv):
    ap = argparse.ArgumentParser(
        description="Build a random crammedBERT (dense FF) or UltraFastBERT (FFF) model with our own PyTorch "
                    "reference code, and write it as an HF-style checkpoint directory plus reference inputs "
                    "and outputs (DIR/reference.safetensors) for checking fff's C++ BERT engine.",
        epilog="Files written into DIR: config.json, pytorch_model.bin (--format bin) or model.safetensors "
               "(--format safetensors; the tied decoder.weight omitted as HF does), vocab.txt, "
               "tokenizer_config.json, reference.safetensors (input_ids, attention_mask as float32 (B,S); "
               "hidden (B,S,H) after the final norm; logits (B,S,V)). Padded positions of hidden/logits are "
               "whatever the model computes there (padding masks keys only).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--out", required=True, metavar="DIR", help="output directory (created if missing)")
    ap.add_argument("--arch", choices=["crammed", "bert"], default="crammed",
                    help="crammed: pre-norm crammedBERT / UltraFastBERT; bert: the original post-norm BERT "
                         "(Hugging Face BertModel's checkpoint layout, no MLM head: no logits)")
    ap.add_argument("--ff", choices=["fff", "dense"], default=None,
                    help="feedforward kind (default: fff for crammed, dense for bert)")
    ap.add_argument("--hidden", type=int, default=64, help="hidden size H")
    ap.add_argument("--heads", type=int, default=4, help="attention heads (must divide H)")
    ap.add_argument("--layers", type=int, default=2, help="transformer layers")
    ap.add_argument("--vocab", type=int, default=120, help="vocabulary size V (ids 0..4 are the specials)")
    ap.add_argument("--width", type=int, default=96, help="dense FF intermediate width I (--ff dense)")
    ap.add_argument("--trees", type=int, default=2, help="FFF trees K (--ff fff)")
    ap.add_argument("--depth", type=int, default=3, help="FFF tree depth D (--ff fff)")
    ap.add_argument("--max-seq", type=int, default=128, help="max_seq_length of the positional table")
    ap.add_argument("--norm-eps", type=float, default=1e-12, help="LayerNorm epsilon")
    ap.add_argument("--batch", type=int, default=3, help="reference batch size B")
    ap.add_argument("--seq", type=int, default=16, help="reference sequence length S")
    ap.add_argument("--seed", type=int, default=0, help="torch.manual_seed for weights and inputs")
    ap.add_argument("--format", choices=["bin", "safetensors"], default="bin", help="checkpoint weight format")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads(N)")
    return ap.parse_args(argv)


def run(args) -> None:
    ff = args.ff or ("dense" if args.arch == "bert" else "fff")
    cfg = BertConfig(vocab=args.vocab, hidden=args.hidden, heads=args.heads, layers=args.layers, ff=ff,
                     width=args.width, trees=args.trees, depth=args.depth, max_seq=args.max_seq,
                     norm_eps=args.norm_eps, arch=args.arch)
    cfg.validate()
    if cfg.vocab <= FIRST_ORDINARY_ID:
        raise UserError(f"--vocab must be greater than {FIRST_ORDINARY_ID} so random ids in [5, V) exist")
    if args.batch < 1:
        raise UserError(f"--batch must be at least 1 (got {args.batch})")
    if not 1 <= args.seq <= cfg.max_seq:
        raise UserError(f"--seq must be in [1, --max-seq={cfg.max_seq}] (got {args.seq})")
    if args.threads is not None:
        if args.threads < 1:
            raise UserError(f"--threads must be at least 1 (got {args.threads})")
        torch.set_num_threads(args.threads)
    if args.batch < 2 or args.seq < 2:
        print("warning: with --batch < 2 or --seq < 2 no reference row has padding", file=sys.stderr)

    out = args.out
    if os.path.exists(out) and not os.path.isdir(out):
        raise UserError(f"--out {out} exists and is not a directory")
    os.makedirs(out, exist_ok=True)

    model = build_model(cfg, args.seed)
    ids, mask = make_inputs(cfg, args.batch, args.seq)
    with torch.inference_mode():
        hidden, logits = model(ids, mask)

    outputs = {"input_ids": ids.to(torch.float32).numpy(), "attention_mask": mask.numpy(),
               "hidden": hidden.numpy()}
    if logits is not None:
        outputs["logits"] = logits.numpy()
    if args.format == "bin":
        state = model.state_dict()  # decoder.weight and the word embedding share storage
        atomic_write(os.path.join(out, "pytorch_model.bin"), lambda f: torch.save(state, f))
        weights = "pytorch_model.bin"
    else:
        write_safetensors(os.path.join(out, "model.safetensors"), state_dict_arrays(model, True), {"format": "pt"})
        weights = "model.safetensors"
    if cfg.arch == "bert":
        config = hf_bert_config(cfg)
    else:
        config = {"architectures": ["ScriptableCrammedBERT"], "model_type": "crammedBERT",
                  "arch": arch_config(cfg)}
    write_text(os.path.join(out, "config.json"), json.dumps(config, indent=2) + "\n")
    write_text(os.path.join(out, "vocab.txt"), "".join(t + "\n" for t in make_vocab(cfg.vocab)))
    write_text(os.path.join(out, "tokenizer_config.json"), json.dumps({"do_lower_case": True}, indent=2) + "\n")
    write_safetensors(
        os.path.join(out, "reference.safetensors"),
        outputs,
        {"format": "fff-bert-reference", "arch": cfg.arch, "ff": cfg.ff, "seed": str(args.seed),
         "torch_version": torch.__version__})
    lengths = [int(n) for n in mask.sum(dim=1).tolist()]
    print(f"wrote {out}: {weights}, config.json, vocab.txt, tokenizer_config.json, reference.safetensors "
          f"({cfg.ff}, {cfg.layers} layers, hidden {cfg.hidden}, vocab {cfg.vocab}, batch {args.batch} x seq "
          f"{args.seq}, row lengths {lengths})")


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        run(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
