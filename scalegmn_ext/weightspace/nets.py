"""Plain ``torch.nn`` versions of the networks that scalegmn_ext learns on.

* :class:`Sine` -- the SIREN activation ``sin(w0 * z)``.
* :class:`OutputOffset` -- adds a constant to the network output (the MNIST-INR zoo adds 0.5).
* :class:`SIREN` -- the INR of the published MNIST-INR zoo; parameters ``layers.{i}.weight/bias``.
* :class:`SmallCNN` -- the Small CNN Zoo net (3x conv3x3/s2, GAP, linear).
* :func:`build_module` -- an ``nn.Sequential`` for any :class:`~scalegmn_ext.weightspace.architecture.Architecture`.

The forward conventions match :mod:`scalegmn_ext.weightspace.architecture`: MLPs apply the activation after every
layer but the last; CNNs apply it after every conv layer, then global average pooling, then the
dense layers with the activation between them (none after the last); the output gets
``+ arch.output_offset``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .architecture import ACTIVATION_SYMMETRY, Architecture

__all__ = ["Sine", "OutputOffset", "SIREN", "SmallCNN", "make_activation", "build_module"]


class Sine(nn.Module):
    """``sin(w0 * z)`` (the SIREN activation)."""

    def __init__(self, w0: float = 30.0) -> None:
        super().__init__()
        self.w0 = float(w0)

    def forward(self, x: Tensor) -> Tensor:
        return torch.sin(self.w0 * x)

    def extra_repr(self) -> str:
        return f"w0={self.w0}"


class OutputOffset(nn.Module):
    """Adds a constant ``offset`` to its input (the network output)."""

    def __init__(self, offset: float) -> None:
        super().__init__()
        self.offset = float(offset)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.offset

    def extra_repr(self) -> str:
        return f"offset={self.offset}"


def make_activation(name: str, w0: float = 30.0) -> nn.Module:
    """A fresh activation module for an :data:`~scalegmn_ext.weightspace.architecture.ACTIVATION_SYMMETRY` name."""
    if name == "relu":
        return nn.ReLU()
    if name == "leaky_relu":
        return nn.LeakyReLU()  # negative_slope=0.01, as F.leaky_relu
    if name == "tanh":
        return nn.Tanh()
    if name == "sine":
        return Sine(w0)
    if name == "identity":
        return nn.Identity()
    if name == "sigmoid":
        return nn.Sigmoid()
    if name == "gelu":
        return nn.GELU()
    if name == "silu":
        return nn.SiLU()
    raise ValueError(f"activation must be one of {sorted(ACTIVATION_SYMMETRY)}, got {name!r}")


class SIREN(nn.Module):
    """SIREN INR: ``sin(w0 * z)`` after every hidden layer (incl. the first), output ``+ output_offset``.

    Parameters are ``layers.{i}.weight`` / ``layers.{i}.bias`` of ``nn.Linear`` layers. Init as in
    Sitzmann et al.: first layer ``U(-1/in, 1/in)``, others ``U(-sqrt(6/in)/w0, sqrt(6/in)/w0)``;
    biases keep the ``nn.Linear`` default unless ``zero_bias=True``.
    """

    def __init__(
        self,
        widths: Sequence[int] = (2, 32, 32, 1),
        w0: float = 30.0,
        output_offset: float = 0.5,
        zero_bias: bool = False,
    ) -> None:
        super().__init__()
        widths = [int(w) for w in widths]
        if len(widths) < 2 or min(widths) <= 0:
            raise ValueError(f"SIREN widths must list at least two positive widths, got {widths}")
        self.widths = tuple(widths)
        self.w0 = float(w0)
        self.output_offset = float(output_offset)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        with torch.no_grad():
            for i, layer in enumerate(self.layers):
                fan_in = layer.in_features
                bound = 1.0 / fan_in if i == 0 else math.sqrt(6.0 / fan_in) / self.w0
                layer.weight.uniform_(-bound, bound)
                if zero_bias:
                    layer.bias.zero_()

    @property
    def arch(self) -> Architecture:
        return Architecture.siren(self.widths, w0=self.w0, output_offset=self.output_offset)

    def forward(self, x: Tensor) -> Tensor:
        n = len(self.layers)
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < n - 1:
                x = torch.sin(self.w0 * x)
        return x + self.output_offset if self.output_offset != 0.0 else x

    def extra_repr(self) -> str:
        return f"w0={self.w0}, output_offset={self.output_offset}"


class SmallCNN(nn.Module):
    """The Small CNN Zoo net: ``len(channels)`` x (conv -> act), global average pool, linear.

    Children, in forward order: ``features`` (``nn.Sequential`` of Conv2d/activation),
    ``pool`` (``AdaptiveAvgPool2d(1)``), ``flatten``, ``classifier`` (``nn.Linear``).
    """

    def __init__(
        self,
        activation: str = "relu",
        in_channels: int = 1,
        channels: Sequence[int] = (16, 16, 16),
        kernel_size: int = 3,
        stride: int = 2,
        num_classes: int = 10,
        padding: int = 0,
        w0: float = 30.0,
    ) -> None:
        super().__init__()
        if activation not in ACTIVATION_SYMMETRY:
            raise ValueError(f"SmallCNN activation must be one of {sorted(ACTIVATION_SYMMETRY)}, got {activation!r}")
        if len(channels) == 0:
            raise ValueError("SmallCNN channels must list at least one conv layer")
        self.activation = activation
        mods: list[nn.Module] = []
        c = int(in_channels)
        for out in channels:
            mods.append(nn.Conv2d(c, int(out), kernel_size, stride=stride, padding=padding))
            mods.append(make_activation(activation, w0))
            c = int(out)
        self.features = nn.Sequential(*mods)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(c, int(num_classes))

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.flatten(self.pool(self.features(x))))


def build_module(
    arch: Architecture, *, dtype: torch.dtype | None = None, device: torch.device | str | None = None
) -> nn.Sequential:
    """A plain ``nn.Sequential`` computing a network of architecture ``arch`` (default init).

    Layout: ``Linear``/``Conv2d`` layers with fresh activation modules after them as the
    conventions require, ``AdaptiveAvgPool2d(1)`` + ``Flatten()`` between the conv and the dense
    layers, and a final :class:`OutputOffset` if ``arch.output_offset != 0``.
    """
    if not isinstance(arch, Architecture):
        raise TypeError(f"arch must be an Architecture, got {type(arch).__name__}")
    mods: list[nn.Module] = []
    n = arch.num_layers
    pooled = False
    for i, spec in enumerate(arch.layers):
        if spec.is_conv:
            mods.append(
                nn.Conv2d(
                    spec.in_features,
                    spec.out_features,
                    spec.kernel_size,
                    stride=spec.stride,
                    padding=spec.padding,
                    bias=spec.bias,
                    dtype=dtype,
                    device=device,
                )
            )
            mods.append(make_activation(arch.activation, arch.w0))
        else:
            if arch.is_cnn and not pooled:
                mods += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
                pooled = True
            mods.append(nn.Linear(spec.in_features, spec.out_features, bias=spec.bias, dtype=dtype, device=device))
            if i < n - 1:
                mods.append(make_activation(arch.activation, arch.w0))
    if arch.is_cnn and not pooled:
        mods += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    if arch.output_offset != 0.0:
        mods.append(OutputOffset(arch.output_offset))
    return nn.Sequential(*mods)
