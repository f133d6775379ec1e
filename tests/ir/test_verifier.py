"""Tests of irc.ir.verifier: one test per kind of broken invariant, each
checking the message and that it points at the op's location."""

import numpy as np
import pytest

import irc.ops  # noqa: F401  (registers ops for verify_op)
from irc.ir.core import Block, Loc, Module, Op, Region, SymbolRef
from irc.ir.errors import CompileError
from irc.ir.parser import parse_module, parse_type
from irc.ir.types import F32, TensorType, TypeError_
from irc.ir.verifier import ISOLATED_OPS, _QuickCheck, verify
from irc.ops import OpBuilder, verify_op

GOOD = """\
module {
  tg.global {sym_name = "W", type = f32[4, 3], init = "zeros"}
  func.func @probs(%x: f32[N, 4]) -> (f32[N, 3]) attributes {visibility = "private"} {
    %W = tg.read {sym = @W} : f32[4, 3]
    %0 = tg.matmul %x, %W : f32[N, 3]
    func.return %0
  }
  func.func @train(%x: f32[B, 4], %lr: f32) -> (f32) attributes {visibility = "public", arg_defaults = [none, 0.1]} {
    %W = tg.read {sym = @W} : f32[4, 3]
    %p = func.call %x {callee = @probs} : f32[B, 3]
    %0 = tg.exp %p : f32[B, 3]
    %1 = tg.sum %0 {axis = none, keepdims = false} : f32
    %2 = tg.mul %W, %lr : f32[4, 3]
    tg.update %2 {sym = @W}
    func.return %1
  }
}
"""


def good():
    return parse_module(GOOD, "m.ir")


def ops_named(m, name):
    return [op for op in m.walk() if op.name == name]


def fails(m, message, at=None, op_check=None):
    if m.name in ISOLATED_OPS:
        # The one-walk check of right IR must not take it (its answer is then
        # False or an exception, and the full walks find the message).
        try:
            taken = _QuickCheck(m, op_check).run()
        except Exception:
            taken = False
        assert taken is False
    with pytest.raises(CompileError) as e:
        verify(m, op_check)
    assert message in e.value.message, e.value.message
    if at is not None:
        assert e.value.loc == at
    return e.value


def test_good_module_verifies_with_the_registry():
    m = good()
    verify(m)
    verify(m, op_check=verify_op)
    verify(m.lookup("train"), op_check=verify_op)  # a function on its own
    # (taken by the one-walk check, which the broken modules below are not)
    assert _QuickCheck(m, verify_op).run() is True
    assert _QuickCheck(m.lookup("train"), verify_op).run() is True


def test_stale_and_missing_uses():
    m = good()
    exp = ops_named(m, "tg.exp")[0]
    p = exp.operands[0]
    p.uses.remove((exp, 0))
    fails(m, "operand #0 of tg.exp is missing from its value's use list", at=exp.loc)
    m = good()
    exp = ops_named(m, "tg.exp")[0]
    # A use list holds each (op, operand index) once: a repeated record cannot arise.
    exp.operands[0].uses.append((exp, 0))
    assert list(exp.operands[0].uses).count((exp, 0)) == 1
    verify(m)
    m = good()
    exp, add = ops_named(m, "tg.exp")[0], ops_named(m, "tg.mul")[0]
    exp.operands[0].uses.append((add, 0))
    fails(m, "has a stale use by tg.mul (operand #0)")


@pytest.mark.parametrize("listed_twice", ["tg.update", "tg.mul"])
def test_a_stale_use_is_found_next_to_an_op_listed_twice(listed_twice):
    # The one-walk check counts uses instead of checking each: an op listed
    # twice in its block (tg.update: one operand slot more, no result;
    # tg.mul: two slots and its result's one use more) would make up for the
    # stale use's extra count, so it must not take the block.
    m = good()
    exp, mul = ops_named(m, "tg.exp")[0], ops_named(m, "tg.mul")[0]
    op = ops_named(m, listed_twice)[0]
    block = op.parent
    block.ops.insert(block.ops.index(op), op)
    exp.operands[0].uses.append((mul, 0))
    fails(m, "has a stale use by tg.mul (operand #0)")


@pytest.mark.parametrize("listed_twice", ["tg.update", "tg.mul"])
def test_an_op_listed_twice_is_an_error(listed_twice):
    m = good()
    op = ops_named(m, listed_twice)[0]
    block = op.parent
    block.ops.insert(block.ops.index(op), op)
    fails(m, f"{listed_twice} is listed twice in the IR")


def test_op_removed_without_erase_leaves_a_use():
    m = good()
    s = ops_named(m, "tg.sum")[0]
    f = m.lookup("train")
    exp = ops_named(m, "tg.exp")[0]
    # Detach tg.sum without dropping its operands, after rerouting its user.
    ret = f.regions[0].block.terminator
    ret.set_operand(0, f.regions[0].block.args[1])
    f.regions[0].block.remove(s)
    fails(m, "is used by a tg.sum that is not in the IR (removed without erase?)", at=exp.loc)


