"""ScaleGMN models (invariant encoder and equivariant weight-space head)."""

from .config import ScaleGMNConfig
from .layers import MLP, Canonicalizer, InvariantNet, ScaleEq
from .scalegmn import ScaleGMN, ScaleGMNEquivariant

__all__ = ["ScaleGMNConfig", "ScaleGMN", "ScaleGMNEquivariant", "MLP", "Canonicalizer", "InvariantNet", "ScaleEq"]
