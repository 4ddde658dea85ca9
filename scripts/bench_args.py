"""Command-line value parsers shared by the benchmark scripts (bert_torch_bench.py, bert_ort_bench.py)."""
import argparse


def int_list(text: str, minimum: int = 1, what: str = "integers"):
    """'1,32' -> [1, 32]; every value at least `minimum` (argparse reports the error)."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of {what}") from None
    if not values or any(v < minimum for v in values):
        raise argparse.ArgumentTypeError(f"{text!r} must list {what} >= {minimum}")
    return values
