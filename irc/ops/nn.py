"""Neural-network ops: softmax, log_softmax, categorical_crossentropy,
crossentropy_logits, conv1d, conv2d, max_pool2d, their gradient rules, and the
helper ops of those rules: tg.conv2d_input_grad and tg.conv2d_filter_grad (the
transposes of conv2d in each operand; conv1d's gradients use them on a height
of 1), tg.max_pool2d_grad and tg.max_pool2d_select (the cotangent routed to,
and read back from, the first maximum of each window). The helper ops are
linear in the cotangent and their vjps are each other and conv2d, so second
derivatives through these layers are tg ops too.

Conventions: NCHW inputs and OIHW filters; convolutions are cross-correlations
(PyTorch) unless `flip = true` (true convolution, Theano's conv2d). Output sizes
are floor((H + pad_total - K) / stride) + 1, computed with irc.ir.dims so that
named dims give dim expressions. The NumPy references use im2col through
sliding_window_view and tensordot, never Python loops over pixels (the
gradient references loop over the kernel taps only).

Ties in max_pool2d: the whole cotangent of a window goes to its first maximum
in row-major order (PyTorch's and cuDNN's rule): deterministic, and the
gradient still sums to the cotangent.
Imports only irc.ir and irc.ops.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from irc.ir.dims import dim_add, dim_floordiv, dim_mul, dim_sub
from irc.ir.types import TensorType, TypeError_, promote_dtypes
from irc.ops.common import as_dims, fmt_shape, int_pair, named_infer, norm_axis
from irc.ops.cost import (
    conv_filter_grad_flops,
    conv_flops,
    conv_input_grad_flops,
    no_flops,
    per_input_element,
    per_input_element_times,
)
from irc.ops.registry import PURE, OpDef, defop

# -- softmax ---------------------------------------------------------------------------


def _softmax_infer(types, attrs):
    (x,) = types
    if not x.dtype.is_float:
        raise TypeError_(f"needs a float tensor, got {x}")
    if x.rank == 0:
        raise TypeError_(f"needs a tensor of rank 1 or more, got {x}")
    norm_axis(attrs.get("axis", -1), x.rank)
    return [x]


def _softmax(x, axis=-1):
    x = np.asarray(x)
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def _log_softmax(x, axis=-1):
    x = np.asarray(x)
    z = x - np.max(x, axis=axis, keepdims=True)
    return z - np.log(np.sum(np.exp(z), axis=axis, keepdims=True))


def _vjp_softmax(b, op, g):
    # s * (g - sum(g * s)) along the axis, from the forward result s.
    s, axis = op.results[0], op.attrs.get("axis", -1)
    dot = b.sum(b.mul(g, s), axis=(axis,), keepdims=True)
    return [b.mul(s, b.sub(g, dot))]


def _vjp_log_softmax(b, op, g):
    # g - softmax(x) * sum(g), with softmax(x) = exp(log_softmax(x)).
    out, axis = op.results[0], op.attrs.get("axis", -1)
    return [b.sub(g, b.mul(b.exp(out), b.sum(g, axis=(axis,), keepdims=True)))]


SOFTMAX = defop(
    OpDef(
        "tg.softmax",
        cost=per_input_element_times(5),
        infer=named_infer("softmax", _softmax_infer),
        numpy=_softmax,
        arity=1,
        defaults={"axis": -1},
        domain=(-2.0, 2.0),
        vjp=_vjp_softmax,
        doc="softmax(x) {axis = -1}: exp(x - max) / sum(exp(x - max)), stable for huge logits",
    )
)
LOG_SOFTMAX = defop(
    OpDef(
        "tg.log_softmax",
        cost=per_input_element_times(5),
        infer=named_infer("log_softmax", _softmax_infer),
        numpy=_log_softmax,
        arity=1,
        defaults={"axis": -1},
        domain=(-2.0, 2.0),
        vjp=_vjp_log_softmax,
        doc="log_softmax(x) {axis = -1}: (x - max) - log(sum(exp(x - max)))",
    )
)


# -- cross-entropy -----------------------------------------------------------------------


def _crossentropy_infer(types, attrs):
    p, y = types
    if not p.dtype.is_float:
        raise TypeError_(f"needs float predictions, got {p}")
    if p.rank == 0:
        raise TypeError_(f"predictions need a class axis, got {p}")
    if y.dtype.is_int:
        if y.shape != p.shape[:-1]:
            shape = "[" + ", ".join(map(str, p.shape[:-1])) + "]"
            raise TypeError_(
                f"integer labels {y} do not match predictions {p} "
                f"(expected labels of shape {shape})"
            )
        return [TensorType(p.dtype, p.shape[:-1])]
    if y.dtype.is_float:
        if y.shape != p.shape:
            raise TypeError_(f"target distributions {y} do not match predictions {p}")
        return [TensorType(promote_dtypes(p.dtype, y.dtype), p.shape[:-1])]
    raise TypeError_(f"targets must be integer labels or float distributions, got {y}")


def _nll(logp, y):
    """-logp[..., y] for integer labels, -sum(y * logp, -1) for distributions."""
    y = np.asarray(y)
    if y.dtype.kind in "iu":
        idx = y.astype(np.intp)[..., None]
        return np.asarray(-np.take_along_axis(logp, idx, axis=-1)[..., 0])
    return np.asarray(-np.sum(y * logp, axis=-1))


def _categorical_crossentropy(p, y):
    p = np.asarray(p)
    y = np.asarray(y)
    if y.dtype.kind in "iu":  # pick before the log: one log per row
        picked = np.take_along_axis(p, y.astype(np.intp)[..., None], axis=-1)[..., 0]
        return np.asarray(-np.log(picked))
    return _nll(np.log(p), y)


def _crossentropy_logits(x, y):
    return _nll(_log_softmax(x, axis=-1), y)


def _row(b, g):
    """The per-row cotangent g [...] as [..., 1], against the class axis."""
    return b.index(g, items=(("ellipsis",), ("none",)))


def _vjp_categorical_crossentropy(b, op, g):
    """Integer labels: -g / p at the label, 0 elsewhere (a where, not a product
    with one_hot, so p == 0 off the label gives no nan); no gradient to labels.
    Distributions: dp = -g * y / p, dy = -g * log(p)."""
    p, y = op.operands
    gr = _row(b, g)
    if y.type.dtype.is_int:
        at_label = b.one_hot(y, n=p.type.shape[-1], dtype="bool")
        return [b.where(at_label, b.neg(b.div(gr, p)), b.like(0.0, g)), None]
    gp = b.neg(b.div(b.mul(gr, y), p)) if p.type.dtype.is_float else None
    gy = b.neg(b.mul(gr, b.log(p)))
    return [gp, gy]


def _vjp_crossentropy_logits(b, op, g):
    """Integer labels: g * (softmax(x) - one_hot(y)), nothing to the labels.
    Distributions: dx = g * (softmax(x) * sum(y) - y), dy = -g * log_softmax(x)."""
    x, y = op.operands
    gr = _row(b, g)
    s = b.softmax(x, axis=-1)
    if y.type.dtype.is_int:
        onehot = b.one_hot(y, n=x.type.shape[-1], dtype=x.type.dtype.name)
        return [b.mul(gr, b.sub(s, onehot)), None]
    total = b.sum(y, axis=(-1,), keepdims=True)
    gx = b.mul(gr, b.sub(b.mul(s, total), y))
    gy = b.neg(b.mul(gr, b.log_softmax(x, axis=-1)))
    return [gx, gy]


CATEGORICAL_CROSSENTROPY = defop(
    OpDef(
        "tg.categorical_crossentropy",
        cost=per_input_element_times(2),
        infer=named_infer("categorical_crossentropy", _crossentropy_infer),
        numpy=_categorical_crossentropy,
        arity=2,
        domain=(0.1, 1.0),
        vjp=_vjp_categorical_crossentropy,
        doc="categorical_crossentropy(p, y): p [..., K] probabilities; y integer labels "
        "[...] (-log p[y]) or target distributions [..., K] (-sum(y * log p, -1))",
    )
)
CROSSENTROPY_LOGITS = defop(
    OpDef(
        "tg.crossentropy_logits",
        cost=per_input_element_times(5),
        infer=named_infer("crossentropy_logits", _crossentropy_infer),
        numpy=_crossentropy_logits,
        arity=2,
        domain=(-2.0, 2.0),
        vjp=_vjp_crossentropy_logits,
        doc="crossentropy_logits(x, y) = categorical_crossentropy(softmax(x), y), computed "
        "stably from the logits through log_softmax",
    )
)


# -- convolution ---------------------------------------------------------------------------

PADDINGS = ("valid", "same", "full")


def _padding(padding, nd):
    """A padding attribute as a mode string or an nd-tuple of ints."""
    if isinstance(padding, str):
        if padding not in PADDINGS:
            raise TypeError_(
                f'padding must be "valid", "same", "full" or integers, got "{padding}"'
            )
        return padding
    if nd == 1 and isinstance(padding, (int, np.integer)) and not isinstance(padding, bool):
        padding = (padding,)
    if nd == 2:
        padding = int_pair(padding, "padding")
    if not (
        isinstance(padding, (tuple, list))
        and len(padding) == nd
        and all(isinstance(p, (int, np.integer)) and not isinstance(p, bool) for p in padding)
        and all(p >= 0 for p in padding)
    ):
        raise TypeError_(f"bad padding {padding!r}")
    return tuple(int(p) for p in padding)


def _strides(stride, nd):
    if nd == 1 and isinstance(stride, (tuple, list)) and len(stride) == 1:
        stride = stride[0]
    if nd == 1:
        if isinstance(stride, bool) or not isinstance(stride, (int, np.integer)):
            raise TypeError_(f"stride must be a positive integer, got {stride!r}")
        s = (int(stride),)
    else:
        s = int_pair(stride, "stride")
    if any(v <= 0 for v in s):
        raise TypeError_(f"stride must be positive, got {stride!r}")
    return s


def conv_out_dim(h, k, s, mode_or_pad):
    """Output extent of one spatial axis: h input, k kernel, s stride."""
    if mode_or_pad == "same":
        return dim_floordiv(dim_add(h, s - 1), s)
    if mode_or_pad == "valid":
        total = 0
    elif mode_or_pad == "full":
        total = dim_mul(2, dim_sub(k, 1))
    else:
        total = 2 * mode_or_pad
    # floor((h + total - k) / s) + 1 == floor((h + total - k + s) / s)
    return dim_floordiv(dim_add(dim_sub(dim_add(h, total), k), s), s)


def _conv_infer(nd, name):
    def infer(types, attrs):
        x, w = types
        rank = nd + 2
        if x.rank != rank:
            raise TypeError_(f"the input must have rank {rank} (N, C, spatial...), got {x}")
        if w.rank != rank:
            raise TypeError_(f"the filters must have rank {rank} (F, C, kernel...), got {w}")
        if not (x.dtype.is_float and w.dtype.is_float):
            raise TypeError_(f"needs float operands, got {x} and {w}")
        if x.shape[1] != w.shape[1]:
            raise TypeError_(
                f"the input has {x.shape[1]} channels but the filters expect {w.shape[1]}: "
                f"{x} and {w}"
            )
        strides = _strides(attrs.get("stride", 1), nd)
        padding = _padding(attrs.get("padding", "valid"), nd)
        out = []
        for i in range(nd):
            h, k = x.shape[2 + i], w.shape[2 + i]
            p = padding if isinstance(padding, str) else padding[i]
            o = conv_out_dim(h, k, strides[i], p)
            if isinstance(o, int) and o <= 0:
                raise TypeError_(f"the filters {w} are larger than the (padded) input {x}")
            out.append(o)
        dt = promote_dtypes(x.dtype, w.dtype)
        return [TensorType(dt, (x.shape[0], w.shape[0]) + tuple(out))]

    return named_infer(name, infer)


def conv_pads(shape, kshape, strides, padding):
    """Concrete (before, after) padding per spatial axis."""
    pads = []
    for i, (h, k, s) in enumerate(zip(shape, kshape, strides)):
        if padding == "valid":
            pads.append((0, 0))
        elif padding == "full":
            pads.append((k - 1, k - 1))
        elif padding == "same":
            # TensorFlow / PyTorch "same": ceil(h / s) outputs, the odd pixel after.
            out = -(-h // s)
            total = max((out - 1) * s + k - h, 0)
            pads.append((total // 2, total - total // 2))
        else:
            pads.append((padding[i], padding[i]))
    return pads


def conv_nd(x, w, strides, padding, flip=False):
    """N-d cross-correlation of x [N, C, *S] with w [F, C, *K] (im2col + tensordot)."""
    x = np.asarray(x)
    w = np.asarray(w)
    nd = len(strides)
    sp = tuple(range(2, 2 + nd))
    if flip:
        w = w[(Ellipsis,) + (slice(None, None, -1),) * nd]
    pads = conv_pads(x.shape[2:], w.shape[2:], strides, padding)
    if any(p for pp in pads for p in pp):
        x = np.pad(x, [(0, 0), (0, 0)] + pads)
    win = sliding_window_view(x, w.shape[2:], axis=sp)  # [N, C, *O, *K]
    win = win[(slice(None), slice(None)) + tuple(slice(None, None, s) for s in strides)]
    out = np.tensordot(win, w, axes=([1] + [2 + nd + i for i in range(nd)], [1] + list(sp)))
    dt = np.result_type(x.dtype, w.dtype)
    return np.ascontiguousarray(np.moveaxis(out, -1, 1), dtype=dt)  # [N, F, *O]


def _conv1d(x, w, stride=1, padding="valid", flip=False):
    return conv_nd(x, w, _strides(stride, 1), _padding(padding, 1), flip)


def _conv2d(x, w, stride=(1, 1), padding="valid", flip=False):
    return conv_nd(x, w, _strides(stride, 2), _padding(padding, 2), flip)


def _conv_attrs(op):
    return {k: op.attrs[k] for k in ("stride", "padding", "flip")}


def _vjp_conv2d(b, op, g):
    x, w = op.operands
    attrs = _conv_attrs(op)
    gx = b.op("tg.conv2d_input_grad", g, w, shape=x.type.shape[2:], **attrs)
    gw = b.op("tg.conv2d_filter_grad", x, g, shape=w.type.shape[2:], **attrs)
    return [gx, gw]


def _vjp_conv1d(b, op, g):
    """conv1d is conv2d on a height of 1 (kernel height 1, stride 1, no padding
    along it: each padding mode gives 0 there), so its gradients are the
    conv2d gradient ops on [..., 1, L] views."""
    x, w = op.operands
    padding = _padding(op.attrs["padding"], 1)
    attrs = {
        "stride": (1, _strides(op.attrs["stride"], 1)[0]),
        "padding": padding if isinstance(padding, str) else (0, padding[0]),
        "flip": op.attrs["flip"],
    }
    every = ("slice", None, None, None)
    up = (every, every, ("none",), every)
    down = (every, every, ("int", 0), every)
    x2, w2, g2 = (b.index(v, items=up) for v in (x, w, g))
    gx = b.op("tg.conv2d_input_grad", g2, w2, shape=(1, x.type.shape[2]), **attrs)
    gw = b.op("tg.conv2d_filter_grad", x2, g2, shape=(1, w.type.shape[2]), **attrs)
    return [b.index(gx, items=down), b.index(gw, items=down)]


CONV1D = defop(
    OpDef(
        "tg.conv1d",
        cost=conv_flops,
        infer=_conv_infer(1, "conv1d"),
        numpy=_conv1d,
        arity=2,
        defaults={"stride": 1, "padding": "valid", "flip": False},
        traits=frozenset({PURE}),
        domain=(-1.0, 1.0),
        vjp=_vjp_conv1d,
        doc='conv1d(x [N, C, L], w [F, C, K]) {stride = 1, padding = "valid"|"same"|"full"|int, '
        "flip = false} -> [N, F, Lout]",
    )
)
CONV2D = defop(
    OpDef(
        "tg.conv2d",
        cost=conv_flops,
        infer=_conv_infer(2, "conv2d"),
        numpy=_conv2d,
        arity=2,
        defaults={"stride": (1, 1), "padding": "valid", "flip": False},
        traits=frozenset({PURE}),
        domain=(-1.0, 1.0),
        vjp=_vjp_conv2d,
        doc="conv2d(x [N, C, H, W], w [F, C, KH, KW]) {stride = (1, 1), "
        'padding = "valid"|"same"|"full"|(ph, pw), flip = false} -> [N, F, Hout, Wout]; '
        "cross-correlation, flip = true convolves",
    )
)


def _spatial(attrs, nd):
    shape = as_dims(attrs.get("shape", ()), "shape")
    if len(shape) != nd:
        raise TypeError_(f"shape must have {nd} dims, got {fmt_shape(shape)}")
    return shape


def _check_conv_out(g, in_spatial, k_spatial, attrs, nd):
    """g's spatial dims must be the conv output dims of the input and kernel."""
    strides = _strides(attrs.get("stride", 1), nd)
    padding = _padding(attrs.get("padding", "valid"), nd)
    for i in range(nd):
        p = padding if isinstance(padding, str) else padding[i]
        o = conv_out_dim(in_spatial[i], k_spatial[i], strides[i], p)
        if o != g.shape[2 + i]:
            raise TypeError_(
                f"the cotangent {g} does not have the output size {o} on spatial axis {i}"
            )


