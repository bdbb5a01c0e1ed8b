"""Model merging: aligning networks modulo their symmetry group and interpolating them.

* :mod:`.matching` -- Git Re-Basin weight matching (permutation, sign-extended, positive-scale),
  returning a :class:`~scalegmn_ext.weightspace.symmetry.GroupElement`.
* :mod:`.interpolation` -- paths between networks (one batched forward for all alphas) and
  loss barriers.
"""

from .interpolation import BarrierResult, barrier_from_curve, default_alphas, interpolate, loss_barrier
from .matching import METHODS, MatchResult, matching_objective, scale_normalizer, weight_matching

__all__ = [
    "weight_matching",
    "MatchResult",
    "METHODS",
    "scale_normalizer",
    "matching_objective",
    "interpolate",
    "default_alphas",
    "loss_barrier",
    "barrier_from_curve",
    "BarrierResult",
]
