#!/usr/bin/env python3
"""Distils a converted BERT (leaf FFF blocks, `fff bert convert`) against its dense original, end
to end: the student's feedforward blocks learn to make the dense model's hidden states after
every layer and its sentence embeddings, on real text (docs/minilm.md).

    scripts/distill_bert.py models/all-MiniLM-L6-v2.safetensors models/minilm-leaf3.safetensors \\
        models/minilm-leaf3-distilled.safetensors

The student is the converted file as an fff.bert.Bert (PyTorch attention, fff's LeafFFF kernels
for the blocks); only its feedforward blocks train (with --train ff+norms also the norms after
them, with --train layers every parameter of the layers, attention included); the embeddings
stay the dense model's. Loss per batch of
sentences: --embed-weight * mean (1 - cos(student embedding, dense embedding)) + --hidden-weight *
mean over layers of ||h_student - h_dense||^2 / ||h_dense||^2 over real tokens (+ --hardening *
mean node entropy with --mode soft). --mode hard (default) trains the leaves under the tree's
hard decisions, exactly the function inference computes (the nodes keep their fitted
hyperplanes); soft trains the soft mixture of leaves, so the nodes learn too.
Adam, linear warm-up over the first 5% of steps, then cosine decay to 0.

Texts: --texts FILE (one per line), by default the conversion split of Debian's fortunes that
scripts/minilm_quality.py uses (the evaluation files are never read). 256 of them are held out
to report the hard-inference cosine every --eval-every steps. A checkpoint (student, optimiser,
sampler state) is written atomically every --checkpoint-every steps to OUT.ckpt; --resume goes on
from it. --init random replaces the converted blocks by fff's random initialisation (the
random-start baseline). Needs PyTorch and fff's Python package (PYTHONPATH=build/python).
"""

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time

# Debian's torch runs its own OpenMP pool beside fff's: with OpenMP's default active waiting the
# two pools spin against each other on a small machine (the student's step took 1.6x as long).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import minilm_quality  # noqa: E402  (the fortune split)
from safetensors_io import atomic_write  # noqa: E402

try:
    import fff.bert
except ImportError:
    sys.path.insert(0, os.path.join(ROOT, "build", "python"))
    import fff.bert


def tokenize(cli, model, texts):
    """Token ids of each text as `fff bert embed` makes them ([CLS] ... [SEP], truncated)."""
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write("\n".join(texts) + "\n")
        name = f.name
    try:
        r = subprocess.run([cli, "bert", "tokenize", model, "--file", name], check=True,
                           capture_output=True, text=True)
    finally:
        os.unlink(name)
    ids = [json.loads(line) for line in r.stdout.splitlines() if line.strip()]
    if len(ids) != len(texts):
        sys.exit(f"error: fff bert tokenize gave {len(ids)} lines for {len(texts)} texts")
    return ids


def batch_of(ids, picks):
    seqs = [ids[i] for i in picks]
    S = max(len(s) for s in seqs)
    x = torch.zeros(len(seqs), S, dtype=torch.long)
    mask = torch.zeros(len(seqs), S, dtype=torch.long)
    for r, s in enumerate(seqs):
        x[r, :len(s)] = torch.tensor(s)
        mask[r, :len(s)] = 1
    return x, mask


def atomic_torch_save(obj, path):
    # Through safetensors_io.atomic_write: fsynced before the rename (a checkpoint that survives
    # power loss), and no temporary file left when the run is killed while writing.
    atomic_write(path, lambda f: torch.save(obj, f))


