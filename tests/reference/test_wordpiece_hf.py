"""fff.WordPiece gives the token ids of Hugging Face's tokenizer for all-MiniLM-L6-v2 on real
text from this machine (Debian's fortunes, licences, copyright files, translations) and on
hand-written lines for the corners (accents, punctuation, CJK, emoji, control characters,
over-long words).

The reference is the fast tokenizer of the model's tokenizer.json, loaded with `tokenizers`
(0.15.2): it is what transformers' AutoTokenizer and sentence-transformers use for this model (a
BertTokenizerFast wraps the same object, checked below), so it is the tokenization the model's
embeddings were computed with. Transformers' slow Python BertTokenizer differs from it in a few
corners (final sigma, unassigned code points, one CJK range, Unicode 8.0's character classes);
fff follows the fast one.
Truncation and padding, which the tokenizer.json sets to 128, are switched off: every line is
compared whole.
"""

import glob
import os
import random
import struct
import time

import pytest

fff = pytest.importorskip("fff")
tokenizers = pytest.importorskip("tokenizers")

# Per language, the first lines of its translations, so that every script on the machine is in
# and no language dominates.
LINES_PER_LOCALE = 300
MIN_LINES = 10_000


def _text_lines(path):
    """Non-blank lines of a text file. Split on "\\n" only, so that \\r, \\f, \\v, U+0085, U+2028
    and the like stay inside lines (str.splitlines would split on them)."""
    with open(path, "rb") as f:
        text = f.read().decode("utf-8", errors="replace")
    return [line for line in text.split("\n") if line.strip()]


def _unique_files(pattern):
    seen, out = set(), []
    for path in sorted(glob.glob(pattern)):
        real = os.path.realpath(path)
        if os.path.isfile(real) and real not in seen:
            seen.add(real)
            out.append(path)
    return out


def _mo_strings(path):
    """The translated strings of a GNU .mo catalogue (header entry skipped)."""
    with open(path, "rb") as f:
        data = f.read()
    for order in ("<", ">"):
        magic, _, count, _, table = struct.unpack_from(order + "5I", data, 0)
        if magic == 0x950412DE:
            break
    else:
        return []
    out = []
    for i in range(count):
        length, offset = struct.unpack_from(order + "2I", data, table + 8 * i)
        text = data[offset:offset + length].decode("utf-8", errors="replace")
        if text.startswith("Project-Id-Version") or "Content-Type:" in text:
            continue
        out.extend(text.split("\x00"))  # plural forms
    return out


def gather_real_lines():
    """(source, line) pairs in a fixed order: sorted paths, file order within a file."""
    out = []
    fortunes = "/usr/share/games/fortunes"
    for path in _unique_files(os.path.join(fortunes, "*")):
        if path.endswith(".dat") or os.path.islink(path):
            continue
        out += [(path, line) for line in _text_lines(path) if line != "%"]
    for pattern in ("/usr/share/common-licenses/*", "/usr/share/doc/*/copyright"):
        for path in _unique_files(pattern):
            out += [(path, line) for line in _text_lines(path)]
    by_locale = {}
    for path in _unique_files("/usr/share/locale/*/LC_MESSAGES/*.mo"):
        locale = path.split(os.sep)[-3]
        lines = by_locale.setdefault(locale, [])
        if len(lines) >= LINES_PER_LOCALE:
            continue
        for text in _mo_strings(path):
            lines += [(path, line) for line in text.split("\n") if line.strip()]
        del lines[LINES_PER_LOCALE:]
    for locale in sorted(by_locale):
        out += by_locale[locale]
    return out


