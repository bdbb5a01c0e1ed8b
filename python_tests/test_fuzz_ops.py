"""Property-based fuzzing of every ``torch.ops.scalegmn`` op, called directly (no wrappers).

Hypothesis draws cases (python_tests/fuzz_cases.py: malformed sizes, bad indices and dtypes,
non-contiguous and aliased inputs, int64-overflowing sizes, empty tensors); each case runs in a
child process (python_tests/fuzz_worker.py), many per child, so that a segfault fails the test
with the crashing case's reproducer instead of killing pytest. Property per case: the op raises
a clean RuntimeError/ValueError/TypeError/IndexError with a message, or returns what the
pure-PyTorch reference returns (never a crash, never unwritten/uninitialised output, never a
modified input). The CSR, readout, dropout and graph ops are fuzzed with 1 and with 2 threads
(so parallel_csr_rows cuts several chunks); every other op with 1.

Case count: ``SCALEGMN_FUZZ_CASES`` (total over all ops, default 2400: about 190 per op after
the split over each op's mutations rounds down);
``SCALEGMN_FUZZ_SEED`` picks a random hypothesis seed (default: derandomized, the same cases
every run). ``make fuzz`` runs 12,000 cases. The second half of the file holds deterministic
regression tests for the defects the fuzzer found (issue 9), run the same way.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed

import scalegmn_ext  # noqa: F401 - loads the op library

sys.path.insert(0, str(Path(__file__).parent))
from fuzz_cases import mutations_for, strategy_for  # noqa: E402
from fuzz_worker import HEADER  # noqa: E402

pytestmark = pytest.mark.skipif(not hasattr(torch.ops.scalegmn, "hash_dropout"), reason="extension not built")

WORKER = Path(__file__).parent / "fuzz_worker.py"
#: Every op registered in csrc/scalegmn.cpp (test_every_op_is_fuzzed keeps this list complete).
OPS = [
    "weights_to_graph",
    "graph_to_weights",
    "segment_gather_mul",
    "gather_mul_csr",
    "gather_dot_csr",
    "canonical_segment_sum",
    "canonical_segment_sum_backward",
    "scale_eq_message",
    "scale_eq_message_backward",
    "edge_update",
    "edge_update_backward",
    "hash_dropout",
]
#: Ops with at::parallel_for / parallel_csr_rows CPU kernels: also fuzzed with 2 threads.
THREADED_OPS = {
    "weights_to_graph",
    "graph_to_weights",
    "segment_gather_mul",
    "gather_mul_csr",
    "gather_dot_csr",
    "canonical_segment_sum",
    "canonical_segment_sum_backward",
    "hash_dropout",
}
BATCH_TIMEOUT_S = 900


def reproducer(case: dict) -> str:
    """Self-contained Python snippet that replays one case."""
    call = f"out = torch.ops.scalegmn.{case['op']}({', '.join(case['args'])})"
    return HEADER + "\n" + "\n".join(case["prelude"]) + "\n" + call + "\n"


def draw_cases(op: str, n: int, seed: int | None) -> list[dict]:
    """About n cases of `op`: a third valid, the rest spread evenly over the op's mutations, each
    group drawn by hypothesis from the op's strategy (collected here, run in batches later)."""
    muts = mutations_for(op)
    n_valid = max(1, n // 3)
    per_mut = [n_valid] + [max(1, (n - n_valid) // (len(muts) - 1))] * (len(muts) - 1)
    cases: list[dict] = []
    for k, (mut, m) in enumerate(zip(muts, per_mut)):

        @settings(
            max_examples=m,
            database=None,
            deadline=None,
            derandomize=seed is None,
            phases=[Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(strategy_for(op, mut))
        def collect(case):
            cases.append(case)

        if seed is not None:
            collect = hypothesis_seed(seed + k)(collect)
        collect()
    return cases


def _draw_job(job: tuple[str, int, int | None]) -> list[dict]:
    return draw_cases(*job)


def generate_in_parallel(ops: list[str], n: int, seed: int | None) -> list[list[dict]]:
    """draw_cases for every op, on both CPU cores (forked workers: generation is pure Python;
    deterministic, so the result does not depend on the split)."""
    import concurrent.futures as cf
    import multiprocessing as mp

    with cf.ProcessPoolExecutor(2, mp_context=mp.get_context("fork")) as pool:
        return list(pool.map(_draw_job, [(op, n, seed) for op in ops]))


def _spawn(cases: list[dict], threads: int) -> tuple[subprocess.Popen, str]:
    fd, path = tempfile.mkstemp(suffix=".json", prefix="scalegmn_fuzz_")
    with os.fdopen(fd, "w") as f:
        json.dump(cases, f)
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), path, str(threads)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    return proc, path


def _collect(proc: subprocess.Popen, path: str, n: int) -> tuple[dict[int, dict], int | None, str]:
    """Results by case index, the index of the case running when the child died (or None), and the tail of stderr."""
    try:
        out, err = proc.communicate(timeout=BATCH_TIMEOUT_S)
        hung = False
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        hung = True
    finally:
        os.unlink(path)
    results, running = {}, None
    for line in out.splitlines():
        if line.startswith("START "):
            running = int(line.split()[1])
        elif line.startswith("DONE "):
            _, i, payload = line.split(" ", 2)
            results[int(i)] = json.loads(payload)
            running = None
    if proc.returncode == 0 and not hung and len(results) == n:
        return results, None, ""
    dead = running if running is not None else len(results)
    why = "hang (killed after the batch timeout)" if hung else f"child died with exit status {proc.returncode}"
    return results, dead, f"{why}; stderr tail: {err[-600:]}"


def run_cases(cases: list[dict], threads: int) -> list[dict]:
    """Runs cases in as few child processes as possible; a case that kills its child is re-run
    alone to confirm it (status "crash"), and the rest of the batch continues in a new child."""
    results: list[dict | None] = [None] * len(cases)
    start = 0
    while start < len(cases):
        batch = cases[start:]
        got, dead, why = _collect(*_spawn(batch, threads), len(batch))
        for i, r in got.items():
            results[start + i] = r
        if dead is None:
            break
        # isolate: does the case crash on its own?
        alone, dead_alone, why_alone = _collect(*_spawn([batch[dead]], threads), 1)
        if dead_alone is not None:
            results[start + dead] = {"status": "crash", "msg": why_alone}
        else:
            results[start + dead] = {"status": "crash", "msg": f"only inside its batch ({why}); alone: {alone.get(0)}"}
        start += dead + 1
    return [r if r is not None else {"status": "crash", "msg": "no result"} for r in results]


def run_in_parallel(jobs: list[tuple[list[dict], int]]) -> list[list[dict]]:
    """run_cases for several (cases, threads) jobs at once (one child each: the 2 CPU cores)."""
    import concurrent.futures as cf

    with cf.ThreadPoolExecutor(len(jobs)) as pool:
        return list(pool.map(lambda j: run_cases(*j), jobs))


@pytest.fixture(scope="module")
def fuzz_results() -> dict[str, list[tuple[dict, dict, int]]]:
    total = int(os.environ.get("SCALEGMN_FUZZ_CASES", "2400"))
    seed = os.environ.get("SCALEGMN_FUZZ_SEED")
    per_op = max(1, total // len(OPS))
    t0 = time.perf_counter()
    cases = dict(zip(OPS, generate_in_parallel(OPS, per_op, int(seed) if seed else None)))
    t_gen = time.perf_counter() - t0
    # one child per thread count, running concurrently; threaded ops get a second run with 2 threads
    flat1 = [c for op in OPS for c in cases[op]]
    flat2 = [c for op in OPS if op in THREADED_OPS for c in cases[op]]
    res1, res2 = run_in_parallel([(flat1, 1), (flat2, 2)])
    by_op: dict[str, list[tuple[dict, dict, int]]] = {op: [] for op in OPS}
    for c, r in zip(flat1, res1):
        by_op[c["op"]].append((c, r, 1))
    for c, r in zip(flat2, res2):
        by_op[c["op"]].append((c, r, 2))
    counts = Counter(r["status"] for rs in by_op.values() for _, r, _ in rs)
    print(
        f"\n[fuzz] {sum(counts.values())} case runs ({len(flat1)} cases, {len(flat2)} re-run with 2 threads), "
        f"seed={seed or 'derandomized'}: {dict(counts)}; generation {t_gen:.1f} s, total "
        f"{time.perf_counter() - t0:.1f} s",
        flush=True,
    )
    return by_op


def test_every_op_is_fuzzed():
    registered = sorted(
        n.split("::", 1)[1] for n in torch._C._dispatch_get_all_op_names() if n.startswith("scalegmn::")
    )
    assert registered == sorted(OPS), "a scalegmn op without a fuzz strategy (add it to OPS and fuzz_cases.py)"


@pytest.mark.parametrize("op", OPS)
def test_fuzz_op(op, fuzz_results):
    runs = fuzz_results[op]
    bad = [(c, r, t) for c, r, t in runs if r["status"] in ("fail", "crash")]
    lines = [f"{len(bad)} of {len(runs)} runs of {op} broke the property"]
    for c, r, t in bad[:4]:
        lines.append(
            f"--- {r['status']} ({t} thread{'s' if t > 1 else ''}): {r['msg']}\n# reproducer:\n{reproducer(c)}"
        )
    assert not bad, "\n".join(lines)
    statuses = Counter(r["status"] for _, r, _ in runs)
    # the strategies must reach both outcomes, else the fuzzer tests nothing
    assert statuses["ok"] > 0 and statuses["raised"] > 0, f"{op}: degenerate case mix {dict(statuses)}"


# ---------------------------------------------------------------- regression tests (issue 9) ---
# The exact reproducers of the defects the fuzzer found, each run in a child process (a
# segfault fails the test instead of killing pytest). (prelude, call, expected: "ok" or the
# regex the clean error message must match).

REGRESSIONS = {
    # int64 overflow of max_kh * max_kw: was a wild write (segfault)
    "w2g_wrap_zero": (
        ["w = torch.randn(1, 2, 3)"],
        "torch.ops.scalegmn.weights_to_graph([w], [torch.zeros(1, 2)], 2**32, 2**32, True, 1.0)",
        "max_kh \\* max_kw = 4294967296 \\* 4294967296 overflows int64",
    ),
    "w2g_wrap_small": (
        ["w = torch.randn(1, 2, 3)"],
        "torch.ops.scalegmn.weights_to_graph([w], [torch.zeros(1, 2)], 2**32 + 65536, 2**32 - 65535, True, 1.0)",
        "overflows int64",
    ),
    "w2g_public_api": (
        ["w = torch.randn(1, 2, 3)"],
        "scalegmn_ext.weights_to_graph([w], None, max_kernel_size=(2**32, 2**32))",
        "Kh \\* Kw overflows int64",
    ),
    # same overflow on the inverse: was a wild read
    "g2w_wrap_zero": (
        [],
        "torch.ops.scalegmn.graph_to_weights(torch.randn(1, 5, 1), torch.randn(1, 6, 0), [3, 2], [1], [1], "
        "[True], 2**32, 2**32, True)",
        "overflows int64",
    ),
    "g2w_layout_overflow": (
        [],
        "torch.ops.scalegmn.graph_to_weights(torch.randn(1, 5, 1), torch.randn(1, 6, 1), "
        "[2**32, 2**32], [1], [1], [False], 1, 1, True)",
        "edges of a layer .* overflows int64",
    ),
    # in range but not a permutation: rows of out were never written (uninitialised memory)
    "gather_mul_dup_perm": (
        ["rowptr = torch.tensor([0, 2, 3]); col = torch.tensor([0, 1, 1]); perm = torch.tensor([0, 0, 2])"],
        "torch.ops.scalegmn.gather_mul_csr(torch.randn(2, 4), torch.randn(2, 4), rowptr, col, perm, None, None, None)",
        "perm must be a permutation of \\[0, E = 3\\), but perm\\[1\\] = 0 repeats",
    ),
    "gather_dot_dup_perm": (
        ["rowptr = torch.tensor([0, 2, 3]); col = torch.tensor([0, 1, 1]); perm = torch.tensor([2, 1, 2])"],
        "torch.ops.scalegmn.gather_dot_csr(torch.randn(2, 4), torch.randn(2, 4), rowptr, col, perm, None, None, None)",
        "perm must be a permutation",
    ),
    "segment_gather_mul_dup_perm": (
        ["rowptr = torch.tensor([0, 2, 3]); col = torch.tensor([0, 1, 1]); perm = torch.tensor([1, 1, 0])"],
        "torch.ops.scalegmn.segment_gather_mul(torch.randn(2, 4), torch.randn(3, 4), rowptr, col, perm, None, None, None)",
        "perm must be a permutation",
    ),
    "csr_wrapper_dup_perm": (
        [
            "from scalegmn_ext.ops import CSR, gather_mul_csr",
            "csr = CSR.from_rowptr(torch.tensor([0, 2, 3]), torch.tensor([0, 1, 1]), torch.tensor([0, 0, 2]), num_src=2)",
        ],
        "gather_mul_csr(torch.randn(2, 4), torch.randn(2, 4), csr)",
        "perm must be a permutation",
    ),
    "reference_dup_perm": (
        ["from scalegmn_ext.reference.segment_gather_mul import gather_mul_csr as ref"],
        "ref(torch.randn(2, 4), torch.randn(2, 4), torch.tensor([0, 2, 3]), torch.tensor([0, 1, 1]), torch.tensor([0, 0, 2]))",
        "perm must be a permutation",
    ),
    "no_rows_with_edges": (
        [],
        "torch.ops.scalegmn.gather_mul_csr(torch.randn(0, 2), torch.randn(2, 2), torch.zeros(1, dtype=torch.long), "
        "torch.tensor([0, 1]), None, None, None, None)",
        "rowptr has no rows",
    ),
    # offset + numel past 2^63 - 1: signed overflow in the kernel, mask differed from the reference
    "dropout_offset_overflow": (
        [],
        "torch.ops.scalegmn.hash_dropout(torch.randn(10), 0.5, 1, 2**63 - 5)",
        "offset \\+ x.numel\\(\\) = 9223372036854775803 \\+ 10 overflows int64",
    ),
    "dropout_offset_edge_ok": (
        ["x = torch.randn(10)", "ref = scalegmn_ext.reference.hash_dropout.hash_dropout(x, 0.5, 1, 2**63 - 11)"],
        "torch.testing.assert_close(torch.ops.scalegmn.hash_dropout(x, 0.5, 1, 2**63 - 11), ref, rtol=0, atol=0)",
        "ok",
    ),
    "dropout_wrapper_overflow": (
        [],
        "scalegmn_ext.ops.hash_dropout(torch.randn(10), 0.5, 1, 2**63 - 5)",
        "overflows int64",
    ),
    "dropout_reference_overflow": (
        [],
        "scalegmn_ext.reference.hash_dropout.hash_dropout(torch.randn(10), 0.5, 1, 2**63 - 5)",
        "overflows int64",
    ),
    # B = 0: the references return the compiled ops' empty results
    "w2g_reference_b0": (
        [
            "import scalegmn_ext.reference.graph as rg",
            "ws = [torch.randn(0, 3, 2), torch.randn(0, 2, 3, 3, 3)]; bs = [torch.randn(0, 3), torch.randn(0, 2)]",
            "n, e = rg.weights_to_graph(ws, bs, 3, 3)",
            "n2, e2 = torch.ops.scalegmn.weights_to_graph(ws, bs, 3, 3, True, 1.0)",
        ],
        "assert n.shape == n2.shape == (0, 7, 1) and e.shape == e2.shape == (0, 12, 9)",
        "ok",
    ),
    "g2w_reference_b0": (
        [
            "import scalegmn_ext.reference.graph as rg",
            "w, b = rg.graph_to_weights(torch.randn(0, 7, 1), torch.randn(0, 12, 9), [2, 3, 2], [1, 3], [1, 3], [False, True], 3, 3)",
            "w2, b2 = torch.ops.scalegmn.graph_to_weights(torch.randn(0, 7, 1), torch.randn(0, 12, 9), [2, 3, 2], [1, 3], [1, 3], [False, True], 3, 3, True)",
        ],
        "assert [t.shape for t in w + b] == [t.shape for t in w2 + b2]",
        "ok",
    ),
    # backward ops check grad's dtype instead of silently promoting
    "scale_eq_bw_grad_dtype": (
        [
            "a = [torch.randn(1, 2, 2, 1), torch.randn(1, 2, 3), torch.randn(3, 1), torch.randn(2, 3), None, None, None,"
            " torch.randn(4, 3), torch.randn(4), None, None, torch.randn(2, 4), torch.randn(2)]"
        ],
        "torch.ops.scalegmn.scale_eq_message_backward(torch.randn(1, 2, 2, dtype=torch.float64), *a, 0, 1e-3, 4096, None)",
        "grad must be Float",
    ),
    "edge_update_bw_grad_dtype": (
        [
            "a = [torch.randn(1, 2, 2, 1), torch.randn(1, 2, 3), torch.randn(1, 2, 3), None, None, torch.randn(2, 3),"
            " torch.randn(2), torch.randn(2, 1)]"
        ],
        "torch.ops.scalegmn.edge_update_backward(torch.randn(1, 2, 2, 2, dtype=torch.float64), *a, 0.0, 0, 4096)",
        "grad must be Float",
    ),
    "readout_bw_grad_dtype": (
        [],
        "torch.ops.scalegmn.canonical_segment_sum_backward(torch.randn(1, 2, dtype=torch.float64), torch.randn(3, 2), "
        "torch.tensor([0, 3]), None, 0, 0.0)",
        "grad is Double",
    ),
    # scale_eq_message argument checks
    "scale_eq_b1_dtype": (
        [
            "a = [torch.randn(1, 2, 2, 1), torch.randn(1, 2, 3), torch.randn(3, 1), torch.randn(5, 3), torch.randn(3, dtype=torch.float64),"
            " None, None, torch.randn(4, 3), torch.randn(4), None, None, torch.randn(2, 4), torch.randn(2)]"
        ],
        "torch.ops.scalegmn.scale_eq_message(*a, 3, 1e-3, 4096, False)",
        "b1 is Double",
    ),
    "scale_eq_bias_vec1": (
        [
            "a = [torch.randn(1, 2, 2, 1), torch.randn(1, 2, 3), torch.randn(3, 1), torch.randn(2, 3), None, None, None,"
            " torch.randn(4, 3), torch.randn(1), None, None, torch.randn(2, 4), torch.randn(2)]"
        ],
        "torch.ops.scalegmn.scale_eq_message(*a, 0, 1e-3, 4096, False)",
        "b_f must be \\[4\\], got \\[1\\]",
    ),
    "scale_eq_ln1_b_alone": (
        [
            "a = [torch.randn(1, 2, 2, 1), torch.randn(1, 2, 3), torch.randn(3, 1), torch.randn(5, 3), torch.randn(3), None,"
            " torch.randn(3), torch.randn(4, 3), torch.randn(4), None, None, torch.randn(2, 4), torch.randn(2)]"
        ],
        "torch.ops.scalegmn.scale_eq_message(*a, 3, 1e-3, 4096, False)",
        "ln1_b given without ln1_w",
    ),
    "scale_eq_saved_dtype": (
        [
            "a = [torch.randn(1, 2, 2, 1), torch.randn(1, 2, 3), torch.randn(3, 1), torch.randn(2, 3), None, None, None,"
            " torch.randn(4, 3), torch.randn(4), None, None, torch.randn(2, 4), torch.randn(2)]",
            "ws = torch.ops.scalegmn.scale_eq_message(*a, 0, 1e-3, 4096, True)[1]",
        ],
        "torch.ops.scalegmn.scale_eq_message_backward(torch.randn(1, 2, 2), *a, 0, 1e-3, 4096, ws.double())",
        "saved must be the forward's Float workspace",
    ),
    # fake kernels agree with the real kernels' checks
    "w2g_fake_zero_k": (
        ["from torch._subclasses.fake_tensor import FakeTensorMode"],
        "with FakeTensorMode():\n    torch.ops.scalegmn.weights_to_graph([torch.randn(1, 2, 3)], [torch.randn(1, 2)], 0, 1, True, 1.0)",
        "max kernel size must be positive",
    ),
    "w2g_fake_overflow": (
        ["from torch._subclasses.fake_tensor import FakeTensorMode"],
        "with FakeTensorMode():\n    torch.ops.scalegmn.weights_to_graph([torch.randn(1, 2, 3)], [torch.randn(1, 2)], 2**32, 2**32, True, 1.0)",
        "overflows int64",
    ),
    "dropout_fake_overflow": (
        ["from torch._subclasses.fake_tensor import FakeTensorMode"],
        "with FakeTensorMode():\n    torch.ops.scalegmn.hash_dropout(torch.randn(10), 0.5, 1, 2**63 - 5)",
        "overflows int64",
    ),
}


@pytest.fixture(scope="module")
def regression_results() -> dict[str, dict]:
    script = "\n".join(
        [
            "import json, re, sys, traceback",
            HEADER,
            "cases = json.loads(sys.argv[1])",
            "for name, (prelude, call, _) in cases.items():",
            "    try:",
            "        exec('\\n'.join(prelude) + '\\n' + call, dict(globals()))",
            "        res = {'status': 'ok', 'msg': ''}",
            "    except Exception as exc:",
            "        res = {'status': 'raised', 'msg': f'{type(exc).__name__}: {exc}'}",
            "    print('DONE', name, json.dumps(res), flush=True)",
        ]
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, json.dumps(REGRESSIONS)], capture_output=True, text=True, timeout=300
    )
    out = {}
    for line in proc.stdout.splitlines():
        if line.startswith("DONE "):
            _, name, payload = line.split(" ", 2)
            out[name] = json.loads(payload)
    if proc.returncode != 0:  # a crash: the first case without a result is the crasher
        for name in REGRESSIONS:
            out.setdefault(name, {"status": "crash", "msg": f"exit {proc.returncode}: {proc.stderr[-400:]}"})
            break
    return out


@pytest.mark.parametrize("name", list(REGRESSIONS))
def test_regression(name, regression_results):
    import re

    prelude, call, expected = REGRESSIONS[name]
    res = regression_results.get(name, {"status": "not run (an earlier case crashed the child)", "msg": ""})
    if expected == "ok":
        assert res["status"] == "ok", f"{name}: {res}"
    else:
        assert res["status"] == "raised", f"{name}: expected a clean error matching {expected!r}, got {res}"
        assert re.search(expected, res["msg"]), f"{name}: message {res['msg']!r} does not match {expected!r}"
        assert res["msg"].split(":")[0] in ("RuntimeError", "ValueError", "TypeError", "IndexError"), res["msg"]
