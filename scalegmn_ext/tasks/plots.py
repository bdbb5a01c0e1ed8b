"""The figures the zoo commands write, drawn with matplotlib.

* :func:`image_pairs_figure` -- source images next to their INR reconstructions (the INR zoo preview).
* :func:`accuracy_histogram_figure` -- a stacked histogram of test accuracies, one colour per
  activation (the CNN zoo summary).
* :func:`save_png` -- write a figure to a PNG file (atomically).

matplotlib is optional (``pip install 'scalegmn_ext[plots]'``); every function raises an
ImportError naming that extra when it is missing. Figures are built as
``matplotlib.figure.Figure`` objects on an Agg canvas, never through ``pyplot``, so they render
headless and leave the user's global backend choice untouched.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Mapping, Sequence

import numpy as np

__all__ = [
    "figure_factory",
    "image_pairs_figure",
    "accuracy_histogram_figure",
    "save_png",
    "ACTIVATION_COLORS",
    "PAIR_FRAME_COLORS",
]

#: Fixed colours for the activations, so the same activation looks the same in every figure.
ACTIVATION_COLORS = {
    "relu": "#1f77b4",
    "tanh": "#ff7f0e",
    "sine": "#2ca02c",
    "leaky_relu": "#9467bd",
    "sigmoid": "#8c564b",
    "gelu": "#e377c2",
    "silu": "#7f7f7f",
}
_OTHER_COLORS = ("#17becf", "#bcbd22", "#d62728")
#: Frame colours of the source image (blue) and of its reconstruction (red) in :func:`image_pairs_figure`.
PAIR_FRAME_COLORS = ("#1f77b4", "#d62728")


def figure_factory():
    """A constructor of ``matplotlib.figure.Figure`` objects with an Agg canvas attached (every
    figure module of the package uses it), or an ImportError naming the extra."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise ImportError(
            "the zoo figures need matplotlib: pip install 'scalegmn_ext[plots]' "
            f"(or pip install matplotlib). Import error: {e}"
        ) from e

    def new_figure(**kwargs):
        fig = Figure(**kwargs)
        FigureCanvasAgg(fig)  # attaches itself as fig.canvas: PNG output without any global backend
        return fig

    return new_figure


def _gray_images(name: str, images) -> np.ndarray:
    a = np.asarray(images.detach().cpu().numpy() if hasattr(images, "detach") else images, dtype=np.float64)
    if a.ndim != 3 or a.shape[0] == 0:
        raise ValueError(f"{name} must be [N, H, W] grayscale images with N >= 1, got shape {a.shape}")
    return a


def image_pairs_figure(
    sources,
    reconstructions,
    *,
    captions: Sequence[str] | None = None,
    reconstruction_captions: Sequence[str] | None = None,
    title: str = "",
    pairs_per_row: int = 4,
):
    """A grid of ``(source | reconstruction)`` image pairs, each image captioned.

    ``sources`` and ``reconstructions`` are ``[N, H, W]`` grayscale images with values in [0, 1]
    (drawn on a fixed 0 = black, 1 = white scale, so a faint reconstruction looks faint).
    ``captions[i]`` goes above source ``i`` and ``reconstruction_captions[i]`` above its
    reconstruction (default "source" / "reconstruction"). Returns a matplotlib ``Figure``.
    """
    new_figure = figure_factory()
    src = _gray_images("sources", sources)
    rec = _gray_images("reconstructions", reconstructions)
    if rec.shape != src.shape:
        raise ValueError(f"reconstructions must have the shape of sources {src.shape}, got {rec.shape}")
    n = src.shape[0]
    for name, caps in (("captions", captions), ("reconstruction_captions", reconstruction_captions)):
        if caps is not None and len(caps) != n:
            raise ValueError(f"{name} must have one entry per image ({n}), got {len(caps)}")
    if pairs_per_row < 1:
        raise ValueError(f"pairs_per_row must be >= 1, got {pairs_per_row}")
    cols = min(pairs_per_row, n)
    rows = math.ceil(n / cols)
    # about 1.25 in per tile and 0.35 in above it for a two-line 7 pt caption; constrained layout
    # places the captions and the title without overlaps
    fig = new_figure(figsize=(2 * cols * 1.25, rows * 1.65 + (0.55 if title else 0.1)), dpi=100, layout="constrained")
    grid = fig.add_gridspec(rows, 2 * cols)
    src_caps = list(captions) if captions is not None else ["source"] * n
    rec_caps = list(reconstruction_captions) if reconstruction_captions is not None else ["reconstruction"] * n
    for i in range(n):
        r, c = divmod(i, cols)
        for k, (img, cap) in enumerate(((src[i], src_caps[i]), (rec[i], rec_caps[i]))):
            ax = fig.add_subplot(grid[r, 2 * c + k])
            ax.imshow(np.clip(img, 0.0, 1.0), cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
            ax.set_title(cap, fontsize=7, pad=2)
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():  # the frame colour tells the two halves of a pair apart
                spine.set_edgecolor(PAIR_FRAME_COLORS[k])
                spine.set_linewidth(1.2)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def accuracy_histogram_figure(
    groups: Mapping[str, Sequence[float] | np.ndarray],
    *,
    bins: int = 25,
    value_range: tuple[float, float] = (0.0, 1.0),
    title: str = "",
    xlabel: str = "final test accuracy (%)",
    ylabel: str = "networks (count)",
    chance: float | None = None,
):
    """A stacked histogram of accuracies in [0, 1], one colour per group (e.g. per activation).

    The x axis is in percent; the legend names each group with its count and mean. ``chance``
    (an accuracy in [0, 1], e.g. 0.1 for ten classes) draws a dashed reference line. Returns a
    matplotlib ``Figure``.
    """
    new_figure = figure_factory()
    if not groups:
        raise ValueError("groups must name at least one group of accuracies")
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    lo, hi = map(float, value_range)
    if not hi > lo:
        raise ValueError(f"value_range must be (low, high) with low < high, got {value_range}")
    names = list(groups)
    data = [100.0 * np.asarray(groups[k], dtype=np.float64).ravel() for k in names]
    spare = iter(_OTHER_COLORS * len(names))
    colors = [ACTIVATION_COLORS.get(k, None) or next(spare) for k in names]
    labels = [f"{k} (n={v.size}, mean {np.nanmean(v):.1f} %)" if v.size else f"{k} (n=0)" for k, v in zip(names, data)]
    fig = new_figure(figsize=(7.0, 4.2), dpi=100)
    ax = fig.add_subplot()
    edges = np.linspace(100.0 * lo, 100.0 * hi, bins + 1)
    ax.hist(
        [np.clip(v[np.isfinite(v)], edges[0], edges[-1]) for v in data],
        bins=edges,
        stacked=True,
        color=colors,
        label=labels,
        edgecolor="white",
        linewidth=0.5,
    )
    if chance is not None:
        ax.axvline(100.0 * chance, color="black", linestyle="--", linewidth=1.0, label=f"chance ({100 * chance:g} %)")
    ax.set_xlim(edges[0], edges[-1])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.yaxis.get_major_locator().set_params(integer=True)  # counts of networks are whole numbers
    ax.grid(axis="y", alpha=0.3)
    ax.legend(title="activation", fontsize=8, title_fontsize=8, loc="best")
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig


def save_png(fig, path: str | os.PathLike, *, dpi: int | None = None) -> str:
    """Render ``fig`` to PNG and write it to ``path`` atomically (a crash never leaves half a file)."""
    from .._io import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi if dpi is not None else fig.dpi, facecolor="white")
    atomic_write_bytes(os.fspath(path), buf.getvalue())
    return os.fspath(path)
