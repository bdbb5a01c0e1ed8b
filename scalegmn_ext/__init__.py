"""scalegmn_ext: symmetry-aware learning on neural-network weights with compiled torch ops."""
from ._library import HAS_EXTENSION, has_cuda_kernels
from .arch import Architecture, LayerSpec, Symmetry
from .ops import graph_to_weights, weights_to_graph

__version__ = "0.1.0"

__all__ = [
    "Architecture", "LayerSpec", "Symmetry", "HAS_EXTENSION", "has_cuda_kernels",
    "weights_to_graph", "graph_to_weights",
]
