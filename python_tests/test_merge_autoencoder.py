"""The canonicalising autoencoder and the shared trainer.

* decoded networks are identical across a symmetry orbit (float64 to rounding; float32 <= 1e-5),
  on random and on trained networks, for both decoders;
* training lowers the function-space loss; resume equals an uninterrupted run; a NaN loss stops
  with a clear error and leaves the last good checkpoint; 2 gloo processes under torchrun equal
  one process on the same global batch.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from scalegmn_ext.models import ScaleGMNConfig
from scalegmn_ext.models.autoencoder import ScaleGMNAutoencoder, num_parameters_of, unflatten_params
from scalegmn_ext.tasks.merge.autoencoder import DistillationLoss, INRRenderLoss, canonicalize, reconstruction_quality
from scalegmn_ext.tasks.train import NetworkSet, TrainConfig, Trainer, TrainingDiverged
from scalegmn_ext.testing import random_weights
from scalegmn_ext.weightspace.architecture import Architecture
from scalegmn_ext.weightspace.symmetry import apply_group_element, random_group_element

pytestmark = pytest.mark.usefixtures("one_thread")
HERE = os.path.dirname(os.path.abspath(__file__))


def _small_cfg(**kw):
    return ScaleGMNConfig(d_hid=16, num_layers=2, dropout=0.0, **kw)


def test_parameter_counts_match_the_paper():
    """Decoder sizes of the paper: 772,513 (SIREN, d 128) and 5,751,146 (Small CNN, d 256)."""
    for arch, d, n_flat, n_dec in (
        (Architecture.siren(), 128, 1185, 772_513),
        (Architecture.small_cnn_zoo("relu"), 256, 4970, 5_751_146),
    ):
        assert num_parameters_of(arch) == n_flat
        ae = ScaleGMNAutoencoder(arch, ScaleGMNConfig(d_hid=d))
        assert sum(p.numel() for p in ae.decoder.parameters()) == n_dec
        assert ae.latent_dim == d


def test_unflatten_order_and_errors():
    arch = Architecture.mlp([2, 3, 1], "tanh")
    flat = torch.arange(13.0).unsqueeze(0)
    ws, bs = unflatten_params(arch, flat)
    assert ws[0].tolist() == [[[0, 1], [2, 3], [4, 5]]] and bs[0].tolist() == [[6, 7, 8]]
    assert ws[1].tolist() == [[[9, 10, 11]]] and bs[1].tolist() == [[12]]
    with pytest.raises(ValueError, match=r"flat must be \[B, 13\]"):
        unflatten_params(arch, flat[:, :5])


@pytest.mark.parametrize("decoder", ["mlp", "neuron"])
@pytest.mark.parametrize("name", ["siren", "cnn_relu", "cnn_tanh"])
def test_decoded_networks_are_identical_across_an_orbit(real_nets, name, decoder):
    arch, ws, bs, _ = real_nets[name]
    ws, bs = [w.clone() for w in ws], [b.clone() for b in bs]
    ws[1][0, :3] = 0.0  # exact zeros and a tiny weight, as trained networks can have
    ws[1][1, 0] = 1e-8
    torch.manual_seed(0)
    ae = ScaleGMNAutoencoder(arch, _small_cfg(input_value=0.0 if arch.is_cnn else 1.0), decoder=decoder).double().eval()
    if decoder == "neuron":  # per-layer normalisation (one constant per layer) must keep it exact
        ae.fit_scales(ws, bs)
        assert not ae.scales.is_identity
    g = random_group_element(
        arch, ws[0].shape[0], generator=torch.Generator().manual_seed(1), dtype=torch.float64, scale_range=(1e-3, 1e3)
    )
    tw, tb = apply_group_element(arch, ws, bs, g)
    with torch.no_grad():
        a, b = ae(ws, bs), ae(tw, tb)
    for x, y in zip(a[0] + a[1], b[0] + b[1]):
        torch.testing.assert_close(y, x, rtol=1e-10, atol=1e-12)
    ae32 = ae.float()
    with torch.no_grad():
        a, b = (
            ae32([w.float() for w in ws], [v.float() for v in bs]),
            ae32([w.float() for w in tw], [v.float() for v in tb]),
        )
    for x, y in zip(a[0] + a[1], b[0] + b[1]):
        assert float((x - y).abs().max() / x.abs().max()) <= 1e-5


def _siren_set(n, seed=0):
    arch = Architecture.siren((2, 8, 8, 1))
    ws, bs = random_weights(arch, n, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    return arch, NetworkSet([w / w[0].numel() ** 0.5 for w in ws], bs)


def _trainer(tmp, arch, data, steps=6, loss=None, **kw):
    torch.manual_seed(0)
    model = ScaleGMNAutoencoder(arch, _small_cfg(), decoder="neuron", decoder_hidden=(2,)).double()
    cfg = TrainConfig(steps=steps, batch_size=4, warmup=2, val_every=3, checkpoint_every=3, seed=1, **kw)
    return Trainer(model, loss or INRRenderLoss(arch, size=8), data, data, cfg, tmp, progress=False)


def test_training_lowers_the_loss(tmp_path, real_nets):
    arch, ws, bs, _ = real_nets["siren"]  # SIRENs fitted to real digits
    data = NetworkSet(ws, bs)
    tr = _trainer(tmp_path, arch, data, steps=40, lr=3e-3, loss=INRRenderLoss(arch, size=28))
    before = tr.evaluate()
    tr.fit()
    assert tr.history[-1]["val"] < 0.5 * before
    assert os.path.exists(tmp_path / "checkpoint.pt")


def test_resume_equals_an_uninterrupted_run(tmp_path):
    arch, data = _siren_set(8)
    full = _trainer(tmp_path / "full", arch, data, steps=6)
    full.fit()
    part = _trainer(tmp_path / "part", arch, data, steps=6)
    part.fit(stop_after=4)  # interrupted between checkpoints (every 3 steps): resume from step 4
    rest = _trainer(tmp_path / "part", arch, data, steps=6)
    rest.fit(resume=True)
    for k, v in full.model.state_dict().items():
        torch.testing.assert_close(rest.model.state_dict()[k], v, rtol=0, atol=0)
    with pytest.raises(FileExistsError, match="resume=True"):
        _trainer(tmp_path / "full", arch, data).fit()


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    arch, data = _siren_set(8)
    calls = {"n": 0}
    base = INRRenderLoss(arch, size=8)

    def flaky(model, ws, bs):
        calls["n"] += 1
        out = base(model, ws, bs)
        return out * float("nan") if calls["n"] > 5 else out

    tr = _trainer(tmp_path, arch, data, steps=8, loss=flaky)
    with pytest.raises(TrainingDiverged, match="became nan at step 3"):
        tr.fit()  # steps 0-2 are calls 1-3, validation after step 3 is calls 4-5 (2 chunks), step 3 is nan
    ck = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert ck["step"] == 3 and all(torch.isfinite(v).all() for v in ck["model"].values())


def test_bad_trainer_input(tmp_path):
    arch, data = _siren_set(8)
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        TrainConfig(batch_size=0)
    small = NetworkSet([w[:2] for w in data.weights], [b[:2] for b in data.biases])
    with pytest.raises(ValueError, match="fewer than batch_size"):
        _trainer(tmp_path, arch, small)
    with pytest.raises(ValueError, match="INR architecture"):
        INRRenderLoss(Architecture.small_cnn_zoo("relu"))


def test_distillation_loss_is_zero_for_identical_networks_and_canonicalize_batches(real_nets):
    arch, ws, bs, _ = real_nets["cnn_relu"]
    images = torch.randn(40, 1, 28, 28, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    kd = DistillationLoss(arch, images, n_images=16)
    identity = lambda w, b: (w, b)  # noqa: E731
    assert float(kd(identity, ws, bs).abs().max()) == 0.0
    noisy = lambda w, b: ([x + 0.3 * torch.randn_like(x) for x in w], b)  # noqa: E731
    assert float(kd(noisy, ws, bs).min()) > 0
    torch.manual_seed(0)
    ae = ScaleGMNAutoencoder(arch, _small_cfg(input_value=0.0), decoder="neuron").double()
    cw, cb = canonicalize(ae, ws, bs, batch_size=2)
    assert [w.shape for w in cw] == [w.shape for w in ws]
    q = reconstruction_quality(arch, (ws, bs), (ws, bs), images=images, labels=torch.zeros(40, dtype=torch.long))
    assert q["accuracy_kept"] == 0.0


def test_two_gloo_processes_equal_one_process(tmp_path):
    """DDP via torchrun (2 gloo processes, 4 networks each) == one process on the same 8-network
    global batch, float64."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.path.dirname(HERE), os.environ.get("PYTHONPATH", "")])}
    worker = os.path.join(HERE, "ddp_train_worker.py")
    subprocess.run([sys.executable, worker, str(tmp_path / "single")], check=True, env=env, timeout=300)
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            worker,
            str(tmp_path / "ddp"),
        ],
        env=env,
        timeout=300,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, f"torchrun failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    a = torch.load(tmp_path / "single" / "final.pt", weights_only=False)
    b = torch.load(tmp_path / "ddp" / "final.pt", weights_only=False)
    for k, v in a["model"].items():
        torch.testing.assert_close(b["model"][k], v, rtol=1e-12, atol=1e-12)
    assert [h["val"] for h in a["history"]] == pytest.approx([h["val"] for h in b["history"]], rel=1e-12)
    assert [h["train_loss"] for h in a["history"]] == pytest.approx([h["train_loss"] for h in b["history"]], rel=1e-12)


