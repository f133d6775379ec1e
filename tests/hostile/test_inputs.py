"""Hostile .tg inputs (issue 20): each gives a located CompileError quickly,
or, for the valid programs, compiles quickly. One test per row of the issue."""

import time

import numpy as np
import pytest

import irc
from irc.ir.errors import CompileError


def located_error(src, *, backend="interp", filename="<string>", **kw):
    with pytest.raises(CompileError) as info:
        irc.loads(src, backend=backend, filename=filename, **kw)
    e = info.value
    assert e.loc is not None and e.loc.file == filename and e.loc.line >= 1, e.format()
    assert "Traceback" not in e.format()
    return e


def test_self_recursive_def_is_a_located_error():
    e = located_error(
        "def r(x: f32) -> f32 { return r(x) }\nfn f(x: f32) -> f32 { return r(x) }"
    )
    assert "'r' calls itself (r -> r)" in e.message
    assert (e.line, e.column) == (1, 31)


def test_mutual_recursion_is_a_located_error():
    e = located_error(
        "def a(x: f32) -> f32 { return b(x) }\n"
        "def b(x: f32) -> f32 { return a(x) }\n"
        "fn f(x: f32) -> f32 { return a(x) }"
    )
    assert "a -> b -> a" in e.message


def test_recursion_through_different_argument_types():
    # Each call has a new type (f32[N] then f32[N, N]...): still recursion.
    e = located_error(
        "def r(x: f32[N]) -> f32[N] { return r(x + 1.0) }\nfn f(x: f32[N]) -> f32[N] { return r(x) }"
    )
    assert "calls itself" in e.message


@pytest.mark.parametrize(
    "data, where",
    [
        ("fn f(x: f32) -> f32 {\n  return x # caf\xe9\n}\n".encode("latin-1"), (2, 17)),
        ("fn f(x: f32) -> f32 { return x }".encode("utf-16"), (1, 1)),
        (b"fn f(x: f32) -> f32 {\n\n  return \xff x }", (3, 10)),
    ],
)
def test_non_utf8_file_is_a_located_error(tmp_path, data, where):
    path = tmp_path / "m.tg"
    path.write_bytes(data)
    with pytest.raises(CompileError) as info:
        irc.load(path, backend="interp")
    e = info.value
    assert (e.file, e.line, e.column) == (str(path), *where), e.format()
    assert "UTF" in e.message


def test_utf8_bom_and_crlf_are_accepted(tmp_path):
    path = tmp_path / "m.tg"
    path.write_bytes(b"\xef\xbb\xbffn f(x: f32) -> f32 {\r\n  return x * 2\r\n}\r\n")
    assert irc.load(path, backend="interp").f(2.0) == 4.0
    assert irc.loads("\ufefffn f(x: f32) -> f32 { return x }", backend="interp").f(1.0) == 1.0
    assert irc.loads(b"fn f(x: f32) -> f32 { return x }", backend="interp").f(1.0) == 1.0


def test_megabyte_numeric_literal_is_a_located_error():
    for lit in ("9" * 1_000_000, "1." + "0" * 1_000_000, "9" * 20):
        t = time.perf_counter()
        e = located_error(f"fn f(x: f32) -> f32 {{ return x * {lit} }}")
        assert time.perf_counter() - t < 5
        assert e.column == 34 and "out of range" in e.message or "too long" in e.message
    assert irc.loads("fn f() -> i64 { return 9223372036854775807 }", backend="interp").f() == (
        2**63 - 1
    )


@pytest.mark.parametrize(
    "src",
    [
        "fn f(x: i32) -> i32 { return 2 ** 100000000 }",
        "fn f(x: f32) -> f32 { return x * 10 ** 100000000 }",
        "fn f(x: f32) -> f32 { return x * (3037000500 * 3037000500) }",
        "const K = 2 ** 62\nfn f(x: f32) -> f32 { return x * (K + K) }",
    ],
)
def test_constant_folding_refuses_huge_integers_quickly(src):
    t = time.perf_counter()
    e = located_error(src)
    assert time.perf_counter() - t < 5
    assert "out of the integer range" in e.message


