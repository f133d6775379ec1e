"""The generator's fast paths (irc/frontend/irgen.py: the unary built-ins and
reductions made without their handlers, a tensor operator made without
Host.binop) give the IR, locations included, and the errors that the general
paths give."""

import pytest

import irc.frontend.irgen as G
from irc.api import compile_to_ir
from irc.frontend.builtins import BUILTINS, REDUCTIONS, UNARY
from irc.ir.errors import CompileError
from irc.ir.printer import print_module

SOURCES = [
    """fn f(x: f32[N, 8], k: i32) -> f32 {
    a = tanh(x) + sigmoid(x) * 2 - abs(x) / 3
    b = a - mean(a, axis=1, keepdims=true) + sum(a, 0, false) + max(a, axis=-1, keepdims=true)
    c = min(sum(b)) + mean(b, axis=[0, 1]) + sum(b, axis=None)
    e = sum(a, keepdims=true) + max(a, keepdims=false, axis=0) + min(a, axis=None, keepdims=true)
    j = k * 2 + 1 - k
    d = 1 + c * 0.5 ** 2 + cast(j > 3, f32) * c + sum(cast(2 < x, f32) * x)
    return d + sqrt(relu(exp(c))) + (1 - c)
}
""",
    """fn f(x: i32[4], b: bool[4]) -> i64 {
    return sum(x * 3 + cast(b & true, i32) * 1) + max(-x - 2)
}
""",
]

ERRORS = [
    "fn f(x: f32[3], y: f32[4]) -> f32[3] {\n    return x + y\n}\n",
    "fn f(x: f32[3]) -> f32 {\n    return sum(x, axis=1)\n}\n",
    "fn f(x: f32[3]) -> f32 {\n    return mean(x, axis=true)\n}\n",
    "fn f(x: f32[3]) -> f32 {\n    return sum(x, keepdims=1)\n}\n",
    "fn f(x: f32[3]) -> f32 {\n    return sum(x, axis=0, axis=0)\n}\n",
    "fn f(x: f32[3]) -> f32 {\n    return sum(x, axes=0)\n}\n",
    "fn f(x: f32[3]) -> f32 {\n    return sum(x, 0, axis=0)\n}\n",
    "fn f(x: f32[3, 2]) -> f32 {\n    return sum(x, axis=2, keepdims=false)\n}\n",
    "fn f(x: bool[3]) -> f32[3] {\n    return exp(x)\n}\n",
    "fn f(x: f32[3]) -> f32[3] {\n    return x & 1.5\n}\n",
    "fn f(x: i32[3]) -> i32[3] {\n    return x // 2\n}\n",
]


def _slow(monkeypatch):
    """The general paths only: no fast built-ins, binop through Host.binop."""
    monkeypatch.setattr(G, "_FAST_BUILTINS", {})
    monkeypatch.setattr(
        G.IRGen,
        "_tensor_binop",
        lambda self, sym, a, b, loc: self.host.binop(sym, self.BINOPS[sym], a, b, loc),
    )


def _outcome(text):
    try:
        return print_module(compile_to_ir(text, "t.tg"), locs=True)
    except CompileError as e:
        return f"error: {e.message} @ {e.loc}"


@pytest.mark.parametrize("text", SOURCES + ERRORS)
def test_fast_paths_give_what_the_general_paths_give(text, monkeypatch):
    fast = _outcome(text)
    _slow(monkeypatch)
    slow = _outcome(text)
    assert fast == slow
    assert ("error:" in fast) == (text in ERRORS)


def test_fast_builtins_are_the_table_handlers():
    # The fast paths stand for the handlers the loops of builtins.py register.
    for name in UNARY:
        assert BUILTINS[name][1].__qualname__.startswith("_mk.")
    for name in REDUCTIONS:
        assert BUILTINS[name][1].__qualname__.startswith("_mkr.")
        assert [p for p, _ in BUILTINS[name][0]] == ["x", "axis", "keepdims"]
        assert [d for _, d in BUILTINS[name][0][1:]] == [None, False]
    assert set(G._FAST_BUILTINS) == set(UNARY) | set(REDUCTIONS)