def _conv_input_grad_infer(types, attrs):
    g, w = types
    if g.rank != 4 or w.rank != 4:
        raise TypeError_(f"needs a rank-4 cotangent and filters, got {g} and {w}")
    if not (g.dtype.is_float and w.dtype.is_float):
        raise TypeError_(f"needs float operands, got {g} and {w}")
    if g.shape[1] != w.shape[0]:
        raise TypeError_(f"the cotangent has {g.shape[1]} channels, the filters {w.shape[0]}")
    shape = _spatial(attrs, 2)
    _check_conv_out(g, shape, w.shape[2:], attrs, 2)
    return [TensorType(promote_dtypes(g.dtype, w.dtype), (g.shape[0], w.shape[1]) + shape)]


def _conv_filter_grad_infer(types, attrs):
    x, g = types
    if g.rank != 4 or x.rank != 4:
        raise TypeError_(f"needs a rank-4 input and cotangent, got {x} and {g}")
    if not (g.dtype.is_float and x.dtype.is_float):
        raise TypeError_(f"needs float operands, got {x} and {g}")
    if g.shape[0] != x.shape[0]:
        raise TypeError_(f"the input has batch {x.shape[0]}, the cotangent {g.shape[0]}")
    shape = _spatial(attrs, 2)
    _check_conv_out(g, x.shape[2:], shape, attrs, 2)
    return [TensorType(promote_dtypes(x.dtype, g.dtype), (g.shape[1], x.shape[1]) + shape)]


