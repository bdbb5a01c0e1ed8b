"""Hypothesis strategies that generate fuzz cases for every ``torch.ops.scalegmn`` op.

A case is ``{"op": name, "prelude": [source lines], "args": [expressions]}``: the prelude builds
the inputs with the helpers of :data:`fuzz_worker.HEADER` (seeded ``R(...)`` tensors,
``rowptr_for``, ``transpose_csr``) and the op is called as ``torch.ops.scalegmn.<op>(*args)``.
Being source code, a case is its own reproducer (printed when it fails) and can be run in a
child process. Each strategy draws a VALID configuration, then usually one mutation that makes it
malformed: wrong/mismatched dtypes, wrong or empty shapes, out-of-range and negative indices,
broken CSR structure, non-permutation perms, sizes whose products overflow int64, huge (expanded)
tensors, non-contiguous / stride-0 layouts and aliased inputs (those two are valid and must give
the reference's result).
"""

from __future__ import annotations

from hypothesis import strategies as st

FLOATS = ["torch.float32", "torch.float64", "torch.float16", "torch.bfloat16"]
GEMM_FLOATS = ["torch.float32", "torch.float64"]  # ops built on BLAS tiles: tolerances stay meaningful
INDEX = ["torch.int64", "torch.int32"]
BAD_DTYPES = ["torch.int64", "torch.int32", "torch.bool", "torch.uint8", "torch.complex64"]
# (Kh, Kw) whose product overflows int64, wraps to 0 or to a small positive value, or is huge
HUGE_GRIDS = [
    (2**32, 2**32),
    (2**32 + 65536, 2**32 - 65535),
    (2**33, 2**31 + 3),
    (2**62, 4),
    (2**31, 2**31),
    (2**63 - 1, 2),
    (-(2**32), -(2**32)),
    (2**63 - 1, 1),
]


# Mutations (malformations) per strategy; "none" = the valid configuration.
W2G_MUTATIONS = [
    "huge_k",
    "zero_k",
    "neg_k",
    "bias_shape",
    "bias_vec",
    "bias_dtype",
    "chain",
    "batch",
    "int_dtype",
    "empty",
    "len",
    "small_grid",
    "dim4",
    "huge_batch",
]
G2W_MUTATIONS = [
    "huge_k",
    "huge_layout",
    "zero_layout",
    "neg_layout",
    "kernel_big",
    "len",
    "node_shape",
    "edge_shape",
    "dtype_mismatch",
    "int_dtype",
    "dense_kernel",
    "short_layout",
    "zero_kernel",
]
READOUT_MUTATIONS = [
    "ptr_dec",
    "ptr_neg",
    "ptr_big",
    "mode",
    "eps",
    "mask_dtype",
    "mask_shape",
    "h_int",
    "h_1d",
    "ptr_empty",
    "ptr_float",
    "grad_dtype",
    "grad_shape",
    "zero_rows",
    "nan_h",
]
SCALE_EQ_MUTATIONS = [
    "b1_dtype",
    "b1_vec1",
    "bf_vec1",
    "b2_vec1",
    "ln1b_only",
    "ln2b_only",
    "ln1_shape",
    "mode",
    "mode3_no_b1",
    "we_shape",
    "hv_shape",
    "dtype",
    "int_edge",
    "edge_3d",
    "grad_dtype",
    "grad_shape",
    "saved_dtype",
    "saved_shape",
    "saved_noncontig",
    "tile",
    "win_shape",
]
EDGE_UPDATE_MUTATIONS = [
    "ln_w_only",
    "ln_b_only",
    "ln_shape",
    "dst_shape",
    "src_shape",
    "w2_shape",
    "b2_vec1",
    "wg_shape",
    "dtype",
    "int_edge",
    "p_bad",
    "grad_dtype",
    "grad_shape",
    "tile",
    "edge_3d",
]
DROPOUT_MUTATIONS = [
    "p_bad",
    "offset_edge",
    "offset_over",
    "offset_neg",
    "offset_huge",
    "seed_edge",
    "int_x",
    "huge_x",
    "seed_over",
]


def _mutation(draw, names: list[str], valid_weight: int = 4) -> str:
    return draw(st.sampled_from(["none"] * valid_weight + names))


