"""Pure-PyTorch reference implementations of every compiled op (oracles and fallbacks), one
module per op family (named like ``scalegmn_ext.ops``); ``canonical`` holds the shared math."""

from . import canonical_segment_sum, edge_update, graph, hash_dropout, scale_eq_message, segment_gather_mul

__all__ = ["canonical_segment_sum", "edge_update", "graph", "hash_dropout", "scale_eq_message", "segment_gather_mul"]
