"""The amortized optimizer: ``theta' = theta + f_phi(G, theta)``, an equivariant ScaleGMN.

:func:`build_amortizer` makes a :class:`~scalegmn_ext.models.ScaleGMNEquivariant` with
``residual=True`` (one new bias per node, one weight / kernel per edge, added to the input).
``symmetric=True`` uses the architecture's group (sign for tanh, positive scale for ReLU: the
paper's ScaleGMN-B with the default bidirectional direction); ``symmetric=False`` is the
symmetry-broken ablation (GMN-B): the same model with ``symmetry="permutation"``, i.e. no
sign/scale canonicalisation, same connectivity.

``input_norm="layer"`` divides every layer's weights and biases by the layer's weight RMS
(one scalar per network and layer) before the metanetwork sees them; the update is added
unscaled, ``theta' = theta + f(theta / s)`` (:class:`LayerNormalizedAmortizer`). Why: zoo networks span
three orders of magnitude of weight scale (init std 1e-3 ... 0.5), and the symmetric model's
canonicalisers see small inputs only at second order (``rho(x) + rho(-x) = 2 rho(0) + O(x^2)``)
and its messages multiply node and edge states, so small networks get vanishing, large ones
exploding signals. The RMS is invariant under permutations and sign flips, so the model stays
exactly equivariant for the ``sign`` and ``permutation`` groups (``f(g theta / s) = g f(theta /
s)``, and ``g`` is linear); it is *not* invariant under
per-neuron positive scaling, so it is refused for the ``scale`` group (ReLU, symmetric).

Checkpoints (written by the Trainer with :func:`amortizer_state` as ``extra_state``) rebuild
themselves with :func:`load_amortizer`, which refuses networks of another architecture.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from ...models.config import ScaleGMNConfig
from ...models.scalegmn import ScaleGMNEquivariant
from ...weightspace.architecture import Architecture
from ..zoo.format import arch_from_dict, arch_to_dict

__all__ = [
    "LayerNormalizedAmortizer",
    "INPUT_NORMS",
    "build_amortizer",
    "amortizer_state",
    "load_amortizer",
    "check_same_arch",
    "CHECKPOINT_KIND",
]

CHECKPOINT_KIND = "scalegmn_ext.amortizer"

#: Input normalisations of :func:`build_amortizer` (see the module doc).
INPUT_NORMS = ("none", "layer")


class LayerNormalizedAmortizer(ScaleGMNEquivariant):
    """``theta' = theta + f(theta / s)`` with ``s_l`` the weight RMS of layer ``l`` of each
    network (see the module doc); the same parameters as ``ScaleGMNEquivariant``. The update is
    not multiplied back by ``s``: a network with tiny weights needs an update of the size the
    task needs, not of its own size (on the tanh MLP zoo the relative form lost 1.1 accuracy
    points, the absolute one gained 0.2 against no normalisation, 300 steps)."""

    #: added to the squared RMS so that an all-zero layer divides by 1e-6 instead of 0 (the RMS
    #: stays invariant, so this costs no exactness).
    EPS2 = 1e-12

    def __init__(self, arch: Architecture, config: ScaleGMNConfig):
        super().__init__(arch, config, residual=False)
        if self.symmetry == "scale":
            raise ValueError(
                "input_norm='layer' is not invariant under the positive per-neuron scaling of "
                f"{arch.activation} networks; use input_norm='none' (or symmetric=False) for {arch}"
            )

    def layer_scales(self, weights) -> list:
        """Per layer, ``[B]`` weight RMS (``weights`` batched per-layer tensors)."""
        return [(w.flatten(1).pow(2).mean(1) + self.EPS2).sqrt() for w in weights]

    def forward(self, weights, biases=None):
        if isinstance(weights, torch.Tensor) or not isinstance(weights, (list, tuple)) or biases is None:
            raise TypeError("weights and biases must be per-layer lists of tensors (batched or one network)")
        batched = len(weights) > 0 and weights[0].dim() == len(self.arch.layers[0].weight_shape) + 1
        if not batched:
            ws, bs = self.forward([w.unsqueeze(0) for w in weights], [b.unsqueeze(0) for b in biases])
            return [w[0] for w in ws], [b[0] for b in bs]
        if len(weights) != len(self.arch.layers) or len(biases) != len(weights):
            raise ValueError(
                f"expected {len(self.arch.layers)} weight and bias tensors for {self.arch}, "
                f"got {len(weights)} and {len(biases)}"
            )
        s = self.layer_scales(weights)

        def view(t, v):  # [B] -> broadcastable to t
            return v.view(-1, *([1] * (t.dim() - 1)))

        dw, db = super().forward(
            [w / view(w, v) for w, v in zip(weights, s)], [b / view(b, v) for b, v in zip(biases, s)]
        )
        return [w + d for w, d in zip(weights, dw)], [b + d for b, d in zip(biases, db)]


def build_amortizer(
    arch: Architecture,
    *,
    symmetric: bool = True,
    d_hid: int = 32,
    num_layers: int = 3,
    direction: str = "bidirectional",
    out_scale: float = 0.01,
    input_norm: str = "none",
    **config,
) -> ScaleGMNEquivariant:
    """The residual equivariant ScaleGMN for ``arch`` (see the module doc); extra keyword
    arguments go to :class:`~scalegmn_ext.models.ScaleGMNConfig`."""
    if not isinstance(arch, Architecture):
        raise TypeError(f"arch must be an Architecture, got {type(arch).__name__}")
    if input_norm not in INPUT_NORMS:
        raise ValueError(f"input_norm must be one of {INPUT_NORMS}, got {input_norm!r}")
    cfg = ScaleGMNConfig(
        symmetry=None if symmetric else "permutation",
        d_hid=d_hid,
        num_layers=num_layers,
        direction=direction,
        out_scale=out_scale,
        input_value=config.pop("input_value", 0.0 if arch.is_cnn else 1.0),  # the public code's choices
        **config,
    )
    return _make(arch, cfg, input_norm)


def _make(arch: Architecture, cfg: ScaleGMNConfig, input_norm: str) -> ScaleGMNEquivariant:
    if input_norm == "layer":
        return LayerNormalizedAmortizer(arch, cfg)
    return ScaleGMNEquivariant(arch, cfg, residual=True)


def input_norm_of(model: nn.Module) -> str:
    """The ``input_norm`` that :func:`build_amortizer` was given for ``model``."""
    return "layer" if isinstance(_unwrap(model), LayerNormalizedAmortizer) else "none"


def _unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model)  # DistributedDataParallel keeps the model as .module


def amortizer_state(model: nn.Module, **extra) -> dict:
    """What a checkpoint needs to rebuild ``model`` (pass as the Trainer's ``extra_state``)."""
    m = _unwrap(model)
    return {
        "kind": CHECKPOINT_KIND,
        "arch": arch_to_dict(m.arch),
        "config": dataclasses.asdict(m.config),
        "symmetric": m.config.symmetry != "permutation",
        "input_norm": input_norm_of(m),
        **extra,
    }


def check_same_arch(
    trained_for: Architecture, arch: Architecture, where: str, what: str = "the given networks"
) -> None:
    """A ValueError naming both architectures unless they are equal."""
    if arch != trained_for:
        raise ValueError(
            f"{where} was trained for networks {trained_for}, but {what} are {arch}: an amortizer "
            "works only on the architecture of its zoo; train one for this zoo (scalegmn-ext amortize train)"
        )


def load_amortizer(path: str, arch: Architecture | None = None, *, map_location="cpu") -> tuple[nn.Module, dict]:
    """``(model, checkpoint)`` from a Trainer checkpoint written with :func:`amortizer_state`;
    ``arch`` (optional) must be the architecture it was trained for."""
    ck = torch.load(path, map_location=map_location, weights_only=False)
    if not isinstance(ck, dict) or ck.get("kind") != CHECKPOINT_KIND:
        kind = ck.get("kind") if isinstance(ck, dict) else None
        raise ValueError(f"{path} is not a scalegmn_ext amortizer checkpoint (kind={kind!r})")
    trained_for = arch_from_dict(ck["arch"], where=f"{path}: arch")
    if arch is not None:
        check_same_arch(trained_for, arch, f"the amortizer {path}")
    model = _make(trained_for, ScaleGMNConfig(**ck["config"]), ck.get("input_norm", "none"))
    model.load_state_dict(ck["model"])
    return model.eval(), ck