def _seed(draw) -> int:
    return draw(st.integers(0, 2**16))


def tensor_code(draw, shape, dtype: str) -> str:
    """Source of a seeded tensor of `shape`: contiguous, transposed, strided or stride-0 (expanded)."""
    shape = tuple(int(s) for s in shape)
    seed = _seed(draw)
    lay = draw(st.sampled_from(["c", "c", "c", "t", "s", "x"]))
    dims = ", ".join(map(str, shape))
    if lay == "t" and len(shape) >= 2:
        sw = shape[:-2] + (shape[-1], shape[-2])
        return f"R({', '.join(map(str, sw))}, dtype={dtype}, seed={seed}).transpose(-1, -2)"
    if lay == "s" and len(shape) >= 1:
        sw = shape[:-1] + (2 * shape[-1],)
        return f"R({', '.join(map(str, sw))}, dtype={dtype}, seed={seed})[..., ::2]"
    if lay == "x" and len(shape) >= 1:
        one = (1,) + shape[1:]
        return f"R({', '.join(map(str, one))}, dtype={dtype}, seed={seed}).expand({dims})"
    return f"R({dims}, dtype={dtype}, seed={seed})" if shape else f"R(dtype={dtype}, seed={seed})"


def num_code(x: float) -> str:
    """Source of a float, NaN and infinities included."""
    return repr(x) if x == x and abs(x) != float("inf") else f"float('{x}')"


def _case(op: str, prelude: list[str], args: list[str]) -> dict:
    return {"op": op, "prelude": prelude, "args": args}


# ------------------------------------------------------------------------- graph ops ---------


@st.composite
def weights_to_graph_case(draw, mut: str | None = None) -> dict:
    B, L = draw(st.integers(0, 3)), draw(st.integers(1, 3))
    widths = [draw(st.integers(1, 4)) for _ in range(L + 1)]
    conv = [draw(st.booleans()) for _ in range(L)]
    ks = [(draw(st.integers(1, 3)), draw(st.integers(1, 3))) if c else (1, 1) for c in conv]
    Kh = max(k[0] for k in ks) + draw(st.integers(0, 2))
    Kw = max(k[1] for k in ks) + draw(st.integers(0, 2))
    dt = draw(st.sampled_from(FLOATS))
    mut = mut or _mutation(draw, W2G_MUTATIONS)
    shapes = [(B, widths[l + 1], widths[l]) + (ks[l] if conv[l] else ()) for l in range(L)]
    wdt = [dt] * L
    bshapes = [(B, widths[l + 1]) for l in range(L)]
    bdt = [dt] * L
    l = draw(st.integers(0, L - 1))
    if mut == "huge_k":
        Kh, Kw = draw(st.sampled_from(HUGE_GRIDS))
    elif mut == "zero_k":
        Kh = 0
    elif mut == "neg_k":
        Kw = -1
    elif mut == "bias_shape":
        bshapes[l] = (B, widths[l + 1] + 1)
    elif mut == "bias_vec":
        bshapes[l] = (widths[l + 1],)
    elif mut == "bias_dtype":
        bdt[l] = draw(st.sampled_from([d for d in FLOATS + BAD_DTYPES if d != dt]))
    elif mut == "chain" and L > 1:
        shapes[1] = shapes[1][:2] + (shapes[1][2] + 1,) + shapes[1][3:]
    elif mut == "batch":
        shapes[l] = (B + 1,) + shapes[l][1:]
    elif mut == "int_dtype":
        wdt = [draw(st.sampled_from(BAD_DTYPES))] * L
        bdt = list(wdt)
    elif mut == "small_grid" and any(conv):
        Kh = max(1, max(k[0] for k in ks) - 1)
    elif mut == "dim4":
        shapes[l] = shapes[l][:3] + (1,)
    pre = []
    for i in range(L):
        pre.append(f"w{i} = {tensor_code(draw, shapes[i], wdt[i])}")
        pre.append(f"b{i} = {tensor_code(draw, bshapes[i], bdt[i])}")
    if mut == "huge_batch":  # stride-0 batch whose edge output would need > 2^63 elements
        pre.append("w0 = w0[:1].expand(2**40, *w0.shape[1:]) if w0.shape[0] else w0")
        pre.append("b0 = b0[:1].expand(2**40, *b0.shape[1:]) if b0.shape[0] else b0")
    ws = "[" + ", ".join(f"w{i}" for i in range(L)) + "]"
    bs = "[" + ", ".join(f"b{i}" for i in range(L)) + "]"
    if mut == "empty":
        ws, bs = "[]", "[]"
    elif mut == "len":
        bs = "[" + ", ".join(f"b{i}" for i in range(L - 1)) + "]" if L > 1 else "[b0, b0]"
    dc, iv = draw(st.booleans()), draw(st.sampled_from([0.0, 1.0, -2.5]))
    return _case("weights_to_graph", pre, [ws, bs, str(Kh), str(Kw), str(dc), repr(iv)])


