"""Zoo generation, the zoo file format, resume/atomicity, corrupt files, the PNG figures and the CLI.

Everything runs on tiny zoos (a few networks, a few steps) so the file stays fast.
"""

import builtins
import importlib.util
import io
import json
import os
import sys

import numpy as np
import pytest
import torch

from scalegmn_ext import Architecture, LayerSpec, cli
from scalegmn_ext.tasks import fit
from scalegmn_ext.tasks.zoo import Zoo, ZooWriter, arch_from_dict, arch_to_dict
from scalegmn_ext.tasks.zoo import format as zfmt
from scalegmn_ext.tasks.zoo.cnn import CNN_COLUMNS, DEFAULT_RANGES, cnn_eval_data, generate_cnn_zoo
from scalegmn_ext.tasks.zoo.inr import INR_COLUMNS, generate_inr_zoo, load_source_images
from scalegmn_ext.weightspace import functional

INR_KW = dict(n=7, steps=12, lr=3e-3, chunk=3, fit_batch=2, seed=3)
CNN_KW = dict(
    n=4,
    source="mnist",
    epochs=2,
    checkpoints=[0, 1],
    train_size=240,
    test_size=96,
    eval_train_size=40,
    batch_size=16,
    chunk=2,
    seed=5,
)


pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


class Interrupt(Exception):
    pass


def _stop_after_first(k, num_chunks):
    raise Interrupt(f"simulated crash after chunk {k}")


@pytest.fixture(scope="module")
def inr_zoo(tmp_path_factory):
    return generate_inr_zoo(tmp_path_factory.mktemp("inr") / "zoo", **INR_KW)


@pytest.fixture(scope="module")
def cnn_zoo(tmp_path_factory):
    return generate_cnn_zoo(tmp_path_factory.mktemp("cnn") / "zoo", **CNN_KW)


# ----------------------------------------------------------------------------------------------
# architecture (de)serialisation and the fast SIREN fitter
# ----------------------------------------------------------------------------------------------
def test_arch_dict_roundtrip_and_errors():
    archs = [
        Architecture.siren(),
        Architecture.small_cnn_zoo("tanh"),
        Architecture.mlp([3, 5, 2], "tanh", symmetry="permutation"),
        Architecture.cnn(2, (4, 6), kernel_size=(3, 5), stride=1, padding=1, dense=(7, 3), activation="relu"),
        Architecture(
            (LayerSpec("dense", 2, 4, bias=False), LayerSpec("dense", 4, 1)), "sine", w0=12.5, output_offset=-1.0
        ),
    ]
    for a in archs:
        d = arch_to_dict(a)
        assert arch_from_dict(json.loads(json.dumps(d))) == a
    d = arch_to_dict(Architecture.siren())
    with pytest.raises(ValueError, match=r"arch.layers\[1\].in_features=7 does not match|layers\[1\]"):
        arch_from_dict({**d, "layers": [d["layers"][0], {**d["layers"][1], "in_features": 7}, d["layers"][2]]})
    with pytest.raises(ValueError, match="arch must have keys"):
        arch_from_dict({**d, "extra": 1})
    with pytest.raises(ValueError, match=r"kernel_size must be a list of two ints"):
        arch_from_dict({**d, "layers": [{**d["layers"][0], "kernel_size": 3}]})
    with pytest.raises(ValueError, match="activation must be one of"):
        arch_from_dict({**d, "activation": "swish"})
    with pytest.raises(ValueError, match="w0 must be a finite number"):
        arch_from_dict({**d, "w0": "30"})


def test_fast_sine_fit_matches_autograd_reference():
    images, _, _ = load_source_images("mnist")
    x = images[:6]
    for arch in (Architecture.siren(), Architecture.mlp([2, 8, 8, 8, 1], "sine", w0=20.0, output_offset=0.0)):
        init = fit.init_weights_seeded(arch, range(6), zero_bias=True)
        target = None
        for _ in range(2):
            ws, bs, p, steps = fit.fit_inrs(x, arch, steps=30, lr=1e-3, target_psnr=target, init=init)
            rw, rb, rsteps = fit._fit_autograd(
                x, arch, [w.clone() for w in init[0]], [b.clone() for b in init[1]], 30, 1e-3, target, None
            )
            assert torch.equal(steps, rsteps)
            for a, b in zip(ws + bs, rw + rb):
                torch.testing.assert_close(a, b, rtol=1e-4, atol=2e-5)
            if target is not None:
                assert (steps < 30).any() and (p[steps < 30] >= target).all()
            target = p.median().item() - 1.0  # second round: some INRs stop early and are frozen
    # per-network seeds: the same network gets the same init whatever the batch
    a = fit.init_weights_seeded(Architecture.siren(), [5, 9, 11])
    b = fit.init_weights_seeded(Architecture.siren(), [11])
    assert all(torch.equal(u[2], v[0]) for u, v in zip(a[0] + a[1], b[0] + b[1]))


