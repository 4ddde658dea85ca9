"""fff: fast feedforward networks from Python, on fff's C++ library.

    import fff
    model = fff.Model.load("m.safetensors")   # written by `fff train --save`
    logits = model.predict(x)                 # x: (..., in_features) numpy array
    classes = logits.argmax(-1)

Errors from the library (a bad file, a wrong shape) are raised as fff.Error, a ValueError.
"""

from ._fff import Error, Model, __version__, load_dataset
from .files import load, save

__all__ = ["Error", "Model", "load", "load_dataset", "save", "__version__"]
