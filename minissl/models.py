"""Model builders for the paper's experiments: MLP, LeNet, the CIFAR-10 ConvNet, ResNets.

Each builder takes an explicit seed so that two calls build the same weights.
"""

import numpy as np

from minissl.nn import (AvgPool2d, BasicBlock, BatchNorm2d, Conv2d, Flatten, GlobalAvgPool2d,
                        Linear, MaxPool2d, ReLU, Sequential)


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


def lenet(seed=0, dtype=np.float32):
    """Caffe's LeNet for MNIST (the paper's section 4.1 baseline).

    conv 20@5x5 -> max-pool 2 -> conv 50@5x5 -> max-pool 2 -> fc 500 -> ReLU -> fc 10.
    Shapes: (B, 1, 28, 28) -> (B, 10). Xavier init, as in Caffe's lenet prototxt.
    """
    rng = np.random.default_rng(seed)
    return Sequential(
        Conv2d(1, 20, 5, init="xavier", rng=rng, dtype=dtype),  # (B, 20, 24, 24)
        MaxPool2d(2),  # (B, 20, 12, 12)
        Conv2d(20, 50, 5, init="xavier", rng=rng, dtype=dtype),  # (B, 50, 8, 8)
        MaxPool2d(2),  # (B, 50, 4, 4)
        Flatten(),  # (B, 800)
        Linear(800, 500, init="xavier", rng=rng, dtype=dtype),
        ReLU(),
        Linear(500, 10, init="xavier", rng=rng, dtype=dtype),
    )


def cifar_convnet(seed=0, dtype=np.float32):
    """Caffe's cifar10_full ConvNet (the paper's section 4.2), without its LRN layers.

    conv 32@5x5 pad 2 -> max-pool 3/2 -> ReLU -> conv 32@5x5 pad 2 -> ReLU -> avg-pool 3/2
    -> conv 64@5x5 pad 2 -> ReLU -> avg-pool 3/2 -> fc 10; pools use Caffe's ceil mode.
    Shapes: (B, 3, 32, 32) -> (B, 10).
    """
    rng = np.random.default_rng(seed)
    return Sequential(
        Conv2d(3, 32, 5, padding=2, rng=rng, dtype=dtype),  # (B, 32, 32, 32)
        MaxPool2d(3, 2, ceil_mode=True),  # (B, 32, 16, 16)
        ReLU(),
        Conv2d(32, 32, 5, padding=2, rng=rng, dtype=dtype),
        ReLU(),
        AvgPool2d(3, 2, ceil_mode=True),  # (B, 32, 8, 8)
        Conv2d(32, 64, 5, padding=2, rng=rng, dtype=dtype),
        ReLU(),
        AvgPool2d(3, 2, ceil_mode=True),  # (B, 64, 4, 4)
        Flatten(),  # (B, 1024)
        Linear(1024, 10, init="xavier", rng=rng, dtype=dtype),
    )


def resnet_cifar(depth=20, seed=0, dtype=np.float32):
    """CIFAR ResNet of He et al. 2016 (section 4.2): depth = 6n + 2 (20, 32, 56, ...).

    conv 16@3x3 -> BN -> ReLU -> n blocks of 16, n of 32 (stride 2), n of 64 (stride 2)
    -> global average pool -> fc 10. Shapes: (B, 3, 32, 32) -> (B, 10).
    Raises ValueError when depth is not 6n + 2 with n >= 1.
    """
    if depth < 8 or (depth - 2) % 6:
        raise ValueError(f"resnet_cifar depth must be 6n + 2 (20, 32, 56, ...), got {depth}")
    blocks_per_stage = (depth - 2) // 6
    rng = np.random.default_rng(seed)
    layers = [Conv2d(3, 16, 3, padding=1, bias=False, rng=rng, dtype=dtype),
              BatchNorm2d(16, dtype=dtype), ReLU()]
    in_channels = 16
    for stage, channels in enumerate((16, 32, 64)):
        for index in range(blocks_per_stage):
            stride = 2 if stage > 0 and index == 0 else 1
            layers.append(BasicBlock(in_channels, channels, stride, rng=rng, dtype=dtype))
            in_channels = channels
    layers += [GlobalAvgPool2d(), Linear(64, 10, init="xavier", rng=rng, dtype=dtype)]
    return Sequential(*layers)


def linear_layers(model):
    """Return the Linear layers of a model, in forward order."""
    return [module for _, module in model.named_modules() if isinstance(module, Linear)]


def conv_layers(model):
    """Return the Conv2d layers of a model, in forward order."""
    return [module for _, module in model.named_modules() if isinstance(module, Conv2d)]
