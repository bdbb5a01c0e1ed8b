"""Public, typed wrappers of the compiled ``torch.ops.scalegmn.*`` ops, one module per op family
(``graph``, ``segment_gather_mul``, ``canonical_segment_sum``, ``hash_dropout``,
``scale_eq_message``, ``edge_update``; ``csr`` holds the :class:`CSR` the message ops take).

The package attributes named like a family (``segment_gather_mul``, ``canonical_segment_sum``,
``hash_dropout``, ``scale_eq_message``, ``edge_update``) are the functions; reach a family's module
with ``from scalegmn_ext.ops.<family> import ...`` or ``sys.modules``.
"""

from .canonical_segment_sum import CANONICAL_MODES, canonical_segment_sum
from .csr import CSR
from .edge_update import edge_update
from .graph import graph_to_weights, weights_to_graph
from .hash_dropout import HashDropout, draw_seed, hash_dropout
from .scale_eq_message import MessageMode, ScaleEqMessageParams, scale_eq_message
from .segment_gather_mul import gather_dot_csr, gather_mul_csr, segment_gather_mul

__all__ = [
    "weights_to_graph",
    "graph_to_weights",
    "CSR",
    "segment_gather_mul",
    "gather_mul_csr",
    "gather_dot_csr",
    "canonical_segment_sum",
    "CANONICAL_MODES",
    "scale_eq_message",
    "ScaleEqMessageParams",
    "MessageMode",
    "edge_update",
    "hash_dropout",
    "HashDropout",
    "draw_seed",
]
