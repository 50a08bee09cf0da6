"""Seeded weight initializers (He and Xavier/Glorot).

References: He et al., "Delving Deep into Rectifiers", ICCV 2015 (std = sqrt(2 / fan_in));
Glorot & Bengio, AISTATS 2010 (uniform limit sqrt(6 / (fan_in + fan_out))).
Every initializer takes an explicit `numpy.random.Generator`; nothing reseeds global RNGs.
"""

import numpy as np


def fans(shape):
    """Return (fan_in, fan_out) of a weight: dense (out, in) or conv (C_out, C_in, KH, KW)."""
    if len(shape) < 2:
        raise ValueError(f"fan-in and fan-out need a weight with >= 2 dimensions, got shape {shape}")
    receptive_field = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * receptive_field, shape[0] * receptive_field


def he_normal(shape, rng, dtype=np.float32):
    """Normal(0, sqrt(2 / fan_in)): keeps activation variance constant through ReLUs."""
    fan_in, _ = fans(shape)
    return (rng.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(dtype)


def xavier_uniform(shape, rng, dtype=np.float32):
    """Uniform(-a, a) with a = sqrt(6 / (fan_in + fan_out))."""
    fan_in, fan_out = fans(shape)
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=shape).astype(dtype)


INITIALIZERS = {"he": he_normal, "xavier": xavier_uniform}
