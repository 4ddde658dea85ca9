"""fff.torch's modules (LeafFFF, NeuronFFF, DenseFF) against independent float64 PyTorch
implementations written here from the math in /work/shared/DESIGN.md and the layer headers
(loops over leaves, levels and trees; nothing of fff is called by the references): forward
outputs, the leaf FFF's entropy, and every gradient, in train() and eval(), with and without
torch.no_grad(); region leak, hardened training, ties at zero, the inference engine seeing
weight changes, state_dict, copies, thread counts, input checks and a short training run.

Tolerances. The modules compute in float32 and the references in float64 from the same
(float32) parameter values, so the only differences are float32 rounding: each output or
gradient entry is a sum of at most a few hundred products of O(1) values here, whose rounding
error is a few times 1e-7 relative per operation, well below 1e-5 of the result's scale. We use
rtol=1e-4 with atol=1e-5 (RTOL/ATOL), still about 1e4 times smaller than what a wrong term (a
missing bias, a swapped child, a wrong leaf block, a sign) would change. Hard decisions are
compared only where the reference's node logits are farther than MARGIN from 0, so float32 and
float64 cannot route a row differently (the tests assert that margin instead of assuming it);
the exact-zero ties are tested on their own with logits that are exactly 0 in any precision.
torch.testing.assert_close fails on NaN (equal_nan is off), so no NaN can pass.
"""

import copy
import io
import math
import time

import pytest
import torch

import fff.torch as ft

RTOL, ATOL = 1e-4, 1e-5
MARGIN = 1e-3  # the smallest |node logit| at which float32 and float64 must route alike
ACTS = ["relu", "gelu", "identity"]


def close(actual, expected, what=""):
    assert torch.isfinite(expected).all(), f"{what}: the reference is not finite"
    torch.testing.assert_close(actual.detach().double(), expected.detach().double(), rtol=RTOL,
                               atol=ATOL, msg=lambda m: f"{what}: {m}")


# ---- the float64 references ------------------------------------------------------------------


def act_ref(name, z):
    if name == "relu":
        return torch.relu(z)  # relu'(0) = 0 in torch, as in fff
    if name == "gelu":
        return 0.5 * z * (1.0 + torch.erf(z / math.sqrt(2.0)))
    if name == "identity":
        return z
    raise ValueError(name)


def ref_params(module):
    """The module's float32 parameters as float64 leaves that record gradients."""
    return {k: v.detach().double().clone().requires_grad_(True)
            for k, v in module.named_parameters()}


def leaf_ref(P, x, depth, leaf_width, act, hard=False, flips=None):
    """Leaf FFF in float64: (y, mean entropy, node logits). hard: decisions [z >= 0] without
    gradient; flips (rows, n_nodes) bool: those decisions use 1 - p."""
    rows = x.shape[0]
    n_nodes, n_leaves = 2**depth - 1, 2**depth
    z = x @ P["nodes_w"].T + P["nodes_b"]  # (rows, n_nodes)
    q = torch.sigmoid(z)
    p = (z >= 0).double() if hard else q
    if flips is not None:
        p = torch.where(flips, 1.0 - p, p)
    if n_nodes > 0:
        qc = q.clamp(1e-6, 1.0 - 1e-6)
        entropy = -(qc * torch.log(qc) + (1.0 - qc) * torch.log(1.0 - qc)).mean()
    else:
        entropy = x.new_zeros(())
    y = x.new_zeros(rows, P["w2"].shape[1])
    for j in range(n_leaves):
        # Leaf j sits at heap position n_nodes + j: its path is j's bits, most significant first
        # (1 = right child 2i+2, 0 = left child 2i+1).
        mass = x.new_ones(rows)
        node = 0
        for level in range(depth):
            right = (j >> (depth - 1 - level)) & 1
            mass = mass * (p[:, node] if right else 1.0 - p[:, node])
            node = 2 * node + 1 + right
        cols = slice(j * leaf_width, (j + 1) * leaf_width)
        h = act_ref(act, x @ P["w1"][:, cols] + P["b1"][cols])
        y = y + mass[:, None] * (h @ P["w2"][cols] + P["b2"][j])
    return y, entropy, z


def neuron_ref(P, x, depth, trees, act):
    """Neuron FFF in float64: (y, visited rows of w1 (bool), decision logits)."""
    rows = x.shape[0]
    n = 2**(depth + 1) - 1
    out = P["w2"].shape[1]
    y = P["b"].expand(rows, out) if "b" in P else x.new_zeros(rows, out)
    visited = torch.zeros(trees * n, dtype=torch.bool)
    logits = []
    for t in range(trees):
        node = torch.zeros(rows, dtype=torch.long)
        for _ in range(depth + 1):
            idx = t * n + node
            visited[idx] = True
            z = (P["w1"][idx] * x).sum(-1) + P["b1"][idx]
            y = y + act_ref(act, z)[:, None] * P["w2"][idx]
            logits.append(z.detach())
            node = 2 * node + 1 + (z > 0).long()  # right iff z > 0 strictly
    return y, visited, torch.cat(logits) if logits else x.new_zeros(0)


