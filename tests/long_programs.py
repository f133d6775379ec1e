"""Long `.tg` functions (thousands of statements) and the same computations in
NumPy, shared by the tests of long programs: tests/hostile/test_long_functions.py
(every phase near-linear, issue 20) and tests/llvm/test_kernel_dedupe.py (the
cpu backend's kernel dedupe)."""

import numpy as np


def chain(n: int) -> str:
    """y1 = tanh(x) * 1.01; y2 = y1 + 0.5; y3 = tanh(y2) * 1.01; ..."""
    lines = ["fn f(x: f32[N]) -> f32[N] {", "    y0 = tanh(x) * 1.01"]
    for i in range(1, n):
        rhs = f"y{i - 1} + 0.5" if i % 2 else f"tanh(y{i - 1}) * 1.01"
        lines.append(f"    y{i} = {rhs}")
    return "\n".join(lines + [f"    return y{n - 1}", "}"]) + "\n"


def independent(n: int, step: float = 1e-4) -> str:
    """n independent statements of x that differ only in their constants
    (`tanh(x * (1 + i*step)) + k`), summed by a running chain at the end."""
    lines = ["fn f(x: f32[N]) -> f32[N] {"]
    lines += [f"    y{i} = tanh(x * {1 + i * step:.6f}) + {i % 7}.5" for i in range(n)]
    lines.append("    s0 = y0")
    lines += [f"    s{i} = s{i - 1} + y{i}" for i in range(1, n)]
    return "\n".join(lines + [f"    return s{n - 1}", "}"]) + "\n"


def _mixed_offset(i: int, varying: bool) -> str:
    return f"0.0{i % 5 + 1}" if varying else "0.01"


def mixed(n: int, varying: bool = False) -> str:
    """Matrix products, reductions with keepdims and elementwise ops in turn;
    `varying`: the elementwise statements' offsets differ (0.01 ... 0.05)."""
    body = [
        "h{i} = tanh(h{p} @ W)",
        "h{i} = h{p} - mean(h{p}, axis=1, keepdims=true)",
        "h{i} = h{p} * 0.9 + {c}",
        "h{i} = h{p} / (1 + sum(h{p} * h{p}) * 0.0001)",
    ]
    lines = ["fn f(x: f32[N, 8], W: f32[8, 8]) -> f32 {", "    h0 = tanh(x @ W)"]
    lines += ["    " + body[i % 4].format(i=i, p=i - 1, c=_mixed_offset(i, varying))
              for i in range(1, n)]
    return "\n".join(lines + [f"    return sum(h{n - 1})", "}"]) + "\n"


def shared_updates(n: int) -> str:
    """A long chain feeding a shared-variable update."""
    lines = ["shared W: f32[4] = zeros()", "fn f(x: f32[4]) -> f32 {", "    a0 = W + x"]
    lines += [f"    a{i} = a{i - 1} * 0.999 + x" for i in range(1, n)]
    return "\n".join(lines + [f"    W <- a{n - 1}", f"    return sum(a{n - 1})", "}"]) + "\n"


def scalar(n: int) -> str:
    """n statements on f32 scalars (no loop nest at all): tanh and an affine step
    in turn, after y0 = x + 1."""
    lines = ["fn f(x: f32) -> f32 {", "    y0 = x + 1.0"]
    lines += [f"    y{i} = y{i - 1} * 0.999 + 0.001" if i % 2 else f"    y{i} = tanh(y{i - 1})"
              for i in range(1, n)]
    return "\n".join(lines + [f"    return y{n - 1}", "}"]) + "\n"


def reference(kind: str, n: int, args, step: float = 1e-4, varying: bool = False):
    """The same computation in NumPy (float32); `step` and `varying` as given to
    independent and mixed."""
    f32 = np.float32
    if kind == "chain":
        y = np.tanh(args[0]) * f32(1.01)
        for i in range(1, n):
            y = y + f32(0.5) if i % 2 else np.tanh(y) * f32(1.01)
        return y
    if kind == "independent":
        (x,) = args
        s = None
        for i in range(n):
            y = np.tanh(x * f32(f"{1 + i * step:.6f}")) + f32(f"{i % 7}.5")
            s = y if s is None else s + y
        return s
    if kind == "mixed":
        x, w = args
        h = np.tanh(x @ w)
        for i in range(1, n):
            k = i % 4
            if k == 0:
                h = np.tanh(h @ w)
            elif k == 1:
                h = h - h.sum(axis=1, keepdims=True) * f32(1 / 8)
            elif k == 2:
                h = h * f32(0.9) + f32(_mixed_offset(i, varying))
            else:
                h = h / (f32(1) + (h * h).sum() * f32(0.0001))
        return h.sum()
    if kind == "scalar":
        y = f32(args[0]) + f32(1)
        for i in range(1, n):
            y = y * f32(0.999) + f32(0.001) if i % 2 else np.tanh(y)
        return y
    if kind == "shared":
        (x,) = args
        a = np.zeros(4, f32) + x
        for _ in range(1, n):
            a = a * f32(0.999) + x
        return a.sum()
    raise ValueError(kind)
