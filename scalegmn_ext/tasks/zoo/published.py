"""Readers for the two published weight-space zoos, and conversions to nfn and PyG.

Both readers give the package's batched weight lists (per layer ``[B, out, in]`` /
``[B, out, in, kh, kw]`` in torch layout, biases ``[B, out]``), ready for
:func:`scalegmn_ext.weights_to_graph`, :mod:`scalegmn_ext.weightspace.functional` and the adapters.
Loading never runs code from the files: ``.pth`` files go through
``torch.load(weights_only=True)`` and ``.npy`` files through ``np.load(allow_pickle=False)``.
Every format error is a :class:`ZooFormatError` (a ``ValueError``) that names the file.

DWSNets MNIST-INR zoo
---------------------
One SIREN (2->32->32->1, ``sin(30 z)``, output ``+ 0.5``; :meth:`Architecture.siren`) per MNIST
image, stored as a ``state_dict`` with the keys ``seq.{0,1,2}.{weight,bias}``::

    <root>/mnist_png_{training|testing}_{label}_{id}/checkpoints/model_final.pth

The label is the second-to-last ``_`` field of the folder name. The public code's split file
(DWSNets ``generate_data_splits.py``, also used by ScaleGMN) is a JSON object::

    {"train": {"path": [...], "label": ["2", ...]}, "val": {...}, "test": {...}}

with labels stored as digit strings. Test = all ``testing`` INRs, val = 5,000 ``training`` INRs
drawn *unseeded* by the public code, train = the rest. Paths are absolute (DWSNets) or relative
to the code's working directory (ScaleGMN: ``data/mnist-inrs/...``); they are resolved as
given, then under ``root`` with leading components stripped, then next to the split file.
:func:`make_mnist_inr_splits` writes the same format with a *seeded* val draw.

Small CNN Zoo (Unterthiner et al. 2020), as loaded by NFN / Neural Graphs / ScaleGMN
-----------------------------------------------------------------------------------------
A folder with

* ``weights.npy``: ``[n_models, n_params]`` float32, one flat TF-layout vector per checkpoint
  (memory-mapped, never fully read unless asked for);
* ``metrics.csv.gz`` (or ``metrics.csv``): one row per checkpoint, same order; columns include
  ``step``, ``test_accuracy`` and ``config.*`` hyper-parameters (``config.activation``, ...);
* ``layout.csv``: ``varname,start_idx,end_idx[,size],shape`` with rows such as
  ``sequential/conv2d/kernel:0,16,160,144,"(3, 3, 1, 16)"``; per layer the ``bias:0`` and
  ``kernel:0`` rows (any order). Conv kernels are TF ``(H, W, Cin, Cout)`` and become torch
  ``(Cout, Cin, H, W)``; dense kernels ``(in, out)`` become ``(out, in)``.

The public pipeline (NFN ``ZooDataset``, ScaleGMN ``NFNZooDataset``): reorder the rows by NFN's
``cifar10_split.csv`` (one row index per line, no header; pass it as ``order_file``), keep the
final checkpoints (``step == 86``), split (second half test; first half shuffled with
``random.Random(0)`` and cut 80/20 into train/val: :func:`split_indices_iid`), then keep one
``config.activation``. :meth:`SmallCNNZoo.select` does exactly this, in this order; without
``order_file`` the split is taken in file order (and is not the published split).

Conversions
-----------
:func:`to_nfn` (the nfn ``(weights, biases)`` layout) and :func:`to_pyg_batch` (a
``torch_geometric.data.Batch`` built in one vectorised step, equal to
``Batch.from_data_list`` of per-network ``Data`` objects).
"""
from __future__ import annotations

import ast
import csv
import dataclasses
import gzip
import io
import json
import math
import os
import pickle
import random
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from ...weightspace import adapters as _adapters
from ..._io import atomic_write_json
from ...weightspace.architecture import ACTIVATION_SYMMETRY, Architecture, LayerSpec
from ...weightspace.graph import WeightGraph

__all__ = [
    "ZooFormatError", "ZooBatch", "INRZooBatch", "CNNZooBatch",
    # DWSNets MNIST-INR zoo
    "inr_key_names", "load_inr_file", "read_inr_split_file", "scan_mnist_inrs", "make_mnist_inr_splits",
    "write_inr_split_file", "list_mnist_inrs", "load_mnist_inrs", "iter_mnist_inrs",
    # Small CNN Zoo
    "LayoutEntry", "read_layout_csv", "read_metrics_columns", "read_metrics_csv", "read_order_file", "arch_from_layout",
    "split_indices_iid", "unflatten_tf", "SmallCNNZoo", "open_small_cnn_zoo", "load_small_cnn_zoo",
    # conversions
    "to_nfn", "to_pyg_batch",
]

PathLike = str | os.PathLike


class ZooFormatError(ValueError):
    """A zoo file is missing, malformed, truncated or inconsistent; the message names the file."""


# ==============================================================================================
# batches
# ==============================================================================================
@dataclasses.dataclass
class ZooBatch:
    """B networks of one architecture read from a zoo (torch layout, batch axis first)."""

    arch: Architecture
    weights: list[Tensor]
    biases: list[Tensor]
    labels: Tensor | None

    def __len__(self) -> int:
        return int(self.weights[0].shape[0])

    def to_nfn(self) -> tuple[tuple[Tensor, ...], tuple[Tensor, ...]]:
        """nfn layout ``(weights, biases)``; see :func:`to_nfn`."""
        return to_nfn(self.weights, self.biases)

    def to_pyg(self, *, input_value: float = 1.0, dense_centre: bool = True, edge_order: str = "receiver"):
        """``torch_geometric.data.Batch`` of the networks with ``y = labels``; see :func:`to_pyg_batch`."""
        return to_pyg_batch(self.arch, self.weights, self.biases, self.labels, input_value=input_value,
                            dense_centre=dense_centre, edge_order=edge_order)

    def to_graph(self, *, input_value: float = 1.0, dense_centre: bool = True) -> WeightGraph:
        return WeightGraph.from_weights(self.arch, self.weights, self.biases, input_value=input_value,
                                        dense_centre=dense_centre)


@dataclasses.dataclass
class INRZooBatch(ZooBatch):
    """MNIST INRs: ``labels`` ``[B]`` int64 digit classes, ``paths`` the files read (resolved)."""

    paths: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class CNNZooBatch(ZooBatch):
    """Small-CNN-Zoo networks: ``labels`` ``[B]`` float (``test_accuracy``) when that column exists.

    ``rows`` are the row indices into ``weights.npy`` / ``metrics.csv`` and ``metrics`` the
    corresponding metric rows (dicts ``column -> int | float | str | None``).
    """

    rows: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    metrics: list[dict[str, Any]] = dataclasses.field(default_factory=list)

    def column(self, name: str) -> list[Any]:
        """One metrics column for the B networks (KeyError naming the available columns)."""
        if self.metrics and name not in self.metrics[0]:
            raise KeyError(f"no metrics column {name!r}; available: {sorted(self.metrics[0])}")
        return [m[name] for m in self.metrics]


