"""The proximal step of the group lasso: block soft-thresholding with exact zeros.

After the optimizer's data step with learning rate eta, every group g becomes

    w_g <- max(0, 1 - eta * lambda_g * s_g / ||w_g||_2) * w_g          [prox]

with s_g = 1, or sqrt(|g|) when groups are scaled by size. A group whose norm is at or
below the threshold t = eta * lambda_g * s_g becomes exactly zero; every other group keeps
its direction and loses exactly t of its norm. Choice at the kink: a group whose norm is
already 0 stays 0 (no division by zero), and t = 0 leaves every group unchanged.

Reference: Parikh & Boyd, "Proximal Algorithms", 2014, section 6.5.4 (the group lasso);
the regularizer is the last term of [SSL eq. 1].
"""

from minissl.backend import xp_of


class NonFiniteWeights(FloatingPointError):
    """A group holds NaN or infinite weights: no proximal step can make sense of it."""


def shrink_factors(norms, threshold):
    """Return max(0, 1 - threshold / norm) per group; exactly 1 where threshold is 0.

    Shapes: norms (*G), threshold scalar or (*G) -> (*G). With threshold 0 the prox is
    the identity, even for groups of subnormal numbers whose computed norm underflows to 0.
    """
    xp = xp_of(norms)
    safe = xp.where(norms > 0, norms, 1.0)
    below = xp.where(xp.asarray(threshold) > 0, 0.0, 1.0)
    return xp.where(norms > threshold, 1.0 - threshold / safe, below)


def prox_group_lasso(group_set, threshold):
    """Apply block soft-thresholding to every group of `group_set`, in place.

    `threshold` is eta * lambda * s_g (a scalar). Returns the factors it applied
    (shape: group_set.group_shape), so callers can count the groups that hit zero.
    """
    norms = group_set.norms()
    xp = xp_of(norms)
    if not bool(xp.isfinite(norms).all()):
        bad = int((~xp.isfinite(norms)).sum())
        raise NonFiniteWeights(f"layer {group_set.layer or '?'}: {bad} of {norms.size} "
                               f"{group_set.kind.name} groups hold NaN or infinite weights; "
                               f"the training diverged (try a lower learning rate)")
    factors = shrink_factors(norms, threshold)
    group_set.scale(factors)
    return factors
