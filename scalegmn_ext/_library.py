"""Loads the compiled op library (registering ``torch.ops.scalegmn.*``) and reports what it has."""
from __future__ import annotations

import torch

try:
    from . import _C  # noqa: F401  (importing runs the TORCH_LIBRARY registrations)

    HAS_EXTENSION = True
    _IMPORT_ERROR: Exception | None = None
except ImportError as exc:  # pragma: no cover - only without a build
    HAS_EXTENSION = False
    _IMPORT_ERROR = exc


def cuda_kernels_for(*ops: str) -> bool:
    """True when every ``scalegmn::<op>`` has a CUDA kernel (look it up once, at import)."""
    return HAS_EXTENSION and all(
        torch._C._dispatch_has_kernel_for_dispatch_key(f"scalegmn::{op}", "CUDA") for op in ops)


def has_cuda_kernels() -> bool:
    """True when the extension was built with its CUDA kernels."""
    return cuda_kernels_for("weights_to_graph")


def compiled_ok(t, has_cuda: bool) -> bool:
    """Whether the compiled kernels serve tensors on ``t``'s device (else: reference fallback).

    ``has_cuda`` is the op family's :func:`cuda_kernels_for` constant (a plain bool, so that
    torch.compile reads it without tracing the dispatcher)."""
    if not HAS_EXTENSION:
        return False
    if t.device.type in ("cpu", "meta"):
        return True
    return t.device.type == "cuda" and has_cuda


def require_extension() -> None:
    if not HAS_EXTENSION:
        raise RuntimeError(
            "scalegmn_ext._C is not built; install with `pip install --no-build-isolation .` "
            f"(import error: {_IMPORT_ERROR})"
        )
