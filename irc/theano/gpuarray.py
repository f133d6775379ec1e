"""theano.gpuarray is Theano's CUDA back end; irc has none: importing it raises."""

from irc.theano._compat import unsupported

unsupported(
    "theano.gpuarray (Theano's CUDA back end; irc runs on GPUs through "
    "theano.config.backend = 'opencl')"
)
