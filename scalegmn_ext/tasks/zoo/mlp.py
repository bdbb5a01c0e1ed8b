"""MLP zoo: dense classifiers on the CNN zoo's images, with the CNN zoo's varied hyper-parameters.

Every network is an MLP ``image_size**2 -> hidden... -> 10`` (ReLU or tanh) on the grayscale
images of :mod:`.cnn` (Fashion-MNIST or MNIST-5k), average-pooled from 28x28 to
``image_size x image_size`` and flattened row-major. Pooling keeps the input layer (and so the
metanetwork's graph: one node per pixel) small; ``image_size=28`` uses the raw pixels.

Hyper-parameters (lr, weight decay, dropout, init std, train fraction, activation), batched
training, checkpoints (epoch 0 = the initialisation; store early epochs to leave room for
improvement), chunks, resumption and the on-disk format are exactly those of the CNN zoo
(:func:`~scalegmn_ext.tasks.zoo.cnn.generate_classifier_zoo`); the zoo's ``kind`` is ``"mlp"``
and its config records ``hidden`` and ``image_size``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import torch.nn.functional as F
from torch import Tensor

from ...weightspace.architecture import Architecture
from .cnn import ProgressFn, generate_classifier_zoo
from .format import Zoo

__all__ = ["generate_mlp_zoo", "mlp_architecture", "flatten_images", "IMAGE_SIDE"]

#: Side of the source images (Fashion-MNIST and MNIST are 28x28).
IMAGE_SIDE = 28


def _check_image_size(image_size) -> int:
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1 or IMAGE_SIDE % image_size:
        divisors = [d for d in range(1, IMAGE_SIDE + 1) if IMAGE_SIDE % d == 0]
        raise ValueError(f"image_size must divide {IMAGE_SIDE} (one of {divisors}), got {image_size!r}")
    return image_size


def mlp_architecture(activation: str = "relu", hidden: Sequence[int] = (32, 32), image_size: int = 14) -> Architecture:
    """The zoo's MLP: ``image_size**2 -> hidden... -> 10`` with ``activation`` between layers."""
    image_size = _check_image_size(image_size)
    hidden = [int(h) for h in hidden]
    if not hidden or min(hidden) < 1:
        raise ValueError(f"hidden must list at least one positive width, got {hidden}")
    return Architecture.mlp([image_size * image_size, *hidden, 10], activation)


def flatten_images(x: Tensor, image_size: int) -> Tensor:
    """``[N, 1, 28, 28]`` images -> ``[N, image_size**2]``: average-pooled, flattened row-major."""
    image_size = _check_image_size(image_size)
    if x.dim() != 4 or tuple(x.shape[1:]) != (1, IMAGE_SIDE, IMAGE_SIDE):
        raise ValueError(f"images must be [N, 1, {IMAGE_SIDE}, {IMAGE_SIDE}], got {tuple(x.shape)}")
    k = IMAGE_SIDE // image_size
    return (F.avg_pool2d(x, k) if k > 1 else x).flatten(1)


def generate_mlp_zoo(
    out: str | os.PathLike,
    n: int = 64,
    *,
    hidden: Sequence[int] = (32, 32),
    image_size: int = 14,
    epochs: int = 2,
    checkpoints: Sequence[int] | None = None,
    progress: ProgressFn | None = None,
    on_chunk: Callable[[int, int], None] | None = None,
    log: Callable[[str], None] | None = None,
    **kwargs,
) -> Zoo:
    """Train ``n`` MLPs with varied hyper-parameters; store every checkpoint (resumable).

    ``hidden``: hidden widths; ``image_size``: side the 28x28 images are pooled to (must divide
    28). The defaults store early checkpoints (epochs 0, 1, 2: ``checkpoints=None`` means 0, 1, 2, 4, ... up to ``epochs``) so that fine-tuning has room to
    improve. Every other argument (``source``, ``seed``, ``train_size``, ``test_size``,
    ``batch_size``, ``activations``, ``ranges``, ``chunk``, ``group_size``, ``workers``,
    ``device``, ``split_fractions``, ``data_root``) is that of
    :func:`~scalegmn_ext.tasks.zoo.cnn.generate_cnn_zoo`.
    """
    image_size = _check_image_size(image_size)
    hidden = [int(h) for h in hidden]
    mlp_architecture("relu", hidden, image_size)  # validates hidden
    return generate_classifier_zoo(
        out,
        n,
        kind="mlp",
        arch_for=lambda act: mlp_architecture(act, hidden, image_size),
        input_transform=lambda x: flatten_images(x, image_size),
        input_description=f"grayscale in [0, 1], 28x28 average-pooled to {image_size}x{image_size}, "
        f"flattened row-major to {image_size * image_size}",
        config_extra={"hidden": hidden, "image_size": image_size},
        epochs=epochs,
        checkpoints=checkpoints,
        progress=progress,
        on_chunk=on_chunk,
        log=log,
        **kwargs,
    )
