"""Loads the compiled op library (registering ``torch.ops.scalegmn.*``) and holds what every op
family shares: the accepted float dtypes, the compiled-or-reference dispatch, and the one way
fake kernels and autograd formulas are registered (:func:`register_op`).

An op family is one name through every layer (``csrc/ops/F.cpp``, ``csrc/cpu/F_kernel.cpp``,
``csrc/cuda/F_kernel.cu``, ``scalegmn_ext/ops/F.py``, ``scalegmn_ext/reference/F.py``,
``python_tests/test_F.py``); :data:`OP_FAMILIES` lists the ``scalegmn::`` ops of each.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

try:
    from . import _C  # noqa: F401  (importing runs the TORCH_LIBRARY registrations

    HAS_EXTENSION = True
    _IMPORT_ERROR: Exception | None = None
except ImportError as exc:  # pragma: no cover - only without a build
    HAS_EXTENSION = False
    _IMPORT_ERROR = exc

#: Floating dtypes every op (and the weight-space functions) accepts.
FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
#: Largest int64: sizes and flat indices the kernels form must stay at or below it.
INT64_MAX = 2**63 - 1
#: Edges per tile of the tiled fused ops (whole networks per tile): small enough to stay in
#: cache, big enough for BLAS.
DEFAULT_TILE_EDGES = 4096

#: Op family -> the ``scalegmn::`` ops its compiled path calls (all must have a kernel for the
#: tensor's device, else the family falls back to its reference).
OP_FAMILIES: dict[str, tuple[str, ...]] = {
    "graph": ("weights_to_graph", "graph_to_weights"),
    "segment_gather_mul": ("segment_gather_mul", "gather_mul_csr", "gather_dot_csr"),
    "canonical_segment_sum": ("canonical_segment_sum", "canonical_segment_sum_backward"),
    "hash_dropout": ("hash_dropout",),
    "scale_eq_message": ("scale_eq_message", "scale_eq_message_backward"),
    "edge_update": ("edge_update", "edge_update_backward", "hash_dropout"),  # dropout inside its tiles
}


def cuda_kernels_for(*ops: str) -> bool:
    """True when every ``scalegmn::<op>`` has a CUDA kernel."""
    return HAS_EXTENSION and all(
        torch._C._dispatch_has_kernel_for_dispatch_key(f"scalegmn::{op}", "CUDA") for op in ops
    )


# Looked up once, at import: plain bools that torch.compile reads without tracing the dispatcher.
_HAS_CUDA_KERNELS: dict[str, bool] = {family: cuda_kernels_for(*ops) for family, ops in OP_FAMILIES.items()}


def has_cuda_kernels() -> bool:
    """True when the extension was built with its CUDA kernels."""
    return _HAS_CUDA_KERNELS["graph"]


def use_compiled(family: str, t: Tensor) -> bool:
    """Whether op family ``family`` (a key of :data:`OP_FAMILIES`) runs its compiled kernels for
    tensors on ``t``'s device; False: the wrapper falls back to ``scalegmn_ext.reference.<family>``
    (no build, or a CPU-only build given CUDA tensors)."""
    if not HAS_EXTENSION:
        return False
    if t.device.type in ("cpu", "meta"):
        return True
    return t.device.type == "cuda" and _HAS_CUDA_KERNELS[family]


def register_op(
    op: str,
    fake: Callable,
    backward: Callable | None = None,
    *,
    save: Sequence[int] | None = None,
    workspace_output: bool = False,
) -> None:
    """Registers the fake kernel and (when ``backward`` is given) the autograd formula of
    ``scalegmn::<op>``; the one way every op of the package is registered. No-op without a build.

    The context is set up the same way for every op:

    * tensor (or None) inputs at the positions ``save`` (default: all of them) go through
      ``ctx.save_for_backward``; tensor inputs not listed reach the backward as None;
    * a list-of-tensors input reaches the backward as the list of its tensors' shapes (the
      formulas need only the layout, never the values);
    * every other input (ints, floats, bools, int lists) reaches the backward unchanged;
    * ``workspace_output``: the op returns ``(out, workspace)``; the workspace is
      non-differentiable and saved (``ctx.workspace``), gradients are not materialised, so
      ``grad`` is None when ``out`` was unused.

    ``backward(ctx, inputs, *grads)`` gets the op's inputs rebuilt as described (a tuple in
    schema order) and returns one gradient (or None) per input; ``ctx.needs_input_grad`` is
    available as usual.
    """
    if not HAS_EXTENSION:
        return
    name = f"scalegmn::{op}"
    torch.library.register_fake(name, fake)
    if backward is None:
        return

    def setup_context(ctx, inputs, output):
        keep = range(len(inputs)) if save is None else save
        saved_pos, saved, args = [], [], []
        for i, a in enumerate(inputs):
            if a is None or isinstance(a, Tensor):
                if i in keep:
                    saved_pos.append(i)
                    saved.append(a)
                a = None  # filled in from ctx.saved_tensors in the backward (or stays None)
            elif isinstance(a, (list, tuple)) and len(a) > 0 and isinstance(a[0], Tensor):
                a = [tuple(t.shape) for t in a]
            args.append(a)
        if workspace_output:
            ctx.mark_non_differentiable(output[1])
            ctx.set_materialize_grads(False)
            saved.append(output[1])
        ctx.save_for_backward(*saved)
        ctx.saved_pos, ctx.args = saved_pos, args

    def autograd_backward(ctx, *grads):
        saved = ctx.saved_tensors
        inputs = list(ctx.args)
        for i, t in zip(ctx.saved_pos, saved):
            inputs[i] = t
        if workspace_output:
            ctx.workspace = saved[len(ctx.saved_pos)]
        return tuple(backward(ctx, tuple(inputs), *grads))

    torch.library.register_autograd(name, autograd_backward, setup_context=setup_context)


def require_extension() -> None:
    if not HAS_EXTENSION:
        raise RuntimeError(
            "scalegmn_ext._C is not built; install with `pip install --no-build-isolation .` "
            f"(import error: {_IMPORT_ERROR})"
        )