@st.composite
def graph_to_weights_case(draw, mut: str | None = None) -> dict:
    B, L = draw(st.integers(0, 3)), draw(st.integers(1, 3))
    layout = [draw(st.integers(1, 4)) for _ in range(L + 1)]
    conv = [draw(st.booleans()) for _ in range(L)]
    kh = [draw(st.integers(1, 3)) if c else 1 for c in conv]
    kw = [draw(st.integers(1, 3)) if c else 1 for c in conv]
    Kh, Kw = max(kh) + draw(st.integers(0, 1)), max(kw) + draw(st.integers(0, 1))
    dt = draw(st.sampled_from(FLOATS))
    mut = mut or _mutation(draw, G2W_MUTATIONS)
    N = sum(layout)
    E = sum(layout[i] * layout[i + 1] for i in range(L))
    node_shape, edge_shape = (B, N, 1), (B, E, Kh * Kw)
    ndt = edt = dt
    if mut == "huge_k":
        Kh, Kw = draw(st.sampled_from(HUGE_GRIDS))
        edge_shape = (B, E, draw(st.sampled_from([0, 1, 65536 % 97, 4])))
    elif mut == "huge_layout":
        layout = [2**32, 2**32] + layout[2:]
    elif mut == "zero_layout":
        layout[draw(st.integers(0, L))] = 0
    elif mut == "neg_layout":
        layout[draw(st.integers(0, L))] = -3
    elif mut == "kernel_big":
        kh[0] = Kh + 1
    elif mut == "zero_kernel":
        kw[0] = 0
    elif mut == "node_shape":
        node_shape = (B, N + 1, 1)
    elif mut == "edge_shape":
        edge_shape = (B, E, Kh * Kw + 1)
    elif mut == "dtype_mismatch":
        edt = draw(st.sampled_from([d for d in FLOATS if d != dt]))
    elif mut == "int_dtype":
        ndt = edt = draw(st.sampled_from(BAD_DTYPES))
    elif mut == "dense_kernel":
        conv[0], kh[0] = False, min(2, Kh)
    elif mut == "short_layout":
        layout = layout[:1]
    kh_a, kw_a, conv_a = list(kh), list(kw), list(conv)
    if mut == "len":
        kh_a = kh_a + [1]
    pre = [f"node = {tensor_code(draw, node_shape, ndt)}", f"edge = {tensor_code(draw, edge_shape, edt)}"]
    dc = draw(st.booleans())
    return _case(
        "graph_to_weights",
        pre,
        ["node", "edge", str(layout), str(kh_a), str(kw_a), str(conv_a), str(Kh), str(Kw), str(dc)],
    )


# ------------------------------------------------------------------------- CSR message ops ---

CSR_MUTATIONS = [
    "col_oob",
    "col_neg",
    "col_huge",
    "perm_dup",
    "perm_oob",
    "perm_neg",
    "rowptr_dec",
    "rowptr_first",
    "rowptr_last",
    "rowptr_empty",
    "rowptr_2d",
    "col_dtype",
    "float_rowptr",
    "feat_int",
    "feat_dtype",
    "feat_rows",
    "width",
    "t_size",
    "t_half",
    "t_perm_only",
    "alias",
    "huge_rows",
    "noncontig_index",
    "rowptr_huge",
    "no_rows_edges",
]


