"""Converts a crammedBERT / UltraFastBERT checkpoint or a Hugging Face BertModel checkpoint (such as
sentence-transformers' all-MiniLM-L6-v2) into fff's BERT model file (safetensors)."""
import argparse
import json
import math
import os
import struct
import sys
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from safetensors_io import write_safetensors

FORMAT_VERSION = "1"
MAX_HEADER_BYTES = 100 * 1000 * 1000


class UserError(Exception):
    """A problem with the user's input; printed as `error: ...` without a traceback."""


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


# ---------------------------------------------------------------------------- config

class Arch:
    """Typed access to config.json's `arch` block; every error names the key and the value."""

    def __init__(self, arch: dict, path: str):
        self.arch = arch
        self.path = path

    def _lookup(self, key: str):
        node = self.arch
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return False, None
            node = node[part]
        return True, node

    def _fail(self, key: str, message: str):
        raise UserError(f"{self.path}: arch.{key} {message}")

    def has(self, key: str) -> bool:
        return self._lookup(key)[0]

    def get(self, key: str, default=None):
        found, value = self._lookup(key)
        return value if found else default

    def integer(self, key: str, minimum: int = 1) -> int:
        found, value = self._lookup(key)
        if not found or value is None:
            self._fail(key, "is missing")
        if isinstance(value, bool) or not (
                isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
            self._fail(key, f"= {json.dumps(value)} is not an integer")
        value = int(value)
        if value < minimum:
            self._fail(key, f"= {value} must be at least {minimum}")
        return value

    def number(self, key: str) -> float:
        found, value = self._lookup(key)
        if not found or value is None:
            self._fail(key, "is missing")
        try:
            if isinstance(value, bool):
                raise ValueError
            number = float(value)  # also accepts "1e-12", which some YAML loaders leave as a string
        except (TypeError, ValueError):
            self._fail(key, f"= {json.dumps(value)} is not a number")
        if not (number > 0 and math.isfinite(number)):
            self._fail(key, f"= {json.dumps(value)} must be a positive finite number")
        return number

    def flag(self, key: str, default: bool) -> bool:
        found, value = self._lookup(key)
        if not found or value is None:
            warn(f"{self.path}: arch.{key} is missing; assuming {json.dumps(default)} as in crammed-bert.yaml")
            return default
        if not isinstance(value, bool):
            self._fail(key, f"= {json.dumps(value)} is not true/false")
        return value

    def require_equal(self, key: str, expected, default=None, what: str = "") -> None:
        found, value = self._lookup(key)
        if not found or value is None:
            if default is None:
                self._fail(key, "is missing")
            warn(f"{self.path}: arch.{key} is missing; assuming {json.dumps(default)}")
            value = default
        if value != expected:
            self._fail(key, f"= {json.dumps(value)} is not supported (only {json.dumps(expected)}{what})")

    def require_flag(self, key: str, supported: bool, default: bool, why: str) -> None:
        if self.flag(key, default) != supported:
            self._fail(key, f"= {json.dumps(not supported)} is not supported ({why})")


class ModelShape:
    def __init__(self, **kw):
        self.__dict__.update(kw)


def is_hf_bert(config: dict) -> bool:
    """A Hugging Face BERT config (model_type bert), as opposed to crammedBERT's `arch` block."""
    return config.get("model_type") == "bert" and "arch" not in config


def read_hf_bert_config(config: dict, path: str) -> ModelShape:
    """The original post-norm BERT of Hugging Face's BertConfig; refuses what fff does not run."""
    def integer(key: str, minimum: int = 1, default=None) -> int:
        value = config.get(key, default)
        if value is None:
            raise UserError(f"{path}: {key} is missing")
        if isinstance(value, bool) or not isinstance(value, int):
            raise UserError(f"{path}: {key} = {json.dumps(value)} is not an integer")
        if value < minimum:
            raise UserError(f"{path}: {key} = {value} must be at least {minimum}")
        return value

    def require(key: str, allowed, default):
        value = config.get(key, default)
        if value not in allowed:
            raise UserError(f"{path}: {key} = {json.dumps(value)} is not supported (only "
                            f"{' or '.join(json.dumps(a) for a in allowed)})")

    # "gelu" is the exact (erf) GELU fff runs; the tanh approximations differ by up to ~1e-3.
    require("hidden_act", ["gelu"], "gelu")
    require("position_embedding_type", ["absolute"], "absolute")
    require("is_decoder", [False], False)
    require("add_cross_attention", [False], False)
    hidden = integer("hidden_size")
    heads = integer("num_attention_heads")
    if hidden % heads != 0:
        raise UserError(f"{path}: hidden_size = {hidden} is not divisible by num_attention_heads = {heads}")
    vocab = integer("vocab_size")
    pad = integer("pad_token_id", minimum=0, default=0)
    if pad >= vocab:
        raise UserError(f"{path}: pad_token_id = {pad} is not below vocab_size = {vocab}")
    eps = config.get("layer_norm_eps", 1e-12)
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not (eps > 0 and math.isfinite(eps)):
        raise UserError(f"{path}: layer_norm_eps = {json.dumps(eps)} must be a positive finite number")
    return ModelShape(arch="bert", hidden=hidden, heads=heads, layers=integer("num_hidden_layers", minimum=0),
                      vocab=vocab, max_seq=integer("max_position_embeddings"),
                      type_vocab=integer("type_vocab_size", default=2), pad=pad, norm_eps=float(eps), ff="dense",
                      width=integer("intermediate_size"), trees=0, depth=0, nodes=0)


def read_config(checkpoint_dir: str) -> ModelShape:
    path = os.path.join(checkpoint_dir, "config.json")
    config = read_json(path)
    if not isinstance(config, dict):
        raise UserError(f"{path}: top level is not a JSON object")
    if is_hf_bert(config):
        return read_hf_bert_config(config, path)
    if "arch" in config:
        arch_dict = config["arch"]
        if not isinstance(arch_dict, dict):
            raise UserError(f"{path}: 'arch' is not a JSON object")
    elif "num_transformer_layers" in config:
        arch_dict = config  # the arch keys at top level
    else:
        raise UserError(f"{path}: no 'arch' block and model_type is {json.dumps(config.get('model_type'))} "
                        "(expected a crammedBERT / UltraFastBERT config or model_type \"bert\")")
    a = Arch(arch_dict, path)

    intermed_type = a.get("intermed_type", "ff")
    if intermed_type not in ("ff", "fff"):
        a._fail("intermed_type", f"= {json.dumps(intermed_type)} is not supported (only \"ff\" or \"fff\")")
    a.require_equal("norm", "LayerNorm")
    a.require_equal("nonlin", "GELU")
    if a.has("norm_scheme"):
        a.require_equal("norm_scheme", "pre", what=": pre-norm layers")
    if a.has("ffn_layer_frequency"):
        a.require_equal("ffn_layer_frequency", 1, what=": a feedforward block in every layer")
    a.require_flag("use_bias", False, False, "dense layers without biases only")
    a.require_flag("decoder_bias", False, False, "the MLM decoder has no bias")
    a.require_flag("final_norm", True, True, "a final LayerNorm is required")
    a.require_flag("skip_head_transform", True, True, "no MLM prediction head transform")
    a.require_equal("embedding.pos_embedding", "scaled-sinusoidal")
    a.require_flag("embedding.normalization", True, True, "the embedding LayerNorm is required")
    a.require_equal("attention.type", "self-attention")
    a.require_flag("attention.causal_attention", False, False, "bidirectional attention only")
    a.require_flag("attention.qkv_bias", False, False, "the qkv projection has no bias")
    rotary = a.get("attention.rotary_embedding", False)
    if rotary:
        a._fail("attention.rotary_embedding", f"= {json.dumps(rotary)} is not supported (rotary embeddings)")
    a.require_equal("attention.sequence_op", "torch-softmax")
    a.require_flag("attention.skip_output_projection", False, False, "the attention output projection is required")

    hidden = a.integer("hidden_size")
    heads = a.integer("attention.num_attention_heads")
    if hidden % heads != 0:
        a._fail("hidden_size", f"= {hidden} is not divisible by arch.attention.num_attention_heads = {heads}")
    if hidden % 2 != 0:
        a._fail("hidden_size", f"= {hidden} is odd; the sinusoidal positions need an even size")
    embedding_dim = a.integer("embedding.embedding_dim")
    if embedding_dim != hidden:
        a._fail("embedding.embedding_dim", f"= {embedding_dim} differs from arch.hidden_size = {hidden} "
                                           "(not supported)")
    layers = a.integer("num_transformer_layers", minimum=0)
    vocab = a.integer("embedding.vocab_size")
    max_seq = a.integer("embedding.max_seq_length")
    pad = a.integer("embedding.pad_token_id", minimum=0) if a.has("embedding.pad_token_id") else 0
    if pad >= vocab:
        a._fail("embedding.pad_token_id", f"= {pad} is not below arch.embedding.vocab_size = {vocab}")
    norm_eps = a.number("norm_eps")
    width = trees = depth = 0
    if intermed_type == "fff":
        trees = a.integer("intermed_size")
        depth = a.integer("intermed_depth", minimum=0)
        if depth > 24:
            a._fail("intermed_depth", f"= {depth} is too deep (at most 24)")
    else:
        width = a.integer("intermed_size")
    return ModelShape(arch="crammed", hidden=hidden, heads=heads, layers=layers, vocab=vocab, max_seq=max_seq, pad=pad,
                      norm_eps=norm_eps, ff="fff" if intermed_type == "fff" else "dense", width=width,
                      trees=trees, depth=depth, nodes=(2 ** (depth + 1) - 1) if intermed_type == "fff" else 0)


def read_json(path: str):
    try:
        with open(path, "rb") as f:
            return json.loads(f.read().decode("utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path} does not exist") from None
    except UnicodeDecodeError as e:
        raise UserError(f"{path} is not UTF-8 text: {e}") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{path} is not valid JSON: {e}") from None


# ---------------------------------------------------------------------------- weights

class Source:
    """One stored tensor, converted to float32 only when needed."""

    def __init__(self, key: str, dtype: str, shape: Tuple[int, ...], load: Callable[[], np.ndarray]):
        self.key, self.dtype, self.shape, self._load = key, dtype, tuple(shape), load

    def f32(self) -> np.ndarray:
        return self._load()


SAFETENSORS_DTYPES = {"F32": ("<f4", 4), "F16": ("<f2", 2), "BF16": ("<u2", 2)}


def read_safetensors(path: str) -> Dict[str, Source]:
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise UserError(f"{path}: file is {size} bytes, too short for a safetensors header")
        n = struct.unpack("<Q", raw)[0]
        if n > size - 8 or n > MAX_HEADER_BYTES:
            raise UserError(f"{path}: header length {n} is impossible for a {size}-byte file")
        try:
            header = json.loads(f.read(n).decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise UserError(f"{path}: safetensors header is not valid JSON: {e}") from None
    if not isinstance(header, dict):
        raise UserError(f"{path}: safetensors header is not a JSON object")
    data_start, data_size = 8 + n, size - 8 - n
    sources = {}
    for key, info in header.items():
        if key == "__metadata__":
            continue
        if not isinstance(info, dict) or not {"dtype", "shape", "data_offsets"} <= set(info):
            raise UserError(f"{path}: tensor '{key}' lacks dtype/shape/data_offsets")
        dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
        if not (isinstance(shape, list) and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0
                                                for d in shape)):
            raise UserError(f"{path}: tensor '{key}' has an invalid shape {json.dumps(shape)}")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(isinstance(o, int) for o in offsets)
                and 0 <= offsets[0] <= offsets[1] <= data_size):
            raise UserError(f"{path}: tensor '{key}' has invalid data_offsets {json.dumps(offsets)}")
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if dtype in SAFETENSORS_DTYPES:
            np_dtype, itemsize = SAFETENSORS_DTYPES[dtype]
            if offsets[1] - offsets[0] != count * itemsize:
                raise UserError(f"{path}: tensor '{key}' has {offsets[1] - offsets[0]} bytes for shape {shape} "
                                f"of {dtype}")
        else:
            np_dtype = None

        def load(key=key, dtype=dtype, np_dtype=np_dtype, shape=tuple(shape), begin=offsets[0], count=count):
            if np_dtype is None:
                raise UserError(f"{path}: tensor '{key}' has dtype {dtype}; only F32, F16 and BF16 are supported")
            with open(path, "rb") as f:
                f.seek(data_start + begin)
                a = np.frombuffer(f.read(count * np.dtype(np_dtype).itemsize), dtype=np_dtype)
            if dtype == "BF16":
                a = (a.astype(np.uint32) << 16).view(np.float32)
            return a.astype(np.float32).reshape(shape)

        sources[key] = Source(key, dtype, shape, load)
    return sources


def read_torch(path: str) -> Dict[str, Source]:
    try:
        import torch
    except ImportError:
        raise UserError(f"reading {path} needs PyTorch (run with a python that has torch, e.g. /usr/bin/python3)") \
            from None
    try:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except TypeError:  # torch older than 1.13 has no weights_only
            state = torch.load(path, map_location="cpu")
    except Exception as e:  # torch raises many kinds of errors for a bad file
        raise UserError(f"{path}: cannot load with torch.load: {e}") from None
    if isinstance(state, dict):
        for wrapper in ("state_dict", "model"):
            inner = state.get(wrapper)
            if isinstance(inner, dict) and not any(torch.is_tensor(v) for v in state.values()):
                state = inner
                break
    if not isinstance(state, dict):
        raise UserError(f"{path}: does not hold a state dict (found {type(state).__name__})")
    sources = {}
    names = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}
    for key, value in state.items():
        if not torch.is_tensor(value):
            continue
        dtype = names.get(value.dtype, str(value.dtype).replace("torch.", ""))

        def load(key=key, value=value, dtype=dtype):
            if dtype not in SAFETENSORS_DTYPES:
                raise UserError(f"{path}: tensor '{key}' has dtype {dtype}; only float32, float16 and bfloat16 "
                                "are supported")
            return value.detach().to(torch.float32).contiguous().numpy().copy()

        sources[str(key)] = Source(str(key), dtype, tuple(value.shape), load)
    return sources