def eta(seconds):
    seconds = int(max(seconds, 0))
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m" if seconds >= 3600 else \
        f"{seconds // 60}m{seconds % 60:02d}s"


class Distiller:
    def __init__(self, a):
        self.a = a
        self.teacher = fff.bert.load(a.dense, threads=a.threads).eval()
        self.student = fff.bert.load(a.student, threads=a.threads)
        if self.student.metadata.get("ff") != "leaf-fff":
            sys.exit(f"error: {a.student}: the student must have leaf-fff blocks "
                     f"(`fff bert convert --to leaf-fff`), not '{self.student.metadata.get('ff')}'")
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        torch.manual_seed(a.seed)
        if a.init == "random":
            for block in self.student.ff_blocks():
                block.reset_parameters()
        self.params = []
        for name, p in self.student.named_parameters():
            train = ".leaf." in name or (a.train == "ff+norms" and ".norm2." in name) or \
                (a.train == "layers" and name.startswith("layers."))
            p.requires_grad_(train)
            if train:
                self.params.append(p)
        for block in self.student.ff_blocks():
            block.train_hardened = a.mode == "hard"
        self.opt = torch.optim.Adam(self.params, lr=a.lr)
        warmup = max(1, a.steps // 20)
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lambda s: (s + 1) / warmup if s < warmup else
            0.5 * (1 + math.cos(math.pi * (s - warmup) / max(1, a.steps - warmup))))

    def loss(self, x, mask):
        with torch.no_grad():
            t_last, t_states = self.teacher(x, mask, output_hidden_states=True)
            t_emb = self.teacher.pool(t_last, mask)
        s_last, s_states, entropy = self.student(x, mask, output_hidden_states=True,
                                                 return_entropy=True)
        s_emb = self.student.pool(s_last, mask)
        cos = torch.nn.functional.cosine_similarity(s_emb, t_emb, dim=-1)
        m = mask.to(torch.float32)[..., None]
        hidden = sum(((s - t).pow(2) * m).sum() / (t.pow(2) * m).sum()
                     for s, t in zip(s_states, t_states)) / len(t_states)
        loss = self.a.embed_weight * (1 - cos).mean() + self.a.hidden_weight * hidden
        if self.a.mode == "soft" and self.a.hardening > 0:
            loss = loss + self.a.hardening * entropy
        return loss, float(cos.mean()), float(hidden)

    def heldout_cosine(self, ids):
        """Mean cosine to the dense embeddings under hard inference (eval) on held-out texts."""
        self.student.eval()
        cos = []
        with torch.no_grad():
            for i in range(0, len(ids), 64):
                x, mask = batch_of(ids, range(i, min(i + 64, len(ids))))
                e_s = self.student.embed(x, mask)
                e_t = self.teacher.embed(x, mask)
                cos.append(torch.nn.functional.cosine_similarity(e_s, e_t, dim=-1))
        self.student.train()
        return float(torch.cat(cos).mean())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 2)[2])
    ap.add_argument("dense", help="the dense fff-bert file (the teacher)")
    ap.add_argument("student", help="the converted fff-bert file with leaf-fff blocks")
    ap.add_argument("out", help="where to write the distilled model (atomically)")
    ap.add_argument("--texts", help="training texts, one per line (default: fortune split)")
    ap.add_argument("--steps", type=int, default=2400, help="optimiser steps (default 2400)")
    ap.add_argument("--batch", type=int, default=32, help="sentences per step (default 32)")
    ap.add_argument("--lr", type=float, default=1e-3, help="peak Adam learning rate (1e-3)")
    ap.add_argument("--mode", choices=("hard", "soft"), default="hard")
    ap.add_argument("--hardening", type=float, default=0.1, help="soft: entropy weight (0.1)")
    ap.add_argument("--train", choices=("ff", "ff+norms", "layers"), default="ff")
    ap.add_argument("--embed-weight", type=float, default=1.0)
    ap.add_argument("--hidden-weight", type=float, default=1.0)
    ap.add_argument("--init", choices=("converted", "random"), default="converted")
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--checkpoint-every", type=int, default=250)
    ap.add_argument("--resume", action="store_true", help="go on from OUT.ckpt")
    ap.add_argument("--stop-after", type=int, metavar="N",
                    help="stop after N steps of this run, leaving the checkpoint (for --resume)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--fff", default=os.environ.get("FFF_CLI", os.path.join(ROOT, "build", "fff")))
    ap.add_argument("--json", help="write the run's record here")
    a = ap.parse_args()
    for flag in ("steps", "batch", "threads", "eval_every", "checkpoint_every", "stop_after"):
        if getattr(a, flag) is not None and getattr(a, flag) < 1:
            sys.exit(f"error: --{flag.replace('_', '-')} must be at least 1")
    if not a.lr > 0:
        sys.exit("error: --lr must be positive")
    for path in (a.dense, a.student, a.fff):
        if not os.path.exists(path):
            sys.exit(f"error: {path} does not exist")
    torch.set_num_threads(a.threads)

    if a.texts:
        with open(a.texts, encoding="utf-8", errors="replace") as f:
            texts = [line.strip() for line in f if line.strip()]
    else:
        texts, _ = minilm_quality.split_texts(0, a.seed)
    rng = np.random.default_rng(a.seed)
    texts = [texts[i] for i in rng.permutation(len(texts))]
    if len(texts) < 512:
        sys.exit(f"error: {len(texts)} texts; at least 512 are needed (256 are held out)")
    ids = tokenize(a.fff, a.dense, texts)
    held, train = ids[:256], ids[256:]

    d = Distiller(a)
    ckpt = a.out + ".ckpt"
    step, record = 0, {"args": vars(a), "train_texts": len(train), "heldout": []}
    if a.resume:
        if not os.path.exists(ckpt):
            sys.exit(f"error: --resume: {ckpt} does not exist")
        c = torch.load(ckpt)
        d.student.load_state_dict(c["student"])
        d.opt.load_state_dict(c["optimizer"])
        d.sched.load_state_dict(c["scheduler"])
        rng.bit_generator.state = c["sampler"]
        step, record = c["step"], c["record"]
        print(f"resuming at step {step} from {ckpt}", file=sys.stderr)
    else:
        record["heldout"].append({"step": 0, "cosine": d.heldout_cosine(held)})
        print(f"held-out cosine before distillation: {record['heldout'][-1]['cosine']:.4f}",
              file=sys.stderr)

    # Time and tokens of earlier runs of a resumed distillation are carried in the record.
    t0, tokens, last_print, first_step = time.monotonic(), 0, 0.0, step
    prior_seconds, prior_tokens = record.get("seconds", 0.0), record.get("tokens", 0)
    stop = min(a.steps, step + a.stop_after) if a.stop_after else a.steps
    while step < stop:
        x, mask = batch_of(train, rng.integers(0, len(train), a.batch))
        loss, cos, hidden = d.loss(x, mask)
        d.opt.zero_grad(set_to_none=True)
        loss.backward()
        d.opt.step()
        d.sched.step()
        step += 1
        tokens += int(mask.sum())
        now = time.monotonic() - t0
        if step % a.eval_every == 0 or step == a.steps:
            record["heldout"].append({"step": step, "cosine": d.heldout_cosine(held)})
        if now - last_print > 2 or step == a.steps:
            last_print = now
            h = record["heldout"][-1]
            print(f"\rstep {step}/{a.steps}  loss {float(loss):.4f}  batch cos {cos:.4f}  "
                  f"held-out cos {h['cosine']:.4f} (step {h['step']})  {tokens / now:.0f} tok/s  "
                  f"ETA {eta(now / (step - first_step) * (a.steps - step))}  ",
                  end="", file=sys.stderr, flush=True)
        if (step % a.checkpoint_every == 0 or step == stop) and step < a.steps:
            record["seconds"] = prior_seconds + time.monotonic() - t0
            record["tokens"] = prior_tokens + tokens
            atomic_torch_save({"student": d.student.state_dict(), "optimizer": d.opt.state_dict(),
                               "scheduler": d.sched.state_dict(),
                               "sampler": rng.bit_generator.state, "step": step,
                               "record": record}, ckpt)
    print(file=sys.stderr)
    if step < a.steps:
        print(f"stopped at step {step} of {a.steps}; go on with --resume (from {ckpt})",
              file=sys.stderr)
        return
    record["seconds"] = prior_seconds + time.monotonic() - t0
    record["tokens"] = prior_tokens + tokens
    record["tokens_per_second"] = record["tokens"] / max(record["seconds"], 1e-9)
    fff.bert.save(d.student, a.out, {
        "distill.steps": step, "distill.mode": a.mode, "distill.init": a.init,
        "distill.heldout_cosine": f"{record['heldout'][-1]['cosine']:.4f}"})
    if os.path.exists(ckpt):
        os.unlink(ckpt)
    print(f"wrote {a.out}: held-out cosine {record['heldout'][0]['cosine']:.4f} -> "
          f"{record['heldout'][-1]['cosine']:.4f}", file=sys.stderr)
    if a.json:
        atomic_write(a.json, lambda f: f.write(json.dumps(record, indent=1).encode()))


if __name__ == "__main__":
    main()
