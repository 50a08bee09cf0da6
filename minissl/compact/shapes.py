"""Per-sample activation shapes through a Sequential, computed from each module's geometry.

The compactor needs them for FLOP counts (a conv costs 2 * C_out * columns * OH * OW per
sample) and to map a flattened channel to its block of dense-layer columns.
"""

from minissl import kernels, nn


class CompactionError(ValueError):
    """The model cannot be compacted as asked (unsupported layer, nothing left, bad shape)."""


def output_shape(module, shape):
    """Shape of one sample after `module`, given the shape before it (no batch axis)."""
    if isinstance(module, nn.Linear):
        return (module.out_features,)
    if isinstance(module, (nn.Conv2d, nn.GatheredConv2d)):
        (kernel_h, kernel_w), stride, padding = module.kernel_size, module.stride, module.padding
        return (module.out_channels, kernels.conv_output_size(shape[1], kernel_h, stride, padding),
                kernels.conv_output_size(shape[2], kernel_w, stride, padding))
    if isinstance(module, nn.MaxPool2d):  # AvgPool2d is a MaxPool2d subclass
        size = module.kernel_size, module.stride, module.ceil_mode
        return (shape[0], kernels.pool_output_size(shape[1], *size),
                kernels.pool_output_size(shape[2], *size))
    if isinstance(module, nn.Flatten):
        count = 1
        for size in shape:
            count *= size
        return (count,)
    if isinstance(module, nn.GlobalAvgPool2d):
        return (shape[0],)
    if isinstance(module, nn.BasicBlock):
        return output_shape(module.branch[3], output_shape(module.branch[0], shape))
    if isinstance(module, nn.Take):
        return (len(module.indices),) + tuple(shape[1:])
    if isinstance(module, (nn.ReLU, nn.BatchNorm2d, nn.Dropout)):
        return shape
    raise CompactionError(f"cannot compact a model containing {type(module).__name__}")


def _check_fits(module, shape, index, input_shape):
    """Raise CompactionError naming module `index` when `shape` is not what it takes."""
    if isinstance(module, nn.Linear):
        wanted, got = module.in_features, shape[0] if len(shape) == 1 else None
    elif isinstance(module, (nn.Conv2d, nn.GatheredConv2d)):
        wanted, got = module.in_channels, shape[0] if len(shape) == 3 else None
    else:
        return
    if got != wanted:
        raise CompactionError(f"module {index} ({module!r}) takes {wanted} "
                              f"{'inputs' if isinstance(module, nn.Linear) else 'channels'}, but "
                              f"input_shape {tuple(input_shape)} gives it a sample of shape "
                              f"{tuple(shape)}; pass the shape of one sample, without the batch axis")


def trace_shapes(modules, input_shape):
    """[shape before modules[0], shape before modules[1], ..., shape after the last].

    Raises CompactionError naming the first module that does not take the shape it gets.
    """
    shapes = [tuple(input_shape)]
    for index, module in enumerate(modules):
        _check_fits(module, shapes[-1], index, input_shape)
        shapes.append(output_shape(module, shapes[-1]))
    return shapes