@st.composite
def csr_case(draw, op: str, mut: str | None = None) -> dict:
    big = draw(st.integers(0, 5)) == 0  # large enough for parallel_csr_rows to cut several chunks
    if big:
        n_dst, n_src = draw(st.integers(1, 300)), draw(st.integers(1, 300))
        E, C = draw(st.integers(0, 3000)), draw(st.sampled_from([1, 3, 8, 16, 33]))
    else:
        n_dst, n_src = draw(st.integers(0, 6)), draw(st.integers(0, 6))
        E, C = draw(st.integers(0, 12)), draw(st.integers(0, 5))
    mut = mut or _mutation(draw, CSR_MUTATIONS, valid_weight=6)
    if mut in ("col_oob", "col_neg", "col_huge", "perm_dup", "perm_oob", "perm_neg", "rowptr_last", "alias"):
        # these need edges and channels to bite (hypothesis favours the smallest sizes)
        n_dst, n_src, E, C = max(n_dst, 1), max(n_src, 1), max(E, 2), max(C, 1)
    if mut == "alias":
        n_src = n_dst
    if n_dst == 0 or n_src == 0:
        E = 0
    it = draw(st.sampled_from(INDEX))
    dt = draw(st.sampled_from(FLOATS))
    skew = draw(st.booleans())
    use_perm, use_t = draw(st.booleans()), draw(st.booleans())
    pre = [
        f"rowptr = rowptr_for({n_dst}, {E}, {_seed(draw)}, skew={skew}, dtype={it})",
        f"col = torch.randint(0, {max(n_src, 1)}, ({E},), generator=G({_seed(draw)})).to({it})",
        f"perm = torch.randperm({E}, generator=G({_seed(draw)})).to({it})" if use_perm else "perm = None",
    ]
    k = draw(st.integers(0, max(E - 1, 0)))
    k2 = draw(st.integers(0, max(E - 1, 0)))
    if mut == "perm_dup" and E >= 2:
        if not use_perm:
            pre.append(f"perm = torch.arange({E}).to({it})")
        k2 = k2 if k2 != k else (k + 1) % E
        pre.append(f"perm[{k}] = perm[{k2}]")
    if use_t and mut not in ("perm_dup",):
        pre.append(f"t_rowptr, t_col, t_perm = transpose_csr(rowptr, col, perm, {n_src})")
    else:
        pre.append("t_rowptr = t_col = t_perm = None")
    if E > 0:
        if mut == "col_oob":
            pre.append(f"col[{k}] = {n_src}")
        elif mut == "col_neg":
            pre.append(f"col[{k}] = -1")
        elif mut == "col_huge":
            pre.append(f"col[{k}] = {2**40 if it == 'torch.int64' else 2**31 - 1}")
        elif mut == "perm_oob":
            pre.append(f"perm = torch.arange({E}).to({it}) if perm is None else perm")
            pre.append(f"perm[{k}] = {E}")
        elif mut == "perm_neg":
            pre.append(f"perm = torch.arange({E}).to({it}) if perm is None else perm")
            pre.append(f"perm[{k}] = {-(2**31)}")
        elif mut == "rowptr_last":
            pre.append(f"rowptr[-1] = {E - 1}")
    if n_dst >= 2 and mut == "rowptr_dec":
        pre.append("rowptr[1] = rowptr[-1] + 1")
    if mut == "rowptr_first":
        pre.append("rowptr[0] = 1")
    elif mut == "rowptr_huge":
        pre.append(f"rowptr[-1] = {2**40 if it == 'torch.int64' else 2**31 - 1}")
    elif mut == "rowptr_empty":
        pre.append(f"rowptr = torch.zeros(0, dtype={it})")
    elif mut == "rowptr_2d":
        pre.append("rowptr = rowptr.unsqueeze(0)")
    elif mut == "col_dtype":
        pre.append(f"col = col.to({'torch.int32' if it == 'torch.int64' else 'torch.int64'})")
    elif mut == "float_rowptr":
        pre.append("rowptr = rowptr.double()")
    elif mut == "noncontig_index":
        pre.append("col = torch.stack([col, col], 1)[:, 0]")
        pre.append("rowptr = torch.stack([rowptr, rowptr], 1)[:, 1]")
    elif mut == "t_size" and use_t:
        pre.append(f"t_rowptr = torch.zeros({n_src + 2}, dtype={it})")
    elif mut == "t_half":
        pre.append(f"t_rowptr, t_col, t_perm = transpose_csr(rowptr, col, perm, {n_src})[0], None, None")
    elif mut == "t_perm_only":
        pre.append(f"t_rowptr, t_col, t_perm = None, None, torch.arange({E}).to({it})")
    elif mut == "no_rows_edges":
        pre.append(f"rowptr = torch.zeros(1, dtype={it})")
    fdt = [dt, dt]
    if mut == "feat_int":
        fdt[0] = fdt[1] = draw(st.sampled_from(BAD_DTYPES))
    elif mut == "feat_dtype":
        fdt[1] = draw(st.sampled_from([d for d in FLOATS if d != dt]))
    if op == "segment_gather_mul":
        ew = 1 if draw(st.booleans()) else C
        shapes = [(n_src, C), (E, ew)]
        if mut == "feat_rows":
            shapes[1] = (E + 1, ew)
        elif mut == "width":
            shapes[1] = (E, C + 2)
        names = ["x", "edge"]
    else:
        shapes = [(n_dst, C), (n_src, C)]
        if mut == "feat_rows":
            shapes[0] = (n_dst + 1, C)
        elif mut == "width":
            shapes[1] = (n_src, C + 1)
        names = ["a", "b"]
    pre.append(f"{names[0]} = {tensor_code(draw, shapes[0], fdt[0])}")
    if mut == "alias" and shapes[0] == shapes[1] and fdt[0] == fdt[1]:
        pre.append(f"{names[1]} = {names[0]}")
    else:
        pre.append(f"{names[1]} = {tensor_code(draw, shapes[1], fdt[1])}")
    if mut == "huge_rows":  # stride-0 feature rows: .contiguous() would need ~2^40 rows
        pre.append(
            f"{names[0]} = {names[0]}[:1].expand(2**40, {names[0]}.shape[1]) if {names[0]}.shape[0] else {names[0]}"
        )
    return _case(op, pre, names + ["rowptr", "col", "perm", "t_rowptr", "t_col", "t_perm"])