# The corners, written out: what real text has rarely or never.
HAND_WRITTEN = [
    "café naïve Ångström façade jalapeño crème brûlée São Paulo Zürich",
    "CAFÉ NAÏVE ÅNGSTRÖM Ærøskøbing ŒUVRE Straße STRASSE İstanbul ǅemal",
    "Cafe\u0301 combining: a\u0301\u0302\u0303 e\u0328\u0301 q\u0307\u0323 Z\u0335\u0336",
    "Ohm \u2126, Angstrom \u212b, Kelvin \u212a, ligatures \ufb01 \ufb00 \ufb03, fullwidth \uff21\uff42\uff43",
    "Greek: ΟΔΟΣ Σοφία ΣΑΣ σας λόγος Ἀθῆναι ΆΈΉΊΌΎΏ ϊϋΐΰ",
    "Russian: Съешь же ещё этих мягких французских булок, да выпей чаю. ЁЖ Ёж",
    "Wait...!!! ?!?! --- ((nested)) [[brackets]] {{braces}} <<>> @#$%^&*_+=|\\~`",
    "Quotes: “double” ‘single’ «guillemets» „German“ ‚low‘ 「corner」 『white』 ‹›",
    "Dashes – — ― ‐ ‑ ‒ and ellipsis … and bullets • · ‧ ※ † ‡ § ¶ ¡ ¿ ⁂",
    "Symbols that are not punctuation: € £ ¥ ¢ © ® ™ ° ± × ÷ ∞ ≈ ≠ ≤ ≥ √ ∑ ∫ ← → ↑ ↓",
    "中文：我爱北京天安门。你好，世界！繁體中文測試",
    "日本語：ひらがな カタカナ 漢字 ｶﾀｶﾅ 、。「」",
    "한국어: 안녕하세요, 세계! 한글 ㄱㄴㄷ",
    "Compatibility ideographs \uf900\uf901\ufa0e, extension B \U00020000\U0002a6d6, E x\U0002b820y x\U0002b920y",
    "emoji 😀😂🤖 👍🏽 👨‍👩‍👧 🇩🇪 ❤️ ☺ ✔ 🥺 🫠",
    "tabs\tand\tnewlines\r\nvertical\x0btab form\x0cfeed\x1c\x1d\x1e\x1f nel\x85 ls\u2028ps\u2029end",
    "controls \x01\x02\x03\x07\x08\x1b[31mred\x1b[0m \x7f\x80\x9f zero\u200bwidth\u200c\u200d\ufeffbom",
    "spaces:\u00a0nbsp\u2002en\u2003em\u2009thin\u202fnarrow\u205fmath\u3000ideographic\u1680ogham",
    "replacement \ufffd private \ue000\U000f0000 noncharacter \ufffe\uffff unassigned \u0378\U000e0080",
    "x" * 101,
    "y" * 100,
    "supercalifragilisticexpialidocious" * 3 + " short " + "é" * 101 + " " + "é" * 100,
    "pneumonoultramicroscopicsilicovolcanoconiosis antidisestablishmentarianism",
    "Numbers: 3.14159 1,000,000 1e-10 0xDEADBEEF 2024-12-07 12:34:56 ½ ¼ ² ³ ① Ⅻ ٣ ४ 𝟙",
    "MiXeD CaSe WoRdS iPhone eBay McDonald's O'Reilly don't won't y'all",
    "URLs https://www.debian.org/doc/?q=a&b=c#frag and mail user@example.com",
    "[CLS] special [SEP] tokens [MASK] in [PAD] text [UNK] and [cls] [mask] [MASK][MASK]",
    "Arabic: مرحبا بالعالم، كيف حالك؟ Hebrew: שָׁלוֹם עוֹלָם Hindi: नमस्ते दुनिया। Thai: สวัสดีชาวโลก",
    "Vietnamese: Tiếng Việt có dấu: ă â đ ê ô ơ ư Ắ Ằ Ẳ Ẵ Ặ",
    "Mathematical 𝐀𝐁𝐂 𝒜ℬ𝒞 𝔄𝔅ℭ 𝕬𝕭𝕮 superscripts ᵃᵇᶜ subscripts ₐₑₒ",
    "   leading and trailing spaces   ",
    "a",
    ".",
    "\u0301",
]


