"""fff.bert: fff's BERT encoder files (format fff-bert, arch bert: the original post-norm BERT, as
all-MiniLM-L6-v2) as a PyTorch module whose feedforward blocks are fff.torch modules, for
training in PyTorch (e.g. distilling a converted model, scripts/distill_bert.py) and writing the
result back as a file `fff bert embed` runs.

    import torch, fff.bert
    model = fff.bert.load("models/minilm-leaf3.safetensors")     # leaf FFF blocks
    hidden = model(ids, attention_mask)                            # (B, S, H)
    emb = model.embed(ids, attention_mask)                         # pooled (and normalised)
    fff.bert.save(model, "out.safetensors")

The attention, norms and embeddings are written here in PyTorch from the BERT paper (Devlin et
al. 2019; the layout of docs/bert.md); the feedforward blocks run fff's kernels: LeafFFF for
leaf-fff files (train(): the soft mixture or hardened decisions; eval(): hard decisions, as
`fff bert embed`), DenseFF for dense ones. Parameter names are the file's tensor names, except
that a dense block's w1 and w2 are (in, out)-major here (DenseFF) and (out, in) in the file.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from . import _fff
from .torch import DenseFF, LeafFFF

__all__ = ["Bert", "load", "save"]


class _Norm(nn.Module):
    """LayerNorm with the file's parameter names (gain, bias)."""

    def __init__(self, hidden, eps):
        super().__init__()
        self.gain = nn.Parameter(torch.ones(hidden))
        self.bias = nn.Parameter(torch.zeros(hidden))
        self.eps = eps

    def forward(self, x):
        return F.layer_norm(x, (x.shape[-1],), self.gain, self.bias, self.eps)


class _Attention(nn.Module):
    """Multi-head self-attention; qkv's 3H rows go per head: q, k, v (head_dim rows each)."""

    def __init__(self, hidden, heads):
        super().__init__()
        self.heads, self.head_dim = heads, hidden // heads
        self.qkv = nn.Parameter(torch.empty(3 * hidden, hidden))
        self.qkv_bias = nn.Parameter(torch.zeros(3 * hidden))
        self.out = nn.Parameter(torch.empty(hidden, hidden))
        self.out_bias = nn.Parameter(torch.zeros(hidden))

    def forward(self, x, mask_add):
        b, s, h = x.shape
        qkv = F.linear(x, self.qkv, self.qkv_bias).view(b, s, self.heads, 3 * self.head_dim)
        q, k, v = (t.transpose(1, 2) for t in qkv.split(self.head_dim, dim=-1))  # (b, heads, s, hd)
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim)
        if mask_add is not None:
            scores = scores + mask_add  # (b, 1, 1, s): padding masked as keys
        context = torch.matmul(torch.softmax(scores, dim=-1), v)
        return F.linear(context.transpose(1, 2).reshape(b, s, h), self.out, self.out_bias)


class _Layer(nn.Module):
    """x = norm1(x + attn(x));  x = norm2(x + ff(x)), ff a LeafFFF (`leaf`) or DenseFF (`ff`)."""

    def __init__(self, hidden, heads, eps, ff_name, ff):
        super().__init__()
        self.attn = _Attention(hidden, heads)
        self.norm1 = _Norm(hidden, eps)
        self.ff_name = ff_name
        self.add_module(ff_name, ff)
        self.norm2 = _Norm(hidden, eps)

    def forward(self, x, mask_add, rows, entropy):
        """rows: the flat indices of the real tokens (None: all), the only rows the feedforward
        block computes (a padding row's output reaches no real token: padding is masked as keys);
        returns the new x and, when `entropy`, the block's mean node entropy (0 for dense)."""
        x = self.norm1(x + self.attn(x, mask_add))
        ff = getattr(self, self.ff_name)
        flat = x.reshape(-1, x.shape[-1])
        out = ff(flat if rows is None else flat.index_select(0, rows), return_entropy=entropy)
        y, h = out if entropy else (out, None)
        if rows is not None:
            y = torch.zeros_like(flat).index_copy(0, rows, y)
        return self.norm2(x + y.view_as(x)), h


def _meta_int(meta, key, path):
    try:
        return int(meta[key])
    except (KeyError, ValueError):
        raise _fff.Error(f"{path}: metadata '{key}' is missing or not an integer") from None


