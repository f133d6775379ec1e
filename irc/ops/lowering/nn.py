"""Lowering of the network ops: softmax, log_softmax, cross-entropies,
conv1d/conv2d (im2col + one gemm per image) and their gradients, max_pool2d
and its gradients. Imports only irc.ir and irc.ops.
"""

from __future__ import annotations

import numpy as np

from irc.ir.dims import dim_add, dim_floordiv, dim_mul, dim_sub
from irc.ir.types import I32, I64, TensorType
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


@lowers("tg.conv1d", "tg.conv2d")
def lower_conv(lowerer, emit, op, vals):
    x, w = op.operands
    v = op.results[0]
    nd = 2 if op.name == "tg.conv2d" else 1
    rt = v.type.dtype
    stride = op.attrs.get("stride", 1)
    if nd == 1:
        strides = (stride[0] if isinstance(stride, tuple) else stride,)
    else:
        strides = int_pair(stride, "stride")
    padding = op.attrs.get("padding", "valid")
    if isinstance(padding, (int, np.integer)) and not isinstance(padding, bool):
        padding = (int(padding),) * nd
    flip = bool(op.attrs.get("flip", False))
    xb, wb = lowerer.buf(emit, x, vals), lowerer.buf(emit, w, vals)
    if x.type.dtype != rt:
        xb = _cast_copy(lowerer, emit, xb, rt)
    if w.type.dtype != rt:
        wb = _cast_copy(lowerer, emit, wb, rt)
    Nn, C = x.type.shape[:2]
    F = w.type.shape[0]
    ins = list(x.type.shape[2:])
    ks = list(w.type.shape[2:])
    outs = list(v.type.shape[2:])
    P = product(outs)
    CK = product([C] + ks)
    pads = _conv_pads(emit, padding, nd, ins, ks, strides)
    cols = lowerer.alloc(TensorType(rt, (Nn, P, CK)))
    colsv = emit.val("mem.view", [cols], TensorType(rt, tuple([Nn] + outs + [C] + ks)))
    zero = emit.const(0, rt)

    def im2col(e, idx):
        n = idx[0]
        o = idx[1 : 1 + nd]
        c = idx[1 + nd]
        kk = idx[2 + nd :]
        src = [n, c]
        valid = None
        for i in range(nd):
            ki = kk[i]
            if flip:
                ki = e.scalar("sub", e.dim(dim_sub(ks[i], 1)), ki)
            pos = e.scalar("sub", e.add_i(e.mul_i(o[i], e.const(strides[i], I64)), ki), pads[i])
            ok = e.scalar(
                "and",
                e.scalar("ge", pos, e.dim(0), t=BOOL_T),
                e.scalar("lt", pos, e.dim(ins[i]), t=BOOL_T),
            )
            valid = ok if valid is None else e.scalar("and", valid, ok)
            clamped = e.scalar(
                "minimum", e.scalar("maximum", pos, e.dim(0)), e.dim(dim_sub(ins[i], 1))
            )
            src.append(clamped)
        val = e.load(xb, src)
        e.store(e.scalar("select", valid, val, zero, t=zero.type), colsv, idx)

    emit.nest([Nn] + outs + [C] + ks, im2col)
    d = emit.dim

    def per_image(e, idx):
        n = idx[0]
        ob = e.mul_i(n, e.dim(dim_mul(P, CK)))
        oc = e.mul_i(n, e.dim(dim_mul(F, P)))
        e.op(
            "mem.gemm",
            [wb, cols, out, d(F), d(P), d(CK), d(CK), d(CK), d(P), d(0), ob, oc],
            trans_a=False,
            trans_b=True,
            alpha=1.0,
            beta=0.0,
        )

    out = lowerer.result_buf(v)
    emit.nest([Nn], per_image, parallel=False)
    vals[v] = out


def _conv_setup(lowerer, emit, op, x_shape, k_shape, nd=2):
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
    return strides, pads, flip


def _im2col_index(e, o, kk, strides, pads, ks, ins, flip, nd):
    """(input positions clamped into range, in-range flag) of taps kk at outputs o."""
    src, valid = [], None
    for i in range(nd):
        ki = kk[i]
        if flip:
            ki = e.scalar("sub", e.dim(dim_sub(ks[i], 1)), ki)
        pos = e.scalar("sub", e.add_i(e.mul_i(o[i], e.const(strides[i], I64)), ki), pads[i])
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


