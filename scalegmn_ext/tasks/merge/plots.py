"""Figures of the merging experiments (matplotlib, Agg canvas; see :mod:`scalegmn_ext.tasks.plots`).

* :func:`path_curves_figure` -- loss / accuracy along the interpolation path per method: mean over
  pairs with a +-1 std band.
* :func:`inr_path_figure` -- INR renderings along the path, one row per method.
* :func:`barrier_vs_noise_figure` -- barrier (mean +- std over pairs) against the noise eps.
* :func:`latent_map_figure` -- 2-D t-SNE of orbit members' latents, one colour per orbit, one
  panel per encoder.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from ..plots import figure_factory

__all__ = ["path_curves_figure", "inr_path_figure", "barrier_vs_noise_figure", "latent_map_figure", "METHOD_STYLE"]

#: one colour and label per method in every figure
METHOD_STYLE = {
    "naive": ("#7f7f7f", "naive (raw weights)"),
    "autoencoder": ("#d62728", "autoencoder (decode both ends)"),
    "latent": ("#9467bd", "latent (decode each point)"),
    "rebasin": ("#1f77b4", "Git Re-Basin (permutations)"),
    "rebasin_sign": ("#2ca02c", "Git Re-Basin + signs"),
    "rebasin_scale": ("#ff7f0e", "Git Re-Basin + scales"),
}


def _np(t) -> np.ndarray:
    return np.asarray(t.detach().cpu().double().numpy() if hasattr(t, "detach") else t, dtype=np.float64)


def _style(method: str) -> tuple[str, str]:
    return METHOD_STYLE.get(method, ("#17becf", method))


def path_curves_figure(alphas, curves: Mapping[str, object], *, ylabel: str, title: str, log: bool = False):
    """``curves``: method -> ``[pairs, A]`` values along the path."""
    if not curves:
        raise ValueError("curves must hold at least one method")
    fig = figure_factory()(figsize=(6.4, 4.2), layout="constrained")
    ax = fig.add_subplot()
    a = _np(alphas)
    for m, c in curves.items():
        c = _np(c)
        if c.ndim != 2 or c.shape[1] != a.size:
            raise ValueError(f"curves[{m!r}] must be [pairs, {a.size}], got shape {c.shape}")
        color, label = _style(m)
        mu, sd = c.mean(0), c.std(0)
        ax.plot(a, mu, color=color, label=f"{label} (n={c.shape[0]})", lw=1.8)
        ax.fill_between(a, mu - sd, mu + sd, color=color, alpha=0.15, lw=0)
    ax.set_xlabel("interpolation weight alpha (0 = network A, 1 = network B)")
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, title="mean +- 1 std over pairs", title_fontsize=8)
    return fig


def inr_path_figure(alphas: Sequence[float], renders: Mapping[str, object], *, title: str):
    """``renders``: method -> ``[len(alphas), H, W]`` images of one pair's path."""
    rows = list(renders)
    a = list(alphas)
    fig = figure_factory()(figsize=(1.2 * len(a) + 1.6, 1.25 * len(rows) + 0.8), layout="constrained")
    axes = fig.subplots(len(rows), len(a), squeeze=False)
    for r, m in enumerate(rows):
        imgs = _np(renders[m])
        if imgs.ndim != 3 or imgs.shape[0] != len(a):
            raise ValueError(f"renders[{m!r}] must be [{len(a)}, H, W], got shape {imgs.shape}")
        for c in range(len(a)):
            ax = axes[r, c]
            ax.imshow(np.clip(imgs[c], 0, 1), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"alpha={a[c]:.2f}", fontsize=8)
            if c == 0:
                ax.set_ylabel(_style(m)[1].split(" (")[0], fontsize=8, color=_style(m)[0])
    fig.suptitle(title, fontsize=10)
    return fig


def barrier_vs_noise_figure(eps: Sequence[float], stats: Mapping[str, tuple], *, ylabel: str, title: str):
    """``stats``: method -> ``(means, stds)`` over ``eps``."""
    fig = figure_factory()(figsize=(6.0, 4.0), layout="constrained")
    ax = fig.add_subplot()
    e = np.asarray(eps, dtype=np.float64)
    for m, (mu, sd) in stats.items():
        color, label = _style(m)
        ax.errorbar(e, mu, yerr=sd, color=color, label=label, marker="o", capsize=3, lw=1.5)
    ax.set_xlabel("Gaussian weight noise eps added to the orbit member")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def latent_map_figure(panels: Mapping[str, tuple], *, title: str):
    """``panels``: encoder name -> ``(xy [n, 2], orbit labels [n], within/between ratio)``."""
    fig = figure_factory()(figsize=(4.2 * len(panels), 4.2), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (name, (xy, labels, ratio)) in zip(axes, panels.items()):
        xy, lab = _np(xy), np.asarray(labels)
        ax.scatter(xy[:, 0], xy[:, 1], c=lab, cmap="tab10", s=14, alpha=0.8)
        ax.set_title(f"{name}\nwithin-orbit / between-orbit distance = {ratio:.2g}", fontsize=9)
        ax.set_xlabel("t-SNE 1")
        ax.set_ylabel("t-SNE 2")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=10)
    return fig
