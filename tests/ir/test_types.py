"""Tests of irc.ir.types (dtypes, tensor types, broadcasting, promotion) and
irc.ir.dims (canonical dim expressions, parse_dim, eval_dim)."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from irc.ir import dims
from irc.ir.dims import dim_add, dim_floordiv, dim_mul, dim_names, dim_sub, eval_dim, parse_dim
from irc.ir.types import (
    BOOL,
    DTYPES,
    F32,
    F64,
    I32,
    I64,
    TensorType,
    TypeError_,
    broadcast_shapes,
    broadcast_types,
    dtype_of_numpy,
    num_elements,
    promote_dtypes,
)

# -- dtypes and tensor types ------------------------------------------------------------


def test_dtypes():
    assert list(DTYPES) == ["f32", "f64", "i32", "i64", "bool"]
    assert F32.is_float and I64.is_int and BOOL.is_bool and not F64.is_int
    assert str(I32) == "i32" and repr(BOOL) == "bool"
    for d in DTYPES.values():
        assert dtype_of_numpy(d.np) is d
    with pytest.raises(TypeError_, match="unsupported dtype float16"):
        dtype_of_numpy(np.float16)


@pytest.mark.parametrize("a,b", list(itertools.product(DTYPES.values(), repeat=2)))
def test_promote_dtypes_is_numpy_result_type(a, b):
    assert promote_dtypes(a, b).np == np.result_type(a.np, b.np)


def test_str_of_types():
    assert str(TensorType(F32, ())) == "f32"
    assert str(TensorType(F32, ("N", 10))) == "f32[N, 10]"
    assert str(TensorType(I32, ("B*T", "(H-2)//2+1"))) == "i32[B*T, (H-2)//2+1]"
    assert repr(TensorType(BOOL, (0,))) == "bool[0]"


def test_tensor_type_properties():
    t = TensorType(F32, ("N", 3))
    assert t.rank == 2 and not t.is_scalar and not t.is_static
    assert t.named_dims() == ["N"]
    assert t.with_shape((2, 3)).is_static and t.with_dtype(F64) == TensorType(F64, ("N", 3))
    assert TensorType(F32, ()).is_scalar
    assert TensorType(F32, ("N",)) == TensorType(F32, ("N",))
    assert hash(TensorType(F32, ("N",))) == hash(TensorType(F32, ("N",)))
    for bad in (-1, 1.5, None):
        with pytest.raises(TypeError_, match="bad dimension"):
            TensorType(F32, (bad,))


def test_num_elements():
    assert num_elements((2, 3)) == 6
    assert num_elements(()) == 1
    assert num_elements(("N", 3)) is None
    assert num_elements(("N", 3), {"N": 4}) == 12


# -- broadcasting ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shapes,out",
    [
        ([(2, 3), (3,)], (2, 3)),
        ([(2, 1), (1, 3)], (2, 3)),
        ([(), (4,)], (4,)),
        ([(5, 1, 3), (4, 1)], (5, 4, 3)),
        ([("N", 10), (10,)], ("N", 10)),
        ([("N", 1), (1, "M")], ("N", "M")),
        ([("N", 10), ("N", 1)], ("N", 10)),
        ([(1,), ("N",)], ("N",)),
        ([("B*T", 3), ("B*T", 1)], ("B*T", 3)),
        ([(0, 3), (1, 3)], (0, 3)),
        ([], ()),
    ],
)
def test_broadcast_shapes(shapes, out):
    assert broadcast_shapes(*shapes) == out


def test_broadcast_matches_numpy_on_static_shapes():
    rng = np.random.default_rng(0)
    for _ in range(200):
        shapes = []
        for _ in range(rng.integers(1, 4)):
            shapes.append(tuple(int(d) for d in rng.choice([1, 2, 3], size=rng.integers(0, 4))))
        try:
            expect = np.broadcast_shapes(*shapes)
        except ValueError:
            with pytest.raises(TypeError_):
                broadcast_shapes(*shapes)
        else:
            assert broadcast_shapes(*shapes) == expect


@pytest.mark.parametrize(
    "a,b,msg",
    [
        ((2, 3), (4,), "dimension 3 vs 4"),
        (("N",), ("M",), "dimension N vs M"),
        (("N",), (3,), "dimension N vs 3"),
        ((3,), ("N",), "dimension 3 vs N"),
    ],
)
def test_broadcast_errors(a, b, msg):
    with pytest.raises(TypeError_) as e:
        broadcast_shapes(a, b)
    assert "cannot be broadcast" in e.value.message and msg in e.value.message


def test_broadcast_types_promotes():
    shape, dt = broadcast_types(TensorType(I32, ("N", 1)), TensorType(F32, (3,)))
    assert shape == ("N", 3) and dt == F64  # NumPy: int32 + float32 -> float64
    shape, dt = broadcast_types(TensorType(BOOL, ()), TensorType(I64, (2,)))
    assert shape == (2,) and dt == I64


# -- dims -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,canon",
    [
        ("3", 3),
        ("N", "N"),
        ("T*B", "B*T"),
        ("B*T", "B*T"),
        ("H-4", "H-4"),
        ("-4+H", "H-4"),
        ("(H-2)//2+1", "(H-2)//2+1"),
        ("(H - 2) // 2 + 1", "(H-2)//2+1"),
        ("(2*N)//2", "N"),
        ("(2*N+4)//2", "N+2"),
        ("N-N", 0),
        ("N*(M+1)", "M*N+N"),
        ("2*N+N", "3*N"),
        ("(7)//2", 3),
        ("N//1", "N"),
        ("((N))", "N"),
    ],
)
def test_canonical_forms(text, canon):
    assert parse_dim(text) == canon
    if isinstance(canon, str):
        assert parse_dim(canon) == canon  # canonical text is a fixed point


@pytest.mark.parametrize("bad", ["", "N+", "(N", "N)", "N//M", "N//0", "N % 2", "2N", "N M", "@"])
def test_parse_dim_errors(bad):
    with pytest.raises(ValueError):
        parse_dim(bad)


def test_dim_arithmetic():
    assert dim_add(2, 3) == 5 and dim_sub("N", "N") == 0
    assert dim_mul("T", "B") == "B*T" and dim_mul("N", 0) == 0
    assert dim_add("N", 1) == "N+1" and dim_sub("N", 1) == "N-1"
    assert dim_floordiv(7, 2) == 3 and dim_floordiv("N", 1) == "N"
    assert dim_floordiv(dim_mul("N", 4), 2) == "2*N"
    with pytest.raises(ValueError):
        dim_floordiv("N", 0)
    assert dim_names("(H-2)//2*W+N") == {"H", "W", "N"} and dim_names(3) == set()


def test_eval_dim():
    env = {"N": 7, "H": 9, "B": 2, "T": 5}
    assert eval_dim(4, env) == 4
    assert eval_dim("N", env) == 7
    assert eval_dim("B*T", env) == 10
    assert eval_dim("(H-2)//2+1", env) == 4
    with pytest.raises(KeyError):
        eval_dim("M+1", env)
    with pytest.raises(KeyError):
        eval_dim("M", env)


def test_negated_quotient_round_trips():
    q = dim_floordiv(dim_sub("H", 2), 2)
    neg = dim_sub(0, q)
    assert parse_dim(neg) == neg
    assert eval_dim(neg, {"H": 5}) == -((5 - 2) // 2)
    assert eval_dim(dim_add(neg, "N"), {"H": 5, "N": 10}) == 9


# Random expression trees, built both as text (evaluated by Python) and through
# the dim_* functions: the two must agree, and the canonical text must be a
# fixed point of parse_dim.
_NAMES = ["N", "T", "B"]
_leaf = st.one_of(st.integers(0, 6), st.sampled_from(_NAMES))


def _extend(children):
    return st.one_of(
        st.tuples(st.sampled_from(["+", "-", "*"]), children, children),
        st.tuples(st.just("//"), children, st.integers(1, 4)),
    )


_expr = st.recursive(_leaf, _extend, max_leaves=8)


def _build(e):
    if not isinstance(e, tuple):
        return e
    op, a, b = e
    if op == "//":
        d = dim_floordiv(_build(a), b)
    else:
        d = {"+": dim_add, "-": dim_sub, "*": dim_mul}[op](_build(a), _build(b))
    return d


def _text(e):
    if not isinstance(e, tuple):
        return str(e)
    op, a, b = e
    return f"({_text(a)}){op}({_text(b)})"


@settings(max_examples=300, deadline=None)
@given(_expr, st.fixed_dictionaries({n: st.integers(0, 12) for n in _NAMES}))
def test_dim_algebra_agrees_with_python(e, env):
    d = _build(e)
    want = eval(_text(e), {"__builtins__": {}}, dict(env))
    assert eval_dim(d, env) == want
    assert parse_dim(_text(e)) == d
    assert parse_dim(str(d)) == d
    assert dims.is_name(d) == (isinstance(d, str) and d.isidentifier())
