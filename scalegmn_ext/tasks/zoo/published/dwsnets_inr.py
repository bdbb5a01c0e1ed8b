"""Reader of the DWSNets MNIST-INR zoo (also used by ScaleGMN).

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

``.pth`` files are read with ``torch.load(weights_only=True)``: loading never runs code.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import random
import re
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
from torch import Tensor

from ...._io import atomic_write_json
from ....weightspace.adapters import check_layer_shapes
from ....weightspace.architecture import Architecture
from .common import PathLike, ZooBatch, ZooFormatError, empty_batch

__all__ = [
    "INRZooBatch",
    "inr_key_names",
    "load_inr_file",
    "read_inr_split_file",
    "scan_mnist_inrs",
    "make_mnist_inr_splits",
    "write_inr_split_file",
    "list_mnist_inrs",
    "load_mnist_inrs",
    "iter_mnist_inrs",
]


@dataclasses.dataclass
class INRZooBatch(ZooBatch):
    """MNIST INRs: ``labels`` ``[B]`` int64 digit classes, ``paths`` the files read (resolved)."""

    paths: list[str] = dataclasses.field(default_factory=list)


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
    path: PathLike,
    arch: Architecture | None = None,
    *,
    key_format: str = "seq.{i}",
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
            + (f" (missing {missing})" if missing else "")
            + (f" (unexpected {extra})" if extra else "")
        )
    ws, bs = [], []
    for i, spec in enumerate(arch.layers):
        stem = key_format.format(i=i)
        w = sd[f"{stem}.weight"]
        b = sd[f"{stem}.bias"] if spec.bias else None
        for name, t in ((f"{stem}.weight", w), (f"{stem}.bias", b)):
            if t is not None and (not isinstance(t, Tensor) or not t.is_floating_point()):
                raise ZooFormatError(
                    f"{p}: {name} must be a floating-point Tensor, got {getattr(t, 'dtype', type(t).__name__)}"
                )
        try:
            check_layer_shapes(arch, i, w, b, weight_name=f"{stem}.weight", bias_name=f"{stem}.bias")
        except ValueError as e:
            raise ZooFormatError(f"{p}: {e}") from None
        if b is None:
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
    root: PathLike,
    val_size: int = 5000,
    seed: int = 0,
    *,
    relative: bool = True,
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

    return {
        "train": pick(found["train"], train_idx),
        "val": pick(found["train"], val_idx),
        "test": pick(found["test"], range(len(found["test"]["path"]))),
    }


def write_inr_split_file(splits: Mapping[str, Mapping[str, Sequence]], path: PathLike) -> None:
    """Write a split dict as JSON (atomically)."""
    atomic_write_json(
        os.fspath(path), {k: {kk: list(vv) for kk, vv in v.items()} for k, v in splits.items()}, indent=None
    )


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
                raise ZooFormatError(
                    f"{path}: split {split!r} has {len(paths)} paths but "
                    f"{len(labels) if isinstance(labels, list) else 'no list of'} labels"
                )
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
    root: PathLike | None = None,
    split: str | None = None,
    *,
    split_file: PathLike | None = None,
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
        raise ValueError(
            f"without a split file, split must be 'train', 'test' or None, got {split!r}; "
            "make_mnist_inr_splits() creates a split with a validation set"
        )
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
    root: PathLike | None = None,
    split: str | None = None,
    *,
    split_file: PathLike | None = None,
    paths: Sequence[PathLike] | None = None,
    labels: Sequence[int] | None = None,
    indices: Sequence[int] | None = None,
    limit: int | None = None,
    chunk_size: int = 4096,
    arch: Architecture | None = None,
    dtype: torch.dtype = torch.float32,
    num_workers: int = 0,
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
    resolve = _PathResolver(
        Path(root) if root is not None else None, Path(split_file) if split_file is not None else None
    )
    sel = _select(len(plist), indices, limit)
    pool = ThreadPoolExecutor(num_workers) if num_workers > 0 else None
    try:
        for start in range(0, len(sel), chunk_size):
            chunk = sel[start : start + chunk_size]
            files = [resolve(plist[i]) for i in chunk]
            loaded = (
                list(pool.map(lambda f: load_inr_file(f, arch), files))
                if pool
                else [load_inr_file(f, arch) for f in files]
            )
            ws = [torch.stack([one[0][l] for one in loaded]).to(dtype) for l in range(arch.num_layers)]
            bs = [torch.stack([one[1][l] for one in loaded]).to(dtype) for l in range(arch.num_layers)]
            yield INRZooBatch(arch, ws, bs, torch.tensor([llist[i] for i in chunk], dtype=torch.long), files)
    finally:
        if pool is not None:
            pool.shutdown()


def load_mnist_inrs(
    root: PathLike | None = None,
    split: str | None = None,
    *,
    split_file: PathLike | None = None,
    paths: Sequence[PathLike] | None = None,
    labels: Sequence[int] | None = None,
    indices: Sequence[int] | None = None,
    limit: int | None = None,
    arch: Architecture | None = None,
    dtype: torch.dtype = torch.float32,
    num_workers: int = 0,
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
    parts = list(
        iter_mnist_inrs(
            root,
            split,
            split_file=split_file,
            paths=paths,
            labels=labels,
            indices=indices,
            limit=limit,
            chunk_size=chunk_size,
            arch=arch,
            dtype=dtype,
            num_workers=num_workers,
        )
    )
    if not parts:
        ws, bs = empty_batch(arch, dtype)
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