# ----------------------------------------------------------------------------------------------
# INR zoo
# ----------------------------------------------------------------------------------------------
def test_inr_zoo_contents_and_reproduced_psnr(inr_zoo):
    z = inr_zoo
    assert len(z) == 7 and z.kind == "inr" and z.arch == Architecture.siren()
    assert z.info["format_version"] == zfmt.FORMAT_VERSION and z.info["complete"]
    assert len(z.info["shards"]) == 3 and [s["rows"] for s in z.info["shards"]] == [3, 3, 1]
    assert z.column_names == [c for c, _ in INR_COLUMNS] + ["split"]
    md = z.metadata
    assert [r["index"] for r in md] == list(range(7)) and [r["seed"] for r in md] == [3 * 2**32 + i for i in range(7)]
    assert all(r["image_source"] == "mnist5k" and 0 <= r["label"] <= 9 and r["steps"] == 12 for r in md)
    images, labels, _ = load_source_images("mnist")
    idx = torch.from_numpy(z.column("image_index"))
    assert torch.equal(labels[idx], torch.from_numpy(z.column("label")))
    # splits partition the zoo
    parts = [z.split(s) for s in ("train", "val", "test")]
    assert sorted(torch.cat(parts).tolist()) == list(range(7)) and len(parts[0]) >= 5
    with pytest.raises(ValueError, match="split must be one of"):
        z.split("dev")
    # stored weights reproduce the recorded PSNR through functional.forward
    ws, bs = z.load(slice(None))
    assert [tuple(w.shape) for w in ws] == [(7, 32, 2), (7, 32, 32), (7, 1, 32)] and ws[0].dtype == torch.float32
    rec = functional.render_inr(z.arch, ws, bs, 28, 28)
    torch.testing.assert_close(
        fit.psnr(rec, images[idx]), torch.from_numpy(z.column("psnr")).float(), rtol=0, atol=1e-3
    )
    assert (z.column("psnr") > 12).all()  # 12 steps at lr 3e-3: clearly fitted, far from the target
    # zero-initialised biases moved only through training (no uniform init)
    assert z.info["config"]["zero_bias"] is True
    # loading: lists, tensors, ints, duplicates, masks, out of range
    w_sel, b_sel = z.load([5, 0, 5, 3])
    assert torch.equal(w_sel[1], ws[1][[5, 0, 5, 3]]) and torch.equal(b_sel[2], bs[2][[5, 0, 5, 3]])
    assert torch.equal(z.load(torch.tensor([6]))[0][0], ws[0][6:])
    assert torch.equal(z.load(-1)[0][1], ws[1][6]) and z.load(2)[1][0].shape == (32,)
    mask = np.zeros(7, bool)
    mask[[1, 4]] = True
    assert torch.equal(z.load(mask)[0][0], ws[0][[1, 4]])
    assert z.load([])[0][0].shape == (0, 32, 2)
    with pytest.raises(IndexError, match="out of range"):
        z.load([7])
    # graphs through the compiled op
    node, edge = z.graphs([0, 2])
    assert node.shape == (2, 67, 1) and edge.shape == (2, 1120, 1) and (node[:, :2] == 1).all()
    # summary stored in zoo.json
    assert z.summary()["psnr_db"]["count"] == 7


def test_inr_zoo_resume_after_interruption(tmp_path, inr_zoo):
    out = tmp_path / "zoo"
    with pytest.raises(Interrupt):
        generate_inr_zoo(out, on_chunk=_stop_after_first, **INR_KW)
    shard0 = out / "shards" / "chunk-00000.safetensors"
    assert shard0.is_file() and not (out / "shards" / "chunk-00001.safetensors").exists()
    assert not [f for f in os.listdir(out / "shards") if "tmp" in f]
    with pytest.raises(ValueError, match=r"incomplete \(1 of 3 chunks written\).*rerun the same generator command"):
        Zoo(out)
    st0 = shard0.stat()
    done = []
    z = generate_inr_zoo(out, on_chunk=lambda k, n: done.append(k), **INR_KW)
    assert done == [1, 2]  # chunk 0 was not recomputed ...
    assert shard0.stat().st_mtime_ns == st0.st_mtime_ns and shard0.stat().st_ino == st0.st_ino  # ... nor rewritten
    # ... and the resumed zoo equals the uninterrupted one
    a, b = z.load(slice(None)), inr_zoo.load(slice(None))
    assert all(torch.equal(u, v) for u, v in zip(a[0] + a[1], b[0] + b[1]))
    assert z.metadata == inr_zoo.metadata
    # a rerun of a complete zoo does nothing; other settings are refused
    done.clear()
    generate_inr_zoo(out, on_chunk=lambda k, n: done.append(k), **INR_KW)
    assert done == []
    with pytest.raises(ValueError, match=r"already holds a zoo made with different settings.*steps"):
        generate_inr_zoo(out, **{**INR_KW, "steps": 13})


