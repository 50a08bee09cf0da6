"""SSL configuration and the GroupLasso regularizer that a training loop calls.

    rules = ssl.rules_for(model, GroupKind.NEURON_IN, [7e-3, 5e-3, 4e-3])
    lasso = ssl.GroupLasso(model, ssl.SSLConfig(rules))
    ... loss.backward(); lasso.before_step(); optimizer.step(); lasso.after_step(lr)

PROXIMAL mode (default): after_step applies [prox] with eta = max(lr, min_prox_lr).
SUBGRADIENT mode (the paper's own training): before_step adds the penalty's subgradient
to the gradients; zeros then come only from `zero_small_groups` at the end.
Overlapping group sets (say FILTER and SHAPE on one layer) are applied in GroupKind
order (DEPTH, FILTER, CHANNEL, SHAPE, NEURON_OUT, NEURON_IN), then in rule order.
"""

import dataclasses
import enum
import math
import numbers

import numpy as np

from minissl.backend import to_numpy
from minissl.ssl.groups import GroupKind, block_groups, group_axes, layer_groups
from minissl.ssl.penalty import add_subgradient, group_lasso_value
from minissl.ssl.prox import prox_group_lasso

KIND_ORDER = {kind: position for position, kind in enumerate(GroupKind)}


class Mode(enum.Enum):
    PROXIMAL = "proximal"
    SUBGRADIENT = "subgradient"


@dataclasses.dataclass(frozen=True)
class GroupRule:
    """Regularize the groups of `kind` on the module named `layer` with strength lambda.

    `riders` names modules (e.g. the BatchNorm that follows a conv) whose per-channel
    parameters join each FILTER or NEURON_OUT group.
    """

    layer: str
    kind: GroupKind
    strength: float
    riders: tuple = ()

    def __post_init__(self):
        if isinstance(self.riders, str):
            raise TypeError(f"rule for layer {self.layer!r}: riders must be a tuple of layer "
                            f"names, got the string {self.riders!r} (write riders=({self.riders!r},))")
        object.__setattr__(self, "riders", tuple(self.riders))
        if not isinstance(self.strength, numbers.Real) or isinstance(self.strength, bool) or (
                not math.isfinite(self.strength)) or self.strength < 0:
            raise ValueError(f"rule for layer {self.layer!r}: strength must be a finite number "
                             f">= 0, got {self.strength!r}")
        object.__setattr__(self, "strength", float(self.strength))  # NumPy scalars too


# The log10 group-norm bins of norm_histograms: 28 bins of a quarter decade from 1e-6 to 10
# (a nonzero norm below 1e-6 counts in the first bin, one above 10 in the last).
NORM_BINS = (-6.0, 1.0, 28)
FEW_GROUPS = 4  # a group set this small also keeps its norms themselves (e.g. a depth group)


def norm_histograms(group_sets):
    """Per group set, how its group norms are spread: {"layer", "kind", "groups", "zero"
    (groups exactly zero), "counts" (the nonzero ones per NORM_BINS log10 bin)}, plus
    "norms" (each group's norm) for a set of at most FEW_GROUPS groups; what a run keeps per
    epoch to show the proximal step pulling groups to zero."""
    low, high, bins = NORM_BINS
    summaries = []
    for group_set in group_sets:
        norms = np.asarray(to_numpy(group_set.norms()), dtype=np.float64)
        nonzero = norms[norms > 0]
        counts, _ = np.histogram(np.clip(np.log10(nonzero), low, high), bins=bins,
                                 range=(low, high))
        summary = {"layer": group_set.layer, "kind": group_set.kind.name,
                   "groups": int(norms.size), "zero": int(norms.size - nonzero.size),
                   "counts": counts.tolist()}
        if norms.size <= FEW_GROUPS:
            summary["norms"] = [float(norm) for norm in norms.ravel()]
        summaries.append(summary)
    return summaries


@dataclasses.dataclass(frozen=True)
class SSLConfig:
    """Which layers get which group kinds and lambdas, and how the term is optimized.

    scale_by_size: multiply each lambda by sqrt(|g|) (group-size scaling).
    min_prox_lr:   floor on the step size eta used in the prox threshold (0: none).
    """

    rules: tuple
    mode: Mode = Mode.PROXIMAL
    scale_by_size: bool = False
    min_prox_lr: float = 0.0

    def __post_init__(self):
        object.__setattr__(self, "rules", tuple(self.rules))
        if not (math.isfinite(self.min_prox_lr) and self.min_prox_lr >= 0):
            raise ValueError(f"min_prox_lr must be finite and >= 0, got {self.min_prox_lr!r}")
        for rule in self.rules:
            if not isinstance(rule, GroupRule):
                raise TypeError(f"SSLConfig rules must be GroupRules, got {rule!r}")
            if not isinstance(rule.kind, GroupKind):
                raise TypeError(f"rule for layer {rule.layer!r}: kind must be a GroupKind, got {rule.kind!r}")