def conv_input_grad_nd(g, w, in_shape, strides, padding, flip=False):
    """The transpose of conv_nd in x: g [N, F, *O], w [F, C, *K] -> [N, C, *in_shape].
    Each kernel tap k adds g . w[:, :, k] at the input positions o * s + k it read."""
    g = np.asarray(g)
    w = np.asarray(w)
    nd = len(strides)
    if flip:
        w = w[(Ellipsis,) + (slice(None, None, -1),) * nd]
    pads = conv_pads(in_shape, w.shape[2:], strides, padding)
    padded = tuple(n + lo + hi for n, (lo, hi) in zip(in_shape, pads))
    out = np.zeros((g.shape[0], w.shape[1]) + padded, dtype=np.result_type(g.dtype, w.dtype))
    osz = g.shape[2:]
    everything = (slice(None), slice(None))
    for k in np.ndindex(*w.shape[2:]):
        part = np.tensordot(g, w[everything + k], axes=([1], [0]))  # [N, *O, C]
        at = tuple(slice(k[i], k[i] + strides[i] * (osz[i] - 1) + 1, strides[i]) for i in range(nd))
        out[everything + at] += np.moveaxis(part, -1, 1)
    crop = tuple(slice(lo, lo + n) for n, (lo, _) in zip(in_shape, pads))
    return np.ascontiguousarray(out[everything + crop])


