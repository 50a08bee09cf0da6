"""Timing: how minissl measures speed (DESIGN.md, Timing).

Same process, same input, warm-up calls first, then the median of repeated runs.
Absolute times on shared machines are noisy; ratios measured in one run are what count,
so benchmarks time the things they compare side by side with these helpers:
`measure` (any call), `layer_speed` (one layer: dense vs compacted vs CSR) and
`network_speedup` (whole model, dense vs compacted).
"""

import time
from dataclasses import dataclass

import numpy as np

from minissl import compact, kernels, nn, ops
from minissl.autograd import no_grad
from minissl.backend import synchronize, to_numpy, xp_of
from minissl.tensor import Tensor


@dataclass(frozen=True)
class Timing:
    """Seconds per call: the median and the fastest of `repeats` timed calls."""

    median: float
    best: float
    repeats: int


def measure(function, repeats=20, warmup=3, min_seconds=0.0):
    """Call `function()` `warmup` times untimed, then time `repeats` calls one by one.

    With `min_seconds` > 0, keeps timing past `repeats` until that much time has been
    spent, so that very short calls get enough samples. Returns a Timing.
    Raises ValueError unless repeats >= 1 and warmup >= 0.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"measure needs repeats >= 1 and warmup >= 0, got {repeats}, {warmup}")
    for _ in range(warmup):
        function()
    samples = []
    spent = 0.0
    while len(samples) < repeats or spent < min_seconds:
        start = time.perf_counter()
        function()
        synchronize()
        samples.append(time.perf_counter() - start)
        spent += samples[-1]
    return Timing(median=float(np.median(samples)), best=float(np.min(samples)),
                  repeats=len(samples))


def compare(functions, repeats=20, warmup=3, min_seconds=0.0):
    """Time several calls side by side: rounds of one call each, in turn, so that a slow
    stretch of a shared machine hits all of them alike. The order alternates (a b c, c b a,
    ...) because the call after another one's cache traffic is measurably slower: a layer
    timed against an identical copy of itself showed up to 10% of such bias. Returns one
    Timing per function.
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"compare needs repeats >= 1 and warmup >= 0, got {repeats}, {warmup}")
    for function in functions:
        for _ in range(warmup):
            function()
    samples = [[] for _ in functions]
    order = list(range(len(functions)))
    while len(samples[0]) < repeats or sum(samples[0]) < min_seconds:
        for index in order:  # the order flips every round: no call always goes first
            start = time.perf_counter()
            functions[index]()
            synchronize()  # GPU work is asynchronous: wait for it before reading the clock
            samples[index].append(time.perf_counter() - start)
        order.reverse()
    return [Timing(median=float(np.median(times)), best=float(np.min(times)), repeats=len(times))
            for times in samples]


@dataclass(frozen=True)
class LayerSpeed:
    """One layer's forward time: dense (zeros included), compacted, and the same nonzeros
    as a CSR matrix (scipy.sparse) times the input; speedups are dense time / other time."""

    layer: str
    flop_pct: float
    dense_s: float
    compact_s: float
    csr_s: float
    dense_gemm_s: float     # the layer's matrix product alone, patch matrix built beforehand
    compact_gemm_s: float

    @property
    def speedup(self):
        return self.dense_s / self.compact_s

    @property
    def gemm_speedup(self):
        """Speedup of the matrix product alone: what compaction shrinks, without the
        im2col pass, dispatch and output layout that a whole layer also pays."""
        return self.dense_gemm_s / self.compact_gemm_s

    @property
    def ideal_speedup(self):
        return 100.0 / self.flop_pct

    @property
    def efficiency(self):
        """Measured speedup / ideal speedup (1 / FLOP fraction)."""
        return self.speedup / self.ideal_speedup

    @property
    def csr_speedup(self):
        return self.dense_s / self.csr_s

    def summary(self):
        """The ratios as a plain dict (for tables and JSON)."""
        return {"layer": self.layer, "flop_pct": self.flop_pct, "speedup": self.speedup,
                "ideal_speedup": self.ideal_speedup, "efficiency": self.efficiency,
                "gemm_speedup": self.gemm_speedup, "csr_speedup": self.csr_speedup}


