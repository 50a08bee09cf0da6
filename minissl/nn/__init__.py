"""Neural-network building blocks: Module, Parameter, layers and initializers."""

from minissl.nn.blocks import BasicBlock
from minissl.nn.conv_layers import (AvgPool2d, BatchNorm2d, Conv2d, Dropout, GatheredConv2d,
                                    GlobalAvgPool2d, MaxPool2d, Take)
from minissl.nn.layers import Flatten, Linear, ReLU, Sequential
from minissl.nn.module import Module, Parameter, StateDictError

__all__ = [
    "Module", "Parameter", "StateDictError", "Linear", "ReLU", "Flatten", "Sequential",
    "Conv2d", "MaxPool2d", "AvgPool2d", "GlobalAvgPool2d", "BatchNorm2d", "Dropout",
    "BasicBlock", "GatheredConv2d", "Take",
]
