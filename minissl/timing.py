"""Timing: how minissl measures speed (docs/design.md, Timing).

Same process, same input, warm-up calls first, then the median of repeated runs.
Absolute times on shared machines are noisy; ratios measured in one run are what count,
so benchmarks time the things they compare side by side with these helpers:
`measure` (any call), `layer_speed` (one layer: dense vs compacted vs CSR) and
`network_speedup` (whole model, dense vs compacted). `tune_convolutions` times each conv
layer's inference paths (im2col + BLAS, the per-image tile kernel, the shifted-runs
kernel; kernels/choice.py) on its real input and returns the fastest for that batch size;
`apply_conv_choices` keeps them in the layers. The speed comparisons do both on both sides
first, so that each layer is timed on its best path. They leave every module in the mode
it was in.

Layer speeds and the tuner time each sample as a burst of back-to-back calls of one layer
(BURST_SECONDS, see compare): the layer as a forward pass runs it, on data still in the
cache. Every figure carries its spread, the interquartile range (IQR) over the samples; a
comparison whose spread is wider than MAX_SPREAD is measured again (up to MAX_ATTEMPTS times,
keeping the tightest; a smoke test, min_seconds 0, measures once). A speedup is the median
of the per-round ratios of two calls timed side by side. `LayerSpeed.flags()` names a
speedup that the FLOPs cannot explain: above the layer's FLOP-ideal by more than
IDEAL_MARGIN, or an unchanged layer (100% of its FLOPs) off 1.00x by more than NOISE_BAND.
Those are machine noise, never results.
"""

import time
from dataclasses import dataclass

import numpy as np

from minissl import compact, kernels, ops
from minissl.autograd import no_grad
from minissl.backend import get_backend, synchronize, to_numpy, xp_of
from minissl.nn import protocol as nn_protocol
from minissl.nn.module import eval_mode
from minissl.nn.protocol import Role
from minissl.tensor import Tensor

MAX_SPREAD = 0.25     # widest acceptable IQR / median of a timed call
BURST_SECONDS = 2e-3  # layer_speed: each sample, back-to-back calls of one layer this long
MAX_BURST = 50        # ... at most this many calls
MAX_ATTEMPTS = 3      # a comparison wider than that is measured again, this often in all
TUNE_REPEATS, TUNE_WARMUP = 7, 2  # tune_convolution: rounds and warm-up calls per path
IDEAL_MARGIN = 0.15   # a speedup above FLOP-ideal * (1 + this) is flagged
NOISE_BAND = 0.10     # an unchanged layer's speedup outside 1 +- this (and its IQR) is flagged


@dataclass(frozen=True)
class Timing:
    """Seconds per call: the median, the fastest and the quartiles (q1, q3) of `repeats`
    timed calls."""

    median: float
    best: float
    repeats: int
    q1: float = float("nan")
    q3: float = float("nan")

    @property
    def spread(self):
        """Interquartile range relative to the median (0.1: the middle half of the calls
        lie within 10% of the median's size)."""
        return (self.q3 - self.q1) / self.median

    @classmethod
    def of(cls, samples):
        samples = np.asarray(samples, dtype=float)
        q1, median, q3 = np.percentile(samples, [25, 50, 75])
        return cls(median=float(median), best=float(samples.min()), repeats=len(samples),
                   q1=float(q1), q3=float(q3))


@dataclass(frozen=True)
class Ratio:
    """A speedup with its spread: the median and quartiles of per-round time ratios."""

    median: float
    q1: float
    q3: float

    @classmethod
    def of(cls, slow_samples, fast_samples):
        ratios = np.asarray(slow_samples, dtype=float) / np.asarray(fast_samples, dtype=float)
        q1, median, q3 = np.percentile(ratios, [25, 50, 75])
        return cls(float(median), float(q1), float(q3))


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
    return Timing.of(samples)


