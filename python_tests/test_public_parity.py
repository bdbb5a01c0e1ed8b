"""Parity with the public ScaleGMN code (jkalogero/scalegmn), checked against fixtures it produced.

The fixtures (python_tests/fixtures/public_scalegmn/, MIT, see its README) hold the parameter
count of every public configuration and, for ten representative ones, a public state_dict,
input networks and the public model's outputs. Regenerate them with
scripts/make_public_scalegmn_fixtures.py.
"""

from __future__ import annotations

import json
import os
import warnings

import pytest
import torch

from scalegmn_ext.models import ScaleGMNConfig, ScaleGMNEquivariant
from scalegmn_ext.models.public import from_public_yaml, load_public_state_dict, public_config
from scalegmn_ext.weightspace import symmetry

HERE = os.path.join(os.path.dirname(__file__), "fixtures", "public_scalegmn")
with open(os.path.join(HERE, "public_configs.json")) as f:
    PUBLIC = json.load(f)["configs"]
FIXTURES = sorted(n[:-3] for n in os.listdir(HERE) if n.endswith(".pt"))


def _scale_bidir(conf: dict) -> bool:
    a = conf["scalegmn_args"]
    return a["symmetry"] == "scale" and a["direction"] == "bidirectional"


def _build(conf: dict, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # dropout_all: a training-only difference
        return from_public_yaml(conf, scale_backward="raw" if _scale_bidir(conf) else None, **kw)


def _fixture(name: str) -> dict:
    return torch.load(os.path.join(HERE, f"{name}.pt"), weights_only=True)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a - b).abs().max() / b.abs().max()).item()


def _flat(out) -> list[torch.Tensor]:
    if isinstance(out, dict):
        return out["weights"] + out["biases"]
    if isinstance(out, tuple):
        return out[0] + out[1]
    return [out]


def test_fixture_set_is_complete():
    assert len(PUBLIC) == 20 and len(FIXTURES) == 10


@pytest.mark.parametrize("name", sorted(PUBLIC))
def test_parameter_count_of_every_public_config(name):
    entry = PUBLIC[name]
    if entry["config"] is None:  # svhn/scalegmn_relu_bidir.yml: malformed YAML upstream
        assert "YAML" in entry["error"]
        return
    conf = entry["config"]
    if conf["scalegmn_args"]["symmetry"] == "hetero":
        with pytest.raises(ValueError, match="symmetry='hetero'"):
            _build(conf)
        return
    model = _build(conf)
    assert sum(p.numel() for p in model.parameters()) == entry["params"]


@pytest.mark.parametrize("name", FIXTURES)
def test_public_checkpoint_reproduces_public_outputs(name):
    fx = _fixture(name)
    model = load_public_state_dict(_build(fx["config"]), fx["state_dict"]).eval()
    with torch.no_grad():
        out = model(fx["weights"], fx["biases"])
    ours, ref = _flat(out), _flat(fx["output"])
    assert len(ours) == len(ref)
    for a, b in zip(ours, ref):
        assert a.shape == b.shape
        assert _rel(a, b) <= 1e-5, name


