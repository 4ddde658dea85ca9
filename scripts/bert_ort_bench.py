"""Times ONNX Runtime's CPU forward of an exported BERT encoder (scripts/export_onnx.py: inputs input_ids,
attention_mask, token_type_ids; output last_hidden_state), the deployed baseline for `fff bench bert --onnx`.
The repeat protocol is bert_torch_bench.py's: --warmup untimed runs, then the median of --repeats timed ones."""
import argparse
import json
import statistics
import sys
import time

from bench_args import int_list


class UserError(Exception):
    """A problem with the user's input; reported without a traceback."""


def id_list(text: str):
    return int_list(text, minimum=0, what="token ids")


def parse_args(argv):
    ap = argparse.ArgumentParser(
        description="Time ONNX Runtime (CPUExecutionProvider; graph optimisations ORT_ENABLE_ALL, "
                    "intra_op_num_threads = --threads, inter_op_num_threads 1, sequential execution) on "
                    "batches of random token ids of exactly --seq tokens, attention mask all ones, token types "
                    "0. Prints the median of --repeats timed runs after --warmup untimed ones.",
        epilog="With --json each line is a JSON object: framework, onnxruntime_version, model, seq, batch, "
               "threads, median_s, min_s, tokens_per_s (batch*seq/median_s), repeats, warmup, vocab, settings. "
               "With --pool-ids, first a line {\"pooled\": [...], \"ids\": n}: the mean over the sequence of "
               "last_hidden_state for that one sentence. On an error: {\"error\": message} and exit 1.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--onnx", required=True, help="the exported model (.onnx)")
    ap.add_argument("--vocab", type=int, required=True, help="vocabulary size: ids are drawn from [0, vocab)")
    ap.add_argument("--seq", type=int, default=128, help="sequence length")
    ap.add_argument("--batches", type=int_list, default=[1], help="grid of batch sizes, e.g. 1,32")
    ap.add_argument("--threads", type=int, default=1, help="intra-op threads")
    ap.add_argument("--repeats", type=int, default=10, help="timed runs per batch size")
    ap.add_argument("--warmup", type=int, default=2, help="untimed runs before timing")
    ap.add_argument("--allow-spinning", type=int, choices=[0, 1], default=1,
                    help="session.intra_op.allow_spinning (1 is ONNX Runtime's default)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the random ids")
    ap.add_argument("--pool-ids", type=id_list, default=None,
                    help="also print the mean-pooled last_hidden_state of this one sentence (comma-separated ids)")
    ap.add_argument("--json", action="store_true", help="print one JSON object per line")
    return ap.parse_args(argv)


def run(args) -> None:
    for name in ("vocab", "seq", "threads", "repeats"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name} must be at least 1 (got {getattr(args, name)})")
    if args.warmup < 0:
        raise UserError(f"--warmup must be at least 0 (got {args.warmup})")
    try:
        import numpy as np
        import onnxruntime as ort
    except ImportError as e:
        raise UserError(f"{sys.executable} cannot import onnxruntime ({e}); scripts/setup.sh installs it into "
                        "build/venv-ref") from None

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = args.threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    # Set explicitly (ORT's default is 1) so that the record states it: idle pool threads spin
    # for work instead of sleeping.
    options.add_session_config_entry("session.intra_op.allow_spinning", str(args.allow_spinning))
    options.log_severity_level = 3  # errors only: the optimiser's notes would clutter the benchmark
    try:
        session = ort.InferenceSession(args.onnx, sess_options=options, providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own exception types for unreadable models
        raise UserError(f"{args.onnx}: onnxruntime cannot load it: {e}") from None
    inputs = {i.name for i in session.get_inputs()}
    if "input_ids" not in inputs:
        raise UserError(f"{args.onnx}: no input named input_ids (inputs: {', '.join(sorted(inputs))}); "
                        "export it with scripts/export_onnx.py")
    outputs = [o.name for o in session.get_outputs()]
    output = "last_hidden_state" if "last_hidden_state" in outputs else outputs[0]

    def feed(ids):
        f = {"input_ids": ids}
        if "attention_mask" in inputs:
            f["attention_mask"] = np.ones_like(ids)
        if "token_type_ids" in inputs:
            f["token_type_ids"] = np.zeros_like(ids)
        return f

    if args.pool_ids is not None:
        bad = [i for i in args.pool_ids if i >= args.vocab]
        if bad:
            raise UserError(f"--pool-ids: id {bad[0]} is outside [0, {args.vocab})")
        hidden = session.run([output], feed(np.array([args.pool_ids], dtype=np.int64)))[0]
        pooled = hidden[0].astype(np.float64).mean(axis=0)
        print(json.dumps({"pooled": pooled.tolist(), "ids": len(args.pool_ids)}), flush=True)

    settings = {"provider": "CPUExecutionProvider", "graph_optimization_level": "ORT_ENABLE_ALL",
                "intra_op_num_threads": args.threads, "inter_op_num_threads": 1, "execution_mode": "ORT_SEQUENTIAL",
                "intra_op_allow_spinning": args.allow_spinning}
    rng = np.random.default_rng(args.seed)
    for batch in args.batches:
        f = feed(rng.integers(0, args.vocab, size=(batch, args.seq), dtype=np.int64))
        times = []
        for i in range(args.warmup + args.repeats):
            start = time.perf_counter()
            session.run([output], f)
            elapsed = time.perf_counter() - start
            if i >= args.warmup:
                times.append(elapsed)
        median = statistics.median(times)
        record = {"framework": "onnxruntime", "onnxruntime_version": ort.__version__, "model": args.onnx,
                  "seq": args.seq, "batch": batch, "threads": args.threads, "median_s": median, "min_s": min(times),
                  "tokens_per_s": batch * args.seq / median, "repeats": args.repeats, "warmup": args.warmup,
                  "vocab": args.vocab, "settings": settings}
        if args.json:
            print(json.dumps(record), flush=True)
        else:
            print(f"onnxruntime {ort.__version__} {args.onnx} seq {args.seq} batch {batch} threads {args.threads}: "
                  f"median {median * 1e3:.2f} ms (min {min(times) * 1e3:.2f} ms), {record['tokens_per_s']:.1f} "
                  "tokens/s", flush=True)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        run(args)
    except UserError as e:
        if args.json:  # fff bench bert reports it
            print(json.dumps({"error": str(e)}), flush=True)
        else:
            print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
