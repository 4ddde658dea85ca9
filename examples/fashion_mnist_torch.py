#!/usr/bin/python3
"""Train the FFF paper's leaf FFF classifier on Fashion-MNIST in an ordinary PyTorch loop.

The model is fff.torch.LeafFFF(784, 10, depth=4, leaf_width=8) (training width w = 128, leaf
width l = 8) behind the input standardisation, trained with SGD on cross-entropy plus the
hardening term h * (mean node entropy). The protocol is the paper's G_A: 9:1 train/validation
split, the model of the best validation epoch is kept, and G_A is its test accuracy (hard
inference, one leaf per image). Training stops early when the training accuracy has not improved
for --patience epochs, as `fff train` does.

    PYTHONPATH=build/python /usr/bin/python3 examples/fashion_mnist_torch.py
    PYTHONPATH=build/python /usr/bin/python3 examples/fashion_mnist_torch.py --epochs 5 --save m.safetensors
    build/fff eval m.safetensors          # the saved file is an ordinary fff classifier
"""

import argparse
import copy
import json
import sys
import time

import torch
import torch.nn.functional as F
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, TensorDataset

import fff
import fff.torch as ft


def accuracy(model, x, y, batch=8192):
    """Hard-inference accuracy (eval mode, no gradients: fff's inference kernels)."""
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            correct += int((model(x[i:i + batch]).argmax(-1) == y[i:i + batch]).sum())
    return correct / len(x)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--data", default="fashion-mnist",
                    help="data set name or IDX directory, as for `fff train --data`")
    ap.add_argument("--depth", type=int, default=4, help="tree depth d (2^d leaves)")
    ap.add_argument("--leaf-width", type=int, default=8, help="neurons per leaf l")
    ap.add_argument("--epochs", type=int, default=100, help="maximum epochs")
    ap.add_argument("--patience", type=int, default=10,
                    help="stop after this many epochs without a new best training accuracy")
    ap.add_argument("--batch", type=int, default=256, help="mini-batch size")
    ap.add_argument("--lr", type=float, default=0.2, help="SGD learning rate")
    ap.add_argument("--hardening", type=float, default=3.0,
                    help="weight h of the mean node entropy in the loss")
    ap.add_argument("--val-fraction", type=float, default=0.1, help="validation share")
    ap.add_argument("--seed", type=int, default=0, help="torch.manual_seed")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch.set_num_threads (fff's kernels follow it)")
    ap.add_argument("--save", metavar="PATH", help="write the best model as an fff file")
    ap.add_argument("--json", action="store_true", help="print one JSON object at the end")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)

    data = fff.load_dataset(args.data)
    x_all, y_all = (torch.from_numpy(a) for a in data["train"])
    x_test, y_test = (torch.from_numpy(a) for a in data["test"])
    perm = torch.randperm(len(x_all))
    n_val = round(len(x_all) * args.val_fraction)
    x_val, y_val = x_all[perm[:n_val]], y_all[perm[:n_val]]
    x_train, y_train = x_all[perm[n_val:]], y_all[perm[n_val:]]

    block = ft.LeafFFF(x_train.shape[1], data["num_classes"], depth=args.depth,
                       leaf_width=args.leaf_width)
    model = ft.Classifier(block, input_mean=float(x_train.mean()),
                          input_std=float(x_train.std()))
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr)
    # Whole batches are drawn by index (one gather per batch instead of one per image).
    train_set = TensorDataset(x_train, y_train)
    loader = DataLoader(train_set, batch_size=None,
                        sampler=BatchSampler(RandomSampler(train_set), args.batch, False))

    best = {"val_accuracy": -1.0}
    best_train, stale, start = -1.0, 0, time.time()
    print(f"{data['name']}: {len(x_train)} train, {n_val} validation, {len(x_test)} test rows; "
          f"{block._ops.describe()}", file=sys.stderr)
    for epoch in range(1, args.epochs + 1):
        model.train()
        total = 0.0
        for xb, yb in loader:
            optimizer.zero_grad()
            logits, entropy = model(xb, return_entropy=True)
            loss = F.cross_entropy(logits, yb) + args.hardening * entropy
            loss.backward()
            optimizer.step()
            total += float(loss) * len(xb)
        train_acc, val_acc = accuracy(model, x_train, y_train), accuracy(model, x_val, y_val)
        if val_acc > best["val_accuracy"]:
            best = {"epoch": epoch, "val_accuracy": val_acc, "train_accuracy": train_acc,
                    "state": copy.deepcopy(model.state_dict())}
        stale = 0 if train_acc > best_train else stale + 1
        best_train = max(best_train, train_acc)
        elapsed = time.time() - start
        eta = elapsed / epoch * (args.epochs - epoch)
        print(f"epoch {epoch:3d}  loss {total / len(x_train):.4f}  train {100 * train_acc:.2f}  "
              f"val {100 * val_acc:.2f}{'  *' if best['epoch'] == epoch else '   '}  "
              f"{elapsed:.0f} s (at most {eta:.0f} s left)", file=sys.stderr)
        if stale >= args.patience:
            print(f"no new best training accuracy for {args.patience} epochs: stopping",
                  file=sys.stderr)
            break

    model.load_state_dict(best["state"])
    g_a = accuracy(model, x_test, y_test)
    result = {"G_A": 100 * g_a, "M_A": 100 * best["train_accuracy"],
              "val_accuracy": 100 * best["val_accuracy"], "best_epoch": best["epoch"],
              "epochs_run": epoch, "seconds": time.time() - start}
    if args.save:
        fff.save(model, args.save, metadata={"trained_by": "examples/fashion_mnist_torch.py"})
    if args.json:
        print(json.dumps(result))
    else:
        print(f"G_A (test accuracy of the best-validation model, epoch {result['best_epoch']}): "
              f"{result['G_A']:.2f}; M_A {result['M_A']:.2f}; {result['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
