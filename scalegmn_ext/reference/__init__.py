"""Pure-PyTorch reference implementations of every compiled op (oracles and fallbacks)."""
from . import dropout, edge_update, graph, message, readout, scale_eq

__all__ = ["dropout", "edge_update", "graph", "message", "readout", "scale_eq"]
