"""minissl: Structured Sparsity Learning (Wen et al., NIPS 2016), small enough to read.

Public names are listed explicitly below; see README.md for a map of the source.

Importing minissl changes nothing in the process (no environment variable, no thread or
malloc setting) and loads its submodules only when first used, so `import minissl` is
cheap and an entry point can call `minissl.process.tune_for_training()` before NumPy loads.
"""

import importlib

__version__ = "0.2.0"

# Public names defined in a submodule: name -> the module that defines it.
_NAMES = {
    "Tensor": "minissl.tensor",
    "Function": "minissl.autograd", "no_grad": "minissl.autograd",
    "is_grad_enabled": "minissl.autograd",
    "get_backend": "minissl.backend", "set_backend": "minissl.backend",
    "to_numpy": "minissl.backend",
    "gradcheck": "minissl.finite_differences",
    "gradcheck_module": "minissl.finite_differences",
    "GradcheckError": "minissl.finite_differences",
    "save": "minissl.serialize", "load": "minissl.serialize",
}
_SUBMODULES = ("augment", "backend", "cifar", "compact", "data", "finite_differences",
               "models", "nn", "onnx", "ops", "optim", "plots", "process", "serialize", "ssl",
               "timing", "train", "zoo")

__all__ = sorted(_NAMES) + list(_SUBMODULES)


def __getattr__(name):
    """Import a public name's module on first use (PEP 562)."""
    if name in _NAMES:
        value = getattr(importlib.import_module(_NAMES[name]), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"minissl.{name}")
    else:
        raise AttributeError(f"module 'minissl' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__():
    return sorted(list(globals()) + __all__)
