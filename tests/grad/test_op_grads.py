"""Every gradient rule of the registry against central differences, in f64.

For each op with a `vjp`, CASES holds operands (non-square shapes, named dims
where the op allows them) and attributes; each case builds
loss = sum(u * op(x...)) with a random u, expands its tg.grad with the grad
pass and compares the gradient with finite differences on the interpreter
(irc.gradcheck.verify_grad_fn), then does the same for the second derivative
(a Hessian-vector product), which also proves that each rule's ops have rules.
Float inputs are drawn from the op's `domain`. Registry completeness: every
pure, differentiable op has a rule and a case here (ALLOWED_WITHOUT_VJP lists
the exceptions and why).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest

import irc.ops  # noqa: F401  (registers the ops)
from irc.gradcheck import verify_grad_fn
from irc.ir.dims import eval_dim
from irc.ir.types import DTYPES, TensorType
from irc.ops.registry import NO_GRAD, PURE, REGISTRY


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
    return a("f64", *shape, **kw)


def i32(*shape, **kw):
    return a("i32", *shape, **kw)


@dataclass
class Case:
    operands: list
    attrs: dict = field(default_factory=dict)
    wrt: list | None = None  # operand indices to differentiate; default: the float ones
    second_order: bool = True


C = Case
ENV = {"N": 5, "M": 3, "H": 9, "W": 8, "L": 11}

CASES: dict = {}
for _n in ["tg.add", "tg.sub", "tg.mul", "tg.div", "tg.pow", "tg.maximum", "tg.minimum"]:
    CASES[_n] = [
        C([f("N", 3), f(1, 3)]),
        C([f(2, 1, 4), f(3, 1)]),
        C([f(), f(2, 3)]),
        C([i32(3, lo=1, hi=3), f("N", 3)]),
        C([f("N", 3), a("f32", 3)]),
    ]
for _n in [
    "tg.neg", "tg.abs", "tg.exp", "tg.log", "tg.log1p", "tg.sqrt", "tg.tanh", "tg.sigmoid",
    "tg.relu", "tg.softplus", "tg.square", "tg.sin", "tg.cos",
]:  # fmt: skip
    CASES[_n] = [C([f("N", 3)]), C([f()]), C([f(2, 3, 4)])]
CASES["tg.where"] = [
    C([a("bool", "N", 1), f("N", 3), f(3)]),
    C([a("bool", 2, 3), i32(3), f(2, 1)]),
]
CASES["tg.clip"] = [
    C([f("N", 3), f(1, lo=-1.0, hi=-0.2), f(3, lo=0.2, hi=1.0)]),
    C([f(4, 3), f(), f(2, 1, 1)]),  # lo > hi in places: the result is hi there
    C([f("N", 3), i32(), i32(value=1)]),
]
CASES["tg.cast"] = [C([f("N", 3)], {"dtype": "f32"}), C([f(2, 3)], {"dtype": "f64"})]
CASES["tg.matmul"] = [
    C([f("N", 5), f(5, 3)]),
    C([f(2, 1, 4, 5), f(3, 5, 6)]),
    C([f(5), f(5, 3)]),
    C([f("N", 4, 5), f(5)]),
    C([f(5), f(5)]),
    C([f(5), f(2, 5, 3)]),
    C([i32(2, 3), f(3, 4)]),
]
for _n in ["tg.sum", "tg.mean", "tg.max", "tg.min"]:
    CASES[_n] = [
        C([f("N", 3, 4)], {"axis": (1,)}),
        C([f("N", 3, 4)], {"axis": None}),
        C([f("N", 3, 4)], {"axis": (-1, 0), "keepdims": True}),
        C([f(2, 3)], {"axis": None, "keepdims": True}),
        C([f()], {"axis": None}),
    ]
CASES["tg.index"] = [
    C([f("N", 6)], {"items": (("slice", 1, None, None), ("int", -1))}),
    C([f("N", 6)], {"items": (("none",), ("ellipsis",), ("slice", None, None, 2))}),
    C([f("N", 6, 4)], {"items": (("int", 0), ("slice", None, None, -1))}),
    C([f("N", 6, 4)], {"items": (("ellipsis",), ("int", 2))}),
    C([f("N", 6, 4)], {"items": (("slice", None, -1, 2), ("none",), ("slice", -4, None, 1))}),
    C([f(7, 6)], {"items": (("slice", 5, 1, -2), ("int", -6))}),
    C([f(7)], {"items": (("int", 3),)}),
]
CASES["tg.index_grad"] = [
    C([f("N", 6)], {"items": (("ellipsis",), ("int", 2)), "shape": ("N", 6, 4)}),
    C([f(2, 1)], {"items": (("slice", 5, 1, -2), ("none",), ("int", -6)), "shape": (7, 6)}),
]
CASES["tg.dynamic_slice"] = [
    C([f("N", 7), i32(value=1), a("i64", value=2)], {"axes": (0, 1), "sizes": ("N-1", 3)}),
    C([f(4, 7, 2), i32(value=4)], {"axes": (-2,), "sizes": (3,)}),
]
CASES["tg.dynamic_slice_grad"] = [
    C([f("N", 3), a("i64", value=2)], {"axes": (1,), "shape": ("N", 7)}),
    C([f(2, 3), i32(value=1), a("i64", value=4)], {"axes": (0, -1), "shape": (5, 7)}),
]
CASES["tg.dynamic_index"] = [
    C([f("N", 7, 3), i32(value=-1)], {"axes": (1,)}),
    C([f(4, 7, 2), a("i64", value=3), i32(value=0)], {"axes": (0, 2)}),
    C([f("N", 3), i32(value=-5)], {"axes": (0,)}),
]
CASES["tg.gather"] = [
    C([f("N", 6), i32("N", hi=5), i32("N", hi=6)], {"axes": (0, 1)}),
    C([f(2, 5, 6, 3), a("i64", 4, 1, hi=5), i32(7, lo=-6, hi=6)], {"axes": (1, 2)}),
    C([f("N", 6), i32(2, 3, hi=6)], {"axes": (-1,)}),
    C([f(3, 2), i32(9, hi=3)], {"axes": (0,)}),  # repeated rows accumulate
]
CASES["tg.scatter_add"] = [
    C([f(9, 2), i32(9, hi=3)], {"axes": (0,), "shape": (3, 2)}),
    C([f("N"), i32("N", hi=5), i32("N", hi=6)], {"axes": (0, 1), "shape": ("N", 6)}),
]
CASES["tg.transpose"] = [
    C([f("N", 3, 4)], {"perm": (2, 0, 1)}),
    C([f("N", 3, 4)], {"perm": (-1, 0, 1)}),
    C([f("N", 3)], {"perm": None}),
]
CASES["tg.reshape"] = [
    C([f("N", 6)], {"shape": (2, "N", 3)}),
    C([f(6, 4)], {"shape": (-1, 2, 3)}),
    C([f("N", 6)], {"shape": (-1,)}),
    C([f(1)], {"shape": ()}),
]
CASES["tg.flatten"] = [
    C([f("N", 2, 3, 4)], {"axis": 1}),
    C([f("N", 2, 3)], {"axis": 0}),
    C([f()], {"axis": 0}),
]
CASES["tg.concat"] = [
    C([f("N", 3), f("N", 2), f("N", 1)], {"axis": 1}),
    C([f("N", 3), f("M", 3), f(2, 3)], {"axis": 0}),
    C([f(2, 3), i32(2, 2)], {"axis": -1}),
]
CASES["tg.stack"] = [
    C([f("N", 3), f("N", 3)], {"axis": 1}),
    C([f(2, 3), i32(2, 3), f(2, 3)], {"axis": -1}),
]
CASES["tg.broadcast_to"] = [
    C([f("N", 1, 4)], {"shape": ("N", 3, 4)}),
    C([f(3, 1)], {"shape": (2, 3, 4)}),
    C([f()], {"shape": (2, 3)}),
]
CASES["tg.softmax"] = [C([f("N", 5)]), C([f(3, "N", 2)], {"axis": 1})]
CASES["tg.log_softmax"] = CASES["tg.softmax"]
CASES["tg.categorical_crossentropy"] = [
    C([f("N", 5, lo=0.1, hi=1.0), i32("N", hi=5)]),
    C([f("N", 5, lo=0.1, hi=1.0), f("N", 5, lo=0.0, hi=1.0)]),
    C([f(2, 3, 4, lo=0.1, hi=1.0), f(2, 3, 4, lo=0.0, hi=1.0)]),
    C([f(4, lo=0.1, hi=1.0), a("i64", hi=4)]),
]
CASES["tg.crossentropy_logits"] = [
    C([f("N", 5), i32("N", hi=5)]),
    C([f("N", 5), f("N", 5, lo=0.0, hi=1.0)]),
    C([f(2, 3, 4), f(2, 3, 4, lo=0.0, hi=1.0)]),
    C([f(4), a("i64", hi=4)]),
]
CASES["tg.conv1d"] = [
    C([f("N", 3, "L"), f(4, 3, 3)]),
    C([f("N", 3, "L"), f(4, 3, 4)], {"padding": "same", "stride": 2}),
    C([f("N", 3, "L"), f(4, 3, 3)], {"padding": "full", "stride": 3}),
    C([f(2, 3, 10), f(4, 3, 3)], {"padding": 2, "flip": True}),
]
CASES["tg.conv2d"] = [
    C([f("N", 1, "H", "W"), f(4, 1, 3, 2)]),
    C([f("N", 1, "H", "W"), f(4, 1, 3, 2)], {"padding": "full", "stride": (2, 3)}),
    C([f(2, 2, "H", "W"), f(4, 2, 3, 4)], {"padding": "same"}),
    C([f(2, 2, "H", "W"), f(4, 2, 3, 4)], {"padding": "same", "stride": (2, 3)}),
    C([f(2, 2, 7, 6), f(3, 2, 3, 3)], {"padding": (1, 2), "stride": (2, 1), "flip": True}),
]
_FLIP = {"padding": (1, 2), "stride": (2, 1), "flip": True}
_SAME_STRIDED = {"padding": "same", "stride": (2, 3)}
CASES["tg.conv2d_input_grad"] = [
    C([f(2, 4, 7, 7), f(4, 3, 3, 2)], {"shape": (9, 8)}),
    C([f("N", 4, "H", "W"), f(4, 3, 3, 2)], {"shape": ("H", "W"), "padding": "same"}),
    C([f(2, 3, 4, 8), f(3, 2, 3, 3)], {"shape": (7, 6), **_FLIP}),
    C([f(2, 4, 3, 3), f(4, 2, 3, 4)], {"shape": (5, 8), **_SAME_STRIDED}),
]
CASES["tg.conv2d_filter_grad"] = [
    C([f(2, 3, 9, 8), f(2, 4, 7, 7)], {"shape": (3, 2)}),
    C([f("N", 3, "H", "W"), f("N", 4, "H", "W")], {"shape": (3, 2), "padding": "same"}),
    C([f(2, 2, 7, 6), f(2, 3, 4, 8)], {"shape": (3, 3), **_FLIP}),
    C([f(2, 2, 5, 8), f(2, 4, 3, 3)], {"shape": (3, 4), **_SAME_STRIDED}),
]
CASES["tg.max_pool2d"] = [
    C([f("N", 2, "H", "W")], {"size": (2, 2)}),
    C([f(3, "H", "W")], {"size": (3, 2), "stride": (1, 2)}),  # overlapping windows
]
CASES["tg.max_pool2d_grad"] = [
    C([f("N", 2, 9, 8), f("N", 2, 4, 4)], {"size": (2, 2)}, wrt=[1]),
    C([f(3, 9, 8), f(3, 7, 4)], {"size": (3, 2), "stride": (1, 2)}, wrt=[1]),
]
CASES["tg.max_pool2d_select"] = [
    C([f("N", 2, "H", "W"), f("N", 2, "H", "W")], {"size": (2, 2)}, wrt=[1]),
    C([f(3, "H", "W"), f(3, "H", "W")], {"size": (3, 2), "stride": (1, 2)}, wrt=[1]),
]

# Pure ops whose operands may be float but which have no `vjp`, and why.
ALLOWED_WITHOUT_VJP = {
    "tg.scan": "differentiated by the grad pass itself (passes/grad.py REGION_VJPS)",
    "tg.grad": "a gradient request: the grad pass replaces it",
    "func.call": "inlined before the grad pass runs",
    "tg.constant": "no operands",
    "tg.dim": "no operands",
    "tg.read": "no operands (a shared variable's value)",
    "tg.fused": "made by fuse-elementwise, which runs after the grad pass",
}


def _array(spec: A, domain, rng):
    dt = DTYPES[spec.dtype].np
    shape = tuple(eval_dim(d, ENV) for d in spec.shape)
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
    return [pytest.param(n, i, id=f"{n}-{i}") for n, cs in CASES.items() for i in range(len(cs))]


@pytest.mark.parametrize("name,i", _case_ids())
def test_gradient_matches_finite_differences(name, i):
    case = CASES[name][i]
    d = REGISTRY[name]
    rng = np.random.default_rng(100 + i)
    arrays = [_array(s, d.domain, rng) for s in case.operands]
    types = [TensorType(DTYPES[s.dtype], s.shape) for s in case.operands]
    records = verify_grad_fn(
        lambda b, *xs: b.op(name, *xs, **case.attrs),
        arrays,
        types,
        wrt=case.wrt,
        seed=i,
        second_order=case.second_order,
    )
    assert records
    bad = [str(r) for r in records if not r.ok]
    assert not bad, "\n".join(bad)


def test_every_differentiable_op_has_a_vjp():
    missing = [
        n
        for n, d in REGISTRY.items()
        # The grad pass works on the tg dialect; loop-level ops (scalar.*, loop.*)
        # only exist after lower-to-loops.
        if n.startswith("tg.")
        and PURE in d.traits
        and NO_GRAD not in d.traits
        and d.vjp is None
        and n not in ALLOWED_WITHOUT_VJP
    ]
    assert not missing, f"pure, differentiable ops without a vjp: {missing}"
    for n in ALLOWED_WITHOUT_VJP:
        assert n in REGISTRY and REGISTRY[n].vjp is None, n


def test_every_vjp_has_a_case():
    with_vjp = {n for n, d in REGISTRY.items() if d.vjp is not None}
    assert with_vjp - set(CASES) == set(), "ops with a vjp but no case in CASES"
    assert set(CASES) - with_vjp == set(), "CASES for ops without a vjp"
    for n in with_vjp:
        assert NO_GRAD not in REGISTRY[n].traits, n
