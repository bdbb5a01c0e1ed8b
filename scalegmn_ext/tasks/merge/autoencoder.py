"""Training and using the canonicalising autoencoder (:class:`~scalegmn_ext.models.ScaleGMNAutoencoder`).

Losses are in function space, evaluated for the whole batch of networks with the batched
functional forward (no Python loop over networks):

* INRs -- :class:`INRRenderLoss`: MSE between the images that the decoded and the input INR
  render on the 28x28 grid (the paper's loss; the target is the input INR, not the pixels).
* CNNs -- :class:`DistillationLoss`: KL divergence between the class distributions of the input
  (teacher) and decoded (student) CNN at temperature T = 0.6, scaled by T^2, on a batch of
  ``n_images`` images sampled afresh at every call (the paper uses the whole test set every step;
  ``benchmarks/bench_merge.py`` measures what the sample costs and saves).

:func:`canonicalize` encodes and decodes networks in batches; :func:`reconstruction_quality`
scores the result (PSNR for INRs, accuracy kept for CNNs).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...weightspace.architecture import Architecture
from ...weightspace.functional import forward, render_inr
from ..fit import psnr
from ..zoo.format import arch_from_dict, arch_to_dict

__all__ = [
    "INRRenderLoss",
    "DistillationLoss",
    "canonicalize",
    "reconstruction_quality",
    "autoencoder_state",
    "load_autoencoder",
]

CHECKPOINT_KIND = "scalegmn_ext.autoencoder"


def autoencoder_state(model: nn.Module) -> dict:
    """What a checkpoint needs to rebuild ``model`` (pass as the Trainer's ``extra_state``)."""
    ae = _unwrap(model)
    return {
        "kind": CHECKPOINT_KIND,
        "arch": arch_to_dict(ae.arch),
        "encoder_config": dataclasses.asdict(ae.config),
        "latent_dim": ae.latent_dim,
        "decoder": ae.decoder_kind,
        "decoder_hidden": list(ae.decoder_hidden),
        # the probe inputs themselves travel in the state dict (a buffer); their shape rebuilds it
        "probe_shape": None if ae.probes is None else list(ae.probes.inputs.shape),
    }


def load_autoencoder(path: str, arch: Architecture | None = None, *, map_location="cpu"):
    """Rebuild a :class:`ScaleGMNAutoencoder` from a Trainer checkpoint written with
    :func:`autoencoder_state`; ``arch`` (optional) must be the architecture it was trained for."""
    from ...models.autoencoder import ScaleGMNAutoencoder
    from ...models.config import ScaleGMNConfig

    ck = torch.load(path, map_location=map_location, weights_only=False)
    if not isinstance(ck, dict) or ck.get("kind") != CHECKPOINT_KIND:
        raise ValueError(
            f"{path} is not a scalegmn_ext autoencoder checkpoint (kind={ck.get('kind') if isinstance(ck, dict) else None!r})"
        )
    trained_for = arch_from_dict(ck["arch"], where=f"{path}: arch")
    if arch is not None and arch != trained_for:
        raise ValueError(
            f"{path} holds an autoencoder for {trained_for}, not for {arch}: decode networks of the "
            f"architecture it was trained on, or train one for {arch}"
        )
    cfg = ScaleGMNConfig(**ck["encoder_config"])
    shape = ck.get("probe_shape")  # absent in checkpoints written before probes existed
    model = ScaleGMNAutoencoder(
        trained_for,
        cfg,  # its node_features is set again from the probes
        latent_dim=ck["latent_dim"],
        decoder=ck["decoder"],
        decoder_hidden=ck["decoder_hidden"],
        probes=None if shape is None else torch.zeros(shape),
    )
    model.load_state_dict(ck["model"])
    return model.eval()


def _unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "module", model)  # DistributedDataParallel keeps the model as .module


