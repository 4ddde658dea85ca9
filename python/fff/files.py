"""fff.load and fff.save: fff's model files (safetensors with the config in the metadata) as
PyTorch modules. Classifier files go through the C++ library's own reader and writer, so a file
written here is one `fff eval` reads, and the other way round."""

from . import _fff


def load(path, threads=None):
    """Reads an fff file into fff.torch modules.

    - a classifier file (`fff train --save`) -> fff.torch.Classifier (its block plus the input
      standardisation); the file's metadata (config, training record) is in its `metadata`.
    - an encoder file (`fff bert`, e.g. from scripts/convert_bert.py) -> a list with each
      layer's feedforward block: NeuronFFF (UltraFastBERT) or DenseFF (crammedBERT).

    threads: the modules' thread count (None: follow torch.get_num_threads()).
    Raises fff.Error naming the file and what is wrong for anything else.
    """
    from . import torch as fff_torch  # PyTorch is needed only here, not for `import fff`

    path = str(path)
    fmt = _fff._file_metadata(path).get("format", "")
    if fmt == "fff-classifier":
        d = _fff._load_classifier(path)
        block = fff_torch._block_from_dict(d["block"], threads)
        model = fff_torch.Classifier(block, d["input_mean"], d["input_std"])
        model.metadata = dict(d["metadata"])
        return model
    if fmt == "fff-bert":
        return [fff_torch._block_from_dict(b, threads) for b in _fff._load_bert_ff_blocks(path)]
    raise _fff.Error(f"{path}: format '{fmt}': fff.load reads classifier files (fff-classifier) "
                     "and encoder files (fff-bert)")


def save(model, path, metadata=None):
    """Writes an fff.torch.Classifier, or a bare LeafFFF / NeuronFFF / DenseFF (saved as a
    classifier with input mean 0 and std 1), as a classifier file that `fff eval` and
    `fff info` read. metadata: extra string entries for the file (the config wins on clashes).
    The file is written atomically (a temporary file, then a rename)."""
    from . import torch as fff_torch

    if isinstance(model, fff_torch.Classifier):
        block, mean, std = model.block, model.input_mean, model.input_std
    elif isinstance(model, fff_torch._FFModule):
        block, mean, std = model, 0.0, 1.0
    else:
        raise TypeError("fff.save: expected an fff.torch.Classifier, LeafFFF, NeuronFFF or "
                        f"DenseFF, got {type(model).__name__}")
    tensors = {name: p.detach().cpu().float().contiguous().numpy()
               for name, p in block.named_parameters()}
    _fff._save_classifier(str(path), block._config, mean, std, tensors,
                          {str(k): str(v) for k, v in (metadata or {}).items()})
