"""Pure-PyTorch reference implementations of every compiled op (oracles and fallbacks)."""
from . import graph

__all__ = ["graph"]
