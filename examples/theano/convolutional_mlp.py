"""Theano's LeNet tutorial (convolutional_mlp.py of the Theano deep learning
tutorials), written the way the tutorial writes it, with only the imports changed:
`from irc.theano.tensor.nnet import conv2d`, `from irc.theano.tensor.signal import
pool`. Two convolution + max-pooling layers, a tanh layer and logistic regression,
trained with a minibatch index and givens on the digits that ship with irc (8x8
images: 3x3 'half' convolutions keep the size, pooling halves it, 8 -> 4 -> 2).

    python examples/theano/convolutional_mlp.py            # prints the test accuracy
"""

from __future__ import annotations

import os
import pickle
import sys
import timeit

import numpy

import irc.theano as theano
import irc.theano.tensor as T
from irc.theano.tensor.nnet import conv2d
from irc.theano.tensor.signal import pool

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from logistic_sgd import LogisticRegression, load_data  # noqa: E402
from mlp import HiddenLayer  # noqa: E402


class LeNetConvPoolLayer(object):
    """Pool Layer of a convolutional network."""

    def __init__(self, rng, input, filter_shape, image_shape, poolsize=(2, 2), border_mode="half"):
        assert image_shape[1] == filter_shape[1]
        self.input = input
        # there are "num input feature maps * filter height * filter width" inputs to each
        # hidden unit, and each unit of the lower layer receives a gradient from
        # "num output feature maps * filter height * filter width" / pooling size
        fan_in = numpy.prod(filter_shape[1:])
        fan_out = filter_shape[0] * numpy.prod(filter_shape[2:]) // numpy.prod(poolsize)
        W_bound = numpy.sqrt(6.0 / (fan_in + fan_out))
        self.W = theano.shared(
            numpy.asarray(
                rng.uniform(low=-W_bound, high=W_bound, size=filter_shape),
                dtype=theano.config.floatX,
            ),
            borrow=True,
        )
        b_values = numpy.zeros((filter_shape[0],), dtype=theano.config.floatX)
        self.b = theano.shared(value=b_values, borrow=True)

        conv_out = conv2d(
            input=input,
            filters=self.W,
            filter_shape=filter_shape,
            input_shape=image_shape,
            border_mode=border_mode,
        )
        pooled_out = pool.pool_2d(input=conv_out, ws=poolsize, ignore_border=True)
        # the bias is a 1D tensor: dimshuffle it to (1, n_filters, 1, 1) to broadcast
        self.output = T.tanh(pooled_out + self.b.dimshuffle("x", 0, "x", "x"))
        self.params = [self.W, self.b]
        self.input = input


