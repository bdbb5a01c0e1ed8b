"""Loads the compiled op library (registering ``torch.ops.scalegmn.*``) and reports what it has."""
from __future__ import annotations

import torch

try:
    from . import _C  # noqa: F401  (importing runs the TORCH_LIBRARY registrations

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


def register_recompute_autograd(op: str, backward_op, n_tensors: int, multi_output: bool = False) -> None:
    """Autograd of a tiled recompute-in-backward op ``scalegmn::<op>``: save only its first
    ``n_tensors`` (tensor or None) inputs and call ``backward_op(grad, *inputs)``, which returns one
    gradient per tensor input (``None`` inputs get None); the trailing non-tensor arguments
    get no gradient. ``multi_output``: the op returns ``(out, workspace)`` and its last argument is
    the flag that asks for the workspace; the workspace is non-differentiable, saved, and passed
    to ``backward_op`` in place of that flag."""

    def setup(ctx, inputs, output):
        extra = ()
        if multi_output:
            ctx.mark_non_differentiable(output[1])
            ctx.set_materialize_grads(False)  # no zero-filled gradient for the workspace
            extra = (output[1],)
        ctx.save_for_backward(*inputs[:n_tensors], *extra)
        ctx.none = [t is None for t in inputs[:n_tensors]]
        ctx.rest = inputs[n_tensors:]

    def backward(ctx, grad, *unused):
        saved = ctx.saved_tensors
        if grad is None:  # only with multi_output (grads are not materialised): out was unused
            return (None,) * (n_tensors + len(ctx.rest))
        extra = saved[n_tensors:]
        rest = ctx.rest[:-1] if multi_output else ctx.rest
        grads = backward_op(grad.contiguous(), *saved[:n_tensors], *rest, *extra)
        return (*[None if none else g for g, none in zip(grads, ctx.none)], *([None] * len(ctx.rest)))

    torch.library.register_autograd(f"scalegmn::{op}", backward, setup_context=setup)


def require_extension() -> None:
    if not HAS_EXTENSION:
        raise RuntimeError(
            "scalegmn_ext._C is not built; install with `pip install --no-build-isolation .` "
            f"(import error: {_IMPORT_ERROR})"
        )
