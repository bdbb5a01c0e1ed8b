"""Child process of the op fuzzer (python_tests/test_fuzz_ops.py): runs a batch of cases.

Usage: ``python fuzz_worker.py CASES.json NUM_THREADS``. A case is ``{"op", "prelude", "args"}``:
Python source lines that build the inputs (in the namespace of :data:`HEADER`) and the argument
expressions of one ``torch.ops.scalegmn.<op>`` call. For every case the worker prints
``START <i>`` before running it and ``DONE <i> <json>`` after, so that when a case kills the
process (segfault, abort) the parent knows which one it was. Result statuses:

* ``"ok"``: the op returned, its outputs equal the pure-PyTorch reference (computed in float64
  and compared with a dtype-dependent tolerance; NaN positions must agree), and it did not
  modify its inputs;
* ``"raised"``: the op raised a RuntimeError/ValueError/TypeError/IndexError with a message
  (a clean rejection);
* ``"fail"``: anything else (another exception type, an empty message, a mismatch with the
  reference -- e.g. uninitialised output --, the reference rejecting what the op accepted,
  mutated inputs).

Every op runs twice, over freed memory pre-filled with NaN and then with 7.0 (allocate, fill,
free buffers of many sizes): output the op never writes shows up as NaN or as a difference
between the two (bitwise compared: the ops are deterministic) instead of matching zeros by luck.
"""

from __future__ import annotations

import json
import resource
import sys
import traceback

#: Prepended to every case (and to every printed reproducer): the helpers the case code uses.
HEADER = '''\
import torch
import scalegmn_ext
from scalegmn_ext.reference.segment_gather_mul import transpose_csr

def G(seed):
    return torch.Generator().manual_seed(seed)

def R(*shape, dtype=torch.float32, seed=0):
    """Deterministic test tensor: randn for floating dtypes, small ints / bools otherwise."""
    if dtype.is_floating_point:
        return torch.randn(shape, generator=G(seed), dtype=torch.float64).to(dtype)
    if dtype == torch.bool:
        return torch.randint(0, 2, shape, generator=G(seed)).bool()
    return torch.randint(-4, 5, shape, generator=G(seed)).to(dtype)

def rowptr_for(rows, nnz, seed, skew=False, dtype=torch.int64):
    """A valid CSR rowptr [rows + 1] from 0 to nnz (skew: all positions in one row)."""
    if rows == 0:
        return torch.zeros(1, dtype=dtype)
    if skew:
        cuts = torch.full((rows - 1,), nnz, dtype=torch.int64)
        cuts[: rows // 2] = 0
    else:
        cuts = torch.sort(torch.randint(0, nnz + 1, (rows - 1,), generator=G(seed))).values
    return torch.cat([torch.zeros(1, dtype=torch.int64), cuts, torch.full((1,), nnz)]).to(dtype)
'''

CLEAN_ERRORS = (RuntimeError, ValueError, TypeError, IndexError)

# max |got - ref| <= TOL * max(1, max |ref|) (reference in float64; the op works in its dtype)
_TOL = {"torch.float64": 1e-8, "torch.float32": 1e-4, "torch.float16": 3e-2, "torch.bfloat16": 1e-1}


def _namespace() -> dict:
    ns: dict = {}
    exec(HEADER, ns)
    return ns


def _tensors(x):
    if hasattr(x, "dtype") and hasattr(x, "shape"):
        yield x
    elif isinstance(x, (list, tuple)):
        for y in x:
            yield from _tensors(y)


def _storage_bytes(torch, t):
    return torch.empty(0, dtype=torch.uint8).set_(t.untyped_storage())


_POLLUTE_BYTES = list(range(4, 1025, 4)) + [1 << k for k in range(11, 18)]


