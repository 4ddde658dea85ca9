"""fff.torch: FFF layers as torch.nn.Modules whose forward and backward run fff's C++ kernels.

    import torch, fff.torch
    layer = fff.torch.LeafFFF(784, 10, depth=4, leaf_width=8)
    y, entropy = layer(x, return_entropy=True)      # train(): the soft mixture
    loss = loss_fn(y, target) + 3.0 * entropy        # the hardening term
    loss.backward()
    layer.eval()
    with torch.no_grad():
        y = layer(x)                                 # hard inference on the fast kernels

The parameters are named and shaped as in fff's model files. Inputs are float32 CPU tensors of
shape (..., in_features); a non-contiguous input is copied first. The threads a call uses follow
torch.get_num_threads() unless `threads` is set. See docs/python.md.
"""

import math

import torch
from torch import nn

from . import _fff

__all__ = ["LeafFFF", "NeuronFFF", "DenseFF", "Classifier"]


# Outputs of at least this many floats (1 MB) are written to storage from the module's own pool
# (_FFOps.infer_pooled): a fresh large tensor is faulted in page by page on first write, which
# at batch 16,384 cost more than the engine. Smaller ones come from PyTorch's allocator.
_POOLED_OUTPUT_FROM = 1 << 18


class _PooledCache:
    """A training cache (the C++ buffers one forward keeps for its backward) that goes back to
    its module's pool when the autograd graph holding it is freed, so that training reuses two
    or three caches instead of allocating and faulting in fresh buffers every step. Tying the
    return to the graph's lifetime keeps backward(retain_graph=True) safe."""

    __slots__ = ("cache", "pool")

    def __init__(self, pool):
        self.pool = pool
        self.cache = pool.pop() if pool else _fff._FFCache()

    def __del__(self):
        if len(self.pool) < 4:
            self.pool.append(self.cache)


class _FFFunction(torch.autograd.Function):
    """The training forward and backward of one feedforward block on fff's kernels."""

    @staticmethod
    def forward(ctx, module, hardened, flips, x, *params):
        ops = module._ops
        rows = x.shape[0]
        y = x.new_empty((rows, module.out_features))
        cache = _PooledCache(module._cache_pool)
        entropy = ops.forward_train([p.data_ptr() for p in params], x.data_ptr(), rows,
                                    y.data_ptr(), cache.cache, hardened,
                                    flips.data_ptr() if flips is not None else 0)
        ctx.ops, ctx.cache, ctx.zero_grads = ops, cache, module._sparse_grads
        ctx.save_for_backward(x, *params)
        entropy = torch.tensor(entropy, dtype=x.dtype)
        if hardened:
            # Under hard decisions the nodes receive no gradient (docs/layers/leaf_fff.md), not
            # even from the hardening term: the entropy is a reported value, not a loss term.
            ctx.mark_non_differentiable(entropy)
        return y, entropy

    @staticmethod
    def backward(ctx, dy, dentropy):
        x, *params = ctx.saved_tensors
        dy = dy.contiguous()
        new = torch.zeros_like if ctx.zero_grads else torch.empty_like
        grads = [new(p) for p in params]
        dx = torch.empty_like(x) if ctx.needs_input_grad[3] else None
        hardening = float(dentropy) if dentropy is not None else 0.0
        ctx.ops.backward([p.data_ptr() for p in params], [g.data_ptr() for g in grads],
                         x.data_ptr(), x.shape[0], dy.data_ptr(), hardening, ctx.cache.cache,
                         dx.data_ptr() if dx is not None else 0)
        needs = ctx.needs_input_grad[4:]
        return (None, None, None, dx) + tuple(g if n else None for g, n in zip(grads, needs))


def _check_tensor(t, what, where):
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{where}: {what} must be a torch.Tensor, got {type(t).__name__}")
    if t.device.type != "cpu":
        raise ValueError(f"{where}: {what} is on {t.device}; fff's kernels run on the CPU "
                         f"(move it with .cpu())")
    if t.dtype != torch.float32:
        raise TypeError(f"{where}: {what} has dtype {t.dtype}; fff's kernels take torch.float32 "
                        f"(convert with .float())")