def dense_ref(P, x, act):
    h = act_ref(act, x @ P["w1"] + (P["b1"] if "b1" in P else 0.0))
    return h @ P["w2"] + (P["b2"] if "b2" in P else 0.0)


def assert_margin(z):
    m = z.abs().min().item() if z.numel() else math.inf
    assert m > MARGIN, f"test data has a node logit {m:g} this close to 0: pick another seed"


def grads_of(module):
    return {k: v.grad for k, v in module.named_parameters()}


def check_grads(module, P, x, xr, what):
    for k, p in module.named_parameters():
        assert p.grad is not None, f"{what}: no gradient for {k}"
        # The reference's autograd leaves a parameter outside its graph (a depth-0 tree's empty
        # nodes) without a gradient: zeros of its shape.
        want = P[k].grad if P[k].grad is not None else torch.zeros_like(P[k])
        close(p.grad, want, f"{what}: d{k}")
    close(x.grad, xr.grad, f"{what}: dx")


# ---- LeafFFF --------------------------------------------------------------------------------

LEAF_CASES = [  # (in, out, depth, leaf_width, activation, batch shape)
    (7, 3, 0, 1, "relu", (5,)),  # no nodes: nodes_w and nodes_b are empty
    (7, 3, 1, 2, "gelu", (1,)),
    (7, 3, 2, 3, "identity", (2, 3)),
    (7, 3, 3, 5, "relu", (9,)),
    (5, 4, 3, 1, "gelu", (17,)),
    (11, 1, 2, 4, "relu", (1,)),
    (3, 6, 1, 5, "identity", (4, 1, 2)),
    (9, 2, 3, 2, "gelu", (2, 3)),
]


def run_leaf(module, x, R, h):
    """The module's y, H and gradients for loss = (y * R).sum() + h * H."""
    y, H = module(x, return_entropy=True)
    ((y * R).sum() + h * H).backward()
    return y, H


def run_leaf_ref(P, x, R, h, **kw):
    y, H, z = leaf_ref(P, x.reshape(-1, x.shape[-1]), **kw)
    y = y.reshape(*x.shape[:-1], -1)
    ((y * R).sum() + h * H).backward()
    return y, H, z


@pytest.mark.parametrize("case", LEAF_CASES, ids=lambda c: "-".join(map(str, c)))
def test_leaf_train_soft_forward_and_every_gradient(case):
    i, o, d, lw, act, batch = case
    torch.manual_seed(100 + d * 10 + lw)
    m = ft.LeafFFF(i, o, d, lw, activation=act)
    x = torch.randn(*batch, i, requires_grad=True)
    R = torch.randn(*batch, o)
    h = 0.7
    P = ref_params(m)
    xr = x.detach().double().requires_grad_(True)
    y, H = run_leaf(m, x, R, h)
    yr, Hr, _ = run_leaf_ref(P, xr, R.double(), h, depth=d, leaf_width=lw, act=act)
    assert y.shape == (*batch, o) and y.dtype == torch.float32
    close(y, yr, "y")
    close(H, Hr, "entropy")
    check_grads(m, P, x, xr, "soft")
    m.eval()
    with torch.no_grad():
        ye = m(x)
    yh, _, z = leaf_ref(P, xr.detach().reshape(-1, i), d, lw, act, hard=True)
    assert_margin(z)
    close(ye, yh.reshape(*batch, o), "eval+no_grad")


def test_leaf_entropy_gradient_alone():
    """Only the entropy term in the loss: the nodes and x get -h z q (1 - q) / (B n) and the
    leaves get exactly zero."""
    torch.manual_seed(3)
    m = ft.LeafFFF(7, 3, 3, 2, activation="gelu")
    x = torch.randn(6, 7, requires_grad=True)
    P = ref_params(m)
    xr = x.detach().double().requires_grad_(True)
    _, H = m(x, return_entropy=True)
    (2.5 * H).backward()
    _, Hr, _ = leaf_ref(P, xr, 3, 2, "gelu")
    (2.5 * Hr).backward()
    close(m.nodes_w.grad, P["nodes_w"].grad, "dnodes_w")
    close(m.nodes_b.grad, P["nodes_b"].grad, "dnodes_b")
    close(x.grad, xr.grad, "dx")
    for k in ("w1", "b1", "w2", "b2"):
        assert torch.count_nonzero(getattr(m, k).grad) == 0, k


def test_leaf_entropy_clamp():
    """Large node logits: where |z| > ln((1 - 1e-6) / 1e-6) ~ 13.8 the entropy is that of the
    clamped p (about 1.5e-5) and its gradient is zero; between, the unclamped formula."""
    torch.manual_seed(4)
    m = ft.LeafFFF(7, 3, 3, 2)
    with torch.no_grad():
        m.nodes_w.mul_(40.0)
    x = torch.randn(16, 7, requires_grad=True)
    R = torch.randn(16, 3)
    P = ref_params(m)
    xr = x.detach().double().requires_grad_(True)
    y, H = run_leaf(m, x, R, 3.0)
    yr, Hr, z = run_leaf_ref(P, xr, R.double(), 3.0, depth=3, leaf_width=2, act="relu")
    assert (z.abs() > 14).float().mean() > 0.2 and ((z.abs() > 3) & (z.abs() < 13)).any()
    close(y, yr, "y")
    close(H, Hr, "entropy")
    check_grads(m, P, x, xr, "clamped")