def _pollute(torch, value: float) -> None:
    # leave freed blocks of every small size (and some large ones) filled with `value` for the
    # allocator to hand out next, so that output the op never writes cannot match by luck
    bufs = [torch.full((n // 4,), value, dtype=torch.float32) for n in _POLLUTE_BYTES]
    del bufs


def _up(torch, x):
    """float64 copy of every floating tensor (lists recursively); other values unchanged."""
    if isinstance(x, torch.Tensor):
        return x.detach().to(torch.float64) if x.is_floating_point() else x
    if isinstance(x, (list, tuple)):
        return type(x)(_up(torch, y) for y in x)
    return x


def _vjp(torch, fn, args, grad, idx, up=True):
    """Gradients of fn(*args) w.r.t. args[i] for i in idx (None args: empty tensors), in float64
    (up) or in the inputs' dtype."""
    args = list(_up(torch, args) if up else args)
    leaves = []
    for i in idx:
        if args[i] is not None:
            args[i] = args[i].clone().requires_grad_(True)
            leaves.append(args[i])
    out = fn(*args)
    gs = torch.autograd.grad(out, leaves, grad.to(out.dtype), allow_unused=True) if leaves else []
    gs = iter(gs)
    res = []
    for i in idx:
        if args[i] is None:
            res.append(torch.empty(0))
        else:
            g = next(gs)
            res.append(torch.zeros_like(args[i]) if g is None else g.detach())
    return res


def reference(torch, op: str, args: list, up: bool = True):
    """The pure-PyTorch result of ``torch.ops.scalegmn.<op>(*args)``, in float64 (up) or in the
    inputs' own dtype."""
    from scalegmn_ext.reference import (
        canonical_segment_sum,
        edge_update,
        graph,
        hash_dropout,
        scale_eq_message,
        segment_gather_mul,
    )

    a = _up(torch, args) if up else args
    if op == "weights_to_graph":
        return graph.weights_to_graph(*a)
    if op == "graph_to_weights":
        return graph.graph_to_weights(*a)
    if op in ("segment_gather_mul", "gather_mul_csr", "gather_dot_csr"):
        return getattr(segment_gather_mul, op)(*a)
    if op == "canonical_segment_sum":
        return canonical_segment_sum.canonical_segment_sum(*a)
    if op == "canonical_segment_sum_backward":
        return canonical_segment_sum.canonical_segment_sum_backward(*a)
    if op == "hash_dropout":  # bit-exact mask and the kernels' own opmath product: same dtype
        return hash_dropout.hash_dropout(*args)
    if op == "scale_eq_message":
        out = scale_eq_message.scale_eq_message(*a[:15])
        return out, None  # the workspace is checked for its shape only
    if op == "scale_eq_message_backward":
        return _vjp(torch, lambda *t: scale_eq_message.scale_eq_message(*t[:15]), args[1:16], args[0], range(13), up)
    if op == "edge_update":
        return edge_update.edge_update(*a[:10])
    if op == "edge_update_backward":
        return _vjp(torch, lambda *t: edge_update.edge_update(*t[:10]), args[1:12], args[0], range(8), up)
    raise KeyError(op)


def _compare(torch, got, exp, native=None, path="out") -> str | None:
    """None if `got` matches the float64 reference `exp`: same shapes, NaN/Inf positions, and
    max error <= dtype tolerance * scale + 4 * (error of the reference run in the op's own dtype,
    `native`, when available: ill-conditioned cases, e.g. a LayerNorm over one feature, amplify
    rounding far beyond any fixed tolerance, while unwritten or garbage output stays far off)."""
    if exp is None:
        return None
    if isinstance(exp, (list, tuple)):
        if not isinstance(got, (list, tuple)) or len(got) != len(exp):
            return f"{path}: got {type(got).__name__} of {len(got) if isinstance(got, (list, tuple)) else '?'}, expected {len(exp)} outputs"
        nat = native if isinstance(native, (list, tuple)) and len(native) == len(exp) else [None] * len(exp)
        for i, (g, e, n) in enumerate(zip(got, exp, nat)):
            msg = _compare(torch, g, e, n, f"{path}[{i}]")
            if msg:
                return msg
        return None
    if tuple(got.shape) != tuple(exp.shape):
        return f"{path}: shape {tuple(got.shape)}, reference {tuple(exp.shape)}"
    if got.numel() == 0:
        return None
    g, e = got.detach().to(torch.float64), exp.detach().to(torch.float64)
    if not torch.equal(torch.isnan(g), torch.isnan(e)):
        return f"{path}: NaN at different positions (op: {int(torch.isnan(g).sum())} NaN, reference: {int(torch.isnan(e).sum())}) -- unwritten output?"
    # the reference runs in float64: a value beyond the op's dtype range is inf in that dtype,
    # so compare infinities against the reference rounded to the op's dtype (a genuine overflow)
    e = (
        torch.where(torch.isfinite(e), exp.detach().to(got.dtype).to(torch.float64), e)
        if got.is_floating_point()
        else e
    )
    fin = torch.isfinite(e)
    if not torch.equal(torch.isfinite(g), fin) or not torch.equal(g[~fin & ~torch.isnan(e)], e[~fin & ~torch.isnan(e)]):
        return f"{path}: infinities differ from the reference"
    if fin.any():
        err = float((g[fin] - e[fin]).abs().max())
        scale = max(1.0, float(e[fin].abs().max()))
        tol = _TOL.get(str(got.dtype), 1e-8) * scale
        if native is not None and tuple(native.shape) == tuple(exp.shape):
            nerr = (native.detach().to(torch.float64)[fin] - e[fin]).abs()
            if bool(torch.isfinite(nerr).all()):
                tol += 4 * float(nerr.max())
        if not err <= tol:
            return f"{path}: max |op - reference| = {err:.3g} > {tol:.3g} ({got.dtype})"
    return None


def _bitwise_equal(torch, a, b) -> bool:
    if isinstance(a, (list, tuple)):
        return (
            isinstance(b, (list, tuple)) and len(a) == len(b) and all(_bitwise_equal(torch, x, y) for x, y in zip(a, b))
        )
    if a.shape != b.shape or a.dtype != b.dtype:
        return False

    # copies with canonical strides (a size-1 dim may carry any stride, even when "contiguous")
    def raw(t):
        return torch.empty(t.shape, dtype=t.dtype).copy_(t).view(-1).view(torch.uint8)

    return torch.equal(raw(a), raw(b)) if a.numel() else True


def run_case(torch, case: dict) -> dict:
    ns = _namespace()
    try:
        exec("\n".join(case["prelude"]), ns)
        args = [eval(a, ns) for a in case["args"]]
    except Exception as exc:  # noqa: BLE001 - the prelude is generated code; report, do not judge
        return {"status": "prelude", "msg": f"{type(exc).__name__}: {exc}"}
    # byte snapshots of the inputs' storages (a stride-0 "huge" input has a tiny storage)
    before = [(t, _storage_bytes(torch, t).clone()) for t in _tensors(args)]
    fn = getattr(torch.ops.scalegmn, case["op"])
    _pollute(torch, float("nan"))
    try:
        got = fn(*args)
    except CLEAN_ERRORS as exc:
        msg = str(exc).strip()
        if not msg:
            return {"status": "fail", "msg": f"{type(exc).__name__} without a message"}
        return {"status": "raised", "msg": f"{type(exc).__name__}: {msg.splitlines()[0][:300]}"}
    except BaseException as exc:  # noqa: BLE001 - any other exception type is a finding
        return {"status": "fail", "msg": f"unclean exception {type(exc).__name__}: {exc}"[:500]}
    for t, c in before:
        if not torch.equal(_storage_bytes(torch, t), c):
            return {"status": "fail", "msg": "the op modified an input tensor in place"}
    # second run over differently filled freed memory: the ops are deterministic, so any
    # difference is output that depends on garbage
    _pollute(torch, 7.0)
    try:
        again = fn(*args)
    except BaseException as exc:  # noqa: BLE001
        return {"status": "fail", "msg": f"the second identical call raised {type(exc).__name__}: {exc}"[:500]}
    if not _bitwise_equal(torch, got, again):
        return {"status": "fail", "msg": "two identical calls returned different results (uninitialised output?)"}
    try:
        exp = reference(torch, case["op"], args)
    except Exception as exc:  # noqa: BLE001
        return {
            "status": "fail",
            "msg": f"op accepted the input but the reference raised {type(exc).__name__}: {str(exc)[:300]}",
        }
    if case["op"] == "scale_eq_message":
        ws = got[1]
        rows = args[0].shape[0] * args[0].shape[1] * args[0].shape[2] if args[16] else 0
        width = args[1].shape[2] + args[3].shape[0] + args[7].shape[0] + args[11].shape[0]
        if tuple(ws.shape) != (rows, width):
            return {"status": "fail", "msg": f"workspace shape {tuple(ws.shape)}, expected {(rows, width)}"}
    native = None
    if any(t.is_floating_point() and t.dtype != torch.float64 for t in _tensors(args)):
        try:
            native = reference(torch, case["op"], args, up=False)
        except Exception:  # noqa: BLE001 - e.g. a half-precision op the reference lacks on CPU
            native = None
    msg = _compare(torch, got, exp, native)
    if msg:
        return {"status": "fail", "msg": msg}
    return {"status": "ok", "msg": ""}


def main() -> None:
    path, threads = sys.argv[1], int(sys.argv[2])
    # bound the address space: a size bug that asks for terabytes fails to allocate (a clean
    # RuntimeError) instead of swapping the machine
    limit = 24 << 30
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    import torch

    torch.set_num_threads(threads)
    with open(path) as f:
        cases = json.load(f)
    for i, case in enumerate(cases):
        print(f"START {i}", flush=True)
        try:
            res = run_case(torch, case)
        except Exception:  # noqa: BLE001 - a bug of the harness itself, reported per case
            res = {"status": "fail", "msg": "harness error: " + traceback.format_exc()[-800:]}
        print(f"DONE {i} {json.dumps(res)}", flush=True)


if __name__ == "__main__":
    main()