# ----------------------------------------------------------------------------------------------
# CNN zoo
# ----------------------------------------------------------------------------------------------
def test_cnn_zoo_contents_and_reproduced_accuracy(cnn_zoo):
    z = cnn_zoo
    ck = z.info["config"]["checkpoints"]
    assert ck == [0, 1, 2] and len(z) == 4 * 3 and z.kind == "cnn"
    assert z.column_names == [c for c, _ in CNN_COLUMNS] + ["split"]
    md = z.metadata
    assert [r["network"] for r in md] == [i for i in range(4) for _ in ck] and [r["epoch"] for r in md] == ck * 4
    assert [r["is_final"] for r in md] == [False, False, True] * 4
    for r in md:
        for k, (lo, hi, _) in DEFAULT_RANGES.items():
            assert lo <= r[k] <= hi
        assert r["activation"] in ("relu", "tanh") and r["train_size"] == max(16, round(r["train_frac"] * 240))
    # every checkpoint of a network is in the network's split
    net_split = {}
    for r in md:
        assert net_split.setdefault(r["network"], r["split"]) == r["split"]
    # epoch-0 rows are the initialisation: training moved the weights afterwards
    ws, bs = z.load(slice(None))
    assert not torch.equal(ws[0][0], ws[0][2])
    # per-activation architectures; the stored test accuracy and loss are reproduced
    acts = z.activations
    with pytest.raises(ValueError, match="mixes activations") if len(acts) > 1 else _nullcontext():
        _ = z.arch  # the property raises for a mixed zoo
    act0, used, view0 = z.one_activation(acts[0])  # one activation, every trained checkpoint
    stored = sorted({int(e) for e in z.where(activation=act0).column("epoch")})
    assert act0 == acts[0] and used == [e for e in stored if e > 0] and len(view0) > 0
    assert {int(e) for e in view0.column("epoch")} == set(used)
    with pytest.raises(ValueError, match=r"epochs \[99\] are not stored checkpoints"):
        z.one_activation(acts[0], [99])
    with pytest.raises(ValueError, match="has no 'gelu' networks"):
        z.one_activation("gelu")
    x, y = cnn_eval_data(z)
    assert x.shape == (96, 1, 28, 28)
    for act in acts:
        view = z.where(activation=act)
        assert view.arch == Architecture.small_cnn_zoo(act) and len(view) == 3 * sum(
            r["activation"] == act for r in md[::3]
        )
        w, b = view.load(slice(None))
        logits = functional.forward(view.arch, w, b, x)
        acc = (logits.argmax(-1) == y).double().mean(1)
        np.testing.assert_allclose(acc.numpy(), view.column("test_acc"), atol=1e-9)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 10).double(), y.repeat(len(view)), reduction="none")
        np.testing.assert_allclose(loss.view(len(view), -1).mean(1).numpy(), view.column("test_loss"), rtol=1e-4)
        assert z.arch_of(int(view.rows[0])) == view.arch
    fin = z.where(is_final=True)
    assert len(fin) == 4 and fin.column("epoch").tolist() == [2] * 4
    node, edge = z.graphs([0, 5])
    assert node.shape == (2, 59, 1) and edge.shape == (2, 688, 9) and (node[:, :1] == 0).all()
    assert z.summary()["networks"] == 4


def test_cnn_zoo_resume_equals_uninterrupted(tmp_path, cnn_zoo):
    out = tmp_path / "zoo"
    with pytest.raises(Interrupt):
        generate_cnn_zoo(out, on_chunk=_stop_after_first, **CNN_KW)
    done = []
    z = generate_cnn_zoo(out, on_chunk=lambda k, n: done.append(k), **CNN_KW)
    assert done == [1]
    a, b = z.load(slice(None)), cnn_zoo.load(slice(None))
    assert all(torch.equal(u, v) for u, v in zip(a[0] + a[1], b[0] + b[1]))
    assert z.metadata == cnn_zoo.metadata


def test_worker_threads_give_identical_zoos(tmp_path, inr_zoo, cnn_zoo):
    zi = generate_inr_zoo(tmp_path / "inr", workers=2, **INR_KW)
    wa, wb = zi.load(slice(None)), inr_zoo.load(slice(None))
    assert all(torch.equal(u, v) for u, v in zip(wa[0] + wa[1], wb[0] + wb[1])) and zi.metadata == inr_zoo.metadata
    zc = generate_cnn_zoo(tmp_path / "cnn", workers=2, **{**CNN_KW, "group_size": 1})  # 1 net per group: many units
    # group_size changes only the dropout streams: hyper-parameters and initialisations (epoch 0) are identical
    assert zc.column("lr").tolist() == cnn_zoo.column("lr").tolist()
    assert torch.equal(zc.where(epoch=0).load(slice(None))[0][0], cnn_zoo.where(epoch=0).load(slice(None))[0][0])
    zc2 = generate_cnn_zoo(tmp_path / "cnn2", workers=1, **{**CNN_KW, "group_size": 1})
    wa, wb = zc.load(slice(None)), zc2.load(slice(None))
    assert all(torch.equal(u, v) for u, v in zip(wa[0] + wa[1], wb[0] + wb[1])) and zc.metadata == zc2.metadata