def test_use_before_definition():
    m = good()
    exp, s = ops_named(m, "tg.exp")[0], ops_named(m, "tg.sum")[0]
    exp.set_operand(0, s.result)
    fails(m, "operand #0 of tg.exp is used before it is defined (by tg.sum)", at=Loc("m.ir", 11, 5))
    m = good()
    exp = ops_named(m, "tg.exp")[0]
    exp.set_operand(0, exp.result)
    fails(m, "operand #0 of tg.exp is used before it is defined (by tg.exp)")


def test_functions_are_isolated():
    m = good()
    x_of_probs = m.lookup("probs").regions[0].block.args[0]
    exp = ops_named(m, "tg.exp")[0]
    exp.set_operand(0, x_of_probs)
    fails(m, "operand #0 of tg.exp is a block argument of func.func used outside its scope")
    # Verified on its own, a function still sees nothing from outside.
    fails(m.lookup("train"), "operand #0 of tg.exp is not defined in this function or module")


SCAN = """\
func.func @f(%x: f32[3]) -> (f32[3]) {
  %h = test.scan %x : f32[3] ({
  ^bb0(%i: f32[3]):
    %0 = tg.exp %i : f32[3]
    tg.yield %0
  })
  %1 = tg.exp %h : f32[3]
  func.return %1
}
"""


def test_region_values_are_scoped():
    m = parse_module(SCAN, "s.ir")
    verify(m)
    scan, outer_exp = ops_named(m, "test.scan")[0], ops_named(m, "tg.exp")[1]
    body = scan.regions[0].block
    outer_exp.set_operand(0, body.args[0])
    fails(
        m,
        "operand #0 of tg.exp is a block argument of test.scan used outside its scope",
        at=outer_exp.loc,
    )
    m = parse_module(SCAN, "s.ir")
    scan, outer_exp = ops_named(m, "test.scan")[0], ops_named(m, "tg.exp")[1]
    outer_exp.set_operand(0, scan.regions[0].block.ops[0].result)
    fails(m, "operand #0 of tg.exp is a result of tg.exp used outside its scope")
    # A region may not use the result of the op that holds it.
    m = parse_module(SCAN, "s.ir")
    scan = ops_named(m, "test.scan")[0]
    inner = scan.regions[0].block.ops[0]
    inner.set_operand(0, scan.result)
    fails(m, "operand #0 of tg.exp is used before it is defined (by test.scan)")


def test_nested_op_verified_alone_takes_outer_values_as_given():
    m = parse_module(SCAN, "s.ir")
    verify(ops_named(m, "test.scan")[0])


def test_function_needs_a_return():
    m = good()
    f = m.lookup("probs")
    f.regions[0].block.terminator.erase()
    fails(m, "function @probs does not end with func.return", at=Loc("m.ir", 5, 5))
    empty = Op(
        "func.func",
        attrs={"sym_name": "e", "res_types": ()},
        regions=[Region([Block()])],
        loc=Loc("e", 1, 1),
    )
    fails(empty, "function @e does not end with func.return", at=Loc("e", 1, 1))
    two = Op(
        "func.func", attrs={"sym_name": "t", "res_types": ()}, regions=[Region([Block(), Block()])]
    )
    fails(two, "function @t must have one region with one block")


def test_terminator_must_be_last():
    m = good()
    f = m.lookup("probs")
    b = f.regions[0].block
    b.append(Op("tg.exp", [b.args[0]], [parse_type("f32[N, 4]")], loc=Loc("m.ir", 99, 1)))
    fails(m, "func.return must be the last op of its block", at=Loc("m.ir", 6, 5))
    m = parse_module(SCAN)
    body = ops_named(m, "test.scan")[0].regions[0].block
    body.insert(0, Op("tg.yield", [body.args[0]]))
    fails(m, "tg.yield must be the last op of its block")


def test_return_outside_a_function():
    m = parse_module(SCAN)
    body = ops_named(m, "test.scan")[0].regions[0].block
    body.terminator.erase()
    body.append(Op("func.return", [body.args[0]]))
    fails(m, "func.return outside a func.func")


def test_duplicate_symbols():
    text = GOOD.replace(
        "  func.func @train", '  tg.global {sym_name = "probs", type = f32}\n  func.func @train'
    )
    fails(parse_module(text, "m.ir"), "redefinition of symbol @probs", at=Loc("m.ir", 8, 3))


def test_unknown_and_wrong_symbols():
    fails(
        parse_module(GOOD.replace("callee = @probs", "callee = @nope")),
        "func.call references unknown symbol @nope",
    )
    fails(
        parse_module(GOOD.replace("callee = @probs", "callee = @W")),
        "func.call of @W: @W is a tg.global, not a func.func",
    )
    m = parse_module(GOOD.replace("tg.update %2 {sym = @W}", "tg.update %2 {sym = @V}"), "m.ir")
    fails(m, "tg.update references unknown symbol @V", at=Loc("m.ir", 14, 5))
    m = parse_module(GOOD.replace("%W = tg.read {sym = @W}", "%W = tg.read {sym = @probs}"))
    fails(m, "tg.read of @probs: @probs is a func.func, not a tg.global")
    fails(
        parse_module(GOOD.replace("{sym = @W}", '{sym = "W"}')),
        "tg.read needs a symbol reference attribute 'sym'",
    )


