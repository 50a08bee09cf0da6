"""Model builders for the paper's experiments (dense ones here; conv nets join them later).

Each builder takes an explicit seed so that two calls build the same weights.
"""

import numpy as np

from minissl.nn import Linear, ReLU, Sequential


def mlp(sizes=(784, 500, 300, 10), seed=0, dtype=np.float32):
    """Multilayer perceptron: Linear layers of the given sizes with ReLU between them.

    Shapes: (B, sizes[0]) -> (B, sizes[-1]). The default is the paper's MNIST MLP
    784-500-300-10 (Wen et al. 2016, section 4.1). Raises ValueError for fewer than 2 sizes.
    """
    sizes = tuple(int(size) for size in sizes)
    if len(sizes) < 2 or min(sizes) < 1:
        raise ValueError(f"mlp needs at least two positive layer sizes, got {sizes}")
    rng = np.random.default_rng(seed)
    layers = []
    for index, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(Linear(fan_in, fan_out, rng=rng, dtype=dtype))
        if index < len(sizes) - 2:
            layers.append(ReLU())
    return Sequential(*layers)


def linear_layers(model):
    """Return the Linear layers of a model, in forward order."""
    return [module for _, module in model.named_modules() if isinstance(module, Linear)]