def compare(functions, repeats=20, warmup=3, min_seconds=0.0, burst_seconds=0.0,
            attempts=MAX_ATTEMPTS):
    """Time several calls side by side: rounds of one sample each, in turn, so that a slow
    stretch of a shared machine hits all of them alike. The order alternates (a b c, c b a,
    ...) because the call after another one's cache traffic is measurably slower: a layer
    timed against an identical copy of itself showed up to 10% of such bias.

    A sample is one call, or with `burst_seconds` > 0 the mean of a burst of back-to-back
    calls of one function lasting about that long (from the last warm-up call; 1 to
    MAX_BURST calls): the steady state of a layer called again and again on data already in
    the cache, as in a forward pass that feeds it its predecessor's fresh output, rather than
    one call right after another function evicted its data. Each burst's first call still
    pays for that eviction; the rest do not.

    When some call's spread (IQR / median) is wider than MAX_SPREAD, the whole comparison is
    measured again, up to `attempts` times in all, and the attempt with the narrowest widest
    spread is kept. Returns (one Timing per function, seconds per call; the per-round samples:
    a list per function, for `Ratio.of`).
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"compare needs repeats >= 1 and warmup >= 0, got {repeats}, {warmup}")
    bursts = []
    for function in functions:
        last = None
        for _ in range(warmup):
            start = time.perf_counter()
            function()
            synchronize()
            last = time.perf_counter() - start
        calls = 1
        if burst_seconds > 0 and last is not None:
            calls = int(min(MAX_BURST, max(1, round(burst_seconds / max(last, 1e-9)))))
        bursts.append(calls)
    kept = None
    for _ in range(attempts):
        samples = _rounds(functions, bursts, repeats, min_seconds)
        timings = [Timing.of(times) for times in samples]
        widest = max(timing.spread for timing in timings)
        if kept is None or widest < kept[0]:
            kept = (widest, timings, samples)
        if widest <= MAX_SPREAD:
            break
    return kept[1], kept[2]


def _rounds(functions, bursts, repeats, min_seconds):
    """Per-function lists of seconds per call, timed in alternating rounds of one burst of
    `bursts[i]` calls per function (see compare)."""
    samples = [[] for _ in functions]
    order = list(range(len(functions)))
    spent = 0.0  # seconds spent in the first function's calls
    while len(samples[0]) < repeats or spent < min_seconds:
        for index in order:  # the order flips every round: no call always goes first
            function, calls = functions[index], bursts[index]
            start = time.perf_counter()
            for _ in range(calls):
                function()
            synchronize()  # GPU work is asynchronous: wait for it before reading the clock
            elapsed = time.perf_counter() - start
            samples[index].append(elapsed / calls)
            if index == 0:
                spent += elapsed
        order.reverse()
    return samples


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
    speedup_range: tuple = (float("nan"), float("nan"))  # quartiles of the per-round ratios
    speedup_median: float = None  # median of per-round ratios (None: ratio of the medians)
    paths: tuple = ("", "")  # inference path of the dense and the compacted conv (tuned)

    @property
    def speedup(self):
        if self.speedup_median is not None:
            return self.speedup_median
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

    def flags(self):
        """Why this speedup is not a result, as short texts (empty when it is one)."""
        return speedup_flags(self.speedup, self.speedup_range, self.flop_pct)

    def summary(self):
        """The ratios as a plain dict (for tables and JSON), with the speedup's quartiles
        and its flags."""
        return {"layer": self.layer, "flop_pct": self.flop_pct, "speedup": self.speedup,
                "speedup_iqr": list(self.speedup_range),
                "ideal_speedup": self.ideal_speedup, "efficiency": self.efficiency,
                "gemm_speedup": self.gemm_speedup, "csr_speedup": self.csr_speedup,
                "dense_ms": 1e3 * self.dense_s, "compact_ms": 1e3 * self.compact_s,
                "csr_ms": 1e3 * self.csr_s, "paths": list(self.paths), "flags": self.flags()}


def speedup_flags(speedup, quartiles, flop_pct):
    """Why a measured speedup of a layer (or network) kept at `flop_pct` % of its FLOPs is
    not a result: above its FLOP-ideal (100 / flop_pct) by more than IDEAL_MARGIN, or, for
    an unchanged one, away from 1.00x by more than NOISE_BAND and its own IQR. Returns a
    list of short texts (empty: a result)."""
    low, high = quartiles
    if flop_pct >= 100.0:
        if abs(speedup - 1) > NOISE_BAND and not low <= 1.0 <= high:
            return [f"unchanged, yet timed at {speedup:.2f}x"]
        return []
    ideal = 100.0 / flop_pct
    if speedup > ideal * (1 + IDEAL_MARGIN):
        return [f"{speedup:.2f}x is above its FLOP-ideal {ideal:.2f}x"]
    return []


@dataclass(frozen=True)
class ConvChoice:
    """The path tune_convolutions picked for one conv layer at one batch size, and the median
    seconds per call of every path it timed ({"gemm": s, "tiles": s, "shifted": s})."""

    layer: str
    batch: int
    algorithm: str
    seconds: dict


def tune_convolution(name, layer, x, repeats=TUNE_REPEATS, warmup=TUNE_WARMUP,
                     burst_seconds=BURST_SECONDS, attempts=MAX_ATTEMPTS):
    """Time `layer` (a Conv2d or GatheredConv2d) on x on each inference path (im2col + BLAS,
    the tile kernel, the shifted-runs kernel; kernels/choice.py), side by side (bursts of
    calls, as in compare), and return the fastest as a ConvChoice. Changes nothing: apply it
    with apply_conv_choices.

    Shapes: x (B, C_in, H, W). Returns None on a backend without these kernels (anything but
    Numba). Measured choices differ from run to run only where two paths are about as fast;
    their outputs agree to rounding (ops.conv2d).
    """
    if get_backend() != "numba" or xp_of(x.data) is not np:
        return None
    paths = kernels.ALGORITHMS
    with no_grad():
        times, _ = compare([lambda path=path: layer.forward_with(x, path) for path in paths],
                           repeats, warmup, burst_seconds=burst_seconds, attempts=attempts)
    seconds = {path: timed.median for path, timed in zip(paths, times)}
    return ConvChoice(name, x.shape[0], min(seconds, key=seconds.get), seconds)


def _effort(repeats, warmup, min_seconds):
    """How hard a speed measurement of `repeats` rounds and `min_seconds` tunes its conv
    layers, and how often it measures a noisy comparison again: as tune_convolution does by
    default, within `repeats` and `warmup`; a smoke test (min_seconds 0, whose speedups mean
    nothing) measures once. Returns the keyword arguments of tune_convolution(s); their
    "attempts" is the measurement's own too."""
    return {"repeats": min(repeats, TUNE_REPEATS), "warmup": min(warmup, TUNE_WARMUP),
            "attempts": 1 if min_seconds == 0 else MAX_ATTEMPTS}


