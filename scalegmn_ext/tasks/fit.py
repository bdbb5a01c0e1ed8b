"""Training many small networks at once: batched SIREN fitting and batched CNN training.

Both optimise the stacked per-layer tensors of B networks with ONE functional forward per step
(:func:`scalegmn_ext.weightspace.functional.forward`), never a Python loop over networks. Each network's loss
is summed (not averaged) over the batch, so every network gets exactly the gradient it would get
if trained alone, and Adam's per-element statistics keep the networks independent.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from ..weightspace.architecture import Architecture
from ..weightspace.functional import coordinate_grid, forward

__all__ = ["init_weights", "init_weights_seeded", "fit_inrs", "train_cnns", "evaluate_cnns", "psnr"]


def init_weights(
    arch: Architecture,
    batch_size: int,
    *,
    generator: torch.Generator | None = None,
    dtype: torch.dtype = torch.float32,
    device="cpu",
    zero_bias: bool = False,
    init_scale: float = 1.0,
) -> tuple[list[Tensor], list[Tensor]]:
    """Random initial weights for B networks.

    SIREN (sine): first layer U(-1/in, 1/in), others U(-sqrt(6/in)/w0, sqrt(6/in)/w0) (Sitzmann
    et al.); other activations: PyTorch's default (Kaiming-uniform, bound 1/sqrt(fan_in)), times
    ``init_scale``. Biases U(-1/sqrt(fan_in), 1/sqrt(fan_in)) or zero.
    """
    ws, bs = [], []
    for l, spec in enumerate(arch.layers):
        fan_in = spec.in_features * spec.kernel_size[0] * spec.kernel_size[1]
        if arch.activation == "sine":
            bound = 1.0 / fan_in if l == 0 else math.sqrt(6.0 / fan_in) / arch.w0
        else:
            bound = 1.0 / math.sqrt(fan_in)
        bound *= init_scale
        w = (torch.rand(batch_size, *spec.weight_shape, generator=generator, dtype=dtype) * 2 - 1) * bound
        b = (torch.rand(batch_size, spec.out_features, generator=generator, dtype=dtype) * 2 - 1) / math.sqrt(fan_in)
        if zero_bias:
            b.zero_()
        ws.append(w.to(device))
        bs.append(b.to(device))
    return ws, bs


def psnr(pred: Tensor, target: Tensor) -> Tensor:
    """Per-item PSNR in dB for images in [0, 1]: ``[B, ...]`` -> ``[B]``."""
    mse = (pred - target).pow(2).flatten(1).mean(1)
    return -10.0 * torch.log10(mse.clamp_min(1e-12))


def init_weights_seeded(
    arch: Architecture,
    seeds,
    *,
    dtype: torch.dtype = torch.float32,
    device="cpu",
    zero_bias: bool = False,
    init_scale: float = 1.0,
) -> tuple[list[Tensor], list[Tensor]]:
    """Like :func:`init_weights`, but network ``i`` is drawn from its own generator seeded with ``seeds[i]``.

    Network ``i``'s initial weights therefore depend only on its seed, not on which other
    networks share the batch (so a zoo chunk can be regenerated, or one network refitted alone).
    """
    seeds = [int(s) for s in (seeds.tolist() if isinstance(seeds, Tensor) else seeds)]
    per = [
        init_weights(
            arch, 1, generator=torch.Generator().manual_seed(s), dtype=dtype, zero_bias=zero_bias, init_scale=init_scale
        )
        for s in seeds
    ]
    ws = [
        torch.cat([p[0][l] for p in per]) if per else torch.empty(0, *spec.weight_shape, dtype=dtype)
        for l, spec in enumerate(arch.layers)
    ]
    bs = [
        torch.cat([p[1][l] for p in per]) if per else torch.empty(0, spec.out_features, dtype=dtype)
        for l, spec in enumerate(arch.layers)
    ]
    return [w.to(device) for w in ws], [b.to(device) for b in bs]


def _check_init(arch: Architecture, init, B: int, dtype, device) -> tuple[list[Tensor], list[Tensor]]:
    if not (isinstance(init, (tuple, list)) and len(init) == 2):
        raise TypeError("init must be a (weights, biases) pair of per-layer lists")
    ws, bs = init
    if len(ws) != arch.num_layers or len(bs) != arch.num_layers:
        raise ValueError(f"init must hold {arch.num_layers} weights and biases, got {len(ws)} and {len(bs)}")
    out_w, out_b = [], []
    for l, (w, b, spec) in enumerate(zip(ws, bs, arch.layers)):
        if tuple(w.shape) != (B, *spec.weight_shape) or tuple(b.shape) != (B, spec.out_features):
            raise ValueError(
                f"init layer {l}: expected weight {(B, *spec.weight_shape)} and bias {(B, spec.out_features)}, "
                f"got {tuple(w.shape)} and {tuple(b.shape)}"
            )
        out_w.append(w.detach().to(dtype=dtype, device=device).clone())
        out_b.append(b.detach().to(dtype=dtype, device=device).clone())
    return out_w, out_b


def fit_inrs(
    images: Tensor,
    arch: Architecture | None = None,
    *,
    steps: int = 1000,
    lr: float = 5e-4,
    target_psnr: float | None = 40.0,
    generator: torch.Generator | None = None,
    zero_bias: bool = False,
    progress: Callable[[int, Tensor], None] | None = None,
    init: tuple[list[Tensor], list[Tensor]] | None = None,
) -> tuple[list[Tensor], list[Tensor], Tensor, Tensor]:
    """Fit one SIREN per grayscale image, all at once (the published MNIST-INR recipe).

    Args:
        images: ``[B, H, W]`` in [0, 1].
        arch: INR architecture (default :meth:`Architecture.siren`: 2->32->32->1, w0 = 30, +0.5).
        steps, lr: Adam steps and learning rate (published: up to 1000 steps, 5e-4).
        target_psnr: an INR stops training (its weights are frozen) once it reaches this PSNR.
        zero_bias: initialise the biases to zero (the published zoo did); else uniform.
        progress: called as ``progress(step, psnr[B])`` every 50 steps.
        init: optional initial ``(weights, biases)`` (e.g. :func:`init_weights_seeded`); by
            default they are drawn with :func:`init_weights` from ``generator``.

    Sine MLPs (SIRENs of any depth/width) use a hand-written batched forward/backward and Adam
    (the same maths as ``torch.optim.Adam`` on :func:`~scalegmn_ext.weightspace.functional.forward`; 1.4-2x
    faster than autograd on CPU) that also drops finished INRs from the working batch; other
    activations use autograd.

    Returns:
        ``weights``, ``biases`` (per layer, ``[B, ...]``), final ``psnr`` ``[B]`` (recomputed
        with :func:`~scalegmn_ext.weightspace.functional.forward` on the returned weights) and the number of
        Adam steps each INR trained ``[B]``.
    """
    if not isinstance(images, Tensor) or images.dim() != 3:
        raise ValueError(f"images must be [B, H, W], got shape {tuple(getattr(images, 'shape', ()))}")
    arch = arch or Architecture.siren()
    if arch.is_cnn or arch.layout[0] != 2 or arch.layout[-1] != 1:
        raise ValueError(f"arch must map 2-D coordinates to 1 channel, got layout {arch.layout}")
    B, H, W = images.shape
    if init is None:
        ws, bs = init_weights(
            arch, B, generator=generator, dtype=images.dtype, device=images.device, zero_bias=zero_bias
        )
    else:
        ws, bs = _check_init(arch, init, B, images.dtype, images.device)
    if arch.activation == "sine" and all(l.bias for l in arch.layers):
        ws, bs, trained = _fit_sine_mlp(images, arch, ws, bs, steps, lr, target_psnr, progress)
    else:
        ws, bs, trained = _fit_autograd(images, arch, ws, bs, steps, lr, target_psnr, progress)
    with torch.no_grad():
        coords = coordinate_grid(H, W, dtype=images.dtype, device=images.device)
        final = (
            torch.cat(
                [
                    psnr(
                        forward(arch, [w[s : s + 256] for w in ws], [b[s : s + 256] for b in bs], coords).reshape(
                            -1, H, W
                        ),
                        images[s : s + 256],
                    )
                    for s in range(0, B, 256)
                ]
            )
            if B
            else images.new_zeros(0)
        )
    return ws, bs, final, trained


def _fit_autograd(images, arch, ws, bs, steps, lr, target_psnr, progress):
    """Reference path: autograd through :func:`functional.forward` + ``torch.optim.Adam``."""
    B, H, W = images.shape
    params = [p.requires_grad_() for p in ws + bs]
    opt = torch.optim.Adam(params, lr=lr)
    coords = coordinate_grid(H, W, dtype=images.dtype, device=images.device)
    target = images.reshape(B, H * W, 1)
    active = torch.ones(B, dtype=torch.bool, device=images.device)
    trained = torch.zeros(B, dtype=torch.long, device=images.device)
    for step in range(steps):
        pred = forward(arch, ws, bs, coords)
        per_net = (pred - target).pow(2).mean(dim=(1, 2))
        with torch.no_grad():
            cur = -10.0 * torch.log10(per_net.clamp_min(1e-12))
            if target_psnr is not None:
                active &= cur < target_psnr
            if progress is not None and step % 50 == 0:
                progress(step, cur)
            if not active.any():
                break
        opt.zero_grad(set_to_none=False)
        (per_net * active).sum().backward()
        # freeze finished INRs exactly: Adam would still move them through its momentum
        frozen = [p.detach().clone() for p in params]
        opt.step()
        with torch.no_grad():
            for p, old in zip(params, frozen):
                mask = active.view(-1, *([1] * (p.dim() - 1)))
                p.copy_(torch.where(mask, p, old))
        trained += active.long()
    return [w.detach() for w in ws], [b.detach() for b in bs], trained


@torch.no_grad()
def _fit_sine_mlp(images, arch, ws, bs, steps, lr, target_psnr, progress, betas=(0.9, 0.999), eps=1e-8):
    """Hand-written batched SIREN fitting: forward, backward and Adam without autograd.

    Network: ``h_0 = x``, ``h_l = sin(w0 (W_l h_{l-1} + b_l))``, ``y = W_L h_{L-1} + b_L + offset``;
    loss per INR ``mean_p (y - t)^2``. The ``w0`` factor is folded into the (small) weights, so
    the big ``[n, P, width]`` tensors see one matmul, one ``sin`` and, backwards, one ``cos``,
    one multiply and two matmuls per layer. INRs that reach ``target_psnr`` are written out and
    dropped from the working batch (their Adam state too), so the batch shrinks as they finish.
    """
    B, H, W = images.shape
    P = H * W
    L = arch.num_layers
    w0 = float(arch.w0)
    dtype, device = images.dtype, images.device
    X = coordinate_grid(H, W, dtype=dtype, device=device)  # [P, 2]
    tgt = images.reshape(B, P, 1) - arch.output_offset
    out_w = [w.clone() for w in ws]
    out_b = [b.clone() for b in bs]
    Ws, Bs = ws, bs  # working set (rows = the INRs still training)
    mW = [torch.zeros_like(w) for w in Ws]
    vW = [torch.zeros_like(w) for w in Ws]
    mB = [torch.zeros_like(b) for b in Bs]
    vB = [torch.zeros_like(b) for b in Bs]
    idx = torch.arange(B, device=device)
    trained = torch.zeros(B, dtype=torch.long, device=device)
    last = images.new_zeros(B)
    b1, b2 = betas
    bufs: dict = {}

    def buf(name, shape):
        t = bufs.get(name)
        if t is None or tuple(t.shape) != tuple(shape):
            t = bufs[name] = torch.empty(shape, dtype=dtype, device=device)
        return t

    for step in range(steps):
        n = idx.numel()
        if n == 0:
            break
        Xe = X.expand(n, P, 2)
        zs, hs = [], [Xe]
        h = Xe
        for l in range(L - 1):  # hidden layers: z = w0 (W h + b), h = sin(z)
            z = torch.baddbmm(
                (Bs[l] * w0).unsqueeze(1), h, (Ws[l] * w0).transpose(1, 2), out=buf(f"z{l}", (n, P, Ws[l].shape[1]))
            )
            h = torch.sin(z, out=buf(f"h{l}", z.shape))
            zs.append(z)
            hs.append(h)
        y = torch.baddbmm(Bs[-1].unsqueeze(1), h, Ws[-1].transpose(1, 2))  # [n, P, 1]
        err = y.sub_(tgt[idx] if n < B else tgt)
        mse = err.pow(2).mean(dim=(1, 2))
        cur = -10.0 * torch.log10(mse.clamp_min(1e-12))
        last[idx] = cur
        if progress is not None and step % 50 == 0:
            progress(step, last.clone())
        if target_psnr is not None:
            done = cur >= target_psnr
            if bool(done.any()):
                keep = ~done
                fin = idx[done]
                for l in range(L):
                    out_w[l][fin] = Ws[l][done]
                    out_b[l][fin] = Bs[l][done]
                idx = idx[keep]
                if idx.numel() == 0:
                    break
                Ws = [t[keep] for t in Ws]
                Bs = [t[keep] for t in Bs]
                mW = [t[keep] for t in mW]
                vW = [t[keep] for t in vW]
                mB = [t[keep] for t in mB]
                vB = [t[keep] for t in vB]
                zs = [t[keep] for t in zs]
                hs = [X.expand(idx.numel(), P, 2)] + [t[keep] for t in hs[1:]]
                err = err[keep]
                n = idx.numel()
                bufs.clear()
        # backward: g = dLoss/d(pre-activation), without the w0 factor for hidden layers
        g = err.mul_(2.0 / P)
        gW, gB = [None] * L, [None] * L
        for l in range(L - 1, -1, -1):
            hp = hs[l]
            gW[l] = torch.bmm(g.transpose(1, 2), hp) if l > 0 else torch.matmul(g.transpose(1, 2), X)
            gB[l] = g.sum(1)
            if l < L - 1:
                gW[l].mul_(w0)
                gB[l].mul_(w0)
            if l > 0:
                weff = Ws[l] * w0 if l < L - 1 else Ws[l]
                dh = torch.bmm(g, weff, out=buf(f"d{l}", (n, P, Ws[l].shape[2])))
                g = dh.mul_(zs[l - 1].cos_())
        # Adam (torch.optim.Adam's update, per element)
        t = step + 1
        bc1 = 1.0 - b1**t
        bc2s = math.sqrt(1.0 - b2**t)
        for p, gr, m, v in zip(Ws + Bs, gW + gB, mW + mB, vW + vB):
            m.mul_(b1).add_(gr, alpha=1.0 - b1)
            v.mul_(b2).addcmul_(gr, gr, value=1.0 - b2)
            p.addcdiv_(m, v.sqrt().div_(bc2s).add_(eps), value=-lr / bc1)
        trained[idx] += 1
    for l in range(L):
        out_w[l][idx] = Ws[l]
        out_b[l][idx] = Bs[l]
    return out_w, out_b, trained


def train_cnns(
    arch: Architecture,
    images: Tensor,
    labels: Tensor,
    num_networks: int,
    *,
    epochs: int = 1,
    batch_size: int = 64,
    lr: float = 3e-3,
    weight_decay: float = 0.0,
    init_scale: float | Tensor = 1.0,
    generator: torch.Generator | None = None,
    progress: Callable[[int, int, float], None] | None = None,
) -> tuple[list[Tensor], list[Tensor]]:
    """Train ``num_networks`` CNNs of one architecture on the same image stream, all at once.

    Networks differ by their random initialisation (and ``init_scale`` if a ``[B]`` tensor).
    ``images`` is ``[n, C, H, W]``, ``labels`` ``[n]``. Returns the trained weights and biases.
    """
    if images.dim() != 4 or labels.shape != images.shape[:1]:
        raise ValueError(
            f"images must be [n, C, H, W] and labels [n], got {tuple(images.shape)}, {tuple(labels.shape)}"
        )
    B = num_networks
    ws, bs = init_weights(arch, B, generator=generator, dtype=images.dtype, device=images.device)
    if isinstance(init_scale, Tensor):
        ws = [w * init_scale.view(-1, *([1] * (w.dim() - 1))).to(w) for w in ws]
    else:
        ws = [w * init_scale for w in ws]
    params = [p.requires_grad_() for p in ws + bs]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    n = images.shape[0]
    for epoch in range(epochs):
        order = torch.randperm(n, generator=generator)
        for i, start in enumerate(range(0, n, batch_size)):
            idx = order[start : start + batch_size]
            logits = forward(arch, ws, bs, images[idx])  # [B, P, classes]
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels[idx].repeat(B), reduction="sum")
            opt.zero_grad()
            (loss / idx.numel()).backward()
            opt.step()
            if progress is not None and i % 20 == 0:
                progress(epoch, start, loss.item() / (idx.numel() * B))
    return [w.detach() for w in ws], [b.detach() for b in bs]


def evaluate_cnns(arch: Architecture, weights, biases, images: Tensor, labels: Tensor, chunk: int = 512) -> Tensor:
    """Accuracy of each of the B CNNs on ``images``/``labels``: ``[B]``."""
    correct = 0
    with torch.no_grad():
        for s in range(0, images.shape[0], chunk):
            logits = forward(arch, weights, biases, images[s : s + chunk])
            correct = correct + (logits.argmax(-1) == labels[s : s + chunk]).sum(1)
    return correct.float() / max(images.shape[0], 1)