def test_worker_errors_propagate_and_cancel_the_others():
    import threading
    import time

    from scalegmn_ext.tasks.zoo.generation import Cancelled, parallel_map

    stop, finished = threading.Event(), []

    def fn(i):
        if i == 0:
            time.sleep(0.02)
            raise RuntimeError("boom")
        for _ in range(400):
            if stop.is_set():
                raise Cancelled()
            time.sleep(0.005)
        finished.append(i)

    with pytest.raises(RuntimeError, match="boom"):
        parallel_map(fn, range(6), 2, stop)
    assert stop.is_set() and finished == []
    assert parallel_map(lambda i: i * i, range(5), 3) == [0, 1, 4, 9, 16]


def test_training_forward_matches_functional_forward():
    from scalegmn_ext.tasks.zoo.cnn import _forward_train

    arch = Architecture.small_cnn_zoo("tanh")
    ws, bs = fit.init_weights(arch, 3, generator=torch.Generator().manual_seed(0))
    x = torch.rand(3, 5, 1, 28, 28)
    ref = functional.forward(arch, ws, bs, x)
    torch.testing.assert_close(_forward_train(arch, ws, bs, x, None, None), ref)
    # per-network dropout: a network with keep probability 1 is untouched by its neighbours' dropout
    out = _forward_train(arch, ws, bs, x, torch.tensor([1.0, 0.5, 0.3]), torch.Generator().manual_seed(1))
    torch.testing.assert_close(out[0], ref[0])
    assert not torch.allclose(out[1], ref[1])


def test_cnn_hyperparameters_spread_and_validation(tmp_path):
    from scalegmn_ext.tasks.zoo.cnn import _check_ranges, _network_setup

    rng = _check_ranges(None)
    hps = [_network_setup(i, 0, ["relu", "tanh"], rng, 1000, 32) for i in range(200)]
    lrs = np.array([h["lr"] for h in hps])
    assert lrs.min() < 1e-3 and lrs.max() > 2e-2  # log-uniform over two decades
    assert {h["activation"] for h in hps} == {"relu", "tanh"}
    assert np.ptp([h["dropout"] for h in hps]) > 0.5 and np.ptp([h["train_frac"] for h in hps]) > 0.7
    with pytest.raises(ValueError, match="unknown hyper-parameter range"):
        _check_ranges({"momentum": (0.1, 0.9)})
    with pytest.raises(ValueError, match="dropout range must lie in"):
        _check_ranges({"dropout": (0.0, 1.0)})
    with pytest.raises(ValueError, match="activations must be a non-empty subset"):
        generate_cnn_zoo(tmp_path / "x", **{**CNN_KW, "activations": ["gelu"]})
    with pytest.raises(ValueError, match="checkpoints must be epochs in"):
        generate_cnn_zoo(tmp_path / "x", **{**CNN_KW, "checkpoints": [0, 9]})


class _nullcontext:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


# ----------------------------------------------------------------------------------------------
# bad files
# ----------------------------------------------------------------------------------------------
def _copy_zoo(src: Zoo, dst):
    import shutil

    shutil.copytree(src.path, dst)
    return dst


