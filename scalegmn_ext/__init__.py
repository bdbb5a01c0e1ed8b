"""scalegmn_ext: symmetry-aware learning on neural-network weights with compiled torch ops.

Main entry points:

* :class:`Architecture` -- the shared architecture of a batch of networks (and its symmetry group).
* :func:`weights_to_graph` / :func:`graph_to_weights` -- compiled, differentiable batched graph
  construction and its inverse (``torch.ops.scalegmn.*``).
* :mod:`scalegmn_ext.weightspace.graph` -- graph layout, static structure (edge index, CSR, type ids).
* :mod:`scalegmn_ext.weightspace.symmetry` -- random permutation / sign / positive-scale group actions.
* :mod:`scalegmn_ext.weightspace.functional` -- batched forward of B networks in one call.
* :mod:`scalegmn_ext.weightspace.adapters`, :mod:`scalegmn_ext.weightspace.nets` -- nn.Module / state_dict / nfn adapters.
"""

from . import models  # noqa: E402
from ._library import HAS_EXTENSION, has_cuda_kernels
from .ops import graph_to_weights, weights_to_graph
from .tasks import zoo  # noqa: E402  (light: the format and reader; generators load on use)
from .weightspace import (
    ACTIVATION_SYMMETRY,
    Architecture,
    GraphStructure,
    LayerSpec,
    MixedGraphBatch,
    Symmetry,
    WeightGraph,
    adapters,
    functional,
    graph,
    graph_structure,
    nets,
    symmetry,
)

__version__ = "0.1.0"

__all__ = [
    "Architecture",
    "LayerSpec",
    "Symmetry",
    "ACTIVATION_SYMMETRY",
    "HAS_EXTENSION",
    "has_cuda_kernels",
    "weights_to_graph",
    "graph_to_weights",
    "GraphStructure",
    "WeightGraph",
    "MixedGraphBatch",
    "graph_structure",
    "adapters",
    "functional",
    "graph",
    "nets",
    "symmetry",
    "models",
    "zoo",
]