@pytest.mark.parametrize("act", ACTS)
def test_leaf_eval_no_grad_is_the_hard_path(act):
    torch.manual_seed(11)
    m = ft.LeafFFF(7, 3, 3, 4, activation=act).eval()
    x = torch.randn(2, 5, 7)
    with torch.no_grad():
        y, H = m(x, return_entropy=True)
        y2 = m(x)
    P = ref_params(m)
    yr, Hr, z = leaf_ref(P, x.reshape(-1, 7).double(), 3, 4, act, hard=True)
    assert_margin(z)
    assert y.shape == (2, 5, 3)
    close(y, yr.reshape(2, 5, 3), "eval y")
    close(H, Hr, "eval entropy")
    assert torch.equal(y, y2)


@pytest.mark.parametrize("act", ACTS)
def test_leaf_eval_with_grad_runs_the_hardened_kernel(act):
    """eval() with gradients: the same y as under no_grad, and the gradients of the hard
    reference (leaves through the reached leaf; the nodes get none under hard decisions)."""
    torch.manual_seed(12)
    m = ft.LeafFFF(7, 3, 3, 3, activation=act).eval()
    x = torch.randn(13, 7, requires_grad=True)
    R = torch.randn(13, 3)
    with torch.no_grad():
        y_nograd = m(x)
    P = ref_params(m)
    xr = x.detach().double().requires_grad_(True)
    # h = 0: the entropy under hard decisions is test_leaf_hardened_decisions_give_the_nodes_...
    y, H = run_leaf(m, x, R, 0.0)
    yr, Hr, z = run_leaf_ref(P, xr, R.double(), 0.0, depth=3, leaf_width=3, act=act, hard=True)
    assert_margin(z)
    close(y, yr, "y")
    close(y, y_nograd.double(), "y with grad vs no_grad")
    close(H, Hr, "entropy")
    check_grads(m, P, x, xr, "eval+grad")


@pytest.mark.parametrize("act", ["relu", "gelu"])
def test_leaf_train_hardened(act):
    torch.manual_seed(13)
    m = ft.LeafFFF(7, 3, 2, 3, activation=act, train_hardened=True)
    x = torch.randn(2, 4, 7, requires_grad=True)
    R = torch.randn(2, 4, 3)
    P = ref_params(m)
    xr = x.detach().double().requires_grad_(True)
    y, H = run_leaf(m, x, R, 0.0)
    yr, Hr, z = run_leaf_ref(P, xr, R.double(), 0.0, depth=2, leaf_width=3, act=act, hard=True)
    assert_margin(z)
    close(y, yr, "y")
    close(H, Hr, "entropy")
    check_grads(m, P, x, xr, "train_hardened")


@pytest.mark.parametrize("hardened", [False, True])
def test_leaf_region_leak_one_flips_every_decision(hardened):
    torch.manual_seed(14)
    m = ft.LeafFFF(7, 3, 3, 2, activation="gelu", region_leak=1.0, train_hardened=hardened)
    x = torch.randn(10, 7, requires_grad=True)
    R = torch.randn(10, 3)
    P = ref_params(m)
    xr = x.detach().double().requires_grad_(True)
    h = 0.0 if hardened else 0.5  # hardened + entropy: test_leaf_hardened_entropy_gradient
    y, H = run_leaf(m, x, R, h)
    flips = torch.ones(10, 7, dtype=torch.bool)
    yr, Hr, z = run_leaf_ref(P, xr, R.double(), h, depth=3, leaf_width=2, act="gelu",
                             hard=hardened, flips=flips)
    assert_margin(z)
    close(y, yr, "y")
    close(H, Hr, "entropy")
    check_grads(m, P, x, xr, "region_leak=1")


def test_leaf_region_leak_follows_torch_manual_seed():
    torch.manual_seed(15)
    m = ft.LeafFFF(7, 3, 3, 2, region_leak=0.3)
    x = torch.randn(40, 7)

    def run(seed):
        torch.manual_seed(seed)
        return m(x, return_entropy=True)

    (a, Ha), (b, Hb), (c, _) = run(5), run(5), run(6)
    assert torch.equal(a, b) and torch.equal(Ha, Hb)
    assert not torch.equal(a, c)
    # The flips are one torch.rand(rows, n_nodes) < rate per forward (the module's documented
    # draw from torch's generator): the reference with the same draw gives the same y, and the
    # entropy (of sigmoid(z), symmetric under p -> 1 - p) does not change.
    torch.manual_seed(5)
    flips = torch.rand(40, 7) < 0.3
    assert 0 < flips.sum() < flips.numel()
    yr, Hr, _ = leaf_ref(ref_params(m), x.double(), 3, 2, "relu", flips=flips)
    close(a, yr, "leaky y")
    close(Ha, Hr, "leaky entropy")
    # eval() ignores the leak.
    m.eval()
    with torch.no_grad():
        e1 = m(x)
        e2 = m(x)
    assert torch.equal(e1, e2)
    yh, _, z = leaf_ref(ref_params(m), x.double(), 3, 2, "relu", hard=True)
    assert_margin(z)
    close(e1, yh, "eval with region_leak")
    close(m(x), yh, "eval with gradients and region_leak")