class _FFModule(nn.Module):
    """What every block shares: parameters made from the C++ block's names and shapes, input
    checks, the choice between the training kernels and the inference engine, threads."""

    _sparse_grads = False  # neuron FFF writes only the path rows: the others must start at zero
    _has_entropy = False  # only leaf FFF has a hardening term (the others return 0)

    def __init__(self, kind, in_features, out_features, activation, threads, **shape):
        super().__init__()
        self.in_features, self.out_features = int(in_features), int(out_features)
        self.activation = activation
        self.threads = threads
        self._config = dict(kind=kind, in_features=self.in_features,
                            out_features=self.out_features, activation=activation, **shape)
        self._ops = _fff._FFOps(self._config)
        # The parameters' names and shapes, in the order the kernels take them.
        self._shapes = [(name, tuple(shape)) for name, shape in self._ops.param_shapes()]
        for name, shape in self._shapes:
            self.register_parameter(name, nn.Parameter(torch.empty(shape)))
        self._prepared_key = None
        self._cache_pool = []
        self.reset_parameters()

    # copy.deepcopy and pickling (torch.save of a whole module) carry the parameters and the
    # config; the C++ side (kernels, inference copy, caches) is made again from the config.
    def __getstate__(self):
        state = self.__dict__.copy()
        for key in ("_ops", "_cache_pool", "_prepared_key"):
            state.pop(key, None)
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._ops = _fff._FFOps(self._config)
        self._cache_pool, self._prepared_key = [], None

    def _params(self):
        return list(self._parameters.values())

    def _set_threads(self):
        n = self.threads if self.threads is not None else torch.get_num_threads()
        if n != self._ops.threads:
            self._ops.threads = n

    def _check_params(self):
        where = type(self).__name__
        for (name, shape), p in zip(self._shapes, self._params()):
            _check_tensor(p, f"parameter {name}", where)
            if tuple(p.shape) != shape:
                raise ValueError(f"{where}: parameter {name} has shape {tuple(p.shape)}, "
                                 f"expected {shape}")
            if not p.is_contiguous():
                raise ValueError(f"{where}: parameter {name} is not contiguous")

    def _rows(self, x):
        """x (..., in) as a contiguous (rows, in) tensor, and the leading dimensions."""
        where = type(self).__name__
        _check_tensor(x, "the input", where)
        if x.dim() == 0 or x.shape[-1] != self.in_features:
            raise ValueError(f"{where}: the input has shape {tuple(x.shape)}; expected "
                             f"(..., in_features={self.in_features})")
        lead = x.shape[:-1]
        return x.contiguous().reshape(-1, self.in_features), lead

    def _flips(self, rows):
        return None

    def _hardened(self):
        return not self.training

    def forward(self, x, return_entropy=False):
        """y = block(x) for x (..., in_features). In train() mode the training function (leaf
        FFF: the soft mixture); in eval() mode hard decisions, on the inference engine when no
        gradient is needed (under torch.no_grad() or torch.inference_mode()). With
        return_entropy, also the mean node entropy of the decisions (0 for DenseFF and
        NeuronFFF): add h * entropy to the loss for the hardening term."""
        params = list(self._parameters.values())
        if not self.training and not (torch.is_grad_enabled() and (
                getattr(x, "requires_grad", False) or any(p.requires_grad for p in params))):
            return self._infer(x, params, return_entropy)
        x2, lead = self._rows(x)
        self._set_threads()
        self._check_params()
        y, entropy = _FFFunction.apply(self, self._hardened(), self._flips(x2.shape[0]), x2,
                                       *params)
        y = y.reshape(*lead, self.out_features)
        return (y, entropy) if return_entropy else y

    def _infer(self, x, params, return_entropy):
        """Hard inference on the engine: the lean path, as its cost matters at batch 1."""
        if (type(x) is torch.Tensor and x.dtype is torch.float32 and x.dim() == 2 and
                x.shape[1] == self.in_features and x.device.type == "cpu" and
                x.is_contiguous()):
            x2, lead = x, None
        else:
            x2, lead = self._rows(x)
        self._set_threads()
        key = [(p.data_ptr(), p._version) for p in params]
        if key != self._prepared_key:
            self._prepare(params, key)
        rows = x2.shape[0]
        if rows * self.out_features >= _POOLED_OUTPUT_FROM:
            y = torch.from_numpy(self._ops.infer_pooled(x2.data_ptr(), rows))
        else:
            y = torch.empty((rows, self.out_features))
            self._ops.infer(x2.data_ptr(), rows, y.data_ptr())
        if lead is not None:
            y = y.reshape(*lead, self.out_features)
        if return_entropy:
            entropy = self._ops.mean_node_entropy(x2.data_ptr(), rows) if self._has_entropy else 0
            return y, torch.tensor(float(entropy))
        return y

    def _prepare(self, params, key):
        """Copies the weights into the inference engine: called when they changed (in-place
        updates bump a tensor's version; assignments change its storage) or on first use."""
        self._check_params()
        self._ops.prepare([p.data_ptr() for p in params], self._half_weights())
        self._prepared_key = key

    def _half_weights(self):
        return False

    def extra_repr(self):
        return f"{self._ops.describe()}, in_features={self.in_features}, " \
               f"out_features={self.out_features}, activation={self.activation!r}"