def evaluate_lenet5(learning_rate=0.1, n_epochs=20, nkerns=(16, 32), batch_size=20,
                    verbose=True, best_model=None):  # fmt: skip
    """Minibatch SGD with early stopping; returns (model, best validation error,
    test error of the best model), the model being (x, layers, batch_size): its
    input, its layers, and the minibatch size its reshape was written for. The best
    model is pickled to the file `best_model` (when given)."""
    rng = numpy.random.RandomState(23455)
    datasets = load_data()
    train_set_x, train_set_y = datasets[0]
    valid_set_x, valid_set_y = datasets[1]
    test_set_x, test_set_y = datasets[2]

    n_train_batches = train_set_x.get_value(borrow=True).shape[0] // batch_size
    n_valid_batches = valid_set_x.get_value(borrow=True).shape[0] // batch_size
    n_test_batches = test_set_x.get_value(borrow=True).shape[0] // batch_size

    index = T.lscalar()
    x = T.matrix("x")
    y = T.ivector("y")

    # Reshape the matrix of rasterized images of shape (batch_size, 8 * 8)
    # to a 4D tensor, compatible with our LeNetConvPoolLayer
    layer0_input = x.reshape((batch_size, 1, 8, 8))
    layer0 = LeNetConvPoolLayer(
        rng,
        input=layer0_input,
        image_shape=(batch_size, 1, 8, 8),
        filter_shape=(nkerns[0], 1, 3, 3),
        poolsize=(2, 2),
    )
    layer1 = LeNetConvPoolLayer(
        rng,
        input=layer0.output,
        image_shape=(batch_size, nkerns[0], 4, 4),
        filter_shape=(nkerns[1], nkerns[0], 3, 3),
        poolsize=(2, 2),
    )
    # the HiddenLayer being fully-connected, it operates on 2D matrices of shape
    # (batch_size, num_pixels): (batch_size, nkerns[1] * 2 * 2) here
    layer2_input = layer1.output.flatten(2)
    layer2 = HiddenLayer(
        rng, input=layer2_input, n_in=nkerns[1] * 2 * 2, n_out=64, activation=T.tanh
    )
    layer3 = LogisticRegression(input=layer2.output, n_in=64, n_out=10)
    cost = layer3.negative_log_likelihood(y)

    test_model = theano.function(
        [index],
        layer3.errors(y),
        givens={
            x: test_set_x[index * batch_size : (index + 1) * batch_size],
            y: test_set_y[index * batch_size : (index + 1) * batch_size],
        },
    )
    validate_model = theano.function(
        [index],
        layer3.errors(y),
        givens={
            x: valid_set_x[index * batch_size : (index + 1) * batch_size],
            y: valid_set_y[index * batch_size : (index + 1) * batch_size],
        },
    )
    params = layer3.params + layer2.params + layer1.params + layer0.params
    grads = T.grad(cost, params)
    updates = [
        (param_i, param_i - learning_rate * grad_i) for param_i, grad_i in zip(params, grads)
    ]
    train_model = theano.function(
        [index],
        cost,
        updates=updates,
        givens={
            x: train_set_x[index * batch_size : (index + 1) * batch_size],
            y: train_set_y[index * batch_size : (index + 1) * batch_size],
        },
    )

    patience = 10000
    patience_increase = 2
    improvement_threshold = 0.995
    validation_frequency = min(n_train_batches, patience // 2)
    best_validation_loss = numpy.inf
    best_params = None
    test_score = 0.0
    start_time = timeit.default_timer()
    epoch = 0
    done_looping = False
    while (epoch < n_epochs) and (not done_looping):
        epoch = epoch + 1
        for minibatch_index in range(n_train_batches):
            train_model(minibatch_index)
            iter = (epoch - 1) * n_train_batches + minibatch_index
            if (iter + 1) % validation_frequency == 0:
                validation_losses = [validate_model(i) for i in range(n_valid_batches)]
                this_validation_loss = numpy.mean(validation_losses)
                if this_validation_loss < best_validation_loss:
                    if this_validation_loss < best_validation_loss * improvement_threshold:
                        patience = max(patience, iter * patience_increase)
                    best_validation_loss = this_validation_loss
                    test_losses = [test_model(i) for i in range(n_test_batches)]
                    test_score = numpy.mean(test_losses)
                    best_params = [p.get_value() for p in params]
                    if best_model is not None:
                        with open(best_model, "wb") as f:
                            pickle.dump((x, [layer0, layer1, layer2, layer3], batch_size), f)
            if patience <= iter:
                done_looping = True
                break
    for p, v in zip(params, best_params):
        p.set_value(v)
    if verbose:
        print(
            f"LeNet: best validation error {best_validation_loss * 100:.2f} %, test error "
            f"{test_score * 100:.2f} %, {epoch} epochs in {timeit.default_timer() - start_time:.1f} s"
        )
    return (x, [layer0, layer1, layer2, layer3], batch_size), best_validation_loss, test_score


def predict(model, x_values):
    """Labels for x_values, minibatch by minibatch (the model's reshape takes
    batch_size images), with an index and givens as in training."""
    x, layers, batch_size = model
    data = theano.shared(numpy.asarray(x_values, dtype=theano.config.floatX), borrow=True)
    index = T.lscalar()
    predict_model = theano.function(
        [index], layers[-1].y_pred, givens={x: data[index * batch_size : (index + 1) * batch_size]}
    )
    return numpy.concatenate([predict_model(i) for i in range(len(x_values) // batch_size)])


def predict_from(best_model, x_values):
    """Load the pickled best LeNet and label x_values."""
    with open(best_model, "rb") as f:
        return predict(pickle.load(f), x_values)


if __name__ == "__main__":
    if len(sys.argv) > 1:
        theano.config.backend = sys.argv[1]
    _, _, test_score = evaluate_lenet5()
    print(f"test accuracy {1 - test_score:.4f}")
