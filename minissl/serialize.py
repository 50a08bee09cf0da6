"""Save and load any model built from minissl.nn's layers, compacted ones included, without
pickle: one .npz file holding the architecture as a JSON string, the state dict (parameters
and buffers) and the index arrays a compacted layer keeps (a GatheredConv2d's columns, a
Take's indices).

    minissl.save(small, "lenet_ssl.npz", metadata={"error": 0.0077})
    model, metadata = minissl.load("lenet_ssl.npz", with_metadata=True)

The architecture is a tree of {"type", "config", "children"}: `config` holds what the
layer's constructor takes, `children` the named submodules of a Sequential or BasicBlock.
Files are written atomically (a temporary file, then a rename) and read with
allow_pickle=False; a file that is not a minissl model, or names a layer minissl does not
have, is refused with ModelFileError naming the problem.
"""

import json
from pathlib import Path

import numpy as np

from minissl import nn
from minissl.atomic import atomic_file
from minissl.backend import to_numpy

FORMAT = "minissl-model"
VERSION = 1
_ARCHITECTURE = "__architecture__"


class ModelFileError(ValueError):
    """A model file cannot be written or read back as a minissl model."""


def _dtype(module):
    return str(to_numpy(module.weight.data).dtype)


# layer type -> (constructor config of a module, index arrays it keeps outside its state dict)
_CONFIGS = {
    "Linear": lambda m: {"in_features": m.in_features, "out_features": m.out_features,
                         "bias": m.bias is not None, "dtype": _dtype(m)},
    "Conv2d": lambda m: {"in_channels": m.in_channels, "out_channels": m.out_channels,
                         "kernel_size": list(m.kernel_size), "stride": m.stride,
                         "padding": m.padding, "bias": m.bias is not None, "dtype": _dtype(m)},
    "GatheredConv2d": lambda m: {"in_channels": m.in_channels, "out_channels": m.out_channels,
                                 "kernel_size": list(m.kernel_size), "stride": m.stride,
                                 "padding": m.padding, "bias": m.bias is not None,
                                 "columns": len(m.rows), "dtype": _dtype(m)},
    "BatchNorm2d": lambda m: {"channels": m.channels, "momentum": m.momentum, "eps": m.eps,
                              "dtype": _dtype(m)},
    "MaxPool2d": lambda m: {"kernel_size": m.kernel_size, "stride": m.stride,
                            "ceil_mode": m.ceil_mode},
    "AvgPool2d": lambda m: {"kernel_size": m.kernel_size, "stride": m.stride,
                            "ceil_mode": m.ceil_mode},
    "Dropout": lambda m: {"p": m.p},
    "Take": lambda m: {"entries": len(m.indices)},
    "ReLU": lambda m: {}, "Flatten": lambda m: {}, "GlobalAvgPool2d": lambda m: {},
    "Sequential": lambda m: {}, "BasicBlock": lambda m: {},
}
_INDEX_ARRAYS = {"GatheredConv2d": "rows", "Take": "indices"}


def describe(module, name=""):
    """The architecture tree of `module` (plain JSON data). Raises ModelFileError naming the
    first submodule whose type is not one of minissl.nn's layers."""
    kind = type(module).__name__
    if kind not in _CONFIGS or getattr(nn, kind, None) is not type(module):
        where = f" at {name!r}" if name else ""
        raise ModelFileError(f"cannot save a {kind}{where}: minissl.save knows the layers of "
                             f"minissl.nn ({', '.join(sorted(_CONFIGS))}); build the model from "
                             f"them, or save its state_dict() with numpy.savez")
    node = {"type": kind, "config": _CONFIGS[kind](module)}
    if kind == "Sequential":
        node["children"] = {child: describe(sub, f"{name}.{child}".lstrip("."))
                            for child, sub in module._modules.items()}
    elif kind == "BasicBlock":
        node["children"] = {part: describe(getattr(module, part), f"{name}.{part}".lstrip("."))
                            for part in ("branch", "shortcut") if getattr(module, part) is not None}
    return node


