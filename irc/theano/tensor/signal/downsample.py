"""theano.tensor.signal.downsample, the older spelling of pooling: max_pool_2d(input,
ds, ignore_border, st). Imports irc.theano.tensor.signal.pool."""

from irc.theano.tensor.signal.pool import pool_2d

__all__ = ["max_pool_2d"]


def max_pool_2d(input, ds, ignore_border=None, st=None, padding=(0, 0), mode="max"):
    return pool_2d(input, ws=ds, ignore_border=ignore_border, stride=st, pad=padding, mode=mode)
