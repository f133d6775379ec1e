"""theano.tensor.signal: pooling (pool.pool_2d, and the older downsample.max_pool_2d)."""

from irc.theano.tensor.signal import downsample, pool  # noqa: F401
