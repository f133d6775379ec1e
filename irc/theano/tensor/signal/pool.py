"""theano.tensor.signal.pool over irc.max_pool2d. Imports irc.symbolic and irc.theano."""

from __future__ import annotations

from irc import symbolic as _S
from irc.theano._compat import pair as _pair
from irc.theano._compat import unsupported as _unsupported

__all__ = ["pool_2d", "max_pool_2d_same_size"]


def pool_2d(input, ws=None, ignore_border=None, stride=None, pad=(0, 0), mode="max",
            ds=None, st=None, padding=None):  # fmt: skip
    """Max pooling over the last two axes with windows `ws` (`ds`, the older name)
    and `stride` (`st`; the window unless given). ignore_border=True drops the
    partial windows at the border; ignore_border=False (Theano's default) keeps
    them, which irc supports where there are none (the map divides evenly)."""
    if ws is None and ds is None:
        raise TypeError("pool_2d: give the window size ws=")
    ws = _pair(ws if ws is not None else ds, "pool_2d", "ws")
    stride = stride if stride is not None else st
    stride = ws if stride is None else _pair(stride, "pool_2d", "stride")
    pad = padding if padding is not None else pad
    if tuple(_pair(pad, "pool_2d", "pad")) != (0, 0):
        _unsupported("pool_2d(pad=...) (padded pooling)")
    if mode != "max":
        _unsupported(f"pool_2d(mode={mode!r}) (irc has max pooling only)")
    x = _S.as_variable(input)
    if not ignore_border:
        spatial = x.type.shape[-2:]
        even = all(isinstance(d, int) and (d - w) % s == 0 for d, w, s in zip(spatial, ws, stride))
        if not even:
            _unsupported(
                f"pool_2d(ignore_border=False) on {x.type} with ws={ws}: partial windows at "
                "the border (pass ignore_border=True, as Theano's LeNet tutorial does)"
            )
    return _S.max_pool2d(x, ws, stride)


def max_pool_2d_same_size(input, patch_size):
    _unsupported("max_pool_2d_same_size")