def _empty_batch_like(arch: Architecture, dtype: torch.dtype) -> tuple[list[Tensor], list[Tensor]]:
    ws = [torch.empty((0,) + s.weight_shape, dtype=dtype) for s in arch.layers]
    bs = [torch.empty(0, s.out_features, dtype=dtype) for s in arch.layers]
    return ws, bs


# ==============================================================================================
# DWSNets MNIST-INR zoo
# ==============================================================================================
_INR_DIR_RE = re.compile(r"^mnist_png_(training|testing)_(\d+)_(\d+)$")


def inr_key_names(arch: Architecture | None = None, key_format: str = "seq.{i}") -> list[str]:
    """The expected state-dict keys, in order: ``seq.0.weight, seq.0.bias, ..., seq.2.bias``."""
    arch = Architecture.siren() if arch is None else arch
    keys = []
    for i, spec in enumerate(arch.layers):
        keys.append(f"{key_format.format(i=i)}.weight")
        if spec.bias:
            keys.append(f"{key_format.format(i=i)}.bias")
    return keys


def load_inr_file(
    path: PathLike, arch: Architecture | None = None, *, key_format: str = "seq.{i}",
) -> tuple[list[Tensor], list[Tensor]]:
    """One INR ``.pth`` -> unbatched ``(weights, biases)`` in torch layout (``[out, in]``, ``[out]``).

    Read with ``torch.load(weights_only=True, map_location="cpu")``: a file holding anything but
    tensors and plain containers is refused, never executed. The keys must be exactly
    :func:`inr_key_names` and the shapes those of ``arch`` (default :meth:`Architecture.siren`).
    """
    arch = Architecture.siren() if arch is None else arch
    p = Path(path)
    if not p.is_file():
        raise ZooFormatError(f"{p}: INR file not found")
    try:
        sd = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ZooFormatError(
            f"{p}: refused by torch.load(weights_only=True): the file holds objects other than tensors "
            f"and plain containers (only state dicts of tensors are accepted). Details: {str(e).splitlines()[0]}"
        ) from None
    except Exception as e:  # corrupt / truncated archives, wrong file type
        raise ZooFormatError(f"{p}: could not be read as a torch .pth file: {type(e).__name__}: {e}") from None
    if not isinstance(sd, Mapping):
        raise ZooFormatError(f"{p}: expected a state dict (a mapping of str -> Tensor), got {type(sd).__name__}")
    expected = inr_key_names(arch, key_format)
    missing = [k for k in expected if k not in sd]
    extra = [k for k in sd if k not in expected]
    if missing or extra:
        raise ZooFormatError(
            f"{p}: state dict keys {list(sd)} do not match the expected {expected} for {arch}"
            + (f" (missing {missing})" if missing else "") + (f" (unexpected {extra})" if extra else ""))
    ws, bs = [], []
    for i, spec in enumerate(arch.layers):
        stem = key_format.format(i=i)
        w = sd[f"{stem}.weight"]
        if not isinstance(w, Tensor) or not w.is_floating_point():
            raise ZooFormatError(f"{p}: {stem}.weight must be a floating-point Tensor, got "
                                 f"{getattr(w, 'dtype', type(w).__name__)}")
        if tuple(w.shape) != spec.weight_shape:
            raise ZooFormatError(f"{p}: {stem}.weight has shape {list(w.shape)}, expected "
                                 f"{list(spec.weight_shape)} for layer {i} of {arch}")
        if spec.bias:
            b = sd[f"{stem}.bias"]
            if not isinstance(b, Tensor) or not b.is_floating_point():
                raise ZooFormatError(f"{p}: {stem}.bias must be a floating-point Tensor, got "
                                     f"{getattr(b, 'dtype', type(b).__name__)}")
            if tuple(b.shape) != (spec.out_features,):
                raise ZooFormatError(f"{p}: {stem}.bias has shape {list(b.shape)}, expected "
                                     f"[{spec.out_features}] for layer {i} of {arch}")
        else:
            b = w.new_zeros(spec.out_features)
        ws.append(w.detach())
        bs.append(b.detach())
    return ws, bs


def _label_from_path(path: PathLike) -> int:
    """Digit label of ``.../mnist_png_{split}_{label}_{id}/checkpoints/model_final.pth``."""
    for part in reversed(Path(path).parts[:-1]):
        m = _INR_DIR_RE.match(part)
        if m:
            return int(m.group(2))
    raise ZooFormatError(f"{path}: cannot parse a label: no parent folder named mnist_png_<split>_<label>_<id>")


def _natural_key(s: str) -> list:
    return [(0, int(t), "") if t.isdigit() else (1, 0, t) for t in re.split(r"(\d+)", s) if t]


def scan_mnist_inrs(root: PathLike, pattern: str = "mnist_png_*/**/*.pth") -> dict[str, dict[str, list]]:
    """Find the INRs under ``root`` (the ``mnist-inrs`` folder) without a split file.

    Returns ``{"train": {"path": [...], "label": [...]}, "test": {...}}`` (labels as ints,
    natural-sorted paths) from the ``mnist_png_training_*`` / ``mnist_png_testing_*`` folders.
    """
    root = Path(root)
    if not root.is_dir():
        raise ZooFormatError(f"{root}: INR zoo root folder not found")
    out: dict[str, dict[str, list]] = {"train": {"path": [], "label": []}, "test": {"path": [], "label": []}}
    files = sorted((p for p in root.glob(pattern) if p.is_file()), key=lambda p: _natural_key(p.as_posix()))
    for p in files:
        rel = p.relative_to(root)
        m = next((_INR_DIR_RE.match(part) for part in reversed(rel.parts[:-1]) if _INR_DIR_RE.match(part)), None)
        if m is None:
            continue
        s = "train" if m.group(1) == "training" else "test"
        out[s]["path"].append(p.as_posix())
        out[s]["label"].append(int(m.group(2)))
    if not out["train"]["path"] and not out["test"]["path"]:
        raise ZooFormatError(f"{root}: no INR files matching {pattern!r} in mnist_png_<split>_<label>_<id> folders")
    return out


