"""Atomic file writes shared by the zoo format, the demo and the benchmarks.

A write goes to a temp file in the same folder, is fsynced and ``os.replace``d, so readers see
either the old or the new file, never a partial one.
"""

from __future__ import annotations

import io
import json
import os

import torch

__all__ = ["atomic_write_bytes", "atomic_write_text", "atomic_write_json", "atomic_torch_save"]


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: temp file in the same folder, fsync, ``os.replace``."""
    path = os.fspath(path)
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    tmp = os.path.join(d, f".{os.path.basename(path)}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:  # make the rename itself durable (best effort; not supported everywhere)
        fd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


def atomic_write_text(path: str, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str, obj, indent: int | None = 1) -> None:
    atomic_write_text(path, json.dumps(obj, indent=indent))


def atomic_torch_save(obj, path: str) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(path, buf.getvalue())


def claim_run_folder(out: str, settings: dict, what: str) -> None:
    """Make ``out`` the run folder of ``settings`` (a JSON-able dict, written to ``out/run.json``).

    A folder that already holds a run with other settings is refused with the differing keys, so
    a ``--resume`` or a rerun never mixes two configurations' checkpoints; ``what`` names the kind
    of run in the message (e.g. "an amortizer run")."""
    os.makedirs(out, exist_ok=True)
    run_file = os.path.join(out, "run.json")
    new = json.loads(json.dumps(settings))
    if os.path.exists(run_file):
        with open(run_file) as f:
            old = json.load(f)
        if old != new:
            keys = list(new) + [k for k in old if k not in new]
            diff = [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in keys if old.get(k) != new.get(k)]
            raise ValueError(f"{out} holds {what} with other settings ({'; '.join(diff)}); use another --out folder")
    atomic_write_json(run_file, settings)