# ------------------------------------------------------------------------- readout -----------


@st.composite
def readout_case(draw, backward: bool, mut: str | None = None) -> dict:
    big = draw(st.integers(0, 5)) == 0
    N = draw(st.integers(1000, 3000)) if big else draw(st.integers(0, 8))
    C = draw(st.sampled_from([1, 4, 16])) if big else draw(st.integers(0, 4))
    G_ = draw(st.integers(0, 40 if big else 4))
    it, dt = draw(st.sampled_from(INDEX)), draw(st.sampled_from(FLOATS))
    mode, eps = draw(st.integers(0, 2)), draw(st.sampled_from([0.0, 1e-6, 0.1]))
    mut = mut or _mutation(draw, READOUT_MUTATIONS)
    pre = [f"ptr = torch.sort(torch.randint(0, {N + 1}, ({G_ + 1},), generator=G({_seed(draw)}))).values.to({it})"]
    hdt = draw(st.sampled_from(BAD_DTYPES)) if mut == "h_int" else dt
    hshape = (N,) if mut == "h_1d" else (N, C)
    pre.append(f"h = {tensor_code(draw, hshape, hdt)}")
    if mut == "zero_rows" and N > 0:
        pre.append("h = h.clone(); h[: h.shape[0] // 2] = 0")
    if mut == "nan_h" and N > 0 and C > 0:
        pre.append("h = h.clone(); h[0, 0] = float('nan')")
    use_mask = draw(st.booleans()) or mut in ("mask_dtype", "mask_shape")
    if use_mask:
        mdt = "torch.uint8" if mut == "mask_dtype" else "torch.bool"
        pre.append(f"mask = R({N + (1 if mut == 'mask_shape' else 0)}, dtype={mdt}, seed={_seed(draw)})")
    else:
        pre.append("mask = None")
    if G_ >= 1 and mut == "ptr_dec":
        pre.append("ptr[0] = ptr[-1] + 1")
    elif mut == "ptr_neg":
        pre.append("ptr[0] = -1")
    elif mut == "ptr_big":
        pre.append(f"ptr[-1] = {N + 1}")
    elif mut == "ptr_empty":
        pre.append(f"ptr = torch.zeros(0, dtype={it})")
    elif mut == "ptr_float":
        pre.append("ptr = ptr.float()")
    if mut == "mode":
        mode = draw(st.sampled_from([3, -1, 2**40]))
    elif mut == "eps":
        eps = draw(st.sampled_from([-1.0, float("nan")]))
    args = ["h", "ptr", "mask", str(mode), num_code(eps)]
    if not backward:
        return _case("canonical_segment_sum", pre, args)
    gdt = draw(st.sampled_from([d for d in FLOATS if d != dt])) if mut == "grad_dtype" else dt
    gshape = (G_ + (1 if mut == "grad_shape" else 0), C)
    pre.append(f"grad = {tensor_code(draw, gshape, gdt)}")
    return _case("canonical_segment_sum_backward", pre, ["grad"] + args)


