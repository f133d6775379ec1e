"""Lowering of the network ops: softmax, log_softmax, cross-entropies,
conv1d/conv2d and their gradients, max_pool2d and its gradients.

Convolutions unfold the whole batch into one matrix (colsT [C*K, N*P], im2col)
so that each product is a single gemm, which the cpu backend splits over its
threads and the OpenCL backend launches once; conv2d and its filter gradient
share the unfolded input, the input and filter gradients share the cotangent
moved to [F, N*P]. Imports only irc.ir and irc.ops.
"""

from __future__ import annotations

import numpy as np

from irc.ir.dims import dim_add, dim_floordiv, dim_mul, dim_sub
from irc.ir.types import F32, F64, I32, I64, TensorType
from irc.ops.common import int_pair, norm_axis
from irc.ops.lowering.emit import BOOL_T, IDX, product
from irc.ops.registry import lowers


def _softmax_rows(lowerer, emit, x, axis, body_fn):
    """For each row along `axis`: body_fn(e, at(i) -> index list, n)."""
    shape = x.type.shape
    other = [d for k, d in enumerate(shape) if k != axis]

    def outer(e, oidx):
        def at(i):
            return list(oidx[:axis]) + [i] + list(oidx[axis:])

        body_fn(e, at, shape[axis], oidx)

    emit.nest(other, outer)


def _row_max(e, xb, at, n, dt):
    (m,) = e.loop(
        e.dim(0),
        e.dim(n),
        lambda e2, i, acc: [e2.scalar("maximum", acc, e2.load(xb, at(i)))],
        inits=[e.const(-np.inf, dt)],
    )
    return m


def _row_sum(e, n, f, dt):
    (s,) = e.loop(
        e.dim(0),
        e.dim(n),
        lambda e2, i, acc: [e2.scalar("add", acc, f(e2, i), reassoc=True)],
        inits=[e.const(0, dt)],
    )
    return s


@lowers("tg.softmax", "tg.log_softmax")
def lower_softmax(lowerer, emit, op, vals):
    x = op.operands[0]
    v = op.results[0]
    dt = v.type.dtype
    axis = norm_axis(op.attrs.get("axis", -1), x.type.rank)
    xb = lowerer.buf(emit, x, vals)
    out = lowerer.result_buf(v)
    log = op.name == "tg.log_softmax"

    def row(e, at, n, oidx):
        m = _row_max(e, xb, at, n, dt)
        if log:
            s = _row_sum(
                e, n, lambda e2, i: e2.scalar("exp", e2.scalar("sub", e2.load(xb, at(i)), m)), dt
            )
            lse = e.scalar("add", m, e.scalar("log", s))
            e.loop(
                e.dim(0),
                e.dim(n),
                lambda e2, i: e2.store(e2.scalar("sub", e2.load(xb, at(i)), lse), out, at(i)),
            )
        else:

            def ex(e2, i):
                t = e2.scalar("exp", e2.scalar("sub", e2.load(xb, at(i)), m))
                e2.store(t, out, at(i))
                return t

            s = _row_sum(e, n, ex, dt)
            r = e.scalar("div", e.const(1, dt), s)
            e.loop(
                e.dim(0),
                e.dim(n),
                lambda e2, i: e2.store(e2.scalar("mul", e2.load(out, at(i)), r), out, at(i)),
            )

    _softmax_rows(lowerer, emit, x, axis, row)
    vals[v] = out