def conv_filter_grad_nd(x, g, kshape, strides, padding, flip=False):
    """The transpose of conv_nd in w: x [N, C, *S], g [N, F, *O] -> [F, C, *kshape]."""
    x = np.asarray(x)
    g = np.asarray(g)
    nd = len(strides)
    sp = tuple(range(2, 2 + nd))
    pads = conv_pads(x.shape[2:], kshape, strides, padding)
    if any(p for pp in pads for p in pp):
        x = np.pad(x, [(0, 0), (0, 0)] + pads)
    win = sliding_window_view(x, tuple(kshape), axis=sp)  # [N, C, *P, *K]
    steps = tuple(slice(None, o * s, s) for o, s in zip(g.shape[2:], strides))
    win = win[(slice(None), slice(None)) + steps]  # [N, C, *O, *K]
    out = np.tensordot(g, win, axes=([0] + list(sp), [0] + list(sp)))  # [F, C, *K]
    if flip:
        out = out[(Ellipsis,) + (slice(None, None, -1),) * nd]
    return np.ascontiguousarray(out, dtype=np.result_type(x.dtype, g.dtype))


def _conv2d_input_grad(g, w, shape, stride=(1, 1), padding="valid", flip=False):
    return conv_input_grad_nd(g, w, tuple(shape), _strides(stride, 2), _padding(padding, 2), flip)


