"""The group-lasso term of [SSL eq. 1] and its subgradient, plus sparsity reports.

    R_g(W) = sum_l sum_g lambda_g * s_g * ||w_g||_2

`group_lasso_value` gives it for logging; `add_subgradient` adds its subgradient
lambda_g * s_g * w_g / ||w_g|| to the parameters' gradients (the paper's own training
mode; at ||w_g|| = 0 the subgradient 0 is chosen). minissl's default is the proximal
step instead (prox.py), which reaches exact zeros.

The reports use the paper's own columns: neurons per layer (MLP table), filters and
channels (LeNet Table 1), filter size = nonzero columns of the GEMM weight matrix
(LeNet Table 2), row and column sparsity (ConvNet Table 3). Remaining FLOPs are counted in
one place only, the compaction plan (minissl.compact), on the model it actually builds.
"""

import dataclasses

import numpy as np

from minissl.backend import to_numpy, xp_of


def group_lasso_value(group_sets, strengths, scale_by_size=False):
    """Return sum over sets of lambda * s_g * sum_g ||w_g|| as a Python float."""
    total = 0.0
    for group_set, strength in zip(group_sets, strengths):
        scale = np.sqrt(group_set.group_size()) if scale_by_size else 1.0
        total += strength * scale * float(group_set.norms().sum())
    return total


def add_subgradient(group_set, strength, scale_by_size=False):
    """Add lambda * s_g * w_g / ||w_g|| to each member's .grad (0 for zero groups), in place."""
    norms = group_set.norms()
    xp = xp_of(norms)
    scale = np.sqrt(group_set.group_size()) if scale_by_size else 1.0
    inverse = xp.where(norms > 0, 1.0 / xp.where(norms > 0, norms, 1.0), 0.0) * strength * scale
    for member in group_set.members:
        parameter = member.parameter
        direction = parameter.data * member.expand(inverse).astype(parameter.dtype, copy=False)
        parameter.grad = direction if parameter.grad is None else parameter.grad + direction


@dataclasses.dataclass
class LayerSparsity:
    """Structured sparsity of one weight, viewed as the GEMM matrix W2 = W.reshape(rows, -1).

    rows are output neurons or filters; columns are input units or shape fibers (c, m, k).
    """

    name: str
    shape: tuple
    rows: int
    nonzero_rows: int
    columns: int
    nonzero_columns: int
    channels: int            # input channels (dense: = columns)
    nonzero_channels: int

    @property
    def row_sparsity(self):
        return 1.0 - self.nonzero_rows / self.rows

    @property
    def column_sparsity(self):
        return 1.0 - self.nonzero_columns / self.columns


def weight_sparsity(weight, name=""):
    """Return the LayerSparsity of a dense (out, in) or conv (N, C, M, K) weight array."""
    weight = to_numpy(weight)
    matrix = weight.reshape(weight.shape[0], -1)  # (rows, columns)
    nonzero = matrix != 0
    per_channel = (weight != 0).reshape(weight.shape[0], weight.shape[1], -1)  # (N, C, M*K)
    return LayerSparsity(name=name, shape=tuple(weight.shape),
                         rows=matrix.shape[0], nonzero_rows=int(nonzero.any(axis=1).sum()),
                         columns=matrix.shape[1], nonzero_columns=int(nonzero.any(axis=0).sum()),
                         channels=weight.shape[1], nonzero_channels=int(per_channel.any(axis=(0, 2)).sum()))


def dense_chain_neurons(weights):
    """Neurons per layer of a chain of dense layers, counted as the paper's MLP table does.

    A unit counts when its outgoing column is nonzero (input and hidden units); the last
    layer's outputs always count. (Its FLOPs: the compaction plan, minissl.compact.)
    Shapes: weights is a list of (out_l, in_l) arrays with in_{l+1} = out_l.
    Returns [n_0, ..., n_L].
    """
    weights = [to_numpy(w) for w in weights]
    for index, (first, second) in enumerate(zip(weights[:-1], weights[1:])):
        if second.shape[1] != first.shape[0]:
            raise ValueError(f"layer {index + 1} takes {second.shape[1]} inputs but layer {index} "
                             f"gives {first.shape[0]}")
    return [int((w != 0).any(axis=0).sum()) for w in weights] + [weights[-1].shape[0]]
