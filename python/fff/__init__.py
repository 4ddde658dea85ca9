"""fff: fast feedforward networks from Python, on fff's C++ library.

    import fff
    model = fff.Model.load("m.safetensors")   # written by `fff train --save`
    logits = model.predict(x)                 # x: (..., in_features) numpy array
    classes = logits.argmax(-1)

    tok = fff.WordPiece("vocab.txt")          # BERT's WordPiece, ids as Hugging Face's
    ids = tok.encode("Hello, world!")         # [CLS] ... [SEP]

    enc = fff.SentenceEncoder("models/all-MiniLM-L6-v2.safetensors")
    vectors = enc.encode(["first sentence", "second"])   # (2, 384) float32, unit rows

Errors from the library (a bad file, a wrong shape) are raised as fff.Error, a ValueError.
"""

from ._fff import Error, Model, WordPiece, __version__, load_dataset
from .files import load, save
from .sentence import SentenceEncoder

__all__ = ["Error", "Model", "SentenceEncoder", "WordPiece", "load", "load_dataset", "save",
           "__version__"]
