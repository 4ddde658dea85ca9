"""fff.WordPiece on a small vocabulary written here: ids, tokens, batches, options and errors
(the comparison with Hugging Face on real text is tests/reference/test_wordpiece_hf.py)."""

import threading

import pytest

import fff

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "hello", "world", "un", "##aff", "##able",
         "cafe", "café", "!", ",", "中", "x", "##x"]


@pytest.fixture
def vocab_path(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(VOCAB) + "\n", encoding="utf-8")
    return str(path)


def test_encode_tokens_decode(vocab_path):
    tok = fff.WordPiece(vocab_path)
    assert tok.vocab_size == len(tok) == len(VOCAB)
    assert (tok.pad_id, tok.unk_id, tok.cls_id, tok.sep_id, tok.mask_id) == (0, 1, 2, 3, 4)
    assert tok.encode("Hello, unaffable WORLD!") == [2, 5, 13, 7, 8, 9, 6, 12, 3]
    assert tok.encode("Hello, unaffable WORLD!", add_special_tokens=False) == \
        [5, 13, 7, 8, 9, 6, 12]
    assert tok.tokens("unaffable zzz") == ["un", "##aff", "##able", "[UNK]"]
    assert tok.tokens("Café中x", add_special_tokens=True) == ["[CLS]", "cafe", "中", "x", "[SEP]"]
    assert tok.decode([2, 7, 8, 9, 12, 3]) == "unaffable !"
    assert tok.token_to_id("##aff") == 8 and tok.token_to_id("nope") is None
    assert tok.id_to_token(6) == "world"
    assert tok.encode("") == [2, 3]
    # No truncation: every piece of a long text comes back.
    assert len(tok.encode("x " * 1000)) == 1002


def test_options(vocab_path):
    cased = fff.WordPiece.from_file(vocab_path, lowercase=False)
    assert (cased.lowercase, cased.strip_accents) == (False, False)
    assert cased.encode("café Hello", add_special_tokens=False) == [11, 1]
    keep_accents = fff.WordPiece(vocab_path, strip_accents=False)
    assert keep_accents.encode("CAFÉ", add_special_tokens=False) == [11]
    short = fff.WordPiece(vocab_path, max_chars_per_word=3)
    assert short.encode("xxx xxxx", add_special_tokens=False) == [15, 16, 16, 1]
    assert "vocab.txt" in repr(short)


def test_encode_batch_matches_encode_across_threads(vocab_path):
    tok = fff.WordPiece(vocab_path)
    texts = [f"hello {'x' * (i % 7)} world, unaffable {i}" for i in range(2000)]
    want = [tok.encode(t) for t in texts]
    assert tok.encode_batch(texts) == want
    assert tok.encode_batch(texts, add_special_tokens=False) == [w[1:-1] for w in want]
    results = [None] * 4

    def run(k):
        results[k] = tok.encode_batch(texts)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r == want for r in results)


def test_errors_name_the_file(tmp_path, vocab_path):
    missing = str(tmp_path / "missing-vocab.txt")
    with pytest.raises(fff.Error, match="missing-vocab.txt"):
        fff.WordPiece(missing)
    dup = tmp_path / "dup.txt"
    dup.write_text("[UNK]\na\na\n", encoding="utf-8")
    with pytest.raises(fff.Error, match=r"dup\.txt.*line 3.*duplicate"):
        fff.WordPiece(str(dup))
    no_unk = tmp_path / "no-unk.txt"
    no_unk.write_text("a\nb\n", encoding="utf-8")
    with pytest.raises(fff.Error, match=r"no-unk\.txt.*\[UNK\]"):
        fff.WordPiece(str(no_unk))
    with pytest.raises(fff.Error, match="max_chars_per_word"):
        fff.WordPiece(vocab_path, max_chars_per_word=0)
    tok = fff.WordPiece(vocab_path)
    with pytest.raises(fff.Error, match="outside the vocabulary"):
        tok.id_to_token(len(VOCAB))
    no_cls = tmp_path / "no-cls.txt"
    no_cls.write_text("[UNK]\na\n", encoding="utf-8")
    plain = fff.WordPiece(str(no_cls))
    assert plain.encode("a", add_special_tokens=False) == [1]
    with pytest.raises(fff.Error, match=r"no-cls\.txt.*\[CLS\]"):
        plain.encode("a")
