"""Theano's logistic regression tutorial (logistic_sgd.py of the Theano deep learning
tutorials), written the way the tutorial writes it, with only the imports changed:
`import irc.theano as theano` and `import irc.theano.tensor as T`. It trains on the
8x8 digits that ship with irc instead of MNIST (64 inputs instead of 784).

    python examples/theano/logistic_sgd.py            # prints the test accuracy

tests/theano/test_tutorials.py runs it (and its MLP and LeNet siblings).
"""

from __future__ import annotations

import pickle
import sys
import timeit

import numpy

import irc.theano as theano
import irc.theano.tensor as T
from irc.data import load_digits


class LogisticRegression(object):
    """Multi-class logistic regression: P(Y=i|x) = softmax_i(W x + b)."""

    def __init__(self, input, n_in, n_out):
        self.W = theano.shared(
            value=numpy.zeros((n_in, n_out), dtype=theano.config.floatX), name="W", borrow=True
        )
        self.b = theano.shared(
            value=numpy.zeros((n_out,), dtype=theano.config.floatX), name="b", borrow=True
        )
        self.p_y_given_x = T.nnet.softmax(T.dot(input, self.W) + self.b)
        self.y_pred = T.argmax(self.p_y_given_x, axis=1)
        self.params = [self.W, self.b]
        self.input = input

    def negative_log_likelihood(self, y):
        """The mean negative log-likelihood of the labels y under the model."""
        return -T.mean(T.log(self.p_y_given_x)[T.arange(y.shape[0]), y])

    def errors(self, y):
        """The fraction of the minibatch the model gets wrong."""
        if y.ndim != self.y_pred.ndim:
            raise TypeError(
                "y should have the same shape as self.y_pred",
                ("y", y.type, "y_pred", self.y_pred.type),
            )
        if y.dtype.startswith("int"):
            return T.mean(T.neq(self.y_pred, y))
        else:
            raise NotImplementedError()


def shared_dataset(data_xy, borrow=True):
    """The data in shared variables, so that a minibatch is a slice taken by the
    compiled function (givens) rather than an array copied in at each call. The
    labels are stored as floatX and cast, as the tutorial does for GPUs."""
    data_x, data_y = data_xy
    shared_x = theano.shared(numpy.asarray(data_x, dtype=theano.config.floatX), borrow=borrow)
    shared_y = theano.shared(numpy.asarray(data_y, dtype=theano.config.floatX), borrow=borrow)
    return shared_x, T.cast(shared_y, "int32")


def load_data(n_valid=297):
    """[(train_x, train_y), (valid_x, valid_y), (test_x, test_y)] as shared
    variables: the digits' 1,497 training images split into 1,200 for training and
    297 for validation (early stopping), and the 300 test images."""
    digits = load_digits()
    x, y = digits["x_train"], digits["y_train"]
    n = len(x) - n_valid
    return [
        shared_dataset((x[:n], y[:n])),
        shared_dataset((x[n:], y[n:])),
        shared_dataset((digits["x_test"], digits["y_test"])),
    ]


def sgd_optimization_digits(learning_rate=0.13, n_epochs=100, batch_size=20, verbose=True,
                            best_model=None):  # fmt: skip
    """Minibatch SGD with early stopping; returns (classifier, best validation
    error, test error of the best model). The best model is pickled to the file
    `best_model` (when given), as the tutorial does."""
    datasets = load_data()
    train_set_x, train_set_y = datasets[0]
    valid_set_x, valid_set_y = datasets[1]
    test_set_x, test_set_y = datasets[2]

    n_train_batches = train_set_x.get_value(borrow=True).shape[0] // batch_size
    n_valid_batches = valid_set_x.get_value(borrow=True).shape[0] // batch_size
    n_test_batches = test_set_x.get_value(borrow=True).shape[0] // batch_size

    # allocate symbolic variables for the data
    index = T.lscalar()  # index to a [mini]batch
    x = T.matrix("x")  # data, presented as rasterized images
    y = T.ivector("y")  # labels, presented as 1D vector of [int] labels

    classifier = LogisticRegression(input=x, n_in=8 * 8, n_out=10)
    cost = classifier.negative_log_likelihood(y)

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

    g_W = T.grad(cost=cost, wrt=classifier.W)
    g_b = T.grad(cost=cost, wrt=classifier.b)
    updates = [
        (classifier.W, classifier.W - learning_rate * g_W),
        (classifier.b, classifier.b - learning_rate * g_b),
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

    # early stopping: look at this many minibatches at least, more when the
    # validation error improves significantly
    patience = 5000
    patience_increase = 2
    improvement_threshold = 0.995
    validation_frequency = min(n_train_batches, patience // 2)
    best_validation_loss = numpy.inf
    best_params = None
    test_score = 0.0
    start_time = timeit.default_timer()
    done_looping = False
    epoch = 0
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
                    if best_model is not None:  # save the best model
                        with open(best_model, "wb") as f:
                            pickle.dump(classifier, f)
            if patience <= iter:
                done_looping = True
                break
    for p, v in zip(classifier.params, best_params):  # keep the best model
        p.set_value(v)
    if verbose:
        print(
            f"logistic regression: best validation error {best_validation_loss * 100:.2f} %, "
            f"test error {test_score * 100:.2f} %, {epoch} epochs in "
            f"{timeit.default_timer() - start_time:.1f} s"
        )
    return classifier, best_validation_loss, test_score


def predict(classifier, x_values):
    """Labels for x_values, compiled from the classifier's own graph."""
    predict_model = theano.function(inputs=[classifier.input], outputs=classifier.y_pred)
    return predict_model(x_values)


def predict_from(best_model, x_values):
    """The tutorial's predict(): load the pickled best model and label x_values."""
    with open(best_model, "rb") as f:
        classifier = pickle.load(f)
    return predict(classifier, x_values)


if __name__ == "__main__":
    if len(sys.argv) > 1:
        theano.config.backend = sys.argv[1]
    classifier, _, test_score = sgd_optimization_digits()
    digits = load_digits()
    accuracy = (predict(classifier, digits["x_test"]) == digits["y_test"]).mean()
    print(f"test accuracy {accuracy:.4f}")
