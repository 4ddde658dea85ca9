"""fff.SentenceEncoder: sentence embeddings from an fff-bert file (e.g. all-MiniLM-L6-v2 made by
scripts/get_minilm.sh, or its FFF conversion), as sentence-transformers' encode() gives them,
through the C++ path that `fff bert embed` and `fff serve` take (docs/embeddings.md)."""

from . import _fff


class SentenceEncoder:
    """SentenceEncoder(path, threads=None): loads an fff-bert file with its vocabulary.

    threads: encoder threads (None: every core). One encode() runs at a time per encoder (calls
    from several Python threads wait for each other; the GIL is released while encoding).
    Raises fff.Error naming the file if it cannot be read or carries no vocabulary.
    """

    def __init__(self, path, threads=None):
        if threads is not None and (isinstance(threads, bool) or int(threads) != threads):
            raise TypeError(f"threads must be an int or None, not {threads!r}")
        self._model = _fff._SentenceModel(str(path), 0 if threads is None else int(threads))

    @property
    def path(self):
        return self._model.path

    @property
    def threads(self):
        return self._model.threads

    def get_sentence_embedding_dimension(self):
        """The embedding width (the model's hidden size), as sentence-transformers names it."""
        return self._model.dim

    @property
    def max_seq_length(self):
        """Tokens per text, [CLS] and [SEP] included; longer texts are truncated."""
        return self._model.max_seq_length

    def encode(self, sentences, batch_size=32, normalize_embeddings=True):
        """Embeddings of `sentences` (a str, or a list/iterable of str) as a float32 numpy array:
        (len(sentences), dim), or (dim,) for a single str, as sentence-transformers returns them.

        Each is the mean of the final hidden states over the text's tokens, texts encoded
        batch_size at a time (each batch padded to its longest text). normalize_embeddings:
        L2-normalise each row. A model whose file says to normalise (all-MiniLM-L6-v2's Normalize
        module) always does, as in sentence-transformers, where that module is part of the model.
        """
        single = isinstance(sentences, str)
        texts = [sentences] if single else list(sentences)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError(f"sentences[{i}] is {type(t).__name__}, not str")
        if isinstance(batch_size, bool) or int(batch_size) != batch_size:
            raise TypeError(f"batch_size must be an int, not {batch_size!r}")
        normalize = bool(normalize_embeddings) or self._model.normalizes
        out = self._model.encode(texts, int(batch_size), normalize)
        return out[0] if single else out

    def __repr__(self):
        return (f"fff.SentenceEncoder('{self.path}', {self._model.description}, "
                f"dim={self._model.dim}, max_seq_length={self.max_seq_length}, "
                f"threads={self.threads})")