@lowers("tg.categorical_crossentropy", "tg.crossentropy_logits")
def lower_crossentropy(lowerer, emit, op, vals):
    p, y = op.operands
    v = op.results[0]
    rt = v.type.dtype
    pt = p.type.dtype  # NumPy takes the log (softmax) in p's dtype, then promotes
    pb, yb = lowerer.buf(emit, p, vals), lowerer.buf(emit, y, vals)
    out = lowerer.result_buf(v)
    logits = op.name == "tg.crossentropy_logits"
    ax = p.type.rank - 1
    int_labels = y.type.dtype.is_int

    def row(e, at, n, oidx):
        def px(e2, i):
            return e2.load(pb, at(i))

        if logits:
            m = _row_max(e, pb, at, n, pt)
            s = _row_sum(e, n, lambda e2, i: e2.scalar("exp", e2.scalar("sub", px(e2, i), m)), pt)
            ls = e.scalar("log", s)

            def logp(e2, i):
                return e2.scalar("sub", e2.scalar("sub", px(e2, i), m), ls)
        else:

            def logp(e2, i):
                return e2.scalar("log", px(e2, i))

        if int_labels:
            lab = e.cast(e.load(yb, oidx), I64)
            ok = e.scalar(
                "and",
                e.scalar("ge", lab, e.dim(0), t=BOOL_T),
                e.scalar("lt", lab, e.dim(n), t=BOOL_T),
            )
            e.assert_(ok, f"{op.name}: label out of range [0, {n})")
            loss = e.scalar("neg", e.cast(logp(e, lab), rt))
        else:
            tot = _row_sum(
                e,
                n,
                lambda e2, i: e2.scalar(
                    "mul", e2.cast(e2.load(yb, at(i)), rt), e2.cast(logp(e2, i), rt)
                ),
                rt,
            )
            loss = e.scalar("neg", tot)
        e.store(loss, out, oidx)

    _softmax_rows(lowerer, emit, p, ax, row)
    vals[v] = out


@lowers("tg.max_pool2d")
def lower_max_pool2d(lowerer, emit, op, vals):
    x = op.operands[0]
    v = op.results[0]
    size = int_pair(op.attrs.get("size"), "size")
    stride = op.attrs.get("stride")
    stride = size if stride is None else int_pair(stride, "stride")
    xb = lowerer.buf(emit, x, vals)
    out = lowerer.result_buf(v)
    dt = v.type.dtype
    compare_dtype = I32 if dt.is_bool else dt
    for d, k in zip(x.type.shape[-2:], size):
        if not isinstance(d, int):  # as the interpreter: a window larger than a named dim's
            emit.assert_(  # input is a run-time error, not an empty result (issue 15)
                emit.scalar("ge", emit.dim(d), emit.dim(k), t=BOOL_T),
                f"{op.name}: pool window {size} is larger than the input",
            )

    def body(e, idx):
        lead, oh, ow = idx[:-2], idx[-2], idx[-1]
        h0 = e.mul_i(oh, e.const(stride[0], I64))
        w0 = e.mul_i(ow, e.const(stride[1], I64))
        acc = e.cast(e.load(xb, lead + [h0, w0]), compare_dtype)
        for u in range(size[0]):
            for w in range(size[1]):
                if u == 0 and w == 0:
                    continue
                hi = e.add_i(h0, e.const(u, I64)) if u else h0
                wi = e.add_i(w0, e.const(w, I64)) if w else w0
                acc = e.scalar("maximum", acc, e.cast(e.load(xb, lead + [hi, wi]), compare_dtype))
        e.store(e.cast(acc, dt), out, idx)

    emit.nest(v.type.shape, body)
    vals[v] = out


def _conv_pads(e, padding, nd, in_dims, k_dims, strides):
    """Padding before each spatial axis, as i64 values."""
    pads = []
    for i in range(nd):
        h, k, s = in_dims[i], k_dims[i], strides[i]
        if padding == "valid":
            pads.append(e.dim(0))
        elif padding == "full":
            pads.append(e.dim(dim_sub(k, 1)))
        elif padding == "same":
            out = dim_floordiv(dim_add(h, s - 1), s)
            total = dim_sub(dim_add(dim_mul(dim_sub(out, 1), s), k), h)
            t = e.scalar("maximum", e.dim(total), e.dim(0))
            pads.append(e.scalar("floordiv", t, e.const(2, I64)))
        else:
            p = padding if isinstance(padding, (tuple, list)) else (padding,) * nd
            pads.append(e.dim(int(p[i])))
    return pads