# ------------------------------------------------------------------------- scale_eq_message --


@st.composite
def scale_eq_case(draw, backward: bool, mut: str | None = None) -> dict:
    B, O, I = draw(st.integers(0, 3)), draw(st.integers(0, 3)), draw(st.integers(0, 3))
    de, d, dout, dh = (draw(st.integers(1, 3)) for _ in range(4))
    mode = draw(st.integers(0, 3))
    dt = draw(st.sampled_from(GEMM_FLOATS))
    ln1 = draw(st.sampled_from(["both", "w", "none"])) if mode == 3 else "none"
    ln2 = draw(st.sampled_from(["both", "w", "none"]))
    mut = mut or _mutation(draw, SCALE_EQ_MUTATIONS)
    shapes = {
        "edge": (B, O, I, de),
        "hv": (B, I, d),
        "w_e": (d, de),
        "w_in": (dout + d if mode == 3 else dout, d),
        "b1": (d,),
        "ln1_w": (d,),
        "ln1_b": (d,),
        "w_f": (dh, d),
        "b_f": (dh,),
        "ln2_w": (dh,),
        "ln2_b": (dh,),
        "w_2": (dout, dh),
        "b_2": (dout,),
    }
    dts = {k: dt for k in shapes}
    present = {k: True for k in shapes}
    present["b1"] = mode == 3 or draw(st.integers(0, 3)) == 0
    present["ln1_w"], present["ln1_b"] = ln1 in ("both", "w"), ln1 == "both"
    present["ln2_w"], present["ln2_b"] = ln2 in ("both", "w"), ln2 == "both"
    if mut == "b1_dtype":
        present["b1"], dts["b1"] = True, draw(st.sampled_from([d_ for d_ in FLOATS + BAD_DTYPES if d_ != dt]))
    elif mut in ("b1_vec1", "bf_vec1", "b2_vec1"):
        key = {"b1_vec1": "b1", "bf_vec1": "b_f", "b2_vec1": "b_2"}[mut]
        present[key], shapes[key] = True, (1,)
    elif mut == "ln1b_only":
        present["ln1_w"], present["ln1_b"] = False, True
    elif mut == "ln2b_only":
        present["ln2_w"], present["ln2_b"] = False, True
    elif mut == "ln1_shape":
        present["ln1_w"], present["ln1_b"], shapes["ln1_w"] = True, True, (d + 1,)
    elif mut == "mode":
        mode = draw(st.sampled_from([4, -1]))
    elif mut == "mode3_no_b1":
        mode, present["b1"] = 3, False
        shapes["w_in"] = (dout + d, d)
    elif mut == "we_shape":
        shapes["w_e"] = (d, de + 1)
    elif mut == "win_shape":
        shapes["w_in"] = (shapes["w_in"][0] + 1, d)
    elif mut == "hv_shape":
        shapes["hv"] = (B, I + 1, d)
    elif mut == "dtype":
        dts[draw(st.sampled_from(["hv", "w_f", "b_2", "ln2_w", "w_e"]))] = "torch.float16"
    elif mut == "int_edge":
        dts = {k: "torch.int64" for k in dts}
    elif mut == "edge_3d":
        shapes["edge"] = (B, O, I)
    pre = [f"{k} = {tensor_code(draw, shapes[k], dts[k])}" if present[k] else f"{k} = None" for k in shapes]
    eps = draw(st.sampled_from([1e-3, 0.0, 0.5]))
    tile = draw(st.sampled_from([1, 4, 4096, 0, -5, 2**62])) if mut == "tile" else draw(st.sampled_from([1, 2, 4096]))
    names = list(shapes)
    if not backward:
        save = draw(st.booleans())
        return _case("scale_eq_message", pre, names + [str(mode), repr(eps), str(tile), str(save)])
    gdt = "torch.float16" if mut == "grad_dtype" else dt
    pre.append(f"grad = {tensor_code(draw, (B, O + (1 if mut == 'grad_shape' else 0), dout), gdt)}")
    saved = draw(st.sampled_from(["none", "fwd", "fwd"])) if not mut.startswith("saved") else "fwd"
    if saved == "fwd":
        # a malformed configuration the forward rejects still fuzzes the backward (without saved)
        pre += [
            "try:",
            f"    saved = torch.ops.scalegmn.scale_eq_message({', '.join(names)}, {mode}, {eps!r}, {tile}, True)[1]",
            "except (RuntimeError, ValueError, TypeError, IndexError):",
            "    saved = None",
        ]
        if mut == "saved_dtype":
            pre.append(
                f"saved = saved if saved is None else saved.to({'torch.float32' if dt == 'torch.float64' else 'torch.float64'})"
            )
        elif mut == "saved_shape":
            pre.append("saved = saved if saved is None else saved[:, 1:]")
        elif mut == "saved_noncontig":
            pre.append("saved = saved if saved is None else saved.t().contiguous().t()")
    else:
        pre.append("saved = None")
    return _case("scale_eq_message_backward", pre, ["grad"] + names + [str(mode), repr(eps), str(tile), "saved"])


