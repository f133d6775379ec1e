"""Python spellings in .tg: `True`/`False` alongside `true`/`false` (as `None`), and
"did you mean" hints for an unknown name, function or keyword one edit away."""

import numpy as np
import pytest

from irc.api import compile_to_ir, loads
from irc.ir.errors import CompileError
from irc.ir.printer import print_module


@pytest.mark.parametrize("t, f", [("True", "False"), ("true", "false")])
def test_true_false_spellings(t, f):
    m = loads(
        f"fn f(x: f32[N, 3]) -> f32[N, 1] {{ return sum(where({t}, x, x * 2), axis=1, "
        f"keepdims={t}) + sum(x, axis=1, keepdims={t}) * where({f}, 1.0, 0.0) }}"
    )
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    np.testing.assert_allclose(m.f(x), x.sum(1, keepdims=True))


def test_python_and_tg_spellings_give_the_same_ir():
    src = "fn f(x: f32[N]) -> f32 {{ return sum(x, keepdims={f}) + where({t}, 1.0, 2.0) }}"
    a = compile_to_ir(src.format(t="True", f="False"), "a.tg")
    b = compile_to_ir(src.format(t="true", f="false"), "a.tg")
    assert print_module(a) == print_module(b)


@pytest.mark.parametrize(
    "body, message, hint",
    [
        ("return where(ture, x, x)", "unknown name 'ture'", "did you mean 'true'?"),
        ("return where(Flase, x, x)", "unknown name 'Flase'", "did you mean 'False'?"),
        ("return x + nOne", "unknown name 'nOne'", "did you mean 'None'?"),
        ("return tanh(xx)", "unknown name 'xx'", "did you mean 'x'?"),
        ("return tanhh(x)", "unknown function 'tanhh'", "did you mean 'tanh'?"),
        ("return sigmiod(x)", "unknown function 'sigmiod'", "did you mean 'sigmoid'?"),
        ("retrun x", "unexpected 'x'", "did you mean 'return'?"),
    ],
)
def test_did_you_mean(body, message, hint):
    with pytest.raises(CompileError) as info:
        loads(f"fn f(x: f32[N]) -> f32[N] {{\n    {body}\n}}\n")
    assert message in info.value.message and info.value.line == 2
    assert info.value.hint == hint


def test_no_hint_when_nothing_is_close():
    with pytest.raises(CompileError) as info:
        loads("fn f(x: f32[N]) -> f32[N] { return x + zzzzqqq }")
    assert info.value.hint is None