def test_corrupt_and_truncated_files_are_reported(tmp_path, inr_zoo):
    p = _copy_zoo(inr_zoo, tmp_path / "z")
    Zoo(p).verify()
    shard = p / "shards" / "chunk-00001.safetensors"
    good = shard.read_bytes()
    # truncated shard
    shard.write_bytes(good[:-100])
    with pytest.raises(
        ValueError, match=r"chunk-00001.safetensors: file has \d+ bytes but the zoo index records \d+ \(truncated"
    ):
        Zoo(p)
    # same size, garbage header
    shard.write_bytes(b"\xff" * len(good))
    with pytest.raises(ValueError, match="chunk-00001.safetensors: not a readable safetensors file"):
        Zoo(p)
    # same size, one flipped data byte: only the checksum can tell
    flipped = bytearray(good)
    flipped[-5] ^= 0xFF
    shard.write_bytes(bytes(flipped))
    with pytest.raises(ValueError, match="chunk-00001.safetensors: SHA-256 does not match"):
        Zoo(p).verify()
    shard.write_bytes(good)
    # a valid safetensors file with the wrong shapes
    from safetensors.torch import save_file

    other = p / "other.safetensors"
    save_file({"layers.0.weight": torch.zeros(3, 5, 2)}, str(other), metadata={"rows_json": "[]"})
    rows, _ = zfmt._read_shard_header(str(shard), inr_zoo.arch, INR_COLUMNS)
    assert rows == 3
    with pytest.raises(ValueError, match=r"other.safetensors: tensors \['layers.0.weight'\] do not match"):
        zfmt._read_shard_header(str(other), inr_zoo.arch, INR_COLUMNS)
    # missing shard
    shard.rename(p / "moved")
    with pytest.raises(ValueError, match="chunk-00001.safetensors: shard file is missing"):
        Zoo(p)
    (p / "moved").rename(shard)
    # truncated / edited CSV
    csvp = p / "networks.csv"
    text = csvp.read_text()
    csvp.write_text("\n".join(text.splitlines()[:-2]) + "\n")
    with pytest.raises(ValueError, match=r"networks.csv: has 5 data rows but the zoo has 7 networks"):
        Zoo(p)
    csvp.write_text(text.replace("psnr", "PSNR", 1))
    with pytest.raises(ValueError, match="networks.csv: header .* does not match the columns"):
        Zoo(p)
    lines = text.splitlines()
    lines[3] = lines[3].replace(",mnist5k,", ",mnist5k,notafloat_", 1)
    csvp.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match=r"networks.csv: line 4, column 'psnr'"):
        Zoo(p)
    csvp.write_text(text)
    # zoo.json: truncated, unknown version, incomplete
    meta = p / "zoo.json"
    mtext = meta.read_text()
    meta.write_text(mtext[: len(mtext) // 2])
    with pytest.raises(ValueError, match="zoo.json: not valid JSON"):
        Zoo(p)
    meta.write_text(mtext.replace('"format_version": 1', '"format_version": 99'))
    with pytest.raises(ValueError, match="format_version 99 is not supported"):
        Zoo(p)
    meta.write_text(mtext.replace('"complete": true', '"complete": false'))
    with pytest.raises(ValueError, match="the zoo is incomplete"):
        Zoo(p)
    meta.write_text(mtext.replace('"file": "shards/chunk-00000.safetensors"', '"file": "../../etc/passwd"'))
    with pytest.raises(ValueError, match="is not a relative path inside the zoo"):
        Zoo(p)
    meta.write_text(mtext)
    assert len(Zoo(p)) == 7
    with pytest.raises(ValueError, match="not a zoo directory"):
        Zoo(tmp_path)
    # a corrupt shard of an incomplete zoo is regenerated on resume, never trusted
    shard.write_bytes(good[:50])
    meta.write_text(mtext.replace('"complete": true', '"complete": false'))
    done = []
    z = generate_inr_zoo(p, on_chunk=lambda k, n: done.append(k), **INR_KW)
    assert done == [1] and torch.equal(z.load(4)[0][1], inr_zoo.load(4)[0][1])


def test_missing_safetensors_says_what_to_install(monkeypatch, tmp_path):
    real_import = builtins.__import__

    def fake_import(name, *a, **k):
        if name.startswith("safetensors"):
            raise ImportError("No module named 'safetensors'")
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ImportError, match="pip install safetensors"):
        Zoo(tmp_path)
    with pytest.raises(ImportError, match="pip install safetensors"):
        ZooWriter(tmp_path / "w", kind="inr", arch=Architecture.siren(), config={}, columns=INR_COLUMNS, num_chunks=1)


def test_writer_atomic_and_validating(tmp_path):
    arch = Architecture.mlp([2, 3, 1], "relu")
    w = ZooWriter(tmp_path / "z", kind="test", arch=arch, config={"a": 1}, columns=[("score", "float")], num_chunks=2)
    ws = [torch.randn(2, 3, 2), torch.randn(2, 1, 3)]
    bs = [torch.randn(2, 3), torch.randn(2, 1)]
    with pytest.raises(ValueError, match="cannot finalize, chunks \\[0, 1\\]"):
        w.finalize(split_seed=0, split_fractions={"train": 1.0, "val": 0.0, "test": 0.0})
    with pytest.raises(ValueError, match=r"layers.1.weight has shape \(2, 2, 3\)"):
        w.write_chunk(0, [ws[0], torch.randn(2, 2, 3)], bs, [{"score": 1}, {"score": 2}])
    with pytest.raises(ValueError, match="lacks columns \\['score'\\]"):
        w.write_chunk(0, ws, bs, [{"score": 1}, {}])
    assert not os.path.exists(w.shard_path(0))  # failed writes leave nothing behind
    w.write_chunk(0, ws, bs, [{"score": 0.1}, {"score": float("nan")}])
    w.write_chunk(1, [t[:1] for t in ws], [t[:1] for t in bs], [{"score": 3.0}])
    z = w.finalize(split_seed=1, split_fractions={"train": 0.5, "val": 0.0, "test": 0.5})
    assert len(z) == 3 and np.isnan(z.column("score")[1]) and z.column("score")[0] == 0.1
    assert sorted(z.column("split").tolist()) == ["test", "test", "train"] or len(z.split("test")) in (1, 2)
    assert torch.equal(z.load(2)[0][0], ws[0][0])
    assert sorted(os.listdir(tmp_path / "z")) == [".lock", "networks.csv", "shards", "zoo.json"]
    # one writer per directory at a time; foreign non-empty directories are refused
    w1 = ZooWriter(tmp_path / "y", kind="test", arch=arch, config={}, columns=[("score", "float")], num_chunks=1)
    with pytest.raises(ValueError, match="another process is generating this zoo"):
        ZooWriter(tmp_path / "y", kind="test", arch=arch, config={}, columns=[("score", "float")], num_chunks=1)
    w1.close()
    ZooWriter(tmp_path / "y", kind="test", arch=arch, config={}, columns=[("score", "float")], num_chunks=1).close()
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("x")
    with pytest.raises(ValueError, match="holds no zoo.json and is not empty"):
        ZooWriter(tmp_path / "mine", kind="test", arch=arch, config={}, columns=[("score", "float")], num_chunks=1)
    s = zfmt.assign_splits(1000, 0, {"train": 0.8, "val": 0.1, "test": 0.1})
    assert (
        s.count("test") == 100
        and s.count("val") == 100
        and s == zfmt.assign_splits(1000, 0, {"train": 0.8, "val": 0.1, "test": 0.1})
    )


# ----------------------------------------------------------------------------------------------
# figures (matplotlib)
# ----------------------------------------------------------------------------------------------
def _read_png(path):
    """A written PNG read back as float RGB(A) in [0, 1], [H, W, C]."""
    from matplotlib import image as mpimg

    img = mpimg.imread(str(path))
    assert img.ndim == 3 and img.shape[2] in (3, 4) and img.dtype == np.float32
    return img


def _pixels_near(img, hex_color: str, tol: float = 0.06) -> int:
    rgb = np.array([int(hex_color[i : i + 2], 16) / 255 for i in (1, 3, 5)], np.float32)
    return int((np.abs(img[:, :, :3] - rgb) < tol).all(-1).sum())


def _block_matplotlib(monkeypatch):
    for name in ("matplotlib", "matplotlib.figure", "matplotlib.backends", "matplotlib.backends.backend_agg"):
        monkeypatch.setitem(sys.modules, name, None)


def test_image_pairs_figure_writes_a_readable_png(tmp_path):
    pytest.importorskip("matplotlib")
    from scalegmn_ext.tasks import plots

    src = torch.zeros(5, 28, 28)
    src[:, 8:20, 12:16] = 1.0  # a white bar on black
    rec = 0.5 * src
    fig = plots.image_pairs_figure(
        src,
        rec,
        captions=[f"#{i} label {i}" for i in range(5)],
        reconstruction_captions=[f"{30 + i} dB" for i in range(5)],
        title="pairs",
        pairs_per_row=2,
    )
    assert len(fig.axes) == 10  # 5 sources + 5 reconstructions
    assert [ax.get_title() for ax in fig.axes[:4]] == ["#0 label 0", "30 dB", "#1 label 1", "31 dB"]
    assert fig.get_suptitle() == "pairs"
    f = plots.save_png(fig, tmp_path / "pairs.png")
    img = _read_png(f)
    w_in, h_in = fig.get_size_inches()
    assert img.shape[:2] == (round(h_in * fig.dpi), round(w_in * fig.dpi))
    gray = img[:, :, :3].mean(-1)
    assert (gray < 0.05).sum() > 5 * 200 and (gray > 0.95).sum() > 1000  # black tiles and white bars/background
    assert ((gray > 0.4) & (gray < 0.6)).sum() > 5 * 20  # the half-bright reconstructions
    assert all(_pixels_near(img, c) > 50 for c in plots.PAIR_FRAME_COLORS)  # source / reconstruction frames
    with pytest.raises(ValueError, match="reconstructions must have the shape of sources"):
        plots.image_pairs_figure(src, rec[:4])
    with pytest.raises(ValueError, match=r"captions must have one entry per image \(5\)"):
        plots.image_pairs_figure(src, rec, captions=["a"])
    with pytest.raises(ValueError, match=r"sources must be \[N, H, W\]"):
        plots.image_pairs_figure(src[0], rec[0])


def test_accuracy_histogram_figure_has_labels_legend_and_bars(tmp_path):
    pytest.importorskip("matplotlib")
    from scalegmn_ext.tasks import plots

    fig = plots.accuracy_histogram_figure({"relu": [0.1, 0.5, 0.52], "tanh": [0.9]}, bins=10, title="acc", chance=0.1)
    ax = fig.axes[0]
    assert "%" in ax.get_xlabel() and "count" in ax.get_ylabel() and ax.get_title() == "acc"
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(t.startswith("relu (n=3, mean 37.3 %)") for t in legend)
    assert any(t.startswith("tanh (n=1, mean 90.0 %)") for t in legend)
    assert any("chance (10 %)" in t for t in legend)
    assert ax.get_xlim() == (0.0, 100.0)
    f = plots.save_png(fig, tmp_path / "hist.png")
    img = _read_png(f)
    assert img.shape[:2] == (420, 700)
    assert _pixels_near(img, plots.ACTIVATION_COLORS["relu"]) > 500  # three networks' worth of bars
    assert _pixels_near(img, plots.ACTIVATION_COLORS["tanh"]) > 100
    with pytest.raises(ValueError, match="groups must name at least one group"):
        plots.accuracy_histogram_figure({})


def test_plots_without_matplotlib_name_the_extra(monkeypatch):
    from scalegmn_ext.tasks import plots

    _block_matplotlib(monkeypatch)
    with pytest.raises(ImportError, match=r"pip install 'scalegmn_ext\[plots\]'"):
        plots.accuracy_histogram_figure({"relu": [0.5]})
    with pytest.raises(ImportError, match=r"scalegmn_ext\[plots\]"):
        plots.image_pairs_figure(np.zeros((1, 4, 4)), np.zeros((1, 4, 4)))


# ----------------------------------------------------------------------------------------------
# CLI and progress bar
# ----------------------------------------------------------------------------------------------
def test_cli_zoo_inr_and_cnn(tmp_path, capsys, monkeypatch):
    out = tmp_path / "inr"
    args = [
        "zoo",
        "inr",
        "--n",
        "4",
        "--steps",
        "6",
        "--chunk",
        "2",
        "--fit-batch",
        "2",
        "--out",
        str(out),
        "--preview",
        "4",
    ]
    assert cli.main(args) == 0
    cap = capsys.readouterr()
    assert "PSNR (dB)" in cap.out and "INRs/min" in cap.out and "preview.png" in cap.out
    assert "INRs" in cap.err and "ETA" in cap.err  # progress bar on stderr
    has_mpl = importlib.util.find_spec("matplotlib") is not None
    if has_mpl:  # 4 pairs (source | reconstruction) of 28x28 digits, framed blue / red
        img = _read_png(out / "preview.png")
        assert img.shape[1] > img.shape[0] > 100
        gray = img[:, :, :3].mean(-1)
        from scalegmn_ext.tasks.plots import PAIR_FRAME_COLORS

        assert (gray < 0.05).sum() > 4 * 300 and all(_pixels_near(img, c) > 40 for c in PAIR_FRAME_COLORS)
    else:
        assert "preview      not written" in cap.out and "scalegmn_ext[plots]" in cap.out
    assert len(Zoo(out)) == 4
    assert cli.main(args + ["--quiet"]) == 0  # rerun: already complete
    assert "fitted" not in capsys.readouterr().out
    with monkeypatch.context() as m:  # without matplotlib the zoo is still reported, the figure is named missing
        _block_matplotlib(m)
        assert cli.main(args + ["--quiet"]) == 0
        cap = capsys.readouterr()
        assert "PSNR (dB)" in cap.out and "preview      not written" in cap.out
        assert "pip install 'scalegmn_ext[plots]'" in cap.out
    cout = tmp_path / "cnn"
    assert (
        cli.main(
            [
                "zoo",
                "cnn",
                "--n",
                "2",
                "--source",
                "mnist",
                "--epochs",
                "1",
                "--train-size",
                "64",
                "--test-size",
                "32",
                "--eval-train-size",
                "16",
                "--batch-size",
                "16",
                "--out",
                str(cout),
                "--dropout-range",
                "0,0.2",
                "--quiet",
            ]
        )
        == 0
    )
    cap = capsys.readouterr()
    assert "final test acc" in cap.out and cap.err == ""
    if has_mpl:  # both nets are relu or tanh: their colour's bars are drawn
        from scalegmn_ext.tasks.plots import ACTIVATION_COLORS

        hist = _read_png(cout / "accuracy_hist.png")
        assert hist.shape[:2] == (420, 700)
        acts = {r["activation"] for r in Zoo(cout).metadata}
        assert all(_pixels_near(hist, ACTIVATION_COLORS[a]) > 100 for a in acts)
    assert all(r["dropout"] <= 0.2 for r in Zoo(cout).metadata)
    # clear errors, no traceback
    monkeypatch.setenv("SCALEGMN_FASHION_MNIST", str(tmp_path / "nothing"))
    assert cli.main(["zoo", "cnn", "--n", "1", "--out", str(tmp_path / "f"), "--quiet"]) == 2
    assert "apt-get install dataset-fashion-mnist" in capsys.readouterr().err
    assert cli.main(["zoo", "inr", "--n", "4", "--steps", "7", "--chunk", "2", "--out", str(out), "--quiet"]) == 2
    assert "different settings" in capsys.readouterr().err


def test_cli_interrupt_and_view_helpers(tmp_path, capsys, monkeypatch, inr_zoo):
    import scalegmn_ext.tasks.zoo.inr as zinr

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(zinr, "generate_inr_zoo", interrupted)
    assert cli.main(["zoo", "inr", "--n", "4", "--out", str(tmp_path / "x"), "--quiet"]) == 130
    assert "rerun the same command to resume" in capsys.readouterr().err
    v = inr_zoo.where(label=lambda c: c % 2 == 0, split="train")
    assert all(r["label"] % 2 == 0 and r["split"] == "train" for r in v.metadata)
    assert v.columns["index"] == v.rows.tolist() and len(v.split("train")) == len(v)
    assert torch.equal(v.load(slice(None))[0][0], inr_zoo.load(v.rows)[0][0])


def test_progress_bar_units_rate_and_eta():
    s = io.StringIO()  # not a terminal: one line per report, at most every 30 s, and a last one
    bar = cli.ZooProgress(100, "INRs", label="inr ", stream=s)
    bar.update(20)  # resumed: 20 already done
    bar.bar.start_t -= 40.0  # pretend the next report comes 40 s later
    bar.bar.last_print_t -= 40.0
    bar.update(60.4, "PSNR 31.0 dB")
    line = s.getvalue().splitlines()[-1]
    # count and percentage in one unit (fractional networks), rate and ETA exclude the resumed 20
    assert "60.4/100 INRs" in line and " 60%" in line and "PSNR 31.0 dB" in line
    assert "1.01INRs/s" in line and "ETA 00:39" in line
    assert "\r" not in s.getvalue()
    n_lines = len(s.getvalue().splitlines())
    bar.update(61)  # within 30 s of the last line: no new line
    assert len(s.getvalue().splitlines()) == n_lines
    bar.update(100)
    bar.close()
    assert "100.0/100 INRs" in s.getvalue().splitlines()[-1] and "100%" in s.getvalue().splitlines()[-1]
    assert bar.done - bar.start_done == 80  # what this run did (the CLI's "fitted N INRs")
    quiet = io.StringIO()
    q = cli.ZooProgress(8, "nets", stream=quiet, enabled=False)
    q.update(0)
    q.update(1.6, "relu loss 2.1")
    q.close()
    assert quiet.getvalue() == "" and q.done == 1.6


def test_refused_rerun_names_every_differing_setting(tmp_path):
    out = tmp_path / "zoo"
    generate_inr_zoo(out, **INR_KW)
    with pytest.raises(ValueError) as info:
        generate_inr_zoo(out, **{**INR_KW, "steps": 13, "lr": 1e-3})
    msg = str(info.value)
    assert "config.steps: stored 12, new 13" in msg and "config.lr: stored 0.003, new 0.001" in msg
    assert "config.seed" not in msg  # settings that agree are not listed
    assert msg.endswith("choose another output directory")  # the whole message, not cut
    cnn_out = tmp_path / "cnn"
    generate_cnn_zoo(cnn_out, **{**CNN_KW, "n": 2, "epochs": 1, "checkpoints": [1]})
    with pytest.raises(ValueError) as info:
        generate_cnn_zoo(cnn_out, **{**CNN_KW, "n": 2, "epochs": 2, "checkpoints": [2]})
    assert "config.epochs: stored 1, new 2" in str(info.value)
    assert "config.checkpoints: stored [1], new [2]" in str(info.value)


def test_load_accepts_a_view_of_the_zoo(tmp_path, inr_zoo):
    train = inr_zoo.where(split="train")
    ws, bs = inr_zoo.load(train)  # the view's rows, in its order
    ws2, bs2 = train.load()
    assert all(torch.equal(a, b) for a, b in zip(ws + bs, ws2 + bs2)) and ws[0].shape[0] == len(train)
    node, _ = inr_zoo.graphs(train)
    assert node.shape[0] == len(train)
    # a view of a view: indices are relative to the view that loads
    odd = train.where(label=lambda c: c % 2 == 1)
    assert torch.equal(train.load(odd)[0][0], inr_zoo.load(odd.rows)[0][0])
    # rows outside the loading view, or another zoo's view: a clear error saying what to pass
    with pytest.raises(ValueError, match=r"not in this view.*view\.load\(\)"):
        train.load(inr_zoo.where(split="test"))
    other = generate_inr_zoo(tmp_path / "other", **INR_KW)
    with pytest.raises(ValueError, match="is a view of the zoo .* not of"):
        inr_zoo.load(other.where(split="train"))
    with pytest.raises(TypeError, match=r"indices must be .* a view of this zoo \(zoo\.where\(\.\.\.\)\), got list"):
        inr_zoo.load([0.5, 1.5])
