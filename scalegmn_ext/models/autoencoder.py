"""Weight-space autoencoders for model merging (Boufalis et al. 2025).

The encoder is the invariant :class:`~scalegmn_ext.models.ScaleGMN`: every member of a symmetry
orbit (hidden permutations x sign flips or positive scales) gets the same latent, so the decoder
maps the whole orbit to ONE network -- the orbit's canonical representative. Networks
canonicalised this way are meant to sit in one basin, so that they merge by plain linear
interpolation. The loss is in function space (the decoded network must compute what the input
computes), so the decoder may choose any representative; nothing ties it to the input's
coordinates.

The paper's encoder reads the weights only (``probes=None``, ``full_graph`` readout). On trained
SIRENs at CPU budgets it carries almost no image information and the decoder learns the mean
digit. ``probes=P`` adds, at every node, what its neuron computes on ``P`` fixed inputs
(:class:`~scalegmn_ext.models.probes.ProbeFeatures`): equivariant like the biases, so the orbit
-> one network property stays exact, and the output nodes start from the function itself
(README, *Model merging*, for the measured difference).

Two decoders share the interface ``latent [B, k] -> (weights, biases)`` (per-layer, torch layout):

* ``"mlp"`` -- the paper's: an MLP ``k -> 2d -> 4d -> P`` (SiLU, no normalisation) onto the flat
  parameter vector (``P = 1,185`` for the 2-32-32-1 SIREN, ``4,970`` for the Small CNN), cut into
  layers in ``weight, bias`` order per layer. Its last layer holds ``4d * P`` parameters.
* ``"neuron"`` -- ours: a hypernetwork per neuron. Every output neuron ``o`` of layer ``l`` has a
  learned embedding ``u_{l,o}``; one shared MLP maps ``[latent, u_{l,o}]`` to a hidden vector and a
  per-layer linear head to that neuron's incoming weights and bias (a row of ``W_l`` and
  ``b_l[o]``). Weight sharing across neurons gives far fewer parameters (no ``4d * P`` layer) and
  the same per-layer cost for any width; the README compares both on reconstruction and barrier.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..weightspace.architecture import Architecture
from .config import ScaleGMNConfig
from .normalization import LayerScales
from .probes import ProbeFeatures, default_probe_inputs
from .scalegmn import ScaleGMN

__all__ = ["MLPDecoder", "NeuronDecoder", "ScaleGMNAutoencoder", "DECODERS", "num_parameters_of", "unflatten_params"]

DECODERS = ("mlp", "neuron")


def num_parameters_of(arch: Architecture) -> int:
    """Length of the flat parameter vector of one network of ``arch`` (weights and biases)."""
    return sum(math.prod(s.weight_shape) + s.out_features for s in arch.layers)


def unflatten_params(arch: Architecture, flat: Tensor) -> tuple[list[Tensor], list[Tensor]]:
    """``flat [B, P]`` -> per-layer weights ``[B, *weight_shape]`` and biases ``[B, out]``, layer by
    layer in ``weight, bias`` order (the order of ``nn.Module.named_parameters`` of the network)."""
    P = num_parameters_of(arch)
    if flat.dim() != 2 or flat.shape[1] != P:
        raise ValueError(f"flat must be [B, {P}] (the parameter count of {arch}), got shape {tuple(flat.shape)}")
    ws, bs, off = [], [], 0
    for s in arch.layers:
        n = math.prod(s.weight_shape)
        ws.append(flat[:, off : off + n].reshape(flat.shape[0], *s.weight_shape))
        off += n
        bs.append(flat[:, off : off + s.out_features])
        off += s.out_features
    return ws, bs


class MLPDecoder(nn.Module):
    """The paper's decoder: ``latent -> hidden[0] -> hidden[1] -> ... -> flat parameters`` with SiLU."""

    def __init__(self, arch: Architecture, latent_dim: int, hidden: Sequence[int]):
        super().__init__()
        self.arch = arch
        dims = [latent_dim, *hidden]
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.out = nn.Linear(dims[-1], num_parameters_of(arch))

    def forward(self, z: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        for lin in self.hidden:
            z = F.silu(lin(z))
        return unflatten_params(self.arch, self.out(z))


class NeuronDecoder(nn.Module):
    """Per-neuron hypernetwork decoder (see the module doc)."""

    def __init__(self, arch: Architecture, latent_dim: int, hidden: int, embed_dim: int = 32):
        super().__init__()
        self.arch = arch
        self.embed = nn.ParameterList(
            nn.Parameter(torch.randn(s.out_features, embed_dim) / math.sqrt(embed_dim)) for s in arch.layers
        )
        self.lat = nn.Linear(latent_dim, hidden)
        self.emb = nn.Linear(embed_dim, hidden, bias=False)
        self.mid = nn.Linear(hidden, hidden)
        # one head per layer: a neuron's incoming weights (in * kh * kw) and its bias
        self.heads = nn.ModuleList(nn.Linear(hidden, math.prod(s.weight_shape[1:]) + 1) for s in arch.layers)

    def forward(self, z: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        zl = self.lat(z)  # [B, h], shared by every neuron of the network
        ws, bs = [], []
        for s, e, head in zip(self.arch.layers, self.embed, self.heads):
            h = F.silu(zl.unsqueeze(1) + self.emb(e))  # [B, out, h]
            rows = head(F.silu(self.mid(h)))  # [B, out, in * k + 1]
            ws.append(rows[..., :-1].reshape(z.shape[0], *s.weight_shape))
            bs.append(rows[..., -1])
        return ws, bs


class ScaleGMNAutoencoder(nn.Module):
    """Invariant ScaleGMN encoder + decoder: networks -> canonical networks of the same architecture.

    Args:
        arch: the architecture of the input (and output) networks.
        config: the encoder's :class:`ScaleGMNConfig`; ``d_out`` is set to ``latent_dim`` and
            ``node_features`` to the number of probes. Default: the paper's (d = 128 INR, sign /
            scale per the activation, forward, 4 layers, ``full_graph`` readout).
        latent_dim: latent width (default ``config.d_hid``: 128 for INRs, 256 for CNNs in the paper).
        decoder: ``"mlp"`` (the paper's) or ``"neuron"`` (per-neuron hypernetwork).
        decoder_hidden: ``"mlp"``: hidden widths as multiples of ``d_hid`` (paper: ``(2, 4)``);
            ``"neuron"``: the first entry times ``d_hid`` is the hypernetwork width.
        probes: ``None`` (the paper: the encoder reads weights only), a number ``P`` of probe
            inputs (MLPs: points uniform in ``[-1, 1]^n_in``) or the probe inputs themselves
            (``[P, n_in]``, or ``[P, C, H, W]`` images for CNNs). Every node then also reads what
            its neuron computes on the probes (:class:`~scalegmn_ext.models.probes.ProbeFeatures`),
            which keeps the encoder exactly invariant and gives it the function directly.
    """

    def __init__(
        self,
        arch: Architecture,
        config: ScaleGMNConfig | None = None,
        *,
        latent_dim: int | None = None,
        decoder: str = "mlp",
        decoder_hidden: Sequence[int] = (2, 4),
        impl: str = "fast",
        probes: int | Tensor | None = None,
    ):
        super().__init__()
        if not isinstance(arch, Architecture):
            raise TypeError(f"arch must be an Architecture, got {type(arch).__name__}")
        if decoder not in DECODERS:
            raise ValueError(f"decoder must be one of {DECODERS}, got {decoder!r}")
        cfg = config or ScaleGMNConfig()
        if not isinstance(cfg, ScaleGMNConfig):
            raise TypeError(f"config must be a ScaleGMNConfig, got {type(cfg).__name__}")
        k = int(latent_dim or cfg.d_hid)
        if k <= 0:
            raise ValueError(f"latent_dim must be positive, got {latent_dim!r}")
        hid = [int(m) * cfg.d_hid for m in decoder_hidden]
        if not hid or min(hid) <= 0:
            raise ValueError(f"decoder_hidden must be positive multiples of d_hid, got {decoder_hidden!r}")
        self.arch, self.latent_dim, self.decoder_kind, self.decoder_hidden = arch, k, decoder, tuple(decoder_hidden)
        if probes is None or (isinstance(probes, int) and not isinstance(probes, bool) and probes == 0):
            self.probes = None
        else:
            inputs = probes if isinstance(probes, Tensor) else default_probe_inputs(arch, probes)
            self.probes = ProbeFeatures(arch, inputs.to(torch.get_default_dtype()))
        nf = 0 if self.probes is None else self.probes.num_probes
        self.encoder = ScaleGMN(arch, cfg.replace(d_out=k, node_features=nf), impl=impl)
        self.decoder = MLPDecoder(arch, k, hid) if decoder == "mlp" else NeuronDecoder(arch, k, hid[0])
        # identity until fitted (fit_scales): the encoder reads and the decoder writes weights in
        # per-layer normalised units, which keeps the orbit -> one network property exact
        self.scales = LayerScales(arch.num_layers)

    def fit_scales(self, weights, biases) -> ScaleGMNAutoencoder:
        """Normalise each layer by ``1 / std`` over these (training) networks, on the encoder's
        input and, inverted, on the decoder's output (:class:`~scalegmn_ext.models.normalization.LayerScales`).
        Returns ``self``."""
        self.scales.fit(list(weights), list(biases))
        if self.probes is not None:
            self.probes.fit(list(weights), list(biases))
        return self

    @property
    def config(self) -> ScaleGMNConfig:
        return self.encoder.config

    def encode(self, weights, biases=None) -> Tensor:
        """Invariant latent ``[B, latent_dim]`` (identical across a symmetry orbit)."""
        if biases is None:  # a WeightGraph: its features are already built, they cannot be rescaled
            if not self.scales.is_identity or self.probes is not None:
                raise ValueError(
                    "this autoencoder normalises each layer (fit_scales) or probes the networks: pass per-layer "
                    "weights and biases, not a graph"
                )
            return self.encoder(weights, biases)
        # probes see the raw weights (the real function); the message passing the normalised ones
        extra = None if self.probes is None else self.probes(weights, biases)
        return self.encoder(*self.scales.normalize(weights, biases), node_features=extra)

    def decode(self, z: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """Latent ``[B, latent_dim]`` -> the canonical networks' per-layer weights and biases."""
        if not isinstance(z, Tensor) or z.dim() != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"z must be [B, {self.latent_dim}], got {getattr(z, 'shape', type(z).__name__)}")
        return self.scales.denormalize(*self.decoder(z))

    def forward(self, weights, biases=None) -> tuple[list[Tensor], list[Tensor]]:
        return self.decode(self.encode(weights, biases))