def test_checkpoint_round_trip_and_wrong_architecture(tmp_path):
    from scalegmn_ext.tasks.merge.autoencoder import autoencoder_state, load_autoencoder

    arch, data = _siren_set(8)
    tr = _trainer(tmp_path, arch, data, steps=2)
    tr.model.fit_scales(data.weights, data.biases)  # the per-layer scales travel in the checkpoint
    tr.extra_state = autoencoder_state(tr.model)
    tr.fit()
    m = load_autoencoder(str(tmp_path / "checkpoint.pt"), arch).double()
    torch.testing.assert_close(m.scales.w_scale, tr.model.scales.w_scale)
    assert not m.scales.is_identity
    ws, bs = data.take(torch.arange(3))
    with torch.no_grad():
        (w1, b1), (w2, b2) = m(ws, bs), tr.model.eval()(ws, bs)
    for x, y in zip(w1 + b1, w2 + b2):
        torch.testing.assert_close(x, y)
    other = Architecture.siren((2, 16, 16, 1))
    with pytest.raises(ValueError, match=r"holds an autoencoder for 2->dense\(8\).*not for 2->dense\(16\)"):
        load_autoencoder(str(tmp_path / "checkpoint.pt"), other)
    with pytest.raises(ValueError):  # networks of another architecture into the model
        m(*random_weights(other, 2, dtype=torch.float64))


