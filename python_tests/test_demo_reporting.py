"""The demo checks the same things whether or not its caches are warm, and reports failures."""

import json
import os

import pytest

from scalegmn_ext import cli
from scalegmn_ext.tasks import demo
from scalegmn_ext.tasks.demo import TINY_SIZES, DemoCheckError, run_demo

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


# wall-clock figures differ between any two runs; everything else must not
_TIMINGS = {"fit_seconds", "inrs_per_minute", "train_seconds", "round_trip_ms", "ms_per_step", "total_seconds"}


def _checked(summary: dict):
    """The summary without its timings and run environment."""
    if isinstance(summary, dict):
        return {k: _checked(v) for k, v in summary.items() if k not in _TIMINGS and k not in ("threads",)}
    return summary


def test_cached_rerun_checks_exactly_what_the_first_run_checked(tmp_path):
    out = str(tmp_path / "demo")
    logs = []
    first = run_demo(out=out, seed=3, log=logs.append, bench=False, **TINY_SIZES)
    assert not any("reusing" in line for line in logs)
    logs.clear()
    second = run_demo(out=out, seed=3, log=logs.append, bench=False, **TINY_SIZES)
    assert sum("reusing" in line for line in logs) == 3  # SIRENs and both CNN zoos came from the cache
    assert _checked(second) == _checked(first)
    # the group elements themselves are the same (fingerprints), and differ between checks
    digests = [
        first[step][name]["group_element"]
        for step in ("symmetry", "scalegmn")
        for name in ("SIREN", "CNN-relu", "CNN-tanh")
    ]
    assert len(set(digests)) == len(digests)
    # another seed draws other group elements
    other = run_demo(out=str(tmp_path / "other"), seed=4, log=lambda s: None, bench=False, **TINY_SIZES)
    assert other["symmetry"]["SIREN"]["group_element"] != first["symmetry"]["SIREN"]["group_element"]


def test_step_seeds_are_stable_and_distinct():
    assert demo.step_seed(0, "inr") == demo.step_seed(0, "inr")
    seeds = {demo.step_seed(s, step) for s in range(3) for step in ("data", "inr", "cnn-relu", "cnn-tanh")}
    assert len(seeds) == 12 and all(0 <= s < 2**63 for s in seeds)


def test_failed_check_still_writes_the_summary(tmp_path, monkeypatch, capsys):
    real = demo._scalegmn_report

    def broken_for_relu(arch, ws, bs, generator, input_value):
        rep = real(arch, ws, bs, generator, input_value)
        if arch.activation == "relu":
            rep["equivariance_max_rel_diff"], rep["ok"] = 0.12, False
        return rep

    monkeypatch.setattr(demo, "_scalegmn_report", broken_for_relu)
    out = str(tmp_path / "demo")
    with pytest.raises(DemoCheckError, match="scalegmn/CNN-relu") as info:
        run_demo(out=out, log=lambda s: None, bench=False, **TINY_SIZES)
    with open(os.path.join(out, "summary.json")) as f:
        s = json.load(f)
    assert s == json.loads(json.dumps(info.value.summary))
    assert s["ok"] is False and s["failed_checks"] == ["scalegmn/CNN-relu"]
    assert s["scalegmn"]["CNN-relu"]["ok"] is False and s["scalegmn"]["CNN-relu"]["equivariance_max_rel_diff"] == 0.12
    assert s["scalegmn"]["SIREN"]["ok"] is True and all(r["ok"] for r in s["symmetry"].values())
    assert "training" in s["scalegmn"]  # the steps after the failing check still ran

    # the command line exits non-zero and says which check failed
    os.remove(os.path.join(out, "summary.json"))
    assert cli.main(["demo", "--tiny", "--no-bench", "--out", out]) == 1
    assert "scalegmn/CNN-relu" in capsys.readouterr().err
    assert json.load(open(os.path.join(out, "summary.json")))["failed_checks"] == ["scalegmn/CNN-relu"]


def test_demo_rejects_bad_sizes(tmp_path):
    with pytest.raises(ValueError, match="heldout_inr must be in"):
        run_demo(out=str(tmp_path), **{**TINY_SIZES, "heldout_inr": 10})
    with pytest.raises(ValueError, match="cnn_train_size must be in"):
        run_demo(out=str(tmp_path), **{**TINY_SIZES, "cnn_train_size": 4001})
