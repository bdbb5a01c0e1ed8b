"""The one validator of per-layer weight / bias lists, shared by the ops layer
(:func:`scalegmn_ext.ops.weights_to_graph`) and the weight-space functions (functional forward,
symmetry actions).

It depends only on :mod:`.architecture` and :mod:`scalegmn_ext._library` (neither imports the
ops), so ``scalegmn_ext.ops`` can import it without an import cycle.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor

from .._library import FLOAT_DTYPES
from .architecture import Architecture

__all__ = ["check_weights"]

_LAYER_SHAPES = "[B, out, in] or [B, out, in, kh, kw]"


def check_weights(
    weights, biases=None, arch: Architecture | None = None, *, arch_required: bool = False
) -> tuple[list[Tensor], list[Tensor], bool]:
    """Validate per-layer ``weights`` and ``biases`` (None, or a list with None entries: zeros).

    Weights are ``[B, out, in]`` (dense) or ``[B, out, in, kh, kw]`` (conv), or all without the
    batch axis for one network; biases ``[B, out]`` (``[out]``). All share weights[0]'s floating
    dtype and device. Without ``arch`` consecutive layers must chain (``in`` = previous ``out``)
    and be non-empty; with ``arch`` every layer must have exactly the architecture's shape.

    Returns ``(weights, biases, batched)``: the lists with a batch axis (added when the input had
    none; zero biases filled in) and whether the input was batched. Raises TypeError / ValueError
    naming the offending entry and the expected shape. ``arch_required``: None is no valid
    ``arch`` either (for the functions that need the architecture beyond validation).
    """
    if (arch_required or arch is not None) and not isinstance(arch, Architecture):
        raise TypeError(f"arch must be an Architecture, got {type(arch).__name__}")
    if isinstance(weights, Tensor) or not isinstance(weights, Sequence) or len(weights) == 0:
        raise TypeError(
            f"weights must be a non-empty list of per-layer tensors {_LAYER_SHAPES}, got {type(weights).__name__}"
        )
    of_arch = f" of {arch}" if arch is not None else ""
    for_arch = f" for {arch}" if arch is not None else ""
    L = arch.num_layers if arch is not None else len(weights)
    if len(weights) != L:
        raise ValueError(f"weights must have {L} entries (one per layer{of_arch}), got {len(weights)}")
    if biases is None:
        biases = [None] * L
    if isinstance(biases, Tensor) or not isinstance(biases, Sequence):
        raise TypeError(
            f"biases must be a list of {L} per-layer tensors [B, out] (or None), got {type(biases).__name__}"
        )
    if len(biases) != L:
        raise ValueError(f"biases must have {L} entries (one per layer{of_arch}), got {len(biases)}")
    w0 = weights[0]
    if not isinstance(w0, Tensor):
        raise TypeError(f"weights[0] must be a Tensor, got {type(w0).__name__}")
    if w0.dtype not in FLOAT_DTYPES:
        raise TypeError(f"weights[0] must be a floating tensor (float16/bfloat16/float32/float64), got {w0.dtype}")
    if arch is not None:
        spec0 = arch.layers[0].weight_shape
        if w0.dim() not in (len(spec0), len(spec0) + 1):
            raise ValueError(
                f"weights[0] must be [B, {', '.join(map(str, spec0))}] (or unbatched {list(spec0)}) "
                f"for {arch}, got shape {tuple(w0.shape)}"
            )
        batched = w0.dim() == len(spec0) + 1
    else:
        if w0.dim() not in (2, 3, 4, 5):
            raise ValueError(f"weights[0] must be {_LAYER_SHAPES} (or unbatched), got shape {tuple(w0.shape)}")
        batched = w0.dim() in (3, 5)
    B = w0.shape[0] if batched else 1
    ws, bs = [], []
    for l, w in enumerate(weights):
        if not isinstance(w, Tensor):
            raise TypeError(f"weights[{l}] must be a Tensor, got {type(w).__name__}")
        if w.dtype != w0.dtype or w.device != w0.device:
            raise TypeError(
                f"weights[{l}] is {w.dtype} on {w.device}; expected {w0.dtype} on {w0.device} like weights[0]"
            )
        if arch is not None:
            spec = arch.layers[l].weight_shape
            if tuple(w.shape) != ((B,) if batched else ()) + spec:
                per_network = tuple(w.shape[1:]) if batched else tuple(w.shape)
                raise ValueError(
                    f"weights[{l}] must be {'[B, ' if batched else '['}{', '.join(map(str, spec))}] with "
                    f"B={B} for {arch}, got shape {tuple(w.shape)} (per-network shape {per_network})"
                )
        else:
            if w.dim() not in ((3, 5) if batched else (2, 4)):
                kind = f"batched {_LAYER_SHAPES}" if batched else "unbatched [out, in] or [out, in, kh, kw]"
                raise ValueError(f"weights[{l}] must be {kind} like weights[0], got shape {tuple(w.shape)}")
            if batched and w.shape[0] != B:
                raise ValueError(f"weights[{l}] has batch size {w.shape[0]}, expected {B} (from weights[0])")
        if not batched:
            w = w.unsqueeze(0)
        if arch is None:
            if l > 0 and w.shape[2] != ws[-1].shape[1]:
                raise ValueError(
                    f"weights[{l}] has in={w.shape[2]} (shape {tuple(w.shape)}) but weights[{l - 1}] has out={ws[-1].shape[1]}"
                )
            if w.shape[1] == 0 or w.shape[2] == 0:
                raise ValueError(
                    f"weights[{l}] has an empty layer (shape {tuple(w.shape)}); the graph needs >= 1 neuron per layer"
                )
        ws.append(w)
    for l, (w, b) in enumerate(zip(ws, biases)):
        if b is None:
            b = w.new_zeros(w.shape[0], w.shape[1])
        else:
            if not isinstance(b, Tensor):
                raise TypeError(f"biases[{l}] must be a Tensor or None, got {type(b).__name__}")
            if b.dtype != w0.dtype or b.device != w0.device:
                raise TypeError(
                    f"biases[{l}] is {b.dtype} on {b.device}; expected {w0.dtype} on {w0.device} like weights[0]"
                )
            expected = (w.shape[0], w.shape[1]) if batched else (w.shape[1],)
            if tuple(b.shape) != expected:
                kind = "[B, out]" if batched else "[out] (unbatched)"
                raise ValueError(f"biases[{l}] must have shape {expected} ({kind}){for_arch}, got {tuple(b.shape)}")
            if not batched:
                b = b.unsqueeze(0)
        bs.append(b)
    return ws, bs, batched