def _conv2d_filter_grad(x, g, shape, stride=(1, 1), padding="valid", flip=False):
    return conv_filter_grad_nd(x, g, tuple(shape), _strides(stride, 2), _padding(padding, 2), flip)


def _vjp_conv2d_input_grad(b, op, g):
    # <input_grad(c, w), u> = <c, conv2d(u, w)>: linear in c and in w.
    c, w = op.operands
    attrs = _conv_attrs(op)
    gc = b.conv2d(g, w, **attrs)
    gw = b.op("tg.conv2d_filter_grad", g, c, shape=w.type.shape[2:], **attrs)
    return [gc, gw]


def _vjp_conv2d_filter_grad(b, op, g):
    # <filter_grad(x, c), u> = <c, conv2d(x, u)>.
    x, c = op.operands
    attrs = _conv_attrs(op)
    gx = b.op("tg.conv2d_input_grad", c, g, shape=x.type.shape[2:], **attrs)
    gc = b.conv2d(x, g, **attrs)
    return [gx, gc]


_CONV_DEFAULTS = {"stride": (1, 1), "padding": "valid", "flip": False}

CONV2D_INPUT_GRAD = defop(
    OpDef(
        "tg.conv2d_input_grad",
        cost=conv_input_grad_flops,
        infer=named_infer("conv2d_input_grad", _conv_input_grad_infer),
        numpy=_conv2d_input_grad,
        arity=2,
        defaults=dict(_CONV_DEFAULTS),
        dim_attrs=("shape",),
        domain=(-1.0, 1.0),
        vjp=_vjp_conv2d_input_grad,
        doc="conv2d_input_grad(g [N, F, Ho, Wo], w [F, C, KH, KW]) {shape = (H, W), stride, "
        "padding, flip} -> [N, C, H, W]: the gradient of conv2d in its input (a transposed "
        "convolution)",
    )
)
CONV2D_FILTER_GRAD = defop(
    OpDef(
        "tg.conv2d_filter_grad",
        cost=conv_filter_grad_flops,
        infer=named_infer("conv2d_filter_grad", _conv_filter_grad_infer),
        numpy=_conv2d_filter_grad,
        arity=2,
        defaults=dict(_CONV_DEFAULTS),
        dim_attrs=("shape",),
        domain=(-1.0, 1.0),
        vjp=_vjp_conv2d_filter_grad,
        doc="conv2d_filter_grad(x [N, C, H, W], g [N, F, Ho, Wo]) {shape = (KH, KW), stride, "
        "padding, flip} -> [F, C, KH, KW]: the gradient of conv2d in its filters",
    )
)


