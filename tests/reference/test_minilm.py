"""all-MiniLM-L6-v2 end to end: the package's checkpoint converted by scripts/convert_bert.py, then
`fff bert embed` against Hugging Face transformers' BertModel with sentence-transformers' pooling
(attention-masked mean of the last hidden states, L2-normalised) on Debian's torch, float32, on
real text (Debian's fortunes). The tokenizer is checked on its own elsewhere; here the embeddings
are compared on the texts where fff's token ids equal Hugging Face's (the count is printed)."""

import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest

FORTUNES = "/usr/share/games/fortunes"
MAX_ABS = 1e-4  # issue 15's target: max abs difference of the normalised embeddings
MAX_LEN = 256  # sentence-transformers' max_seq_length for this model (sentence_bert_config.json)


def real_texts():
    """Single lines and whole fortunes (several lines joined: longer inputs, up to ~150 tokens)
    from every fortune file, in a fixed order, without duplicates."""
    lines, whole = [], []
    for path in sorted(glob.glob(os.path.join(FORTUNES, "*"))):
        if os.path.splitext(path)[1] in (".dat", ".u8") or os.path.islink(path) or not os.path.isfile(path):
            continue
        with open(path, "rb") as f:
            try:
                text = f.read().decode("utf-8")
            except UnicodeDecodeError:
                continue
        for fortune in text.split("\n%\n"):
            rows = [r.strip() for r in fortune.split("\n") if r.strip() and r.strip() != "%"]
            lines += rows
            if 2 <= len(rows) <= 12:
                whole.append(" ".join(rows))
    seen, out = set(), []
    # Every 40th line and every 50th whole fortune: all files represented, about 1,500 texts.
    for t in lines[::40] + whole[::50]:
        if t not in seen and "\r" not in t:
            seen.add(t)
            out.append(t)
    return out


@pytest.fixture(scope="module")
def converted(minilm_fff_file):
    return minilm_fff_file


def test_embeddings_match_transformers_on_real_text(minilm_dir, converted, fff_cli, fortunes,
                                                    tmp_path):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    cli = fff_cli
    texts = real_texts()
    assert len(texts) >= 1200, len(texts)
    text_file = tmp_path / "texts.txt"
    text_file.write_text("".join(t + "\n" for t in texts), encoding="utf-8")

    # fff: its token ids and its embeddings (2 threads, batches of 32 texts of unequal lengths).
    ids_out = subprocess.run([cli, "bert", "tokenize", converted, "--file", str(text_file)],
                             check=True, capture_output=True, text=True).stdout.splitlines()
    fff_ids = [json.loads(line) for line in ids_out]
    emb_path = tmp_path / "emb.f32"
    subprocess.run([cli, "bert", "embed", converted, "--file", str(text_file), "--threads", "2", "--batch", "32",
                    "--format", "binary", "--output", str(emb_path)], check=True, capture_output=True, text=True)
    fff_emb = np.fromfile(emb_path, dtype="<f4").reshape(len(texts), 384)

    # The reference: BertModel + masked mean pooling + L2 normalisation, float32.
    torch.set_num_threads(2)
    tok = transformers.AutoTokenizer.from_pretrained(minilm_dir)
    model = transformers.AutoModel.from_pretrained(minilm_dir, torch_dtype=torch.float32).eval()
    ref_ids, ref_emb = [], []
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths batch together
    by_index = {}
    with torch.inference_mode():
        for lo in range(0, len(order), 64):
            chunk = order[lo:lo + 64]
            batch = tok([texts[i] for i in chunk], padding=True, truncation=True, max_length=MAX_LEN,
                        return_tensors="pt")
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
            for row, i in enumerate(chunk):
                n = int(batch["attention_mask"][row].sum())
                by_index[i] = (batch["input_ids"][row, :n].tolist(), pooled[row].numpy())
    ref_ids = [by_index[i][0] for i in range(len(texts))]
    ref_emb = np.stack([by_index[i][1] for i in range(len(texts))])

    same = [i for i in range(len(texts)) if fff_ids[i] == ref_ids[i]]
    tokens = [len(ref_ids[i]) for i in same]
    diff = np.abs(fff_emb[same] - ref_emb[same])
    worst = int(np.argmax(diff.max(axis=1)))
    print(f"\nall-MiniLM-L6-v2: {len(same)} of {len(texts)} texts with identical token ids "
          f"({min(tokens)}-{max(tokens)} tokens); max abs embedding difference {diff.max():.3g} "
          f"(text {same[worst]}: {texts[same[worst]][:60]!r}), mean {diff.mean():.3g}; "
          f"norms {np.linalg.norm(fff_emb[same], axis=1).min():.6f}-"
          f"{np.linalg.norm(fff_emb[same], axis=1).max():.6f}")
    assert len(same) >= 1000, f"only {len(same)} of {len(texts)} texts tokenize identically"
    assert max(tokens) >= 64, "the compared texts should include long inputs"
    assert diff.max() <= MAX_ABS, f"max abs difference {diff.max():.3g} > {MAX_ABS}"


def test_embed_normalises_as_the_file_says_and_fill_mask_refuses(converted, fff_cli):
    cli = fff_cli
    out = subprocess.run([cli, "bert", "embed", converted, "--text", "A short sentence."],
                         check=True, capture_output=True, text=True).stdout
    v = np.array(json.loads(out))
    assert v.shape == (384,) and abs(np.linalg.norm(v) - 1.0) < 1e-5
    raw = subprocess.run([cli, "bert", "embed", converted, "--text", "A short sentence.", "--normalize", "no"],
                         check=True, capture_output=True, text=True).stdout
    r = np.array(json.loads(raw))
    assert abs(np.linalg.norm(r) - 1.0) > 1e-3  # the mean itself is not unit length
    np.testing.assert_allclose(r / np.linalg.norm(r), v, atol=1e-6)
    refused = subprocess.run([cli, "bert", "fill-mask", converted, "--text", "a [MASK] b"],
                             capture_output=True, text=True)
    assert refused.returncode != 0 and "no MLM head" in refused.stderr


@pytest.mark.parametrize("edit, needle", [
    (lambda c: c.update(hidden_act="gelu_new"), "hidden_act"),
    (lambda c: c.update(position_embedding_type="relative_key"), "position_embedding_type"),
    (lambda c: c.update(intermediate_size=1024), "encoder.layer.0.intermediate.dense.weight"),
    (lambda c: c.update(num_attention_heads=7), "num_attention_heads"),
])
def test_converter_refuses_what_fff_does_not_run(minilm_dir, tmp_path, edit, needle):
    """The real checkpoint with one config change (the other files linked, not copied)."""
    source = os.environ.get("FFF_SOURCE_DIR") or os.path.join(os.path.dirname(__file__), "..", "..")
    for name in os.listdir(minilm_dir):
        if name != "config.json":
            os.symlink(os.path.join(minilm_dir, name), tmp_path / name)
    with open(os.path.join(minilm_dir, "config.json")) as f:
        config = json.load(f)
    edit(config)
    (tmp_path / "config.json").write_text(json.dumps(config))
    r = subprocess.run([sys.executable, os.path.join(source, "scripts", "convert_bert.py"), str(tmp_path),
                        str(tmp_path / "out.safetensors")], capture_output=True, text=True)
    assert r.returncode == 1 and needle in r.stderr, r.stderr
    assert not (tmp_path / "out.safetensors").exists()