def test_public_structure_keeps_symmetry():
    """The public structure options keep the model exactly invariant / equivariant (float64)."""
    for name in ("mnist_cls_bidir", "mnist_editing_fw"):
        fx = _fixture(name)
        model = load_public_state_dict(_build(fx["config"]), fx["state_dict"]).double().eval()
        ws, bs = [w.double() for w in fx["weights"]], [b.double() for b in fx["biases"]]
        w2, b2, g = symmetry.transform(model.arch, ws, bs, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            out, out2 = model(ws, bs), model(w2, b2)
        if isinstance(model, ScaleGMNEquivariant):
            tw, tb = symmetry.apply_group_element(model.arch, *out, g)
            for a, b in zip(tw + tb, out2[0] + out2[1]):
                assert _rel(a, b) <= 1e-10
        else:
            assert _rel(out2, out) <= 1e-10


def test_scale_bidirectional_needs_an_explicit_choice():
    fx = _fixture("cnn_relu_bidir")
    with pytest.raises(ValueError, match="not scale-equivariant.*scale_backward='raw'"):
        from_public_yaml(fx["config"])
    # the equivariant backward message takes the same parameters but computes another function
    model = load_public_state_dict(from_public_yaml(fx["config"], scale_backward="inverse"), fx["state_dict"]).eval()
    with torch.no_grad():
        assert _rel(model(fx["weights"], fx["biases"]), fx["output"]) > 1e-3


def test_state_dict_errors_name_the_keys():
    fx = _fixture("mnist_cls_fw")
    sd = dict(fx["state_dict"])
    model = _build(fx["config"])
    with pytest.raises(ValueError, match=r"unexpected public keys \['gnn.extra.weight'\]"):
        load_public_state_dict(model, {**sd, "gnn.extra.weight": torch.zeros(1)})
    missing = dict(sd)
    del missing["gnn.fw_layers.0.w_v.weight"]
    with pytest.raises(ValueError, match=r"missing public keys \['gnn.fw_layers.0.w_v.weight'\]"):
        load_public_state_dict(model, missing)
    wrong = {**sd, "gnn.readout.rho.fc.1.bias": torch.zeros(3)}
    with pytest.raises(ValueError, match=r"'gnn.readout.rho.fc.1.bias' has shape \(3,\).*readout_mlp.lin2.bias"):
        load_public_state_dict(model, wrong)
    other = _build(_fixture("fmnist_cls_fw")["config"])  # another configuration's structure
    with pytest.raises(ValueError, match="does not match this model's public structure"):
        load_public_state_dict(other, sd)
    # checkpoint wrappers and a DDP prefix are accepted
    load_public_state_dict(model, {"model": {f"module.{k}": v for k, v in sd.items()}})


@pytest.mark.parametrize(
    ("section", "key", "value", "match"),
    [
        ("gnn_args", "update_as_act", True, "gnn_args.update_as_act=True"),
        ("gnn_args", "message_fn_layers", 2, "gnn_args.message_fn_layers=2"),
        ("mlp_args", "activation", "relu", "mlp_args.activation='relu'"),
        ("positional_encodings", "equiv_net", True, "positional_encodings.equiv_net=True"),
        (None, "symmetry", "permutation", "symmetry='permutation'"),
    ],
)
def test_unsupported_options_are_named(section, key, value, match):
    conf = json.loads(json.dumps(PUBLIC["mnist_cls/scalegmn.yml"]["config"]))
    (conf["scalegmn_args"] if section is None else conf["scalegmn_args"][section])[key] = value
    with pytest.raises(ValueError, match=match.replace("(", r"\(").replace(")", r"\)")):
        public_config(conf)


def test_edge_types_of_several_outputs_are_refused():
    conf = json.loads(json.dumps(PUBLIC["cifar_inr_cls/scalegmn.yml"]["config"]))
    conf["scalegmn_args"]["edge_pos_embed"] = True
    with pytest.raises(ValueError, match="edge_pos_embed=True with more than one output"):
        public_config(conf)


def test_public_structure_runs_only_on_the_layer_block_path():
    model = _build(PUBLIC["mnist_cls/scalegmn.yml"]["config"], d_hid=8)
    with pytest.raises(NotImplementedError, match="io_gamma"):
        model.impl = "reference"


def test_config_and_yaml_entry_points():
    cfg = ScaleGMNConfig.from_public_yaml(PUBLIC["mnist_cls/scalegmn.yml"]["config"])
    assert (cfg.d_hid, cfg.num_layers, cfg.readout, cfg.io_gamma, cfg.upd_num_mlps) == (128, 4, "last_layer", True, 2)
    pytest.importorskip("yaml")
    path = os.path.join(HERE, "configs", "mnist_cls", "scalegmn.yml")
    model = from_public_yaml(path)
    assert sum(p.numel() for p in model.parameters()) == PUBLIC["mnist_cls/scalegmn.yml"]["params"]
    with pytest.raises(ValueError, match="not valid YAML"):
        from_public_yaml(os.path.join(HERE, "configs", "svhn", "scalegmn_relu_bidir.yml"))