def test_layer_scales_fit_apply_and_old_checkpoints():
    """One positive constant per layer: fitted to 1/std, inverted exactly, validated; a state
    dict from before the scales existed loads as identity scales."""
    from scalegmn_ext.models.normalization import LayerScales

    arch, data = _siren_set(6)
    sc = LayerScales(arch.num_layers).fit(data.weights, data.biases)
    nw, nb = sc.normalize(data.weights, data.biases)
    for t in nw + nb:
        assert abs(float(t.std()) - 1.0) < 1e-12
    bw, bb = sc.denormalize(nw, nb)
    for x, y in zip(bw + bb, data.weights + data.biases):
        torch.testing.assert_close(x, y, rtol=1e-15, atol=0)
    const = [torch.zeros(6, 8, 2, dtype=torch.float64)] + [w for w in data.weights[1:]]
    assert float(LayerScales(arch.num_layers).fit(const, data.biases).w_scale[0]) == 1.0  # std 0 -> 1
    with pytest.raises(ValueError, match="one per layer"):
        sc.normalize(data.weights[:2], data.biases)
    with pytest.raises(ValueError, match="w_scale must be 3 finite positive"):
        LayerScales(3, w_scale=torch.tensor([1.0, 0.0, 2.0]))
    torch.manual_seed(0)
    ae = ScaleGMNAutoencoder(arch, _small_cfg())
    old = {k: v for k, v in ae.state_dict().items() if not k.startswith("scales.")}
    ae.fit_scales(data.weights, data.biases)
    ae.load_state_dict(old)  # strict: the missing scales are not an error, they become identity
    assert ae.scales.is_identity
    with pytest.raises(ValueError, match="not a graph"):
        ae.fit_scales(data.weights, data.biases).encode(sx_graph(arch, data))


def sx_graph(arch, data):
    from scalegmn_ext.weightspace.graph import WeightGraph

    return WeightGraph.from_weights(arch, [w.float() for w in data.weights], [b.float() for b in data.biases])
