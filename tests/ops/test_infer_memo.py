"""The type rules remember the result type of operand types they have seen
(irc/ops/common.py elementwise_infer; matmul, the reductions and constants in
irc/ops/tensor.py): only answers that cannot depend on unknown dims (no dims
compared, or no unifier in force), so that broadcasting under unknown dims
(irc.ir.dims.unifying) and every error is still decided each time."""

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


def test_broadcast_matmul_and_reductions_give_one_type_object():
    a, b = TensorType(F32, ("N", 8)), TensorType(F32, ("N", 1))
    first, again = infer("tg.sub", a, b), infer("tg.sub", a, b)
    assert first == [TensorType(F32, ("N", 8))] and first[0] is again[0]
    w = TensorType(F32, (8, 3))
    first, again = infer("tg.matmul", a, w), infer("tg.matmul", a, w)
    assert first == [TensorType(F32, ("N", 3))] and first[0] is again[0]
    mean = REGISTRY["tg.mean"].infer
    first = mean([a], {"axis": (1,), "keepdims": True})
    assert first == [TensorType(F32, ("N", 1))]
    assert mean([a], {"axis": (1,), "keepdims": True})[0] is first[0]
    assert mean([a], {"axis": None, "keepdims": False}) == [TensorType(F32, ())]
    assert mean([a], {"axis": 0, "keepdims": False}) == [TensorType(F32, (8,))]


def test_a_remembered_reduction_does_not_answer_for_a_bool_axis():
    s = REGISTRY["tg.sum"].infer
    a = TensorType(F32, (2, 3))
    assert s([a], {"axis": 1, "keepdims": False}) == [TensorType(F32, (2,))]
    assert s([a], {"axis": (1,), "keepdims": False}) == [TensorType(F32, (2,))]
    for axis in (True, (True,)):
        with pytest.raises(TypeError_, match="integer"):
            s([a], {"axis": axis, "keepdims": False})


def test_matmul_under_unknown_dims_is_decided_each_time():
    u = Unifier()
    x = u.fresh("k")
    a, w = TensorType(F32, (2, x)), TensorType(F32, (8, 3))
    with pytest.raises(TypeError_):
        infer("tg.matmul", a, w)  # outside the unifier: inner dims differ
    with unifying(u):
        assert infer("tg.matmul", a, w) == [TensorType(F32, (2, 3))]  # binds k to 8
    with pytest.raises(TypeError_):
        infer("tg.matmul", a, w)  # not remembered from the unifier's answer


def test_constants_of_one_dtype_and_shape_share_their_type():
    import numpy as np

    c = REGISTRY["tg.constant"].infer
    one = c([], {"value": np.array(1.5, np.float32)})
    two = c([], {"value": np.array(-2.0, np.float32)})
    assert one == [TensorType(F32, ())] and one[0] is two[0]
    assert c([], {"value": np.array([1, 2], np.int32)}) == [TensorType(I32, (2,))]
    with pytest.raises(TypeError_):
        c([], {"value": np.array([1], np.dtype(">f4"))})  # not a dtype irc has


def _op(name, operand_types, result_type, attrs=None):
    """An op of block arguments of `operand_types` (verify_op reads types only)."""
    from irc.ir.core import Block, Op

    args = Block(list(operand_types)).args
    return Op(name, args, [result_type], attrs or {})


def test_verify_op_remembers_a_passed_pattern_only_for_its_own_types():
    from irc.ops.registry import verify_op

    a, s = TensorType(F32, ("N", 3)), TensorType(F32, ())
    r = TensorType(F32, ("N", 3))
    verify_op(_op("tg.mul", [a, s], r))
    verify_op(_op("tg.mul", [a, s], r))  # (the remembered pattern)
    # A wrong result type, a different op, other operand types: decided again.
    with pytest.raises(TypeError_, match="differ from inferred"):
        verify_op(_op("tg.mul", [a, s], TensorType(F32, ("N", 1))))
    with pytest.raises(TypeError_, match="differ from inferred"):
        verify_op(_op("tg.mul", [a, s], TensorType(F64, ("N", 3))))
    with pytest.raises(TypeError_, match="differ from inferred"):
        verify_op(_op("tg.eq", [a, s], r))  # (a comparison gives bool)
    with pytest.raises(TypeError_, match="differ from inferred"):
        verify_op(_op("tg.mul", [TensorType(F64, ("N", 3)), s], r))
    with pytest.raises(TypeError_):
        verify_op(_op("tg.mul", [a, TensorType(F32, (4,))], r))
    # Attributes are not in the key: an op with them is checked each time.
    with pytest.raises(TypeError_, match="differ from inferred"):
        verify_op(_op("tg.sum", [a], r, {"axis": None, "keepdims": False}))


def test_verify_op_decides_each_time_under_unknown_dims():
    from irc.ops.registry import verify_op

    u = Unifier()
    a, n = TensorType(F32, (u.fresh("u"),)), TensorType(F32, ("N",))
    add = _op("tg.add", [a, n], n)
    with unifying(u):
        verify_op(add)  # (u unifies with N)
    with pytest.raises(TypeError_):
        verify_op(add)  # (not remembered: outside the unifier the dims differ)
