"""The weight space: what an input network *is* and what its symmetry group does to it.

* :mod:`.architecture` -- :class:`Architecture` / :class:`LayerSpec` / :class:`Symmetry`: the
  shared, static description of a batch of networks (imports nothing else of the package, so
  the ops layer may use it to validate its inputs).
* :mod:`.graph` -- networks as graphs: layout, static structure, :class:`WeightGraph` batches.
* :mod:`.symmetry` -- permutation / sign / positive-scale group actions (:class:`GroupElement`).
* :mod:`.functional` -- batched forward of B networks in one call.
* :mod:`.nets`, :mod:`.adapters` -- plain ``torch.nn`` networks and conversions to/from
  modules, state dicts, nfn and PyG.
"""

from . import adapters, functional, graph, nets, symmetry  # noqa: E402
from .architecture import ACTIVATION_SYMMETRY, Architecture, LayerSpec, Symmetry  # first: ops import it
from .graph import GraphStructure, MixedGraphBatch, WeightGraph, graph_structure  # noqa: E402

__all__ = [
    "Architecture",
    "LayerSpec",
    "Symmetry",
    "ACTIVATION_SYMMETRY",
    "GraphStructure",
    "WeightGraph",
    "MixedGraphBatch",
    "graph_structure",
    "adapters",
    "functional",
    "graph",
    "nets",
    "symmetry",
]
