"""Tests of irc.ir.core: use lists, replace_all_uses_with, erase, clone, walk,
blocks, regions and modules."""

import numpy as np
import pytest

from irc.ir.core import Block, Loc, Module, Op, Region, SymbolRef, attr_key, freeze_attr
from irc.ir.types import F32, I32, TensorType
from irc.ir.verifier import verify

T = TensorType(F32, ("N",))
S = TensorType(F32, ())


def _func(n_args=1, name="f"):
    m = Module()
    f = Op(
        "func.func",
        attrs={"sym_name": name, "res_types": (T,)},
        regions=[Region([Block([T] * n_args, [f"a{i}" for i in range(n_args)])])],
    )
    m.body.append(f)
    return m, f, f.regions[0].block


def _add(block, x, y, name=None):
    return block.append(Op("tg.add", [x, y], [T], result_names=[name])).result


def test_use_lists_follow_operands():
    _, _, b = _func(2)
    x, y = b.args
    s = _add(b, x, y)
    t = _add(b, s, x)
    assert x.uses == [(s.op, 0), (t.op, 1)]
    assert y.uses == [(s.op, 1)]
    assert s.uses == [(t.op, 0)]
    t.op.set_operand(1, y)
    assert x.uses == [(s.op, 0)]
    assert (t.op, 1) in y.uses
    t.op.set_operands([x, x])
    assert s.uses == [] and x.uses.count((t.op, 0)) == 1 and x.uses.count((t.op, 1)) == 1
    t.op.drop_operands()
    assert t.op.operands == [] and all(u[0] is not t.op for u in x.uses)
    assert not t.has_uses()


def test_add_operand_rejects_non_values():
    with pytest.raises(TypeError):
        Op("tg.add", [1.0])


def test_replace_all_uses_with():
    m, _, b = _func(2)
    x, y = b.args
    s = _add(b, x, x)
    t = _add(b, s, s)
    b.append(Op("func.return", [t]))
    x.replace_all_uses_with(y)
    assert s.op.operands == [y, y] and x.uses == [] and len(y.uses) == 2
    s.replace_all_uses_with(s)  # replacing by itself is a no-op
    assert len(s.uses) == 2
    verify(m)


def test_erase_requires_no_uses_and_drops_operands():
    m, _, b = _func(1)
    (x,) = b.args
    s = _add(b, x, x)
    t = _add(b, s, x)
    b.append(Op("func.return", [x]))
    with pytest.raises(ValueError):
        s.op.erase()
    t.op.erase()
    assert t.op.parent is None and t.op not in b.ops
    assert s.uses == [] and x.uses == [(s.op, 0), (s.op, 1), (b.ops[-1], 0)]
    s.op.erase()
    assert x.uses == [(b.ops[-1], 0)]
    verify(m)


def test_erase_op_with_region_drops_nested_uses():
    _, _, b = _func(1)
    (x,) = b.args
    body = Block([S], ["i"])
    body.append(Op("tg.add", [x, body.args[0]], [T]))
    body.append(Op("tg.yield", [body.ops[0].result]))
    loop = b.append(Op("tg.scan", [], [T], regions=[Region([body])]))
    assert len(x.uses) == 1
    loop.erase()
    assert x.uses == []


def test_clone_remaps_operands_and_regions():
    m, f, b = _func(1)
    (x,) = b.args
    body = Block([T], ["i"])
    inner = body.append(Op("tg.mul", [x, body.args[0]], [T], {"k": [1, 2]}))
    body.append(Op("tg.yield", [inner.result]))
    loop = b.append(Op("tg.scan", [x], [T], {"n": 3}, [Region([body])], Loc("a.tg", 1, 2), ["h"]))
    b.append(Op("func.return", [loop.result]))
    mapping = {}
    g = f.clone(mapping)
    assert g is not f and g.attrs == f.attrs
    gb = g.regions[0].block
    assert mapping[x] is gb.args[0]
    gloop = gb.ops[0]
    assert gloop.loc == Loc("a.tg", 1, 2) and gloop.result.name_hint == "h"
    assert gloop.operands == [gb.args[0]] and gloop.attrs["n"] == 3
    ginner = gloop.regions[0].block.ops[0]
    assert ginner.operands[0] is gb.args[0]  # remapped through the function's args
    assert ginner.operands[1] is gloop.regions[0].block.args[0]
    assert ginner.attrs["k"] == (1, 2)
    # The original is untouched.
    assert inner.operands[0] is x and len(x.uses) == 2
    m2 = Module()
    m2.body.append(g)
    verify(m2)
    verify(m)


