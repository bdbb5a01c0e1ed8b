"""Adapters between ``torch.nn`` modules / state dicts / the nfn library / PyTorch Geometric and weight lists.

A batch of B networks of one :class:`~scalegmn_ext.weightspace.architecture.Architecture` is ``weights`` (per layer
``[B, out, in]`` dense or ``[B, out, in, kh, kw]`` conv, torch layout) and ``biases`` (per layer
``[B, out]``). Single networks use the same lists without the batch axis.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .architecture import ACTIVATION_SYMMETRY, Architecture, LayerSpec
from .graph import WeightGraph
from .nets import SIREN, OutputOffset, Sine, SmallCNN, build_module

__all__ = [
    "arch_from_module",
    "module_to_weights",
    "weights_to_module",
    "state_dict_to_weights",
    "weights_to_state_dict",
    "to_nfn",
    "from_nfn",
    "to_pyg_batch",
    "check_layer_shapes",
]

_ACT_TYPES: dict[type, str] = {
    nn.ReLU: "relu",
    nn.LeakyReLU: "leaky_relu",
    nn.Tanh: "tanh",
    Sine: "sine",
    nn.Sigmoid: "sigmoid",
    nn.GELU: "gelu",
    nn.SiLU: "silu",
}
_SKIP_TYPES = (nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.AlphaDropout, nn.FeatureAlphaDropout)


# ----------------------------------------------------------------------------------------------
# module -> architecture
# ----------------------------------------------------------------------------------------------
def _flat_items(module: nn.Module, prefix: str = "") -> list[tuple[str, nn.Module]]:
    """The modules a supported network applies, in forward order, with their qualified names."""

    def q(name: str) -> str:
        return f"{prefix}{name}"

    if isinstance(module, SIREN):
        items: list[tuple[str, nn.Module]] = []
        n = len(module.layers)
        for i, layer in enumerate(module.layers):
            items.append((q(f"layers.{i}"), layer))
            if i < n - 1:
                items.append((q(f"layers.{i}<sine>"), Sine(module.w0)))
        if module.output_offset != 0.0:
            items.append((q("<output_offset>"), OutputOffset(module.output_offset)))
        return items
    if isinstance(module, (nn.Sequential, SmallCNN)):
        items = []
        for name, child in module.named_children():
            if isinstance(child, (nn.Sequential, SmallCNN, SIREN)):
                items += _flat_items(child, q(name) + ".")
            else:
                items.append((q(name), child))
        return items
    raise TypeError(
        f"module must be an nn.Sequential, scalegmn_ext.weightspace.nets.SIREN or scalegmn_ext.weightspace.nets.SmallCNN, "
        f"got {type(module).__name__}"
    )


def _activation_key(name: str, mod: nn.Module) -> tuple[str, float | None]:
    """(activation name, w0 for sine); raises for unrepresentable hyper-parameters."""
    if isinstance(mod, nn.LeakyReLU) and mod.negative_slope != 0.01:
        raise ValueError(
            f"submodule {name!r} is LeakyReLU(negative_slope={mod.negative_slope}); only the default "
            "negative_slope=0.01 is representable"
        )
    if isinstance(mod, nn.GELU) and mod.approximate != "none":
        raise ValueError(
            f"submodule {name!r} is GELU(approximate={mod.approximate!r}); only approximate='none' is representable"
        )
    act = _ACT_TYPES[type(mod)]
    return act, (float(mod.w0) if act == "sine" else None)


def _conv_spec(name: str, m: nn.Conv2d) -> LayerSpec:
    if m.groups != 1:
        raise ValueError(f"submodule {name!r} is a Conv2d with groups={m.groups}; only groups=1 is representable")
    if tuple(m.dilation) != (1, 1):
        raise ValueError(
            f"submodule {name!r} is a Conv2d with dilation={tuple(m.dilation)}; only dilation=1 is representable"
        )
    if m.padding_mode != "zeros":
        raise ValueError(
            f"submodule {name!r} is a Conv2d with padding_mode={m.padding_mode!r}; only 'zeros' is representable"
        )
    if m.stride[0] != m.stride[1]:
        raise ValueError(
            f"submodule {name!r} is a Conv2d with stride={tuple(m.stride)}; only equal strides are representable"
        )
    kh, kw = m.kernel_size
    if isinstance(m.padding, str):
        if m.padding == "valid":
            pad = (0, 0)
        elif kh % 2 == 1 and kw % 2 == 1:  # 'same' with stride 1 (torch enforces), odd kernel: symmetric
            pad = ((kh - 1) // 2, (kw - 1) // 2)
        else:
            raise ValueError(
                f"submodule {name!r} is a Conv2d with padding='same' and an even kernel {(kh, kw)}; "
                "asymmetric padding is not representable"
            )
    else:
        pad = tuple(m.padding)
    if pad[0] != pad[1]:
        raise ValueError(f"submodule {name!r} is a Conv2d with padding={pad}; only equal paddings are representable")
    return LayerSpec("conv", m.in_channels, m.out_channels, (kh, kw), int(m.stride[0]), int(pad[0]), m.bias is not None)


def _parse(module: nn.Module, activation: str | None) -> tuple[Architecture, list[tuple[str, nn.Module]]]:
    """Architecture plus the ordered (name, Linear|Conv2d) layers of a supported module."""
    if activation is not None and activation not in ACTIVATION_SYMMETRY:
        raise ValueError(f"activation must be None or one of {sorted(ACTIVATION_SYMMETRY)}, got {activation!r}")
    items = _flat_items(module)
    default_w0 = 30.0
    if isinstance(module, SIREN):  # a one-layer SIREN has no Sine item; it still is a sine net
        activation, default_w0 = activation or "sine", module.w0
    specs: list[LayerSpec] = []
    layers: list[tuple[str, nn.Module]] = []
    has_act: list[bool] = []
    act_key: tuple[str, float | None] | None = None
    act_where = ""
    stage = "start"  # start | conv | pooled | flat | dense
    offset = 0.0
    offset_at: str | None = None
    for name, m in items:
        if offset_at is not None and not isinstance(m, _SKIP_TYPES):
            raise ValueError(
                f"submodule {name!r} ({type(m).__name__}) follows the output offset {offset_at!r}; "
                "the offset must be the last module"
            )
        if isinstance(m, _SKIP_TYPES):
            continue
        if isinstance(m, nn.Conv2d):
            if stage not in ("start", "conv"):
                raise ValueError(
                    f"submodule {name!r} is a Conv2d after pooling/dense layers; an Architecture is "
                    "conv layers, then AdaptiveAvgPool2d(1) + Flatten, then Linear layers"
                )
            specs.append(_conv_spec(name, m))
            layers.append((name, m))
            has_act.append(False)
            stage = "conv"
        elif isinstance(m, nn.Linear):
            if stage == "conv":
                raise ValueError(
                    f"submodule {name!r} is a Linear directly after conv layers; global average "
                    "pooling (AdaptiveAvgPool2d(1) + Flatten) must come between them"
                )
            if stage == "pooled":
                raise ValueError(f"submodule {name!r} is a Linear after AdaptiveAvgPool2d without Flatten")
            specs.append(LayerSpec("dense", m.in_features, m.out_features, bias=m.bias is not None))
            layers.append((name, m))
            has_act.append(False)
            stage = "dense"
        elif type(m) in _ACT_TYPES:
            key = _activation_key(name, m)
            if not layers or stage in ("pooled", "flat"):
                where = "before the first layer" if not layers else "after the global average pooling"
                raise ValueError(f"submodule {name!r} ({type(m).__name__}) is an activation {where}; not representable")
            if has_act[-1]:
                raise ValueError(
                    f"submodule {name!r} ({type(m).__name__}) is a second activation after layer "
                    f"{layers[-1][0]!r}; not representable"
                )
            if act_key is not None and key != act_key:
                raise ValueError(
                    f"submodule {name!r} uses activation {key[0]!r}{'' if key[1] is None else f' (w0={key[1]})'} but "
                    f"{act_where!r} uses {act_key[0]!r}{'' if act_key[1] is None else f' (w0={act_key[1]})'}; "
                    "an Architecture has a single activation"
                )
            act_key, act_where = key, name
            has_act[-1] = True
        elif isinstance(m, nn.AdaptiveAvgPool2d):
            size = m.output_size
            size = (size, size) if not isinstance(size, (tuple, list)) else tuple(size)
            if size != (1, 1):
                raise ValueError(
                    f"submodule {name!r} is AdaptiveAvgPool2d({m.output_size}); only global pooling "
                    "AdaptiveAvgPool2d(1) is representable"
                )
            if stage != "conv":
                raise ValueError(f"submodule {name!r} (AdaptiveAvgPool2d) must directly follow the conv layers")
            stage = "pooled"
        elif isinstance(m, nn.Flatten):
            if (m.start_dim, m.end_dim) != (1, -1):
                raise ValueError(
                    f"submodule {name!r} is Flatten(start_dim={m.start_dim}, end_dim={m.end_dim}); "
                    "only Flatten(1, -1) is representable"
                )
            if stage == "pooled":
                stage = "flat"
            elif stage != "start":  # a leading Flatten (MLP on flattened input) is dropped
                raise ValueError(
                    f"submodule {name!r} (Flatten) is only representable at the start or right after "
                    "AdaptiveAvgPool2d(1)"
                )
        elif isinstance(m, OutputOffset):
            if not layers:
                raise ValueError(f"submodule {name!r} (OutputOffset) comes before any layer")
            offset, offset_at = float(m.offset), name
        else:
            raise ValueError(
                f"submodule {name!r} ({type(m).__name__}) is not representable; supported: Linear, Conv2d "
                f"(groups=1, dilation=1), activations {sorted(set(_ACT_TYPES.values()))}, AdaptiveAvgPool2d(1), "
                "Flatten, Dropout, Identity, OutputOffset"
            )
    if not layers:
        raise ValueError(f"module {type(module).__name__} has no Linear or Conv2d layers")
    if stage in ("conv", "pooled"):
        raise ValueError(
            f"the conv layers of module {type(module).__name__} must be followed by AdaptiveAvgPool2d(1) "
            "and Flatten (global average pooling)"
        )
    # Where the conventions put an activation: after every conv layer, after every dense layer but the last.
    expected = [spec.is_conv or i < len(specs) - 1 for i, spec in enumerate(specs)]
    if act_key is None:
        act_name, w0 = (activation or "identity"), default_w0
    else:
        act_name, w0 = act_key[0], (act_key[1] if act_key[1] is not None else 30.0)
        if activation is not None and activation != act_name:
            raise ValueError(f"activation={activation!r} was given but the module uses {act_name!r} (at {act_where!r})")
        for (name, m), has, exp in zip(layers, has_act, expected):
            if has and not exp:
                raise ValueError(
                    f"layer {name!r} is the last layer but is followed by an activation; the output "
                    "layer of an Architecture has no activation"
                )
            if exp and not has:
                raise ValueError(
                    f"layer {name!r} ({type(m).__name__}) is not followed by an activation but "
                    f"{act_where!r} is; an Architecture applies the activation after every hidden layer"
                )
    arch = Architecture(tuple(specs), act_name, w0=w0, output_offset=offset)
    return arch, layers


def arch_from_module(module: nn.Module, activation: str | None = None) -> Architecture:
    """Infer the :class:`Architecture` of ``module``.

    Supported: an ``nn.Sequential`` (nested ones are flattened) of ``Linear`` / ``Conv2d`` /
    activation modules (ReLU, LeakyReLU(0.01), Tanh, :class:`~scalegmn_ext.weightspace.nets.Sine`, Sigmoid,
    GELU, SiLU), ``AdaptiveAvgPool2d(1)`` + ``Flatten`` between the conv and dense layers,
    ``Dropout`` / ``Identity`` (ignored), a leading ``Flatten`` (dropped) and a final
    :class:`~scalegmn_ext.weightspace.nets.OutputOffset`; a :class:`~scalegmn_ext.weightspace.nets.SIREN`; a
    :class:`~scalegmn_ext.weightspace.nets.SmallCNN`.

    Args:
        activation: the activation name to use when the module contains no activation module
            (default then: ``"identity"``); if the module has one, it must agree.

    Raises:
        TypeError / ValueError naming the offending submodule for anything unrepresentable.
    """
    return _parse(module, activation)[0]


# ----------------------------------------------------------------------------------------------
# modules <-> weight lists
# ----------------------------------------------------------------------------------------------
def _module_params(module: nn.Module, detach: bool) -> tuple[Architecture, list[Tensor], list[Tensor]]:
    arch, layers = _parse(module, None)
    ws, bs = [], []
    for _, m in layers:
        w = m.weight
        b = m.bias if m.bias is not None else w.new_zeros(w.shape[0])
        if detach:
            w, b = w.detach(), b.detach()
        ws.append(w.clone())
        bs.append(b.clone())
    return arch, ws, bs


def module_to_weights(
    module_or_modules: nn.Module | Sequence[nn.Module], *, detach: bool = True
) -> tuple[list[Tensor], list[Tensor]]:
    """Weights and biases of one module (unbatched lists) or of several (batched, stacked).

    ``module_or_modules``: a supported module (see :func:`arch_from_module`), or a list /
    ``nn.ModuleList`` of modules that all share one architecture. Missing biases become zeros.
    With ``detach=False`` the returned tensors stay connected to the modules' parameters.
    """
    if isinstance(module_or_modules, nn.Module) and not isinstance(module_or_modules, nn.ModuleList):
        _, ws, bs = _module_params(module_or_modules, detach)
        return ws, bs
    if not isinstance(module_or_modules, (Sequence, nn.ModuleList)) or len(module_or_modules) == 0:
        raise TypeError(
            "module_or_modules must be an nn.Module or a non-empty list of nn.Modules, "
            f"got {type(module_or_modules).__name__}"
        )
    arch0 = None
    all_w: list[list[Tensor]] = []
    all_b: list[list[Tensor]] = []
    for i, m in enumerate(module_or_modules):
        if not isinstance(m, nn.Module):
            raise TypeError(f"module_or_modules[{i}] must be an nn.Module, got {type(m).__name__}")
        arch, ws, bs = _module_params(m, detach)
        if arch0 is None:
            arch0 = arch
        elif arch != arch0:
            raise ValueError(
                f"module_or_modules[{i}] has architecture {arch} but module_or_modules[0] has {arch0}; "
                "a batch must share one architecture"
            )
        all_w.append(ws)
        all_b.append(bs)
    weights = [torch.stack([ws[l] for ws in all_w]) for l in range(arch0.num_layers)]
    biases = [torch.stack([bs[l] for bs in all_b]) for l in range(arch0.num_layers)]
    return weights, biases


def _check_against_arch(
    arch: Architecture, weights: Any, biases: Any, where: str = ""
) -> tuple[list[Tensor], list[Tensor], bool]:
    """Validate weights/biases against ``arch``; returns batched lists (biases filled) and whether input was batched."""
    if not isinstance(arch, Architecture):
        raise TypeError(f"{where}arch must be an Architecture, got {type(arch).__name__}")
    if isinstance(weights, Tensor) or not isinstance(weights, Sequence):
        raise TypeError(f"{where}weights must be a list of per-layer tensors, got {type(weights).__name__}")
    if len(weights) != arch.num_layers:
        raise ValueError(f"{where}weights has {len(weights)} layers but the architecture {arch} has {arch.num_layers}")
    if biases is not None and (isinstance(biases, Tensor) or not isinstance(biases, Sequence)):
        raise TypeError(f"{where}biases must be None or a list of per-layer tensors, got {type(biases).__name__}")
    if biases is not None and len(biases) != arch.num_layers:
        raise ValueError(f"{where}biases has {len(biases)} entries but the architecture has {arch.num_layers} layers")
    for l, w in enumerate(weights):
        if not isinstance(w, Tensor):
            raise TypeError(f"{where}weights[{l}] must be a Tensor, got {type(w).__name__}")
    batched = weights[0].dim() == len(arch.layers[0].weight_shape) + 1
    B = weights[0].shape[0] if batched else None
    ws, bs = [], []
    for l, (w, spec) in enumerate(zip(weights, arch.layers)):
        exp = ((B,) if batched else ()) + spec.weight_shape
        if tuple(w.shape) != exp:
            shape_s = ", ".join(map(str, spec.weight_shape))
            raise ValueError(
                f"{where}weights[{l}] must have shape {list(exp)} "
                f"({'[B, ' if batched else '['}{shape_s}]) for layer {l} of {arch}, got {tuple(w.shape)}"
            )
        if not w.is_floating_point():
            raise TypeError(f"{where}weights[{l}] must be a floating tensor, got {w.dtype}")
        b = None if biases is None else biases[l]
        if b is None:
            b = w.new_zeros(((B,) if batched else ()) + (spec.out_features,))
        else:
            if not isinstance(b, Tensor):
                raise TypeError(f"{where}biases[{l}] must be a Tensor or None, got {type(b).__name__}")
            bexp = ((B,) if batched else ()) + (spec.out_features,)
            if tuple(b.shape) != bexp:
                raise ValueError(
                    f"{where}biases[{l}] must have shape {list(bexp)} "
                    f"({'[B, out]' if batched else '[out]'}) for layer {l} of {arch}, got {tuple(b.shape)}"
                )
            if not spec.bias and bool((b != 0).any()):
                raise ValueError(f"{where}biases[{l}] is non-zero but layer {l} of the architecture has bias=False")
        if not batched:
            w, b = w.unsqueeze(0), b.unsqueeze(0)
        ws.append(w)
        bs.append(b)
    return ws, bs, batched


def _load(module: nn.Module, layers: list[tuple[str, nn.Module]], ws: Sequence[Tensor], bs: Sequence[Tensor]) -> None:
    with torch.no_grad():
        for (_, m), w, b in zip(layers, ws, bs):
            m.weight.copy_(w)
            if m.bias is not None:
                m.bias.copy_(b)


def weights_to_module(
    arch: Architecture,
    weights: Sequence[Tensor],
    biases: Sequence[Tensor | None] | None = None,
    index: int | None = None,
) -> nn.Module | list[nn.Module]:
    """Build module(s) of architecture ``arch`` loaded with the given weights.

    Sine MLPs whose layers all have biases become :class:`~scalegmn_ext.weightspace.nets.SIREN`; everything
    else an ``nn.Sequential`` from :func:`~scalegmn_ext.weightspace.nets.build_module`. Modules take the
    dtype and device of ``weights[0]`` and hold copies (no autograd link to ``weights``).

    Unbatched weights give one module. Batched weights give a list of B modules, or only the
    module of network ``index`` when it is given.
    """
    ws, bs, batched = _check_against_arch(arch, weights, biases)
    B = ws[0].shape[0]
    if index is not None:
        if not batched:
            raise ValueError("index is only valid for batched weights ([B, out, in] ...), got unbatched weights")
        if not isinstance(index, int) or not -B <= index < B:
            raise IndexError(f"index must be an int in [-{B}, {B}) for a batch of {B} networks, got {index!r}")
    dtype, device = ws[0].dtype, ws[0].device

    def make(k: int) -> nn.Module:
        if arch.activation == "sine" and not arch.is_cnn and all(s.bias for s in arch.layers):
            mod: nn.Module = SIREN(arch.layout, w0=arch.w0, output_offset=arch.output_offset).to(
                dtype=dtype, device=device
            )
        else:
            mod = build_module(arch, dtype=dtype, device=device)
        _load(mod, _parse(mod, arch.activation)[1], [w[k] for w in ws], [b[k] for b in bs])
        return mod

    if not batched:
        return make(0)
    if index is not None:
        return make(index)
    return [make(k) for k in range(B)]


# ----------------------------------------------------------------------------------------------
# state dicts <-> weight lists
# ----------------------------------------------------------------------------------------------
def check_layer_shapes(
    arch: Architecture,
    layer: int,
    weight: Tensor,
    bias: Tensor | None,
    *,
    weight_name: str,
    bias_name: str,
) -> None:
    """Check one network's (unbatched) weight and bias of layer ``layer`` against ``arch``.

    The one shape check for parameters read by name (state dicts here, zoo files in
    :mod:`scalegmn_ext.tasks.zoo.published`), so every reader words a mismatch the same way:
    ``<name> must have shape [32, 32] for layer 1 of <arch>, got [32, 16]`` (a ValueError).
    ``bias=None`` (a layer stored without bias) is not checked; the caller fills zeros.
    """
    spec = arch.layers[layer]
    for name, t, expected in ((weight_name, weight, spec.weight_shape), (bias_name, bias, (spec.out_features,))):
        if t is not None and tuple(t.shape) != tuple(expected):
            raise ValueError(
                f"{name} must have shape {list(expected)} for layer {layer} of {arch}, got {list(t.shape)}"
            )


def _natural_key(path: str) -> list:
    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", path) if t != ""]


def _one_state_dict(sd: Any, arch: Architecture, order: str, strict: bool, where: str):
    if not isinstance(sd, Mapping):
        raise TypeError(f"{where} must be a state dict (a Mapping of str -> Tensor), got {type(sd).__name__}")
    paths: dict[str, dict[str, tuple[str, Tensor]]] = {}  # insertion-ordered: path -> {'weight'|'bias': (key, t)}
    for key, t in sd.items():
        if not isinstance(key, str):
            raise TypeError(f"{where} has a non-string key {key!r}")
        path, _, leaf = key.rpartition(".")
        if leaf not in ("weight", "bias"):
            if strict:
                raise ValueError(
                    f"{where} has key {key!r} that is not a '*.weight' / '*.bias' parameter; "
                    "pass strict=False to ignore such keys"
                )
            continue
        if not isinstance(t, Tensor):
            raise TypeError(f"{where}[{key!r}] must be a Tensor, got {type(t).__name__}")
        paths.setdefault(path, {})[leaf] = (key, t)
    order_paths = list(paths)
    if order == "natural":
        order_paths.sort(key=_natural_key)
    elif order != "insertion":
        raise ValueError(f"order must be 'insertion' or 'natural', got {order!r}")
    for p in order_paths:
        if "weight" not in paths[p]:
            raise ValueError(
                f"{where} has key {paths[p]['bias'][0]!r} without a matching {p + '.weight' if p else 'weight'!r}"
            )
    if len(order_paths) != arch.num_layers:
        keys = [paths[p]["weight"][0] for p in order_paths]
        raise ValueError(
            f"{where} has {len(order_paths)} parametrised layers ({keys}) but the architecture {arch} "
            f"has {arch.num_layers}"
        )
    ws, bs = [], []
    for l, p in enumerate(order_paths):
        wkey, w = paths[p]["weight"]
        bkey, b = paths[p].get("bias", (None, None))
        check_layer_shapes(arch, l, w, b, weight_name=f"{where}[{wkey!r}]", bias_name=f"{where}[{bkey!r}]")
        if b is None:
            b = w.new_zeros(arch.layers[l].out_features)
        ws.append(w.detach())
        bs.append(b.detach())
    return ws, bs


def state_dict_to_weights(
    state_dicts: Mapping[str, Tensor] | Sequence[Mapping[str, Tensor]],
    arch: Architecture,
    *,
    order: str = "insertion",
    strict: bool = True,
) -> tuple[list[Tensor], list[Tensor]]:
    """Weights and biases from one state dict (unbatched) or a list of state dicts (batched).

    Parametrised layers are the module paths having a ``<path>.weight`` key, taken in the order
    in which the paths first appear in the dict (``order="insertion"``, what ``state_dict()``
    produces) or sorted with numbers compared numerically (``order="natural"``: ``seq.2`` before
    ``seq.10``). E.g. the published MNIST-INR zoo: ``seq.0.weight, seq.0.bias, ..., seq.2.bias``.
    Missing biases become zeros. Shapes are checked against ``arch``; with ``strict=True`` keys
    other than ``*.weight`` / ``*.bias`` are an error, else they are ignored. Tensors are
    returned detached (and stacked copies when batched).
    """
    if not isinstance(arch, Architecture):
        raise TypeError(f"arch must be an Architecture, got {type(arch).__name__}")
    if isinstance(state_dicts, Mapping):
        return _one_state_dict(state_dicts, arch, order, strict, "state_dict")
    if not isinstance(state_dicts, Sequence) or isinstance(state_dicts, (str, bytes)) or len(state_dicts) == 0:
        raise TypeError(
            f"state_dicts must be a state dict or a non-empty list of them, got {type(state_dicts).__name__}"
        )
    per = [_one_state_dict(sd, arch, order, strict, f"state_dicts[{i}]") for i, sd in enumerate(state_dicts)]
    weights = [torch.stack([p[0][l] for p in per]) for l in range(arch.num_layers)]
    biases = [torch.stack([p[1][l] for p in per]) for l in range(arch.num_layers)]
    return weights, biases


def _sequential_positions(arch: Architecture) -> list[int]:
    """Index of each parametrised layer inside ``build_module(arch)``."""
    pos, j, pooled = [], 0, False
    for i, spec in enumerate(arch.layers):
        if not spec.is_conv and arch.is_cnn and not pooled:
            j += 2
            pooled = True
        pos.append(j)
        j += 1 + (1 if spec.is_conv or i < arch.num_layers - 1 else 0)
    return pos


def weights_to_state_dict(
    arch: Architecture,
    weights: Sequence[Tensor],
    biases: Sequence[Tensor | None] | None = None,
    prefix_format: str | Callable[[int], str] | Sequence[str] = "seq.{i}",
) -> dict[str, Tensor] | list[dict[str, Tensor]]:
    """State dict(s) ``{<prefix>.weight, <prefix>.bias, ...}`` for the given weights.

    ``prefix_format``: a format string with ``{i}`` (index among the parametrised layers) and/or
    ``{j}`` (position in :func:`~scalegmn_ext.weightspace.nets.build_module`'s Sequential), a callable
    ``i -> prefix``, or a list of prefixes. The default ``"seq.{i}"`` gives the published
    MNIST-INR zoo keys; ``"layers.{i}"`` loads into :class:`~scalegmn_ext.weightspace.nets.SIREN`; ``"{j}"``
    loads into ``build_module(arch)``. Layers with ``bias=False`` get no bias key. Unbatched
    weights give one dict; batched weights a list of B dicts. Values are detached copies.
    """
    ws, bs, batched = _check_against_arch(arch, weights, biases)
    L = arch.num_layers
    if isinstance(prefix_format, str):
        pos = _sequential_positions(arch)
        try:
            prefixes = [prefix_format.format(i=l, j=pos[l]) for l in range(L)]
        except (KeyError, IndexError, ValueError) as e:
            raise ValueError(
                f"prefix_format {prefix_format!r} must be a format string using only {{i}} and {{j}}: {e}"
            ) from None
    elif callable(prefix_format):
        prefixes = [str(prefix_format(l)) for l in range(L)]
    elif (
        isinstance(prefix_format, Sequence)
        and len(prefix_format) == L
        and all(isinstance(p, str) for p in prefix_format)
    ):
        prefixes = list(prefix_format)
    else:
        raise TypeError(
            f"prefix_format must be a format string, a callable or a list of {L} strings, got {prefix_format!r}"
        )
    if len(set(prefixes)) != L:
        raise ValueError(f"prefix_format {prefix_format!r} gives repeated prefixes {prefixes}")

    def one(k: int) -> dict[str, Tensor]:
        sd: dict[str, Tensor] = {}
        for l, (p, spec) in enumerate(zip(prefixes, arch.layers)):
            stem = f"{p}." if p else ""
            sd[f"{stem}weight"] = ws[l][k].detach().clone()
            if spec.bias:
                sd[f"{stem}bias"] = bs[l][k].detach().clone()
        return sd

    return [one(k) for k in range(ws[0].shape[0])] if batched else one(0)


# ----------------------------------------------------------------------------------------------
# nfn (Zhou et al., neural functional networks) convention
# ----------------------------------------------------------------------------------------------
def to_nfn(
    weights: Sequence[Tensor], biases: Sequence[Tensor | None] | None = None
) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
    """Batched weights/biases -> the nfn layout ``(weights, biases)`` with a channel axis of 1.

    Per layer: weight ``[B, out, in]`` -> ``[B, 1, out, in]`` (conv ``[B, out, in, kh, kw]`` ->
    ``[B, 1, out, in, kh, kw]``), bias ``[B, out]`` -> ``[B, 1, out]`` (None -> zeros). Returns
    views (no copy). Wrap in ``nfn.common.WeightSpaceFeatures(*result)`` if needed.
    """
    if isinstance(weights, Tensor) or not isinstance(weights, Sequence) or len(weights) == 0:
        raise TypeError(
            "weights must be a non-empty list of batched per-layer tensors [B, out, in] or [B, out, in, kh, kw]"
        )
    if biases is not None and len(biases) != len(weights):
        raise ValueError(f"biases has {len(biases)} entries but weights has {len(weights)} layers")
    B = None
    out_w, out_b = [], []
    for l, w in enumerate(weights):
        if not isinstance(w, Tensor):
            raise TypeError(f"weights[{l}] must be a Tensor, got {type(w).__name__}")
        if w.dim() not in (3, 5):
            raise ValueError(
                f"weights[{l}] must be batched [B, out, in] or [B, out, in, kh, kw], got shape {tuple(w.shape)}"
            )
        if B is None:
            B = w.shape[0]
        elif w.shape[0] != B:
            raise ValueError(f"weights[{l}] has batch size {w.shape[0]}, expected {B} (from weights[0])")
        b = None if biases is None else biases[l]
        if b is None:
            b = w.new_zeros(B, w.shape[1])
        elif not isinstance(b, Tensor):
            raise TypeError(f"biases[{l}] must be a Tensor or None, got {type(b).__name__}")
        elif tuple(b.shape) != (B, w.shape[1]):
            raise ValueError(f"biases[{l}] must have shape {[B, w.shape[1]]} ([B, out]), got {tuple(b.shape)}")
        out_w.append(w.unsqueeze(1))
        out_b.append(b.unsqueeze(1))
    return tuple(out_w), tuple(out_b)


def from_nfn(nfn_tuple: Any) -> tuple[list[Tensor], list[Tensor]]:
    """Inverse of :func:`to_nfn`: nfn ``(weights, biases)`` (or a ``WeightSpaceFeatures``) -> lists.

    Only a channel count of 1 is accepted (``[B, 1, out, in(, kh, kw)]``, ``[B, 1, out]``).
    Returns views (no copy).
    """
    if hasattr(nfn_tuple, "weights") and hasattr(nfn_tuple, "biases"):
        nw, nb = nfn_tuple.weights, nfn_tuple.biases
    elif isinstance(nfn_tuple, Sequence) and not isinstance(nfn_tuple, Tensor) and len(nfn_tuple) == 2:
        nw, nb = nfn_tuple
    else:
        raise TypeError(
            f"nfn_tuple must be a (weights, biases) pair or a WeightSpaceFeatures, got {type(nfn_tuple).__name__}"
        )
    if isinstance(nw, Tensor) or not isinstance(nw, Sequence) or len(nw) == 0:
        raise TypeError("nfn_tuple weights must be a non-empty tuple of per-layer tensors [B, 1, out, in(, kh, kw)]")
    if isinstance(nb, Tensor) or not isinstance(nb, Sequence) or len(nb) != len(nw):
        raise ValueError(f"nfn_tuple biases must be a tuple of {len(nw)} per-layer tensors [B, 1, out]")
    ws, bs = [], []
    for l, (w, b) in enumerate(zip(nw, nb)):
        if not isinstance(w, Tensor) or not isinstance(b, Tensor):
            raise TypeError(f"nfn_tuple weights[{l}] and biases[{l}] must be Tensors")
        if w.dim() not in (4, 6):
            raise ValueError(
                f"nfn_tuple weights[{l}] must be [B, 1, out, in] or [B, 1, out, in, kh, kw], got shape {tuple(w.shape)}"
            )
        if w.shape[1] != 1:
            raise ValueError(
                f"nfn_tuple weights[{l}] has {w.shape[1]} channels (shape {tuple(w.shape)}); only c=1 is supported"
            )
        if b.dim() != 3 or b.shape[1] != 1:
            raise ValueError(f"nfn_tuple biases[{l}] must be [B, 1, out] (c=1), got shape {tuple(b.shape)}")
        if b.shape[0] != w.shape[0] or b.shape[2] != w.shape[2]:
            raise ValueError(
                f"nfn_tuple biases[{l}] must have shape {[w.shape[0], 1, w.shape[2]]}, got {tuple(b.shape)}"
            )
        if l > 0 and (w.shape[0] != ws[0].shape[0] or w.shape[3] != ws[-1].shape[1]):
            raise ValueError(
                f"nfn_tuple weights[{l}] (shape {tuple(w.shape)}) does not chain with weights[{l - 1}] "
                f"(shape {tuple(nw[l - 1].shape)}) / batch size {ws[0].shape[0]}"
            )
        ws.append(w.squeeze(1))
        bs.append(b.squeeze(1))
    return ws, bs


# ----------------------------------------------------------------------------------------------
# PyTorch Geometric
# ----------------------------------------------------------------------------------------------
def _import_pyg():
    try:
        from torch_geometric.data import Batch, Data
    except ImportError as e:
        raise ImportError(
            "to_pyg_batch needs PyTorch Geometric: pip install torch_geometric "
            f"(pure Python; install it into the environment that has torch). Import error: {e}"
        ) from e
    return Batch, Data


def to_pyg_batch(
    arch: Architecture,
    weights: Sequence[Tensor],
    biases: Sequence[Tensor | None] | None = None,
    labels: Tensor | Sequence | None = None,
    *,
    input_value: float = 1.0,
    dense_centre: bool = True,
    edge_order: str = "receiver",
):
    """B networks -> one ``torch_geometric.data.Batch``, built without a per-graph loop.

    Per graph (N = ``arch.num_nodes``, E = ``arch.num_edges``, K = ``arch.edge_dim``):
    ``x [N, 1]`` (inputs: ``input_value``, others: biases), ``edge_index [2, E]`` (sender,
    receiver), ``edge_attr [E, K]``, ``node_type [N]``, ``edge_type [E]``, ``mask_hidden [N, 1]``,
    ``mask_first_layer [N, 1]`` (bool) and ``y [1, ...]`` (from ``labels[b]``, when given),
    concatenated over graphs with ``batch``/``ptr`` as PyG does. Edges are in the package's
    receiver-major order (edge ``(o, i)`` of layer ``l`` at ``offset_l + o * in + i``: the
    row-major order of the torch weight) or, with ``edge_order="sender"``, the public ScaleGMN
    code's sender-major order. The result equals ``Batch.from_data_list`` of the per-network
    ``Data`` objects, including ``get_example`` / ``to_data_list``.

    ``input_value=0.0, dense_centre=False`` reproduce the public code's CNN graphs.
    """
    Batch, Data = _import_pyg()
    if edge_order not in ("receiver", "sender"):
        raise ValueError(f"edge_order must be 'receiver' or 'sender', got {edge_order!r}")
    g = WeightGraph.from_weights(arch, weights, biases, input_value=input_value, dense_centre=dense_centre)
    B, N, E, K = g.batch_size, arch.num_nodes, arch.num_edges, g.edge.shape[-1]
    s = g.structure.to(g.node.device)
    edge, ei_local, etype = g.edge, s.edge_index, s.edge_type
    if edge_order == "sender":
        perm = s.sender_major_perm.to(g.node.device)
        edge, ei_local, etype = edge[:, perm], ei_local[:, perm], etype[perm]
    dev = g.node.device
    shift = torch.arange(B, device=dev) * N
    edge_index = (ei_local.unsqueeze(1) + shift.view(1, -1, 1)).reshape(2, B * E)
    out = Batch(_base_cls=Data)
    out.x = g.node.reshape(B * N, 1)
    out.edge_index = edge_index
    out.edge_attr = edge.reshape(B * E, K)
    out.node_type = s.node_type.repeat(B)
    out.edge_type = etype.repeat(B)
    out.mask_hidden = s.hidden_mask.view(N, 1).repeat(B, 1)
    out.mask_first_layer = s.input_mask.view(N, 1).repeat(B, 1)
    keys = ["x", "edge_index", "edge_attr", "node_type", "edge_type", "mask_hidden", "mask_first_layer"]
    sizes = {
        "x": N,
        "edge_index": E,
        "edge_attr": E,
        "node_type": N,
        "edge_type": E,
        "mask_hidden": N,
        "mask_first_layer": N,
    }
    if labels is not None:
        y = labels if isinstance(labels, Tensor) else torch.as_tensor(labels)
        if y.dim() == 0 or y.shape[0] != B:
            raise ValueError(
                f"labels must have a leading axis of length {B} (one per network), got shape {tuple(y.shape)}"
            )
        out.y = y.to(dev)
        keys.append("y")
        sizes["y"] = 1
    out.batch = torch.arange(B, device=dev).repeat_interleave(N)
    out.ptr = torch.arange(B + 1, device=dev) * N
    ar = torch.arange(B + 1)
    out._num_graphs = B
    out._slice_dict = {k: ar * sizes[k] for k in keys}
    out._inc_dict = {k: (torch.arange(B) * N if k == "edge_index" else torch.zeros(B, dtype=torch.long)) for k in keys}
    return out
