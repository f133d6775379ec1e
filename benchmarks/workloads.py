"""The benchmark workloads: each as `.tg` source for irc and a plain NumPy
implementation of the same computation (what a NumPy user would write:
vectorised, im2col through sliding_window_view + tensordot, in-place SGD).

Every workload has make(rng) -> (args, numpy_step, irc_call) helpers in run.py;
here only the sources and the NumPy references live. Imports NumPy only.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

# -- elementwise chain ---------------------------------------------------------------------------

CHAIN_TG = """
fn chain(x: f32[N], a: f32, b: f32) -> f32[N] {
    return tanh(a * x + b) * sigmoid(x) + 0.5 * x * x
}
"""


def chain_numpy(x, a, b):
    return np.tanh(a * x + b) * (1 / (1 + np.exp(-x))) + np.float32(0.5) * x * x


# -- MLP 784-500-10, one SGD step -------------------------------------------------------------------

MLP_TG = """
shared W1: f32[784, 500] = glorot_uniform()
shared b1: f32[500] = zeros()
shared W2: f32[500, 10] = glorot_uniform()
shared b2: f32[10] = zeros()

fn train(x: f32[N, 784], y: i32[N], lr: f32 = 0.1) -> f32 {
    h = tanh(x @ W1 + b1)
    loss = mean(categorical_crossentropy(softmax(h @ W2 + b2), y))
    g1, gb1, g2, gb2 = grad(loss, W1, b1, W2, b2)
    W1 <- W1 - lr * g1
    b1 <- b1 - lr * gb1
    W2 <- W2 - lr * g2
    b2 <- b2 - lr * gb2
    return loss
}
"""


class MLPNumpy:
    def __init__(self, params):
        self.W1, self.b1, self.W2, self.b2 = (params[k].copy() for k in ("W1", "b1", "W2", "b2"))

    def train(self, x, y, lr=np.float32(0.1)):
        n = x.shape[0]
        h = np.tanh(x @ self.W1 + self.b1)
        z = h @ self.W2 + self.b2
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        p = e / e.sum(axis=1, keepdims=True)
        rows = np.arange(n)
        loss = -np.log(p[rows, y]).mean()
        dz = p
        dz[rows, y] -= 1
        dz /= n
        gW2 = h.T @ dz
        gb2 = dz.sum(axis=0)
        dh = (dz @ self.W2.T) * (1 - h * h)
        gW1 = x.T @ dh
        gb1 = dh.sum(axis=0)
        self.W1 -= lr * gW1
        self.b1 -= lr * gb1
        self.W2 -= lr * gW2
        self.b2 -= lr * gb2
        return loss


# -- LeNet-style CNN on 28x28 images, one SGD step ----------------------------------------------------

CNN_TG = """
shared K1: f32[20, 1, 5, 5] = glorot_uniform()
shared c1: f32[20] = zeros()
shared K2: f32[50, 20, 5, 5] = glorot_uniform()
shared c2: f32[50] = zeros()
shared W3: f32[800, 500] = glorot_uniform()
shared b3: f32[500] = zeros()
shared W4: f32[500, 10] = glorot_uniform()
shared b4: f32[10] = zeros()

def conv_pool(x: f32[N, C, H, W], k: f32[F, C, KH, KW], b: f32[F]) {
    return relu(max_pool2d(conv2d(x, k), [2, 2]) + b[None, :, None, None])
}