def find_weights(checkpoint_dir: str, weights: Optional[str]) -> str:
    if weights:
        if not os.path.isfile(weights):
            raise UserError(f"--weights {weights} does not exist or is not a file")
        return weights
    for name in ("model.safetensors", "pytorch_model.bin"):
        path = os.path.join(checkpoint_dir, name)
        if os.path.isfile(path):
            return path
    sharded = [n for n in ("model.safetensors.index.json", "pytorch_model.bin.index.json")
               if os.path.isfile(os.path.join(checkpoint_dir, n))]
    extra = f" (found {sharded[0]}: sharded checkpoints are not supported)" if sharded else ""
    raise UserError(f"{checkpoint_dir} has neither model.safetensors nor pytorch_model.bin{extra}; "
                    "name the weights file with --weights")


def read_weights(path: str, anchors: Tuple[str, ...] = ("encoder", "decoder")) -> Dict[str, Source]:
    if path.endswith(".safetensors"):
        raw = read_safetensors(path)
    elif path.endswith((".bin", ".pt", ".pth", ".ckpt")):
        raw = read_torch(path)
    else:
        with open(path, "rb") as f:
            head = f.read(9)
        raw = read_safetensors(path) if head[8:9] == b"{" else read_torch(path)
    # Strip any prefix (such as "model." or "bert.") before the first anchor path component
    # ("encoder" / "decoder" for crammedBERT, "embeddings" / "encoder" for Hugging Face's BERT).
    out: Dict[str, Source] = {}
    for key, src in raw.items():
        parts = key.split(".")
        start = next((i for i, p in enumerate(parts) if p in anchors), 0)
        name = ".".join(parts[start:])
        if name in out:
            raise UserError(f"{path}: keys '{out[name].key}' and '{key}' both map to '{name}' after stripping "
                            "the prefix")
        out[name] = src
    return out