def _conv_setup(lowerer, emit, op, x_shape, k_shape, nd=2):
    """(strides, pads as i64 values, flip, unpadded): unpadded when no tap can
    fall outside the input (no padding), so the im2col/col2im loops need no
    bounds checks: with O = (S - K) // s + 1, o * s + k <= S - 1."""
    stride = op.attrs.get("stride", 1)
    if nd == 1:
        strides = (stride[0] if isinstance(stride, tuple) else stride,)
    else:
        strides = int_pair(stride, "stride")
    padding = op.attrs.get("padding", "valid")
    if isinstance(padding, (int, np.integer)) and not isinstance(padding, bool):
        padding = (int(padding),) * nd
    flip = bool(op.attrs.get("flip", False))
    pads = _conv_pads(emit, padding, nd, list(x_shape), list(k_shape), strides)
    unpadded = padding == "valid" or (
        isinstance(padding, (tuple, list)) and all(int(p) == 0 for p in padding)
    )
    return strides, pads, flip, unpadded


def _im2col_index(e, o, kk, strides, pads, ks, ins, flip, nd, unpadded=False):
    """(input positions clamped into range, in-range flag or None when every
    position is in range) of taps kk at outputs o."""
    src, valid = [], None
    for i in range(nd):
        ki = kk[i]
        if flip:
            ki = e.scalar("sub", e.dim(dim_sub(ks[i], 1)), ki)
        pos = (
            e.add_i(e.mul_i(o[i], e.const(strides[i], I64)), ki)
            if strides[i] != 1
            else e.add_i(o[i], ki)
        )
        if unpadded:
            src.append(pos)
            continue
        pos = e.scalar("sub", pos, pads[i])
        ok = e.scalar(
            "and",
            e.scalar("ge", pos, e.dim(0), t=BOOL_T),
            e.scalar("lt", pos, e.dim(ins[i]), t=BOOL_T),
        )
        valid = ok if valid is None else e.scalar("and", valid, ok)
        src.append(
            e.scalar("minimum", e.scalar("maximum", pos, e.dim(0)), e.dim(dim_sub(ins[i], 1)))
        )
    return src, valid


def _shared(lowerer, emit, key, make):
    """The buffer make() builds, built once per block: conv2d and its filter
    gradient unfold the same input with the same geometry, and the input and
    filter gradients move the same cotangent. Reused only in the block that
    built it, after it (a buffer of the entry block lives for the whole call, and
    the tg value it was built from is never overwritten while a later op reads it)."""
    cache = lowerer.cache.setdefault("nn.shared", {})
    full = (emit.b.block, *key)
    got = cache.get(full)
    if got is None:
        got = cache[full] = make()
    return got


def _im2col_t(lowerer, emit, x, xb, rt, Nn, C, ins, ks, outs, geo, nd, op):
    """colsT [C*prod(ks), N*prod(outs)]: row (c, k) holds tap k of channel c at
    every output position of every image (zero where the tap falls in the padding).
    The whole batch is one matrix, so each convolution product is one gemm that
    the backend splits over its threads (or launches once), and the innermost
    loop copies a contiguous row of the input."""
    padding = op.attrs.get("padding", "valid")
    if not isinstance(padding, str):
        padding = (
            tuple(int(p) for p in padding)
            if isinstance(padding, (tuple, list))
            else ((int(padding),) * nd)
        )
    key = ("im2col_t", x, rt.name, tuple(ks), tuple(outs), tuple(geo[0]), padding, geo[2])
    return _shared(
        lowerer,
        emit,
        key,
        lambda: _build_im2col_t(lowerer, emit, xb, rt, Nn, C, ins, ks, outs, geo, nd),
    )


def _build_im2col_t(lowerer, emit, xb, rt, Nn, C, ins, ks, outs, geo, nd):
    strides, pads, flip, unpadded = geo
    P, CK = product(outs), product([C] + ks)
    cols = lowerer.alloc(TensorType(rt, (CK, dim_mul(Nn, P))))
    colsv = emit.val("mem.view", [cols], TensorType(rt, tuple([C] + ks + [Nn] + outs)))
    zero = emit.const(0, rt)

    def body(e, idx):
        n, c, kk, o = idx[0], idx[1], idx[2 : 2 + nd], idx[2 + nd :]
        src, valid = _im2col_index(e, o, kk, strides, pads, ks, ins, flip, nd, unpadded)
        val = e.load(xb, [n, c] + src)
        if valid is not None:
            val = e.scalar("select", valid, val, zero, t=zero.type)
        e.store(val, colsv, [c] + kk + [n] + o)

    emit.nest([Nn, C] + ks + outs, body)
    return cols, P, CK