class _ConvInputs:
    """A tracer (nn.protocol.tracing) that notes the first input of every conv layer of one
    forward pass: {id(layer): (name, layer, input)}."""

    def __init__(self, names):
        self.names, self.inputs = names, {}

    def call(self, module, inputs):
        if id(module) in self.names:
            self.inputs.setdefault(id(module), (self.names[id(module)], module, inputs[0]))
        return module.forward(*inputs)


def tune_convolutions(model, x, repeats=TUNE_REPEATS, warmup=TUNE_WARMUP, retune=False,
                      attempts=MAX_ATTEMPTS):
    """tune_convolution for every conv layer of `model` (nested ones too), each on the
    activations that reach it when x goes through the model once in eval mode. A layer that
    already holds a choice for x's batch size is skipped (say, one layer_speeds tuned),
    unless `retune`. Changes nothing but the model's mode, which it restores.

    Shapes: x (B, *input shape). Returns the ConvChoices, in forward order (empty on a
    backend without the inference kernels); apply_conv_choices puts them into the layers.
    """
    names = {id(layer): name for name, layer in model.named_modules()
             if hasattr(layer, "forward_with") and (retune or x.shape[0] not in layer.algorithms)}
    recorder = _ConvInputs(names)
    with eval_mode(model), no_grad(), nn_protocol.tracing(recorder):
        model(x)
    return [choice for name, layer, seen in recorder.inputs.values()
            if (choice := tune_convolution(name, layer, seen, repeats, warmup,
                                           attempts=attempts)) is not None]


def apply_conv_choices(model, choices):
    """Put ConvChoices (tune_convolutions) into `model`'s conv layers: each then runs its
    chosen path at that batch size (mutates the layers' `algorithms`). Raises KeyError for a
    choice naming a layer the model does not have."""
    layers = dict(model.named_modules())
    for choice in choices:
        if choice.layer not in layers or not hasattr(layers[choice.layer], "algorithms"):
            raise KeyError(f"the model has no conv layer named {choice.layer!r}")
        layers[choice.layer].algorithms[choice.batch] = choice.algorithm