def _csr_forward(module, weight, x):
    """y = W x with W in CSR form; conv layers multiply the im2col patch matrix."""
    xp_x = to_numpy(x.data)
    if isinstance(module, nn.Linear):
        out = (weight @ xp_x.T).T  # (B, out)
        return out + to_numpy(module.bias.data) if module.bias is not None else out
    (kernel_h, kernel_w), stride, padding = module.kernel_size, module.stride, module.padding
    cols = kernels.im2col(xp_x, kernel_h, kernel_w, stride, padding)  # (C*KH*KW, B*OH*OW)
    out = weight @ cols  # (C_out, B*OH*OW)
    if module.bias is not None:
        out += to_numpy(module.bias.data)[:, None]
    batch = xp_x.shape[0]
    return np.ascontiguousarray(out.reshape(out.shape[0], batch, -1).transpose(1, 0, 2))


def layer_speed(name, module, plan, x, repeats=20, warmup=3, min_seconds=0.2):
    """Time one Linear/Conv2d of a sparse model against its compacted and CSR versions.

    Shapes: x (B, *input shape of the layer). The compacted layer gets x restricted to the
    kept inputs (gathering them is the previous layer's job, so it is not timed).
    """
    layer_plan = plan.layer(name)
    small = compact.build_layer(name, module, plan)
    if xp_of(module.weight.data) is not np:  # built from NumPy copies; follow the model
        small.to_backend()
    kept = ops.take(x, layer_plan.kept_in).data.copy()  # (B, kept inputs, ...)
    small_x = Tensor(kept)
    import scipy.sparse  # here, not at import: the autograd core needs no SciPy

    weight = to_numpy(module.weight.data)
    csr = scipy.sparse.csr_matrix(weight.reshape(weight.shape[0], -1))
    dense_gemm, compact_gemm = _gemm_operands(module, x), _gemm_operands(small, small_x)
    with no_grad():
        dense, compacted, sparse, dense_product, compact_product = compare(
            [lambda: module(x), lambda: small(small_x), lambda: _csr_forward(module, csr, x),
             lambda: kernels.matmul(*dense_gemm), lambda: kernels.matmul(*compact_gemm)],
            repeats, warmup, min_seconds)
    flop_pct = 100.0 * layer_plan.flops_after / layer_plan.flops_before
    return LayerSpeed(name, flop_pct, dense.median, compacted.median, sparse.median,
                      dense_product.median, compact_product.median)


def _gemm_operands(module, x):
    """(W2, patches) of a Linear, Conv2d or GatheredConv2d for its input x, so that
    matmul(W2, patches) is the layer's product. Shapes: (N, R), (R, B*OH*OW) or (R, B)."""
    weight = module.weight.data
    if isinstance(module, nn.Linear):
        return weight, x.data.T.copy()  # (out, in), (in, B)
    rows = module.rows if isinstance(module, nn.GatheredConv2d) else None
    (kernel_h, kernel_w), stride, padding = module.kernel_size, module.stride, module.padding
    patches = kernels.im2col(x.data, kernel_h, kernel_w, stride, padding, rows=rows)
    return weight.reshape(weight.shape[0], -1), patches


def layer_speeds(model, plan, x, layers=None, repeats=20, warmup=3, min_seconds=0.2):
    """layer_speed for the Linear/Conv2d layers of a Sequential (all, or those named in
    `layers`), each fed its real activations: x goes through the model once, in eval mode.

    Shapes: x (B, *input shape). Returns a list of LayerSpeed in forward order.
    """
    model.eval()
    speeds, current = [], x
    with no_grad():
        for index, module in enumerate(model):
            name = str(index)
            wanted = name in layers if layers is not None else isinstance(
                module, (nn.Linear, nn.Conv2d))
            if wanted:
                speeds.append(layer_speed(name, module, plan, current, repeats, warmup,
                                          min_seconds))
            current = module(current)
    return speeds


def network_speedup(model, small, x, repeats=20, warmup=3, min_seconds=0.2):
    """Dense-model time / compacted-model time for one forward pass of x (eval mode)."""
    model.eval()
    small.eval()
    with no_grad():
        dense, compacted = compare([lambda: model(x), lambda: small(x)], repeats, warmup,
                                   min_seconds)
    return dense.median / compacted.median
