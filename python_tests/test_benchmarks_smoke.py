"""The benchmark scripts run end to end at tiny sizes (they are not timed here)."""

import json
import pathlib
import subprocess
import sys

import pytest
import torch

import scalegmn_ext  # noqa: F401  (loads the op library)

ROOT = pathlib.Path(__file__).resolve().parents[1] / "benchmarks"
pytestmark = pytest.mark.skipif(not hasattr(torch.ops.scalegmn, "edge_update"), reason="extension not built")


def _run(script, *args):
    return subprocess.run(
        [sys.executable, str(ROOT / script), *args], check=True, capture_output=True, text=True
    ).stdout


def test_bench_fused_smoke(tmp_path):
    out = _run(
        "bench_fused.py", "--batch", "2", "--channels", "8", "--repeats", "1", "--json", str(tmp_path / "f.json")
    )
    assert "| message | op |" in out and "| edge_update | ref |" in out and "hash_dropout" in out
    rows = json.loads((tmp_path / "f.json").read_text())
    assert {r["impl"] for r in rows["ops"]} == {"op", "op_save", "unfused", "ref"}


@pytest.mark.parametrize("extra", [[], ["--mixed"], ["--mixed", "--generic"]])
def test_bench_scalegmn_smoke(tmp_path, extra):
    out = _run(
        "bench_scalegmn.py",
        "--batch",
        "4",
        "--steps",
        "1",
        "--d-hid",
        "8",
        "--layers",
        "2",
        "--json",
        str(tmp_path / "s.json"),
        *extra,
    )
    assert "| fast |" in out and "| reference |" in out
    assert len(json.loads((tmp_path / "s.json").read_text())) == 2


def test_bench_message_smoke():
    out = _run("bench_message.py", "--smoke", "--no-readout")
    assert "fraction of the measured copy bandwidth" in out


def test_bench_graph_vs_copy_smoke(tmp_path):
    out = _run("bench_graph.py", "--smoke", "--vs-copy", "--threads", "1", "--json", str(tmp_path / "g.json"))
    assert "| weights_to_graph |" in out and "| graph_to_weights |" in out and "op % of clone" in out
    rows = json.loads((tmp_path / "g.json").read_text())
    assert {r["case"] for r in rows} == {"INR 2-32-32-1", "Small CNN Zoo"}
    assert all(r["op_fwd_GBps"] > 0 and r["copy_inv_GBps"] > 0 for r in rows)


def test_bench_merge_smoke(tmp_path):
    out = _run(
        "bench_merge.py",
        "--widths",
        "8,16",
        "--n",
        "2",
        "--pairs",
        "1",
        "--d-hid",
        "8",
        "--repeats",
        "1",
        "--sweep-width",
        "8",
        "--sweep-n",
        "1,2",
        "--probes",
        "4",
        "--json",
        str(tmp_path / "m.json"),
        "--png",
        str(tmp_path / "m.png"),
    )
    assert "| 16 |" in out and "crossover vs rebasin" in out
    res = json.loads((tmp_path / "m.json").read_text())
    assert [r["width"] for r in res["rows"]] == [8, 16] and (tmp_path / "m.png").stat().st_size > 10_000
    assert res["probes"] == 4


def test_public_scripts_skip_without_the_public_code(tmp_path):
    """The public ScaleGMN code is not a dependency: both scripts skip cleanly without it."""
    assert _run("bench_public.py").startswith("skipped:")
    fixtures = ROOT.parent / "scripts" / "make_public_scalegmn_fixtures.py"
    out = subprocess.run(
        [sys.executable, str(fixtures), "--public-repo", str(tmp_path)], check=True, capture_output=True, text=True
    ).stdout
    assert out.startswith("skipped:")