def test_read_and_update_types_match_the_global():
    m = parse_module(GOOD.replace("type = f32[4, 3], init", "type = f64[4, 3], init"), "m.ir")
    e = fails(
        m,
        "tg.read of @W has type f32[4, 3] but the global has type f64[4, 3]",
        at=Loc("m.ir", 4, 5),
    )
    assert str(e).startswith("m.ir:4:5: error: tg.read of @W has type")
    m = good()
    upd = ops_named(m, "tg.update")[0]
    upd.set_operand(0, m.lookup("train").regions[0].block.args[1])
    fails(m, "tg.update of @W stores f32 but the global has type f32[4, 3]")


def test_call_arity():
    two = GOOD.replace(
        "%p = func.call %x {callee = @probs} : f32[B, 3]",
        "%p = func.call %x, %x {callee = @probs} : f32[B, 3]",
    )
    fails(parse_module(two), "func.call of @probs passes 2 arguments but @probs takes 1")
    none = GOOD.replace(
        "%p = func.call %x {callee = @probs} : f32[B, 3]",
        "%p, %q = func.call %x {callee = @probs} : f32[B, 3], f32",
    )
    fails(parse_module(none), "func.call of @probs has 2 results but @probs returns 1")
    # A trailing parameter with a default may be left out, not a required one.
    caller = (
        "  func.func @g(%x: f32[B, 4]) -> (f32) {\n"
        "    %0 = func.call {args} {callee = @train} : f32\n"
        "    func.return %0\n"
        "  }\n"
        "}\n"
    )
    base = GOOD[: -len("}\n")]
    m = parse_module(base + caller.replace("{args}", "%x"))
    assert len(m.lookup("g").regions[0].block.ops[0].operands) == 1
    verify(m)
    m = parse_module(base + caller.replace("{args}", "%x, %x, %x"))
    fails(m, "func.call of @train passes 3 arguments but @train takes 1 to 2")


def test_types_and_attributes_are_well_formed():
    m = good()
    exp = ops_named(m, "tg.exp")[0]
    exp.results[0].type = TensorType(F32, ("T*B",))
    fails(
        m,
        "result #0 of tg.exp has type f32[T*B] whose dim 'T*B' is not in canonical form",
        at=exp.loc,
    )
    m = good()
    exp = ops_named(m, "tg.exp")[0]
    exp.attrs["bad"] = [1, 2]  # set directly, so never frozen into a tuple
    fails(m, "attribute 'bad' of tg.exp has a value of unsupported kind list")
    exp.attrs["bad"] = np.zeros(2, np.float16)
    fails(m, "attribute 'bad' of tg.exp is an array of unsupported dtype float16")
    m = good()
    m.lookup("probs").regions[0].block.args[0].type = "f32"
    fails(m, "block argument #0 of func.func has no tensor type ('f32')")


def test_parent_links():
    m = good()
    exp = ops_named(m, "tg.exp")[0]
    exp.parent = Block()
    fails(m, "tg.exp has a wrong parent block", at=exp.loc)
    m = good()
    m.lookup("probs").regions[0].parent = None
    fails(m, "a region of func.func has a wrong parent")
    m = good()
    r = ops_named(m, "tg.exp")[0].results[0]
    r.index = 3
    fails(m, "result #0 of tg.exp has a wrong owner or index")


def test_op_check_errors_become_located_compile_errors():
    m = good()
    exp = ops_named(m, "tg.exp")[0]
    exp.results[0].type = parse_type("f32[B, 4]")
    e = fails(
        m,
        "tg.exp: 'tg.exp' result types f32[B, 4] differ from inferred f32[B, 3]",
        at=exp.loc,
        op_check=verify_op,
    )
    assert str(e).startswith("m.ir:11:5: error: tg.exp: ")
    verify(m)  # without op_check only structure is checked

    def check(op):
        if op.name == "tg.sum":
            raise TypeError_("no sums today")

    fails(good(), "tg.sum: no sums today", at=Loc("m.ir", 12, 5), op_check=check)


def test_op_check_runs_on_every_op_after_the_structure():
    seen = []
    verify(good(), op_check=lambda op: seen.append(op.name))
    assert seen[0] == "builtin.module" and seen.count("func.func") == 2 and "tg.update" in seen


def test_built_module_verifies():
    m = Module()
    b = OpBuilder(m.body, loc=Loc("b.tg", 1, 1))
    b.create("tg.global", attrs={"sym_name": "W", "type": parse_type("f32[4, 3]")})
    body = Block([parse_type("f32[N, 4]")], ["x"])
    b.create(
        "func.func",
        attrs={"sym_name": "f", "res_types": (parse_type("f32"),)},
        regions=[Region([body])],
    )
    fb = OpBuilder(body, loc=Loc("b.tg", 2, 1))
    w = fb.create("tg.read", [], [parse_type("f32[4, 3]")], {"sym": SymbolRef("W")}).result
    s = fb.sum(fb.exp(fb.matmul(body.args[0], w)))
    fb.create("func.return", [s])
    verify(m, op_check=verify_op)
