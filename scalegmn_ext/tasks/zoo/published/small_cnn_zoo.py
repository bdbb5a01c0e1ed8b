"""Reader of the Small CNN Zoo (Unterthiner et al. 2020), as loaded by NFN / Neural Graphs / ScaleGMN.

A folder with

* ``weights.npy``: ``[n_models, n_params]`` float32, one flat TF-layout vector per checkpoint
  (memory-mapped, never fully read unless asked for; ``np.load(allow_pickle=False)``);
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
"""

from __future__ import annotations

import ast
import csv
import dataclasses
import gzip
import io
import math
import random
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ....weightspace.architecture import ACTIVATION_SYMMETRY, Architecture, LayerSpec
from .common import PathLike, ZooBatch, ZooFormatError

__all__ = [
    "CNNZooBatch",
    "LayoutEntry",
    "read_layout_csv",
    "read_metrics_columns",
    "read_metrics_csv",
    "read_order_file",
    "arch_from_layout",
    "split_indices_iid",
    "unflatten_tf",
    "SmallCNNZoo",
    "open_small_cnn_zoo",
    "load_small_cnn_zoo",
]


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
    return open(path, encoding="utf-8", newline="")


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
                raise ZooFormatError(
                    f"{path}:{n}: {row['varname']!r} has shape {shape} ({math.prod(shape)} values) "
                    f"but range [{start}, {end}) holds {end - start}"
                )
            if row.get("size") not in (None, "") and int(row["size"]) != end - start:
                raise ZooFormatError(
                    f"{path}:{n}: {row['varname']!r} has size {row['size']} but range "
                    f"[{start}, {end}) holds {end - start}"
                )
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
    picked = {
        k: (v[rows].tolist() if isinstance(v, np.ndarray) else [v[i] for i in rows.tolist()])
        for k, v in columns.items()
    }
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
        raise ZooFormatError(
            f"{path}: row indices must be in [0, {n_models}) (the number of models), "
            f"got range [{order.min()}, {order.max()}]"
        )
    return order