# ---------------------------------------------------------------------------- vocabulary

def vocab_from_txt(path: str) -> List[str]:
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{path} is not UTF-8 text: {e}") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def vocab_from_tokenizer_json(path: str) -> Tuple[List[str], Optional[bool]]:
    tok = read_json(path)
    model = tok.get("model") if isinstance(tok, dict) else None
    vocab = model.get("vocab") if isinstance(model, dict) else None
    if not isinstance(vocab, dict):
        raise UserError(f"{path}: no model.vocab map (token -> id)")
    if model.get("type") not in (None, "WordPiece"):
        warn(f"{path}: tokenizer model type is {model.get('type')!r}, not WordPiece")
    by_id: Dict[int, str] = {}
    for token, i in vocab.items():
        if isinstance(i, bool) or not isinstance(i, int):
            raise UserError(f"{path}: model.vocab[{json.dumps(token)}] = {json.dumps(i)} is not an integer id")
        if i in by_id:
            raise UserError(f"{path}: id {i} is used by both {json.dumps(by_id[i])} and {json.dumps(token)}")
        by_id[i] = token
    missing = [i for i in range(len(by_id)) if i not in by_id]
    if missing:
        raise UserError(f"{path}: model.vocab ids are not 0..{len(by_id) - 1} without gaps (id {missing[0]} is "
                        "missing)")
    return [by_id[i] for i in range(len(by_id))], normalizer_lowercase(tok.get("normalizer"))