def _index_arrays(module, name=""):
    """{"<path>.<attribute>": int64 array} of every index array in the model."""
    found = {}
    kind = type(module).__name__
    if kind in _INDEX_ARRAYS:
        found[f"{name}.{_INDEX_ARRAYS[kind]}".lstrip(".")] = np.asarray(
            getattr(module, _INDEX_ARRAYS[kind]), dtype=np.int64)
    for child, sub in module._modules.items():
        found.update(_index_arrays(sub, f"{name}.{child}".lstrip(".")))
    return found


def save(model, path, metadata=None):
    """Write `model` (a minissl.nn Module tree) to `path` (.npz): architecture, state dict,
    index arrays and `metadata` (a JSON-serializable dict, e.g. how it was trained).
    Atomic: a failed write leaves no file. Returns the Path written."""
    path = Path(path)
    header = {"format": FORMAT, "version": VERSION, "architecture": describe(model),
              "metadata": metadata or {}}
    try:
        text = json.dumps(header, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise ModelFileError(f"metadata must be plain JSON data ({error})") from None
    arrays = {f"state/{key}": to_numpy(value) for key, value in model.state_dict().items()}
    arrays.update({f"index/{key}": value for key, value in _index_arrays(model).items()})
    arrays[_ARCHITECTURE] = np.array(text)
    with atomic_file(path, "wb") as file:
        np.savez_compressed(file, **arrays)
    return path


def _build(node, indices, name=""):
    """A module with fresh weights from one architecture node (the state dict comes later)."""
    kind, config = node.get("type"), dict(node.get("config", {}))
    if kind not in _CONFIGS:
        raise ModelFileError(f"the file names a layer type {kind!r} at {name or 'the top'!r}, "
                             f"which minissl does not have")
    children = node.get("children", {})
    path = lambda child: f"{name}.{child}".lstrip(".")  # noqa: E731
    if kind == "Sequential":
        return nn.Sequential(*(_build(sub, indices, path(child)) for child, sub in children.items()))
    if kind == "BasicBlock":
        shortcut = children.get("shortcut")
        return nn.BasicBlock.from_parts(
            _build(children["branch"], indices, path("branch")),
            None if shortcut is None else _build(shortcut, indices, path("shortcut")))
    if kind in _INDEX_ARRAYS:
        key = f"{path(_INDEX_ARRAYS[kind])}"
        if key not in indices:
            raise ModelFileError(f"the file has no index array {key!r} for its {kind}")
        if kind == "Take":
            return nn.Take(indices[key])
        dtype = np.dtype(config["dtype"])
        weight = np.zeros((config["out_channels"], config["columns"]), dtype=dtype)
        bias = np.zeros(config["out_channels"], dtype=dtype) if config["bias"] else None
        return nn.GatheredConv2d(weight, indices[key], config["in_channels"],
                                 config["kernel_size"], config["stride"], config["padding"], bias)
    if "dtype" in config:
        config["dtype"] = np.dtype(config["dtype"])
    if kind == "Conv2d":
        config["kernel_size"] = tuple(config["kernel_size"])
    return getattr(nn, kind)(**config)


def load(path, with_metadata=False):
    """The model saved at `path` by save() (in eval mode, on the current backend), and with
    `with_metadata` also its metadata dict. Raises ModelFileError when the file cannot be
    read, is not a minissl model, or its weights do not fit its architecture."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (OSError, ValueError) as error:
        raise ModelFileError(f"{path}: cannot be read as a .npz file ({error})") from None
    try:
        header = json.loads(str(arrays.pop(_ARCHITECTURE)))
    except (KeyError, ValueError):
        raise ModelFileError(f"{path}: not a minissl model file (no architecture)") from None
    if header.get("format") != FORMAT or header.get("version") != VERSION:
        raise ModelFileError(f"{path}: format {header.get('format')!r} version "
                             f"{header.get('version')!r}; this minissl reads {FORMAT!r} "
                             f"version {VERSION}")
    indices = {key[len("index/"):]: value for key, value in arrays.items()
               if key.startswith("index/")}
    state = {key[len("state/"):]: value for key, value in arrays.items()
             if key.startswith("state/")}
    model = _build(header["architecture"], indices)
    try:
        model.load_state_dict(state)
    except nn.StateDictError as error:
        raise ModelFileError(f"{path}: the weights do not fit the architecture ({error})") from None
    model = model.to_backend()
    model.eval()
    return (model, header.get("metadata", {})) if with_metadata else model