# -- pooling ------------------------------------------------------------------------------


def _pool_params(attrs):
    size = int_pair(attrs.get("size"), "size")
    stride = attrs.get("stride")
    stride = size if stride is None else int_pair(stride, "stride")
    if min(size) <= 0 or min(stride) <= 0:
        raise TypeError_(f"pool size and stride must be positive, got {size} and {stride}")
    return size, stride


def _max_pool2d_infer(types, attrs):
    (x,) = types
    if x.rank < 2:
        raise TypeError_(f"needs a tensor of rank 2 or more, got {x}")
    if x.dtype.is_bool:
        raise TypeError_(f"not defined for bool tensors: {x}")
    size, stride = _pool_params(attrs)
    out = []
    for h, k, s in zip(x.shape[-2:], size, stride):
        o = conv_out_dim(h, k, s, "valid")
        if isinstance(o, int) and o <= 0:
            raise TypeError_(f"the pool window {size} is larger than the input {x}")
        out.append(o)
    return [x.with_shape(x.shape[:-2] + tuple(out))]


def _max_pool2d(x, size, stride=None):
    x = np.asarray(x)
    size, stride = _pool_params({"size": size, "stride": stride})
    (sh, sw), (th, tw) = size, stride
    H, W = x.shape[-2:]
    oh, ow = (H - sh) // th + 1, (W - sw) // tw + 1
    if oh <= 0 or ow <= 0:
        raise ValueError(f"pool window {size} is larger than the input of shape {x.shape}")
    if size == stride:  # non-overlapping windows: a reshape, no window view
        v = x[..., : oh * sh, : ow * sw].reshape(x.shape[:-2] + (oh, sh, ow, sw))
        return v.max(axis=(-3, -1))
    win = sliding_window_view(x, size, axis=(-2, -1))[..., ::th, ::tw, :, :]
    return win.max(axis=(-2, -1))


