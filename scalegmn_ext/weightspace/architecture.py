"""Architecture descriptions of the *input* networks that scalegmn_ext learns on.

An :class:`Architecture` fixes everything that all networks of a batch share: the layer
sequence (dense or 2-D convolution), widths, kernel sizes, the activation and therefore the
symmetry group that the activation admits. It is the static half of a weight-space batch; the
weights themselves are per-network tensors with a leading batch axis.

Supported shapes (exactly what the graph builder can represent):

* MLPs: ``dense`` layers only (SIREN/INR, ReLU, tanh, ... MLPs of any depth and width).
* CNNs: one or more ``conv`` layers, then global average pooling, then zero or more ``dense``
  layers (the Small CNN Zoo shape). Every channel becomes one graph node; the pooling step adds
  no parameters and commutes with per-channel permutation, sign flips and positive scaling.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Sequence

__all__ = ["Symmetry", "LayerSpec", "Architecture", "ACTIVATION_SYMMETRY"]


class Symmetry(str, enum.Enum):
    """Per-hidden-neuron symmetry group on top of permutations."""

    PERMUTATION = "permutation"  # neurons may be permuted, nothing else
    SIGN = "sign"  # odd activations (tanh, sine): neuron i may be multiplied by q_i in {+1, -1}
    SCALE = "scale"  # positively homogeneous activations (ReLU): q_i > 0


#: Which symmetry each supported activation admits (besides permutation).
ACTIVATION_SYMMETRY = {
    "relu": Symmetry.SCALE,
    "leaky_relu": Symmetry.SCALE,
    "tanh": Symmetry.SIGN,
    "sine": Symmetry.SIGN,
    "identity": Symmetry.SCALE,  # linear nets: any positive (indeed any non-zero) rescaling
    "sigmoid": Symmetry.PERMUTATION,
    "gelu": Symmetry.PERMUTATION,
    "silu": Symmetry.PERMUTATION,
}


@dataclasses.dataclass(frozen=True)
class LayerSpec:
    """One parametrised layer: ``dense`` (weight ``[out, in]``) or ``conv`` (``[out, in, kh, kw]``)."""

    kind: str
    in_features: int
    out_features: int
    kernel_size: tuple[int, int] = (1, 1)
    stride: int = 1
    padding: int = 0
    bias: bool = True

    def __post_init__(self) -> None:
        if self.kind not in ("dense", "conv"):
            raise ValueError(f"LayerSpec.kind must be 'dense' or 'conv', got {self.kind!r}")
        for name in ("in_features", "out_features"):
            v = getattr(self, name)
            if not isinstance(v, int) or v <= 0:
                raise ValueError(f"LayerSpec.{name} must be a positive int, got {v!r}")
        ks = tuple(int(k) for k in self.kernel_size)
        if len(ks) != 2 or min(ks) <= 0:
            raise ValueError(f"LayerSpec.kernel_size must be two positive ints, got {self.kernel_size!r}")
        if self.kind == "dense" and ks != (1, 1):
            raise ValueError("LayerSpec.kernel_size must be (1, 1) for a dense layer")
        object.__setattr__(self, "kernel_size", ks)
        if self.stride <= 0 or self.padding < 0:
            raise ValueError(f"LayerSpec stride must be > 0 and padding >= 0, got {self.stride}, {self.padding}")

    @property
    def is_conv(self) -> bool:
        return self.kind == "conv"

    @property
    def weight_shape(self) -> tuple[int, ...]:
        """Shape of one network's weight for this layer (torch layout, no batch axis)."""
        if self.is_conv:
            return (self.out_features, self.in_features, *self.kernel_size)
        return (self.out_features, self.in_features)

    @property
    def num_edges(self) -> int:
        return self.out_features * self.in_features


