"""Times PyTorch's CPU encoder forward of crammedBERT / UltraFastBERT, or of the original post-norm BERT
(Hugging Face transformers' BertModel when installed), the baseline for fff's BERT benchmark."""
import argparse
import gc
import json
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import torch  # noqa: E402

import bert_reference as br  # noqa: E402
from bench_args import int_list  # noqa: E402


def ff_list(text: str):
    values = [v.strip() for v in text.split(",") if v.strip()]
    bad = [v for v in values if v not in ("dense", "fff")]
    if not values or bad:
        raise argparse.ArgumentTypeError(f"{text!r}: each entry must be 'dense' or 'fff'")
    return values


def parse_args(argv):
    ap = argparse.ArgumentParser(
        description="Time the PyTorch CPU forward of the encoder (embeddings + layers + final norm, not the MLM "
                    "decoder) of a randomly initialised crammedBERT (--ff dense) or UltraFastBERT (--ff fff) "
                    "model built by bert_reference.py, in eval mode under torch.inference_mode() with an "
                    "all-ones attention mask. Prints the median of --repeats timed runs after --warmup untimed "
                    "ones. Note: the FFF forward computes ALL K*(2^(D+1)-1) neurons and then masks them to each "
                    "token's tree path, as UltraFastBERT's own PyTorch code does, so its time is that of a dense "
                    "layer of that width, not of conditional execution.",
        epilog="One line per (ff, batch, threads) configuration; the model is built once per ff kind and "
               "reused. With --json each line is a JSON object: framework, torch_version, ff, layers, hidden, "
               "heads, seq, batch, threads, median_s, min_s, tokens_per_s (batch*seq/median_s), repeats, "
               "warmup, vocab, and width (dense) or trees and depth (fff).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--arch", choices=["crammed", "bert"], default="crammed",
                    help="crammed: bert_reference.py's crammedBERT; bert: the original post-norm BERT (as "
                         "all-MiniLM-L6-v2), run by transformers.BertModel with random weights when transformers "
                         "is importable, else by bert_reference.py's PostNormBert (the JSON says which)")
    ap.add_argument("--max-seq", type=int, default=None, help="position table size (default max(128, --seq))")
    ap.add_argument("--ff", type=ff_list, default=["dense"], help="dense, fff, or a list such as dense,fff")
    ap.add_argument("--layers", type=int, default=16, help="transformer layers")
    ap.add_argument("--hidden", type=int, default=768, help="hidden size H")
    ap.add_argument("--heads", type=int, default=12, help="attention heads")
    ap.add_argument("--width", type=int, default=3072, help="dense FF intermediate width")
    ap.add_argument("--trees", type=int, default=1, help="FFF trees K")
    ap.add_argument("--depth", type=int, default=11, help="FFF tree depth D")
    ap.add_argument("--vocab", type=int, default=32768, help="vocabulary size")
    ap.add_argument("--seq", type=int, default=128, help="sequence length")
    ap.add_argument("--batch", type=int, default=1, help="batch size (ignored when --batches is given)")
    ap.add_argument("--batches", type=int_list, default=None, help="grid of batch sizes, e.g. 1,8")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (ignored when --thread-list is given)")
    ap.add_argument("--thread-list", type=int_list, default=None, help="grid of thread counts, e.g. 1,2")
    ap.add_argument("--repeats", type=int, default=10, help="timed runs per configuration")
    ap.add_argument("--warmup", type=int, default=2, help="untimed runs before timing")
    ap.add_argument("--seed", type=int, default=0, help="seed for weights and inputs")
    ap.add_argument("--json", action="store_true", help="print one JSON object per line")
    return ap.parse_args(argv)


