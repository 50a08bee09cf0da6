"""Neural-network building blocks: Module, Parameter, layers and initializers.

Every layer declares what it is to SSL, compaction, FLOP counts and timing (its `role` and
the methods of minissl/nn/protocol.py); docs/adding_a_layer.md shows how to add one.
"""

from minissl.nn.blocks import BasicBlock
from minissl.nn.conv_layers import (AvgPool2d, BatchNorm2d, Conv2d, Dropout, GatheredConv2d,
                                    GlobalAvgPool2d, MaxPool2d, Take)
from minissl.nn.layers import Flatten, Linear, ReLU, Sequential
from minissl.nn.module import Channelwise, Module, Parameter, StateDictError, eval_mode
from minissl.nn.protocol import CompactionError, Role

__all__ = [
    "Module", "Parameter", "StateDictError", "Channelwise", "Role", "CompactionError", "eval_mode",
    "Linear", "ReLU", "Flatten", "Sequential",
    "Conv2d", "MaxPool2d", "AvgPool2d", "GlobalAvgPool2d", "BatchNorm2d", "Dropout",
    "BasicBlock", "GatheredConv2d", "Take",
]
