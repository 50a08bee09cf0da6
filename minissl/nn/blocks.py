"""The CIFAR residual block of He et al., "Deep Residual Learning for Image Recognition",
CVPR 2016, section 4.2: two 3x3 convolutions with BatchNorm and a shortcut.

    out = relu(branch(x) + shortcut(x)),  branch = conv-BN-ReLU-conv-BN

The shortcut is the identity when shapes match, else a projection (1x1 conv with stride,
then BN; the paper's option B). SSL's depth group is every parameter of `branch`, BN
scales and shifts included: when all of it is zero, branch(x) is exactly zero and the
block computes relu(shortcut(x)) (DESIGN.md, depth).
"""

import numpy as np

from minissl import ops
from minissl.nn.conv_layers import BatchNorm2d, Conv2d
from minissl.nn.layers import ReLU, Sequential
from minissl.nn.module import Module


class BasicBlock(Module):
    """Residual block. Shapes: (B, C_in, H, W) -> (B, C_out, H/stride, W/stride).

    `rng` seeds the convolutions (default: a Generator seeded with 0).
    """

    def __init__(self, in_channels, out_channels, stride=1, rng=None, dtype=np.float32):
        super().__init__()
        rng = np.random.default_rng(0) if rng is None else rng
        self.branch = Sequential(
            Conv2d(in_channels, out_channels, 3, stride, 1, bias=False, rng=rng, dtype=dtype),
            BatchNorm2d(out_channels, dtype=dtype),
            ReLU(),
            Conv2d(out_channels, out_channels, 3, 1, 1, bias=False, rng=rng, dtype=dtype),
            BatchNorm2d(out_channels, dtype=dtype),
        )
        if stride != 1 or in_channels != out_channels:
            self.shortcut = Sequential(
                Conv2d(in_channels, out_channels, 1, stride, 0, bias=False, rng=rng, dtype=dtype),
                BatchNorm2d(out_channels, dtype=dtype),
            )
        else:
            self.shortcut = None

    @classmethod
    def from_parts(cls, branch, shortcut=None):
        """A block made of the given branch (a Sequential conv-BN-ReLU-conv-BN, convs may be
        GatheredConv2d) and shortcut (None for the identity); used by minissl.compact."""
        block = cls.__new__(cls)
        Module.__init__(block)
        block.branch, block.shortcut = branch, shortcut
        return block

    def forward(self, x):
        identity = x if self.shortcut is None else self.shortcut(x)
        return ops.relu(self.branch(x) + identity)  # residual add

    def __repr__(self):
        kind = "identity" if self.shortcut is None else "projection"
        return f"BasicBlock({self.branch[0].in_channels}, {self.branch[3].out_channels}, {kind})"
