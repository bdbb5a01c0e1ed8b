"""Probe features (models/probes.py) and the ScaleGMN's extra node features.

* ``functional.preactivations`` equals a per-network loop with torch.nn.functional (MLP, CNN,
  unbatched, empty batch);
* the features are exactly equivariant: on networks trained on real digits with exact zeros and
  1e-8 weights and scale factors on [1e-3, 1e3], the encoder fed them is invariant and the head
  equivariant in float64 (fast path = per-edge reference path), and an autoencoder with probes
  maps an orbit to one network (float64 to rounding, float32 <= 1e-5);
* checkpoints carry the probe inputs and scales; bad input gets errors that name the argument.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from scalegmn_ext.models import ScaleGMN, ScaleGMNConfig, ScaleGMNEquivariant
from scalegmn_ext.models.autoencoder import ScaleGMNAutoencoder
from scalegmn_ext.models.probes import ProbeFeatures, default_probe_inputs
from scalegmn_ext.tasks.data import load_mnist_5k
from scalegmn_ext.testing import flat_params, max_rel_diff, random_weights
from scalegmn_ext.weightspace import symmetry
from scalegmn_ext.weightspace.architecture import Architecture
from scalegmn_ext.weightspace.functional import activation_fn, forward, preactivations
from scalegmn_ext.weightspace.graph import MixedGraphBatch, WeightGraph

pytestmark = pytest.mark.usefixtures("one_thread")
WIDE = (1e-3, 1e3)
TOL = 1e-10


def _loop_preacts(arch, ws, bs, x):
    """Pre-activations one network at a time (conv maps averaged over space)."""
    act = activation_fn(arch.activation, arch.w0)
    out = [[] for _ in arch.layers]
    for n in range(ws[0].shape[0]):
        h = x
        for l, s in enumerate(arch.layers):
            if s.is_conv:
                z = F.conv2d(h, ws[l][n], bs[l][n], stride=s.stride, padding=s.padding)
                out[l].append(z.mean(dim=(2, 3)))
                h = act(z) if l < arch.num_layers - 1 else z
                if l + 1 == arch.num_layers or not arch.layers[l + 1].is_conv:
                    h = h.mean(dim=(2, 3))
            else:
                z = F.linear(h, ws[l][n], bs[l][n])
                out[l].append(z)
                h = act(z)
    return [torch.stack(o) for o in out]


def _images(n):
    return load_mnist_5k()[0][:n].unsqueeze(1).double()


@pytest.mark.parametrize("arch", [Architecture.siren((2, 5, 7, 1)), Architecture.small_cnn_zoo("tanh")])
def test_preactivations_match_a_loop(arch):
    ws, bs = random_weights(arch, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    x = _images(5) if arch.is_cnn else torch.rand(9, 2, dtype=torch.float64) * 2 - 1
    got = preactivations(arch, ws, bs, x)
    for g, e in zip(got, _loop_preacts(arch, ws, bs, x)):
        torch.testing.assert_close(g, e)
    torch.testing.assert_close(got[-1] + arch.output_offset, forward(arch, ws, bs, x))  # last = output
    one = preactivations(arch, [w[1] for w in ws], [b[1] for b in bs], x)  # unbatched
    for g, e in zip(one, got):
        torch.testing.assert_close(g, e[1])
    empty = preactivations(arch, [w[:0] for w in ws], [b[:0] for b in bs], x)
    assert [tuple(t.shape) for t in empty] == [(0, x.shape[0], s.out_features) for s in arch.layers]


@pytest.mark.parametrize("net", ["siren", "cnn_relu", "cnn_tanh"])
@pytest.mark.parametrize("direction", ["forward", "bidirectional"])
def test_models_fed_probe_features_stay_exact(real_nets, net, direction):
    arch, ws, bs, iv = real_nets[net]
    ws, bs = [w.clone() for w in ws], [b.clone() for b in bs]
    ws[1][0, :3] = 0.0  # exact zeros and a tiny weight, as trained networks can have
    ws[1][1, 0] = 1e-8
    probe = ProbeFeatures(arch, _images(6) if arch.is_cnn else default_probe_inputs(arch, 6)).fit(ws, bs)
    w2, b2, g = symmetry.transform(arch, ws, bs, generator=torch.Generator().manual_seed(11), scale_range=WIDE)
    f, f2 = probe(ws, bs), probe(w2, b2)
    assert f.shape == (ws[0].shape[0], sum(arch.layout), 6) and max_rel_diff(f, f2) > 0.1  # the features moved
    torch.testing.assert_close(probe([w[1] for w in ws], [b[1] for b in bs]), f[1])  # one unbatched network
    cfg = ScaleGMNConfig(d_hid=8, num_layers=2, d_out=4, direction=direction, out_scale=1.0, input_value=iv)
    cfg = cfg.replace(node_features=6)
    torch.manual_seed(3)
    enc, head = ScaleGMN(arch, cfg).double().eval(), ScaleGMNEquivariant(arch, cfg).double().eval()
    with torch.no_grad():
        z, z2 = enc(ws, bs, node_features=f), enc(w2, b2, node_features=f2)
        hw, hb = head(ws, bs, node_features=f)
        expect = flat_params(*symmetry.apply_group_element(arch, hw, hb, g))
        got = flat_params(*head(w2, b2, node_features=f2))
        enc.impl = head.impl = "reference"
        z_ref, h_ref = enc(ws, bs, node_features=f), flat_params(*head(ws, bs, node_features=f))
    assert max_rel_diff(z, z2) <= TOL, f"encoder invariance {max_rel_diff(z, z2):.2e}"
    assert max_rel_diff(expect, got) <= TOL, f"head equivariance {max_rel_diff(expect, got):.2e}"
    assert (
        max_rel_diff(z_ref, z) <= TOL and max_rel_diff(h_ref, flat_params(hw, hb)) <= TOL
    )  # fast path = reference path
    without = cfg.replace(node_features=0)
    torch.manual_seed(3)
    with torch.no_grad():  # the probes change the latent (the features are really read)
        assert max_rel_diff(z, ScaleGMN(arch, without).double().eval()(ws, bs)) > 1e-3


@pytest.mark.parametrize("net", ["siren", "cnn_tanh"])
def test_autoencoder_with_probes_maps_an_orbit_to_one_network(real_nets, net):
    arch, ws, bs, iv = real_nets[net]
    torch.manual_seed(0)
    probes = _images(4) if arch.is_cnn else 5
    cfg = ScaleGMNConfig(d_hid=8, num_layers=2, dropout=0.0, input_value=iv, readout="last_layer")
    ae = ScaleGMNAutoencoder(arch, cfg, probes=probes).double().fit_scales(ws, bs).eval()
    assert ae.config.node_features == (4 if arch.is_cnn else 5) and not bool((ae.probes.scale == 1).all())
    g = symmetry.random_group_element(
        arch, ws[0].shape[0], generator=torch.Generator().manual_seed(1), dtype=torch.float64, scale_range=WIDE
    )
    tw, tb = symmetry.apply_group_element(arch, ws, bs, g)
    with torch.no_grad():
        a, b = ae(ws, bs), ae(tw, tb)
    assert max_rel_diff(flat_params(*a), flat_params(*b)) <= TOL
    ae32 = ae.float()
    with torch.no_grad():
        a = ae32([w.float() for w in ws], [v.float() for v in bs])
        b = ae32([w.float() for w in tw], [v.float() for v in tb])
    assert max_rel_diff(flat_params(*a), flat_params(*b)) <= 1e-5


def test_checkpoint_carries_the_probes(tmp_path):
    from scalegmn_ext.tasks.merge.autoencoder import INRRenderLoss, autoencoder_state, load_autoencoder
    from scalegmn_ext.tasks.train import NetworkSet, TrainConfig, Trainer

    arch = Architecture.siren((2, 8, 8, 1))
    ws, bs = random_weights(arch, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    data = NetworkSet([w / w[0].numel() ** 0.5 for w in ws], bs)
    torch.manual_seed(0)
    ae = ScaleGMNAutoencoder(arch, ScaleGMNConfig(d_hid=8, num_layers=2), probes=7).double()
    ae.fit_scales(data.weights, data.biases)
    cfg = TrainConfig(steps=2, batch_size=4, warmup=1, val_every=2, checkpoint_every=2, seed=1)
    tr = Trainer(ae, INRRenderLoss(arch, size=6), data, data, cfg, str(tmp_path), progress=False)
    tr.extra_state = autoencoder_state(ae)
    tr.fit()
    m = load_autoencoder(str(tmp_path / "checkpoint.pt"), arch).double()
    torch.testing.assert_close(m.probes.inputs, ae.probes.inputs.to(m.probes.inputs.dtype))
    torch.testing.assert_close(m.probes.scale, ae.probes.scale)
    with torch.no_grad():
        torch.testing.assert_close(
            flat_params(*m(data.weights, data.biases)), flat_params(*ae.eval()(data.weights, data.biases))
        )


def test_bad_input():
    arch = Architecture.siren((2, 4, 4, 1))
    ws, bs = random_weights(arch, 2)
    with pytest.raises(ValueError, match=r"pass probe inputs \[P, 1, H, W\]"):
        default_probe_inputs(Architecture.small_cnn_zoo("relu"), 8)
    with pytest.raises(ValueError, match=r"probe inputs must be \[P, 2\]"):
        ProbeFeatures(arch, torch.zeros(5, 3))
    with pytest.raises(ValueError, match="must be finite"):
        ProbeFeatures(arch, torch.full((5, 2), float("nan")))
    with pytest.raises(ValueError, match="positive int"):
        default_probe_inputs(arch, 0)
    model = ScaleGMN(arch, ScaleGMNConfig(d_hid=8, num_layers=2, node_features=3))
    n = sum(arch.layout)
    with pytest.raises(ValueError, match=r"pass node_features \[2, 11, 3\]"):
        model(ws, bs)
    with pytest.raises(ValueError, match=r"node_features must be \[2, 11, 3\].*got \(2, 11, 4\)"):
        model(ws, bs, node_features=torch.zeros(2, n, 4))
    with pytest.raises(TypeError, match="node_features must be torch.float32"):
        model(ws, bs, node_features=torch.zeros(2, n, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="mixed-architecture batch"):
        model(MixedGraphBatch.from_graphs([WeightGraph.from_weights(arch, [w[0] for w in ws], [b[0] for b in bs])]))
    with pytest.raises(ValueError, match="config.node_features is 0"):
        ScaleGMN(arch, ScaleGMNConfig(d_hid=8, num_layers=2))(ws, bs, node_features=torch.zeros(2, n, 3))
    with pytest.raises(ValueError, match="node_features must be an int >= 0"):
        ScaleGMNConfig(node_features=-1)
    ae = ScaleGMNAutoencoder(arch, ScaleGMNConfig(d_hid=8, num_layers=2), probes=3)
    with pytest.raises(ValueError, match="not a graph"):
        ae.encode(WeightGraph.from_weights(arch, ws, bs))