def _uniform_(t, bound):
    with torch.no_grad():
        t.uniform_(-bound, bound)


class LeafFFF(_FFModule):
    """Leaf FFF (Belcak & Wattenhofer 2023): a tree of depth `depth` whose 2^depth leaves are
    small feedforward blocks of `leaf_width` neurons.

    Parameters (as in fff's files): nodes_w (2^depth-1, in), nodes_b (2^depth-1),
    w1 (in, 2^depth*leaf_width), b1 (2^depth*leaf_width), w2 (2^depth*leaf_width, out),
    b2 (2^depth, out).

    train(): y = sum_j m_j (act(x W1_j + b1_j) W2_j + b2_j), m_j the product of the node
    probabilities sigmoid(nodes_w x + nodes_b) along leaf j's path; with region_leak each
    (row, node) decision flips with that probability (drawn from torch's generator); with
    train_hardened the decisions are rounded (the nodes then get no gradient).
    eval(): hard inference, right iff the node logit >= 0, leaf output bias included.
    """

    _has_entropy = True

    def __init__(self, in_features, out_features, depth, leaf_width, activation="relu",
                 region_leak=0.0, train_hardened=False, threads=None):
        if not 0.0 <= region_leak <= 1.0:
            raise ValueError(f"LeafFFF: region_leak = {region_leak}: must be in [0, 1]")
        self.depth, self.leaf_width = int(depth), int(leaf_width)
        self.region_leak, self.train_hardened = float(region_leak), bool(train_hardened)
        super().__init__("leaf-fff", in_features, out_features, activation, threads,
                         depth=depth, leaf_width=leaf_width)

    def reset_parameters(self):
        """fff's initialisation: uniform +-1/sqrt(in), w2 and b2 +-1/sqrt(leaf_width)."""
        k_in, k_leaf = 1 / math.sqrt(self.in_features), 1 / math.sqrt(self.leaf_width)
        for p in (self.nodes_w, self.nodes_b, self.w1, self.b1):
            _uniform_(p, k_in)
        for p in (self.w2, self.b2):
            _uniform_(p, k_leaf)

    def _hardened(self):
        return self.train_hardened or not self.training

    def _flips(self, rows):
        if not self.training or self.region_leak == 0.0 or self.depth == 0:
            return None
        return (torch.rand(rows, 2**self.depth - 1) < self.region_leak).to(torch.uint8)