def make_mnist_inr_splits(
    root: PathLike, val_size: int = 5000, seed: int = 0, *, relative: bool = True,
) -> dict[str, dict[str, list]]:
    """A DWSNets-format split of the INRs under ``root``, with a *seeded* validation draw.

    As in the public code: test = all ``testing`` INRs, val = ``val_size`` random ``training``
    INRs, train = the rest (in file order). The public code draws val unseeded, so only its
    own JSON reproduces its split exactly. Labels are written as digit strings as there;
    paths relative to ``root`` when ``relative`` (portable), else absolute.
    """
    found = scan_mnist_inrs(root)
    n = len(found["train"]["path"])
    if not 0 <= val_size <= n:
        raise ValueError(f"val_size must be in [0, {n}] (the number of training INRs under {root}), got {val_size}")
    perm = list(range(n))
    random.Random(seed).shuffle(perm)
    val_idx = sorted(perm[:val_size])
    val_set = set(val_idx)
    train_idx = [i for i in range(n) if i not in val_set]
    rootp = Path(root).resolve()

    def fmt(p: str) -> str:
        return Path(p).resolve().relative_to(rootp).as_posix() if relative else Path(p).resolve().as_posix()

    def pick(src: dict[str, list], idx: Sequence[int]) -> dict[str, list]:
        return {"path": [fmt(src["path"][i]) for i in idx], "label": [str(src["label"][i]) for i in idx]}

    return {"train": pick(found["train"], train_idx), "val": pick(found["train"], val_idx),
            "test": pick(found["test"], range(len(found["test"]["path"])))}


def write_inr_split_file(splits: Mapping[str, Mapping[str, Sequence]], path: PathLike) -> None:
    """Write a split dict as JSON (atomically)."""
    atomic_write_json(os.fspath(path), {k: {kk: list(vv) for kk, vv in v.items()} for k, v in splits.items()},
                      indent=None)


def read_inr_split_file(path: PathLike) -> dict[str, dict[str, list]]:
    """Read and validate a DWSNets split JSON: ``{split: {"path": [...], "label": [...]}}``.

    ``label`` may be missing for a split (then parsed from the paths); labels become ints.
    """
    path = Path(path)
    if not path.is_file():
        raise ZooFormatError(f"{path}: split file not found")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ZooFormatError(f"{path}: not valid JSON: {e}") from None
    if not isinstance(data, dict) or not data:
        raise ZooFormatError(f"{path}: expected a JSON object {{split: {{'path': [...], 'label': [...]}}}}")
    out: dict[str, dict[str, list]] = {}
    for split, entry in data.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("path"), list):
            raise ZooFormatError(f"{path}: split {split!r} must be an object with a 'path' list (and a 'label' list)")
        paths = entry["path"]
        if not all(isinstance(p, str) for p in paths):
            raise ZooFormatError(f"{path}: split {split!r} 'path' must list strings")
        if "label" in entry:
            labels = entry["label"]
            if not isinstance(labels, list) or len(labels) != len(paths):
                raise ZooFormatError(f"{path}: split {split!r} has {len(paths)} paths but "
                                     f"{len(labels) if isinstance(labels, list) else 'no list of'} labels")
            try:
                labels = [int(l) for l in labels]
            except (TypeError, ValueError):
                raise ZooFormatError(f"{path}: split {split!r} labels must be integers or digit strings") from None
        else:
            labels = [_label_from_path(p) for p in paths]
        out[split] = {"path": list(paths), "label": labels}
    return out


class _PathResolver:
    """Resolves split-file paths: as given, under ``root`` (leading parts stripped), next to the file."""

    def __init__(self, root: Path | None, split_file: Path | None) -> None:
        self.bases = [b for b in (root, split_file.parent if split_file is not None else None) if b is not None]
        self.split_file = split_file
        self._strip: dict[int, int] = {}  # base index -> number of leading parts stripped last time

    def __call__(self, p: str) -> str:
        pp = Path(p)
        if pp.is_absolute() and pp.is_file():
            return pp.as_posix()
        parts = pp.parts[1:] if pp.is_absolute() else pp.parts
        # Strip leading components, but never past the INR's own mnist_png_* folder (a shorter
        # suffix such as checkpoints/model_final.pth would match the wrong file).
        own = [j for j, part in enumerate(parts[:-1]) if _INR_DIR_RE.match(part)]
        max_k = own[-1] if own else 0
        for bi, base in enumerate(self.bases):
            k = self._strip.get(bi)
            if k is not None and k <= max_k and (base / Path(*parts[k:])).is_file():
                return (base / Path(*parts[k:])).as_posix()
            for k in range(max_k + 1):
                cand = base / Path(*parts[k:])
                if cand.is_file():
                    self._strip[bi] = k
                    return cand.as_posix()
        if not pp.is_absolute() and pp.is_file():
            return pp.as_posix()
        where = f" (listed in {self.split_file})" if self.split_file is not None else ""
        tried = ", ".join(str(b) for b in self.bases) or "the working directory"
        raise ZooFormatError(f"{p}: INR file not found{where}; looked as given and under {tried}")


def list_mnist_inrs(
    root: PathLike | None = None, split: str | None = None, *, split_file: PathLike | None = None,
) -> tuple[list[str], list[int]]:
    """The ``(paths, labels)`` of one split, without reading the INRs.

    With ``split_file`` (a DWSNets JSON), ``split`` must be one of its keys; paths are returned
    as listed (resolved when loading). Without it, ``root`` is scanned and ``split`` is
    ``"train"`` (all ``training`` INRs), ``"test"`` or None (both, train first).
    """
    if split_file is not None:
        splits = read_inr_split_file(split_file)
        if split is None:
            raise ValueError(f"split must name one of {sorted(splits)} when split_file is given")
        if split not in splits:
            raise ZooFormatError(f"{split_file}: has no split {split!r} (it has {sorted(splits)})")
        return list(splits[split]["path"]), list(splits[split]["label"])
    if root is None:
        raise ValueError("give root (the mnist-inrs folder) and/or split_file")
    found = scan_mnist_inrs(root)
    if split is None:
        return found["train"]["path"] + found["test"]["path"], found["train"]["label"] + found["test"]["label"]
    if split not in found:
        raise ValueError(f"without a split file, split must be 'train', 'test' or None, got {split!r}; "
                         "make_mnist_inr_splits() creates a split with a validation set")
    return list(found[split]["path"]), list(found[split]["label"])


def _select(n: int, indices: Sequence[int] | None, limit: int | None) -> list[int]:
    idx = list(range(n)) if indices is None else [int(i) for i in indices]
    for i in idx:
        if not 0 <= i < n:
            raise IndexError(f"index {i} out of range for {n} entries")
    if limit is not None:
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        idx = idx[:limit]
    return idx


