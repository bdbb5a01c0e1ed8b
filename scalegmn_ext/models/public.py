"""Drop-in compatibility with the public ScaleGMN code (``jkalogero/scalegmn``, MIT licence).

Its YAML configurations build the same network here, parameter for parameter, and its
checkpoints load onto this package's fast (layer-block) path::

    from scalegmn_ext.models.public import from_public_yaml, load_public_state_dict

    model = from_public_yaml("configs/mnist_cls/scalegmn.yml")  # a ScaleGMN (or ScaleGMNEquivariant)
    load_public_state_dict(model, torch.load("checkpoint.pt")).eval()
    logits = model(weights, biases)  # torch layout: weights [B, out, in], biases [B, out]

:func:`public_config` returns the :class:`~scalegmn_ext.models.ScaleGMNConfig` and the input
architecture of a configuration; :meth:`ScaleGMNConfig.from_public_yaml` the configuration alone.

What the public code does that this package reproduces only on request:

* **Bidirectional ``scale`` (ReLU) models are not scale-equivariant** there: backward messages
  read the raw edge weights (its ``reciprocal: True`` is never read). Such a configuration needs
  an explicit ``scale_backward``: ``"raw"`` reproduces the public outputs (not equivariant),
  ``"inverse"`` loads the same parameters into the exactly equivariant model (different
  outputs), ``"gated"`` is this package's default backward message (other parameters).
* Training-only differences (eval outputs are equal): dropout falls between layers on node and
  edge states here (hash dropout), on node states only and after every layer there;
  ``dropout_all`` (dropout inside every MLP) is not reproduced (a warning says so).

Options the model has no equivalent for (``symmetry: hetero`` / ``permutation``, several
equivariant sub-layers, ``update_as_act``, ``equiv_net`` positional encodings, ...) raise a
``ValueError`` naming the option. The configurations' sizes are in ``configs/`` of the public
repository; ``data.layer_layout`` gives the input network's widths.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import warnings
from collections.abc import Mapping

from torch import Tensor, nn

from ..weightspace.architecture import Architecture
from .config import ScaleGMNConfig
from .scalegmn import ScaleGMN, ScaleGMNEquivariant

__all__ = ["PublicSpec", "from_public_yaml", "load_public_state_dict", "public_config", "public_key_map", "read_public"]


@dataclasses.dataclass(frozen=True)
class PublicSpec:
    """A public configuration translated: ``config``, the input ``arch``, and whether the model
    is the equivariant head (``ScaleGMN_equiv``, INR editing)."""

    config: ScaleGMNConfig
    arch: Architecture
    equivariant: bool

    def build(self) -> ScaleGMN | ScaleGMNEquivariant:
        """The model (random initialisation; :func:`load_public_state_dict` fills it)."""
        if self.equivariant:
            return ScaleGMNEquivariant(self.arch, self.config)
        return ScaleGMN(self.arch, self.config)


def read_public(source) -> dict:
    """A public configuration as a dict: a mapping as is, a ``.json`` file, or a YAML file (needs
    PyYAML)."""
    if isinstance(source, Mapping):
        return dict(source)
    path = os.fspath(source)
    with open(path) as f:
        text = f.read()
    if path.endswith(".json"):
        return json.loads(text)
    try:
        import yaml
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(f"reading the YAML file {path!r} needs PyYAML: pip install pyyaml") from e
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ValueError(f"{path!r} is not valid YAML (the public svhn/scalegmn_relu_bidir.yml is not): {e}") from e


def _need(cond: bool, option: str, value, why: str) -> None:
    if not cond:
        raise ValueError(f"public ScaleGMN option {option}={value!r} is not supported: {why}")


def public_config(
    source, arch: Architecture | None = None, *, scale_backward: str | None = None, **overrides
) -> PublicSpec:
    """Translate a public configuration (path or dict with a ``scalegmn_args`` block).

    ``arch`` defaults to the configuration's ``data.layer_layout``: a SIREN (sign symmetry) for
    INR layouts, the Small CNN Zoo net (ReLU for ``symmetry: scale``, tanh for ``sign``) when
    ``scalegmn_args`` has ``_max_kernel_height``. ``scale_backward`` is required for
    bidirectional ``scale`` configurations (see the module docstring). ``overrides`` replace
    fields of the resulting :class:`ScaleGMNConfig` (e.g. ``checkpoint=True``)."""
    conf = read_public(source)
    if "scalegmn_args" not in conf:
        raise ValueError("a public ScaleGMN configuration has a 'scalegmn_args' block; this one has none")
    a = conf["scalegmn_args"]
    g, mlp, pe, init = a["gnn_args"], a["mlp_args"], a.get("positional_encodings", {}), a["graph_init"]
    sym, direction = a["symmetry"], a["direction"]
    _need(
        sym in ("sign", "scale"),
        "symmetry",
        sym,
        "this package runs sign and scale ScaleGMNs (no per-graph hetero switch, no public GMN layer)",
    )
    _need(direction in ("forward", "bidirectional"), "direction", direction, "forward or bidirectional")
    bidir, equivariant = direction == "bidirectional", bool(a.get("equivariant", False))
    d = int(a["d_hid"])
    for key in ("message_fn_layers", "update_node_feats_fn_layers"):
        _need(g.get(key, 1) == 1, f"gnn_args.{key}", g.get(key), "one equivariant sub-layer per net")
    for key in ("message_fn_skip_connections", "update_node_feats_fn_skip_connections", "update_as_act"):
        _need(not g.get(key, False), f"gnn_args.{key}", g.get(key), "not implemented")
    _need(g.get("aggregator", "add") == "add", "gnn_args.aggregator", g.get("aggregator"), "messages are summed")
    for key in ("msg_equiv_on_hidden", "upd_equiv_on_hidden"):
        _need(g.get(key, True), f"gnn_args.{key}", g.get(key), "I/O rows always have their own nets here")
    for key in ("layer_msg_equiv_on_hidden", "layer_upd_equiv_on_hidden"):
        _need(not g.get(key, False), f"gnn_args.{key}", g.get(key), "not implemented")
    for key in ("msg_num_mlps", "upd_num_mlps"):
        _need(g.get(key) in (2, 3), f"gnn_args.{key}", g.get(key), "2 or 3")
    for key in ("final_linear_pos_embed", "sum_pos_enc", "po_as_different_linear", "equiv_net"):
        _need(not pe.get(key, False), f"positional_encodings.{key}", pe.get(key), "not implemented")
    _need(len(mlp.get("d_k", [d])) == 1, "mlp_args.d_k", mlp.get("d_k"), "MLPs have one hidden layer")
    _need(mlp.get("activation", "silu") == "silu", "mlp_args.activation", mlp.get("activation"), "MLPs use SiLU")
    _need(not mlp.get("batch_norm", False), "mlp_args.batch_norm", mlp.get("batch_norm"), "not implemented")
    _need(mlp.get("bias", True), "mlp_args.bias", mlp.get("bias"), "MLPs have biases")
    _need(not mlp.get("skip", False), "mlp_args.skip", mlp.get("skip"), "not implemented")
    _need(
        mlp.get("final_activation", "identity") == "identity",
        "mlp_args.final_activation",
        mlp.get("final_activation"),
        "identity only",
    )
    _need(
        init.get("project_node_feats", True) and init.get("project_edge_feats", True),
        "graph_init.project_*_feats",
        False,
        "the initial projections are always there",
    )
    _need(init.get("d_in_v", 1) == 1, "graph_init.d_in_v", init.get("d_in_v"), "one bias per node")
    _need(not (bidir and a.get("concat_mlp_directions", False)), "concat_mlp_directions", True, "not implemented")
    node_pe, edge_pe = bool(a.get("node_pos_embed", True)), bool(a.get("edge_pos_embed", True))
    _need(node_pe or not edge_pe, "edge_pos_embed", edge_pe, "edge embeddings need node_pos_embed here")
    if g.get("dropout_all", False) and g.get("dropout", 0.0) > 0:
        warnings.warn(
            "public option gnn_args.dropout_all=True (dropout inside every MLP) is not reproduced: "
            "dropout acts between layers only; eval-mode outputs are unaffected",
            stacklevel=2,
        )

    if arch is None:
        layout = conf.get("data", {}).get("layer_layout") or a.get("layer_layout")
        if layout is None:
            raise ValueError("pass arch=: the configuration has no data.layer_layout")
        if "_max_kernel_height" in a:
            arch = Architecture.small_cnn_zoo("relu" if sym == "scale" else "tanh")
            if list(arch.layout) != list(layout):
                raise ValueError(
                    f"pass arch=: data.layer_layout {layout} is not the Small CNN Zoo net {list(arch.layout)}"
                )
        else:
            arch = Architecture.siren(layout)
    is_cnn = any(spec.is_conv for spec in arch.layers)
    if edge_pe and arch.layout[-1] > 1:
        raise ValueError(
            "public option edge_pos_embed=True with more than one output neuron is not supported: the public "
            "code assigns the last layer's edge types in an order that does not match its edge list"
        )
    if sym == "scale" and bidir and scale_backward is None:
        raise ValueError(
            "the public bidirectional scale model is not scale-equivariant (backward messages read the raw "
            "weights; reciprocal is never used). Choose scale_backward='raw' to reproduce its outputs, "
            "'inverse' for the exactly equivariant model with the same parameters, or 'gated'"
        )
    readout = a.get("readout_range", "last_layer") if not equivariant else "full_graph"
    _need(readout in ("last_layer", "full_graph"), "readout_range", readout, "last_layer or full_graph")
    mlp_on_io = bool(g.get("mlp_on_io", False))
    cfg = ScaleGMNConfig(
        symmetry=sym,
        direction=direction,
        d_hid=d,
        num_layers=int(a["num_layers"]),
        readout=readout,
        d_out=int((a.get("readout_args") or {}).get("d_out", 10)),
        dropout=float(g.get("dropout", 0.0)),
        layer_norm=bool(mlp.get("layer_norm", True)),
        sign_canon="symmetrize" if g.get("sign_symmetrization", True) else "abs",
        pos_embed=node_pe,
        edge_update=bool(g.get("update_edge_attr", True)),
        skip=bool(a.get("gnn_skip_connections", False)),
        input_value=0.0 if is_cnn else 1.0,
        out_scale=float(a.get("out_scale") or 0.01),
        scale_backward=scale_backward or "gated",
        edge_pos_embed=edge_pe,
        node_pos_io="sum" if pe.get("sum_on_io", True) else "prod",
        msg_num_mlps=int(g["msg_num_mlps"]),
        upd_num_mlps=int(g["upd_num_mlps"]),
        io_gamma=not mlp_on_io,
        rho_width="d_hid",
        edge_canon_io=True,
        pos_embed_msg=bool(g.get("pos_embed_msg", False)),
        pos_embed_upd=bool(g.get("pos_embed_upd", False)),
        readout_phi=readout == "full_graph" and not equivariant,
        readout_spare=readout == "full_graph" and not equivariant,
        readout_project_io=bidir and readout == "last_layer" and not equivariant,
        backward_edges=("separate" if sym == "scale" else "initial") if bidir else "current",
        dense_centre=not is_cnn,
    )
    if overrides:
        cfg = cfg.replace(**overrides)
    return PublicSpec(cfg, arch, equivariant)


def from_public_yaml(source, arch: Architecture | None = None, **kwargs) -> ScaleGMN | ScaleGMNEquivariant:
    """The model of a public configuration (see :func:`public_config` for the arguments)."""
    return public_config(source, arch, **kwargs).build()


# ------------------------------------------------------------------------------ state dicts ----
def _mlp(m: dict, pub: str, ours: str) -> None:
    for a, b in (("fc.0", "lin1"), ("fc.1", "lin2"), ("ln.0", "norm")):
        for p in ("weight", "bias"):
            m[f"{pub}.{a}.{p}"] = (f"{ours}.{b}.{p}", None)


def _eq_net(m: dict, pub: str, eq: str, mlp_on_io: bool, io: dict) -> None:
    """A public EquivariantNet (one layer) -> our ScaleEq ``eq`` plus I/O MLPs ``io`` (keys
    ``"in"``/``"last"`` -> our module names; None = not built)."""
    m[f"{pub}.eq_layers.0.W.weight"] = (f"{eq}.gamma.weight", None)
    _mlp(m, f"{pub}.eq_layers.0.g.g1.phi", f"{eq}.inv.phi")
    _mlp(m, f"{pub}.eq_layers.0.g.g1.rho", f"{eq}.inv.canon.rho")
    for which, ours in io.items():
        if ours is not None:
            src = f"{pub}.eq_layers_{which}.0.rho" if mlp_on_io else f"{pub}.eq_layers.0.g.phi_{which}"
            _mlp(m, src, ours)


def _edge_update(m: dict, pub: str, psi: str, gamma: str, canon: str) -> None:
    _mlp(m, f"{pub}.phi", psi)
    m[f"{pub}.W.weight"] = (f"{gamma}.weight", None)
    _mlp(m, f"{pub}.g1.rho", f"{canon}.rho")


def public_key_map(model: ScaleGMN | ScaleGMNEquivariant) -> dict[str, tuple[str, int | None]]:
    """Public state_dict key -> (our key, index into it or None), for every parameter of
    ``model`` (built by :func:`from_public_yaml`). Only entries whose target exists are kept."""
    cfg = model.config
    bidir, mlp_on_io = cfg.direction == "bidirectional", not cfg.io_gamma
    three_msg, three_upd = cfg.msg_num_mlps == 3, cfg.upd_num_mlps == 3
    m: dict[str, tuple[str, int | None]] = {
        "construct_graph.proj_bias.weight": ("node_init.weight", None),
        "construct_graph.proj_weight.weight": ("edge_init.weight", None),
        "positional_embeddings.pos_embed": ("node_pos", None),
        "positional_embeddings_edge.pos_embed": ("edge_pos", None),
    }
    for i in range(cfg.num_layers):
        ours, fw = f"layers.{i}", f"gnn.fw_layers.{i}"
        m[f"gnn.skip_layers.{i}.weight"] = (f"{ours}.skip.weight", None)
        m[f"{fw}.w_v.weight"] = (f"{ours}.msg_v.weight", None)
        m[f"{fw}.w_e.weight"] = (f"{ours}.msg_e.weight", None)
        # a forward message net uses its output-node MLP ("last" with 3 MLPs, else the shared "in")
        io = {"last": f"{ours}.msg_io", "in": f"{ours}.msg_io_spare"} if three_msg else {"in": f"{ours}.msg_io"}
        _eq_net(m, f"{fw}.message_fn", f"{ours}.msg_hidden", mlp_on_io, io)
        upd = f"gnn.update_node_feats_fn.{i}" if bidir else f"{fw}.update_node_feats_fn"
        io = {"in": f"{ours}.upd_in", "last": f"{ours}.upd_out" if three_upd else None}
        _eq_net(m, upd, f"{ours}.upd_hidden", mlp_on_io, io)
        edge = f"gnn.fw_update_edge_attr_fn.{i}" if bidir else f"{fw}.update_edge_attr_fn"
        _edge_update(m, edge, f"{ours}.psi", f"{ours}.edge_gamma", f"{ours}.edge_canon")
        if bidir:
            bw = f"gnn.bw_layers.{i}"
            m[f"{bw}.w_v.weight"] = (f"{ours}.bw_v.weight", None)
            m[f"{bw}.w_e.weight"] = (f"{ours}.bw_e.weight", None)
            io = {"in": f"{ours}.bw_io", "last": f"{ours}.bw_io_spare" if three_msg else None}
            _eq_net(m, f"{bw}.message_fn", f"{ours}.bw_hidden", mlp_on_io, io)
            _edge_update(
                m, f"gnn.bw_update_edge_attr_fn.{i}", f"{ours}.bw_psi", f"{ours}.bw_edge_gamma", f"{ours}.bw_edge_canon"
            )
    if isinstance(model, ScaleGMNEquivariant):
        for l in range(model.arch.num_layers):
            m[f"weight_scale.{l}"] = ("weight_scale", l)
            m[f"bias_scale.{l}"] = ("bias_scale", l)
    elif cfg.readout == "full_graph":
        _mlp(m, "gnn.readout.phi", "readout_spare")
        _mlp(m, "gnn.readout.g1.phi", "readout_phi")
        _mlp(m, "gnn.readout.g1.rho", "readout_canon.rho")
        _mlp(m, "gnn.readout.global_mlp", "readout_mlp")
    else:
        _mlp(m, "gnn.readout.rho", "readout_mlp")
        for p in ("weight", "bias"):
            m[f"gnn.project_last.{p}"] = (f"readout_project_last.{p}", None)
            m[f"gnn.project_first.{p}"] = (f"readout_project_first.{p}", None)
    ours_keys = set(model.state_dict())
    return {k: v for k, v in m.items() if v[0] in ours_keys}


def load_public_state_dict(model: ScaleGMN | ScaleGMNEquivariant, state_dict: Mapping[str, Tensor]) -> nn.Module:
    """Copy a public ScaleGMN checkpoint's ``state_dict`` into ``model`` (built from the same
    configuration by :func:`from_public_yaml`) and return the model.

    Strict: a public key that maps to nothing, a parameter of ``model`` that no public key fills,
    or a shape mismatch raises ``ValueError`` naming the keys. A ``{"model": state_dict}`` /
    ``{"state_dict": ...}`` checkpoint wrapper is unwrapped, and a ``module.`` prefix (DDP) removed.
    """
    if not isinstance(model, (ScaleGMN, ScaleGMNEquivariant)):
        raise TypeError(f"model must be a ScaleGMN or ScaleGMNEquivariant, got {type(model).__name__}")
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"state_dict must be a mapping of parameter names to tensors, got {type(state_dict).__name__}")
    for wrapper in ("state_dict", "model"):
        if wrapper in state_dict and isinstance(state_dict[wrapper], Mapping):
            state_dict = state_dict[wrapper]
    sd = {re.sub(r"^module\.", "", k): v for k, v in state_dict.items()}
    kmap = public_key_map(model)
    ours = model.state_dict()
    unexpected = sorted(k for k in sd if k not in kmap)
    missing_public = sorted(k for k in kmap if k not in sd)
    filled = {v[0] for v in kmap.values()}
    unfilled = sorted(k for k in ours if k not in filled)
    if unexpected or missing_public or unfilled:
        parts = []
        if unexpected:
            parts.append(f"unexpected public keys {unexpected[:8]}{' ...' if len(unexpected) > 8 else ''}")
        if missing_public:
            parts.append(f"missing public keys {missing_public[:8]}{' ...' if len(missing_public) > 8 else ''}")
        if unfilled:
            parts.append(f"parameters of the model that no public key fills {unfilled[:8]}")
        raise ValueError(
            "the state_dict does not match this model's public structure (was the model built from the "
            "same configuration?): " + "; ".join(parts)
        )
    new = {k: v.clone() for k, v in ours.items()}
    for key, (target, index) in kmap.items():
        value = sd[key]
        if not isinstance(value, Tensor):
            raise TypeError(f"public key {key!r} holds a {type(value).__name__}, not a tensor")
        want = ours[target].shape if index is None else ours[target][index].shape
        if value.shape != want:
            raise ValueError(f"public key {key!r} has shape {tuple(value.shape)}; {target!r} needs {tuple(want)}")
        value = value.to(dtype=ours[target].dtype, device=ours[target].device)
        if index is None:
            new[target] = value.clone()
        else:
            new[target][index] = value
    model.load_state_dict(new)
    return model
