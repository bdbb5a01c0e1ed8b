"""Metanetworks: the ScaleGMN invariant encoder and equivariant head, and the canonicalising autoencoder."""

from .autoencoder import MLPDecoder, NeuronDecoder, ScaleGMNAutoencoder
from .config import ScaleGMNConfig
from .layers import MLP, Canonicalizer, InvariantNet, ScaleEq
from .probes import ProbeFeatures, default_probe_inputs
from .public import from_public_yaml, load_public_state_dict, public_config
from .scalegmn import ScaleGMN, ScaleGMNEquivariant

__all__ = [
    "ScaleGMNConfig",
    "ScaleGMN",
    "ScaleGMNEquivariant",
    "ScaleGMNAutoencoder",
    "MLPDecoder",
    "NeuronDecoder",
    "ProbeFeatures",
    "default_probe_inputs",
    "MLP",
    "Canonicalizer",
    "InvariantNet",
    "ScaleEq",
    "from_public_yaml",
    "load_public_state_dict",
    "public_config",
]