def iter_mnist_inrs(
    root: PathLike | None = None, split: str | None = None, *, split_file: PathLike | None = None,
    paths: Sequence[PathLike] | None = None, labels: Sequence[int] | None = None,
    indices: Sequence[int] | None = None, limit: int | None = None, chunk_size: int = 4096,
    arch: Architecture | None = None, dtype: torch.dtype = torch.float32, num_workers: int = 0,
) -> Iterator[INRZooBatch]:
    """Stream the INRs of a split (or of explicit ``paths``) in batches of ``chunk_size``.

    ``indices`` (positions in the split's list) and/or ``limit`` (the first n of those) pick a
    subset. ``num_workers > 0`` reads files with that many threads. Each yielded
    :class:`INRZooBatch` holds stacked copies; memory is O(chunk_size).
    """
    arch = Architecture.siren() if arch is None else arch
    if chunk_size <= 0:
        raise ValueError(f"chunk_size must be > 0, got {chunk_size}")
    if paths is not None:
        plist = [os.fspath(p) for p in paths]
        if labels is None:
            llist = [_label_from_path(p) for p in plist]
        else:
            llist = [int(l) for l in labels]
            if len(llist) != len(plist):
                raise ValueError(f"labels has {len(llist)} entries but paths has {len(plist)}")
    else:
        plist, llist = list_mnist_inrs(root, split, split_file=split_file)
    resolve = _PathResolver(Path(root) if root is not None else None,
                            Path(split_file) if split_file is not None else None)
    sel = _select(len(plist), indices, limit)
    pool = ThreadPoolExecutor(num_workers) if num_workers > 0 else None
    try:
        for start in range(0, len(sel), chunk_size):
            chunk = sel[start:start + chunk_size]
            files = [resolve(plist[i]) for i in chunk]
            loaded = list(pool.map(lambda f: load_inr_file(f, arch), files)) if pool else \
                [load_inr_file(f, arch) for f in files]
            ws = [torch.stack([one[0][l] for one in loaded]).to(dtype) for l in range(arch.num_layers)]
            bs = [torch.stack([one[1][l] for one in loaded]).to(dtype) for l in range(arch.num_layers)]
            yield INRZooBatch(arch, ws, bs, torch.tensor([llist[i] for i in chunk], dtype=torch.long), files)
    finally:
        if pool is not None:
            pool.shutdown()


def load_mnist_inrs(
    root: PathLike | None = None, split: str | None = None, *, split_file: PathLike | None = None,
    paths: Sequence[PathLike] | None = None, labels: Sequence[int] | None = None,
    indices: Sequence[int] | None = None, limit: int | None = None,
    arch: Architecture | None = None, dtype: torch.dtype = torch.float32, num_workers: int = 0,
    chunk_size: int = 4096,
) -> INRZooBatch:
    """Load a split (or subset) of the MNIST-INR zoo as one :class:`INRZooBatch`.

    Examples::

        b = load_mnist_inrs("data/mnist-inrs", "test", split_file="data/mnist-inrs/mnist_splits.json")
        b = load_mnist_inrs("data/mnist-inrs", "train", limit=1000)      # scan folders, no split file
        b.weights[1].shape   # [B, 32, 32];  b.labels [B];  b.to_pyg()

    For zoos larger than memory use :func:`iter_mnist_inrs`.
    """
    arch = Architecture.siren() if arch is None else arch
    parts = list(iter_mnist_inrs(root, split, split_file=split_file, paths=paths, labels=labels, indices=indices,
                                 limit=limit, chunk_size=chunk_size, arch=arch, dtype=dtype, num_workers=num_workers))
    if not parts:
        ws, bs = _empty_batch_like(arch, dtype)
        return INRZooBatch(arch, ws, bs, torch.zeros(0, dtype=torch.long), [])
    if len(parts) == 1:
        return parts[0]
    return INRZooBatch(
        arch,
        [torch.cat([p.weights[l] for p in parts]) for l in range(arch.num_layers)],
        [torch.cat([p.biases[l] for p in parts]) for l in range(arch.num_layers)],
        torch.cat([p.labels for p in parts]),
        [f for p in parts for f in p.paths],
    )


# ==============================================================================================
# Small CNN Zoo
# ==============================================================================================
@dataclasses.dataclass(frozen=True)
class LayoutEntry:
    """One ``layout.csv`` row: TF variable ``varname`` at ``[start, end)`` of a row, TF ``shape``."""

    varname: str
    start: int
    end: int
    shape: tuple[int, ...]

    @property
    def scope(self) -> str:
        return self.varname.rsplit("/", 1)[0] if "/" in self.varname else ""

    @property
    def kind(self) -> str:
        """``'kernel'`` or ``'bias'`` (from the last path component, ``:0`` suffix dropped)."""
        return self.varname.rsplit("/", 1)[-1].split(":", 1)[0]


def _open_text(path: Path):
    """Text handle of a plain or gzip-compressed file (detected from the magic bytes)."""
    with open(path, "rb") as f:
        magic = f.read(2)
    if magic == b"\x1f\x8b":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return open(path, "r", encoding="utf-8", newline="")


_INT_RE = re.compile(r"^[+-]?\d+$")


def _convert_column(vals: list[str]) -> np.ndarray | list:
    """int64 array if every cell is an integer, float64 if every cell is a number (empty -> NaN),
    else a list of strings with empty cells as None (repeated strings shared)."""
    for dt in (np.int64, np.float64):
        try:
            return np.array(vals, dtype=dt)
        except (ValueError, OverflowError):
            pass
    if "" in vals:
        try:
            return np.array([v if v != "" else "nan" for v in vals], dtype=np.float64)
        except ValueError:
            pass
    cache: dict[str, str] = {}
    return [cache.setdefault(v, v) if v != "" else None for v in vals]


