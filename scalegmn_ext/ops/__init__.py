"""Public, typed wrappers of the compiled ``torch.ops.scalegmn.*`` ops."""
from .graph import graph_to_weights, weights_to_graph
from .csr import CSR
from .message import gather_dot_csr, gather_mul_csr, segment_gather_mul
from .readout import CANONICAL_MODES, canonical_segment_sum
from .scale_eq import MessageMode, ScaleEqMessageParams, scale_eq_message
from .edge_update import edge_update
from .dropout import HashDropout, draw_seed, hash_dropout

__all__ = ["weights_to_graph", "graph_to_weights", "CSR", "segment_gather_mul", "gather_mul_csr",
           "gather_dot_csr", "canonical_segment_sum", "CANONICAL_MODES", "scale_eq_message", "ScaleEqMessageParams", "MessageMode", "edge_update",
           "hash_dropout", "HashDropout", "draw_seed"]