def normalizer_lowercase(norm) -> Optional[bool]:
    if not isinstance(norm, dict):
        return None
    kind = norm.get("type")
    if kind == "BertNormalizer":
        return bool(norm.get("lowercase", True))
    if kind == "Lowercase":
        return True
    if kind == "Sequence":
        found = [normalizer_lowercase(n) for n in norm.get("normalizers", [])]
        return any(found) if any(f is not None for f in found) else False
    return False


def find_vocab(checkpoint_dir: str, vocab_arg: Optional[str]):
    """Returns (tokens or None, lowercase, the file the tokens came from)."""
    tokens, json_lower, source = None, None, None
    tokenizer_json = os.path.join(checkpoint_dir, "tokenizer.json")
    if vocab_arg:
        if not os.path.isfile(vocab_arg):
            raise UserError(f"--vocab {vocab_arg} does not exist or is not a file")
        source = vocab_arg
        if vocab_arg.endswith(".json"):
            tokens, json_lower = vocab_from_tokenizer_json(vocab_arg)
        else:
            tokens = vocab_from_txt(vocab_arg)
    elif os.path.isfile(os.path.join(checkpoint_dir, "vocab.txt")):
        source = os.path.join(checkpoint_dir, "vocab.txt")
        tokens = vocab_from_txt(source)
    elif os.path.isfile(tokenizer_json):
        source = tokenizer_json
        tokens, json_lower = vocab_from_tokenizer_json(tokenizer_json)
    if json_lower is None and source != tokenizer_json and os.path.isfile(tokenizer_json):
        tok = read_json(tokenizer_json)
        if isinstance(tok, dict):
            json_lower = normalizer_lowercase(tok.get("normalizer"))

    # do_lower_case in tokenizer_config.json wins, then the tokenizer.json normalizer, else lower-case.
    lowercase = True if json_lower is None else json_lower
    tc = os.path.join(checkpoint_dir, "tokenizer_config.json")
    if os.path.isfile(tc):
        conf = read_json(tc)
        if not isinstance(conf, dict):
            raise UserError(f"{tc}: top level is not a JSON object")
        value = conf.get("do_lower_case")
        if value is not None:
            if not isinstance(value, bool):
                raise UserError(f"{tc}: do_lower_case = {json.dumps(value)} is not true/false")
            lowercase = value
    return tokens, lowercase, source