@pytest.mark.parametrize("how", ["eval", "train_hardened", "train_hardened+leak"])
def test_leaf_hardened_decisions_give_the_nodes_no_gradient(how):
    """Under hard decisions the nodes receive no gradient (DESIGN.md, docs/layers/leaf_fff.md),
    not even from the hardening term: the entropy is returned as a value without gradient, and
    the leaves' gradients and dx are those of the hard reference."""
    torch.manual_seed(18)
    m = ft.LeafFFF(7, 3, 2, 3, train_hardened=how != "eval",
                   region_leak=1.0 if how.endswith("leak") else 0.0)
    m.train(how != "eval")
    x = torch.randn(6, 7, requires_grad=True)
    R = torch.randn(6, 3)
    y, H = m(x, return_entropy=True)
    assert not H.requires_grad and H.item() > 0
    P = ref_params(m)
    xr = x.detach().double().requires_grad_(True)
    flips = torch.ones(6, 3, dtype=torch.bool) if how.endswith("leak") else None
    yr, _, z = run_leaf_ref(P, xr, R.double(), 0.0, depth=2, leaf_width=3, act="relu", hard=True,
                            flips=flips)
    assert_margin(z)
    close(y, yr, f"{how}: y")
    ((y * R).sum() + 1.5 * H).backward()
    assert torch.count_nonzero(m.nodes_w.grad) == 0 and torch.count_nonzero(m.nodes_b.grad) == 0
    for k in ("w1", "b1", "w2", "b2"):
        close(getattr(m, k).grad, P[k].grad, f"{how}: d{k}")
    close(x.grad, xr.grad, f"{how}: dx")


def test_leaf_ties_at_zero_go_right():
    """Node logits exactly 0 (zero node weights and biases): hard decisions go right (z >= 0),
    so every row reaches the last leaf, in eval (no_grad: packed kernel; grad: hardened kernel)
    and with train_hardened; soft training gives every leaf mass 2^-depth."""
    torch.manual_seed(16)
    d, lw = 3, 2
    m = ft.LeafFFF(7, 3, d, lw, activation="gelu", train_hardened=True)
    with torch.no_grad():
        m.nodes_w.zero_()
        m.nodes_b.zero_()
    x = torch.randn(6, 7)
    P = ref_params(m)
    last = slice((2**d - 1) * lw, 2**d * lw)
    xd = x.double()
    y_last = act_ref("gelu", xd @ P["w1"][:, last] + P["b1"][last]) @ P["w2"][last] + P["b2"][-1]
    y_first = act_ref("gelu", xd @ P["w1"][:, :lw] + P["b1"][:lw]) @ P["w2"][:lw] + P["b2"][0]
    assert (y_last - y_first).abs().max() > 0.1  # the check below can tell the leaves apart
    close(m(x), y_last, "train_hardened tie")
    m.train_hardened = False
    y_soft, _, _ = leaf_ref(P, xd, d, lw, "gelu")
    close(m(x), y_soft, "soft tie")
    m.eval()
    close(m(x), y_last, "eval+grad tie")
    with torch.no_grad():
        close(m(x), y_last, "eval+no_grad tie")


def test_leaf_tie_at_one_node():
    """A tie at the root only (its weights zero), the other nodes random: the root goes right."""
    torch.manual_seed(17)
    m = ft.LeafFFF(7, 3, 2, 3).eval()
    with torch.no_grad():
        m.nodes_w[0].zero_()
        m.nodes_b[0] = 0.0
    x = torch.randn(8, 7)
    P = ref_params(m)
    yr, _, z = leaf_ref(P, x.double(), 2, 3, "relu", hard=True)
    assert_margin(z[:, 1:])
    assert (z[:, 0] == 0).all()
    close(m(x), yr, "eval+grad")
    with torch.no_grad():
        close(m(x), yr, "eval+no_grad")


# ---- NeuronFFF ------------------------------------------------------------------------------

NEURON_CASES = [  # (in, out, depth, trees, activation, bias, batch shape)
    (7, 3, 0, 1, "relu", True, (5,)),
    (7, 3, 1, 2, "gelu", True, (1,)),
    (7, 3, 2, 3, "identity", False, (2, 3)),
    (7, 3, 3, 1, "gelu", True, (9,)),
    (5, 4, 3, 2, "relu", False, (17,)),
    (11, 1, 2, 1, "gelu", True, (1,)),
    (3, 6, 1, 3, "relu", True, (4, 1, 2)),
]