def layer_speed(name, module, plan, x, repeats=20, warmup=3, min_seconds=0.2,
                burst_seconds=BURST_SECONDS):
    """Time one WEIGHTS layer (Linear, Conv2d) of a sparse model against its compacted and CSR
    versions; each layer says how its product and its CSR form are computed
    (gemm_operands, csr_forward: minissl/nn/protocol.py). Each sample is a burst of
    back-to-back calls of one of them (compare's `burst_seconds`; 0: single calls).

    Shapes: x (B, *input shape of the layer). The compacted layer gets x restricted to the
    kept inputs (gathering them is the previous layer's job, so it is not timed). A conv
    layer and its compacted copy each run on their faster inference path (tune_convolution).
    """
    layer_plan = plan.layer(name)
    small = module.compacted(name, plan)
    if xp_of(module.weight.data) is not np:  # built from NumPy copies; follow the model
        small.to_backend()
    kept = ops.take(x, layer_plan.kept_in).data.copy()  # (B, kept inputs, ...)
    small_x = Tensor(kept)
    import scipy.sparse  # here, not at import: the autograd core needs no SciPy

    weight = to_numpy(module.weight.data)
    csr = scipy.sparse.csr_matrix(weight.reshape(weight.shape[0], -1))
    dense_gemm, compact_gemm = module.gemm_operands(x), small.gemm_operands(small_x)
    paths = ("", "")
    tuning = _effort(repeats, warmup, min_seconds)
    if hasattr(module, "algorithms"):  # each conv on its faster inference path
        choices = (tune_convolution(name, module, x, burst_seconds=burst_seconds, **tuning),
                   tune_convolution(name, small, small_x, burst_seconds=burst_seconds, **tuning))
        for layer, choice in zip((module, small), choices):
            if choice is not None:
                layer.algorithms[choice.batch] = choice.algorithm
        paths = tuple(choice.algorithm if choice else "" for choice in choices)
    with no_grad():
        timings, samples = compare(
            [lambda: module(x), lambda: small(small_x), lambda: module.csr_forward(csr, x),
             lambda: kernels.matmul(*dense_gemm), lambda: kernels.matmul(*compact_gemm)],
            repeats, warmup, min_seconds, burst_seconds, tuning["attempts"])
    dense, compacted, sparse, dense_product, compact_product = timings
    ratio = Ratio.of(samples[0], samples[1])
    flop_pct = 100.0 * layer_plan.flops_after / layer_plan.flops_before
    return LayerSpeed(name, flop_pct, dense.median, compacted.median, sparse.median,
                      dense_product.median, compact_product.median, (ratio.q1, ratio.q3),
                      ratio.median, paths)


def layer_speeds(model, plan, x, layers=None, repeats=20, warmup=3, min_seconds=0.2,
                 burst_seconds=BURST_SECONDS):
    """layer_speed for the WEIGHTS layers of a model's chain (all, or those named in
    `layers`), each fed its real activations: x goes through the model once, in eval mode
    (each module's own mode is restored afterwards).

    Shapes: x (B, *input shape). Returns a list of LayerSpeed in forward order.
    """
    speeds, current = [], x
    with eval_mode(model), no_grad():
        for name, module in compact.layer_chain(model, x.shape[1:]):
            wanted = name in layers if layers is not None else module.role is Role.WEIGHTS
            if wanted:
                speeds.append(layer_speed(name, module, plan, current, repeats, warmup,
                                          min_seconds, burst_seconds))
            current = module(current)
    return speeds


def network_speedup(model, small, x, repeats=20, warmup=3, min_seconds=0.2):
    """Dense-model time / compacted-model time for one forward pass of x (eval mode): the
    median of the per-round ratios (`network_speed` gives its quartiles too)."""
    return network_speed(model, small, x, repeats, warmup, min_seconds).median


def network_speed(model, small, x, repeats=20, warmup=3, min_seconds=0.2):
    """The whole-network speedup with its spread, a Ratio (median, q1, q3), both models in
    eval mode (each module's own mode is restored afterwards). Tunes both models' conv
    layers for x's batch size first, those not tuned for it yet, and keeps those choices in
    them (tune_convolutions, apply_conv_choices)."""
    tuning = _effort(repeats, warmup, min_seconds)
    apply_conv_choices(model, tune_convolutions(model, x, **tuning))
    apply_conv_choices(small, tune_convolutions(small, x, **tuning))
    with eval_mode(model, small), no_grad():
        _, samples = compare([lambda: model(x), lambda: small(x)], repeats, warmup,
                             min_seconds, attempts=tuning["attempts"])
    return Ratio.of(samples[0], samples[1])