# ---------------------------------------------------------------------------- conversion

def convert(checkpoint_dir: str, out_path: str, vocab_arg: Optional[str], weights_arg: Optional[str]) -> str:
    if not os.path.isdir(checkpoint_dir):
        raise UserError(f"{checkpoint_dir} is not a directory")
    out_dir = os.path.dirname(os.path.abspath(out_path))
    if not os.path.isdir(out_dir):
        raise UserError(f"output directory {out_dir} does not exist")
    if os.path.isdir(out_path):
        raise UserError(f"output {out_path} is a directory")
    m = read_config(checkpoint_dir)
    weights_path = find_weights(checkpoint_dir, weights_arg)
    if m.arch == "bert":
        sources = read_weights(weights_path, ("embeddings", "encoder"))
        tensors = hf_bert_tensors(m, sources, weights_path, checkpoint_dir)
    else:
        sources = read_weights(weights_path)
        tensors = crammed_tensors(m, sources, weights_path, checkpoint_dir)
    tokens, lowercase, vocab_source = find_vocab(checkpoint_dir, vocab_arg)
    return write_model(m, tensors, tokens, lowercase, vocab_source, checkpoint_dir, out_path)


def check_plan(plan, sources: Dict[str, Source], weights_path: str, checkpoint_dir: str) -> None:
    """Every planned (key, shape) present with that shape, else one error listing the problems."""
    problems = []
    for key, shape in plan:
        if key not in sources:
            problems.append(f"missing tensor '{key}' (expected shape {list(shape)})")
        elif sources[key].shape != tuple(shape):
            problems.append(f"tensor '{key}' has shape {list(sources[key].shape)}, expected {list(shape)}")
    if problems:
        shown = problems[:12] + ([f"... and {len(problems) - 12} more"] if len(problems) > 12 else [])
        raise UserError(f"{weights_path} does not match {os.path.join(checkpoint_dir, 'config.json')}:\n  "
                        + "\n  ".join(shown))


def finite(src: Source, weights_path: str) -> np.ndarray:
    a = src.f32()
    if not np.all(np.isfinite(a)):
        raise UserError(f"{weights_path}: tensor '{src.key}' holds NaN or infinite values")
    return a


