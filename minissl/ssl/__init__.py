"""Structured Sparsity Learning: groups, the group-lasso penalty, the proximal step.

groups.py      weight -> groups (GroupKind, GroupSet, layer_groups, block_groups)
penalty.py     the group-lasso value and subgradient; sparsity reports
prox.py        block soft-thresholding (exact zeros)
regularizer.py SSLConfig / GroupRule and the GroupLasso hooks a training loop calls
probe.py       critical_lambdas: how strong a lambda removes each group, measured
"""

from minissl.ssl.groups import GroupKind, GroupSet, block_groups, layer_groups
from minissl.ssl.penalty import (LayerSparsity, add_subgradient, dense_chain_neurons, group_lasso_value,
                                 weight_sparsity)
from minissl.ssl.probe import critical_lambdas
from minissl.ssl.prox import NonFiniteWeights, prox_group_lasso, shrink_factors
from minissl.ssl.regularizer import (NORM_BINS, CutReport, GroupLasso, GroupRule, Mode, SSLConfig,
                                     ZeroHolder, norm_histograms, rules_for)

__all__ = [
    "GroupKind", "GroupSet", "layer_groups", "block_groups",
    "group_lasso_value", "add_subgradient", "LayerSparsity", "weight_sparsity", "dense_chain_neurons",
    "prox_group_lasso", "shrink_factors", "NonFiniteWeights",
    "SSLConfig", "GroupRule", "Mode", "GroupLasso", "ZeroHolder", "CutReport", "rules_for",
    "norm_histograms", "NORM_BINS", "critical_lambdas",
]