def _batch_major(lowerer, emit, g, gb, rt, Nn, F, outs):
    """gT [F, N*prod(outs)]: the cotangent [N, F, *outs] with the batch moved inside."""
    return _shared(
        lowerer,
        emit,
        ("batch_major", g, rt.name),
        lambda: _build_batch_major(lowerer, emit, gb, rt, Nn, F, outs),
    )


def _build_batch_major(lowerer, emit, gb, rt, Nn, F, outs):
    P = product(outs)
    gt = lowerer.alloc(TensorType(rt, (F, dim_mul(Nn, P))))
    gtv = emit.val("mem.view", [gt], TensorType(rt, tuple([F, Nn] + outs)))

    def body(e, idx):
        n, f, o = idx[0], idx[1], idx[2:]
        e.store(e.load(gb, idx), gtv, [f, n] + o)

    emit.nest([Nn, F] + outs, body)
    return gt


def _check_gemm_dims(emit, op, *dims):
    """BLAS takes 32-bit sizes: a product over the whole batch with a side of
    2**31 or more (N * output positions, for a huge batch of large images) stops
    the call with an error instead of a truncated size."""
    limit = 2**31 - 1
    for d in dims:
        if isinstance(d, int):
            if d > limit:
                emit.assert_(
                    emit.const(False, BOOL_T.dtype),
                    f"{op.name}: the batch's product has a side of {d}, over 2**31 - 1",
                )
            continue
        emit.assert_(
            emit.scalar("le", emit.dim(d), emit.const(limit, I64), t=BOOL_T),
            f"{op.name}: the batch's product has a side of 2**31 or more; split the batch",
        )


@lowers("tg.conv1d", "tg.conv2d")
def lower_conv(lowerer, emit, op, vals):
    """out = W [F, CK] @ colsT [CK, N*P], one gemm for the batch, then the
    [F, N, P] product moved into the [N, F, P] result."""
    x, w = op.operands
    v = op.results[0]
    nd = 2 if op.name == "tg.conv2d" else 1
    rt = v.type.dtype
    xb, wb = _as_dtype(lowerer, emit, x, vals, rt), _as_dtype(lowerer, emit, w, vals, rt)
    Nn, C = x.type.shape[:2]
    F = w.type.shape[0]
    ins = list(x.type.shape[2:])
    ks = list(w.type.shape[2:])
    outs = list(v.type.shape[2:])
    geo = _conv_setup(lowerer, emit, op, ins, ks, nd)
    _check_gemm_dims(emit, op, dim_mul(Nn, product(outs)), product([C] + ks))
    cols, P, CK = _im2col_t(lowerer, emit, x, xb, rt, Nn, C, ins, ks, outs, geo, nd, op)
    NP = dim_mul(Nn, P)
    prod = lowerer.alloc(TensorType(rt, (F, NP)))
    emit.gemm(wb, cols, prod, F, NP, CK, CK, NP, NP, trans_a=False, trans_b=False)
    prodv = emit.val("mem.view", [prod], TensorType(rt, tuple([F, Nn] + outs)))
    out = lowerer.result_buf(v)

    def body(e, idx):
        n, f, o = idx[0], idx[1], idx[2:]
        e.store(e.load(prodv, [f, n] + o), out, idx)

    emit.nest(v.type.shape, body)
    vals[v] = out


def _as_dtype(lowerer, emit, x, vals, rt):
    b = lowerer.buf(emit, x, vals)
    return b if x.type.dtype == rt else _cast_copy(lowerer, emit, b, rt)


