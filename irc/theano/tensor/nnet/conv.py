"""theano.tensor.nnet.conv, the older spelling of conv2d (image_shape=, filter_shape=,
border_mode=, subsample=). Imports irc.theano.tensor.nnet."""

from irc.theano.tensor.nnet import conv2d

__all__ = ["conv2d"]