@pytest.mark.parametrize("case", NEURON_CASES, ids=lambda c: "-".join(map(str, c)))
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_neuron_forward_and_every_gradient(case, mode):
    i, o, d, trees, act, bias, batch = case
    torch.manual_seed(200 + d * 10 + trees)
    m = ft.NeuronFFF(i, o, d, trees=trees, activation=act, bias=bias)
    m.train(mode == "train")
    x = torch.randn(*batch, i, requires_grad=True)
    R = torch.randn(*batch, o)
    P = ref_params(m)
    xr = x.detach().double().requires_grad_(True)
    y = m(x)
    (y * R).sum().backward()
    yr, visited, z = neuron_ref(P, xr.reshape(-1, i), d, trees, act)
    assert_margin(z)
    yr = yr.reshape(*batch, o)
    (yr * R.double()).sum().backward()
    assert y.shape == (*batch, o)
    close(y, yr, "y")
    check_grads(m, P, x, xr, mode)
    for k in ("w1", "b1", "w2"):
        g = getattr(m, k).grad
        assert torch.count_nonzero(g[~visited]) == 0, f"d{k}: rows off every path not zero"
    with torch.no_grad():
        m.eval()
        close(m(x), yr, "eval+no_grad (CMM engine)")


def test_neuron_ties_at_zero_go_left():
    """A decision neuron whose logit is exactly 0 (zero weights and bias) sends the row left
    (right iff z > 0): node 1's rows get gradients and node 2's stay exactly zero."""
    torch.manual_seed(21)
    m = ft.NeuronFFF(7, 3, depth=2, trees=2, activation="gelu")
    n = 7
    with torch.no_grad():
        for t in range(2):
            m.w1[t * n].zero_()
            m.b1[t * n] = 0.0
    x = torch.randn(6, 7, requires_grad=True)
    P = ref_params(m)
    for mode in ("train", "eval"):
        m.train(mode == "train")
        m.zero_grad()
        x.grad = None
        y = m(x)
        y.sum().backward()
        xr = x.detach().double().requires_grad_(True)
        for v in P.values():
            v.grad = None
        yr, visited, z = neuron_ref(P, xr, 2, 2, "gelu")
        # z holds tree 0's levels, then tree 1's, 6 rows each: the roots' logits are exactly 0
        assert (z[:6] == 0).all() and (z[18:24] == 0).all()
        assert_margin(torch.cat([z[6:18], z[24:]]))
        yr.sum().backward()
        assert visited[[1, 8]].all() and not visited[[2, 9]].any()
        close(y, yr, mode)
        check_grads(m, P, x, xr, mode)
        for r in (2, 5, 6, 9, 12, 13):  # the right subtrees
            assert torch.count_nonzero(m.w1.grad[r]) == 0, (mode, r)
            assert torch.count_nonzero(m.w2.grad[r]) == 0, (mode, r)
    with torch.no_grad():
        close(m(x), yr, "eval+no_grad")


def test_neuron_half_weights_reads_half_copies():
    """half_weights (eval, no_grad): the engine's w1 and w2 are IEEE-half roundings."""
    torch.manual_seed(22)
    m = ft.NeuronFFF(7, 3, 2, trees=2, activation="gelu", half_weights=True).eval()
    x = torch.randn(9, 7)
    with torch.no_grad():
        y = m(x)
    P = {k: v.detach().double() for k, v in m.named_parameters()}
    for k in ("w1", "w2"):
        P[k] = P[k].half().double()
    yr, _, z = neuron_ref(P, x.double(), 2, 2, "gelu")
    assert_margin(z)
    close(y, yr, "half weights")


def test_neuron_return_entropy_is_zero_in_every_mode():
    torch.manual_seed(23)
    m = ft.NeuronFFF(7, 3, 2)
    x = torch.randn(4, 7)
    assert m(x, return_entropy=True)[1].item() == 0.0
    m.eval()
    assert m(x, return_entropy=True)[1].item() == 0.0
    with torch.no_grad():
        assert m(x, return_entropy=True)[1].item() == 0.0


# ---- DenseFF --------------------------------------------------------------------------------


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("batch", [(1,), (2, 3), (10,)])
def test_dense_forward_and_every_gradient(act, bias, batch):
    torch.manual_seed(300)
    m = ft.DenseFF(7, 5, 3, activation=act, bias=bias)
    x = torch.randn(*batch, 7, requires_grad=True)
    R = torch.randn(*batch, 3)
    P = ref_params(m)
    xr = x.detach().double().requires_grad_(True)
    y = m(x)
    (y * R).sum().backward()
    yr = dense_ref(P, xr, act)
    (yr * R.double()).sum().backward()
    close(y, yr, "y")
    check_grads(m, P, x, xr, "dense")
    m.eval()
    with torch.no_grad():
        close(m(x), yr, "eval+no_grad")


# ---- autograd plumbing ----------------------------------------------------------------------


def make_all():
    torch.manual_seed(400)
    return [ft.LeafFFF(7, 3, 2, 3, activation="gelu"),
            ft.NeuronFFF(7, 3, 2, trees=2, activation="relu"),
            ft.DenseFF(7, 6, 3, activation="gelu")]


