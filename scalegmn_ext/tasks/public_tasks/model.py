"""The ScaleGMN of a public task: built from a public YAML configuration or from our own sizes,
optionally behind a per-layer input normalisation.

:class:`TaskModel` wraps the invariant :class:`~scalegmn_ext.models.ScaleGMN` (``inr-cls``,
``cnn-gen``) or the residual :class:`~scalegmn_ext.models.ScaleGMNEquivariant` (``inr-edit``).
``normalize="layer"`` multiplies each layer's weights by one constant and its biases by another
(``1 / std`` over the training networks) before the model sees them, and divides the edited
weights by the same constants afterwards (so an edit is ``theta + f(c * theta) / c``). A scalar
per layer commutes with permutations, sign flips and positive per-neuron scales, so the model
stays exactly invariant / equivariant (mean/std normalisation per entry would not; the public
code feeds the raw weights). The constants are buffers: they travel in every checkpoint.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor, nn

from ...models.config import ScaleGMNConfig
from ...models.normalization import LayerScales
from ...models.public import public_config, read_public
from ...models.scalegmn import ScaleGMN, ScaleGMNEquivariant
from ...weightspace.architecture import Architecture
from ..train import NetworkSet
from ..zoo.format import arch_from_dict, arch_to_dict

__all__ = ["TaskModel", "build_task_model", "layer_scales", "task_model_state", "load_task_model", "CHECKPOINT_KIND"]

CHECKPOINT_KIND = "scalegmn_ext.public_task"


class TaskModel(nn.Module):
    """``net`` behind the per-layer input scales ``w_scale`` / ``b_scale`` (ones: no normalisation;
    :class:`~scalegmn_ext.models.normalization.LayerScales`)."""

    def __init__(
        self, net: ScaleGMN | ScaleGMNEquivariant, w_scale: Tensor | None = None, b_scale: Tensor | None = None
    ):
        super().__init__()
        self.net = net
        self.scales = LayerScales(net.arch.num_layers, w_scale, b_scale)
        self.equivariant = isinstance(net, ScaleGMNEquivariant)

    @property
    def arch(self) -> Architecture:
        return self.net.arch

    def forward(self, weights, biases):
        out = self.net(*self.scales.normalize(weights, biases))
        return self.scales.denormalize(*out) if self.equivariant else out


def layer_scales(train: NetworkSet) -> tuple[Tensor, Tensor]:
    """``1 / std`` of each layer's weights and of its biases over ``train`` (1 where the std is 0)."""
    sc = LayerScales(len(train.weights)).fit(train.weights, train.biases)
    return sc.w_scale.clone(), sc.b_scale.clone()


def _same_shape(a: Architecture, b: Architecture) -> bool:
    return (
        list(a.layout) == list(b.layout)
        and a.symmetry == b.symmetry
        and a.is_cnn == b.is_cnn
        and a.edge_dim == b.edge_dim
    )


def build_task_model(
    task: str,
    arch: Architecture,
    *,
    public: str | dict | None = None,
    d_hid: int | None = None,
    num_layers: int | None = None,
    direction: str | None = None,
    d_out: int | None = None,
    scale_backward: str | None = None,
    config: dict | None = None,
    w_scale: Tensor | None = None,
    b_scale: Tensor | None = None,
) -> TaskModel:
    """The task's model for networks ``arch``.

    ``public``: a public configuration (YAML path or dict): its exact structure via
    :func:`~scalegmn_ext.models.public.public_config`, with ``d_hid`` / ``num_layers`` /
    ``direction`` / ``d_out`` overriding it when given. Otherwise our own
    :class:`ScaleGMNConfig` defaults with those sizes (d_hid 32, 3 layers, forward) and ``config``
    (extra ScaleGMNConfig fields). ``d_out`` defaults to 10 classes (inr-cls) or 1 (cnn-gen)."""
    equivariant = task == "inr-edit"
    if d_out is None:
        d_out = 1 if task == "cnn-gen" else 10
    if public is not None:
        conf = read_public(public)
        a = conf.get("scalegmn_args", {})
        if bool(a.get("equivariant", False)) != equivariant:
            kind = "an equivariant (editing)" if a.get("equivariant") else "an invariant"
            raise ValueError(
                f"the public configuration is {kind} model; the {task} task needs "
                f"{'ScaleGMN_equiv (configs/mnist_editing)' if equivariant else 'an invariant ScaleGMN'}"
            )
        layout = (conf.get("data") or {}).get("layer_layout") or a.get("layer_layout")
        if layout is not None and list(layout) != list(arch.layout):
            raise ValueError(
                f"the public configuration is for networks with layer_layout {list(layout)}, but the task's "
                f"networks are {arch} (layout {list(arch.layout)})"
            )
        overrides = {"d_out": d_out} if not equivariant else {}
        if d_hid is not None:
            overrides["d_hid"] = d_hid
        if num_layers is not None:
            overrides["num_layers"] = num_layers
        if direction is not None:
            overrides["direction"] = direction
        overrides.update(config or {})
        spec = public_config(conf, arch, scale_backward=scale_backward, **overrides)
        cfg = spec.config
    else:
        fields = {
            "d_hid": d_hid or 32,
            "num_layers": num_layers or 3,
            "direction": direction or "forward",
            "d_out": d_out,
            "input_value": 0.0 if arch.is_cnn else 1.0,  # the public code's choices
        }
        if scale_backward is not None:
            fields["scale_backward"] = scale_backward
        fields.update(config or {})
        cfg = ScaleGMNConfig(**fields)
    # (ScaleGMN itself refuses a symmetry that does not match the networks' group, naming both)
    net = ScaleGMNEquivariant(arch, cfg, residual=True) if equivariant else ScaleGMN(arch, cfg)
    return TaskModel(net, w_scale, b_scale)


def task_model_state(model: nn.Module, task: str, **extra) -> dict:
    """What a checkpoint needs to rebuild the model (the Trainer's ``extra_state``)."""
    m = getattr(model, "module", model)
    return {
        "kind": CHECKPOINT_KIND,
        "task": task,
        "arch": arch_to_dict(m.arch),
        "config": dataclasses.asdict(m.net.config),
        **extra,
    }


def load_task_model(path: str, arch: Architecture | None = None, *, weights: str | None = None, map_location="cpu"):
    """``(model, checkpoint)`` from a task run's ``checkpoint.pt``; ``weights`` (e.g. the run's
    ``best.pt``) replaces the checkpoint's parameters. ``arch``: the networks it will be applied
    to (must match the architecture it was trained for)."""
    ck = torch.load(path, map_location=map_location, weights_only=False)
    if not isinstance(ck, dict) or ck.get("kind") != CHECKPOINT_KIND:
        raise ValueError(
            f"{path} is not a scalegmn_ext public-task checkpoint (kind={ck.get('kind') if isinstance(ck, dict) else None!r})"
        )
    trained_for = arch_from_dict(ck["arch"], where=f"{path}: arch")
    if arch is not None and not _same_shape(arch, trained_for):
        raise ValueError(f"{path} was trained on networks {trained_for}, not {arch}")
    cfg = ScaleGMNConfig(**ck["config"])
    net = (
        ScaleGMNEquivariant(trained_for, cfg, residual=True) if ck["task"] == "inr-edit" else ScaleGMN(trained_for, cfg)
    )
    model = TaskModel(net)
    sd = ck["model"] if weights is None else torch.load(weights, map_location=map_location, weights_only=True)
    model.load_state_dict(sd)
    return model.eval(), ck