def hf_bert_tensors(m: ModelShape, sources: Dict[str, Source], weights_path: str,
                    checkpoint_dir: str) -> Dict[str, np.ndarray]:
    """fff's tensors of a Hugging Face BertModel checkpoint. The separate query, key and value
    projections are packed into fff's fused qkv, whose rows go per head: q, k, v (head_dim each)."""
    H, I, hd = m.hidden, m.width, m.hidden // m.heads
    plan = [("embeddings.word_embeddings.weight", (m.vocab, H)),
            ("embeddings.position_embeddings.weight", (m.max_seq, H)),
            ("embeddings.token_type_embeddings.weight", (m.type_vocab, H)),
            ("embeddings.LayerNorm.weight", (H,)), ("embeddings.LayerNorm.bias", (H,))]
    for i in range(m.layers):
        p = f"encoder.layer.{i}."
        for part in ("query", "key", "value"):
            plan += [(p + f"attention.self.{part}.weight", (H, H)), (p + f"attention.self.{part}.bias", (H,))]
        plan += [(p + "attention.output.dense.weight", (H, H)), (p + "attention.output.dense.bias", (H,)),
                 (p + "attention.output.LayerNorm.weight", (H,)), (p + "attention.output.LayerNorm.bias", (H,)),
                 (p + "intermediate.dense.weight", (I, H)), (p + "intermediate.dense.bias", (I,)),
                 (p + "output.dense.weight", (H, I)), (p + "output.dense.bias", (H,)),
                 (p + "output.LayerNorm.weight", (H,)), (p + "output.LayerNorm.bias", (H,))]
    check_plan(plan, sources, weights_path, checkpoint_dir)
    # Not needed for the encoder's hidden states: the position-id buffer, the pooler (BertModel's
    # tanh head, unused by mean-pooled sentence embeddings) and any pre-training heads.
    planned = {key for key, _ in plan}
    extra = [k for k in sources if k not in planned and k != "embeddings.position_ids"
             and not k.startswith(("pooler.", "cls."))]
    if extra:
        listed = ", ".join(extra[:8]) + (f", ... ({len(extra) - 8} more)" if len(extra) > 8 else "")
        warn(f"{weights_path}: ignoring {len(extra)} unexpected tensor(s): {listed}")

    def get(key: str) -> np.ndarray:
        return finite(sources[key], weights_path)

    t = {"embedding.word": get("embeddings.word_embeddings.weight"),
         "embedding.position": get("embeddings.position_embeddings.weight"),
         "embedding.token_type": get("embeddings.token_type_embeddings.weight"),
         "embedding.norm.gain": get("embeddings.LayerNorm.weight"),
         "embedding.norm.bias": get("embeddings.LayerNorm.bias")}
    for i in range(m.layers):
        p, o = f"encoder.layer.{i}.", f"layers.{i}."
        q, k, v = (get(p + f"attention.self.{n}.weight").reshape(m.heads, hd, H) for n in ("query", "key", "value"))
        qb, kb, vb = (get(p + f"attention.self.{n}.bias").reshape(m.heads, hd) for n in ("query", "key", "value"))
        t[o + "attn.qkv"] = np.stack([q, k, v], axis=1).reshape(3 * H, H)
        t[o + "attn.qkv_bias"] = np.stack([qb, kb, vb], axis=1).reshape(3 * H)
        t[o + "attn.out"] = get(p + "attention.output.dense.weight")
        t[o + "attn.out_bias"] = get(p + "attention.output.dense.bias")
        t[o + "norm1.gain"] = get(p + "attention.output.LayerNorm.weight")
        t[o + "norm1.bias"] = get(p + "attention.output.LayerNorm.bias")
        t[o + "ff.w1"] = get(p + "intermediate.dense.weight")
        t[o + "ff.b1"] = get(p + "intermediate.dense.bias")
        t[o + "ff.w2"] = get(p + "output.dense.weight")
        t[o + "ff.b2"] = get(p + "output.dense.bias")
        t[o + "norm2.gain"] = get(p + "output.LayerNorm.weight")
        t[o + "norm2.bias"] = get(p + "output.LayerNorm.bias")
    return {k: np.ascontiguousarray(a, dtype=np.float32) for k, a in t.items()}