def run(args) -> None:
    for name in ("layers", "hidden", "heads", "width", "trees", "vocab", "seq", "batch", "threads", "repeats"):
        if getattr(args, name) < 1:
            raise br.UserError(f"--{name} must be at least 1 (got {getattr(args, name)})")
    if args.warmup < 0:
        raise br.UserError(f"--warmup must be at least 0 (got {args.warmup})")
    if args.vocab <= br.FIRST_ORDINARY_ID:
        raise br.UserError(f"--vocab must be greater than {br.FIRST_ORDINARY_ID}")
    batches = args.batches or [args.batch]
    threads_list = args.thread_list or [args.threads]

    max_seq = args.max_seq or max(128, args.seq)
    if max_seq < args.seq:
        raise br.UserError(f"--max-seq {max_seq} is below --seq {args.seq}")
    for ff in (["dense"] if args.arch == "bert" else args.ff):
        cfg = br.BertConfig(vocab=args.vocab, hidden=args.hidden, heads=args.heads, layers=args.layers, ff=ff,
                            width=args.width, trees=args.trees, depth=args.depth, max_seq=max_seq, arch=args.arch)
        cfg.validate()
        implementation = "bert_reference"
        if args.arch == "bert":
            encoder = hf_bert(cfg, args.seed)
            if encoder is not None:
                implementation = "transformers"
            else:
                encoder = br.build_model(cfg, args.seed)
        else:
            encoder = br.build_model(cfg, args.seed).encoder
        for batch in batches:
            ids = torch.randint(br.FIRST_ORDINARY_ID, cfg.vocab, (batch, args.seq), dtype=torch.long)
            ids[:, 0] = br.CLS_ID
            mask = torch.ones(batch, args.seq, dtype=torch.float32)
            for threads in threads_list:
                torch.set_num_threads(threads)
                times = []
                with torch.inference_mode():
                    for i in range(args.warmup + args.repeats):
                        start = time.perf_counter()
                        encoder(ids, mask)
                        elapsed = time.perf_counter() - start
                        if i >= args.warmup:
                            times.append(elapsed)
                median = statistics.median(times)
                record = {
                    "framework": "pytorch", "torch_version": torch.__version__, "arch": args.arch,
                    "implementation": implementation, "ff": ff, "layers": cfg.layers,
                    "hidden": cfg.hidden, "heads": cfg.heads, "seq": args.seq, "batch": batch, "threads": threads,
                    "median_s": median, "min_s": min(times), "tokens_per_s": batch * args.seq / median,
                    "repeats": args.repeats, "warmup": args.warmup, "vocab": cfg.vocab,
                }
                if ff == "dense":
                    record["width"] = cfg.width
                else:
                    record.update(trees=cfg.trees, depth=cfg.depth)
                if args.json:
                    print(json.dumps(record), flush=True)
                else:
                    shape = f"width {cfg.width}" if ff == "dense" else f"{cfg.trees}x depth {cfg.depth}"
                    print(f"pytorch {torch.__version__} {ff} ({shape}) layers {cfg.layers} hidden {cfg.hidden} "
                          f"seq {args.seq} batch {batch} threads {threads}: median {median * 1e3:.2f} ms "
                          f"(min {min(times) * 1e3:.2f} ms), {record['tokens_per_s']:.1f} tokens/s", flush=True)
        del encoder
        gc.collect()


def hf_bert(cfg, seed: int):
    """transformers.BertModel of cfg's shape with random weights (speed does not depend on them), or
    None without transformers. Called as encoder(ids, mask)."""
    try:
        import transformers
    except ImportError:
        return None
    torch.manual_seed(seed)
    config = transformers.BertConfig(vocab_size=cfg.vocab, hidden_size=cfg.hidden, num_hidden_layers=cfg.layers,
                                     num_attention_heads=cfg.heads, intermediate_size=cfg.width, hidden_act="gelu",
                                     max_position_embeddings=cfg.max_seq, type_vocab_size=cfg.type_vocab,
                                     layer_norm_eps=cfg.norm_eps)
    model = transformers.BertModel(config, add_pooling_layer=False).eval()

    def encoder(ids, mask):
        return model(input_ids=ids, attention_mask=mask).last_hidden_state
    return encoder


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        run(args)
    except br.UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
