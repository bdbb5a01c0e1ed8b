"""Public, typed wrappers of the compiled ``torch.ops.scalegmn.*`` ops."""
from .graph import graph_to_weights, weights_to_graph

__all__ = ["weights_to_graph", "graph_to_weights"]