@dataclasses.dataclass(frozen=True)
class Architecture:
    """A network architecture shared by a batch of networks.

    Args:
        layers: the parametrised layers in order; consecutive widths must chain.
        activation: hidden activation, one of :data:`ACTIVATION_SYMMETRY`. The last layer has
            no activation (logits / INR output).
        w0: frequency of the sine activation, ``sin(w0 * z)`` (SIREN; also on the first layer).
        output_offset: constant added to the network output (the published MNIST-INR zoo adds 0.5).
        symmetry: override the group derived from the activation (e.g. ``"permutation"`` to
            ignore the sign symmetry of a tanh net). Must be a subgroup of what the activation admits.
    """

    layers: tuple[LayerSpec, ...]
    activation: str = "relu"
    w0: float = 30.0
    output_offset: float = 0.0
    symmetry: Symmetry | None = None

    def __post_init__(self) -> None:
        layers = tuple(self.layers)
        object.__setattr__(self, "layers", layers)
        if not layers:
            raise ValueError("Architecture.layers must contain at least one layer")
        if self.activation not in ACTIVATION_SYMMETRY:
            raise ValueError(
                f"Architecture.activation must be one of {sorted(ACTIVATION_SYMMETRY)}, got {self.activation!r}"
            )
        seen_dense = False
        for i, layer in enumerate(layers):
            if not isinstance(layer, LayerSpec):
                raise TypeError(f"Architecture.layers[{i}] must be a LayerSpec, got {type(layer).__name__}")
            if i > 0 and layer.in_features != layers[i - 1].out_features:
                raise ValueError(
                    f"Architecture.layers[{i}].in_features={layer.in_features} does not match "
                    f"layers[{i - 1}].out_features={layers[i - 1].out_features}"
                )
            if layer.is_conv and seen_dense:
                raise ValueError(
                    f"Architecture.layers[{i}] is a conv layer after a dense layer; the graph builder "
                    "supports conv layers, then global average pooling, then dense layers"
                )
            seen_dense |= not layer.is_conv
        allowed = ACTIVATION_SYMMETRY[self.activation]
        sym = allowed if self.symmetry is None else Symmetry(self.symmetry)
        if sym != Symmetry.PERMUTATION and sym != allowed:
            raise ValueError(
                f"Architecture.symmetry={sym.value!r} is not admitted by activation {self.activation!r} "
                f"(it admits {allowed.value!r} or 'permutation')"
            )
        object.__setattr__(self, "symmetry", sym)

    # ----- constructors -------------------------------------------------------------------
    @classmethod
    def mlp(cls, widths: Sequence[int], activation: str = "relu", **kw) -> Architecture:
        """An MLP with the given layer widths ``[n_0, n_1, ..., n_L]``."""
        widths = [int(w) for w in widths]
        if len(widths) < 2:
            raise ValueError(f"widths must list at least input and output width, got {widths}")
        return cls(tuple(LayerSpec("dense", a, b) for a, b in zip(widths[:-1], widths[1:])), activation, **kw)

    @classmethod
    def siren(
        cls, widths: Sequence[int] = (2, 32, 32, 1), w0: float = 30.0, output_offset: float = 0.5
    ) -> Architecture:
        """The SIREN INR of the published MNIST-INR zoo (2->32->32->1, sin(30 z), output + 0.5)."""
        return cls.mlp(widths, activation="sine", w0=w0, output_offset=output_offset)

    @classmethod
    def cnn(
        cls,
        in_channels: int = 1,
        channels: Sequence[int] = (16, 16, 16),
        kernel_size: int | Sequence[int] = 3,
        stride: int = 2,
        padding: int = 0,
        dense: Sequence[int] = (10,),
        activation: str = "relu",
    ) -> Architecture:
        """Conv stack -> global average pooling -> dense stack. Default: the Small CNN Zoo net."""
        ks = [kernel_size] * len(channels) if isinstance(kernel_size, int) else list(kernel_size)
        if len(ks) != len(channels):
            raise ValueError(f"kernel_size lists {len(ks)} sizes for {len(channels)} conv layers")
        layers, c = [], int(in_channels)
        for out, k in zip(channels, ks):
            k2 = (k, k) if isinstance(k, int) else tuple(k)
            layers.append(LayerSpec("conv", c, int(out), k2, stride, padding))
            c = int(out)
        for out in dense:
            layers.append(LayerSpec("dense", c, int(out)))
            c = int(out)
        return cls(tuple(layers), activation)

    @classmethod
    def small_cnn_zoo(cls, activation: str = "relu", in_channels: int = 1) -> Architecture:
        """Unterthiner et al.'s Small CNN Zoo net: 3x conv3x3/s2 (16 ch), GAP, dense 16->10."""
        return cls.cnn(in_channels=in_channels, activation=activation)

    # ----- derived sizes ------------------------------------------------------------------
    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def layout(self) -> tuple[int, ...]:
        """Nodes per graph layer: ``(n_0, n_1, ..., n_L)``; channels for conv layers."""
        return (self.layers[0].in_features,) + tuple(l.out_features for l in self.layers)

    @property
    def num_nodes(self) -> int:
        return sum(self.layout)

    @property
    def num_edges(self) -> int:
        return sum(l.num_edges for l in self.layers)

    @property
    def is_cnn(self) -> bool:
        return self.layers[0].is_conv

    @property
    def max_kernel_size(self) -> tuple[int, int]:
        return (max(l.kernel_size[0] for l in self.layers), max(l.kernel_size[1] for l in self.layers))

    @property
    def edge_dim(self) -> int:
        """Edge feature width: ``max_kh * max_kw`` (1 for MLPs)."""
        kh, kw = self.max_kernel_size
        return kh * kw

    @property
    def num_params(self) -> int:
        n = 0
        for l in self.layers:
            n += l.num_edges * l.kernel_size[0] * l.kernel_size[1] + (l.out_features if l.bias else 0)
        return n

    def __str__(self) -> str:
        parts = []
        for l in self.layers:
            parts.append(
                f"conv{l.kernel_size[0]}x{l.kernel_size[1]}/{l.stride}({l.out_features})"
                if l.is_conv
                else f"dense({l.out_features})"
            )
        return f"{self.layout[0]}->" + "->".join(parts) + f" [{self.activation}, {self.symmetry.value}]"