# ------------------------------------------------------------------------- edge_update -------


@st.composite
def edge_update_case(draw, backward: bool, mut: str | None = None) -> dict:
    B, O, I = draw(st.integers(0, 3)), draw(st.integers(0, 3)), draw(st.integers(0, 3))
    de, d, dout = (draw(st.integers(1, 3)) for _ in range(3))
    dt = draw(st.sampled_from(GEMM_FLOATS))
    ln = draw(st.booleans())
    mut = mut or _mutation(draw, EDGE_UPDATE_MUTATIONS)
    shapes = {
        "edge": (B, O, I, de),
        "dst": (B, O, d),
        "src": (B, I, d),
        "ln_w": (d,),
        "ln_b": (d,),
        "w_2": (dout, d),
        "b_2": (dout,),
        "w_g": (dout, de),
    }
    dts = {k: dt for k in shapes}
    present = {k: True for k in shapes}
    present["ln_w"] = present["ln_b"] = ln
    if mut == "ln_w_only":
        present["ln_w"], present["ln_b"] = True, False
    elif mut == "ln_b_only":
        present["ln_w"], present["ln_b"] = False, True
    elif mut == "ln_shape":
        present["ln_w"] = present["ln_b"] = True
        shapes["ln_b"] = (d + 1,)
    elif mut == "dst_shape":
        shapes["dst"] = (B, O + 1, d)
    elif mut == "src_shape":
        shapes["src"] = (B, I, d + 1)
    elif mut == "w2_shape":
        shapes["w_2"] = (dout, d + 1)
    elif mut == "b2_vec1":
        shapes["b_2"] = (1,)
    elif mut == "wg_shape":
        shapes["w_g"] = (dout + 1, de)
    elif mut == "dtype":
        dts[draw(st.sampled_from(["dst", "src", "w_2", "b_2", "w_g"]))] = "torch.float16"
    elif mut == "int_edge":
        dts = {k: "torch.int64" for k in dts}
    elif mut == "edge_3d":
        shapes["edge"] = (B, O, I)
    pre = [f"{k} = {tensor_code(draw, shapes[k], dts[k])}" if present[k] else f"{k} = None" for k in shapes]
    p = draw(st.sampled_from([1.0, -0.1, float("nan")])) if mut == "p_bad" else draw(st.sampled_from([0.0, 0.0, 0.3]))
    seed = draw(st.sampled_from([0, 7, -1, 2**62]))
    tile = draw(st.sampled_from([1, 0, -3, 2**62])) if mut == "tile" else draw(st.sampled_from([1, 3, 4096]))
    names = list(shapes)
    tail = [num_code(p), str(seed), str(tile)]
    if not backward:
        return _case("edge_update", pre, names + tail)
    gdt = "torch.float16" if mut == "grad_dtype" else dt
    pre.append(f"grad = {tensor_code(draw, (B, O, I + (1 if mut == 'grad_shape' else 0), dout), gdt)}")
    return _case("edge_update_backward", pre, ["grad"] + names + tail)