@lowers("tg.conv2d_input_grad")
def lower_conv_input_grad(lowerer, emit, op, vals):
    """colsT [CK, N*P] = w^T @ gT (one gemm for the batch), then col2im: each
    image's taps added back into its input positions (per image on one thread,
    so the accumulation order does not depend on the thread count)."""
    g, w = op.operands
    v = op.results[0]
    rt = v.type.dtype
    gb, wb = _as_dtype(lowerer, emit, g, vals, rt), _as_dtype(lowerer, emit, w, vals, rt)
    Nn, F = g.type.shape[:2]
    C = w.type.shape[1]
    ks = list(w.type.shape[2:])
    ins = list(v.type.shape[2:])
    outs = list(g.type.shape[2:])
    nd = len(ks)
    geo = _conv_setup(lowerer, emit, op, ins, ks, nd)
    strides, pads, flip, unpadded = geo
    P, CK = product(outs), product([C] + ks)
    NP = dim_mul(Nn, P)
    _check_gemm_dims(emit, op, NP, CK)
    gt = _batch_major(lowerer, emit, g, gb, rt, Nn, F, outs)
    cols = lowerer.alloc(TensorType(rt, (CK, NP)))
    # colsT [CK, NP] = w [F, CK]^T @ gT [F, NP]
    emit.gemm(wb, gt, cols, CK, NP, F, CK, NP, NP, trans_a=True, trans_b=False)
    out = lowerer.result_buf(v)
    zero = emit.const(0, rt)
    colsv = emit.val("mem.view", [cols], TensorType(rt, tuple([C] + ks + [Nn] + outs)))

    def per_n(e, nidx):
        n = nidx[0]
        e.nest(v.type.shape[1:], lambda e2, idx: e2.store(zero, out, [n] + idx), parallel=False)

        def tap(e2, idx):
            # the taps' axes run last-first: consecutive row updates then hit the
            # same or another row, never a row shifted by one element (a vector
            # load overlapping the previous store by all but one lane stalls
            # store-to-load forwarding)
            c, kk, o = idx[0], idx[1 : 1 + nd][::-1], idx[1 + nd :]
            src, valid = _im2col_index(e2, o, kk, strides, pads, ks, ins, flip, nd, unpadded)
            val = e2.load(colsv, [c] + kk + [n] + o)
            if valid is not None:
                val = e2.scalar("select", valid, val, zero, t=zero.type)
            cur = e2.load(out, [n, c] + src)
            e2.store(e2.scalar("add", cur, val), out, [n, c] + src)

        e.nest([C] + ks[::-1] + outs, tap, parallel=False)

    emit.nest([Nn], per_n)
    vals[v] = out


@lowers("tg.conv2d_filter_grad")
def lower_conv_filter_grad(lowerer, emit, op, vals):
    """dw [F, CK] = gT [F, N*P] @ colsT [CK, N*P]^T: one gemm over the whole batch."""
    x, g = op.operands
    v = op.results[0]
    rt = v.type.dtype
    xb, gb = _as_dtype(lowerer, emit, x, vals, rt), _as_dtype(lowerer, emit, g, vals, rt)
    Nn, C = x.type.shape[:2]
    F = g.type.shape[1]
    ins = list(x.type.shape[2:])
    ks = list(v.type.shape[2:])
    outs = list(g.type.shape[2:])
    nd = len(ks)
    geo = _conv_setup(lowerer, emit, op, ins, ks, nd)
    _check_gemm_dims(emit, op, dim_mul(Nn, product(outs)), product([C] + ks))
    cols, P, CK = _im2col_t(lowerer, emit, x, xb, rt, Nn, C, ins, ks, outs, geo, nd, op)
    gt = _batch_major(lowerer, emit, g, gb, rt, Nn, F, outs)
    NP = dim_mul(Nn, P)
    out = lowerer.result_buf(v)
    emit.gemm(gt, cols, out, F, CK, NP, NP, NP, CK, trans_a=False, trans_b=True)
    vals[v] = out