def _im2col(lowerer, emit, xb, rt, Nn, C, ins, ks, outs, strides, pads, flip, nd):
    """cols [N, prod(outs), C*prod(ks)] with zero padding."""
    P, CK = product(outs), product([C] + ks)
    cols = lowerer.alloc(TensorType(rt, (Nn, P, CK)))
    colsv = emit.val("mem.view", [cols], TensorType(rt, tuple([Nn] + outs + [C] + ks)))
    zero = emit.const(0, rt)

    def body(e, idx):
        n, o, c, kk = idx[0], idx[1 : 1 + nd], idx[1 + nd], idx[2 + nd :]
        src, valid = _im2col_index(e, o, kk, strides, pads, ks, ins, flip, nd)
        val = e.load(xb, [n, c] + src)
        e.store(e.scalar("select", valid, val, zero, t=zero.type), colsv, idx)

    emit.nest([Nn] + outs + [C] + ks, body)
    return cols, P, CK


def _as_dtype(lowerer, emit, x, vals, rt):
    b = lowerer.buf(emit, x, vals)
    return b if x.type.dtype == rt else _cast_copy(lowerer, emit, b, rt)


@lowers("tg.conv2d_input_grad")
def lower_conv_input_grad(lowerer, emit, op, vals):
    """dx = col2im(g^T @ w): one gemm per image, then the taps added back."""
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
    strides, pads, flip = _conv_setup(lowerer, emit, op, ins, ks, nd)
    P, CK = product(outs), product([C] + ks)
    cols = lowerer.alloc(TensorType(rt, (Nn, P, CK)))
    d = emit.dim

    def per_image(e, idx):
        n = idx[0]
        oa = e.mul_i(n, e.dim(dim_mul(F, P)))
        oc = e.mul_i(n, e.dim(dim_mul(P, CK)))
        # cols_n [P, CK] = g_n^T [P, F] @ w [F, CK]
        e.op(
            "mem.gemm",
            [gb, wb, cols, d(P), d(CK), d(F), d(P), d(CK), d(CK), oa, d(0), oc],
            trans_a=True,
            trans_b=False,
            alpha=1.0,
            beta=0.0,
        )

    emit.nest([Nn], per_image, parallel=False)
    out = lowerer.result_buf(v)
    zero = emit.const(0, rt)
    colsv = emit.val("mem.view", [cols], TensorType(rt, tuple([Nn] + outs + [C] + ks)))

    def per_n(e, nidx):
        n = nidx[0]
        e.nest(v.type.shape[1:], lambda e2, idx: e2.store(zero, out, [n] + idx), parallel=False)

        def tap(e2, idx):
            o, c, kk = idx[:nd], idx[nd], idx[nd + 1 :]
            src, valid = _im2col_index(e2, o, kk, strides, pads, ks, ins, flip, nd)
            val = e2.load(colsv, [n] + idx)
            cur = e2.load(out, [n, c] + src)
            e2.store(
                e2.scalar("add", cur, e2.scalar("select", valid, val, zero, t=zero.type)),
                out,
                [n, c] + src,
            )

        e.nest(outs + [C] + ks, tap, parallel=False)

    emit.nest([Nn], per_n)
    vals[v] = out


@lowers("tg.conv2d_filter_grad")
def lower_conv_filter_grad(lowerer, emit, op, vals):
    """dw = sum_n g_n @ im2col(x)_n: one accumulating gemm per image."""
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
    strides, pads, flip = _conv_setup(lowerer, emit, op, ins, ks, nd)
    cols, P, CK = _im2col(lowerer, emit, xb, rt, Nn, C, ins, ks, outs, strides, pads, flip, nd)
    out = lowerer.result_buf(v)
    zero = emit.const(0, rt)
    emit.nest(v.type.shape, lambda e, idx: e.store(zero, out, idx))
    d = emit.dim

    def per_image(e, idx):
        n = idx[0]
        oa = e.mul_i(n, e.dim(dim_mul(F, P)))
        ob = e.mul_i(n, e.dim(dim_mul(P, CK)))
        # dw [F, CK] += g_n [F, P] @ cols_n [P, CK]
        e.op(
            "mem.gemm",
            [gb, cols, out, d(F), d(CK), d(P), d(P), d(CK), d(CK), oa, ob, d(0)],
            trans_a=False,
            trans_b=False,
            alpha=1.0,
            beta=1.0,
        )

    emit.nest([Nn], per_image, parallel=False)
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
            best = e.scalar("select", better, xv, best, t=xv.type)
            bh = e.scalar("select", better, hi, bh, t=IDX)
            bw = e.scalar("select", better, wi, bw, t=IDX)
    return bh, bw


@lowers("tg.max_pool2d_grad")
def lower_max_pool2d_grad(lowerer, emit, op, vals):
    x, g = op.operands
    v = op.results[0]
    size, stride = _pool_attrs(op)
    xb, gb = lowerer.buf(emit, x, vals), lowerer.buf(emit, g, vals)
    out = lowerer.result_buf(v)
    rt = v.type.dtype
    compare_dtype = I32 if x.type.dtype.is_bool else x.type.dtype
    zero = emit.const(0, rt)
    lead_shape = list(x.type.shape[:-2])

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