def reference(m, x):
    """The float64 reference of module m (in its current mode) on x (rows, in) float64."""
    P = ref_params(m)
    if isinstance(m, ft.LeafFFF):
        y, _, z = leaf_ref(P, x, m.depth, m.leaf_width, m.activation,
                           hard=not m.training or m.train_hardened)
    elif isinstance(m, ft.NeuronFFF):
        y, _, z = neuron_ref(P, x, m.depth, m.trees, m.activation)
    else:
        y, z = dense_ref(P, x, m.activation), None
    if z is not None and (isinstance(m, ft.NeuronFFF) or not m.training):
        assert_margin(z)
    return y, P


@pytest.mark.parametrize("idx", [0, 1, 2], ids=["leaf", "neuron", "dense"])
def test_two_calls_before_backward_and_retained_graph(idx):
    """The layer used twice in one graph (each forward keeps its own cache), a loss whose
    gradient is an expanded tensor (y.sum()), and a second backward through a retained graph
    (gradients accumulate)."""
    m = make_all()[idx]
    x1, x2 = torch.randn(5, 7), torch.randn(3, 7)
    loss = m(x1).sum() + (m(x2) ** 2).sum()
    loss.backward(retain_graph=True)
    first = {k: g.clone() for k, g in grads_of(m).items()}
    loss.backward()
    Pm = ref_params(m)
    if idx == 0:
        y1 = leaf_ref(Pm, x1.double(), 2, 3, "gelu")[0]
        y2 = leaf_ref(Pm, x2.double(), 2, 3, "gelu")[0]
    elif idx == 1:
        y1 = neuron_ref(Pm, x1.double(), 2, 2, "relu")[0]
        y2 = neuron_ref(Pm, x2.double(), 2, 2, "relu")[0]
    else:
        y1 = dense_ref(Pm, x1.double(), "gelu")
        y2 = dense_ref(Pm, x2.double(), "gelu")
    (y1.sum() + (y2**2).sum()).backward()
    for k, g in first.items():
        close(g, Pm[k].grad, f"d{k}")
        close(grads_of(m)[k], 2 * Pm[k].grad, f"d{k} after two backwards")


@pytest.mark.parametrize("idx", [0, 1, 2], ids=["leaf", "neuron", "dense"])
def test_frozen_parameters_and_input_without_grad(idx):
    m = make_all()[idx]
    names = [k for k, _ in m.named_parameters()]
    frozen = names[1::2]
    for k in frozen:
        getattr(m, k).requires_grad_(False)
    x = torch.randn(4, 7)  # no gradient for x
    m(x).sum().backward()
    y, P = reference(m, x.double())
    y.sum().backward()
    for k in names:
        g = getattr(m, k).grad
        if k in frozen:
            assert g is None, k
        else:
            close(g, P[k].grad, f"d{k}")
    # Only x needs a gradient: the parameters' stay unset.
    for k in names:
        getattr(m, k).requires_grad_(False)
        getattr(m, k).grad = None
    x.requires_grad_(True)
    m(x).sum().backward()
    xr = x.detach().double().requires_grad_(True)
    reference(m, xr)[0].sum().backward()
    close(x.grad, xr.grad, "dx")
    assert all(getattr(m, k).grad is None for k in names)


# ---- the inference engine follows the parameters ----------------------------------------------


@pytest.mark.parametrize("idx", [0, 1], ids=["leaf", "neuron"])
def test_eval_engine_sees_weight_changes(idx):
    m = make_all()[idx]
    x = torch.randn(12, 7)

    def eval_matches_reference(what):
        m.eval()
        with torch.no_grad():
            y = m(x)
        close(y, reference(m, x.double())[0], what)
        return y

    y0 = eval_matches_reference("initial")
    with torch.inference_mode():
        assert torch.equal(m(x), y0)
    # 1. in place under no_grad
    with torch.no_grad():
        m.w2.mul_(-2.0)
    y1 = eval_matches_reference("after an in-place change")
    assert not torch.allclose(y0, y1)
    # 2. an optimizer step
    opt = torch.optim.SGD(m.parameters(), lr=0.5)
    m.train()
    (m(x) ** 2).sum().backward()
    opt.step()
    y2 = eval_matches_reference("after optimizer.step()")
    assert not torch.allclose(y1, y2)
    # 3. load_state_dict from another module of the same shape
    other = type(m)(**ctor_args(m))
    m.load_state_dict(other.state_dict())
    y3 = eval_matches_reference("after load_state_dict")
    other.eval()
    with torch.no_grad():
        assert torch.equal(y3, other(x))
    assert not torch.allclose(y2, y3)
    # 4. a parameter's storage replaced
    with torch.no_grad():
        m.w1.data = torch.randn_like(m.w1)
    eval_matches_reference("after .data = ...")


def ctor_args(m):
    if isinstance(m, ft.LeafFFF):
        return dict(in_features=m.in_features, out_features=m.out_features, depth=m.depth,
                    leaf_width=m.leaf_width, activation=m.activation)
    if isinstance(m, ft.NeuronFFF):
        return dict(in_features=m.in_features, out_features=m.out_features, depth=m.depth,
                    trees=m.trees, activation=m.activation, bias=m.bias_enabled)
    return dict(in_features=m.in_features, hidden=m.hidden, out_features=m.out_features,
                activation=m.activation, bias=m.bias_enabled)


