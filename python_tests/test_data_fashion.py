"""idx reader and the Fashion-MNIST loader (small idx files written here + the real Debian files)."""

import gzip
import os
import struct

import numpy as np
import pytest
import torch

from scalegmn_ext.tasks import data

REAL = data.FASHION_MNIST_DIR
HAVE_REAL = os.path.isfile(os.path.join(REAL, "train-images-idx3-ubyte.gz"))


def _idx_bytes(arr: np.ndarray) -> bytes:
    code = {
        np.dtype("uint8"): 0x08,
        np.dtype("int8"): 0x09,
        np.dtype(">i2"): 0x0B,
        np.dtype(">i4"): 0x0C,
        np.dtype(">f4"): 0x0D,
        np.dtype(">f8"): 0x0E,
    }[arr.dtype]
    return bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()


def _write(path, arr, gz=False):
    raw = _idx_bytes(arr)
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_raw_and_gzip(tmp_path, gz):
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8)
    got = data.read_idx(_write(tmp_path / "imgs", imgs, gz))
    assert got.dtype == np.uint8 and got.shape == (5, 28, 28) and np.array_equal(got, imgs)
    for arr in (
        np.arange(-3, 4, dtype=">i4"),
        rng.standard_normal((2, 3)).astype(">f4"),
        rng.standard_normal(4).astype(">f8"),
        np.arange(-5, 5, dtype=">i2"),
        np.arange(-2, 2, dtype="int8"),
    ):
        out = data.read_idx(_write(tmp_path / "a", arr, gz))
        assert out.dtype.isnative and out.shape == arr.shape and np.array_equal(out, arr.astype(out.dtype))
    # compression is detected from the content, not the name
    p = tmp_path / "labels.gz"
    p.write_bytes(_idx_bytes(np.arange(10, dtype=np.uint8)))
    assert data.read_idx(p).tolist() == list(range(10))


def test_read_idx_errors_name_the_file(tmp_path):
    good = _idx_bytes(np.zeros((2, 4, 4), np.uint8))
    bad = tmp_path / "bad-magic"
    bad.write_bytes(b"\x01\x02" + good[2:])
    with pytest.raises(ValueError, match=r"bad-magic: bad idx magic number 0x0102"):
        data.read_idx(bad)
    code = tmp_path / "bad-type"
    code.write_bytes(b"\x00\x00\x07\x03" + good[4:])
    with pytest.raises(ValueError, match="bad-type: bad idx magic"):
        data.read_idx(code)
    trunc = tmp_path / "trunc"
    trunc.write_bytes(good[:-3])
    with pytest.raises(ValueError, match=r"trunc: idx data has 29 bytes but dimensions \[2, 4, 4\] of uint8 need 32"):
        data.read_idx(trunc)
    extra = tmp_path / "extra.gz"
    extra.write_bytes(gzip.compress(good + b"\x00"))
    with pytest.raises(ValueError, match="extra.gz: idx data has 33 bytes"):
        data.read_idx(extra)
    head = tmp_path / "head"
    head.write_bytes(good[:7])
    with pytest.raises(ValueError, match="head: truncated idx header"):
        data.read_idx(head)
    badgz = tmp_path / "badgz"
    badgz.write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(ValueError, match="badgz: cannot read idx file"):
        data.read_idx(badgz)
    with pytest.raises(ValueError, match="missing: cannot read idx file"):
        data.read_idx(tmp_path / "missing")


def _fake_fashion(root, n_train=6, n_test=4, gz=True, size=28):
    rng = np.random.default_rng(1)
    root.mkdir(exist_ok=True)
    out = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        imgs = rng.integers(0, 256, (n, size, size), dtype=np.uint8)
        labs = rng.integers(0, 10, n, dtype=np.uint8)
        suffix = ".gz" if gz else ""
        _write(root / f"{prefix}-images-idx3-ubyte{suffix}", imgs, gz)
        _write(root / f"{prefix}-labels-idx1-ubyte{suffix}", labs, gz)
        out[prefix] = (imgs, labs)
    return out


@pytest.mark.parametrize("gz", [True, False])
def test_load_fashion_mnist_from_root_and_env(tmp_path, monkeypatch, gz):
    fake = _fake_fashion(tmp_path / "fm", gz=gz)
    x, y = data.load_fashion_mnist("train", root=tmp_path / "fm")
    assert x.dtype == torch.float32 and x.shape == (6, 28, 28) and y.dtype == torch.int64
    assert torch.allclose(x, torch.from_numpy(fake["train"][0]).float() / 255)
    assert y.tolist() == fake["train"][1].tolist()
    monkeypatch.setenv("SCALEGMN_FASHION_MNIST", str(tmp_path / "fm"))
    xt, yt = data.load_fashion_mnist("test")
    assert xt.shape == (4, 28, 28) and yt.tolist() == fake["t10k"][1].tolist()
    xt[0, 0, 0] = 5.0  # the returned tensors are copies: the cache is not modified
    assert data.load_fashion_mnist("test")[0][0, 0, 0] <= 1.0
    with pytest.raises(ValueError, match="split must be 'train' or 'test'"):
        data.load_fashion_mnist("val")


def test_load_fashion_mnist_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("SCALEGMN_FASHION_MNIST", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match=r"SCALEGMN_FASHION_MNIST.*apt-get install dataset-fashion-mnist"):
        data.load_fashion_mnist()
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(
        FileNotFoundError, match=r"train-images-idx3-ubyte\(\.gz\) not found.*apt-get install dataset-fashion-mnist"
    ):
        data.load_fashion_mnist(root=empty)
    _fake_fashion(tmp_path / "small", size=27)
    with pytest.raises(ValueError, match=r"train-images-idx3-ubyte.gz: expected uint8 images \[n, 28, 28\]"):
        data.load_fashion_mnist(root=tmp_path / "small")
    mism = tmp_path / "mism"
    _fake_fashion(mism)
    _write(mism / "train-labels-idx1-ubyte.gz", np.zeros(5, np.uint8), gz=True)
    with pytest.raises(ValueError, match="has 5 labels but .* has 6 images"):
        data.load_fashion_mnist(root=mism)
    _write(mism / "train-labels-idx1-ubyte.gz", np.full(6, 12, np.uint8), gz=True)
    with pytest.raises(ValueError, match="labels must be 0..9"):
        data.load_fashion_mnist(root=mism)


@pytest.mark.skipif(
    not HAVE_REAL, reason="Debian package dataset-fashion-mnist not installed (apt-get install dataset-fashion-mnist)"
)
def test_real_fashion_mnist_debian_files(monkeypatch):
    monkeypatch.delenv("SCALEGMN_FASHION_MNIST", raising=False)
    x, y = data.load_fashion_mnist("train")
    assert x.shape == (60000, 28, 28) and y.shape == (60000,)
    assert torch.equal(torch.bincount(y), torch.full((10,), 6000))
    assert x.min() == 0 and x.max() == 1 and 0.2 < x.mean() < 0.4
    assert y[:10].tolist() == [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]  # the well-known first training labels
    xt, yt = data.load_fashion_mnist("test")
    assert xt.shape == (10000, 28, 28) and torch.equal(torch.bincount(yt), torch.full((10,), 1000))
    assert yt[:5].tolist() == [9, 2, 1, 1, 6]
    assert len(data.FASHION_MNIST_CLASSES) == 10
