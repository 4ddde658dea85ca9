#!/usr/bin/env python3
"""Train an fff.torch model with DistributedDataParallel on the CPU.

Each of --procs processes (gloo backend, on 127.0.0.1) takes its share of every batch; DDP
averages the gradients, so every process holds the same model after each step. The data is
Fashion-MNIST (Debian's dataset-fashion-mnist, read by fff.load_dataset) or, with
--data synthetic, a 10-class problem of the same shape.

    PYTHONPATH=build/python /usr/bin/python3 examples/ddp_train.py --procs 2 --epochs 5

The leaf FFF is trained as a soft mixture of its leaves plus h * (mean node entropy), which
pushes the node decisions towards 0 or 1, and evaluated with hard decisions (one leaf per row),
fff's fast inference path.
"""

import argparse
import datetime
import os
import socket
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

import fff
import fff.torch

def load_data(name, train_rows):
    """(x_train, y_train, x_test, y_test, source): the data set `fff train --data NAME` reads
    (images flattened, pixels scaled to [0, 1]), or with NAME "synthetic" ten Gaussian clusters
    of the same shape."""
    if name != "synthetic":
        data = fff.load_dataset(name)
        (xtr, ytr), (xte, yte) = data["train"], data["test"]
        xtr, ytr, xte, yte = (torch.from_numpy(a) for a in (xtr, ytr, xte, yte))
        source = data["name"]
    else:
        # Learnable, and the same in every process.
        g = torch.Generator().manual_seed(0)
        centres = torch.randn(10, 784, generator=g)
        ytr = torch.randint(0, 10, (60000,), generator=g)
        yte = torch.randint(0, 10, (10000,), generator=g)
        xtr = centres[ytr] + 3.0 * torch.randn(60000, 784, generator=g)
        xte = centres[yte] + 3.0 * torch.randn(10000, 784, generator=g)
        source = "synthetic"
    if train_rows:
        xtr, ytr = xtr[:train_rows], ytr[:train_rows]
    return xtr, ytr, xte, yte, source


def make_model(args, threads):
    if args.model == "leaf":
        return fff.torch.LeafFFF(784, 10, depth=args.depth, leaf_width=args.leaf_width,
                                 threads=threads)
    if args.model == "neuron":
        return fff.torch.NeuronFFF(784, 10, depth=args.depth, trees=args.trees, threads=threads)
    return fff.torch.DenseFF(784, args.leaf_width, 10, threads=threads)


def run(rank, args, port):
    threads = max(1, (os.cpu_count() or 1) // args.procs)  # do not oversubscribe the cores
    torch.set_num_threads(threads)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=args.procs, timeout=datetime.timedelta(seconds=120))
    xtr, ytr, xte, yte, source = load_data(args.data, args.train_rows)
    mean, std = xtr.mean(), xtr.std()  # standardise with the training set's statistics
    xtr, xte = (xtr - mean) / std, (xte - mean) / std

    torch.manual_seed(args.seed)  # the same initial model everywhere (DDP also broadcasts it)
    model = make_model(args, threads)
    ddp = DistributedDataParallel(model)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    if rank == 0:
        print(f"{source}: {len(xtr)} training rows, {len(xte)} test rows; {args.procs} "
              f"processes x {threads} thread(s); {model}")

    local = args.batch // args.procs  # rows per process per step
    for epoch in range(1, args.epochs + 1):
        start = time.time()
        # The same shuffle in every process (seeded by the epoch); each takes its slice.
        order = torch.randperm(len(xtr), generator=torch.Generator().manual_seed(epoch))
        ddp.train()
        totals = torch.zeros(3, dtype=torch.float64)  # loss sum, entropy sum, steps
        for s in range(0, len(order) - args.batch + 1, args.batch):
            rows = order[s + rank * local:s + (rank + 1) * local]
            logits, entropy = ddp(xtr[rows], return_entropy=True)
            loss = F.cross_entropy(logits, ytr[rows])
            opt.zero_grad()
            (loss + args.hardening * entropy).backward()  # DDP averages over the processes
            opt.step()
            totals += torch.tensor([loss.item(), entropy.item(), 1.0], dtype=torch.float64)
        dist.all_reduce(totals)  # sums over the processes, for the printout
        if rank == 0:
            model.eval()
            with torch.no_grad():  # hard decisions, on fff's inference kernels
                accuracy = (model(xte).argmax(-1) == yte).float().mean().item()
            entropy = f", node entropy {totals[1] / totals[2]:.4f}" if args.model == "leaf" else ""
            print(f"epoch {epoch}: loss {totals[0] / totals[2]:.4f}{entropy}, "
                  f"test accuracy {100 * accuracy:.2f}%, {time.time() - start:.1f} s", flush=True)
        dist.barrier()
    dist.destroy_process_group()


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--procs", type=int, default=2, help="DDP processes")
    p.add_argument("--epochs", type=int, default=5, help="passes over the training rows")
    p.add_argument("--model", choices=["leaf", "neuron", "dense"], default="leaf")
    p.add_argument("--depth", type=int, default=3, help="tree depth (leaf, neuron)")
    p.add_argument("--leaf-width", type=int, default=16,
                   help="neurons per leaf (leaf); hidden width (dense)")
    p.add_argument("--trees", type=int, default=4, help="trees (neuron)")
    p.add_argument("--batch", type=int, default=256, help="rows per step, over all processes")
    p.add_argument("--lr", type=float, default=2e-3, help="Adam's learning rate")
    p.add_argument("--hardening", type=float, default=1.0,
                   help="weight h of the mean node entropy in the loss (leaf)")
    p.add_argument("--data", default="fashion-mnist",
                   help="data set name or IDX directory as for `fff train --data`, or "
                        "'synthetic'")
    p.add_argument("--train-rows", type=int, default=0, help="use the first N rows (0: all)")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    if args.procs < 1 or args.batch % args.procs:
        p.error(f"--batch {args.batch} must be a multiple of --procs {args.procs} (>= 1)")
    if not (dist.is_available() and dist.is_gloo_available()):
        raise SystemExit("this PyTorch has no torch.distributed with the gloo backend")
    with socket.socket() as s:  # a free port for the processes to meet on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(run, args=(args, port), nprocs=args.procs)


if __name__ == "__main__":
    main()
