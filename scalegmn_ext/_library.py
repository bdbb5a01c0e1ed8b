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


def has_cuda_kernels() -> bool:
    """True when the extension was built with its CUDA kernels."""
    if not HAS_EXTENSION:
        return False
    return torch._C._dispatch_has_kernel_for_dispatch_key("scalegmn::weights_to_graph", "CUDA")


def require_extension() -> None:
    if not HAS_EXTENSION:
        raise RuntimeError(
            "scalegmn_ext._C is not built; install with `pip install --no-build-isolation .` "
            f"(import error: {_IMPORT_ERROR})"
        )
