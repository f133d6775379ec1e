"""Neural-network ops: softmax, log_softmax, categorical_crossentropy,
crossentropy_logits, conv1d, conv2d, max_pool2d.

Conventions: NCHW inputs and OIHW filters; convolutions are cross-correlations
(PyTorch) unless `flip = true` (true convolution, Theano's conv2d). Output sizes
are floor((H + pad_total - K) / stride) + 1, computed with irc.ir.dims so that
named dims give dim expressions. The NumPy references use im2col through
sliding_window_view and tensordot, never Python loops over pixels.
Imports only irc.ir and irc.ops.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from irc.ir.dims import dim_add, dim_floordiv, dim_mul, dim_sub
from irc.ir.types import TensorType, TypeError_, promote_dtypes
from irc.ops.common import int_pair, named_infer, norm_axis
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


SOFTMAX = defop(
    OpDef(
        "tg.softmax",
        infer=named_infer("softmax", _softmax_infer),
        numpy=_softmax,
        arity=1,
        defaults={"axis": -1},
        domain=(-2.0, 2.0),
        doc="softmax(x) {axis = -1}: exp(x - max) / sum(exp(x - max)), stable for huge logits",
    )
)
LOG_SOFTMAX = defop(
    OpDef(
        "tg.log_softmax",
        infer=named_infer("log_softmax", _softmax_infer),
        numpy=_log_softmax,
        arity=1,
        defaults={"axis": -1},
        domain=(-2.0, 2.0),
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


CATEGORICAL_CROSSENTROPY = defop(
    OpDef(
        "tg.categorical_crossentropy",
        infer=named_infer("categorical_crossentropy", _crossentropy_infer),
        numpy=_categorical_crossentropy,
        arity=2,
        domain=(0.1, 1.0),
        doc="categorical_crossentropy(p, y): p [..., K] probabilities; y integer labels "
        "[...] (-log p[y]) or target distributions [..., K] (-sum(y * log p, -1))",
    )
)
CROSSENTROPY_LOGITS = defop(
    OpDef(
        "tg.crossentropy_logits",
        infer=named_infer("crossentropy_logits", _crossentropy_infer),
        numpy=_crossentropy_logits,
        arity=2,
        domain=(-2.0, 2.0),
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


CONV1D = defop(
    OpDef(
        "tg.conv1d",
        infer=_conv_infer(1, "conv1d"),
        numpy=_conv1d,
        arity=2,
        defaults={"stride": 1, "padding": "valid", "flip": False},
        traits=frozenset({PURE}),
        domain=(-1.0, 1.0),
        doc='conv1d(x [N, C, L], w [F, C, K]) {stride = 1, padding = "valid"|"same"|"full"|int, '
        "flip = false} -> [N, F, Lout]",
    )
)
CONV2D = defop(
    OpDef(
        "tg.conv2d",
        infer=_conv_infer(2, "conv2d"),
        numpy=_conv2d,
        arity=2,
        defaults={"stride": (1, 1), "padding": "valid", "flip": False},
        traits=frozenset({PURE}),
        domain=(-1.0, 1.0),
        doc="conv2d(x [N, C, H, W], w [F, C, KH, KW]) {stride = (1, 1), "
        'padding = "valid"|"same"|"full"|(ph, pw), flip = false} -> [N, F, Hout, Wout]; '
        "cross-correlation, flip = true convolves",
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


MAX_POOL2D = defop(
    OpDef(
        "tg.max_pool2d",
        infer=named_infer("max_pool2d", _max_pool2d_infer),
        numpy=_max_pool2d,
        arity=1,
        defaults={"stride": None},
        traits=frozenset({PURE}),
        domain=(-2.0, 2.0),
        doc="max_pool2d(x [..., H, W]) {size = (sh, sw), stride = size}: max over windows "
        "of the last two axes; partial windows are dropped (floor mode)",
    )
)
