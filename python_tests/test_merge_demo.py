"""`scalegmn-ext merge-demo --tiny` end to end: every step, table, summary and figure."""

from __future__ import annotations

import json
import os

import matplotlib.image as mpimg
import pytest

from scalegmn_ext import cli


@pytest.mark.slow
def test_merge_demo_tiny_runs_end_to_end_and_resumes(tmp_path, capsys):
    out = str(tmp_path / "md")
    assert cli.main(["merge-demo", "--tiny", "--out", out, "--quiet"]) == 0
    s = json.load(open(os.path.join(out, "summary.json")))
    assert s["failed_checks"] == [] and s["orbit_canonical_max_rel_diff"] <= 1e-5
    assert set(s["inr_orbit_experiment"]) == {f"{t}/{e}" for t in ("P", "D", "PD") for e in (0.0, 0.01)}
    assert s["orbit_collapse"]["scalegmn_ratio"] < s["orbit_collapse"]["permutation_only_ratio"]
    assert len(s["figures"]) == 8
    for p in s["figures"]:
        img = mpimg.imread(p)
        assert img.shape[0] > 200 and img.shape[1] > 300 and img[..., :3].std() > 0.05
    md = open(os.path.join(out, "results.md")).read()
    assert "| PD | 0.01 |" in md and "| rebasin_sign |" in md
    # a second run reuses the trained autoencoders (their checkpoints are complete)
    capsys.readouterr()
    assert cli.main(["merge-demo", "--tiny", "--out", out, "--quiet"]) == 0
    assert "(0 s this run" in capsys.readouterr().out
    assert cli.main(["merge-demo", "--tiny", "--out", out, "--quiet", "--seed", "3"]) == 2  # other settings: refused
