"""The demo's checks pass for every seed, not only the default one (tiny sizes, no benchmark).

Each seed draws other networks, group elements and model parameters, so this is twenty
independent draws of every symmetry and ScaleGMN check in the demo.
"""

import pytest

from scalegmn_ext.tasks.demo import TINY_SIZES, DemoCheckError, run_demo

pytestmark = pytest.mark.usefixtures("one_thread")  # see conftest.py


SEEDS = range(20)


@pytest.mark.parametrize("seed", SEEDS)
def test_demo_passes_for_seed(seed, tmp_path):
    try:
        s = run_demo(out=str(tmp_path), seed=seed, log=lambda line: None, bench=False, **TINY_SIZES)
    except DemoCheckError as exc:
        s = exc.summary
    # on failure, show the failing checks' figures, not just their names
    figures = {name: s[name.split("/")[0]][name.split("/")[1]] for name in s["failed_checks"]}
    assert s["ok"] and not figures, f"seed {seed}: failed checks {figures}"
