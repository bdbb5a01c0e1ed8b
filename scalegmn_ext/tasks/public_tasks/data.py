"""The networks and per-network targets of the three public ScaleGMN tasks, by split.

Each loader returns a :class:`TaskData`: the networks' architecture and ``train`` / ``val`` /
``test`` :class:`~scalegmn_ext.tasks.train.NetworkSet` objects whose ``targets`` are

* ``inr-cls``: the digit / class label (int64) of each INR;
* ``cnn-gen``: the test accuracy in [0, 1] of each CNN (float32; the public code regresses it);
* ``inr-edit``: the target image ``[28, 28]`` (float32): the dilated digit (3x3 max filter,
  stride 1, as the public code's ``cv2.dilate`` with a 3x3 kernel of ones), of the INR's source
  image (``target="source"``, the public task) or of the INR's own rendering (``"render"``,
  for INR files that come without their images).

Sources: this package's zoos (``scalegmn-ext zoo inr|cnn``; their stored seeded network-level
split) or the published files (DWSNets MNIST INRs, the Small CNN Zoo) through
:mod:`scalegmn_ext.tasks.zoo.published`. A split with no networks is an error naming it.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ...weightspace.architecture import Architecture
from ...weightspace.functional import render_inr
from ..train import NetworkSet
from ..zoo.format import Zoo

__all__ = [
    "TaskData",
    "TASKS",
    "dilate",
    "inr_cls_data",
    "cnn_gen_data",
    "inr_edit_data",
    "load_task_data",
]

TASKS = ("inr-cls", "cnn-gen", "inr-edit")
SPLITS = ("train", "val", "test")


@dataclasses.dataclass
class TaskData:
    """What a task trains and is scored on (see the module doc)."""

    task: str
    arch: Architecture
    splits: dict[str, NetworkSet]
    source: dict  #: where the networks came from (recorded in the run's settings)

    def sizes(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.splits.items()}


def dilate(images: Tensor) -> Tensor:
    """3x3 grey-value dilation (max filter, stride 1, borders ignored) of ``[..., H, W]`` images."""
    shape = images.shape
    x = images.reshape(-1, 1, *shape[-2:])
    return F.max_pool2d(x, 3, stride=1, padding=1).reshape(shape)


def _limit(idx: Tensor, limit: int | None) -> Tensor:
    return idx if limit is None else idx[: int(limit)]


def _check_splits(splits: dict[str, NetworkSet | None], where: str) -> dict[str, NetworkSet]:
    empty = [k for k in SPLITS if splits.get(k) is None or len(splits[k]) == 0]
    if empty:
        raise ValueError(f"{where}: the {', '.join(empty)} split(s) hold no networks; every task needs all three")
    return splits  # type: ignore[return-value]


def _open_zoo(zoo: str | os.PathLike | Zoo) -> Zoo:
    return zoo if isinstance(zoo, Zoo) else Zoo(zoo)


# ---------------------------------------------------------------------------------------- INRs ----
def _inr_zoo(z: Zoo, task: str) -> None:
    if z.kind != "inr":
        raise ValueError(f"{z.path} is a {z.kind!r} zoo; the {task} task needs an INR zoo (scalegmn-ext zoo inr)")
    if z.arch.layout[0] != 2:
        raise ValueError(f"{z.path}: {task} needs 2-D INRs (2 inputs), the zoo holds {z.arch}")


def inr_cls_data(
    zoo: str | os.PathLike | Zoo | None = None,
    *,
    published_root: str | os.PathLike | None = None,
    split_file: str | os.PathLike | None = None,
    limit: int | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
) -> TaskData:
    """INR classification data from a zoo folder or from the published DWSNets MNIST-INR files
    (``published_root`` and/or its ``split_file``; without a split file the ``training`` INRs are
    split into train and ``val_fraction`` val with ``seed``). ``limit``: at most this many
    networks per split (the first ones)."""
    if (zoo is None) == (published_root is None and split_file is None):
        raise ValueError("give either zoo (one of this package's INR zoos) or published_root / split_file")
    if zoo is not None:
        z = _open_zoo(zoo)
        _inr_zoo(z, "inr-cls")
        if "label" not in z.column_names:
            raise ValueError(f"{z.path}: the networks have no 'label' column, so they cannot be classified")
        labels = torch.from_numpy(z.column("label").astype(np.int64))
        if (labels < 0).any():
            raise ValueError(f"{z.path}: 'label' holds negative values; class labels must be >= 0")
        splits = {}
        for name in SPLITS:
            idx = _limit(z.split(name), limit)
            splits[name] = NetworkSet(*z.load(idx), labels[idx]) if len(idx) else None
        return TaskData("inr-cls", z.arch, _check_splits(splits, z.path), {"zoo": os.path.abspath(z.path)})
    from ..zoo.published import load_mnist_inrs

    arch = Architecture.siren()
    splits = {}
    if split_file is not None:
        for name in SPLITS:
            b = load_mnist_inrs(published_root, name, split_file=split_file, limit=limit)
            splits[name] = NetworkSet(b.weights, b.biases, b.labels)
    else:
        tr = load_mnist_inrs(published_root, "train")
        g = torch.Generator().manual_seed(seed)
        perm = torch.randperm(len(tr), generator=g)
        n_val = max(1, int(round(val_fraction * len(tr))))
        full = NetworkSet(tr.weights, tr.biases, tr.labels)
        splits["val"] = full.subset(_limit(perm[:n_val], limit))
        splits["train"] = full.subset(_limit(perm[n_val:], limit))
        te = load_mnist_inrs(published_root, "test", limit=limit)
        splits["test"] = NetworkSet(te.weights, te.biases, te.labels)
    src = {"published_root": None if published_root is None else os.path.abspath(published_root)}
    src["split_file"] = None if split_file is None else os.path.abspath(split_file)
    return TaskData("inr-cls", arch, _check_splits(splits, str(published_root or split_file)), src)


def _source_images(z: Zoo, data_root: str | None) -> Tensor:
    from .. import data

    tags = sorted(set(z.column("image_source")))
    if len(tags) != 1:
        raise ValueError(f"{z.path}: INRs of several image sources {tags}; use one source per zoo")
    tag = tags[0]
    if tag == "mnist5k":
        return data.load_mnist_5k(data_root)[0]
    if tag.startswith("fashion-"):
        return data.load_fashion_mnist(tag.split("-", 1)[1], data_root)[0]
    raise ValueError(f"{z.path}: unknown image source {tag!r}; use target='render'")


def _render_targets(arch: Architecture, s: NetworkSet, size: int, chunk: int = 512) -> Tensor:
    outs = []
    with torch.no_grad():
        for i in range(0, len(s), chunk):
            ws, bs = s.take(torch.arange(i, min(len(s), i + chunk)))
            outs.append(render_inr(arch, ws, bs, size, size).clamp(0, 1))
    return dilate(torch.cat(outs)) if outs else torch.empty(0, size, size)


def inr_edit_data(
    zoo: str | os.PathLike | Zoo | None = None,
    *,
    published_root: str | os.PathLike | None = None,
    split_file: str | os.PathLike | None = None,
    target: str | None = None,
    limit: int | None = None,
    data_root: str | None = None,
    size: int = 28,
) -> TaskData:
    """INR editing data: the INRs and their dilated target images (see the module doc).
    ``target`` defaults to ``"source"`` for a zoo (its stored image indices) and ``"render"`` for
    the published INR files (their MNIST images are not part of them)."""
    if target is None:
        target = "source" if zoo is not None else "render"
    if target not in ("source", "render"):
        raise ValueError(
            f"target must be 'source' (dilated source image) or 'render' (dilated rendering), got {target!r}"
        )
    if zoo is None:
        if target == "source":
            raise ValueError(
                "target='source' needs the INRs' source images, which the published INR files do not hold: "
                "use target='render' (the dilated rendering of each INR)"
            )
        d = inr_cls_data(published_root=published_root, split_file=split_file, limit=limit)
        splits = {k: NetworkSet(v.weights, v.biases, _render_targets(d.arch, v, size)) for k, v in d.splits.items()}
        return TaskData("inr-edit", d.arch, splits, {**d.source, "target": target})
    z = _open_zoo(zoo)
    _inr_zoo(z, "inr-edit")
    if target == "source":
        if "image_index" not in z.column_names or "image_source" not in z.column_names:
            raise ValueError(f"{z.path}: no image_index / image_source columns; use target='render'")
        images = _source_images(z, data_root)
        if images.shape[-2:] != (size, size):
            raise ValueError(f"{z.path}: source images are {tuple(images.shape[-2:])}, the task renders {size}x{size}")
        img_idx = torch.from_numpy(z.column("image_index").astype(np.int64))
    splits = {}
    for name in SPLITS:
        idx = _limit(z.split(name), limit)
        if not len(idx):
            splits[name] = None
            continue
        s = NetworkSet(*z.load(idx))
        tgt = dilate(images[img_idx[idx]].float()) if target == "source" else _render_targets(z.arch, s, size)
        splits[name] = NetworkSet(s.weights, s.biases, tgt)
    return TaskData(
        "inr-edit", z.arch, _check_splits(splits, z.path), {"zoo": os.path.abspath(z.path), "target": target}
    )


# ---------------------------------------------------------------------------------------- CNNs ----
def cnn_gen_data(
    zoo: str | os.PathLike | Zoo | None = None,
    *,
    activation: str | None = None,
    epochs: Sequence[int] | None = None,
    small_cnn_zoo: str | os.PathLike | None = None,
    order_file: str | os.PathLike | None = None,
    limit: int | None = None,
) -> TaskData:
    """Generalisation-prediction data: CNNs of one ``activation`` and their test accuracy.

    From a zoo of this package: its checkpoints at ``epochs`` (default: every stored epoch > 0;
    checkpoints of one network share its split). From the Small CNN Zoo folder: the public
    pipeline (:meth:`~scalegmn_ext.tasks.zoo.published.SmallCNNZoo.select`, final step 86,
    ``order_file`` for the published split)."""
    if (zoo is None) == (small_cnn_zoo is None):
        raise ValueError("give either zoo (one of this package's CNN zoos) or small_cnn_zoo (the published folder)")
    if zoo is not None:
        z = _open_zoo(zoo)
        if z.kind not in ("cnn", "mlp"):
            raise ValueError(
                f"{z.path} is a {z.kind!r} zoo; cnn-gen needs a classifier zoo with stored test accuracies "
                "(scalegmn-ext zoo cnn)"
            )
        if "test_acc" not in z.column_names:
            raise ValueError(
                f"{z.path}: no 'test_acc' column; generalisation prediction needs the networks' accuracies"
            )
        activation, use, view = z.one_activation(activation, epochs)
        acc = torch.from_numpy(view.column("test_acc").astype(np.float32))
        if acc.numel() and float(acc.max()) > 1.0:  # a zoo that stores percentages
            acc = acc / 100.0
        splits = {}
        for name in SPLITS:
            idx = _limit(view.split(name), limit)
            splits[name] = NetworkSet(*view.load(idx), acc[idx]) if len(idx) else None
        src = {"zoo": os.path.abspath(z.path), "activation": activation, "epochs": use}
        return TaskData("cnn-gen", view.arch, _check_splits(splits, z.path), src)
    from ..zoo.published import SmallCNNZoo

    if activation is None:
        raise ValueError("pass activation= (--activation relu|tanh): the Small CNN Zoo mixes activations")
    sz = SmallCNNZoo(small_cnn_zoo, order_file=order_file)
    splits, arch = {}, None
    for name in SPLITS:
        rows = sz.select(name, activation=activation, limit=limit)
        b = sz.load(rows, arch_activation=activation)
        if b.labels is None:
            raise ValueError(f"{sz.metrics_file}: no 'test_accuracy' column; generalisation prediction needs it")
        arch = b.arch
        splits[name] = NetworkSet(b.weights, b.biases, b.labels.float())
    src = {
        "small_cnn_zoo": os.path.abspath(small_cnn_zoo),
        "order_file": None if order_file is None else os.path.abspath(order_file),
        "activation": activation,
    }
    return TaskData("cnn-gen", arch, _check_splits(splits, str(small_cnn_zoo)), src)


def load_task_data(task: str, **kwargs) -> TaskData:
    """Dispatch to :func:`inr_cls_data`, :func:`cnn_gen_data` or :func:`inr_edit_data`."""
    fn = {"inr-cls": inr_cls_data, "cnn-gen": cnn_gen_data, "inr-edit": inr_edit_data}.get(task)
    if fn is None:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    return fn(**kwargs)
