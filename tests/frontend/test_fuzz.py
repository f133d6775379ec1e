"""Grammar fuzzing: random token streams and mutated valid programs must give
a CompileError (or compile), never another exception or a hang."""

import signal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from irc.api import compile_to_ir
from irc.ir.errors import CompileError

VALID = """seed 3
const H = 4
shared W: f32[3, H] = normal(0, 0.1)
shared b: f32[H] = zeros()
def lin(x: f32[N, 3]) -> f32[N, H] { return x @ W + b }
fn train(x: f32[N, 3], y: i32[N], lr: f32 = 0.5) -> f32 {
    p = softmax(lin(x))
    loss = mean(categorical_crossentropy(p, y))
    gW, gb = grad(loss, W, b)
    W <- W - lr * gW
    b <- b - lr * gb
    h = scan (r in x; s = zeros([H])) { s = tanh(s + r @ W) yield s }
    return loss + sum(h[-1, :]) * 0
}
"""

TOKENS = [
    "fn",
    "def",
    "shared",
    "const",
    "seed",
    "scan",
    "grad",
    "return",
    "yield",
    "in",
    "steps",
    "truncate",
    "f32",
    "i32",
    "bool",
    "x",
    "W",
    "N",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    ",",
    ":",
    ";",
    "=",
    "<-",
    "->",
    "+",
    "-",
    "*",
    "/",
    "@",
    "**",
    "<",
    "==",
    "&",
    "|",
    "~",
    "1",
    "2.5",
    '"s"',
    "None",
    "...",
    "\n",
    "true",
    "#c\n",
    "$",
]


def compile_quietly(src):
    def timeout(signum, frame):
        raise AssertionError("the front end hangs")

    old = signal.signal(signal.SIGALRM, timeout)
    signal.alarm(5)
    try:
        compile_to_ir(src, "fuzz.tg")
    except CompileError as e:
        e.format()  # formatting must not fail either
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(TOKENS), max_size=40))
def test_random_token_streams(tokens):
    compile_quietly(" ".join(tokens))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.integers(0, len(VALID) - 1),
    st.integers(0, 12),
    st.text(alphabet="(){}[],:;=+-*@<>~#.0123456789xNW \n", max_size=6),
)
def test_mutated_programs(pos, cut, insert):
    compile_quietly(VALID[:pos] + insert + VALID[pos + cut :])


def test_deep_nesting_is_an_error_not_a_crash():
    compile_quietly("fn f(x: f32) -> f32 { return " + "(" * 5000 + "x" + ")" * 5000 + " }")
    compile_quietly("fn f(x: f32) -> f32 { return " + "-" * 5000 + "x }")


def test_valid_program_compiles():
    compile_to_ir(VALID, "ok.tg")