fn train(x: f32[N, 1, 28, 28], y: i32[N], lr: f32 = 0.05) -> f32 {
    h1 = conv_pool(x, K1, c1)
    h2 = conv_pool(h1, K2, c2)
    h3 = tanh(flatten(h2, 1) @ W3 + b3)
    loss = mean(categorical_crossentropy(softmax(h3 @ W4 + b4), y))
    gK1, gc1, gK2, gc2, gW3, gb3, gW4, gb4 = grad(loss, K1, c1, K2, c2, W3, b3, W4, b4)
    K1 <- K1 - lr * gK1
    c1 <- c1 - lr * gc1
    K2 <- K2 - lr * gK2
    c2 <- c2 - lr * gc2
    W3 <- W3 - lr * gW3
    b3 <- b3 - lr * gb3
    W4 <- W4 - lr * gW4
    b4 <- b4 - lr * gb4
    return loss
}
"""


def _conv_valid(x, w):
    """x [N, C, H, W] * w [F, C, KH, KW] -> [N, F, OH, OW] (cross-correlation) and the windows."""
    win = sliding_window_view(x, w.shape[2:], axis=(2, 3))  # [N, C, OH, OW, KH, KW]
    out = np.tensordot(win, w, axes=([1, 4, 5], [1, 2, 3]))  # [N, OH, OW, F]
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2)), win


def _conv_input_grad(g, w):
    """dx of a valid conv: a full correlation of g with the flipped filters."""
    kh, kw = w.shape[2:]
    gp = np.pad(g, ((0, 0), (0, 0), (kh - 1, kh - 1), (kw - 1, kw - 1)))
    win = sliding_window_view(gp, (kh, kw), axis=(2, 3))  # [N, F, H, W, KH, KW]
    out = np.tensordot(win, w[:, :, ::-1, ::-1], axes=([1, 4, 5], [0, 2, 3]))  # [N, H, W, C]
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2))


def _pool(x):
    n, c, h, w = x.shape
    v = x.reshape(n, c, h // 2, 2, w // 2, 2)
    p = v.max(axis=(3, 5))
    return p, v


def _pool_grad(v, p, g):
    mask = v == p[:, :, :, None, :, None]
    return (mask * g[:, :, :, None, :, None]).reshape(v.shape[0], v.shape[1], v.shape[2] * 2, v.shape[4] * 2)


class CNNNumpy:
    NAMES = ("K1", "c1", "K2", "c2", "W3", "b3", "W4", "b4")

    def __init__(self, params):
        for k in self.NAMES:
            setattr(self, k, params[k].copy())

    def train(self, x, y, lr=np.float32(0.05)):
        n = x.shape[0]
        a1, win1 = _conv_valid(x, self.K1)
        p1, v1 = _pool(a1)
        h1 = np.maximum(p1 + self.c1[None, :, None, None], 0)
        a2, win2 = _conv_valid(h1, self.K2)
        p2, v2 = _pool(a2)
        h2 = np.maximum(p2 + self.c2[None, :, None, None], 0)
        f = h2.reshape(n, -1)
        h3 = np.tanh(f @ self.W3 + self.b3)
        z = h3 @ self.W4 + self.b4
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        p = e / e.sum(axis=1, keepdims=True)
        rows = np.arange(n)
        loss = -np.log(p[rows, y]).mean()
        dz = p
        dz[rows, y] -= 1
        dz /= n
        gW4 = h3.T @ dz
        gb4 = dz.sum(axis=0)
        dh3 = (dz @ self.W4.T) * (1 - h3 * h3)
        gW3 = f.T @ dh3
        gb3 = dh3.sum(axis=0)
        dh2 = (dh3 @ self.W3.T).reshape(h2.shape) * (h2 > 0)
        gc2 = dh2.sum(axis=(0, 2, 3))
        da2 = _pool_grad(v2, p2, dh2)
        gK2 = np.tensordot(da2, win2, axes=([0, 2, 3], [0, 2, 3]))
        dh1 = _conv_input_grad(da2, self.K2) * (h1 > 0)
        gc1 = dh1.sum(axis=(0, 2, 3))
        da1 = _pool_grad(v1, p1, dh1)
        gK1 = np.tensordot(da1, win1, axes=([0, 2, 3], [0, 2, 3]))
        for name, gval in (("K1", gK1), ("c1", gc1), ("K2", gK2), ("c2", gc2), ("W3", gW3), ("b3", gb3),
                           ("W4", gW4), ("b4", gb4)):
            getattr(self, name)[...] -= lr * gval
        return loss


# -- vanilla RNN, forward + BPTT + SGD -------------------------------------------------------------------

RNN_TG = """
shared W: f32[128, 128] = normal(0, 0.05)
shared U: f32[64, 128] = normal(0, 0.1)
shared V: f32[128, 64] = normal(0, 0.1)
shared b: f32[128] = zeros()
shared c: f32[64] = zeros()

fn train(xs: f32[T, B, 64], ys: i32[T, B], s0: f32[B, 128], lr: f32 = 0.05) -> f32 {
    ss, ps = scan (x in xs; s = s0) {
        s = tanh(b + s @ W + x @ U)
        yield s, softmax(c + s @ V)
    }
    loss = mean(categorical_crossentropy(reshape(ps, [T * B, 64]), reshape(ys, [T * B])))
    gW, gU, gV, gb, gc = grad(loss, W, U, V, b, c)
    W <- W - lr * gW
    U <- U - lr * gU
    V <- V - lr * gV
    b <- b - lr * gb
    c <- c - lr * gc
    return loss
}
"""


class RNNNumpy:
    NAMES = ("W", "U", "V", "b", "c")

    def __init__(self, params):
        for k in self.NAMES:
            setattr(self, k, params[k].copy())

    def train(self, xs, ys, s0, lr=np.float32(0.05)):
        T, B, _ = xs.shape
        H = self.W.shape[0]
        ss = np.empty((T + 1, B, H), np.float32)
        ss[0] = s0
        # the input projection of every step at once
        xu = (xs.reshape(T * B, -1) @ self.U).reshape(T, B, H)
        for t in range(T):
            ss[t + 1] = np.tanh(self.b + ss[t] @ self.W + xu[t])
        z = ss[1:].reshape(T * B, H) @ self.V + self.c
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        p = e / e.sum(axis=1, keepdims=True)
        rows = np.arange(T * B)
        yf = ys.reshape(-1)
        loss = -np.log(p[rows, yf]).mean()
        dz = p
        dz[rows, yf] -= 1
        dz /= T * B
        gV = ss[1:].reshape(T * B, H).T @ dz
        gc = dz.sum(axis=0)
        ds_out = (dz @ self.V.T).reshape(T, B, H)
        da = np.empty((T, B, H), np.float32)
        carry = np.zeros((B, H), np.float32)
        for t in range(T - 1, -1, -1):
            d = (ds_out[t] + carry) * (1 - ss[t + 1] * ss[t + 1])
            da[t] = d
            carry = d @ self.W.T
        gW = ss[:-1].reshape(T * B, H).T @ da.reshape(T * B, H)
        gU = xs.reshape(T * B, -1).T @ da.reshape(T * B, H)
        gb = da.sum(axis=(0, 1))
        for name, gval in (("W", gW), ("U", gU), ("V", gV), ("b", gb), ("c", gc)):
            getattr(self, name)[...] -= lr * gval
        return loss
