"""fff.torch's modules under DistributedDataParallel: two processes (gloo on 127.0.0.1), each
training on its half of every batch, must end with the parameters one process reaches on the
whole batches. DDP averages the ranks' gradients, so the single-process reference minimises
the mean loss over the combined batch; with equal halves, the mean of the two halves' mean
losses (MSE and the leaf FFF's mean node entropy alike) is exactly that. Region leak is off, so
the run is deterministic; the only differences are float32 summation order (the all-reduce adds
two half-batch gradients), hence a float tolerance rather than bitwise equality.
"""

import datetime
import os
import socket
import time

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

import fff.torch as ft

STEPS, LR, HARDENING = 6, 0.2, 0.5
BATCH, IN, OUT = 16, 6, 3  # BATCH rows per step, split evenly between the two ranks
WORLD = 2
TIMEOUT_S = 60


class Net(nn.Module):
    """LeafFFF -> NeuronFFF -> DenseFF, one thread each so two ranks fit two cores."""

    def __init__(self):
        super().__init__()
        self.leaf = ft.LeafFFF(IN, 5, depth=2, leaf_width=3, activation="gelu", threads=1)
        self.neuron = ft.NeuronFFF(5, 4, depth=1, trees=2, activation="gelu", threads=1)
        self.dense = ft.DenseFF(4, 6, OUT, activation="relu", threads=1)

    def forward(self, x):
        h, entropy = self.leaf(x, return_entropy=True)
        return self.dense(self.neuron(h)), entropy


def make_problem():
    torch.manual_seed(1234)
    init = Net().state_dict()
    xs = torch.randn(STEPS, BATCH, IN)
    ts = torch.randn(STEPS, BATCH, OUT)
    return init, xs, ts


def train(model, xs, ts):
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    for x, t in zip(xs, ts):
        opt.zero_grad()
        y, entropy = model(x)
        (((y - t) ** 2).mean() + HARDENING * entropy).backward()
        opt.step()


def worker(rank, port, init, xs, ts, out_dir):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=WORLD, timeout=datetime.timedelta(seconds=TIMEOUT_S))
    try:
        model = Net()
        model.load_state_dict(init)
        ddp = nn.parallel.DistributedDataParallel(model)
        half = BATCH // WORLD
        rows = slice(rank * half, (rank + 1) * half)
        train(ddp, xs[:, rows], ts[:, rows])
        torch.save(model.state_dict(), os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_matches_one_process_on_the_whole_batch(tmp_path):
    if not dist.is_available():
        pytest.skip("torch.distributed is not available in this PyTorch build")
    if not dist.is_gloo_available():
        pytest.skip("torch.distributed has no gloo backend in this PyTorch build")
    init, xs, ts = make_problem()

    ctx = mp.spawn(worker, args=(free_port(), init, xs, ts, str(tmp_path)), nprocs=WORLD,
                   join=False)
    deadline = time.time() + TIMEOUT_S
    while not ctx.join(timeout=1):
        if time.time() > deadline:
            for p in ctx.processes:
                if p.is_alive():
                    p.terminate()
            pytest.fail(f"the DDP processes did not finish in {TIMEOUT_S} s")

    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD)]
    torch.set_num_threads(1)
    ref = Net()
    ref.load_state_dict(init)
    train(ref, xs, ts)
    expected = ref.state_dict()

    assert list(ranks[0]) == list(expected)
    for name, want in expected.items():
        # DDP hands both ranks the same averaged gradient: their parameters agree bitwise.
        assert torch.equal(ranks[0][name], ranks[1][name]), name
        assert not torch.equal(want, init[name]), f"{name} did not train"
        torch.testing.assert_close(ranks[0][name], want, rtol=1e-4, atol=1e-5,
                                   msg=lambda m, name=name: f"{name}: {m}")
