"""Build the compacted model from a CompactionPlan: new, smaller layers holding copies of
the kept weights. The original model is never modified (STYLE.md: no surgery in place).
"""

import copy

import numpy as np

from minissl import nn, to_numpy
from minissl.nn.module import Parameter


def _array(tensor):
    return None if tensor is None else to_numpy(tensor.data)


def _linear(plan, module):
    """A Linear holding W[kept_out][:, kept_in] and b[kept_out]."""
    weight, bias = _array(module.weight), _array(module.bias)
    kept_out, kept_in = np.asarray(plan.kept_out), np.asarray(plan.kept_in)
    layer = nn.Linear(len(kept_in), len(kept_out), bias=bias is not None, dtype=weight.dtype)
    layer.weight = Parameter(weight[kept_out][:, kept_in].copy())
    if bias is not None:
        layer.bias = Parameter(bias[kept_out].copy())
    return layer


def _conv(plan, module):
    """A Conv2d on the kept filters and channels, or a GatheredConv2d on the kept columns."""
    weight, bias = _array(module.weight), _array(module.bias)
    kept_out, kept_in = np.asarray(plan.kept_out), np.asarray(plan.kept_in)
    kept_bias = bias[kept_out].copy() if bias is not None else None
    if plan.kept_columns is None:
        layer = nn.Conv2d(len(kept_in), len(kept_out), module.kernel_size, module.stride,
                          module.padding, bias=bias is not None, dtype=weight.dtype)
        layer.weight = Parameter(weight[kept_out][:, kept_in].copy())
        if bias is not None:
            layer.bias = Parameter(kept_bias)
        return layer
    columns = np.asarray(plan.kept_columns)
    window = weight.shape[2] * weight.shape[3]
    # original column c*KH*KW + k -> (position of c among the kept channels)*KH*KW + k
    position = np.searchsorted(kept_in, columns // window)
    rows = position * window + columns % window
    weight2 = weight.reshape(weight.shape[0], -1)[kept_out][:, columns].copy()  # (N', R)
    return nn.GatheredConv2d(weight2, rows, len(kept_in), module.kernel_size, module.stride,
                             module.padding, kept_bias)


def _norm(plan, module):
    kept = np.asarray(plan.kept_out)
    norm = nn.BatchNorm2d(len(kept), module.momentum, module.eps, dtype=module.weight.dtype)
    norm.weight = Parameter(_array(module.weight)[kept].copy())
    norm.bias = Parameter(_array(module.bias)[kept].copy())
    norm.running_mean[...] = to_numpy(module.running_mean)[kept]
    norm.running_var[...] = to_numpy(module.running_var)[kept]
    return norm


def build_layer(name, module, plan):
    """The compacted copy of one module (name = its path in the original model)."""
    if isinstance(module, nn.Linear):
        return _linear(plan.layer(name), module)
    if isinstance(module, nn.Conv2d):
        return _conv(plan.layer(name), module)
    if isinstance(module, nn.BatchNorm2d):
        return _norm(plan.layer(name), module)
    if isinstance(module, nn.BasicBlock):
        return _block(name, module, plan)
    if isinstance(module, nn.Sequential):
        return nn.Sequential(*(build_layer(f"{name}.{index}", part, plan)
                               for index, part in enumerate(module)))
    return copy.deepcopy(module)  # ReLU, pools, Flatten, Dropout, ...: no weights


def _block(name, block, plan):
    """A residual block: dropped (relu of the shortcut) or rebuilt from compacted parts."""
    shortcut = None
    if block.shortcut is not None:
        shortcut = build_layer(f"{name}.shortcut", block.shortcut, plan)
    if name in plan.removed_blocks:  # the branch is exactly 0: relu(shortcut(x))
        return nn.ReLU() if shortcut is None else nn.Sequential(*shortcut, nn.ReLU())
    branch = build_layer(f"{name}.branch", block.branch, plan)
    return nn.BasicBlock.from_parts(branch, shortcut)


def build_compacted(model, plan):
    """A new Sequential computing the same function as `model` with only what `plan` keeps."""
    modules = [build_layer(str(index), module, plan) for index, module in enumerate(model)]
    if plan.input_indices is not None:
        modules.insert(0, nn.Take(plan.input_indices))
    small = nn.Sequential(*modules)
    return small.train(model.training)