def test_constant_folding_of_large_but_valid_values():
    m = irc.loads(
        "fn f(x: f32) -> f32 { return x * 10.0 ** 30 + 2 ** 62 - 2 ** 62 }", backend="interp"
    )
    assert np.isclose(m.f(1.0), 1e30)
    assert irc.loads("fn f() -> f32 { return 10 ** -100000000 }", backend="interp").f() == 0.0


def test_huge_shared_variable_is_a_located_error_before_allocating():
    e = located_error("shared W: f32[100000, 100000] = zeros()\nfn f(x: f32) -> f32 { return x }")
    assert "'W'" in e.message and "37.3 GiB" in e.message and e.line == 1


def test_shared_dim_over_int64_is_a_located_error():
    e = located_error(
        "shared W: f32[9223372036854775808] = zeros()\nfn f(x: f32) -> f32 { return x }"
    )
    assert "'W'" in e.message and "9223372036854775808" in e.message and e.column == 15
    e = located_error(
        "shared W: f32[4611686018427387904, 4] = zeros()\nfn f(x: f32) -> f32 { return x }"
    )
    assert "'W'" in e.message


@pytest.mark.parametrize(
    "init, message, col",
    [
        ("uniform(1, -1)", "lo = 1 is greater than hi = -1", 28),
        ('full("a")', "value must be a number", 25),
        ("normal(0, -1)", "std must be >= 0", 30),
        ("normal(std=-1)", "std must be >= 0", 27),
        ('uniform("a", 1)', "lo must be a number", 28),
        ("full(1e400)", "out of the f64 range", 25),
        ("load(1, 2)", "must be a string", 25),
    ],
)
def test_bad_initialiser_arguments_are_located_errors(init, message, col):
    e = located_error(f"shared W: f32[2] = {init}\nfn f(x: f32) -> f32 {{ return x }}")
    assert message in e.message and (e.line, e.column) == (1, col), e.format()


def test_full_of_an_integer_variable_checks_the_range():
    e = located_error("shared W: i32[2] = full(3000000000)\nfn f() -> i32[2] { return W }")
    assert "out of the i32 range" in e.message
    e = located_error("shared W: i32[2] = full(1.5)\nfn f() -> i32[2] { return W }")
    assert "not an integer" in e.message


def nested_grad(depth):
    e = "tanh(x)"
    for _ in range(depth):
        e = f"grad({e}, x)"
    return f"fn f(x: f32) -> f64 {{ return cast({e}, f64) }}"


def tanh_derivatives(x, n):
    """d^n/dx^n tanh(x) as a polynomial in t = tanh(x): d/dx p(t) = p'(t) (1 - t^2)."""
    p = np.polynomial.Polynomial([0, 1])
    for _ in range(n):
        p = p.deriv() * np.polynomial.Polynomial([1, 0, -1])
    return p(np.tanh(x))


def test_nested_grads_share_subexpressions():
    # Without merging each level's duplicates before the next grad, 8 levels
    # made about 900 ops; with it, about 400 (the growth is ~2x per level).
    m = irc.loads(nested_grad(8), backend="interp")
    assert m.ir().count("\n") < 600
    assert np.isclose(m.f(0.3), tanh_derivatives(0.3, 8), rtol=1e-3)


@pytest.mark.slow
def test_grad_nested_12_deep_compiles():
    m = irc.loads(nested_grad(12), backend="interp")
    assert np.isclose(m.f(0.3), tanh_derivatives(0.3, 12), rtol=1e-2)


def test_grad_code_growth_has_a_clear_limit(monkeypatch):
    import irc.passes.grad as G

    monkeypatch.setattr(G, "MAX_FUNCTION_OPS", 300)
    e = located_error(nested_grad(8))
    assert "over the limit of 300" in e.message and e.line == 1