def test_clone_without_mapping_keeps_outer_operands():
    _, _, b = _func(1)
    (x,) = b.args
    op = b.append(Op("tg.add", [x, x], [T]))
    c = op.clone()
    assert c.operands == [x, x] and len(x.uses) == 4


def test_module_clone_and_symbols():
    m, f, b = _func(1)
    b.append(Op("func.return", [b.args[0]]))
    g = Op("tg.global", attrs={"sym_name": "W", "type": T})
    m.body.insert(0, g)
    assert m.symbols() == {"W": g, "f": f}
    assert m.lookup("f") is f and m.lookup("nope") is None
    assert m.functions() == [f]
    c = m.clone()
    assert isinstance(c, Module) and [op.name for op in c.body.ops] == ["tg.global", "func.func"]
    assert c.lookup("f") is not f
    verify(c)


def test_walk_is_preorder_and_tolerates_erasing():
    m, _, b = _func(1)
    (x,) = b.args
    body = Block([T])
    body.append(Op("tg.neg", [body.args[0]], [T]))
    body.append(Op("tg.yield", [body.ops[0].result]))
    b.append(Op("tg.add", [x, x], [T]))
    b.append(Op("tg.scan", [x], [T], regions=[Region([body])]))
    b.append(Op("func.return", [x]))
    names = [op.name for op in m.walk()]
    assert names == [
        "builtin.module",
        "func.func",
        "tg.add",
        "tg.scan",
        "tg.neg",
        "tg.yield",
        "func.return",
    ]
    # walk() iterates over a copy of each block's op list, so erasing the
    # current op is safe.
    for op in m.walk():
        if op.name == "tg.add":
            op.erase()
    assert [op.name for op in b.ops] == ["tg.scan", "func.return"]


def test_block_insertion_and_args():
    _, _, b = _func(1)
    (x,) = b.args
    a = b.append(Op("tg.a", [x], [T]))
    c = b.append(Op("tg.c", [x], [T]))
    bop = b.insert_before(c, Op("tg.b", [x], [T]))
    d = b.insert_after(c, Op("tg.d", [x], [T]))
    assert [o.name for o in b.ops] == ["tg.a", "tg.b", "tg.c", "tg.d"]
    assert b.index_of(d) == 3 and b.terminator is d
    with pytest.raises(ValueError):
        b.append(a)  # already in a block
    b.remove(bop)
    assert bop.parent is None and b.index_of(c) == 1
    with pytest.raises(ValueError):
        b.index_of(bop)
    y = b.add_arg(S, "y")
    z = b.add_arg(S)
    assert y.index == 1 and z.index == 2 and y.owner is b
    with pytest.raises(ValueError):
        b.erase_arg(0)  # used
    b.erase_arg(1)
    assert z.index == 1 and b.args == [x, z]
    assert a.parent_op().name == "func.func" and b.parent_op().name == "func.func"


def test_op_accessors():
    _, f, b = _func(1)
    (x,) = b.args
    two = b.append(Op("tg.split", [x], [T, T]))
    with pytest.raises(ValueError):
        _ = two.result
    assert two.results[1].index == 1 and two.results[1].owner is two
    assert two.attr("missing", 7) == 7
    assert f.is_ancestor_of(two) and not two.is_ancestor_of(f)
    assert "tg.split" in repr(two) and "OpResult" in repr(two.results[0])
    assert "BlockArgument" in repr(x)


def test_attributes_are_frozen_and_keyed_by_value():
    arr = np.arange(3, dtype=np.float32)
    op = Op("tg.c", attrs={"v": arr, "l": [1, [2, 3]], "g": np.float32(0.5), "s": SymbolRef("W")})
    assert op.attrs["l"] == (1, (2, 3))
    assert type(op.attrs["g"]) is float
    assert not op.attrs["v"].flags.writeable
    arr[0] = 9  # the attribute holds a copy
    assert op.attrs["v"][0] == 0
    assert attr_key(0.0) != attr_key(-0.0)
    assert attr_key(float("nan")) == attr_key(float("nan"))
    assert attr_key(True) != attr_key(1)
    assert attr_key(freeze_attr(np.zeros(2, np.float32))) != attr_key(freeze_attr(np.zeros(2)))
    hash(attr_key(op.attrs["v"]))
    assert str(SymbolRef("W")) == "@W" and str(Loc("a.tg", 3, 4)) == "a.tg:3:4"


def test_types_of_results_and_args():
    b = Block([TensorType(I32, (3,))], ["k"])
    assert str(b.args[0].type) == "i32[3]" and b.args[0].name_hint == "k"