class INRRenderLoss:
    """Per-network MSE between renderings of decoded and input INRs on a ``size x size`` grid."""

    def __init__(self, arch: Architecture, size: int = 28):
        if arch.is_cnn or arch.layout[0] != 2:
            raise ValueError(f"INRRenderLoss needs a 2-D INR architecture (2 inputs), got {arch}")
        self.arch, self.size = arch, int(size)

    def __call__(self, model: nn.Module, weights: list[Tensor], biases: list[Tensor]) -> Tensor:
        with torch.no_grad():
            target = render_inr(self.arch, weights, biases, self.size, self.size)
        dw, db = model(weights, biases)
        recon = render_inr(self.arch, dw, db, self.size, self.size)
        return (recon - target).pow(2).flatten(1).mean(1)


class DistillationLoss:
    """Per-network ``T^2 KL(softmax(t / T) || softmax(s / T))`` averaged over a sampled image batch.

    ``images`` ``[N, C, H, W]`` are the pool; each call draws ``n_images`` of them with a generator
    seeded by ``(seed, call number)``, so the draw is identical on every DDP rank and on resume."""

    def __init__(
        self, arch: Architecture, images: Tensor, *, temperature: float = 0.6, n_images: int = 256, seed: int = 0
    ):
        if not arch.is_cnn and arch.layout[0] != images[0].numel():
            raise ValueError(f"images of shape {tuple(images.shape[1:])} do not fit {arch}")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}")
        self.arch, self.images, self.T = arch, images, float(temperature)
        self.n_images, self.seed, self.calls = min(int(n_images), images.shape[0]), int(seed), 0

    def sample(self) -> Tensor:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.calls)
        self.calls += 1
        return self.images[torch.randperm(self.images.shape[0], generator=g)[: self.n_images]]

    def __call__(self, model: nn.Module, weights: list[Tensor], biases: list[Tensor]) -> Tensor:
        x = self.sample().to(device=weights[0].device, dtype=weights[0].dtype)
        if not self.arch.is_cnn:
            x = x.flatten(1)
        with torch.no_grad():
            teacher = F.log_softmax(forward(self.arch, weights, biases, x) / self.T, -1)
        dw, db = model(weights, biases)
        student = F.log_softmax(forward(self.arch, dw, db, x) / self.T, -1)
        kl = (teacher.exp() * (teacher - student)).sum(-1)  # [B, n_images]
        return kl.mean(1) * self.T**2


def canonicalize(
    model: nn.Module, weights: Sequence[Tensor], biases: Sequence[Tensor], *, batch_size: int = 256
) -> tuple[list[Tensor], list[Tensor]]:
    """Encode + decode networks in batches (no gradients): the canonical representatives."""
    ae = _unwrap(model)
    was = ae.training
    ae.eval()
    outs_w, outs_b = [], []
    with torch.no_grad():
        n = weights[0].shape[0]
        for s in range(0, n, batch_size):
            dw, db = ae([w[s : s + batch_size] for w in weights], [b[s : s + batch_size] for b in biases])
            outs_w.append(dw)
            outs_b.append(db)
    ae.train(was)
    L = len(weights)
    if not outs_w:
        return [w[:0] for w in weights], [b[:0] for b in biases]
    return [torch.cat([o[l] for o in outs_w]) for l in range(L)], [torch.cat([o[l] for o in outs_b]) for l in range(L)]


def reconstruction_quality(
    arch: Architecture,
    original: tuple,
    decoded: tuple,
    *,
    images: Tensor | None = None,
    labels: Tensor | None = None,
    size: int = 28,
) -> dict:
    """INRs: mean PSNR of the decoded rendering against the original's. Classifiers (with
    ``images``/``labels``): accuracy of the originals and of the decoded networks."""
    if images is None:
        ro = render_inr(arch, *original, size, size)
        rd = render_inr(arch, *decoded, size, size)
        p = psnr(rd.clamp(0, 1), ro.clamp(0, 1))  # capped at 120 dB for identical renderings
        return {"psnr_mean": float(p.mean()), "psnr_min": float(p.min())}
    x = images if arch.is_cnn else images.flatten(1)
    x = x.to(original[0][0].dtype)
    acc = [float((forward(arch, *net, x).argmax(-1) == labels).double().mean()) for net in (original, decoded)]
    return {"accuracy_original": acc[0], "accuracy_decoded": acc[1], "accuracy_kept": acc[1] - acc[0]}