@pytest.fixture(scope="module")
def corpus():
    return gather_real_lines()


@pytest.fixture(scope="module")
def reference(minilm_dir):
    tok = tokenizers.Tokenizer.from_file(os.path.join(minilm_dir, "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    return tok


@pytest.fixture(scope="module")
def ours(minilm_dir):
    return fff.WordPiece(os.path.join(minilm_dir, "vocab.txt"))


def _report(ours, reference, texts, sources, got, want, limit=8):
    lines = []
    for i, (a, b) in enumerate(zip(got, want)):
        if a == b:
            continue
        first = next((k for k, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        lines.append(
            f"{sources[i]}: {texts[i]!r}\n"
            f"    first difference at token {first}\n"
            f"    fff: {[ours.id_to_token(t) for t in a[max(0, first - 3):first + 4]]}\n"
            f"    hf:  {[reference.id_to_token(t) for t in b[max(0, first - 3):first + 4]]}")
        if len(lines) == limit:
            break
    return "\n".join(lines)


def _compare(ours, reference, texts, sources):
    start = time.perf_counter()
    got = ours.encode_batch(texts)
    ours_s = time.perf_counter() - start
    start = time.perf_counter()
    want = [e.ids for e in reference.encode_batch(texts, add_special_tokens=True)]
    hf_s = time.perf_counter() - start
    bad = sum(a != b for a, b in zip(got, want))
    assert bad == 0, (f"{bad} of {len(texts)} lines differ from Hugging Face; the first:\n" +
                      _report(ours, reference, texts, sources, got, want))
    print(f"{len(texts)} lines, {sum(map(len, want))} tokens: fff {ours_s:.2f} s, "
          f"tokenizers {hf_s:.2f} s")


def test_enough_real_lines(corpus):
    from_fortunes = sum(src.startswith("/usr/share/games/fortunes/") for src, _ in corpus)
    assert len(corpus) >= MIN_LINES, f"only {len(corpus)} real lines on this machine"
    assert from_fortunes >= MIN_LINES // 2, f"only {from_fortunes} lines of fortunes"


def test_real_lines_identical(ours, reference, corpus):
    _compare(ours, reference, [line for _, line in corpus], [src for src, _ in corpus])


def test_hand_written_lines_identical(ours, reference):
    _compare(ours, reference, HAND_WRITTEN, [f"hand-written {i}" for i in range(len(HAND_WRITTEN))])
    # The lines do reach the corners they are for.
    assert ours.encode("x" * 101, add_special_tokens=False) == [ours.unk_id]
    assert len(ours.encode("y" * 100, add_special_tokens=False)) > 1
    assert ours.tokens("中文") == ["中", "文"]


# Pieces that interact: special tokens and their halves, combining marks after letters and after
# spaces, case pairs with special mappings, dropped and zero-width characters inside words.
FUZZ_PIECES = list("aAeEiIzZ09 .,'-!?[]#\t\n") + [
    "[MASK]", "[CLS]", "[SEP]", "[PAD]", "[UNK]", "[MA", "SK]", "##", "\u0301", "\u0308",
    "\u0327", "\u0323", "é", "É", "İ", "ı", "Σ", "ς", "ß", "ẞ", "ﬁ", "Å", "Ω", "中", "國",
    "\uf900", "ひ", "한", "\u200b", "\u200d", "\ufeff", "\x00", "\x7f", "\x85", "\u2028",
    "\u00a0", "\u3000", "\ufffd", "\ue000", "\u0378", "😀", "👍🏽", "—", "«", "€", "×", "\u0e31",
    "\u093f", "\u0902", "ـ", "\u05b0", "ǅ", "ǆ", "Ǆ", "ΐ", "\u2126", "\u212a", "\u2e43",
    "the", "un", "##able", "x" * 30]


def test_random_mixtures_identical(ours, reference):
    rng = random.Random(15)
    texts = ["".join(rng.choice(FUZZ_PIECES) for _ in range(rng.randint(0, 40)))
             for _ in range(20_000)]
    _compare(ours, reference, texts, [f"random mixture {i}" for i in range(len(texts))])


def _code_point_words(fmt):
    """Every code point but the surrogates, each in a word of its own, written by fmt."""
    return [fmt.format(chr(cp)) for cp in range(0x110000) if not 0xD800 <= cp <= 0xDFFF]


@pytest.mark.parametrize("fmt", ["{}", "x{}x"], ids=["alone", "between-letters"])
def test_every_code_point_identical(ours, reference, fmt):
    """Each code point's class (dropped, whitespace, punctuation, CJK, stripped mark, lower-case
    mapping, letter) as Hugging Face's tables have it, Unicode-version differences included.
    Words go 256 to a line, then a differing line is retried a word at a time for the report."""
    words = _code_point_words(fmt)
    texts = [" ".join(words[i:i + 256]) for i in range(0, len(words), 256)]
    got = ours.encode_batch(texts)
    want = [e.ids for e in reference.encode_batch(texts)]
    bad = [i for i, (a, b) in enumerate(zip(got, want)) if a != b]
    if bad:
        chunk = words[bad[0] * 256:(bad[0] + 1) * 256]
        mine = ours.encode_batch(chunk)
        theirs = [e.ids for e in reference.encode_batch(chunk)]
        diffs = [f"U+{ord(w.strip('x')):04X} {w!r}: fff {[ours.id_to_token(t) for t in a]} "
                 f"hf {[reference.id_to_token(t) for t in b]}"
                 for w, a, b in zip(chunk, mine, theirs) if a != b]
        pytest.fail(f"{len(bad)} of {len(texts)} lines of code points differ; in the first:\n" +
                    "\n".join(diffs[:10]))


def test_without_special_tokens_and_tokens(ours, reference, corpus):
    texts = [line for _, line in corpus[::50]] + HAND_WRITTEN
    want = reference.encode_batch(texts, add_special_tokens=False)
    assert ours.encode_batch(texts, add_special_tokens=False) == [e.ids for e in want]
    assert [ours.tokens(t) for t in texts] == [e.tokens for e in want]


def test_transformers_fast_tokenizer_is_the_same(minilm_dir, reference, corpus):
    """The reference is what transformers loads for this model."""
    transformers = pytest.importorskip("transformers")
    auto = transformers.AutoTokenizer.from_pretrained(minilm_dir)
    assert isinstance(auto, transformers.BertTokenizerFast)
    texts = [line for _, line in corpus[::20]] + HAND_WRITTEN
    assert auto(texts, truncation=False)["input_ids"] == \
        [e.ids for e in reference.encode_batch(texts)]


def test_binding_basics(ours, minilm_dir, tmp_path):
    assert ours.vocab_size == len(ours) == 30522
    assert (ours.pad_id, ours.unk_id, ours.cls_id, ours.sep_id, ours.mask_id) == \
        (0, 100, 101, 102, 103)
    assert ours.lowercase and ours.strip_accents and ours.max_chars_per_word == 100
    assert ours.token_to_id("hello") == 7592 and ours.token_to_id("not-a-token") is None
    assert ours.encode("Hello!") == [101, 7592, 999, 102]
    assert ours.decode(ours.encode("Hello, world!")) == "hello , world !"
    cased = fff.WordPiece.from_file(os.path.join(minilm_dir, "vocab.txt"), lowercase=False)
    assert not cased.lowercase and not cased.strip_accents
    missing = str(tmp_path / "missing.txt")
    with pytest.raises(fff.Error, match="missing.txt"):
        fff.WordPiece(missing)
    with pytest.raises(fff.Error, match="outside the vocabulary"):
        ours.id_to_token(30522)