# ---- state_dict, save/load, copies ------------------------------------------------------------


def test_state_dict_keys_and_shapes():
    def shapes(m):
        return [(k, tuple(v.shape)) for k, v in m.state_dict().items()]

    assert shapes(ft.LeafFFF(7, 3, 3, 5)) == [
        ("nodes_w", (7, 7)), ("nodes_b", (7,)), ("w1", (7, 40)), ("b1", (40,)),
        ("w2", (40, 3)), ("b2", (8, 3))]
    assert shapes(ft.LeafFFF(7, 3, 0, 2)) == [
        ("nodes_w", (0, 7)), ("nodes_b", (0,)), ("w1", (7, 2)), ("b1", (2,)),
        ("w2", (2, 3)), ("b2", (1, 3))]
    assert shapes(ft.NeuronFFF(7, 3, 2, trees=3)) == [
        ("w1", (21, 7)), ("b1", (21,)), ("w2", (21, 3)), ("b", (3,))]
    assert shapes(ft.NeuronFFF(7, 3, 1, bias=False)) == [
        ("w1", (3, 7)), ("b1", (3,)), ("w2", (3, 3))]
    assert shapes(ft.DenseFF(7, 5, 3)) == [
        ("w1", (7, 5)), ("b1", (5,)), ("w2", (5, 3)), ("b2", (3,))]
    assert shapes(ft.DenseFF(7, 5, 3, bias=False)) == [("w1", (7, 5)), ("w2", (5, 3))]
    for m in make_all():
        assert all(v.dtype == torch.float32 for v in m.state_dict().values())


@pytest.mark.parametrize("idx", [0, 1, 2], ids=["leaf", "neuron", "dense"])
def test_torch_save_load_state_dict_into_a_fresh_module(idx):
    m = make_all()[idx]
    x = torch.randn(6, 7)
    buf = io.BytesIO()
    torch.save(m.state_dict(), buf)
    buf.seek(0)
    fresh = type(m)(**ctor_args(m))
    assert not torch.equal(fresh(x), m(x))
    fresh.load_state_dict(torch.load(buf))
    assert torch.equal(fresh(x), m(x))
    m.eval()
    fresh.eval()
    with torch.no_grad():
        assert torch.equal(fresh(x), m(x))


@pytest.mark.parametrize("idx", [0, 1, 2], ids=["leaf", "neuron", "dense"])
def test_deepcopy(idx):
    m = make_all()[idx]
    x = torch.randn(6, 7)
    c = copy.deepcopy(m)
    assert torch.equal(c(x), m(x))
    # The copy is independent: changing it (also through its inference engine) leaves m alone.
    m.eval()
    c.eval()
    with torch.no_grad():
        ym = m(x)
        c.w2.mul_(3.0)
        yc = c(x)
        assert torch.equal(m(x), ym)
        assert not torch.equal(yc, ym)
        close(yc, reference(c, x.double())[0], "copy after change")


# ---- threads --------------------------------------------------------------------------------


@pytest.mark.parametrize("idx", [0, 1, 2], ids=["leaf", "neuron", "dense"])
def test_thread_count_does_not_change_results(idx):
    """fff documents bitwise-identical results for any thread count (fixed row blocks and
    reductions), so threads=1 and threads=2 must agree exactly, gradients included."""
    m = make_all()[idx]
    x = torch.randn(257, 7)
    R = torch.randn(257, 3)

    def run(threads, mode):
        m.threads = threads
        m.train(mode == "train")
        m.zero_grad()
        xx = x.clone().requires_grad_(True)
        y, H = m(xx, return_entropy=True)
        ((y * R).sum() + 0.3 * H).backward()
        with torch.no_grad():
            m.eval()
            yi = m(x)
        return [y, H, xx.grad, yi] + [p.grad.clone() for p in m.parameters()]

    for mode in ("train", "eval"):
        one, two = run(1, mode), run(2, mode)
        for a, b in zip(one, two):
            assert torch.equal(a, b)


def test_threads_default_follows_torch():
    m = ft.DenseFF(7, 5, 3)
    old = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        m(torch.randn(3, 7))
        assert m._ops.threads == 2
        torch.set_num_threads(1)
        m(torch.randn(3, 7))
        assert m._ops.threads == 1
        m.threads = 2
        m(torch.randn(3, 7))
        assert m._ops.threads == 2
    finally:
        torch.set_num_threads(old)


# ---- input checks ---------------------------------------------------------------------------


