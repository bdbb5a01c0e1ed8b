"""The on-disk zoo format: one directory per zoo, safetensors + JSON + CSV only (no pickle).

Layout of a zoo directory::

    zoo.json                    metadata: format name/version, kind, architecture, generator
                                config, columns, shard index (rows, bytes, sha256), split, summary
    networks.csv                one row per stored network (labels, metrics, hyper-parameters, split)
    shards/chunk-00000.safetensors
    shards/chunk-00001.safetensors ...

Each shard holds the weights of consecutive rows, stacked per layer: ``layers.{l}.weight``
``[rows, ...]`` (torch layout) and ``layers.{l}.bias`` ``[rows, out]``, so loading a batch is a
slice (memory-mapped by safetensors). The shard's header metadata also carries its rows' CSV
records (``rows_json``), so a shard is a self-contained, atomically written unit of work.

Generation (:class:`ZooWriter`) is resumable and crash-safe:

* every file is written to a temporary name in the same directory, fsynced and moved into place
  with ``os.replace`` (readers see either the old or the new file, never a partial one);
* ``zoo.json`` is first written with ``"complete": false`` and the generator config; a rerun
  with the same config keeps the valid shards and generates only the missing ones (a rerun
  with a different config is refused rather than mixing two zoos);
* ``networks.csv`` and the final ``zoo.json`` (``"complete": true``, shard sizes and SHA-256)
  are written last, from the shards' own records.

Reading (:class:`Zoo`) validates everything it touches and raises ``ValueError`` naming the
file and the problem (bad JSON, unknown format version, incomplete zoo, CSV header/row count,
truncated or mismatched shard); it never returns a partial zoo.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import math
import os
import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..._io import atomic_write_bytes, atomic_write_text
from ...weightspace.architecture import Architecture, LayerSpec, Symmetry

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "Zoo",
    "ZooWriter",
    "arch_to_dict",
    "arch_from_dict",
    "atomic_write_bytes",
    "atomic_write_text",
    "assign_splits",
    "require_safetensors",
]

FORMAT_NAME = "scalegmn_ext.tasks.zoo"
FORMAT_VERSION = 1
META_FILE = "zoo.json"
CSV_FILE = "networks.csv"
SHARD_DIR = "shards"
LOCK_FILE = ".lock"
COLUMN_TYPES = ("int", "float", "str", "bool")
SPLITS = ("train", "val", "test")


def require_safetensors():
    """The ``safetensors`` modules, or an ImportError that says what to install."""
    try:
        import safetensors  # noqa: F401
        from safetensors import safe_open
        from safetensors.torch import save as st_save
    except ImportError as exc:  # pragma: no cover - exercised by monkeypatching in the tests
        raise ImportError(
            "scalegmn_ext zoos store weights in safetensors files; install the package with `pip install safetensors`"
        ) from exc
    return safe_open, st_save


# ----------------------------------------------------------------------------------------------
# atomic writes
# ----------------------------------------------------------------------------------------------
def _remove_stale_tmp(folder: str) -> None:
    if not os.path.isdir(folder):
        return
    for name in os.listdir(folder):
        if name.startswith(".") and ".tmp-" in name:
            try:
                os.unlink(os.path.join(folder, name))
            except OSError:
                pass


# ----------------------------------------------------------------------------------------------
# Architecture <-> dict
# ----------------------------------------------------------------------------------------------
_LAYER_KEYS = {"kind", "in_features", "out_features", "kernel_size", "stride", "padding", "bias"}
_ARCH_KEYS = {"layers", "activation", "w0", "output_offset", "symmetry"}


def arch_to_dict(arch: Architecture) -> dict:
    """A JSON-serialisable description of ``arch`` (inverse: :func:`arch_from_dict`)."""
    if not isinstance(arch, Architecture):
        raise TypeError(f"arch must be an Architecture, got {type(arch).__name__}")
    return {
        "layers": [
            {
                "kind": l.kind,
                "in_features": l.in_features,
                "out_features": l.out_features,
                "kernel_size": list(l.kernel_size),
                "stride": l.stride,
                "padding": l.padding,
                "bias": l.bias,
            }
            for l in arch.layers
        ],
        "activation": arch.activation,
        "w0": float(arch.w0),
        "output_offset": float(arch.output_offset),
        "symmetry": arch.symmetry.value,
    }


def arch_from_dict(d: Any, where: str = "arch") -> Architecture:
    """Rebuild an :class:`Architecture` from :func:`arch_to_dict` output; validates every field."""
    if not isinstance(d, dict):
        raise ValueError(f"{where} must be an object, got {type(d).__name__}")
    unknown = set(d) - _ARCH_KEYS
    if unknown or "layers" not in d:
        raise ValueError(f"{where} must have keys {sorted(_ARCH_KEYS)} ('layers' required), got {sorted(d)}")
    if not isinstance(d["layers"], list) or not d["layers"]:
        raise ValueError(f"{where}.layers must be a non-empty list")
    layers = []
    for i, ld in enumerate(d["layers"]):
        w = f"{where}.layers[{i}]"
        if not isinstance(ld, dict) or set(ld) - _LAYER_KEYS or not {"kind", "in_features", "out_features"} <= set(ld):
            raise ValueError(f"{w} must be an object with keys {sorted(_LAYER_KEYS)}, got {ld!r}")
        ints = {k: ld[k] for k in ("in_features", "out_features", "stride", "padding") if k in ld}
        for k, v in ints.items():
            if isinstance(v, bool) or not isinstance(v, int):
                raise ValueError(f"{w}.{k} must be an int, got {v!r}")
        ks = ld.get("kernel_size", [1, 1])
        if not isinstance(ks, list) or len(ks) != 2 or any(isinstance(k, bool) or not isinstance(k, int) for k in ks):
            raise ValueError(f"{w}.kernel_size must be a list of two ints, got {ks!r}")
        bias = ld.get("bias", True)
        if not isinstance(bias, bool):
            raise ValueError(f"{w}.bias must be true or false, got {bias!r}")
        try:
            layers.append(LayerSpec(ld["kind"], kernel_size=tuple(ks), bias=bias, **ints))
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{w}: {exc}") from None
    kw = {}
    for k in ("w0", "output_offset"):
        if k in d:
            if isinstance(d[k], bool) or not isinstance(d[k], (int, float)) or not math.isfinite(d[k]):
                raise ValueError(f"{where}.{k} must be a finite number, got {d[k]!r}")
            kw[k] = float(d[k])
    try:
        return Architecture(
            tuple(layers),
            d.get("activation", "relu"),
            symmetry=Symmetry(d["symmetry"]) if d.get("symmetry") is not None else None,
            **kw,
        )
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{where}: {exc}") from None


# ----------------------------------------------------------------------------------------------
# CSV with typed columns
# ----------------------------------------------------------------------------------------------
def _fmt(v: Any, typ: str) -> str:
    if typ == "float":
        v = float(v)
        return repr(v)  # shortest round-tripping repr; 'nan'/'inf' are read back by float()
    if typ == "int":
        return str(int(v))
    if typ == "bool":
        return "true" if bool(v) else "false"
    return str(v)


def _parse(s: str, typ: str, where: str) -> Any:
    try:
        if typ == "float":
            return float(s)
        if typ == "int":
            return int(s)
        if typ == "bool":
            if s not in ("true", "false"):
                raise ValueError(f"expected true/false, got {s!r}")
            return s == "true"
        return s
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def _rows_to_csv(rows: Sequence[dict], columns: Sequence[tuple[str, str]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([c for c, _ in columns])
    for r in rows:
        w.writerow([_fmt(r[c], t) for c, t in columns])
    return buf.getvalue()


def _check_columns(columns: Any, where: str) -> list[tuple[str, str]]:
    if not isinstance(columns, list) or not columns:
        raise ValueError(f"{where}: 'columns' must be a non-empty list of [name, type] pairs")
    out = []
    for c in columns:
        if not isinstance(c, (list, tuple)) or len(c) != 2 or not isinstance(c[0], str) or c[1] not in COLUMN_TYPES:
            raise ValueError(f"{where}: bad column {c!r}; expected [name, one of {COLUMN_TYPES}]")
        out.append((c[0], c[1]))
    names = [c for c, _ in out]
    if len(set(names)) != len(names):
        raise ValueError(f"{where}: repeated column names in {names}")
    return out


# ----------------------------------------------------------------------------------------------
# splits
# ----------------------------------------------------------------------------------------------
def assign_splits(num_groups: int, seed: int, fractions: dict[str, float]) -> list[str]:
    """Seeded split of ``num_groups`` items into train/val/test by ``fractions``.

    A seeded random permutation; the first ``round(f_test * n)`` items of it go to test, the next
    ``round(f_val * n)`` to val, the rest to train. Deterministic given (n, seed, fractions).
    """
    if (
        set(fractions) != set(SPLITS)
        or any(f < 0 for f in fractions.values())
        or abs(sum(fractions.values()) - 1) > 1e-6
    ):
        raise ValueError(f"split fractions must give {SPLITS} as non-negative numbers summing to 1, got {fractions}")
    g = torch.Generator().manual_seed(int(seed))
    perm = torch.randperm(num_groups, generator=g).tolist()
    n_test = int(round(fractions["test"] * num_groups))
    n_val = int(round(fractions["val"] * num_groups))
    out = ["train"] * num_groups
    for k, i in enumerate(perm):
        out[i] = "test" if k < n_test else ("val" if k < n_test + n_val else "train")
    return out


# ----------------------------------------------------------------------------------------------
# shards
# ----------------------------------------------------------------------------------------------
def _shard_name(k: int) -> str:
    return f"{SHARD_DIR}/chunk-{k:05d}.safetensors"


def _expected_tensors(arch: Architecture, rows: int) -> dict[str, tuple[int, ...]]:
    exp = {}
    for l, spec in enumerate(arch.layers):
        exp[f"layers.{l}.weight"] = (rows, *spec.weight_shape)
        exp[f"layers.{l}.bias"] = (rows, spec.out_features)
    return exp


def _read_shard_header(
    path: str, arch: Architecture, columns, expect_rows: int | None = None, expect_bytes: int | None = None
) -> tuple[int, list[dict]]:
    """Validate a shard's header (tensor names, shapes, dtype) and return (rows, row records)."""
    safe_open, _ = require_safetensors()
    if not os.path.isfile(path):
        raise ValueError(f"{path}: shard file is missing")
    size = os.path.getsize(path)
    if expect_bytes is not None and size != expect_bytes:
        raise ValueError(
            f"{path}: file has {size} bytes but the zoo index records {expect_bytes} (truncated or replaced shard)"
        )
    try:
        with safe_open(path, framework="pt") as f:
            meta = f.metadata() or {}
            shapes = {k: (tuple(f.get_slice(k).get_shape()), f.get_slice(k).get_dtype()) for k in f.keys()}
    except Exception as exc:  # SafetensorError, OSError
        raise ValueError(f"{path}: not a readable safetensors file ({exc})") from None
    try:
        records = json.loads(meta.get("rows_json", "null"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: header metadata 'rows_json' is not valid JSON ({exc})") from None
    if not isinstance(records, list):
        raise ValueError(f"{path}: header metadata lacks the 'rows_json' row records")
    rows = len(records)
    if expect_rows is not None and rows != expect_rows:
        raise ValueError(f"{path}: holds {rows} rows but the zoo index records {expect_rows}")
    exp = _expected_tensors(arch, rows)
    if set(shapes) != set(exp):
        raise ValueError(f"{path}: tensors {sorted(shapes)} do not match the architecture's {sorted(exp)}")
    for k, shp in exp.items():
        got, dt = shapes[k]
        if got != shp:
            raise ValueError(
                f"{path}: tensor {k!r} has shape {list(got)}, expected {list(shp)} ({rows} rows of {arch})"
            )
        if dt not in ("F32", "F64", "F16", "BF16"):
            raise ValueError(f"{path}: tensor {k!r} has dtype {dt}, expected a float type")
    names = {c for c, _ in columns}
    for i, r in enumerate(records):
        if not isinstance(r, dict) or not names <= set(r):
            raise ValueError(f"{path}: row record {i} lacks columns {sorted(names - set(r or {}))}")
    return rows, records


# ----------------------------------------------------------------------------------------------
# writer
# ----------------------------------------------------------------------------------------------
_MISSING = object()  # a key present on one side only


def _short_repr(v: Any, limit: int = 120) -> str:
    if v is _MISSING:
        return "(absent)"
    r = repr(v)
    return r if len(r) <= limit else r[: limit - 3] + "..."


def _differences(old: Any, new: Any, where: str) -> list[str]:
    """``["config.epochs: stored 5, new 3", ...]``: every differing leaf key of two JSON values,
    with both values, so that a refused rerun says exactly which setting to change back."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [
            d
            for k in sorted(set(old) | set(new), key=str)
            for d in _differences(old.get(k, _MISSING), new.get(k, _MISSING), f"{where}.{k}")
        ]
    if old == new:
        return []
    return [f"{where}: stored {_short_repr(old)}, new {_short_repr(new)}"]


class ZooWriter:
    """Resumable, crash-safe writer of one zoo directory (used by the zoo generators).

    Args:
        path: the zoo directory (created if missing).
        kind: ``"inr"`` or ``"cnn"`` (free-form string; stored).
        arch: the architecture of every stored network (for zoos mixing activations, the
            activation of each row is the ``activation`` column; ``arch`` then gives the rest).
        config: the generator settings (JSON-serialisable). A rerun must pass the same config;
            shards already written for it are kept.
        columns: ``[(name, type), ...]`` of the per-row records (types: int/float/str/bool).
            ``split`` (str) is added by :meth:`finalize`.
        num_chunks: how many shards the complete zoo has.
        extra: more JSON-serialisable metadata stored in ``zoo.json`` (e.g. data description).

    Use :meth:`chunk_done` / :meth:`write_chunk` per chunk, then :meth:`finalize`.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        kind: str,
        arch: Architecture,
        config: dict,
        columns: Sequence[tuple[str, str]],
        num_chunks: int,
        extra: dict | None = None,
    ) -> None:
        require_safetensors()
        self.path = os.fspath(path)
        self.kind = str(kind)
        self.arch = arch
        self.config = json.loads(json.dumps(config))  # normalise (tuples -> lists), checks serialisable
        self.columns = _check_columns([list(c) for c in columns], "columns")
        if any(c == "split" for c, _ in self.columns):
            raise ValueError("columns must not include 'split' (finalize() adds it)")
        self.num_chunks = int(num_chunks)
        self.extra = json.loads(json.dumps(extra or {}))
        self.meta_path = os.path.join(self.path, META_FILE)
        if os.path.isdir(self.path) and not os.path.isfile(self.meta_path):
            other = sorted(set(os.listdir(self.path)) - {SHARD_DIR, LOCK_FILE})
            if other:
                raise ValueError(
                    f"{self.path}: exists, holds no {META_FILE} and is not empty ({other[:5]}); "
                    "refusing to write a zoo into it - choose a new or empty directory"
                )
        os.makedirs(os.path.join(self.path, SHARD_DIR), exist_ok=True)
        self._lock_fd = _lock_dir(self.path)
        try:
            _remove_stale_tmp(self.path)
            _remove_stale_tmp(os.path.join(self.path, SHARD_DIR))
            self.already_complete = False
            header = self._header(complete=False)
            if os.path.isfile(self.meta_path):
                old = _load_json(self.meta_path)
                if old.get("format") != FORMAT_NAME:
                    raise ValueError(
                        f"{self.meta_path}: exists but is not a {FORMAT_NAME} file; choose another directory"
                    )
                diff = [
                    d
                    for k in ("kind", "arch", "config", "columns", "num_chunks")
                    for d in _differences(old.get(k, _MISSING), header[k], k)
                ]
                if diff:
                    raise ValueError(
                        f"{self.path} already holds a zoo made with different settings ({'; '.join(diff)}); "
                        "rerun with the same settings to resume, or choose another output directory"
                    )
                self.already_complete = bool(old.get("complete"))
                if self.already_complete:
                    try:  # a complete zoo that still validates is left untouched
                        Zoo(self.path)
                    except ValueError:
                        self.already_complete = False
            if not self.already_complete:
                atomic_write_text(self.meta_path, json.dumps(header, indent=1))
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Release the directory lock (also done by :meth:`finalize` and at process exit)."""
        fd, self._lock_fd = getattr(self, "_lock_fd", None), None
        if fd is not None:
            os.close(fd)  # closing the descriptor releases the flock

    def __enter__(self) -> ZooWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass

    def _header(self, complete: bool) -> dict:
        return {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "kind": self.kind,
            "complete": complete,
            "arch": arch_to_dict(self.arch),
            "config": self.config,
            "columns": [list(c) for c in self.columns],
            "num_chunks": self.num_chunks,
            **self.extra,
        }

    def shard_path(self, k: int) -> str:
        return os.path.join(self.path, _shard_name(k))

    def chunk_done(self, k: int) -> bool:
        """Whether chunk ``k`` already has a valid shard (an invalid one is deleted, to be redone)."""
        p = self.shard_path(k)
        if not os.path.exists(p):
            return False
        try:
            _read_shard_header(p, self.arch, self.columns)
            return True
        except ValueError:
            os.unlink(p)
            return False

    def write_chunk(self, k: int, weights: Sequence[Tensor], biases: Sequence[Tensor], rows: Sequence[dict]) -> None:
        """Atomically write chunk ``k``: stacked float32 weights/biases and the rows' records."""
        _, st_save = require_safetensors()
        if not 0 <= k < self.num_chunks:
            raise ValueError(f"chunk index {k} out of range [0, {self.num_chunks})")
        n = len(rows)
        tensors = {}
        exp = _expected_tensors(self.arch, n)
        for l in range(self.arch.num_layers):
            for name, t in ((f"layers.{l}.weight", weights[l]), (f"layers.{l}.bias", biases[l])):
                if tuple(t.shape) != exp[name]:
                    raise ValueError(f"chunk {k}: {name} has shape {tuple(t.shape)}, expected {exp[name]}")
                tensors[name] = t.detach().to("cpu", torch.float32).contiguous()
        recs = []
        for i, r in enumerate(rows):
            missing = [c for c, _ in self.columns if c not in r]
            if missing:
                raise ValueError(f"chunk {k}: row {i} lacks columns {missing}")
            recs.append({c: _parse(_fmt(r[c], t), t, f"chunk {k} row {i} column {c}") for c, t in self.columns})
        data = st_save(tensors, metadata={"rows_json": json.dumps(recs), "chunk": str(k)})
        atomic_write_bytes(self.shard_path(k), data)

    def finalize(
        self,
        *,
        split_seed: int,
        split_fractions: dict[str, float],
        group_column: str | None = None,
        summary: Callable[[list[dict]], dict] | None = None,
    ) -> Zoo:
        """Merge the shards' records into ``networks.csv``, assign splits, mark the zoo complete.

        ``group_column``: rows sharing this column's value (e.g. the CNN ``network`` id, whose
        checkpoints are separate rows) always land in the same split.
        """
        missing = [k for k in range(self.num_chunks) if not os.path.isfile(self.shard_path(k))]
        if missing:
            raise ValueError(f"{self.path}: cannot finalize, chunks {missing[:10]} are not written yet")
        records, shards = [], []
        for k in range(self.num_chunks):
            p = self.shard_path(k)
            rows, recs = _read_shard_header(p, self.arch, self.columns)
            records += recs
            shards.append({"file": _shard_name(k), "rows": rows, "bytes": os.path.getsize(p), "sha256": _sha256(p)})
        if group_column is None:
            groups = list(range(len(records)))
        else:
            keys = [r[group_column] for r in records]
            uniq = {k: i for i, k in enumerate(dict.fromkeys(keys))}
            groups = [uniq[k] for k in keys]
        split_of_group = assign_splits(max(groups) + 1 if groups else 0, split_seed, split_fractions)
        for r, g in zip(records, groups):
            r["split"] = split_of_group[g]
        columns = self.columns + [("split", "str")]
        atomic_write_text(os.path.join(self.path, CSV_FILE), _rows_to_csv(records, columns))
        header = self._header(complete=True)
        header.update(
            {
                "num_rows": len(records),
                "shards": shards,
                "split": {
                    "seed": int(split_seed),
                    "fractions": split_fractions,
                    "group_column": group_column,
                    "counts": {s: sum(r["split"] == s for r in records) for s in SPLITS},
                },
                "csv": CSV_FILE,
            }
        )
        if summary is not None:
            header["summary"] = json.loads(json.dumps(summary(records)))
        atomic_write_text(self.meta_path, json.dumps(header, indent=1))
        self.already_complete = True
        self.close()
        return Zoo(self.path)


def _lock_dir(path: str):
    """Exclusive advisory lock on ``path/.lock`` (so two generators never write one zoo at once).

    Released when the descriptor is closed, including when the process dies. Returns the
    descriptor, or None where ``fcntl`` is unavailable (no locking there).
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX
        return None
    fd = os.open(os.path.join(path, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise ValueError(
            f"{path}: another process is generating this zoo right now (locked {LOCK_FILE}); "
            "wait for it to finish or use another output directory"
        ) from None
    return fd


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _load_json(path: str) -> dict:
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise ValueError(f"{path}: cannot read ({exc})") from None
    try:
        d = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not valid JSON ({exc}); the file is corrupt or truncated") from None
    if not isinstance(d, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(d).__name__}")
    return d


# ----------------------------------------------------------------------------------------------
# reader
# ----------------------------------------------------------------------------------------------
class Zoo:
    """Read-only access to a complete zoo directory (safetensors + JSON + CSV; never unpickles).

    ``Zoo(path)`` validates ``zoo.json``, ``networks.csv`` and every shard header (names, shapes,
    row counts, file sizes) up front. Weights are read lazily (memory-mapped slices).

    * ``len(zoo)``, ``zoo.arch``, ``zoo.kind``, ``zoo.info`` (the parsed ``zoo.json``)
    * ``zoo.metadata`` (list of row dicts), ``zoo.columns`` (dict name -> list),
      ``zoo.column(name)`` (numpy array)
    * ``zoo.split("train" | "val" | "test")`` -> row indices (``LongTensor``)
    * ``zoo.load(indices)`` -> ``(weights, biases)`` stacked per layer
    * ``zoo.graphs(indices)`` -> ``(node, edge)`` via :func:`scalegmn_ext.weights_to_graph`
    * ``zoo.where(activation="tanh", is_final=True)`` -> a filtered view (same API, local indices)
    * ``zoo.verify()`` checks every shard's SHA-256.

    Zoos that mix activations (the CNN zoo: ReLU and tanh) store the activation per row; their
    ``arch`` is only defined on a view with one activation (``zoo.where(activation=...)``);
    ``zoo.arch_of(i)`` / ``zoo.archs`` work everywhere.
    """

    def __init__(self, path: str | os.PathLike, _rows: np.ndarray | None = None, _parent: Zoo | None = None) -> None:
        if _parent is not None:  # filtered view sharing the parent's parsed state
            self.__dict__.update({k: v for k, v in _parent.__dict__.items() if k not in ("_rows", "_meta_cache")})
            self._rows = _rows
            self._meta_cache = None
            return
        require_safetensors()
        self.path = os.fspath(path)
        if not os.path.isdir(self.path):
            raise ValueError(f"{self.path}: no such zoo directory")
        meta_path = os.path.join(self.path, META_FILE)
        if not os.path.isfile(meta_path):
            raise ValueError(f"{meta_path}: missing; {self.path} is not a zoo directory")
        info = _load_json(meta_path)
        if info.get("format") != FORMAT_NAME:
            raise ValueError(f"{meta_path}: 'format' is {info.get('format')!r}, expected {FORMAT_NAME!r}")
        ver = info.get("format_version")
        if not isinstance(ver, int) or ver < 1 or ver > FORMAT_VERSION:
            raise ValueError(
                f"{meta_path}: format_version {ver!r} is not supported by this scalegmn_ext "
                f"(supports 1..{FORMAT_VERSION}); upgrade the package"
            )
        if not info.get("complete"):
            n_done = len(
                [
                    k
                    for k in range(int(info.get("num_chunks", 0)))
                    if os.path.isfile(os.path.join(self.path, _shard_name(k)))
                ]
            )
            raise ValueError(
                f"{self.path}: the zoo is incomplete ({n_done} of {info.get('num_chunks')} chunks written); "
                "generation was interrupted - rerun the same generator command to resume"
            )
        for key in ("arch", "columns", "num_rows", "shards", "kind"):
            if key not in info:
                raise ValueError(f"{meta_path}: missing key {key!r}")
        self.info = info
        self.kind = info["kind"]
        self._base_arch = arch_from_dict(info["arch"], f"{meta_path}: arch")
        self._columns = _check_columns(info["columns"], meta_path) + [("split", "str")]
        n = info["num_rows"]
        if not isinstance(n, int) or n < 0:
            raise ValueError(f"{meta_path}: num_rows must be a non-negative int, got {n!r}")
        self._n = n
        # shards
        shards = info["shards"]
        if not isinstance(shards, list):
            raise ValueError(f"{meta_path}: 'shards' must be a list")
        starts, self._shards = [0], []
        for i, s in enumerate(shards):
            if not isinstance(s, dict) or not {"file", "rows", "bytes"} <= set(s):
                raise ValueError(f"{meta_path}: shards[{i}] must have file/rows/bytes, got {s!r}")
            f = s["file"]
            if not isinstance(f, str) or os.path.isabs(f) or ".." in f.split("/") or not re.fullmatch(r"[\w./-]+", f):
                raise ValueError(f"{meta_path}: shards[{i}].file {f!r} is not a relative path inside the zoo")
            p = os.path.join(self.path, f)
            _read_shard_header(p, self._base_arch, self._columns[:-1], expect_rows=s["rows"], expect_bytes=s["bytes"])
            self._shards.append({"path": p, "rows": s["rows"], "sha256": s.get("sha256")})
            starts.append(starts[-1] + s["rows"])
        if starts[-1] != n:
            raise ValueError(f"{meta_path}: shards hold {starts[-1]} rows but num_rows is {n}")
        self._starts = np.asarray(starts, dtype=np.int64)
        self._table = self._read_csv(os.path.join(self.path, info.get("csv", CSV_FILE)))
        acts = self._table.get("activation")
        self._activations = sorted(set(acts)) if acts is not None else [self._base_arch.activation]
        self._rows = np.arange(n, dtype=np.int64)
        self._handles: dict[int, Any] = {}
        self._meta_cache = None

    # ----- table -----------------------------------------------------------------------------
    def _read_csv(self, path: str) -> dict[str, list]:
        if not os.path.isfile(path):
            raise ValueError(f"{path}: missing (the zoo's per-network table)")
        try:
            with open(path, newline="", encoding="utf-8") as f:
                rows = list(csv.reader(f))
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise ValueError(f"{path}: unreadable CSV ({exc})") from None
        names = [c for c, _ in self._columns]
        if not rows or rows[0] != names:
            raise ValueError(
                f"{path}: header {rows[0] if rows else '(empty file)'} does not match the columns "
                f"recorded in {META_FILE}: {names}"
            )
        body = rows[1:]
        if len(body) != self._n:
            raise ValueError(
                f"{path}: has {len(body)} data rows but the zoo has {self._n} networks (truncated or edited file)"
            )
        table = {c: [] for c in names}
        for i, r in enumerate(body):
            if len(r) != len(names):
                raise ValueError(f"{path}: line {i + 2} has {len(r)} fields, expected {len(names)}")
            for (c, t), v in zip(self._columns, r):
                table[c].append(_parse(v, t, f"{path}: line {i + 2}, column {c!r}"))
        bad = [s for s in set(table["split"]) if s not in SPLITS]
        if bad:
            raise ValueError(f"{path}: unknown split names {bad} (expected {SPLITS})")
        return table

    def __len__(self) -> int:
        return len(self._rows)

    def __repr__(self) -> str:
        return f"Zoo({self.path!r}, kind={self.kind!r}, rows={len(self)}, activations={self.activations})"

    @property
    def rows(self) -> np.ndarray:
        """Global row ids (into ``networks.csv`` / the shards) of this view's entries."""
        return self._rows.copy()

    @property
    def activations(self) -> list[str]:
        if "activation" not in self._table:
            return list(self._activations)
        return sorted({self._table["activation"][r] for r in self._rows})

    def _arch_for(self, activation: str) -> Architecture:
        if activation == self._base_arch.activation:
            return self._base_arch
        return dataclasses.replace(self._base_arch, activation=activation, symmetry=None)

    @property
    def archs(self) -> dict[str, Architecture]:
        """Architecture per activation present in this view."""
        return {a: self._arch_for(a) for a in self.activations}

    @property
    def arch(self) -> Architecture:
        """The architecture of every network in this view (error if the view mixes activations)."""
        acts = self.activations
        if len(acts) > 1:
            raise ValueError(
                f"{self.path}: this zoo mixes activations {acts}; use zoo.where(activation=...) "
                "for a single-architecture view, or zoo.arch_of(i) / zoo.archs"
            )
        return self._arch_for(acts[0]) if acts else self._base_arch

    def arch_of(self, i: int) -> Architecture:
        """The architecture of entry ``i`` of this view."""
        r = self._rows[int(i)]
        if "activation" in self._table:
            return self._arch_for(self._table["activation"][r])
        return self._base_arch

    @property
    def column_names(self) -> list[str]:
        return [c for c, _ in self._columns]

    def column(self, name: str) -> np.ndarray:
        """One column for this view's rows (numeric columns as numbers, others as object arrays)."""
        if name not in self._table:
            raise KeyError(f"no column {name!r}; columns: {self.column_names}")
        typ = dict(self._columns)[name]
        dt = {"int": np.int64, "float": np.float64, "bool": np.bool_}.get(typ, object)
        return np.asarray(self._table[name], dtype=dt)[self._rows]

    @property
    def columns(self) -> dict[str, list]:
        return {c: [self._table[c][r] for r in self._rows] for c in self.column_names}

    @property
    def metadata(self) -> list[dict]:
        if self._meta_cache is None:
            names = self.column_names
            self._meta_cache = [{c: self._table[c][r] for c in names} for r in self._rows]
        return self._meta_cache

    def split(self, name: str) -> Tensor:
        """Indices (into this view) of the rows in split ``name`` (train / val / test)."""
        if name not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {name!r}")
        col = self._table["split"]
        return torch.tensor([i for i, r in enumerate(self._rows) if col[r] == name], dtype=torch.long)

    def where(self, **conditions: Any) -> Zoo:
        """A view of the rows whose columns equal the given values (or satisfy given callables)."""
        keep = np.ones(len(self._rows), dtype=bool)
        for name, want in conditions.items():
            col = self.column(name)
            keep &= np.array([bool(want(v)) for v in col]) if callable(want) else (col == want)
        return Zoo(self.path, _rows=self._rows[keep], _parent=self)

    def one_activation(self, activation: str | None = None, epochs=None) -> tuple[str, list[int], Zoo]:
        """``(activation, epochs, view)``: the networks of one activation (the zoo's only one when
        ``None``) at the given checkpoint ``epochs`` (default: every stored epoch after the
        initialisation, or epoch 0 when that is all there is). Clear errors name what exists."""
        acts = self.activations
        if activation is None:
            if len(acts) > 1:
                raise ValueError(f"{self.path} mixes activations {acts}: pass activation= (--activation) to pick one")
            activation = acts[0]
        if activation not in acts:
            raise ValueError(f"{self.path} has no {activation!r} networks (its activations: {acts})")
        view = self.where(activation=activation)
        stored = sorted({int(e) for e in view.column("epoch")})
        use = sorted({int(e) for e in epochs}) if epochs else ([e for e in stored if e > 0] or stored)
        missing = [e for e in use if e not in stored]
        if missing:
            raise ValueError(f"epochs {missing} are not stored checkpoints of {self.path} (stored: {stored})")
        return activation, use, view.where(epoch=lambda e, keep=frozenset(use): int(e) in keep)

    # ----- weights ---------------------------------------------------------------------------
    _MAX_OPEN = 32  # shard handles kept open (memory maps); older ones are dropped

    def _handle(self, k: int):
        h = self._handles.pop(k, None)
        if h is None:
            safe_open, _ = require_safetensors()
            p = self._shards[k]["path"]
            try:
                h = safe_open(p, framework="pt")
            except Exception as exc:
                raise ValueError(f"{p}: not a readable safetensors file ({exc})") from None
            while len(self._handles) >= self._MAX_OPEN:
                self._handles.pop(next(iter(self._handles)))
        self._handles[k] = h  # most recently used last
        return h

    def _indices(self, indices) -> tuple[np.ndarray, bool]:
        n = len(self._rows)
        if isinstance(indices, Zoo):
            return self._view_indices(indices), False
        if isinstance(indices, slice):
            return np.arange(n)[indices], False
        if isinstance(indices, (int, np.integer)) and not isinstance(indices, bool):
            i = int(indices)
            if not -n <= i < n:
                raise IndexError(f"index {i} out of range for a zoo of {n} networks")
            return np.array([i % n]), True
        if isinstance(indices, Tensor):
            indices = indices.detach().cpu().numpy()
        idx = np.asarray(indices)
        if idx.dtype == np.bool_:
            if idx.shape != (n,):
                raise IndexError(f"boolean mask must have shape ({n},), got {idx.shape}")
            return np.nonzero(idx)[0], False
        if idx.ndim != 1 or (idx.size and not np.issubdtype(idx.dtype, np.integer)):
            raise TypeError(
                "indices must be an int, a slice, a bool mask, a 1-D integer sequence or a view of this "
                f"zoo (zoo.where(...)), got {type(indices).__name__} ({idx.dtype} {idx.shape})"
            )
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise IndexError(f"indices out of range for a zoo of {n} networks")
        return idx.astype(np.int64) % max(n, 1), False

    def _view_indices(self, view: Zoo) -> np.ndarray:
        """Indices into this view of the rows of ``view`` (e.g. ``zoo.where(...)``), in its order."""
        if os.path.realpath(view.path) != os.path.realpath(self.path):
            raise ValueError(
                f"indices is a view of the zoo {view.path}, not of {self.path}; pass a view of this "
                "zoo (zoo.where(...)), or load from the view itself: view.load()"
            )
        pos = {int(r): i for i, r in enumerate(self._rows)}
        missing = [int(r) for r in view._rows if int(r) not in pos]
        if missing:
            raise ValueError(
                f"indices is a zoo view with {len(missing)} rows (e.g. row {missing[0]}) that are not "
                f"in this view of {len(self)} rows; load from the view itself: view.load()"
            )
        return np.array([pos[int(r)] for r in view._rows], dtype=np.int64)

    def load(
        self, indices=slice(None), *, dtype: torch.dtype | None = None, device=None
    ) -> tuple[list[Tensor], list[Tensor]]:
        """Weights and biases of the given rows, stacked per layer (``[k, ...]``; unbatched for an int).

        ``indices``: an int, a slice, a bool mask, a 1-D integer sequence/tensor, or a view of this
        zoo (``zoo.load(zoo.where(split="train"))`` loads that view's rows). Reads only the
        requested rows (contiguous runs are one slice each) from the shards.
        """
        local, single = self._indices(indices)
        glob = self._rows[local]
        L = self._base_arch.num_layers
        names = [f"layers.{l}.weight" for l in range(L)] + [f"layers.{l}.bias" for l in range(L)]
        parts: dict[str, list[Tensor]] = {nm: [] for nm in names}
        order = np.argsort(glob, kind="stable")
        sg = glob[order]
        # contiguous runs of sorted rows within one shard
        shard_of = np.searchsorted(self._starts, sg, side="right") - 1
        pos = 0
        while pos < len(sg):
            k = int(shard_of[pos])
            end = pos + 1
            while end < len(sg) and shard_of[end] == k and sg[end] <= sg[end - 1] + 1:
                end += 1
            lo = int(sg[pos] - self._starts[k])
            hi = int(sg[end - 1] - self._starts[k]) + 1
            h = self._handle(k)
            try:
                for nm in names:
                    t = h.get_slice(nm)[lo:hi]
                    rep = sg[pos:end] - sg[pos]  # handles repeated indices inside a run
                    parts[nm].append(t if (hi - lo) == (end - pos) else t[torch.from_numpy(rep)])
            except Exception as exc:
                raise ValueError(f"{self._shards[k]['path']}: reading rows {lo}:{hi} failed ({exc})") from None
            pos = end
        inv = torch.from_numpy(np.argsort(order, kind="stable"))
        out = {}
        for l, nm in enumerate(names):
            if parts[nm]:
                t = torch.cat(parts[nm])[inv]
            else:
                spec = self._base_arch.layers[l % L]
                shape = spec.weight_shape if l < L else (spec.out_features,)
                t = torch.empty(0, *shape, dtype=torch.float32)
            if dtype is not None or device is not None:
                t = t.to(device=device, dtype=dtype)
            out[nm] = t[0] if single else t
        return [out[f"layers.{l}.weight"] for l in range(L)], [out[f"layers.{l}.bias"] for l in range(L)]

    def graphs(self, indices=slice(None), *, input_value: float | None = None, **kw) -> tuple[Tensor, Tensor]:
        """``(node, edge)`` graph features of the given rows via :func:`scalegmn_ext.weights_to_graph`.

        ``input_value`` defaults to 1.0 for INR zoos and 0.0 for CNN zoos (the public code's choices).
        """
        from ...ops import weights_to_graph

        ws, bs = self.load(indices, dtype=kw.pop("dtype", None), device=kw.pop("device", None))
        if input_value is None:
            input_value = 0.0 if self._base_arch.is_cnn else 1.0
        return weights_to_graph(ws, bs, self._base_arch, input_value=input_value, **kw)

    def verify(self) -> None:
        """Check every shard's SHA-256 against ``zoo.json`` (reads all weights once)."""
        for s in self._shards:
            if s.get("sha256") and _sha256(s["path"]) != s["sha256"]:
                raise ValueError(f"{s['path']}: SHA-256 does not match the zoo index (corrupt shard)")

    def summary(self) -> dict:
        return dict(self.info.get("summary", {}))
