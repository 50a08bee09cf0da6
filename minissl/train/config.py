"""The engine's settings as small frozen dataclasses, each checked when it is made: a bad
value raises ValueError naming the field, before any training starts.

- `SGDConfig`: the optimizer (learning rate, momentum, weight decay);
- `DataSchedule`: how the training set is fed (batch size, the seed of shuffling and
  augmentation, an optional augmentation);
- `SSLSchedule`: the SSL phases [SSL eq. 1; prox] (prox epochs, the cut, masked fine-tuning);
- `TimingConfig`: how long each speed measurement of a compacted model repeats.
"""

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional


def _check(condition, message):
    if not condition:
        raise ValueError(message)


def _finite(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class SGDConfig:
    """SGD with momentum and L2 weight decay; the learning rate follows a per-step cosine
    from `lr` to 0 over each training phase (minissl.optim.CosineSchedule)."""
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 0.0

    def __post_init__(self):
        _check(_finite(self.lr) and self.lr > 0, f"SGDConfig.lr must be > 0, got {self.lr!r}")
        _check(_finite(self.momentum) and self.momentum >= 0,
               f"SGDConfig.momentum must be >= 0, got {self.momentum!r}")
        _check(_finite(self.weight_decay) and self.weight_decay >= 0,
               f"SGDConfig.weight_decay must be >= 0, got {self.weight_decay!r}")


@dataclass(frozen=True)
class DataSchedule:
    """Mini-batches of `batch_size`, shuffled (and augmented) by a generator seeded with
    `seed` at the start of each phase. `augment(batch, rng) -> batch`, when given, transforms
    each training batch (B, ...) -> (B, ...), e.g. minissl.augment.random_crop_flip."""
    batch_size: int = 128
    seed: int = 0
    augment: Optional[Callable] = None

    def __post_init__(self):
        _check(isinstance(self.batch_size, int) and self.batch_size > 0,
               f"DataSchedule.batch_size must be a positive int, got {self.batch_size!r}")
        _check(isinstance(self.seed, int), f"DataSchedule.seed must be an int, got {self.seed!r}")
        _check(self.augment is None or callable(self.augment),
               "DataSchedule.augment must be None or a function (batch, rng) -> batch")


@dataclass(frozen=True)
class SSLSchedule:
    """The SSL phases of one row (Trainer.ssl):

    1. `epochs` of SGD with the proximal group-lasso step [prox], from `lr` (None: the
       SGDConfig's); with `phases_from` (the folder of an earlier run), the weights that
       run's prox phase finished with instead;
    2. the cut: groups with 0 < norm < `cut` set to exactly zero (docs/design.md, "the
       vanishing threshold");
    3. `finetune_epochs` at `finetune_lr` with the zero groups held at zero (0 skips).
    """
    epochs: int
    finetune_epochs: int = 0
    finetune_lr: float = 0.01
    cut: float = 1e-3
    lr: Optional[float] = None
    phases_from: Optional[Path] = None

    def __post_init__(self):
        _check(isinstance(self.epochs, int) and self.epochs > 0,
               f"SSLSchedule.epochs must be a positive int, got {self.epochs!r}")
        _check(isinstance(self.finetune_epochs, int) and self.finetune_epochs >= 0,
               f"SSLSchedule.finetune_epochs must be an int >= 0, got {self.finetune_epochs!r}")
        _check(_finite(self.finetune_lr) and self.finetune_lr > 0,
               f"SSLSchedule.finetune_lr must be > 0, got {self.finetune_lr!r}")
        _check(_finite(self.cut) and self.cut >= 0, f"SSLSchedule.cut must be >= 0, got {self.cut!r}")
        _check(self.lr is None or (_finite(self.lr) and self.lr > 0),
               f"SSLSchedule.lr must be None or > 0, got {self.lr!r}")


@dataclass(frozen=True)
class TimingConfig:
    """Each speed measurement of a compacted model repeats for at least `min_seconds` and
    `repeats` times, on a batch of `batch` test images. `min_seconds` 0 is a smoke test:
    `smoke_repeats` repeats, whose speedups mean nothing."""
    min_seconds: float = 0.2
    repeats: int = 20
    smoke_repeats: int = 3
    batch: int = 100

    def __post_init__(self):
        _check(_finite(self.min_seconds) and self.min_seconds >= 0,
               f"TimingConfig.min_seconds must be >= 0, got {self.min_seconds!r}")
        for name in ("repeats", "smoke_repeats", "batch"):
            value = getattr(self, name)
            _check(isinstance(value, int) and value > 0,
                   f"TimingConfig.{name} must be a positive int, got {value!r}")

    @property
    def repeat_count(self):
        """How many times each measurement repeats at least."""
        return self.repeats if self.min_seconds > 0 else self.smoke_repeats
