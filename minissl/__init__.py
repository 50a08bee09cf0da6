"""minissl: Structured Sparsity Learning (Wen et al., NIPS 2016), small enough to read.

Public names are listed explicitly below; see README.md for a map of the source.
"""

from minissl import backend  # first: its thread settings must precede NumPy's OpenBLAS
from minissl.tensor import Tensor  # noqa: E402  (autograd and ops build on it)
from minissl.autograd import Function, no_grad, is_grad_enabled  # noqa: E402
from minissl.backend import get_backend, set_backend, to_numpy  # noqa: E402
from minissl.gradcheck import GradcheckError, gradcheck, gradcheck_module  # noqa: E402
from minissl import augment, cifar, compact, data, models, nn, ops, optim  # noqa: E402
from minissl import plots, ssl, timing  # noqa: E402

__all__ = [
    "Tensor", "Function", "no_grad", "is_grad_enabled",
    "get_backend", "set_backend", "to_numpy",
    "gradcheck", "gradcheck_module", "GradcheckError",
    "augment", "backend", "cifar", "compact", "data", "timing", "models", "nn", "ops", "optim",
    "plots", "ssl",
]
__version__ = "0.1.0"
