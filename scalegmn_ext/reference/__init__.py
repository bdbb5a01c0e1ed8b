"""Pure-PyTorch reference implementations of every compiled op (oracles and fallbacks)."""
from . import graph, message, readout

__all__ = ["graph", "message", "readout"]
