"""Shape and dtype rules of every registered tg op against executed NumPy.

CASES holds example operands and attributes per op. For each case, `infer` on
concrete (non-square) shapes must give exactly the shape and dtype that the op's
`numpy` reference produces; where the case uses named dims, the symbolically
inferred shape, evaluated with the case's dim values (dims.eval_dim), must give
the executed shape too. A registered tg op with a NumPy reference and no entry
in CASES fails `test_every_op_has_a_case`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest

import irc.ops as ops  # noqa: F401  (registers every op)
from irc.ir.core import freeze_attr
from irc.ir.dims import eval_dim
from irc.ir.types import DTYPES, TensorType, TypeError_
from irc.ops.registry import ELEMENTWISE, NO_GRAD, PURE, REGISTRY, infer_types


@dataclass
class A:
    """An operand: dtype, shape (ints and named dims), value range or fixed value."""

    dtype: str
    shape: tuple
    lo: float | None = None
    hi: float | None = None
    value: object = None


def a(dtype, *shape, lo=None, hi=None, value=None):
    return A(dtype, tuple(shape), lo, hi, value)


def f(*shape, **kw):
    return a("f32", *shape, **kw)


@dataclass
class Case:
    operands: list
    attrs: dict = field(default_factory=dict)
    env: dict = field(default_factory=dict)


C = Case
ENV = {"N": 5, "M": 3, "T": 3, "B": 2, "H": 9, "W": 8, "L": 11, "K": 6}

BINARY = ["tg.add", "tg.sub", "tg.mul", "tg.div", "tg.pow", "tg.maximum", "tg.minimum"]
COMPARE = ["tg.lt", "tg.le", "tg.gt", "tg.ge", "tg.eq", "tg.ne"]
UNARY = [
    "tg.neg", "tg.abs", "tg.exp", "tg.log", "tg.log1p", "tg.sqrt", "tg.tanh", "tg.sigmoid",
    "tg.relu", "tg.softplus", "tg.square", "tg.sin", "tg.cos", "tg.sign",
]  # fmt: skip

CASES: dict = {}
for _n in BINARY + COMPARE:
    CASES[_n] = [
        C([f("N", 3), f(1, 3)], env=ENV),
        C([f(2, 1, 4), a("f64", 3, 1)]),
        C([a("i32", 2, 3, lo=1, hi=4), a("i32", 3, lo=1, hi=4)]),
        C([a("i64", "N", 1, lo=1, hi=4), f(4)], env=ENV),
    ]
for _n in ["tg.and", "tg.or"]:
    CASES[_n] = [
        C([a("bool", "N", 3), a("bool", 3)], env=ENV),
        C([a("i32", 2, 3), a("i64", 3)]),
    ]
for _n in UNARY:
    CASES[_n] = [
        C([f("N", 3)], env=ENV),
        C([a("f64", 2, 5)]),
        C([a("i32", 4, 2, lo=1, hi=4)]),
        C([f()]),
    ]
CASES["tg.not"] = [C([a("bool", "N", 3)], env=ENV), C([a("i32", 2, 3)])]
CASES["tg.where"] = [
    C([a("bool", "N", 1), f("N", 3), a("f64", 3)], env=ENV),
    C([a("bool", 2, 3), a("i32", 3), a("i32", 2, 1)]),
]
CASES["tg.clip"] = [
    C([f("N", 3), f(1), f(3)], env=ENV),
    C([a("i32", 4, 3), f(), a("f64", 2, 1, 1)]),
]
CASES["tg.cast"] = [
    C([f("N", 3)], {"dtype": "i32"}, ENV),
    C([a("i64", 2, 3)], {"dtype": "f64"}),
    C([f(2, 3)], {"dtype": "bool"}),
]
CASES["tg.constant"] = [C([], {"value": np.arange(6, dtype=np.float32).reshape(2, 3)})]
CASES["tg.matmul"] = [
    C([f("N", 5), f(5, 3)], env=ENV),
    C([f(2, 1, 4, 5), f(3, 5, 6)]),
    C([f(5), f(5, 3)]),
    C([f("N", 4, 5), f(5)], env=ENV),
    C([f(5), f(5)]),
    C([a("i32", 2, 3), a("f64", 3, 4)]),
]
for _n in ["tg.sum", "tg.mean", "tg.max", "tg.min"]:
    CASES[_n] = [
        C([f("N", 3, 4)], {"axis": (1,)}, ENV),
        C([f("N", 3, 4)], {"axis": None}, ENV),
        C([f("N", 3, 4)], {"axis": (-1, 0), "keepdims": True}, ENV),
        C([a("i32", 2, 3)], {"axis": (0,)}),
        C([f(2, 3)], {"axis": None, "keepdims": True}),
    ]
for _n in ["tg.argmax", "tg.argmin"]:
    CASES[_n] = [
        C([f("N", 3, 4)], {"axis": 1}, ENV),
        C([f("N", 3, 4)], {"axis": None}, ENV),
        C([f("N", 3, 4)], {"axis": -1, "keepdims": True}, ENV),
        C([a("i64", 2, 3)], {"axis": 0}),
    ]
CASES["tg.index"] = [
    C([f("N", 6)], {"items": (("slice", 1, None, None), ("int", -1))}, ENV),
    C([f("N", 6)], {"items": (("none",), ("ellipsis",), ("slice", None, None, 2))}, ENV),
    C([f("N", 6, 4)], {"items": (("int", 0), ("slice", None, None, -1))}, ENV),
    C([f("N", 6, 4)], {"items": (("ellipsis",), ("int", 2))}, ENV),
    C([f("N", 6, 4)], {"items": (("slice", None, -1, 2), ("none",), ("slice", -4, None, 1))}, ENV),
    C([f(7, 6)], {"items": (("slice", 5, 1, -2), ("int", -6))}),
    C([f(7)], {"items": (("int", 3),)}),
    C([f(2, 3)], {"items": ()}),
]
CASES["tg.dynamic_slice"] = [
    C(
        [f("N", 7), a("i32", value=1), a("i64", value=2)],
        {"axes": (0, 1), "sizes": ("N-1", 3)},
        ENV,
    ),
    C([f(4, 7, 2), a("i32", value=4)], {"axes": (-2,), "sizes": (3,)}),
]
CASES["tg.dynamic_index"] = [
    C([f("N", 7, 3), a("i32", value=-1)], {"axes": (1,)}, ENV),
    C([f(4, 7, 2), a("i64", value=3), a("i32", value=0)], {"axes": (0, 2)}),
]
CASES["tg.gather"] = [
    C([f("N", 6), a("i32", "N", hi=5), a("i32", "N", hi=6)], {"axes": (0, 1)}, ENV),
    C([f(2, 5, 6, 3), a("i64", 4, 1, hi=5), a("i32", 7, hi=6)], {"axes": (1, 2)}),
    C([f("N", 6), a("i32", 2, 3, hi=6)], {"axes": (-1,)}, ENV),
]
CASES["tg.transpose"] = [
    C([f("N", 3, 4)], {"perm": (2, 0, 1)}, ENV),
    C([f("N", 3)], {"perm": None}, ENV),
]
CASES["tg.reshape"] = [
    C([f("T", "B", 4)], {"shape": ("T*B", -1)}, ENV),
    C([f(6, 4)], {"shape": (-1, 2, 3)}),
    C([f("T*B", 4)], {"shape": ("T", -1, 2)}, ENV),
    C([f("N", 6)], {"shape": (2, "N", 3)}, ENV),
    C([f("N", 6)], {"shape": (-1,)}, ENV),
]
CASES["tg.flatten"] = [
    C([f("N", 2, 3, 4)], {"axis": 1}, ENV),
    C([f("N", 2, 3, 4)], {"axis": 2}, ENV),
    C([f("N", 2, 3)], {"axis": 0}, ENV),
    C([f(2, 3, 4)], {"axis": -1}),
]
CASES["tg.concat"] = [
    C([f("N", 3), f("N", 2), a("f64", "N", 1)], {"axis": 1}, ENV),
    C([f("N", 3), f("M", 3)], {"axis": 0}, ENV),
    C([a("i32", 2, 3)], {"axis": -1}),
]
CASES["tg.stack"] = [
    C([f("N", 3), f("N", 3)], {"axis": 1}, ENV),
    C([f(2, 3), a("i32", 2, 3), f(2, 3)], {"axis": -1}),
]
CASES["tg.arange"] = [C([], {"n": "N"}, ENV), C([], {"n": 5, "dtype": "i64"})]
CASES["tg.one_hot"] = [
    C([a("i32", "N", hi=4)], {"n": 4}, ENV),
    C([a("i64", 2, 3, hi=6)], {"n": "K", "dtype": "f64"}, ENV),
]
CASES["tg.broadcast_to"] = [
    C([f(3, 1)], {"shape": ("N", 3, 4)}, ENV),
    C([f()], {"shape": (2, 3)}),
]
CASES["tg.softmax"] = [C([f("N", 5)], env=ENV), C([a("f64", 3, "N", 2)], {"axis": 1}, ENV)]
CASES["tg.log_softmax"] = CASES["tg.softmax"]
_p = f("N", 5, lo=0.1, hi=1.0)
CASES["tg.categorical_crossentropy"] = [
    C([_p, a("i32", "N", hi=5)], env=ENV),
    C([_p, f("N", 5, lo=0.0, hi=1.0)], env=ENV),
    C([f(2, 3, 4, lo=0.1, hi=1.0), a("f64", 2, 3, 4, lo=0.0, hi=1.0)]),
    C([f(4, lo=0.1, hi=1.0), a("i64", hi=4)]),
]
CASES["tg.crossentropy_logits"] = CASES["tg.categorical_crossentropy"]
CASES["tg.conv1d"] = [
    C([f("N", 3, "L"), f(4, 3, 3)], env=ENV),
    C([f("N", 3, "L"), f(4, 3, 4)], {"padding": "same", "stride": 2}, ENV),
    C([f("N", 3, "L"), f(4, 3, 3)], {"padding": "full", "stride": 3}, ENV),
    C([f(2, 3, 10), a("f64", 4, 3, 3)], {"padding": 2}),
]
CASES["tg.conv2d"] = [
    C([f("N", 1, "H", "W"), f(4, 1, 3, 2)], env=ENV),
    C([f("N", 1, "H", "W"), f(4, 1, 3, 2)], {"padding": "full", "stride": (2, 3)}, ENV),
    C([f("N", 2, "H", "W"), f(4, 2, 3, 4)], {"padding": "same"}, ENV),
    C([f("N", 2, "H", "W"), f(4, 2, 3, 4)], {"padding": "same", "stride": (2, 3)}, ENV),
    C([f(2, 2, 7, 6), f(3, 2, 3, 3)], {"padding": (1, 2), "stride": (2, 1), "flip": True}),
]
CASES["tg.max_pool2d"] = [
    C([f("N", 2, "H", "W")], {"size": (2, 2)}, ENV),
    C([f(3, "H", "W")], {"size": (3, 2), "stride": (1, 2)}, ENV),
    C([a("i32", 7, 5)], {"size": (2, 3), "stride": (2, 1)}),
]
# Gradient helper ops (the transposes that the vjp rules emit).
CASES["tg.index_grad"] = [
    C([f("N", 6)], {"items": (("ellipsis",), ("int", 2)), "shape": ("N", 6, 4)}, ENV),
    C([f(2, 1)], {"items": (("slice", 5, 1, -2), ("none",), ("int", -6)), "shape": (7, 6)}),
]
CASES["tg.dynamic_slice_grad"] = [
    C([f("N", 3), a("i64", value=2)], {"axes": (1,), "shape": ("N", 7)}, ENV),
    C([a("f64", 2, 3), a("i32", value=1), a("i32", value=4)], {"axes": (0, -1), "shape": (5, 7)}),
]
CASES["tg.scatter_add"] = [
    C([f("N"), a("i32", "N", hi=5), a("i32", "N", hi=6)], {"axes": (0, 1), "shape": ("N", 6)}, ENV),
    C([a("f64", 9, 2), a("i64", 9, hi=3)], {"axes": (0,), "shape": (3, 2)}),
]
CASES["tg.conv2d_input_grad"] = [
    C([f("N", 4, "H", "W"), f(4, 3, 3, 2)], {"shape": ("H", "W"), "padding": "same"}, ENV),
    C(
        [f(2, 3, 4, 8), a("f64", 3, 2, 3, 3)],
        {"shape": (7, 6), "padding": (1, 2), "stride": (2, 1), "flip": True},
    ),
    C([f(2, 4, 3, 3), f(4, 2, 3, 4)], {"shape": (5, 8), "padding": "same", "stride": (2, 3)}),
]
CASES["tg.conv2d_filter_grad"] = [
    C([f("N", 3, "H", "W"), f("N", 4, "H", "W")], {"shape": (3, 2), "padding": "same"}, ENV),
    C(
        [f(2, 2, 7, 6), a("f64", 2, 3, 4, 8)],
        {"shape": (3, 3), "padding": (1, 2), "stride": (2, 1), "flip": True},
    ),
    C([f(2, 3, 9, 8), f(2, 4, 7, 7)], {"shape": (3, 2)}),
]
CASES["tg.max_pool2d_grad"] = [
    C([f("N", 2, 9, 8), f("N", 2, 4, 4)], {"size": (2, 2)}, ENV),
    C([a("i32", 3, 9, 8), a("f64", 3, 7, 4)], {"size": (3, 2), "stride": (1, 2)}),
]
CASES["tg.max_pool2d_select"] = [
    C([f("N", 2, "H", "W"), f("N", 2, "H", "W")], {"size": (2, 2)}, ENV),
    C([a("i32", 3, 9, 8), a("f64", 3, 9, 8)], {"size": (3, 2), "stride": (1, 2)}),
]
# Ops of other families that have a NumPy reference.
CASES["tg.dim"] = [C([], {"dim": "N"}, ENV), C([], {"dim": "T*B", "dtype": "i64"}, ENV)]


def _dims_eval(v, env):
    if isinstance(v, (tuple, list)):
        return tuple(_dims_eval(x, env) for x in v)
    if isinstance(v, (int, str)):
        return eval_dim(v, env)
    return v


def _concrete_attrs(name, attrs, env):
    d = REGISTRY[name]
    return {k: (_dims_eval(v, env) if k in d.dim_attrs else v) for k, v in attrs.items()}


def _full_attrs(name, attrs):
    full = dict(REGISTRY[name].defaults)
    full.update(attrs)
    return full


def _array(spec: A, env, domain, rng):
    dt = DTYPES[spec.dtype].np
    shape = tuple(eval_dim(d, env) for d in spec.shape)
    if spec.value is not None:
        return np.full(shape, spec.value, dtype=dt)
    if dt.kind == "b":
        return rng.random(shape) < 0.5
    if dt.kind == "i":
        lo = 0 if spec.lo is None else int(spec.lo)
        hi = 3 if spec.hi is None else int(spec.hi)
        return rng.integers(lo, hi, size=shape).astype(dt)
    lo, hi = domain or (-2.0, 2.0)
    lo = lo if spec.lo is None else spec.lo
    hi = hi if spec.hi is None else spec.hi
    return rng.uniform(lo, hi, size=shape).astype(dt)


def _case_ids():
    out = []
    for name, cases in CASES.items():
        if name in REGISTRY:
            out += [pytest.param(name, i, id=f"{name}-{i}") for i in range(len(cases))]
    return out


def test_every_op_has_a_case():
    missing = [n for n, d in REGISTRY.items() if n.startswith("tg.") and d.numpy and n not in CASES]
    assert not missing, f"ops without a shape test case in tests/ops/test_op_shapes.py: {missing}"


@pytest.mark.parametrize("name,i", _case_ids())
def test_infer_matches_numpy(name, i):
    case = CASES[name][i]
    d = REGISTRY[name]
    env = case.env
    rng = np.random.default_rng(i)
    attrs = _full_attrs(name, case.attrs)
    sym_types = [TensorType(DTYPES[s.dtype], s.shape) for s in case.operands]
    con_types = [t.with_shape(eval_dim(x, env) for x in t.shape) for t in sym_types]
    con_attrs = _concrete_attrs(name, attrs, env)

    sym = infer_types(name, sym_types, attrs)
    # Builders pass attributes as given (lists), the verifier passes them frozen.
    assert infer_types(name, sym_types, {k: freeze_attr(v) for k, v in attrs.items()}) == sym
    con = infer_types(name, con_types, con_attrs)

    arrays = [_array(s, env, d.domain, rng) for s in case.operands]
    with np.errstate(all="ignore"):
        out = d.numpy(*arrays, **{k: freeze_attr(v) for k, v in con_attrs.items()})
    outs = out if isinstance(out, tuple) else (out,)
    assert len(outs) == len(con) == len(sym)
    for o, c, s in zip(outs, con, sym):
        assert isinstance(o, np.ndarray), f"{name}: numpy returned {type(o).__name__}"
        assert o.dtype == c.dtype.np, f"{name}: inferred {c.dtype}, NumPy gave {o.dtype}"
        assert o.shape == c.shape, f"{name}: inferred {c}, NumPy gave {o.shape}"
        assert s.dtype == c.dtype
        assert tuple(eval_dim(x, env) for x in s.shape) == o.shape, (
            f"{name}: symbolic {s} at {env} is not {o.shape}"
        )


def test_symbolic_cases_cover_most_ops():
    symbolic = {
        n
        for n, cases in CASES.items()
        for c in cases
        if any(isinstance(x, str) for s in c.operands for x in s.shape)
        or any(k in REGISTRY[n].dim_attrs for k in c.attrs if n in REGISTRY)
    }
    plain = set(CASES) - symbolic
    assert plain <= {"tg.constant"}, plain


# -- traits, domains, docs -------------------------------------------------------------------

NO_GRAD_OPS = set(COMPARE) | {
    "tg.and", "tg.or", "tg.not", "tg.sign", "tg.argmax", "tg.argmin", "tg.arange", "tg.one_hot",
}  # fmt: skip


def test_traits_domains_docs():
    for name in CASES:
        d = REGISTRY.get(name)
        if d is None or name == "tg.dim":
            continue
        assert PURE in d.traits, name
        assert d.doc, f"{name} has no doc"
        assert (NO_GRAD in d.traits) == (name in NO_GRAD_OPS), name
        if name in BINARY + COMPARE + UNARY + ["tg.where", "tg.clip", "tg.cast", "tg.not"]:
            assert ELEMENTWISE in d.traits, name
            lo, hi = d.domain
            assert lo < hi
        if name not in NO_GRAD_OPS and name != "tg.constant":
            assert d.domain is not None, f"{name} has no test domain"
    assert REGISTRY["tg.log"].domain == (0.1, 4.0)
    assert REGISTRY["tg.sqrt"].domain[0] > 0
    assert REGISTRY["tg.pow"].domain[0] > 0
    assert REGISTRY["tg.div"].domain[0] > 0
    assert REGISTRY["tg.reshape"].dim_attrs == ("shape",)
    assert REGISTRY["tg.broadcast_to"].dim_attrs == ("shape",)
    assert REGISTRY["tg.arange"].dim_attrs == ("n",)
    assert "sizes" in REGISTRY["tg.dynamic_slice"].dim_attrs


# -- dtype promotion ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["tg.add", "tg.div", "tg.pow", "tg.maximum", "tg.lt", "tg.and"])
def test_promotion_matches_numpy(name):
    d = REGISTRY[name]
    for x in DTYPES.values():
        for y in DTYPES.values():
            xs = np.ones((2, 3), dtype=x.np)
            ys = np.ones((3,), dtype=y.np)
            try:
                got = infer_types(name, [TensorType(x, (2, 3)), TensorType(y, (3,))], {})[0]
            except TypeError_ as e:
                assert e.message.startswith("`"), e.message
                try:
                    ref = d.numpy(xs, ys)
                except TypeError:
                    continue
                assert ref.dtype not in [t.np for t in DTYPES.values()], (name, x, y)
                continue
            ref = d.numpy(xs, ys)
            assert got.dtype.np == ref.dtype, (name, x, y, got, ref.dtype)
            assert got.shape == ref.shape


def test_promotion_examples():
    def t(name, *dts):
        types = [TensorType(DTYPES[n], (3,)) for n in dts]
        return str(infer_types(name, types, {})[0].dtype)

    assert t("tg.add", "f32", "f32") == "f32"
    assert t("tg.add", "i32", "f32") == "f64"  # NumPy 2
    assert t("tg.add", "i32", "i64") == "i64"
    assert t("tg.div", "i32", "i32") == "f64"
    assert t("tg.mul", "bool", "i32") == "i32"
    assert t("tg.lt", "f32", "i64") == "bool"
    assert t("tg.and", "bool", "bool") == "bool"
    assert t("tg.exp", "i32") == "f64"
    assert t("tg.relu", "i32") == "i32"
    assert t("tg.sigmoid", "f32") == "f32"
    assert t("tg.clip", "i32", "f64", "f64") == "i32"