class NeuronFFF(_FFModule):
    """Neuron FFF (UltraFastBERT): `trees` trees of depth `depth` whose nodes are single neurons;
    each row visits one root-to-leaf path (depth + 1 neurons) per tree and sums their outputs.

    Parameters (as in fff's files): w1 (trees*(2^(depth+1)-1), in), b1 (trees*(2^(depth+1)-1)),
    w2 (trees*(2^(depth+1)-1), out), b (out) when bias.

    Training and inference follow the same hard path (go right iff the neuron's pre-activation
    is > 0); only the path neurons get gradients (the other rows' gradients are zero). Under
    eval() and torch.no_grad() the CMM engine runs it; with half_weights (eval only) the engine
    reads IEEE-half copies of w1 and w2.
    """

    _sparse_grads = True

    def __init__(self, in_features, out_features, depth, trees=1, activation="gelu", bias=True,
                 threads=None, half_weights=False):
        self.depth, self.trees, self.bias_enabled = int(depth), int(trees), bool(bias)
        self.half_weights = bool(half_weights)
        super().__init__("neuron-fff", in_features, out_features, activation, threads,
                         depth=depth, trees=trees, output_bias=bias)

    def reset_parameters(self):
        """fff's initialisation: w1, b1 uniform +-1/sqrt(in); w2, b +-1/sqrt(trees*(depth+1))."""
        k_in = 1 / math.sqrt(self.in_features)
        k_out = 1 / math.sqrt(self.trees * (self.depth + 1))
        _uniform_(self.w1, k_in)
        _uniform_(self.b1, k_in)
        _uniform_(self.w2, k_out)
        if self.bias_enabled:
            _uniform_(self.b, k_out)

    def _hardened(self):
        return True

    def _half_weights(self):
        return self._half

    @property
    def half_weights(self):
        """eval only: the engine reads IEEE-half copies of w1 and w2 (half the bytes a path
        reads; each weight rounded to nearest, arithmetic in float32)."""
        return self._half

    @half_weights.setter
    def half_weights(self, value):
        self._half = bool(value)
        self._prepared_key = None  # the engine's copy is made again on the next call


class DenseFF(_FFModule):
    """Dense feedforward y = act(x w1 + b1) w2 + b2 on fff's kernels, the baseline beside the
    FFF layers. Parameters: w1 (in, hidden), b1 (hidden), w2 (hidden, out), b2 (out) when bias
    (note: w1 and w2 are (in, out)-major, as in fff's files, not nn.Linear's (out, in))."""

    def __init__(self, in_features, hidden, out_features, activation="relu", bias=True,
                 threads=None):
        self.hidden, self.bias_enabled = int(hidden), bool(bias)
        super().__init__("ff", in_features, out_features, activation, threads, width=hidden,
                         output_bias=bias)

    def reset_parameters(self):
        """fff's initialisation: uniform +-1/sqrt(in) for w1, b1; +-1/sqrt(hidden) for w2, b2."""
        k1, k2 = 1 / math.sqrt(self.in_features), 1 / math.sqrt(self.hidden)
        _uniform_(self.w1, k1)
        _uniform_(self.w2, k2)
        if self.bias_enabled:
            _uniform_(self.b1, k1)
            _uniform_(self.b2, k2)


class Classifier(nn.Module):
    """A classifier as fff's files hold it: one block (LeafFFF, NeuronFFF or DenseFF) mapping
    inputs standardised by (x - input_mean) / input_std to class logits. fff.load returns one;
    fff.save writes one (or a bare block, with mean 0 and std 1)."""

    def __init__(self, block, input_mean=0.0, input_std=1.0):
        super().__init__()
        if not isinstance(block, _FFModule):
            raise TypeError("Classifier: block must be an fff.torch LeafFFF, NeuronFFF or "
                            f"DenseFF, got {type(block).__name__}")
        if not (math.isfinite(input_mean) and math.isfinite(input_std) and input_std > 0):
            raise ValueError(f"Classifier: input_mean = {input_mean}, input_std = {input_std}: "
                             "the mean must be finite and the std positive")
        self.block = block
        self.input_mean, self.input_std = float(input_mean), float(input_std)

    def forward(self, x, return_entropy=False):
        """Class logits (..., classes) for inputs x (..., in_features) in the units the model
        was trained on (for IDX images: pixels scaled to [0, 1])."""
        return self.block((x - self.input_mean) / self.input_std, return_entropy=return_entropy)

    def extra_repr(self):
        return f"input_mean={self.input_mean}, input_std={self.input_std}"


def _block_from_dict(d, threads=None):
    """The module of a block read from a file (fff.load): its kind, shape and parameters."""
    kind, i, o, act = d["kind"], d["in_features"], d["out_features"], d["activation"]
    if kind == "leaf-fff":
        m = LeafFFF(i, o, d["depth"], d["leaf_width"], activation=act, threads=threads)
    elif kind == "neuron-fff":
        m = NeuronFFF(i, o, d["depth"], trees=d["trees"], activation=act, bias=d["output_bias"],
                      threads=threads)
    else:
        m = DenseFF(i, d["width"], o, activation=act, bias=d["output_bias"], threads=threads)
    m.load_state_dict({k: torch.from_numpy(v) for k, v in d["tensors"].items()})
    return m