def arch_from_layout(
    layout: Sequence[LayoutEntry],
    activation: str = "relu",
    *,
    stride: int = 2,
    padding: int = 0,
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
            raise ZooFormatError(
                f"{src}kernel {k.varname!r} has shape {k.shape}; expected 4-D (H, W, Cin, Cout) or 2-D (in, out)"
            )
        if "bias" in d and d["bias"].shape != (spec.out_features,):
            raise ZooFormatError(
                f"{src}bias {d['bias'].varname!r} has shape {d['bias'].shape}, expected "
                f"({spec.out_features},) to match kernel {k.varname!r} {k.shape}"
            )
        layers.append(spec)
    try:
        return Architecture(tuple(layers), activation)
    except ValueError as e:
        raise ZooFormatError(f"{src}layout does not describe a supported network: {e}") from None


def unflatten_tf(
    flat: np.ndarray,
    layout: Sequence[LayoutEntry],
    arch: Architecture,
    *,
    dtype: torch.dtype = torch.float32,
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
    for (_scope, d), spec in zip(scopes.items(), arch.layers):
        k = d["kernel"]
        a = flat[:, k.start : k.end].reshape((B,) + k.shape)
        a = a.transpose(0, 4, 3, 1, 2) if a.ndim == 5 else a.transpose(0, 2, 1)
        w = torch.from_numpy(np.ascontiguousarray(a)).to(dtype)
        if tuple(w.shape[1:]) != spec.weight_shape:
            raise ValueError(
                f"kernel {k.varname!r} gives {tuple(w.shape[1:])}, the architecture expects {spec.weight_shape}"
            )
        ws.append(w)
        if "bias" in d:
            e = d["bias"]
            bs.append(torch.from_numpy(np.ascontiguousarray(flat[:, e.start : e.end])).to(dtype))
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
        raise ZooFormatError(
            f"{where}: activation {value!r} is not supported (supported: {sorted(ACTIVATION_SYMMETRY)})"
        )
    return name


class SmallCNNZoo:
    """An opened Small-CNN-Zoo folder: memory-mapped weights, parsed metrics and layout.

    Nothing of ``weights.npy`` is read until :meth:`load` / :meth:`iter` pick rows. Use
    :meth:`select` for the public pipeline (order file, final step, split, activation).
    """

    def __init__(
        self,
        root: PathLike,
        *,
        weights: PathLike = "weights.npy",
        metrics: PathLike | None = None,
        layout: PathLike = "layout.csv",
        order_file: PathLike | None = None,
        stride: int = 2,
        padding: int = 0,
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
            raise ZooFormatError(
                f"{self.weights_file}: cannot memory-map as a numeric .npy array "
                f"(truncated file or pickled objects?): {e}"
            ) from None
        except OSError as e:
            raise ZooFormatError(f"{self.weights_file}: cannot read: {e}") from None
        if not isinstance(data, np.ndarray) or data.ndim != 2:
            raise ZooFormatError(
                f"{self.weights_file}: expected a 2-D array [n_models, n_params], got shape "
                f"{getattr(data, 'shape', None)}"
            )
        if not np.issubdtype(data.dtype, np.floating):
            raise ZooFormatError(f"{self.weights_file}: expected floating-point weights, got dtype {data.dtype}")
        self._data = data

        self.layout = read_layout_csv(self.layout_file)
        total = max(e.end for e in self.layout)
        covered = sum(e.end - e.start for e in self.layout)
        if data.shape[1] != total or covered != total:
            raise ZooFormatError(
                f"{self.weights_file}: rows have {data.shape[1]} values but {self.layout_file} lays out "
                f"{covered} values in [0, {total}); the weights file is truncated or belongs to another layout"
            )
        self.metric_columns = read_metrics_columns(self.metrics_file)
        self.columns = list(self.metric_columns)
        n_rows = len(next(iter(self.metric_columns.values())))
        if n_rows != data.shape[0]:
            raise ZooFormatError(
                f"{self.metrics_file}: has {n_rows} rows but {self.weights_file} has "
                f"{data.shape[0]} models; they must correspond row by row"
            )
        self.order = None if order_file is None else read_order_file(order_file, data.shape[0])
        self.order_file = None if order_file is None else Path(order_file)
        # Validate the layout now (clear error at open time), with a placeholder activation.
        self._arch_relu = arch_from_layout(
            self.layout, "relu", stride=self.stride, padding=self.padding, source=self.layout_file
        )

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
            raise ZooFormatError(
                f"{self.metrics_file}: missing column {column!r}{' (needed ' + why + ')' if why else ''}; "
                f"columns are {self.columns}"
            )

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
        return arch_from_layout(
            self.layout,
            _activation_name(activation, str(self.metrics_file)),
            stride=self.stride,
            padding=self.padding,
            source=self.layout_file,
        )

    # ----- selection -----------------------------------------------------------------------
    def select(
        self,
        split: str | None = None,
        *,
        activation: str | None = None,
        final_step: int | None = 86,
        step_column: str = "step",
        activation_column: str = "config.activation",
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
            raise ZooFormatError(
                f"{self.metrics_file}: no 'config.activation' column to infer the activation from; pass activation=..."
            )
        acts = sorted(set(self._text("config.activation", rows)))
        if len(acts) > 1:
            raise ValueError(
                f"the selected networks mix activations {acts} ({self.metrics_file}); filter with "
                "activation=... or pass arch_activation=... to force one Architecture"
            )
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
            raise ZooFormatError(
                f"{self.weights_file}: non-finite weights in row(s) {bad[:10].tolist()}"
                f"{' ...' if bad.size > 10 else ''}; pass check_finite=False to keep them"
            )
        return out

    def iter(
        self,
        rows: Sequence[int] | np.ndarray,
        *,
        chunk_size: int = 4096,
        arch_activation: str | None = None,
        dtype: torch.dtype = torch.float32,
        check_finite: bool = True,
        label_column: str = "test_accuracy",
    ) -> Iterator[CNNZooBatch]:
        """Stream the given rows in batches of ``chunk_size`` (one :class:`CNNZooBatch` each)."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        if chunk_size <= 0:
            raise ValueError(f"chunk_size must be > 0, got {chunk_size}")
        arch = self._arch_for(rows, arch_activation)
        for s in range(0, rows.size, chunk_size):
            r = rows[s : s + chunk_size]
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
        self,
        rows: Sequence[int] | np.ndarray,
        *,
        arch_activation: str | None = None,
        dtype: torch.dtype = torch.float32,
        check_finite: bool = True,
        label_column: str = "test_accuracy",
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
    root: PathLike,
    split: str | None = None,
    *,
    activation: str | None = None,
    final_step: int | None = 86,
    order_file: PathLike | None = None,
    where: Mapping[str, Any] | Callable | None = None,
    limit: int | None = None,
    dtype: torch.dtype = torch.float32,
    check_finite: bool = True,
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