def read_layout_csv(path: PathLike) -> list[LayoutEntry]:
    """Read and validate ``layout.csv`` (columns ``varname, start_idx, end_idx, shape``; ``size`` optional).

    Shapes are parsed with ``ast.literal_eval`` (never ``eval``). Checks that each range has
    ``prod(shape)`` entries and that ranges do not overlap.
    """
    path = Path(path)
    if not path.is_file():
        raise ZooFormatError(f"{path}: layout file not found")
    with _open_text(path) as f:
        reader = csv.DictReader(f)
        cols = reader.fieldnames or []
        missing = [c for c in ("varname", "start_idx", "end_idx", "shape") if c not in cols]
        if missing:
            raise ZooFormatError(f"{path}: missing column(s) {missing}; found {cols}")
        entries = []
        for n, row in enumerate(reader, start=2):
            try:
                start, end = int(row["start_idx"]), int(row["end_idx"])
                shape = ast.literal_eval(row["shape"].strip())
                shape = (shape,) if isinstance(shape, int) else tuple(int(s) for s in shape)
            except (ValueError, SyntaxError, TypeError, AttributeError):
                raise ZooFormatError(f"{path}:{n}: cannot parse start_idx/end_idx/shape from {dict(row)}") from None
            if start < 0 or end < start:
                raise ZooFormatError(f"{path}:{n}: invalid range [{start}, {end}) for {row['varname']!r}")
            if math.prod(shape) != end - start:
                raise ZooFormatError(f"{path}:{n}: {row['varname']!r} has shape {shape} ({math.prod(shape)} values) "
                                     f"but range [{start}, {end}) holds {end - start}")
            if row.get("size") not in (None, "") and int(row["size"]) != end - start:
                raise ZooFormatError(f"{path}:{n}: {row['varname']!r} has size {row['size']} but range "
                                     f"[{start}, {end}) holds {end - start}")
            entries.append(LayoutEntry(row["varname"], start, end, shape))
    if not entries:
        raise ZooFormatError(f"{path}: layout has no rows")
    spans = sorted((e.start, e.end, e.varname) for e in entries)
    for (s0, e0, v0), (s1, e1, v1) in zip(spans, spans[1:]):
        if s1 < e0:
            raise ZooFormatError(f"{path}: ranges of {v0!r} [{s0}, {e0}) and {v1!r} [{s1}, {e1}) overlap")
    return entries


def read_metrics_columns(path: PathLike) -> dict[str, np.ndarray | list]:
    """Read ``metrics.csv`` / ``metrics.csv.gz`` (gzip detected from the bytes) column-wise with
    the csv module (no pandas).

    Returns ``{column: values}`` in file order: an int64 array when every cell is an integer, a
    float64 array when every cell is a number (empty cells NaN), else a list of strings (empty
    cells None), e.g. ``config.activation``. A leading unnamed index column is kept as ``""``.
    """
    path = Path(path)
    if not path.is_file():
        raise ZooFormatError(f"{path}: metrics file not found")
    try:
        with _open_text(path) as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if not header:
                raise ZooFormatError(f"{path}: metrics file is empty")
            if len(set(header)) != len(header):
                raise ZooFormatError(f"{path}: repeated column names in the header {header}")
            recs = []
            for n, rec in enumerate(reader, start=2):
                if not rec:
                    continue
                if len(rec) != len(header):
                    raise ZooFormatError(f"{path}:{n}: {len(rec)} fields but the header has {len(header)}")
                recs.append(rec)
    except (OSError, EOFError, UnicodeDecodeError, csv.Error) as e:
        raise ZooFormatError(f"{path}: cannot read metrics: {type(e).__name__}: {e}") from None
    cols = list(zip(*recs)) if recs else [()] * len(header)
    return {h: _convert_column(list(c)) for h, c in zip(header, cols)}


def _row_dicts(columns: Mapping[str, np.ndarray | list], rows: Sequence[int] | np.ndarray) -> list[dict[str, Any]]:
    rows = np.asarray(rows, dtype=np.int64)
    picked = {k: (v[rows].tolist() if isinstance(v, np.ndarray) else [v[i] for i in rows.tolist()])
              for k, v in columns.items()}
    return [dict(zip(picked, vals)) for vals in zip(*picked.values())] if picked else [{} for _ in rows]


def read_metrics_csv(path: PathLike) -> tuple[list[str], list[dict[str, Any]]]:
    """``(columns, rows)``: :func:`read_metrics_columns` as one dict per row (Python scalars)."""
    cols = read_metrics_columns(path)
    n = len(next(iter(cols.values()))) if cols else 0
    return list(cols), _row_dicts(cols, np.arange(n))


def read_order_file(path: PathLike, n_models: int | None = None) -> np.ndarray:
    """NFN's row order (e.g. ``cifar10_split.csv``): one integer row index per line, no header."""
    path = Path(path)
    if not path.is_file():
        raise ZooFormatError(f"{path}: order file not found")
    vals = []
    with _open_text(path) as f:
        for n, rec in enumerate(csv.reader(f), start=1):
            if not rec or not rec[0].strip():
                continue
            if len(rec) != 1 or not _INT_RE.match(rec[0].strip()):
                raise ZooFormatError(f"{path}:{n}: expected one integer row index per line, got {rec}")
            vals.append(int(rec[0]))
    order = np.asarray(vals, dtype=np.int64)
    if n_models is not None and order.size and (order.min() < 0 or order.max() >= n_models):
        raise ZooFormatError(f"{path}: row indices must be in [0, {n_models}) (the number of models), "
                             f"got range [{order.min()}, {order.max()}]")
    return order


def arch_from_layout(
    layout: Sequence[LayoutEntry], activation: str = "relu", *, stride: int = 2, padding: int = 0,
    source: PathLike | None = None,
) -> Architecture:
    """The :class:`Architecture` of a TF layout: per variable scope (in first-appearance order)
    a ``kernel`` (conv ``(H, W, Cin, Cout)`` or dense ``(in, out)``) and an optional ``bias``.

    Stride and padding are not stored in the zoo; the Small CNN Zoo uses stride 2, "VALID".
    """
    src = f"{source}: " if source is not None else ""
    scopes: dict[str, dict[str, LayoutEntry]] = {}
    for e in layout:
        if e.kind not in ("kernel", "bias"):
            raise ZooFormatError(f"{src}variable {e.varname!r} is neither a kernel nor a bias")
        d = scopes.setdefault(e.scope, {})
        if e.kind in d:
            raise ZooFormatError(f"{src}scope {e.scope!r} has two {e.kind} variables")
        d[e.kind] = e
    layers = []
    for scope, d in scopes.items():
        if "kernel" not in d:
            raise ZooFormatError(f"{src}scope {scope!r} has a bias but no kernel")
        k = d["kernel"]
        if len(k.shape) == 4:
            kh, kw, cin, cout = k.shape
            spec = LayerSpec("conv", cin, cout, (kh, kw), stride, padding, "bias" in d)
        elif len(k.shape) == 2:
            cin, cout = k.shape
            spec = LayerSpec("dense", cin, cout, bias="bias" in d)
        else:
            raise ZooFormatError(f"{src}kernel {k.varname!r} has shape {k.shape}; expected 4-D (H, W, Cin, Cout) "
                                 "or 2-D (in, out)")
        if "bias" in d and d["bias"].shape != (spec.out_features,):
            raise ZooFormatError(f"{src}bias {d['bias'].varname!r} has shape {d['bias'].shape}, expected "
                                 f"({spec.out_features},) to match kernel {k.varname!r} {k.shape}")
        layers.append(spec)
    try:
        return Architecture(tuple(layers), activation)
    except ValueError as e:
        raise ZooFormatError(f"{src}layout does not describe a supported network: {e}") from None


