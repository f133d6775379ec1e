"""Every kind of mistake in a .tg file gives FILE:LINE:COL, the line, a caret
and a message: checked as text."""

import pytest

from irc.api import compile_to_ir, loads
from irc.ir.errors import CompileError

CASES = [
    # (source, line, col, message fragment)
    ("fn f(x: f32[N]) -> f32[N] {\n    return x +\n}\n", 3, 1, "unexpected '}'"),
    ("fn f(x: f32[N]) -> f32[N] {\n    return x $ 1\n}\n", 2, 14, "unexpected character '$'"),
    ("fn f(x: f32[N]) -> f32[N] {\n    return y\n}\n", 2, 12, "unknown name 'y'"),
    ("fn f(x: f32[N]) -> f32[N] {\n    return tahn(x)\n}\n", 2, 12, "unknown function 'tahn'"),
    (
        "fn f(x: f32[N]) -> f32[N] {\n    return exp(x, x)\n}\n",
        2,
        12,
        "exp() takes at most 1 argument",
    ),
    (
        "fn f(x: f32[N, 64], W: f32[100, 10]) -> f32[N, 10] {\n    return x @ W\n}\n",
        2,
        12,
        "`@`: inner dimensions differ: f32[N, 64] @ f32[100, 10]",
    ),
    (
        "fn f(x: f32[N, 3], y: f32[N, 4]) -> f32[N, 3] {\n    return x + y\n}\n",
        2,
        12,
        "cannot be broadcast",
    ),
    ("fn f(x: f32[N], y: i32[N]) -> f32[N] {\n    return where(y, x, x)\n}\n", 2, 12, "bool"),
    (
        "fn f(x: f32[N]) -> f32[N] {\n    x <- x + 1\n    return x\n}\n",
        2,
        5,
        "'x' is not a shared variable",
    ),
    (
        "shared W: f32[3] = zeros()\nfn f(x: f32[3]) -> f32[3] {\n    W <- x[None]\n    return x\n}\n",
        3,
        5,
        "update of 'W' (f32[3]) with a value of type f32[1, 3]",
    ),
    (
        'shared W: f32[3] = load("nope.npz", "w")\nfn f() -> f32[3] { return W }\n',
        1,
        1,
        "load: file not found",
    ),
    ("fn f(x: f32[N]) -> f32[M] {\n    return x\n}\n", 1, 20, "unknown dimension 'M'"),
    (
        "fn f(x: f32[N]) -> i32[N] {\n    return x\n}\n",
        2,
        5,
        "'f' returns f32[N] but declares i32[N]",
    ),
    (
        "def g(x: f32[N]) { W <- x  return x }\nfn f(x: f32[N]) -> f32[N] { return g(x) }\n",
        1,
        20,
        "a def cannot update",
    ),
    (
        "def g(x: f32[N, 3]) { return x }\nfn f(x: f32[N, 4]) -> f32[N, 4] {\n    return g(x)\n}\n",
        3,
        14,
        "argument 'x' of 'g' expects f32[N, 3], got f32[N, 4]",
    ),
    ("fn f(x: f32[N]) -> f32 {\n    return grad(x, x)\n}\n", 2, 12, "the loss must be a scalar"),
    (
        "fn f(xs: f32[T, 3], ys: f32[S, 3]) -> f32[T, 3] {\n"
        "    return scan (x in xs, y in ys;) { yield x + y }\n}\n",
        2,
        27,
        "sequences have different lengths",
    ),
    (
        "fn f(s0: f32[3]) -> f32[4, 3] {\n    return scan (; s = s0; steps = 4) {\n"
        "        s = s[None]\n        yield s\n    }\n}\n",
        3,
        9,
        "carried value 's' starts as f32[3] but its next value is f32[1, 3]",
    ),
    ("fn f(x: f32[N]) -> f32 {\n    return sum(x, axis=3)\n}\n", 2, 12, "axis 3"),
    (
        "fn f(x: f32[N]) -> f32[N] {\n    a, b = x\n    return a\n}\n",
        2,
        5,
        "cannot unpack one value",
    ),
    ("const H = 3\nconst H = 4\n", 2, 1, "'H' is already defined"),
    ("shared W: f32[N] = zeros()\n", 1, 11, "static shape"),
    ("shared W: f32[3] = randn()\n", 1, 20, "unknown initialiser 'randn'"),
]


@pytest.mark.parametrize("src,line,col,msg", CASES)
def test_diagnostic(src, line, col, msg):
    with pytest.raises(CompileError) as e:
        loads(src, filename="model.tg")
    err = e.value
    assert msg in err.message, err.format()
    assert (err.file, err.line, err.column) == ("model.tg", line, col), err.format()
    text = err.format()
    assert text.startswith(f"model.tg:{line}:{col}: error: ")
    lines = text.splitlines()
    src_line = src.splitlines()[line - 1]
    assert lines[1] == "  " + src_line
    assert lines[2] == "  " + " " * (col - 1) + "^"


def test_unknown_define_is_reported():
    with pytest.raises(CompileError, match="no const named 'Q'"):
        compile_to_ir("const H = 3\n", "m.tg", define={"Q": 1})