def _pool_argmax(x, size, stride):
    """Flat index (into the last two axes, row-major) of the first maximum of
    each pooling window: [..., OH, OW]."""
    (sh, sw), (th, tw) = size, stride
    H, W = x.shape[-2:]
    oh, ow = (H - sh) // th + 1, (W - sw) // tw + 1
    win = sliding_window_view(x, size, axis=(-2, -1))[..., ::th, ::tw, :, :][..., :oh, :ow, :, :]
    first = win.reshape(win.shape[:-2] + (sh * sw,)).argmax(axis=-1)  # the first one on ties
    rows = np.arange(oh)[:, None] * th + first // sw
    cols = np.arange(ow)[None, :] * tw + first % sw
    return rows * W + cols


def _max_pool2d_grad(x, g, size, stride=None):
    x = np.asarray(x)
    g = np.asarray(g)
    size, stride = _pool_params({"size": size, "stride": stride})
    H, W = x.shape[-2:]
    batch = int(np.prod(x.shape[:-2], dtype=np.int64))
    pos = _pool_argmax(x, size, stride).reshape(batch, -1)
    pos = pos + (np.arange(batch) * (H * W))[:, None]
    # bincount adds up windows that share a maximum (overlapping windows).
    weights = g.reshape(-1).astype(np.float64)
    out = np.bincount(pos.ravel(), weights=weights, minlength=batch * H * W)
    return out.reshape(x.shape).astype(g.dtype)