def unflatten_tf(
    flat: np.ndarray, layout: Sequence[LayoutEntry], arch: Architecture, *, dtype: torch.dtype = torch.float32,
) -> tuple[list[Tensor], list[Tensor]]:
    """Flat TF-layout rows ``[B, n_params]`` -> torch-layout ``(weights, biases)``.

    Conv kernels ``(B, H, W, Cin, Cout)`` -> ``(B, Cout, Cin, H, W)``; dense ``(B, in, out)`` ->
    ``(B, out, in)``. Layers in the order of :func:`arch_from_layout`.
    """
    flat = np.asarray(flat)
    if flat.ndim != 2:
        raise ValueError(f"flat must be [B, n_params], got shape {flat.shape}")
    B = flat.shape[0]
    scopes: dict[str, dict[str, LayoutEntry]] = {}
    for e in layout:
        scopes.setdefault(e.scope, {})[e.kind] = e
    if len(scopes) != arch.num_layers:
        raise ValueError(f"layout has {len(scopes)} layers but the architecture {arch} has {arch.num_layers}")
    ws, bs = [], []
    for (scope, d), spec in zip(scopes.items(), arch.layers):
        k = d["kernel"]
        a = flat[:, k.start:k.end].reshape((B,) + k.shape)
        a = a.transpose(0, 4, 3, 1, 2) if a.ndim == 5 else a.transpose(0, 2, 1)
        w = torch.from_numpy(np.ascontiguousarray(a)).to(dtype)
        if tuple(w.shape[1:]) != spec.weight_shape:
            raise ValueError(f"kernel {k.varname!r} gives {tuple(w.shape[1:])}, the architecture expects {spec.weight_shape}")
        ws.append(w)
        if "bias" in d:
            e = d["bias"]
            bs.append(torch.from_numpy(np.ascontiguousarray(flat[:, e.start:e.end])).to(dtype))
        else:
            bs.append(torch.zeros(B, spec.out_features, dtype=dtype))
    return ws, bs


def split_indices_iid(n: int) -> dict[str, list[int]]:
    """The NFN / ScaleGMN split of n items: the second half (from ``int(0.5 n)``) is test; the
    first half is shuffled with ``random.Random(0)`` and cut at ``int(0.8 len)`` into train/val.
    Train and val come in the shuffled order (as the public datasets iterate them).
    """
    test_point = int(0.5 * n)
    trainval = list(range(test_point))
    val_point = int(0.8 * len(trainval))
    random.Random(0).shuffle(trainval)
    return {"train": trainval[:val_point], "val": trainval[val_point:], "test": list(range(test_point, n))}


def _activation_name(value: Any, where: str) -> str:
    name = str(value).strip().lower()
    if name not in ACTIVATION_SYMMETRY:
        raise ZooFormatError(f"{where}: activation {value!r} is not supported (supported: {sorted(ACTIVATION_SYMMETRY)})")
    return name


