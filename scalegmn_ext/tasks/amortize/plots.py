"""The amortization figure: box plot of the held-out networks' test accuracy per method
(matplotlib, Agg canvas; see :mod:`scalegmn_ext.tasks.plots`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ..plots import figure_factory

__all__ = ["accuracy_boxplot_figure"]


def _color(method: str) -> str:
    if method.startswith("before"):
        return "#7f7f7f"
    if "symmetry broken" in method:
        return "#9467bd"
    if method.startswith("ScaleGMN"):
        return "#d62728"
    if method.startswith("SGD"):
        return "#1f77b4"
    if method.startswith("Adam"):
        return "#2ca02c"
    return "#17becf"


def accuracy_boxplot_figure(accuracies: Mapping[str, Sequence[float]], *, title: str, chance: float | None = 10.0):
    """``accuracies``: method -> per-network test accuracies in %. One box per method (median,
    quartiles, 1.5 IQR whiskers, outliers), the mean as a white diamond, ``chance`` as a dashed line."""
    if not accuracies:
        raise ValueError("accuracies must hold at least one method")
    names = list(accuracies)
    data = [np.asarray(accuracies[k], dtype=np.float64) for k in names]
    fig = figure_factory()(figsize=(max(6.4, 0.85 * len(names) + 2), 4.8), layout="constrained")
    ax = fig.add_subplot()
    box = ax.boxplot(
        data,
        patch_artist=True,
        showmeans=True,
        widths=0.6,
        meanprops={"marker": "D", "markerfacecolor": "white", "markeredgecolor": "black", "markersize": 5},
    )
    for patch, name in zip(box["boxes"], names):
        patch.set_facecolor(_color(name))
        patch.set_alpha(0.55)
    ax.set_xticks(range(1, len(names) + 1))
    ax.set_xticklabels(
        [f"{k}\n(n={d.size}, mean {d.mean():.1f})" for k, d in zip(names, data)], rotation=30, ha="right", fontsize=7
    )
    handles = [box["medians"][0], box["means"][0]]
    box["medians"][0].set_label("median (box: quartiles, whiskers: 1.5 IQR)")
    box["means"][0].set_label("mean")
    if chance is not None:
        handles.append(ax.axhline(chance, color="black", linestyle="--", linewidth=1.0, label=f"chance ({chance:g} %)"))
    ax.legend(handles=handles, fontsize=7, loc="best")
    ax.set_ylabel("test accuracy of a held-out network (%)")
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    return fig