def _max_pool2d_select(x, u, size, stride=None):
    x = np.asarray(x)
    u = np.asarray(u)
    size, stride = _pool_params({"size": size, "stride": stride})
    pos = _pool_argmax(x, size, stride)
    lead = x.shape[:-2]
    picked = np.take_along_axis(u.reshape(lead + (-1,)), pos.reshape(lead + (-1,)), axis=-1)
    return np.ascontiguousarray(picked.reshape(pos.shape))


def _pool_grad_infer(types, attrs):
    x, g = types
    pooled = _max_pool2d_infer([x], attrs)[0]
    if g.shape != pooled.shape:
        raise TypeError_(
            f"the cotangent {g} does not have the pooled shape {fmt_shape(pooled.shape)}"
        )
    if not g.dtype.is_float:
        raise TypeError_(f"needs a float cotangent, got {g}")
    return [g.with_shape(x.shape)]


def _pool_select_infer(types, attrs):
    x, u = types
    if u.shape != x.shape:
        raise TypeError_(f"the values {u} do not have the shape of {x}")
    if not u.dtype.is_float:
        raise TypeError_(f"needs float values, got {u}")
    pooled = _max_pool2d_infer([x], attrs)[0]
    return [u.with_shape(pooled.shape)]


def _pool_attrs(op):
    return {"size": op.attrs["size"], "stride": op.attrs.get("stride")}


def _vjp_max_pool2d(b, op, g):
    return [b.op("tg.max_pool2d_grad", op.operands[0], g, **_pool_attrs(op))]


def _vjp_max_pool2d_grad(b, op, g):
    # Linear in g; in x the routing is piecewise constant (zero derivative).
    return [None, b.op("tg.max_pool2d_select", op.operands[0], g, **_pool_attrs(op))]


def _vjp_max_pool2d_select(b, op, g):
    return [None, b.op("tg.max_pool2d_grad", op.operands[0], g, **_pool_attrs(op))]


MAX_POOL2D = defop(
    OpDef(
        "tg.max_pool2d",
        cost=per_input_element,
        infer=named_infer("max_pool2d", _max_pool2d_infer),
        numpy=_max_pool2d,
        arity=1,
        defaults={"stride": None},
        traits=frozenset({PURE}),
        domain=(-2.0, 2.0),
        vjp=_vjp_max_pool2d,
        doc="max_pool2d(x [..., H, W]) {size = (sh, sw), stride = size}: max over windows "
        "of the last two axes; partial windows are dropped (floor mode)",
    )
)
MAX_POOL2D_GRAD = defop(
    OpDef(
        "tg.max_pool2d_grad",
        cost=per_input_element,
        infer=named_infer("max_pool2d_grad", _pool_grad_infer),
        numpy=_max_pool2d_grad,
        arity=2,
        defaults={"stride": None},
        domain=(-2.0, 2.0),
        vjp=_vjp_max_pool2d_grad,
        doc="max_pool2d_grad(x [..., H, W], g [..., OH, OW]) {size, stride = size}: zeros of "
        "x's shape with each window's g added at the window's first maximum in x "
        "(the gradient of max_pool2d)",
    )
)
MAX_POOL2D_SELECT = defop(
    OpDef(
        "tg.max_pool2d_select",
        cost=no_flops,
        infer=named_infer("max_pool2d_select", _pool_select_infer),
        numpy=_max_pool2d_select,
        arity=2,
        defaults={"stride": None},
        domain=(-2.0, 2.0),
        vjp=_vjp_max_pool2d_select,
        doc="max_pool2d_select(x [..., H, W], u [..., H, W]) {size, stride = size} -> "
        "[..., OH, OW]: u at the first maximum of x in each window (the transpose of "
        "max_pool2d_grad in g)",
    )
)
