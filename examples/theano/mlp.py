"""Theano's multilayer perceptron tutorial (mlp.py of the Theano deep learning
tutorials), written the way the tutorial writes it, with only the imports changed.
It reuses the logistic regression layer and data loading of logistic_sgd.py, as the
tutorial does, and trains on the digits that ship with irc.

    python examples/theano/mlp.py            # prints the test accuracy
"""

from __future__ import annotations

import os
import pickle
import sys
import timeit

import numpy

import irc.theano as theano
import irc.theano.tensor as T

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from logistic_sgd import LogisticRegression, load_data  # noqa: E402


class HiddenLayer(object):
    def __init__(self, rng, input, n_in, n_out, W=None, b=None, activation=T.tanh):
        """A fully-connected layer: activation(dot(input, W) + b), W drawn uniformly
        in +-sqrt(6 / (n_in + n_out)) (4 times that for the sigmoid)."""
        self.input = input
        if W is None:
            W_values = numpy.asarray(
                rng.uniform(
                    low=-numpy.sqrt(6.0 / (n_in + n_out)),
                    high=numpy.sqrt(6.0 / (n_in + n_out)),
                    size=(n_in, n_out),
                ),
                dtype=theano.config.floatX,
            )
            if activation == theano.tensor.nnet.sigmoid:
                W_values *= 4
            W = theano.shared(value=W_values, name="W", borrow=True)
        if b is None:
            b_values = numpy.zeros((n_out,), dtype=theano.config.floatX)
            b = theano.shared(value=b_values, name="b", borrow=True)
        self.W = W
        self.b = b
        lin_output = T.dot(input, self.W) + self.b
        self.output = lin_output if activation is None else activation(lin_output)
        self.params = [self.W, self.b]


class MLP(object):
    """One hidden layer of tanh units, then a logistic regression layer."""

    def __init__(self, rng, input, n_in, n_hidden, n_out):
        self.hiddenLayer = HiddenLayer(
            rng=rng, input=input, n_in=n_in, n_out=n_hidden, activation=T.tanh
        )
        self.logRegressionLayer = LogisticRegression(
            input=self.hiddenLayer.output, n_in=n_hidden, n_out=n_out
        )
        self.L1 = abs(self.hiddenLayer.W).sum() + abs(self.logRegressionLayer.W).sum()
        self.L2_sqr = (self.hiddenLayer.W**2).sum() + (self.logRegressionLayer.W**2).sum()
        self.negative_log_likelihood = self.logRegressionLayer.negative_log_likelihood
        self.errors = self.logRegressionLayer.errors
        self.params = self.hiddenLayer.params + self.logRegressionLayer.params
        self.input = input
        self.y_pred = self.logRegressionLayer.y_pred


def test_mlp(learning_rate=0.1, L1_reg=0.00, L2_reg=0.0001, n_epochs=60, batch_size=20,
             n_hidden=64, verbose=True, best_model=None):  # fmt: skip
    """Minibatch SGD with early stopping; returns (classifier, best validation
    error, test error of the best model). The best model is pickled to the file
    `best_model` (when given)."""
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
    rng = numpy.random.RandomState(1234)

    classifier = MLP(rng=rng, input=x, n_in=8 * 8, n_hidden=n_hidden, n_out=10)
    cost = (
        classifier.negative_log_likelihood(y) + L1_reg * classifier.L1 + L2_reg * classifier.L2_sqr
    )

    test_model = theano.function(
        inputs=[index],
        outputs=classifier.errors(y),
        givens={
            x: test_set_x[index * batch_size : (index + 1) * batch_size],
            y: test_set_y[index * batch_size : (index + 1) * batch_size],
        },
    )
    validate_model = theano.function(
        inputs=[index],
        outputs=classifier.errors(y),
        givens={
            x: valid_set_x[index * batch_size : (index + 1) * batch_size],
            y: valid_set_y[index * batch_size : (index + 1) * batch_size],
        },
    )
    gparams = [T.grad(cost, param) for param in classifier.params]
    updates = [
        (param, param - learning_rate * gparam) for param, gparam in zip(classifier.params, gparams)
    ]
    train_model = theano.function(
        inputs=[index],
        outputs=cost,
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
                    best_params = [p.get_value() for p in classifier.params]
                    if best_model is not None:
                        with open(best_model, "wb") as f:
                            pickle.dump(classifier, f)
            if patience <= iter:
                done_looping = True
                break
    for p, v in zip(classifier.params, best_params):
        p.set_value(v)
    if verbose:
        print(
            f"MLP: best validation error {best_validation_loss * 100:.2f} %, test error "
            f"{test_score * 100:.2f} %, {epoch} epochs in {timeit.default_timer() - start_time:.1f} s"
        )
    return classifier, best_validation_loss, test_score


def predict(classifier, x_values):
    """Labels for x_values, compiled from the classifier's own graph."""
    predict_model = theano.function(inputs=[classifier.input], outputs=classifier.y_pred)
    return predict_model(x_values)


def predict_from(best_model, x_values):
    """Load the pickled best MLP and label x_values."""
    with open(best_model, "rb") as f:
        return predict(pickle.load(f), x_values)


if __name__ == "__main__":
    if len(sys.argv) > 1:
        theano.config.backend = sys.argv[1]
    _, _, test_score = test_mlp()
    print(f"test accuracy {1 - test_score:.4f}")
