"""The amortized optimizer: ``theta' = theta + f_phi(G, theta)``, an equivariant ScaleGMN.

:func:`build_amortizer` makes a :class:`~scalegmn_ext.models.ScaleGMNEquivariant` with
``residual=True`` (one new bias per node, one weight / kernel per edge, added to the input).
``symmetric=True`` uses the architecture's group (sign for tanh, positive scale for ReLU: the
paper's ScaleGMN-B with the default bidirectional direction); ``symmetric=False`` is the
symmetry-broken ablation (GMN-B): the same model with ``symmetry="permutation"``, i.e. no
sign/scale canonicalisation, same connectivity.

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

__all__ = ["build_amortizer", "amortizer_state", "load_amortizer", "check_same_arch", "CHECKPOINT_KIND"]

CHECKPOINT_KIND = "scalegmn_ext.amortizer"


def build_amortizer(
    arch: Architecture,
    *,
    symmetric: bool = True,
    d_hid: int = 32,
    num_layers: int = 3,
    direction: str = "bidirectional",
    out_scale: float = 0.01,
    **config,
) -> ScaleGMNEquivariant:
    """The residual equivariant ScaleGMN for ``arch`` (see the module doc); extra keyword
    arguments go to :class:`~scalegmn_ext.models.ScaleGMNConfig`."""
    if not isinstance(arch, Architecture):
        raise TypeError(f"arch must be an Architecture, got {type(arch).__name__}")
    cfg = ScaleGMNConfig(
        symmetry=None if symmetric else "permutation",
        d_hid=d_hid,
        num_layers=num_layers,
        direction=direction,
        out_scale=out_scale,
        input_value=config.pop("input_value", 0.0 if arch.is_cnn else 1.0),  # the public code's choices
        **config,
    )
    return ScaleGMNEquivariant(arch, cfg, residual=True)


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
    model = ScaleGMNEquivariant(trained_for, ScaleGMNConfig(**ck["config"]), residual=True)
    model.load_state_dict(ck["model"])
    return model.eval(), ck
