"""theano.tensor.nnet over irc: sigmoid, softmax, relu, the cross-entropies and
conv2d, each a thin call of the Python API. Imports irc.symbolic and irc.theano."""

from __future__ import annotations

from irc import symbolic as _S
from irc.theano._compat import missing_attributes as _missing_attributes
from irc.theano._compat import pair as _pair
from irc.theano._compat import unsupported as _unsupported

sigmoid = _S.sigmoid
softplus = _S.softplus
categorical_crossentropy = _S.categorical_crossentropy


def softmax(x, axis=-1):
    return _S.softmax(x, axis=axis)


def logsoftmax(x, axis=-1):
    return _S.log_softmax(x, axis=axis)


def relu(x, alpha=0):
    """max(x, 0); with alpha, the leaky form max(x, alpha * x) for 0 <= alpha <= 1."""
    if alpha == 0:
        return _S.relu(x)
    x = _S.as_variable(x)
    return _S.maximum(x, alpha * x)


def binary_crossentropy(output, target):
    """-(target * log(output) + (1 - target) * log(1 - output)), elementwise."""
    return -(target * _S.log(output) + (1 - target) * _S.log(1 - output))


def sigmoid_binary_crossentropy(output, target):
    return binary_crossentropy(_S.sigmoid(output), target)


def _hint(x, shape, what):
    """Bind x's unknown dims to a Theano shape hint (input_shape=, filter_shape=)."""
    if shape is None:
        return
    shape = tuple(shape)
    if len(shape) != x.ndim:
        raise ValueError(f"conv2d: {what}={shape} has {len(shape)} dims, the tensor has {x.ndim}")
    want = tuple(d if isinstance(d, int) else w for d, w in zip(shape, x.type.shape))
    if not _S._unify_shapes(x.type.shape, want):
        raise _S.CompileError(f"conv2d: {what}={shape} does not match {x.type}", _S._user_loc())


def conv2d(input, filters, input_shape=None, filter_shape=None, border_mode="valid",
           subsample=(1, 1), filter_flip=True, image_shape=None, filter_dilation=(1, 1),
           num_groups=1, unshared=False, **kwargs):  # fmt: skip
    """theano.tensor.nnet.conv2d: input [N, C, H, W] with filters [F, C, KH, KW].
    Theano's conv2d convolves (filter_flip=True flips the filters); border_mode is
    'valid', 'full', 'half' or explicit padding; subsample is the stride. The shape
    hints bind the unknown dims they give."""
    if tuple(_pair(filter_dilation, "conv2d", "filter_dilation")) != (1, 1):
        _unsupported("conv2d(filter_dilation=...) (dilated convolution)")
    if num_groups != 1:
        _unsupported("conv2d(num_groups=...) (grouped convolution)")
    if unshared:
        _unsupported("conv2d(unshared=True)")
    x, w = _S.as_variable(input), _S.as_variable(filters)
    _hint(x, input_shape if input_shape is not None else image_shape, "input_shape")
    _hint(w, filter_shape, "filter_shape")
    if border_mode == "half":
        k = w.type.shape[2:]
        if not all(isinstance(d, int) for d in k):
            raise ValueError("conv2d(border_mode='half') needs the filter size known")
        padding = (k[0] // 2, k[1] // 2)
    elif border_mode in ("valid", "full"):
        padding = border_mode
    elif isinstance(border_mode, (int, tuple, list)):
        padding = _pair(border_mode, "conv2d", "border_mode")
    else:
        raise ValueError(f"conv2d: unknown border_mode {border_mode!r}")
    return _S.conv2d(x, w, stride=_pair(subsample, "conv2d", "subsample"), padding=padding,
                     flip=bool(filter_flip))  # fmt: skip


_MISSING = {
    "conv3d": "theano.tensor.nnet.conv3d (3-D convolution)",
    "conv3d2d": "theano.tensor.nnet.conv3d2d (3-D convolution)",
    "conv2d_transpose": "theano.tensor.nnet.conv2d_transpose (transposed convolution)",
    "batch_normalization": "theano.tensor.nnet.batch_normalization",
    "bn": "theano.tensor.nnet.bn (batch normalization)",
    "neighbours": "theano.tensor.nnet.neighbours (images2neibs)",
    "images2neibs": "theano.tensor.nnet.images2neibs",
    "ctc": "theano.tensor.nnet.ctc (connectionist temporal classification)",
    "h_softmax": "theano.tensor.nnet.h_softmax (hierarchical softmax)",
    "crossentropy_softmax_1hot": "theano.tensor.nnet.crossentropy_softmax_1hot "
    "(use categorical_crossentropy(softmax(x), y): irc stabilises it)",
    "softsign": "theano.tensor.nnet.softsign",
    "elu": "theano.tensor.nnet.elu",
    "selu": "theano.tensor.nnet.selu",
}


__getattr__ = _missing_attributes("irc.theano.tensor.nnet", _MISSING)


from irc.theano.tensor.nnet import conv  # noqa: E402,F401  (T.nnet.conv, the older spelling)