def _pool_attrs(op):
    size = int_pair(op.attrs.get("size"), "size")
    stride = op.attrs.get("stride")
    stride = size if stride is None else int_pair(stride, "stride")
    return size, stride


def _window_argmax(e, xb, lead, oh, ow, size, stride, compare_dtype):
    """(h, w) of the first maximum of a pooling window (NaN counts as the maximum)."""
    h0 = e.mul_i(oh, e.const(stride[0], I64))
    w0 = e.mul_i(ow, e.const(stride[1], I64))
    best = e.cast(e.load(xb, lead + [h0, w0]), compare_dtype)
    bh, bw = h0, w0
    for u in range(size[0]):
        for w in range(size[1]):
            if u == 0 and w == 0:
                continue
            hi = e.add_i(h0, e.const(u, I64)) if u else h0
            wi = e.add_i(w0, e.const(w, I64)) if w else w0
            xv = e.cast(e.load(xb, lead + [hi, wi]), compare_dtype)
            better = e.scalar("gt", xv, best, t=BOOL_T)
            if compare_dtype.is_float:
                better = e.scalar(
                    "or",
                    better,
                    e.scalar(
                        "and",
                        e.scalar("ne", xv, xv, t=BOOL_T),
                        e.scalar("eq", best, best, t=BOOL_T),
                    ),
                )
            best = e.scalar("select", better, xv, best, t=xv.type, unpredictable=True)
            bh = e.scalar("select", better, hi, bh, t=IDX, unpredictable=True)
            bw = e.scalar("select", better, wi, bw, t=IDX, unpredictable=True)
    return bh, bw


def _window_argmax_keyed(e, xb, lead, oh, ow, size, stride, compare_dtype):
    """_window_argmax without branches: f32 values are compared as f64 keys in
    which NaN is above +inf (NaN -> inf, inf -> the largest f64), so that one
    ordered comparison per value decides, and the selects are marked
    unpredictable (LLVM otherwise turns them into branches, mispredicted half the
    time on real data); integers compare as they are. f64 values have no wider
    key: _window_argmax."""
    if compare_dtype == F64:
        return _window_argmax(e, xb, lead, oh, ow, size, stride, compare_dtype)

    def key(xv):
        if compare_dtype != F32:
            return xv
        k = e.cast(xv, F64)
        big = e.const(np.finfo(np.float64).max, F64)
        is_inf = e.scalar("eq", xv, e.const(np.inf, F32), t=BOOL_T)
        k = e.scalar("select", is_inf, big, k, t=k.type, unpredictable=True)
        is_nan = e.scalar("ne", xv, xv, t=BOOL_T)
        return e.scalar("select", is_nan, e.const(np.inf, F64), k, t=k.type, unpredictable=True)

    h0 = e.mul_i(oh, e.const(stride[0], I64))
    w0 = e.mul_i(ow, e.const(stride[1], I64))
    best = key(e.cast(e.load(xb, lead + [h0, w0]), compare_dtype))
    bh, bw = h0, w0
    for u in range(size[0]):
        for w in range(size[1]):
            if u == 0 and w == 0:
                continue
            hi = e.add_i(h0, e.const(u, I64)) if u else h0
            wi = e.add_i(w0, e.const(w, I64)) if w else w0
            kv = key(e.cast(e.load(xb, lead + [hi, wi]), compare_dtype))
            better = e.scalar("gt", kv, best, t=BOOL_T)
            best = e.scalar("select", better, kv, best, t=kv.type, unpredictable=True)
            bh = e.scalar("select", better, hi, bh, t=IDX, unpredictable=True)
            bw = e.scalar("select", better, wi, bw, t=IDX, unpredictable=True)
    return bh, bw


