"""The elementwise type rule remembers the result type of operand types it has
seen (irc/ops/common.py elementwise_infer): only where no dims were compared, so
that broadcasting under unknown dims (irc.ir.dims.unifying) and every error is
still decided each time."""

from __future__ import annotations

import pytest

import irc.ops  # noqa: F401  (registers the ops)
from irc.ir.dims import Unifier, unifying
from irc.ir.types import DTYPES, TensorType, TypeError_
from irc.ops.registry import REGISTRY

F32, F64, I32 = DTYPES["f32"], DTYPES["f64"], DTYPES["i32"]


def infer(name, *types):
    return REGISTRY[name].infer(list(types), {})


def test_same_operand_types_give_one_type_object():
    a, s = TensorType(F32, ("N", 3)), TensorType(F32, ())
    first = infer("tg.mul", a, s)
    again = infer("tg.mul", TensorType(F32, ("N", 3)), TensorType(F32, ()))
    assert first == again == [TensorType(F32, ("N", 3))]
    assert first[0] is again[0]
    assert first is not again  # a fresh list each time: callers may keep it


def test_dtypes_and_shapes_are_part_of_the_key():
    assert infer("tg.add", TensorType(F32, ("N",)), TensorType(F32, ("N",))) == [
        TensorType(F32, ("N",))
    ]
    assert infer("tg.add", TensorType(F64, ("N",)), TensorType(F64, ("N",))) == [
        TensorType(F64, ("N",))
    ]
    assert infer("tg.add", TensorType(I32, ("N",)), TensorType(F64, ("N",))) == [
        TensorType(F64, ("N",))
    ]
    assert infer("tg.add", TensorType(F32, ("M",)), TensorType(F32, ("M",))) == [
        TensorType(F32, ("M",))
    ]
    assert infer("tg.neg", TensorType(F32, (2, 5))) == [TensorType(F32, (2, 5))]
    assert infer("tg.neg", TensorType(I32, (2, 5))) == [TensorType(I32, (2, 5))]


def test_errors_are_raised_every_time():
    a, b = TensorType(F32, ("N",)), TensorType(F32, ("M",))
    for _ in range(2):
        with pytest.raises(TypeError_, match="broadcast"):
            infer("tg.add", a, b)
    t = TensorType(DTYPES["bool"], (3,))
    for _ in range(2):
        with pytest.raises(TypeError_, match="dtype bool"):
            infer("tg.tanh", t)


def test_broadcasting_under_unknown_dims_is_decided_each_time():
    u = Unifier()
    x = u.fresh("u")
    a, b = TensorType(F32, (x,)), TensorType(F32, ("N",))
    with pytest.raises(TypeError_):
        infer("tg.sub", a, b)  # outside the unifier: different dims
    with unifying(u):
        (t,) = infer("tg.sub", a, b)  # unifies u with N
        assert t.dtype == F32 and t.shape in ((x,), ("N",))
    with pytest.raises(TypeError_):
        infer("tg.sub", a, b)  # not remembered from the unifier's answer
    # and the other way round: a broadcast that works remembered nowhere
    assert infer("tg.sub", TensorType(F32, (1, 4)), TensorType(F32, (3, 1))) == [
        TensorType(F32, (3, 4))
    ]