def crammed_tensors(m: ModelShape, sources: Dict[str, Source], weights_path: str,
                    checkpoint_dir: str) -> Dict[str, np.ndarray]:
    H, V = m.hidden, m.vocab
    plan: List[Tuple[str, str, Tuple[int, ...], bool]] = [  # (source key, output name, shape, transpose)
        ("encoder.embedding.word_embedding.weight", "embedding.word", (V, H), False),
        ("encoder.embedding.pos_embedding.scale_factor", "embedding.pos_scale", (1,), False),
        ("encoder.embedding.norm.weight", "embedding.norm.gain", (H,), False),
        ("encoder.embedding.norm.bias", "embedding.norm.bias", (H,), False),
    ]
    for i in range(m.layers):
        p = f"encoder.layers.{i}."
        plan += [
            (p + "norm1.weight", f"layers.{i}.norm1.gain", (H,), False),
            (p + "norm1.bias", f"layers.{i}.norm1.bias", (H,), False),
            (p + "attn.self_attention.query_key_value.weight", f"layers.{i}.attn.qkv", (3 * H, H), False),
            (p + "attn.dense.weight", f"layers.{i}.attn.out", (H, H), False),
            (p + "norm2.weight", f"layers.{i}.norm2.gain", (H,), False),
            (p + "norm2.bias", f"layers.{i}.norm2.bias", (H,), False),
        ]
        if m.ff == "fff":
            N = m.trees * m.nodes
            plan += [
                (p + "ffn.linear_in.weight", f"layers.{i}.fff.w1", (N, H), False),
                (p + "ffn.linear_in.bias", f"layers.{i}.fff.b1", (N,), False),
                (p + "ffn.linear_out.weight", f"layers.{i}.fff.w2", (H, N), True),
            ]
        else:
            plan += [
                (p + "ffn.dense_in.weight", f"layers.{i}.ff.w1", (m.width, H), False),
                (p + "ffn.dense_out.weight", f"layers.{i}.ff.w2", (H, m.width), False),
            ]
    plan += [
        ("encoder.final_norm.weight", "final_norm.gain", (H,), False),
        ("encoder.final_norm.bias", "final_norm.bias", (H,), False),
    ]

    problems = []
    for key, _, shape, _ in plan:
        if key not in sources:
            problems.append(f"missing tensor '{key}' (expected shape {list(shape)})")
        elif sources[key].shape != shape:
            problems.append(f"tensor '{key}' has shape {list(sources[key].shape)}, expected {list(shape)}")
    if "decoder.weight" in sources and sources["decoder.weight"].shape != (V, H):
        problems.append(f"tensor 'decoder.weight' has shape {list(sources['decoder.weight'].shape)}, "
                        f"expected {[V, H]}")
    if problems:
        shown = problems[:12] + ([f"... and {len(problems) - 12} more"] if len(problems) > 12 else [])
        raise UserError(f"{weights_path} does not match {os.path.join(checkpoint_dir, 'config.json')}:\n  "
                        + "\n  ".join(shown))

    norm_factor = 1.0 / math.sqrt(H // m.heads)
    expected_keys = {key for key, _, _, _ in plan} | {"decoder.weight"}
    extra = []
    for key, src in sources.items():
        if key in expected_keys:
            continue
        if key.endswith(".attn.self_attention.norm_factor") or key == "encoder.embedding.pos_embedding.pe":
            if key.endswith("norm_factor"):
                value = src.f32().reshape(-1)
                if value.size != 1 or not math.isclose(float(value[0]), norm_factor, rel_tol=1e-6):
                    raise UserError(f"{weights_path}: '{key}' = {value.tolist()} but the engine scales attention "
                                    f"scores by head_dim^-0.5 = {norm_factor!r}")
            continue
        extra.append(key)
    if extra:
        listed = ", ".join(extra[:8]) + (f", ... ({len(extra) - 8} more)" if len(extra) > 8 else "")
        warn(f"{weights_path}: ignoring {len(extra)} unexpected tensor(s): {listed}")

    tensors: Dict[str, np.ndarray] = {}
    for key, name, _, transpose in plan:
        a = finite(sources[key], weights_path)
        tensors[name] = np.ascontiguousarray(a.T if transpose else a, dtype=np.float32)
    if "decoder.weight" in sources:
        if not np.array_equal(sources["decoder.weight"].f32(), tensors["embedding.word"]):
            raise UserError(f"{weights_path}: decoder.weight differs from "
                            "encoder.embedding.word_embedding.weight: untied decoder is not supported")
    return tensors


def sentence_settings(checkpoint_dir: str) -> Tuple[bool, int]:
    """(L2-normalise, max tokens) of a sentence-transformers model folder: modules.json lists a
    Normalize module, sentence_bert_config.json gives max_seq_length; (False, 0) without them. Only
    mean pooling is supported (1_Pooling/config.json, when present)."""
    normalize, max_len = False, 0
    modules_path = os.path.join(checkpoint_dir, "modules.json")
    if os.path.isfile(modules_path):
        modules = read_json(modules_path)
        if not isinstance(modules, list):
            raise UserError(f"{modules_path}: top level is not a JSON list")
        for module in modules:
            kind = module.get("type", "") if isinstance(module, dict) else ""
            if not isinstance(kind, str):
                raise UserError(f"{modules_path}: a module's type {json.dumps(kind)} is not a string")
            if kind.endswith(".Normalize"):
                normalize = True
            elif kind.endswith(".Pooling"):
                folder = module.get("path", "")
                if not isinstance(folder, str):
                    raise UserError(f"{modules_path}: the Pooling module's path {json.dumps(folder)} is not a string")
                pool_path = os.path.join(checkpoint_dir, folder, "config.json")
                pool = read_json(pool_path) if os.path.isfile(pool_path) else {}
                if not isinstance(pool, dict):
                    raise UserError(f"{pool_path}: top level is not a JSON object")
                modes = sorted(k for k, v in pool.items() if k.startswith("pooling_mode_") and v is True)
                if modes and modes != ["pooling_mode_mean_tokens"]:
                    raise UserError(f"{pool_path}: pooling {', '.join(modes)} is not supported (fff bert embed "
                                    "mean-pools: pooling_mode_mean_tokens only)")
            elif kind and not kind.endswith(".Transformer"):
                warn(f"{modules_path}: module {kind} is not applied by fff bert embed")
    st_path = os.path.join(checkpoint_dir, "sentence_bert_config.json")
    if os.path.isfile(st_path):
        st = read_json(st_path)
        value = st.get("max_seq_length") if isinstance(st, dict) else None
        if value is not None:
            if isinstance(value, bool) or not isinstance(value, int) or value < 2:
                raise UserError(f"{st_path}: max_seq_length = {json.dumps(value)} is not an integer >= 2")
            max_len = value
    return normalize, max_len


def write_model(m: ModelShape, tensors: Dict[str, np.ndarray], tokens, lowercase, vocab_source,
                checkpoint_dir: str, out_path: str) -> str:
    V, H = m.vocab, m.hidden
    meta = {
        "format": "fff-bert", "format_version": FORMAT_VERSION,
        "hidden": str(H), "layers": str(m.layers), "heads": str(m.heads), "vocab_size": str(V),
        "max_seq_length": str(m.max_seq), "pad_token_id": str(m.pad), "norm_eps": repr(m.norm_eps),
        # The block's kind in fff's one spelling (ff, neuron-fff); fff still reads dense and fff.
        "ff": "neuron-fff" if m.ff == "fff" else "ff",
        "ff_width": str(m.width), "fff_trees": str(m.trees), "fff_depth": str(m.depth),
        "activation": "gelu", "source": checkpoint_dir, "arch": m.arch,
    }
    if m.arch == "bert":
        meta["type_vocab_size"] = str(m.type_vocab)
        normalize, max_len = sentence_settings(checkpoint_dir)
        meta["sentence.normalize"] = "1" if normalize else "0"
        if max_len:
            meta["sentence.max_seq_length"] = str(max_len)
    if tokens is None:
        warn(f"no vocabulary found (no --vocab, {checkpoint_dir} has no vocab.txt or tokenizer.json); "
             "the model file then needs --vocab at run time")
    else:
        if len(tokens) != V:
            raise UserError(f"vocabulary {vocab_source} has {len(tokens)} tokens but the config's vocab_size "
                            f"is {V}")
        bad = next((i for i, t in enumerate(tokens) if "\n" in t or "\r" in t), None)
        if bad is not None:
            raise UserError(f"vocabulary {vocab_source}: token {bad} contains a line break")
        seen = {}
        for i, t in enumerate(tokens):
            if t in seen:
                warn(f"vocabulary {vocab_source}: token {json.dumps(t)} appears at ids {seen[t]} and {i}")
                break
            seen[t] = i
        meta["tokenizer.vocab"] = "\n".join(tokens)
        meta["tokenizer.lowercase"] = "1" if lowercase else "0"

    write_safetensors(out_path, tensors, meta)
    params = sum(a.size for a in tensors.values())
    if m.arch == "bert":
        ff = f"original BERT (post-norm), dense width {m.width}"
    elif m.ff == "fff":
        ff = f"fff {m.trees} tree(s) x depth {m.depth} ({m.trees * m.nodes} neurons, {m.trees * (m.depth + 1)} " \
             "active)"
    else:
        ff = f"dense width {m.width}"
    vocab_note = f"vocab {V}" + ("" if tokens is not None else " (no tokenizer vocabulary)")
    return (f"converted {m.layers} layers, {ff}, hidden {H}, heads {m.heads}, {vocab_note}, max_seq {m.max_seq}, "
            f"{params:,} parameters -> {out_path}")


# ---------------------------------------------------------------------------- output

def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        description="Convert a crammedBERT / UltraFastBERT checkpoint directory (config.json plus "
                    "model.safetensors or pytorch_model.bin, as uploaded to HuggingFace) into fff's BERT model "
                    "file: F32 safetensors with the weights under fff's names and the architecture and tokenizer "
                    "vocabulary in its metadata.",
        epilog="The vocabulary comes from --vocab, else CHECKPOINT_DIR/vocab.txt, else CHECKPOINT_DIR/"
               "tokenizer.json; lower-casing from tokenizer_config.json's do_lower_case (default true) or the "
               "tokenizer.json normalizer. Architectures this engine does not cover are refused with the config "
               "key that rules them out.")
    ap.add_argument("checkpoint", metavar="CHECKPOINT_DIR", help="directory with config.json and the weights")
    ap.add_argument("out", metavar="OUT.safetensors", help="model file to write (atomically)")
    ap.add_argument("--vocab", metavar="FILE", help="vocab.txt (one token per line, in id order) or tokenizer.json")
    ap.add_argument("--weights", metavar="FILE", help="weights file (.safetensors or torch .bin) instead of the "
                                                      "directory's model.safetensors / pytorch_model.bin")
    args = ap.parse_args(argv)
    try:
        summary = convert(args.checkpoint, args.out, args.vocab, args.weights)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except (OSError, MemoryError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
