"""Probe features: what every neuron computes on a fixed set of inputs, as equivariant node features.

A ScaleGMN that reads only raw weights must rediscover the function from them. On trained SIRENs
it hardly does: the invariant encoder's latent varies across networks by a few per mille of its
size, and an autoencoder built on it decodes the mean digit for every input (README, *Model
merging*). The function is, however, cheap to observe and keeps every symmetry:

* the pre-activation ``z_i(x) = W_i h(x) + b_i`` of hidden neuron ``i`` on an input ``x``
  permutes with the neuron and is multiplied by its ``q_i`` under a sign flip (odd activations)
  or a positive scale (ReLU) -- exactly as the bias ``b_i``, the node's ordinary feature, is;
* the output neurons' values and the inputs themselves are invariant, like the I/O nodes' states.

So ``P`` probe inputs give every node ``P`` extra features that the symmetric message passing
handles like the bias (``ScaleGMNConfig.node_features = P``): the model stays exactly invariant /
equivariant, and the output nodes start from the network's outputs on the probes. Conv channels
take their pre-activation map averaged over space (also ``q_i``-equivariant).

Each graph layer's features are multiplied by one positive constant (``1 / std`` over training
networks, :meth:`ProbeFeatures.fit`); a positive constant commutes with every group element, so
the symmetry stays exact (as for :class:`~scalegmn_ext.models.normalization.LayerScales`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..weightspace.architecture import Architecture
from ..weightspace.functional import preactivations
from ..weightspace.validation import check_weights
from .normalization import inverse_std

__all__ = ["ProbeFeatures", "default_probe_inputs"]


def default_probe_inputs(arch: Architecture, num: int, seed: int = 0) -> Tensor:
    """``num`` probe inputs for an MLP: points uniform in ``[-1, 1]^n_in`` (the INR coordinate
    box) from a fixed generator. CNNs need images from the data (pass ``inputs`` explicitly)."""
    if not isinstance(arch, Architecture):
        raise TypeError(f"arch must be an Architecture, got {type(arch).__name__}")
    if isinstance(num, bool) or not isinstance(num, int) or num < 1:
        raise ValueError(f"the number of probes must be a positive int, got {num!r}")
    if arch.is_cnn:
        raise ValueError(
            f"{arch} is a CNN: pass probe inputs [P, {arch.layout[0]}, H, W] (images from its data); "
            "there is no default for images"
        )
    g = torch.Generator().manual_seed(int(seed))
    return torch.rand(num, arch.layout[0], generator=g, dtype=torch.float64) * 2 - 1


class ProbeFeatures(nn.Module):
    """Per-node probe features ``[B, N, P]`` of networks of ``arch`` on ``inputs``.

    Args:
        arch: the networks' architecture.
        inputs: ``[P, n_in]`` for an MLP or ``[P, C, H, W]`` for a CNN (stored as a buffer, so it
            travels in checkpoints).

    Node order is the graph's (:func:`scalegmn_ext.weights_to_graph`): input nodes (the probe
    inputs' values; a channel's spatial mean for CNNs), then each layer's neurons (their
    pre-activations), the output neurons last (the outputs without ``output_offset``).
    """

    def __init__(self, arch: Architecture, inputs: Tensor):
        super().__init__()
        if not isinstance(arch, Architecture):
            raise TypeError(f"arch must be an Architecture, got {type(arch).__name__}")
        want = f"[P, {arch.layout[0]}, H, W]" if arch.is_cnn else f"[P, {arch.layout[0]}]"
        nd = 4 if arch.is_cnn else 2
        if not isinstance(inputs, Tensor) or not inputs.is_floating_point():
            raise TypeError(f"probe inputs must be a floating-point Tensor {want}, got {type(inputs).__name__}")
        if inputs.dim() != nd or inputs.shape[1] != arch.layout[0] or inputs.shape[0] < 1:
            raise ValueError(f"probe inputs must be {want} with P >= 1 for {arch}, got shape {tuple(inputs.shape)}")
        if not bool(torch.isfinite(inputs).all()):
            raise ValueError("probe inputs must be finite")
        self.arch = arch
        self.register_buffer("inputs", inputs.detach().clone())
        self.register_buffer("scale", torch.ones(len(arch.layout), dtype=torch.float64))

    @property
    def num_probes(self) -> int:
        return int(self.inputs.shape[0])

    def _raw(self, weights, biases) -> tuple[list[Tensor], bool]:
        """Unscaled per-graph-layer features ``[B, n_k, P]`` and whether the input was batched."""
        ws, bs, batched = check_weights(weights, biases, self.arch, arch_required=True)  # batch axis added
        x = self.inputs.to(dtype=ws[0].dtype, device=ws[0].device)
        B = ws[0].shape[0]
        first = x.mean(dim=(2, 3)) if self.arch.is_cnn else x  # [P, n_in]
        feats = [first.t().unsqueeze(0).expand(B, -1, -1)]
        feats += [z.transpose(1, 2) for z in preactivations(self.arch, ws, bs, x)]
        return feats, batched

    def forward(self, weights: Sequence[Tensor], biases: Sequence[Tensor] | None) -> Tensor:
        """``[B, N, P]`` (``[N, P]`` for one unbatched network), each graph layer times its scale."""
        feats, batched = self._raw(weights, biases)
        out = torch.cat([f * self.scale[k].to(f.dtype) for k, f in enumerate(feats)], dim=1)
        return out if batched else out[0]

    @torch.no_grad()
    def fit(self, weights: Sequence[Tensor], biases: Sequence[Tensor], chunk: int = 1024) -> ProbeFeatures:
        """Set each graph layer's scale to ``1 / std`` of its features over these (training)
        networks, evaluated ``chunk`` networks at a time (1 where the std is 0 or not finite).
        Returns ``self``."""
        ws, bs, batched = check_weights(weights, biases, self.arch, arch_required=True)
        if not batched:
            raise ValueError("fit needs a batch of networks (weights [B, ...] per layer)")
        n = len(self.arch.layout)
        s1, s2, cnt = [0.0] * n, [0.0] * n, [0] * n
        for i in range(0, ws[0].shape[0], chunk):
            feats, _ = self._raw([w[i : i + chunk] for w in ws], [b[i : i + chunk] for b in bs])
            for k, f in enumerate(feats):
                f = f.double()
                s1[k] += float(f.sum())
                s2[k] += float(f.pow(2).sum())
                cnt[k] += f.numel()
        out = []
        for k in range(n):
            var = (s2[k] - s1[k] ** 2 / cnt[k]) / max(cnt[k] - 1, 1) if cnt[k] else 0.0
            out.append(inverse_std(var**0.5 if var > 0 else 0.0))
        self.scale.copy_(torch.tensor(out, dtype=torch.float64))
        return self

    def extra_repr(self) -> str:
        return f"probes={self.num_probes}, inputs={tuple(self.inputs.shape)}"
