"""A small random fff-bert file (format in docs/bert.md) for tests that need a sentence-embedding
model without the real all-MiniLM-L6-v2: a post-norm BERT with dense FF blocks and biases, a
made-up vocabulary, L2-normalised embeddings truncated at `sentence_max_len` tokens. Written with
numpy alone (safetensors: 8-byte header length, JSON header, F32 data), so that the tests of the
CLI, the server and the Python package need nothing but the library to read it."""

import json
import struct

import numpy as np

WORDS = ["the", "capital", "of", "france", "is", "paris", ".", "a", "cat", "sat", "on", "mat",
         "dog", "runs", "fast", "slow", "red", "blue", "green", "house", "tree", "river", ","]
VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + WORDS


def write_random_bert(path, hidden=32, layers=2, heads=4, ff_width=48, max_seq=24,
                      sentence_max_len=12, seed=0):
    rng = np.random.default_rng(seed)
    V, H, I = len(VOCAB), hidden, ff_width

    def matrix(rows, cols):
        bound = np.sqrt(3.0 / cols)  # standard deviation 1/sqrt(fan_in)
        return rng.uniform(-bound, bound, (rows, cols))

    def vector(n, scale=0.1):
        return rng.uniform(-scale, scale, n)

    t = {
        "embedding.word": matrix(V, H) * 4,
        "embedding.position": matrix(max_seq, H) * 4,
        "embedding.token_type": matrix(2, H) * 4,
        "embedding.norm.gain": 1 + vector(H),
        "embedding.norm.bias": vector(H),
    }
    for i in range(layers):
        p = f"layers.{i}."
        t[p + "attn.qkv"] = matrix(3 * H, H)
        t[p + "attn.qkv_bias"] = vector(3 * H)
        t[p + "attn.out"] = matrix(H, H)
        t[p + "attn.out_bias"] = vector(H)
        t[p + "norm1.gain"] = 1 + vector(H)
        t[p + "norm1.bias"] = vector(H)
        t[p + "ff.w1"] = matrix(I, H)
        t[p + "ff.b1"] = vector(I)
        t[p + "ff.w2"] = matrix(H, I)
        t[p + "ff.b2"] = vector(H)
        t[p + "norm2.gain"] = 1 + vector(H)
        t[p + "norm2.bias"] = vector(H)
    meta = {
        "format": "fff-bert", "format_version": "1", "arch": "bert", "hidden": str(H),
        "layers": str(layers), "heads": str(heads), "vocab_size": str(V),
        "max_seq_length": str(max_seq), "pad_token_id": "0", "norm_eps": "1e-12",
        "type_vocab_size": "2", "ff": "ff", "ff_width": str(I), "fff_trees": "0",
        "fff_depth": "0", "leaf_depth": "0", "leaf_width": "0", "activation": "gelu",
        "sentence.normalize": "1", "sentence.max_seq_length": str(sentence_max_len),
        "tokenizer.vocab": "\n".join(VOCAB), "tokenizer.lowercase": "1",
    }
    header = {"__metadata__": meta}
    blobs, offset = [], 0
    for name, array in t.items():
        data = np.ascontiguousarray(array, dtype="<f4")
        header[name] = {"dtype": "F32", "shape": list(data.shape),
                        "data_offsets": [offset, offset + data.nbytes]}
        blobs.append(data.tobytes())
        offset += data.nbytes
    head = json.dumps(header).encode()
    head += b" " * (-len(head) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(head)))
        f.write(head)
        for b in blobs:
            f.write(b)
    return str(path)


def random_sentence(rng, min_words=1, max_words=16):
    """Words of the vocabulary (some texts longer than the model's sentence limit)."""
    n = int(rng.integers(min_words, max_words + 1))
    return " ".join(WORDS[int(i)] for i in rng.integers(0, len(WORDS), n))