# ------------------------------------------------------------------------- hash_dropout ------


@st.composite
def hash_dropout_case(draw, mut: str | None = None) -> dict:
    big = draw(st.integers(0, 5)) == 0
    shape = (
        (draw(st.integers(1, 300)), draw(st.integers(100, 300)))
        if big
        else tuple(draw(st.lists(st.integers(0, 5), min_size=0, max_size=3)))
    )
    numel = 1
    for s in shape:
        numel *= s
    mut = mut or _mutation(draw, DROPOUT_MUTATIONS)
    dt = draw(st.sampled_from(BAD_DTYPES)) if mut == "int_x" else draw(st.sampled_from(FLOATS))
    pre = [f"x = {tensor_code(draw, shape, dt)}"]
    if mut == "huge_x":
        pre.append("x = R(1).expand(2**40)")
    p = draw(st.sampled_from([0.0, 0.1, 0.5, 0.99]))
    if mut == "p_bad":
        p = draw(st.sampled_from([1.0, -0.5, float("nan"), float("inf")]))
    seed = draw(st.sampled_from([0, 1, 12345, 2**31, -1]))
    if mut == "seed_edge":
        seed = draw(st.sampled_from([2**63 - 1, -(2**63)]))
    elif mut == "seed_over":
        seed = 2**64
    offset = draw(st.sampled_from([0, 17, 2**32 - 3]))
    if mut == "offset_edge":  # the largest offsets that still fit
        offset = 2**63 - 1 - numel - draw(st.integers(0, 2))
    elif mut == "offset_over":  # offset + numel just past 2^63 - 1
        offset = 2**63 - 1 - numel + draw(st.integers(1, max(1, numel)))
    elif mut == "offset_neg":
        offset = draw(st.sampled_from([-1, -(2**63)]))
    elif mut == "offset_huge":
        offset = 2**63
    return _case("hash_dropout", pre, ["x", num_code(p), str(seed), str(offset)])


def mutations_for(op: str) -> list[str]:
    """The mutation names of an op's strategy ("none" first)."""
    return ["none"] + {
        "weights_to_graph": W2G_MUTATIONS,
        "graph_to_weights": G2W_MUTATIONS,
        "segment_gather_mul": CSR_MUTATIONS,
        "gather_mul_csr": CSR_MUTATIONS,
        "gather_dot_csr": CSR_MUTATIONS,
        "canonical_segment_sum": READOUT_MUTATIONS,
        "canonical_segment_sum_backward": READOUT_MUTATIONS,
        "scale_eq_message": SCALE_EQ_MUTATIONS,
        "scale_eq_message_backward": SCALE_EQ_MUTATIONS,
        "edge_update": EDGE_UPDATE_MUTATIONS,
        "edge_update_backward": EDGE_UPDATE_MUTATIONS,
        "hash_dropout": DROPOUT_MUTATIONS,
    }[op]


def strategy_for(op: str, mut: str | None = None):
    """The case strategy of one op (every op of the scalegmn library has one); `mut` forces one
    mutation (hypothesis alone would rarely reach the rarer ones)."""
    return {
        "weights_to_graph": lambda: weights_to_graph_case(mut),
        "graph_to_weights": lambda: graph_to_weights_case(mut),
        "segment_gather_mul": lambda: csr_case("segment_gather_mul", mut),
        "gather_mul_csr": lambda: csr_case("gather_mul_csr", mut),
        "gather_dot_csr": lambda: csr_case("gather_dot_csr", mut),
        "canonical_segment_sum": lambda: readout_case(False, mut),
        "canonical_segment_sum_backward": lambda: readout_case(True, mut),
        "scale_eq_message": lambda: scale_eq_case(False, mut),
        "scale_eq_message_backward": lambda: scale_eq_case(True, mut),
        "edge_update": lambda: edge_update_case(False, mut),
        "edge_update_backward": lambda: edge_update_case(True, mut),
        "hash_dropout": lambda: hash_dropout_case(mut),
    }[op]()