class Bert(nn.Module):
    """An original (post-norm) BERT encoder of an fff-bert file; build it with fff.bert.load.

    forward(input_ids, attention_mask=None, output_hidden_states=False, return_entropy=False):
    input_ids (B, S) int64, attention_mask (B, S) with 1 for real tokens (None: all real); token
    type 0 everywhere (single sentences). Returns the last hidden states (B, S, H); with
    output_hidden_states and/or return_entropy a tuple that adds the list of every layer's output
    and/or the mean over layers of the blocks' mean node entropy (the hardening term of LeafFFF
    in train()). Padding rows of the output are computed without their feedforward block (they
    are not what `fff bert embed` gives for padding; no real token depends on them). embed(...): the sentence embeddings `fff bert embed` makes: the
    mean of the last hidden states over real tokens, L2-normalised when the file says so."""

    def __init__(self, metadata, path="<model>", threads=None):
        super().__init__()
        if metadata.get("arch") != "bert":
            raise _fff.Error(f"{path}: fff.bert runs the original post-norm BERT (arch bert); "
                             f"this file's arch is '{metadata.get('arch', 'crammed')}'")
        self.metadata = dict(metadata)
        get = lambda key: _meta_int(metadata, key, path)
        H, heads, vocab = get("hidden"), get("heads"), get("vocab_size")
        self.hidden, self.max_seq = H, get("max_seq_length")
        self.normalize = metadata.get("sentence.normalize") == "1"
        eps = float(metadata["norm_eps"])
        self.embedding = nn.Module()
        self.embedding.word = nn.Parameter(torch.empty(vocab, H))
        self.embedding.position = nn.Parameter(torch.empty(self.max_seq, H))
        self.embedding.token_type = nn.Parameter(torch.empty(get("type_vocab_size"), H))
        self.embedding.norm = _Norm(H, eps)
        kind = metadata.get("ff")
        layers = []
        for _ in range(get("layers")):
            if kind == "leaf-fff":
                ff = LeafFFF(H, H, get("leaf_depth"), get("leaf_width"), activation="gelu",
                             threads=threads)
                layers.append(_Layer(H, heads, eps, "leaf", ff))
            elif kind == "ff":
                ff = DenseFF(H, get("ff_width"), H, activation="gelu", threads=threads)
                layers.append(_Layer(H, heads, eps, "ff", ff))
            else:
                raise _fff.Error(f"{path}: fff.bert runs dense (ff) and leaf-fff blocks; this "
                                 f"file's blocks are '{kind}'")
        self.layers = nn.ModuleList(layers)

    def forward(self, input_ids, attention_mask=None, output_hidden_states=False,
                return_entropy=False):
        if input_ids.dim() != 2:
            raise ValueError(f"Bert: input_ids must be (batch, seq), got {tuple(input_ids.shape)}")
        S = input_ids.shape[1]
        if S > self.max_seq:
            raise ValueError(f"Bert: {S} tokens exceed the model's {self.max_seq} positions")
        mask_add = rows = None
        if attention_mask is not None:
            if attention_mask.shape != input_ids.shape:
                raise ValueError(f"Bert: attention_mask has shape {tuple(attention_mask.shape)}, "
                                 f"input_ids {tuple(input_ids.shape)}")
            mask_add = ((1.0 - attention_mask.float()) * -1e30)[:, None, None, :]
            if not bool(attention_mask.bool().all()):
                rows = attention_mask.reshape(-1).nonzero().squeeze(1)
        e = self.embedding
        x = e.norm(e.word[input_ids] + e.position[:S] + e.token_type[0])
        states, entropies = [], []
        for layer in self.layers:
            x, entropy = layer(x, mask_add, rows, return_entropy)
            states.append(x)
            entropies.append(entropy)
        if not (output_hidden_states or return_entropy):
            return x
        out = (x,) + ((states,) if output_hidden_states else ())
        return out + ((torch.stack(entropies).mean(),) if return_entropy else ())

    def pool(self, hidden, attention_mask=None):
        """Mean over real tokens, L2-normalised when the file says so: (B, S, H) -> (B, H)."""
        if attention_mask is None:
            pooled = hidden.mean(dim=1)
        else:
            m = attention_mask.to(hidden.dtype)[..., None]
            pooled = (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1.0)
        return F.normalize(pooled, dim=-1, eps=1e-12) if self.normalize else pooled

    def embed(self, input_ids, attention_mask=None):
        return self.pool(self.forward(input_ids, attention_mask), attention_mask)

    def ff_blocks(self):
        """Every layer's feedforward block (LeafFFF or DenseFF), in order."""
        return [getattr(layer, layer.ff_name) for layer in self.layers]


def _dense_key(name):
    parts = name.split(".")
    return len(parts) == 4 and parts[0] == "layers" and parts[2] == "ff" and parts[3] in ("w1", "w2")


def load(path, threads=None):
    """Reads an fff-bert file (arch bert; dense or leaf-fff blocks) into a Bert module; the file's
    metadata (tokenizer vocabulary included) is kept in its `metadata` for save."""
    path = str(path)
    metadata, tensors = _fff._read_bert(path)
    model = Bert(metadata, path, threads)
    state = {k: torch.from_numpy(v.T.copy() if _dense_key(k) else v) for k, v in tensors.items()}
    model.load_state_dict(state)
    return model


def save(model, path, metadata=None):
    """Writes a Bert module as an fff-bert file (atomically, and only once fff's loader accepts
    it): its load-time metadata updated by `metadata` (string entries)."""
    if not isinstance(model, Bert):
        raise TypeError(f"fff.bert.save: expected an fff.bert.Bert, got {type(model).__name__}")
    meta = dict(model.metadata)
    meta.update({str(k): str(v) for k, v in (metadata or {}).items()})
    tensors = {}
    for name, p in model.state_dict().items():
        t = p.detach().cpu().float()
        tensors[name] = (t.T if _dense_key(name) else t).contiguous().numpy()
    _fff._write_bert(str(path), meta, tensors)
