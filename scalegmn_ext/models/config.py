"""Typed, validated configuration of the ScaleGMN models."""

from __future__ import annotations

import dataclasses

__all__ = ["ScaleGMNConfig"]

_SYMMETRIES = ("sign", "scale", "permutation")


@dataclasses.dataclass(frozen=True)
class ScaleGMNConfig:
    """Hyper-parameters of :class:`~scalegmn_ext.models.ScaleGMN` / ``ScaleGMNEquivariant``.

    Defaults follow the public MNIST-INR classification configuration (sign symmetry, hidden 128,
    4 layers, forward direction, skip connections, node and edge positional encodings).

    Attributes:
        symmetry: ``"sign"`` (tanh/sine nets), ``"scale"`` (ReLU nets), ``"permutation"`` (plain
            GMN), or None to take the input architecture's group.
        direction: ``"forward"`` (messages from layer l-1 to l) or ``"bidirectional"`` (also from
            l+1 to l; for ``scale`` see ``scale_backward``).
        d_hid: width of node/edge states and of every MLP.
        num_layers: message-passing layers.
        readout: ``"full_graph"`` (sum of canonicalised hidden-node states + the I/O node states)
            or ``"last_layer"`` (the output-node states); invariant model only.
        d_out: width of the invariant output.
        dropout: dropout between layers. The layer-block path uses
            :func:`~scalegmn_ext.ops.hash_dropout` (counter-based masks, regenerated in backward);
            the graph and per-edge reference paths use ``torch.nn.Dropout`` as the public code
            does. Both drop with probability ``dropout``; their masks differ.
        layer_norm: LayerNorm inside every MLP.
        sign_canon: ``"symmetrize"`` (rho(x) + rho(-x)) or ``"abs"`` (|x|) for ``sign``.
        pos_embed: learned node/edge type embeddings (product on hidden nodes and edges, sum on
            I/O nodes, so equivariance is kept).
        edge_update: update edge states in every layer (not after the last invariant layer).
        skip: bias-free skip connections between layers.
        input_value: graph feature of input nodes (see :func:`scalegmn_ext.weights_to_graph`).
        out_scale: initial per-layer output scale of the equivariant head.
        eps: additive ``eps`` of the scale canonicaliser ``x / (||x|| + eps)``. ``0`` (default)
            keeps every ``scale`` model exactly invariant/equivariant for all finite inputs (the
            canonicaliser is max-scaled, so no threshold is needed; ``c(0) = 0``). ``eps > 0``
            bounds the canonicaliser's gradient by ``1 / eps`` at the price of exactness: the
            invariance error is then of order ``eps / ||x||`` (the one place exactness can end).
        scale_backward: how the ``scale`` group's backward messages are made equivariant (only
            used with ``symmetry="scale"`` and ``direction="bidirectional"``):
            ``"gated"`` (default): the receiver's own state carries the scale factor and the
            edge and sender enter through a bounded joint canonicalisation
            (:class:`~scalegmn_ext.models.layers.GatedBackwardMessage`): exact for every finite
            input, messages never larger than the states they come from.
            ``"inverse"``: the inverse edge feature ``e / ||e||^2`` (0 for ``e = 0``), the
            construction of the ScaleGMN paper: also exact, but its gain is ``1 / ||e||``, so
            tiny weights give huge messages (the README compares the two).
        checkpoint: recompute each layer's activations in backward instead of keeping them
            (``torch.utils.checkpoint``; layer-block path only): a fraction of the memory for
            ~1.3x time.
        fused_message: compute the hidden-node messages with the fused, tiled
            ``scalegmn::scale_eq_message`` op (layer-block path only; no per-edge activations
            are kept).
        fused_edge_update: compute edge updates (and their dropout) with the fused, tiled
            ``scalegmn::edge_update`` op (layer-block path only).
        message_save: the fused message op keeps its per-edge GEMM outputs (~5 d values per
            edge and layer) so that its backward recomputes only element-wise parts. On the
            2-core CPU this saves ~5 % of the op's time for ~2.5x its memory (see
            benchmarks/RESULTS.md), so the default recomputes everything (least memory).

    Structure options of the public ScaleGMN code (Kalogeropoulos et al. 2024). The defaults
    keep this package's own structure; :func:`scalegmn_ext.models.public.from_public_yaml` sets
    them so that a public configuration builds the public network, parameter for parameter. All
    of them keep the model exactly equivariant except ``scale_backward="raw"``. Any
    non-default value here runs on the layer-block path only (``impl="fast"`` on a batch of one
    architecture or groups of at least ``mixed_dense_min_group``); the graph and per-edge
    reference paths raise.

        edge_pos_embed: with ``pos_embed``, also give edges type embeddings (public
            ``edge_pos_embed``; node embeddings are ``pos_embed``).
        node_pos_io: how I/O nodes take their type embedding: ``"sum"`` (``h + p``, default) or
            ``"prod"`` (``h * p`` like hidden nodes; public ``sum_on_io: False``).
        msg_num_mlps: ``2``: one I/O MLP per message net (default). ``3``: two, as the public
            ``msg_num_mlps: 3`` builds (input-node and output-node MLP); a forward message net
            uses only its output-node MLP and a backward one only its input-node MLP, the other
            (``msg_io_spare`` / ``bw_io_spare``) is kept unused, for parameter parity.
        upd_num_mlps: ``3``: separate input- and output-node update MLPs (default); ``2``: one
            shared by both (public ``upd_num_mlps: 2``).
        io_gamma: I/O rows of the message and update nets compute ``Gamma x * MLP(x)`` (sharing
            ``Gamma`` with the hidden rows' ScaleEq; public ``mlp_on_io: False``) instead of a
            plain ``MLP(x)`` (default; public ``mlp_on_io: True``).
        rho_width: hidden width of the symmetrisation MLP ``rho`` of a canonicaliser whose
            input is wider than ``d_hid`` (the node update's ``[h || messages]``): ``"d_in"``
            (the input width, default) or ``"d_hid"`` (public).
        edge_canon_io: the edge update canonicalises the states of I/O neurons too (public)
            instead of feeding them raw (they are invariant either way).
        pos_embed_msg / pos_embed_upd: the node type embedding enters the invariant nets of the
            messages / updates as an extra input (public "AugScaleInv"). A forward-direction
            message reads the receiver's embedding, a bidirectional one the sender's, as the
            public code does. Messages then run unfused (the fused op has no extra input).
        readout_phi: ``full_graph`` readout sums ``phi(c(h))`` over hidden neurons (an MLP after
            the canonicaliser, public ``InvariantLayer``) instead of ``c(h)``.
        readout_spare: hold the MLP that the public ``full_graph`` readout builds but never
            uses (``readout_spare``, for parameter parity; it gets no gradient).
        readout_project_io: ``last_layer`` readout of a bidirectional model: the output-node
            and input-node states, each through a linear map to ``d_hid``, concatenated, then
            the MLP (public bidirectional ``last_layer`` readout).
        backward_edges: edge states that bidirectional backward messages read: ``"current"``
            (the edge states of the layer, default), ``"initial"`` (the embedded input edges in
            every layer; public ``sign``) or ``"separate"`` (a second edge state with its own
            edge update, on the reversed edges; public ``scale``).
        dense_centre: graph layout of dense-layer weights in a CNN's ``Kh*Kw`` edge features:
            centre slot (default) or slot 0 (public; see :func:`scalegmn_ext.weights_to_graph`).
        node_features: number of extra per-node input features (0: the bias alone). The model's
            ``forward`` then takes ``node_features=[B, N, node_features]``, whose hidden-node rows
            must transform like the biases (permuted with the neuron, times its ``q_i``) and whose
            I/O rows must be invariant, e.g. :class:`~scalegmn_ext.models.probes.ProbeFeatures`.
    """

    symmetry: str | None = None
    direction: str = "forward"
    d_hid: int = 128
    num_layers: int = 4
    readout: str = "full_graph"
    d_out: int = 10
    dropout: float = 0.0
    layer_norm: bool = True
    sign_canon: str = "symmetrize"
    pos_embed: bool = True
    edge_update: bool = True
    skip: bool = True
    input_value: float = 1.0
    out_scale: float = 0.01
    eps: float = 0.0
    scale_backward: str = "gated"
    checkpoint: bool = False
    fused_message: bool = True
    fused_edge_update: bool = True
    message_save: bool = False
    node_features: int = 0
    edge_pos_embed: bool = True
    node_pos_io: str = "sum"
    msg_num_mlps: int = 2
    upd_num_mlps: int = 3
    io_gamma: bool = False
    rho_width: str = "d_in"
    edge_canon_io: bool = False
    pos_embed_msg: bool = False
    pos_embed_upd: bool = False
    readout_phi: bool = False
    readout_spare: bool = False
    readout_project_io: bool = False
    backward_edges: str = "current"
    dense_centre: bool = True

    def __post_init__(self) -> None:
        if self.symmetry is not None and self.symmetry not in _SYMMETRIES:
            raise ValueError(f"ScaleGMNConfig.symmetry must be one of {_SYMMETRIES} or None, got {self.symmetry!r}")
        if self.direction not in ("forward", "bidirectional"):
            raise ValueError(f"ScaleGMNConfig.direction must be 'forward' or 'bidirectional', got {self.direction!r}")
        if self.readout not in ("full_graph", "last_layer"):
            raise ValueError(f"ScaleGMNConfig.readout must be 'full_graph' or 'last_layer', got {self.readout!r}")
        if self.sign_canon not in ("symmetrize", "abs"):
            raise ValueError(f"ScaleGMNConfig.sign_canon must be 'symmetrize' or 'abs', got {self.sign_canon!r}")
        for name in ("d_hid", "num_layers", "d_out"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"ScaleGMNConfig.{name} must be a positive int, got {v!r}")
        if isinstance(self.node_features, bool) or not isinstance(self.node_features, int) or self.node_features < 0:
            raise ValueError(f"ScaleGMNConfig.node_features must be an int >= 0, got {self.node_features!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"ScaleGMNConfig.dropout must be in [0, 1), got {self.dropout!r}")
        if not self.eps >= 0 or self.eps == float("inf"):
            raise ValueError(f"ScaleGMNConfig.eps must be a finite float >= 0, got {self.eps!r}")
        if self.scale_backward not in ("gated", "inverse", "raw"):
            raise ValueError(
                f"ScaleGMNConfig.scale_backward must be 'gated', 'inverse' or 'raw', got {self.scale_backward!r}"
            )
        for name, allowed in (
            ("node_pos_io", ("sum", "prod")),
            ("msg_num_mlps", (2, 3)),
            ("upd_num_mlps", (2, 3)),
            ("rho_width", ("d_in", "d_hid")),
            ("backward_edges", ("current", "initial", "separate")),
        ):
            if getattr(self, name) not in allowed:
                raise ValueError(f"ScaleGMNConfig.{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.readout_project_io and (self.direction != "bidirectional" or self.readout != "last_layer"):
            raise ValueError(
                "ScaleGMNConfig.readout_project_io needs direction='bidirectional' and readout='last_layer'"
            )

    def block_only_options(self) -> list[str]:
        """The structure options set away from their defaults that only the layer-block path runs."""
        defaults = ScaleGMNConfig()
        names = [f.name for f in dataclasses.fields(self)]
        names = names[names.index("edge_pos_embed") :]
        out = [n for n in names if getattr(self, n) != getattr(defaults, n)]
        if self.scale_backward == "raw":
            out.append("scale_backward")
        return out

    @classmethod
    def from_public_yaml(cls, path, **overrides) -> ScaleGMNConfig:
        """The configuration of a public ScaleGMN YAML file (its ``scalegmn_args`` block); see
        :func:`scalegmn_ext.models.public.public_config` (the architecture comes with it there)."""
        from .public import public_config

        return public_config(path, **overrides).config

    def replace(self, **changes) -> ScaleGMNConfig:
        return dataclasses.replace(self, **changes)