@lowers("tg.max_pool2d_grad")
def lower_max_pool2d_grad(lowerer, emit, op, vals):
    """The cotangent of each window goes to its first maximum. Windows that tile
    the input (stride == size) zero their own positions and store the cotangent
    at the maximum (no read-modify-write, no separate zero fill), and the rows
    and columns after the last window are zeroed. Other strides add into a
    zeroed result."""
    x, g = op.operands
    v = op.results[0]
    size, stride = _pool_attrs(op)
    xb, gb = lowerer.buf(emit, x, vals), lowerer.buf(emit, g, vals)
    out = lowerer.result_buf(v)
    rt = v.type.dtype
    compare_dtype = I32 if x.type.dtype.is_bool else x.type.dtype
    zero = emit.const(0, rt)
    lead_shape = list(x.type.shape[:-2])
    H, W = x.type.shape[-2:]
    OH, OW = g.type.shape[-2:]
    if tuple(stride) == tuple(size):

        def win(e, idx):
            lead, oh, ow = idx[:-2], idx[-2], idx[-1]
            bh, bw = _window_argmax_keyed(e, xb, lead, oh, ow, size, stride, compare_dtype)
            h0 = e.mul_i(oh, e.const(stride[0], I64))
            w0 = e.mul_i(ow, e.const(stride[1], I64))
            for u in range(size[0]):
                hi = e.add_i(h0, e.const(u, I64)) if u else h0
                for t in range(size[1]):
                    wi = e.add_i(w0, e.const(t, I64)) if t else w0
                    e.store(zero, out, lead + [hi, wi])
            gv = e.scalar("add", zero, e.cast(e.load(gb, idx), rt))
            e.store(gv, out, lead + [bh, bw])

        emit.nest(g.type.shape, win)
        vals[v] = out
        static = all(isinstance(d, int) for d in (H, W, OH, OW))
        if static and OH * stride[0] == H and OW * stride[1] == W:
            return  # the windows cover the input
        # rows and columns after the last window
        h_end = emit.mul_i(emit.dim(OH), emit.const(stride[0], I64))
        w_end = emit.mul_i(emit.dim(OW), emit.const(stride[1], I64))
        h_end = emit.scalar("minimum", h_end, emit.dim(H))
        w_end = emit.scalar("minimum", w_end, emit.dim(W))

        def tail(e, lead):
            def row(e2, h):
                e2.loop(e2.dim(0), e2.dim(W), lambda e3, w: e3.store(zero, out, lead + [h, w]))

            e.loop(h_end, e.dim(H), row)

            def cols(e2, h):
                e2.loop(w_end, e2.dim(W), lambda e3, w: e3.store(zero, out, lead + [h, w]))

            e.loop(e.dim(0), h_end, cols)

        emit.nest(lead_shape, tail)
        return

    def per_lead(e, lead):
        e.nest(x.type.shape[-2:], lambda e2, hw: e2.store(zero, out, lead + hw), parallel=False)

        def win(e2, ohw):
            bh, bw = _window_argmax(e2, xb, lead, ohw[0], ohw[1], size, stride, compare_dtype)
            gv = e2.cast(e2.load(gb, lead + ohw), rt)
            cur = e2.load(out, lead + [bh, bw])
            e2.store(e2.scalar("add", cur, gv), out, lead + [bh, bw])

        e.nest(g.type.shape[-2:], win, parallel=False)

    emit.nest(lead_shape, per_lead)
    vals[v] = out


@lowers("tg.max_pool2d_select")
def lower_max_pool2d_select(lowerer, emit, op, vals):
    x, u = op.operands
    v = op.results[0]
    size, stride = _pool_attrs(op)
    xb, ub = lowerer.buf(emit, x, vals), lowerer.buf(emit, u, vals)
    out = lowerer.result_buf(v)
    compare_dtype = I32 if x.type.dtype.is_bool else x.type.dtype

    def body(e, idx):
        lead, ohw = idx[:-2], idx[-2:]
        bh, bw = _window_argmax(e, xb, lead, ohw[0], ohw[1], size, stride, compare_dtype)
        e.store(e.load(ub, lead + [bh, bw]), out, idx)

    emit.nest(v.type.shape, body)
    vals[v] = out


def _cast_copy(lowerer, emit, buf, dtype):
    t = buf.type.with_dtype(dtype)
    out = lowerer.alloc(t)
    emit.nest(t.shape, lambda e, idx: e.store(e.cast(e.load(buf, idx), dtype), out, idx))
    return out
