"""Neural-network building blocks: Module, Parameter, layers and initializers."""

from minissl.nn.layers import Flatten, Linear, ReLU, Sequential
from minissl.nn.module import Module, Parameter, StateDictError

__all__ = ["Module", "Parameter", "StateDictError", "Linear", "ReLU", "Flatten", "Sequential"]