@pytest.mark.parametrize("idx", [0, 1, 2], ids=["leaf", "neuron", "dense"])
def test_clear_errors(idx):
    m = make_all()[idx]
    name = type(m).__name__
    for mode in ("train", "eval"):
        m.train(mode == "train")
        with pytest.raises(TypeError, match=f"{name}.*float64"):
            m(torch.randn(3, 7, dtype=torch.float64))
        with pytest.raises(TypeError, match="int64"):
            m(torch.zeros(3, 7, dtype=torch.long))
        with pytest.raises(TypeError, match="torch.Tensor"):
            m([[0.0] * 7])
        with pytest.raises(ValueError, match=r"\(3, 8\).*in_features=7"):
            m(torch.randn(3, 8))
        with pytest.raises(ValueError, match=r"shape \(\)"):
            m(torch.tensor(1.0))
        with pytest.raises(ValueError, match="meta"):
            m(torch.empty(3, 7, device="meta"))
        with torch.no_grad():
            with pytest.raises(ValueError, match="meta"):
                m(torch.empty(3, 7, device="meta"))
    d = type(m)(**ctor_args(m)).double()
    for mode in ("train", "eval"):
        d.train(mode == "train")
        with pytest.raises(TypeError, match=r"parameter (nodes_w|w1) has dtype torch.float64"):
            d(torch.randn(3, 7))
        with torch.no_grad():
            with pytest.raises(TypeError, match=r"parameter (nodes_w|w1) has dtype torch.float64"):
                d(torch.randn(3, 7))


@pytest.mark.parametrize("idx", [0, 1, 2], ids=["leaf", "neuron", "dense"])
def test_non_contiguous_input_and_odd_shapes(idx):
    m = make_all()[idx]
    base = torch.randn(7, 10)
    x = base.t()  # (10, 7), not contiguous
    assert not x.is_contiguous()
    for mode in ("train", "eval"):
        m.train(mode == "train")
        assert torch.equal(m(x), m(x.contiguous()))
        strided = torch.randn(10, 14)[:, ::2]
        assert torch.equal(m(strided), m(strided.contiguous()))
        with torch.no_grad():
            assert torch.equal(m(x), m(x.contiguous()))
        # gradient through a non-contiguous input
        xg = base.clone().requires_grad_(True)
        m(xg.t()).pow(2).sum().backward()
        xc = base.t().contiguous().requires_grad_(True)
        m(xc).pow(2).sum().backward()
        assert torch.equal(xg.grad.t(), xc.grad)
        # a broadcast (stride 0) input, and its gradient summed back onto the one row
        one = torch.randn(1, 7, requires_grad=True)
        m(one.expand(4, 7)).pow(2).sum().backward()
        four = one.detach().repeat(4, 1).requires_grad_(True)
        m(four).pow(2).sum().backward()
        close(one.grad[0], four.grad.sum(0).double(), "broadcast dx")
        # one row without a batch dimension, and an empty batch
        row = torch.randn(7)
        assert m(row).shape == (3,)
        assert torch.equal(m(row), m(row[None])[0])
        assert m(torch.randn(0, 7)).shape == (0, 3)
        assert m(torch.randn(2, 0, 7)).shape == (2, 0, 3)


# ---- training ------------------------------------------------------------------------------


def test_leaf_fff_adam_training_reduces_the_loss():
    """A tiny two-region regression that one linear map cannot fit: the tree must learn to
    route. 300 Adam steps with the entropy term must cut the mean squared error by far, also
    for the hard (eval) tree."""
    torch.manual_seed(500)
    start = time.time()
    x = torch.randn(256, 4)
    target = torch.where(x[:, :1] > 0, x[:, 1:3] * 2.0, -x[:, 2:4]) + 0.5
    m = ft.LeafFFF(4, 2, depth=2, leaf_width=4, activation="relu")
    opt = torch.optim.Adam(m.parameters(), lr=0.02)

    def mse():
        with torch.no_grad():
            return ((m(x) - target) ** 2).mean().item()

    before = mse()
    for _ in range(300):
        opt.zero_grad()
        y, H = m(x, return_entropy=True)
        (((y - target) ** 2).mean() + 0.5 * H).backward()
        opt.step()
    after = mse()
    m.eval()
    with torch.no_grad():
        hard = ((m(x) - target) ** 2).mean().item()
    assert math.isfinite(after) and after < 0.2 * before, (before, after)
    assert hard < 0.2 * before, (before, hard)  # the entropy term hardened the tree
    assert time.time() - start < 10


@pytest.mark.parametrize("idx", [0, 1, 2], ids=["leaf", "neuron", "dense"])
def test_large_outputs_from_the_pool_stay_independent(idx):
    """Outputs of 1 MB or more are written to storage from the module's pool: results that are
    still alive must never share it (each keeps its values), and freed ones are reused."""
    torch.manual_seed(41)
    m = [ft.LeafFFF(7, 2100, 2, 3), ft.NeuronFFF(7, 2100, 3, trees=2),
         ft.DenseFF(7, 9, 2100)][idx].eval()
    x1, x2 = torch.randn(130, 7), torch.randn(130, 7)  # 130 * 2100 floats > 1 MB
    with torch.no_grad():
        y1 = m(x1)
        y2 = m(x2)
        assert y1.data_ptr() != y2.data_ptr()
        keep = y1.clone()
        for _ in range(3):  # freed outputs go back to the pool and come out again
            y3 = m(x2)
            del y3
        assert torch.equal(y1, keep) and torch.equal(y2, m(x2))
    close(y1, reference(m, x1.double())[0], "pooled output")
    y1.add_(1.0)  # an ordinary writable tensor
    assert torch.equal(y1, keep + 1.0)
