"""The CIFAR residual block of He et al., "Deep Residual Learning for Image Recognition",
CVPR 2016, section 4.2: two 3x3 convolutions with BatchNorm and a shortcut.

    out = relu(branch(x) + shortcut(x)),  branch = conv-BN-ReLU-conv-BN

The shortcut is the identity when shapes match, else a projection (1x1 conv with stride,
then BN; the paper's option B). SSL's depth group is every parameter of `branch`, BN
scales and shifts included: when all of it is zero, branch(x) is exactly zero and the
block computes relu(shortcut(x)) (docs/design.md, Compaction).
"""

import numpy as np

from minissl import ops
from minissl.nn.conv_layers import BatchNorm2d, Conv2d
from minissl.nn.layers import ReLU, Sequential
from minissl.nn.module import Module
from minissl.nn.protocol import Role


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

    # ---- the layer protocol (minissl/nn/protocol.py): a residual block ----------
    # Compaction reads `branch` and `shortcut` (Sequentials of declared layers; shortcut None
    # for the identity), keeps the block's input and output widths, shrinks the branch's
    # middle channels and drops a branch that is all zero (SSL's depth group).
    role = Role.BLOCK

    def sample_shape(self, shape):
        return self.branch.sample_shape(shape)  # the shortcut gives the same shape

    def input_mismatch(self, shape):
        return self.branch.input_mismatch(shape)

    def compacted(self, name, plan):
        """relu(shortcut(x)) when the plan removed the branch, else a block of compacted parts."""
        shortcut = None
        if self.shortcut is not None:
            shortcut = self.shortcut.compacted(f"{name}.shortcut", plan)
        if name in plan.removed_blocks:  # the branch is exactly 0: relu(shortcut(x))
            return ReLU() if shortcut is None else Sequential(*shortcut, ReLU())
        return BasicBlock.from_parts(self.branch.compacted(f"{name}.branch", plan), shortcut)

    def __repr__(self):
        kind = "identity" if self.shortcut is None else "projection"
        return f"BasicBlock({self.branch[0].in_channels}, {self.branch[3].out_channels}, {kind})"
