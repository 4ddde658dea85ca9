"""fff: fast feedforward networks from Python, on fff's C++ library.

    import fff
    model = fff.Model.load("m.safetensors")   # written by `fff train --save`
    logits = model.predict(x)                 # x: (..., in_features) numpy array
    classes = logits.argmax(-1)

    tok = fff.WordPiece("vocab.txt")          # BERT's WordPiece, ids as Hugging Face's
    ids = tok.encode("Hello, world!")         # [CLS] ... [SEP]

Errors from the library (a bad file, a wrong shape) are raised as fff.Error, a ValueError.
"""

from ._fff import Error, Model, WordPiece, __version__, load_dataset
from .files import load, save

__all__ = ["Error", "Model", "WordPiece", "load", "load_dataset", "save", "__version__"]