class SmallCNNZoo:
    """An opened Small-CNN-Zoo folder: memory-mapped weights, parsed metrics and layout.

    Nothing of ``weights.npy`` is read until :meth:`load` / :meth:`iter` pick rows. Use
    :meth:`select` for the public pipeline (order file, final step, split, activation).
    """

    def __init__(
        self, root: PathLike, *, weights: PathLike = "weights.npy", metrics: PathLike | None = None,
        layout: PathLike = "layout.csv", order_file: PathLike | None = None, stride: int = 2, padding: int = 0,
    ) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise ZooFormatError(f"{self.root}: Small CNN Zoo folder not found")
        self.weights_file = self.root / weights
        self.layout_file = self.root / layout
        if metrics is None:
            cands = [self.root / "metrics.csv.gz", self.root / "metrics.csv"]
            found = [c for c in cands if c.is_file()]
            if not found:
                raise ZooFormatError(f"{self.root}: no metrics.csv.gz or metrics.csv found")
            self.metrics_file = found[0]
        else:
            self.metrics_file = self.root / metrics
        self.stride, self.padding = int(stride), int(padding)

        if not self.weights_file.is_file():
            raise ZooFormatError(f"{self.weights_file}: weights file not found")
        try:
            data = np.load(self.weights_file, mmap_mode="r", allow_pickle=False)
        except ValueError as e:  # truncated file (mmap longer than file), object arrays (pickle refused)
            raise ZooFormatError(f"{self.weights_file}: cannot memory-map as a numeric .npy array "
                                 f"(truncated file or pickled objects?): {e}") from None
        except OSError as e:
            raise ZooFormatError(f"{self.weights_file}: cannot read: {e}") from None
        if not isinstance(data, np.ndarray) or data.ndim != 2:
            raise ZooFormatError(f"{self.weights_file}: expected a 2-D array [n_models, n_params], got shape "
                                 f"{getattr(data, 'shape', None)}")
        if not np.issubdtype(data.dtype, np.floating):
            raise ZooFormatError(f"{self.weights_file}: expected floating-point weights, got dtype {data.dtype}")
        self._data = data

        self.layout = read_layout_csv(self.layout_file)
        total = max(e.end for e in self.layout)
        covered = sum(e.end - e.start for e in self.layout)
        if data.shape[1] != total or covered != total:
            raise ZooFormatError(
                f"{self.weights_file}: rows have {data.shape[1]} values but {self.layout_file} lays out "
                f"{covered} values in [0, {total}); the weights file is truncated or belongs to another layout")
        self.metric_columns = read_metrics_columns(self.metrics_file)
        self.columns = list(self.metric_columns)
        n_rows = len(next(iter(self.metric_columns.values())))
        if n_rows != data.shape[0]:
            raise ZooFormatError(f"{self.metrics_file}: has {n_rows} rows but {self.weights_file} has "
                                 f"{data.shape[0]} models; they must correspond row by row")
        self.order = None if order_file is None else read_order_file(order_file, data.shape[0])
        self.order_file = None if order_file is None else Path(order_file)
        # Validate the layout now (clear error at open time), with a placeholder activation.
        self._arch_relu = arch_from_layout(self.layout, "relu", stride=self.stride, padding=self.padding,
                                           source=self.layout_file)

    # ----- sizes ---------------------------------------------------------------------------
    @property
    def n_models(self) -> int:
        return int(self._data.shape[0])

    @property
    def n_params(self) -> int:
        return int(self._data.shape[1])

    def __len__(self) -> int:
        return self.n_models

    def _require(self, column: str, why: str) -> None:
        if column not in self.columns:
            raise ZooFormatError(f"{self.metrics_file}: missing column {column!r}{' (needed ' + why + ')' if why else ''}; "
                                 f"columns are {self.columns}")

    def column(self, name: str) -> np.ndarray | list:
        """One metrics column for all rows (see :func:`read_metrics_columns`)."""
        self._require(name, "")
        return self.metric_columns[name]

    def metrics_rows(self, rows: Sequence[int] | np.ndarray) -> list[dict[str, Any]]:
        """The metrics of the given rows as dicts ``column -> int | float | str | None``."""
        return _row_dicts(self.metric_columns, rows)

    def _text(self, name: str, rows: np.ndarray) -> list[str]:
        col = self.metric_columns[name]
        vals = col[rows].tolist() if isinstance(col, np.ndarray) else [col[i] for i in rows.tolist()]
        return [str(v).strip().lower() for v in vals]

    def arch(self, activation: str) -> Architecture:
        """The zoo's architecture with the given activation."""
        return arch_from_layout(self.layout, _activation_name(activation, str(self.metrics_file)),
                                stride=self.stride, padding=self.padding, source=self.layout_file)

    # ----- selection -----------------------------------------------------------------------
    def select(
        self, split: str | None = None, *, activation: str | None = None, final_step: int | None = 86,
        step_column: str = "step", activation_column: str = "config.activation",
        where: Mapping[str, Any] | Callable[[dict[str, Any]], bool] | None = None,
        limit: int | None = None,
    ) -> np.ndarray:
        """Row indices (into ``weights.npy``) following the public pipeline, in its item order.

        1. rows in ``order_file`` order (file order without one); 2. keep ``step_column ==
        final_step`` (skipped when None); 3. ``split`` in ``{"train", "val", "test"}`` by
        :func:`split_indices_iid` (None: all); 4. keep ``activation_column == activation``;
        5. ``where``: a dict ``column -> value`` (or ``column -> callable(value) -> bool``) or a
        callable on the metrics row; 6. the first ``limit``.
        """
        rows = self.order if self.order is not None else np.arange(self.n_models, dtype=np.int64)
        if final_step is not None:
            self._require(step_column, f"to keep step == {final_step}; pass final_step=None to keep all steps")
            col = self.metric_columns[step_column]
            vals = col[rows] if isinstance(col, np.ndarray) else np.array([col[i] for i in rows.tolist()], dtype=object)
            rows = rows[np.asarray(vals == final_step, dtype=bool)]
        if split is not None:
            parts = split_indices_iid(len(rows))
            if split not in parts:
                raise ValueError(f"split must be 'train', 'val', 'test' or None, got {split!r}")
            rows = rows[np.asarray(parts[split], dtype=np.int64)]
        if activation is not None:
            self._require(activation_column, f"to filter by activation {activation!r}")
            act = str(activation).strip().lower()
            rows = rows[np.array([v == act for v in self._text(activation_column, rows)], dtype=bool)]
        if where is not None and len(rows):
            if callable(where):
                keep = np.array([bool(where(m)) for m in self.metrics_rows(rows)], dtype=bool)
            else:
                keep = np.ones(len(rows), dtype=bool)
                for c, v in where.items():
                    self._require(c, "by the where= filter")
                    col = self.metric_columns[c]
                    vals = col[rows].tolist() if isinstance(col, np.ndarray) else [col[i] for i in rows.tolist()]
                    keep &= np.array([bool(v(x)) if callable(v) else x == v for x in vals], dtype=bool)
            rows = rows[keep]
        if limit is not None:
            rows = rows[:limit]
        return np.ascontiguousarray(rows, dtype=np.int64)

    # ----- loading -------------------------------------------------------------------------
    def _arch_for(self, rows: np.ndarray, arch_activation: str | None) -> Architecture:
        if arch_activation is not None:
            return self.arch(arch_activation)
        if "config.activation" not in self.columns:
            raise ZooFormatError(f"{self.metrics_file}: no 'config.activation' column to infer the activation "
                                 "from; pass activation=...")
        acts = sorted(set(self._text("config.activation", rows)))
        if len(acts) > 1:
            raise ValueError(f"the selected networks mix activations {acts} ({self.metrics_file}); filter with "
                             "activation=... or pass arch_activation=... to force one Architecture")
        return self.arch(acts[0] if acts else "relu")

    def _read_rows(self, rows: np.ndarray, check_finite: bool) -> np.ndarray:
        if rows.size and (rows.min() < 0 or rows.max() >= self.n_models):
            raise IndexError(f"rows must be in [0, {self.n_models}) for {self.weights_file}")
        srt = np.argsort(rows, kind="stable")
        out = np.empty((rows.size, self.n_params), dtype=self._data.dtype)
        try:
            out[srt] = self._data[rows[srt]]
        except (OSError, ValueError) as e:
            raise ZooFormatError(f"{self.weights_file}: cannot read rows: {e}") from None
        if check_finite and not np.isfinite(out).all():
            bad = rows[~np.isfinite(out).all(axis=1)]
            raise ZooFormatError(f"{self.weights_file}: non-finite weights in row(s) {bad[:10].tolist()}"
                                 f"{' ...' if bad.size > 10 else ''}; pass check_finite=False to keep them")
        return out

    def iter(
        self, rows: Sequence[int] | np.ndarray, *, chunk_size: int = 4096, arch_activation: str | None = None,
        dtype: torch.dtype = torch.float32, check_finite: bool = True, label_column: str = "test_accuracy",
    ) -> Iterator[CNNZooBatch]:
        """Stream the given rows in batches of ``chunk_size`` (one :class:`CNNZooBatch` each)."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        if chunk_size <= 0:
            raise ValueError(f"chunk_size must be > 0, got {chunk_size}")
        arch = self._arch_for(rows, arch_activation)
        for s in range(0, rows.size, chunk_size):
            r = rows[s:s + chunk_size]
            ws, bs = unflatten_tf(self._read_rows(r, check_finite), self.layout, arch, dtype=dtype)
            yield self._batch(arch, ws, bs, r, label_column)

    def _batch(self, arch, ws, bs, r, label_column) -> CNNZooBatch:
        labels = None
        if label_column in self.columns:
            col = self.metric_columns[label_column]
            if not isinstance(col, np.ndarray):
                raise ZooFormatError(f"{self.metrics_file}: label column {label_column!r} is not numeric")
            labels = torch.from_numpy(col[r].astype(np.float32))
        return CNNZooBatch(arch, ws, bs, labels, r.copy(), self.metrics_rows(r))

    def load(
        self, rows: Sequence[int] | np.ndarray, *, arch_activation: str | None = None, dtype: torch.dtype = torch.float32,
        check_finite: bool = True, label_column: str = "test_accuracy",
    ) -> CNNZooBatch:
        """Read the given rows (in the given order) as one :class:`CNNZooBatch`.

        The Architecture's activation comes from ``config.activation`` of the rows (an error if
        they mix activations) unless ``arch_activation`` is given. ``labels`` is ``label_column``.
        """
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        arch = self._arch_for(rows, arch_activation)
        ws, bs = unflatten_tf(self._read_rows(rows, check_finite), self.layout, arch, dtype=dtype)
        return self._batch(arch, ws, bs, rows, label_column)


def open_small_cnn_zoo(root: PathLike, **kwargs) -> SmallCNNZoo:
    """Open a Small-CNN-Zoo folder (see :class:`SmallCNNZoo` for the keyword arguments)."""
    return SmallCNNZoo(root, **kwargs)


def load_small_cnn_zoo(
    root: PathLike, split: str | None = None, *, activation: str | None = None, final_step: int | None = 86,
    order_file: PathLike | None = None, where: Mapping[str, Any] | Callable | None = None,
    limit: int | None = None, dtype: torch.dtype = torch.float32, check_finite: bool = True,
    **open_kwargs,
) -> CNNZooBatch:
    """Open the zoo, :meth:`~SmallCNNZoo.select` rows and load them in one call.

    Example (the ScaleGMN CIFAR-10-GS ReLU training set)::

        b = load_small_cnn_zoo("data/cifar10", "train", activation="relu",
                               order_file="nfn/experiments/predict_gen_data_splits/cifar10_split.csv")
        b.arch == Architecture.small_cnn_zoo("relu");  b.labels  # test accuracies
    """
    zoo = SmallCNNZoo(root, order_file=order_file, **open_kwargs)
    rows = zoo.select(split, activation=activation, final_step=final_step, where=where, limit=limit)
    return zoo.load(rows, arch_activation=activation, dtype=dtype, check_finite=check_finite)


# ==============================================================================================
# conversions
# ==============================================================================================
def to_nfn(weights: Sequence[Tensor], biases: Sequence[Tensor | None] | None = None):
    """nfn layout (channel axis 1): see :func:`scalegmn_ext.weightspace.adapters.to_nfn`."""
    return _adapters.to_nfn(weights, biases)


def _import_pyg():
    try:
        from torch_geometric.data import Batch, Data
    except ImportError as e:
        raise ImportError(
            "to_pyg_batch needs PyTorch Geometric: pip install torch_geometric "
            f"(pure Python; install it into the environment that has torch). Import error: {e}") from e
    return Batch, Data


def to_pyg_batch(
    arch: Architecture, weights: Sequence[Tensor], biases: Sequence[Tensor | None] | None = None,
    labels: Tensor | Sequence | None = None, *, input_value: float = 1.0, dense_centre: bool = True,
    edge_order: str = "receiver",
):
    """B networks -> one ``torch_geometric.data.Batch``, built without a per-graph loop.

    Per graph (N = ``arch.num_nodes``, E = ``arch.num_edges``, K = ``arch.edge_dim``):
    ``x [N, 1]`` (inputs: ``input_value``, others: biases), ``edge_index [2, E]`` (sender,
    receiver), ``edge_attr [E, K]``, ``node_type [N]``, ``edge_type [E]``, ``mask_hidden [N, 1]``,
    ``mask_first_layer [N, 1]`` (bool) and ``y [1, ...]`` (from ``labels[b]``, when given),
    concatenated over graphs with ``batch``/``ptr`` as PyG does. Edges are in the package's
    receiver-major order (edge ``(o, i)`` of layer ``l`` at ``offset_l + o * in + i``: the
    row-major order of the torch weight) or, with ``edge_order="sender"``, the public ScaleGMN
    code's sender-major order. The result equals ``Batch.from_data_list`` of the per-network
    ``Data`` objects, including ``get_example`` / ``to_data_list``.

    ``input_value=0.0, dense_centre=False`` reproduce the public code's CNN graphs.
    """
    Batch, Data = _import_pyg()
    if edge_order not in ("receiver", "sender"):
        raise ValueError(f"edge_order must be 'receiver' or 'sender', got {edge_order!r}")
    g = WeightGraph.from_weights(arch, weights, biases, input_value=input_value, dense_centre=dense_centre)
    B, N, E, K = g.batch_size, arch.num_nodes, arch.num_edges, g.edge.shape[-1]
    s = g.structure.to(g.node.device)
    edge, ei_local, etype = g.edge, s.edge_index, s.edge_type
    if edge_order == "sender":
        perm = s.sender_major_perm.to(g.node.device)
        edge, ei_local, etype = edge[:, perm], ei_local[:, perm], etype[perm]
    dev = g.node.device
    shift = torch.arange(B, device=dev) * N
    edge_index = (ei_local.unsqueeze(1) + shift.view(1, -1, 1)).reshape(2, B * E)
    out = Batch(_base_cls=Data)
    out.x = g.node.reshape(B * N, 1)
    out.edge_index = edge_index
    out.edge_attr = edge.reshape(B * E, K)
    out.node_type = s.node_type.repeat(B)
    out.edge_type = etype.repeat(B)
    out.mask_hidden = s.hidden_mask.view(N, 1).repeat(B, 1)
    out.mask_first_layer = s.input_mask.view(N, 1).repeat(B, 1)
    keys = ["x", "edge_index", "edge_attr", "node_type", "edge_type", "mask_hidden", "mask_first_layer"]
    sizes = {"x": N, "edge_index": E, "edge_attr": E, "node_type": N, "edge_type": E,
             "mask_hidden": N, "mask_first_layer": N}
    if labels is not None:
        y = labels if isinstance(labels, Tensor) else torch.as_tensor(labels)
        if y.dim() == 0 or y.shape[0] != B:
            raise ValueError(f"labels must have a leading axis of length {B} (one per network), got shape {tuple(y.shape)}")
        out.y = y.to(dev)
        keys.append("y")
        sizes["y"] = 1
    out.batch = torch.arange(B, device=dev).repeat_interleave(N)
    out.ptr = torch.arange(B + 1, device=dev) * N
    ar = torch.arange(B + 1)
    out._num_graphs = B
    out._slice_dict = {k: ar * sizes[k] for k in keys}
    out._inc_dict = {k: (torch.arange(B) * N if k == "edge_index" else torch.zeros(B, dtype=torch.long)) for k in keys}
    return out