def rules_for(model, kind, strengths, layer_type=None):
    """One GroupRule per layer that `kind` applies to (and of `layer_type`, if given), in
    forward order: the layers that declare `kind` in their `ssl_group_axes` (NEURON_IN and
    NEURON_OUT: Linear; FILTER, CHANNEL and SHAPE: Conv2d; BatchNorm declares none).

    `strengths` is one lambda for all layers or a list with one lambda per layer. Raises
    ValueError when no layer fits or the number of strengths differs from the layers'.
    """
    layers = [name for name, module in model.named_modules()
              if kind in group_axes(module) and (layer_type is None or isinstance(module, layer_type))]
    if not layers:
        raise ValueError(f"no layer of the model takes {kind.name} groups"
                         + (f" among its {layer_type.__name__} layers" if layer_type else ""))
    if np.ndim(strengths) == 0:
        strengths = [strengths] * len(layers)
    if len(strengths) != len(layers):
        raise ValueError(f"{len(strengths)} strengths for {len(layers)} layers ({', '.join(layers)})")
    return [GroupRule(name, kind, float(strength)) for name, strength in zip(layers, strengths)]


@dataclasses.dataclass
class CutReport:
    """What `zero_small_groups(threshold)` did: groups zeroed and the largest norm among them."""

    groups_zeroed: int
    largest_norm_zeroed: float
    threshold: float


class GroupLasso:
    """The group-lasso term of [SSL eq. 1] on a model, with the hooks a training loop calls."""

    def __init__(self, model, config):
        modules = dict(model.named_modules())
        entries = []
        for position, rule in enumerate(config.rules):
            if rule.layer not in modules:
                raise ValueError(f"rule names layer {rule.layer!r}, which the model does not have; "
                                 f"layers: {[name for name in modules if name]}")
            module = modules[rule.layer]
            unknown = [rider for rider in rule.riders if rider not in modules]
            if unknown:
                raise ValueError(f"rule for layer {rule.layer!r} names riders {unknown} the model "
                                 f"does not have")
            riders = [modules[rider] for rider in rule.riders]
            group_set = (block_groups(module, rule.layer) if rule.kind is GroupKind.DEPTH
                         else layer_groups(module, rule.kind, rule.layer, riders))
            entries.append((KIND_ORDER[rule.kind], position, group_set, rule.strength))
        entries.sort(key=lambda entry: entry[:2])
        self.config = config
        self.group_sets = [entry[2] for entry in entries]
        self.strengths = [entry[3] for entry in entries]

    def _size_scale(self, group_set):
        return float(np.sqrt(group_set.group_size())) if self.config.scale_by_size else 1.0

    def value(self):
        """The current value of the group-lasso term (a float, for logging)."""
        return group_lasso_value(self.group_sets, self.strengths, self.config.scale_by_size)

    def before_step(self):
        """SUBGRADIENT mode: add the penalty's subgradient to the gradients."""
        if self.config.mode is Mode.SUBGRADIENT:
            for group_set, strength in zip(self.group_sets, self.strengths):
                add_subgradient(group_set, strength, self.config.scale_by_size)

    def after_step(self, lr):
        """PROXIMAL mode: block soft-thresholding with threshold max(lr, floor) * lambda * s_g."""
        if self.config.mode is not Mode.PROXIMAL:
            return
        eta = max(lr, self.config.min_prox_lr)
        for group_set, strength in zip(self.group_sets, self.strengths):
            if strength > 0:
                prox_group_lasso(group_set, eta * strength * self._size_scale(group_set))

    def zero_small_groups(self, threshold):
        """Set every nonzero group with norm < threshold to exactly zero; return a CutReport.
        Raises ValueError for a threshold that is negative or not finite."""
        if not (math.isfinite(threshold) and threshold >= 0):
            raise ValueError(f"the cut's threshold must be finite and >= 0, got {threshold!r}")
        zeroed, largest = 0, 0.0
        for group_set in self.group_sets:
            norms = group_set.norms()
            cut = (norms > 0) & (norms < threshold)
            if cut.any():
                zeroed += int(cut.sum())
                largest = max(largest, float(norms[cut].max()))
                group_set.scale((~cut).astype(norms.dtype))
        return CutReport(zeroed, largest, float(threshold))

    def norm_histograms(self):
        """The spread of every group set's norms now (see norm_histograms)."""
        return norm_histograms(self.group_sets)

    def hold_zeros(self):
        """Return a ZeroHolder that keeps the groups that are zero now at zero."""
        return ZeroHolder([(s, (s.norms() > 0).astype(s.members[0].parameter.dtype))
                           for s in self.group_sets])

    def zero_group_counts(self):
        """Return [(layer, kind name, zero groups, all groups)] per group set."""
        return [(s.layer, s.kind.name, int((s.norms() == 0).sum()), s.num_groups)
                for s in self.group_sets]


class ZeroHolder:
    """Re-zeroes fixed groups after each step (fine-tuning with the structure frozen)."""

    def __init__(self, masked_sets):
        self.masked_sets = masked_sets

    def norm_histograms(self):
        """The spread of the held group sets' norms now (see norm_histograms)."""
        return norm_histograms([group_set for group_set, _ in self.masked_sets])

    def before_step(self):
        pass

    def after_step(self, lr):
        for group_set, keep in self.masked_sets:
            group_set.scale(keep)
