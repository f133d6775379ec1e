"""Unit tests of irc.ir.printer and irc.ir.parser: the text of each construct,
value naming, locations, and parse errors checked as text (file:line:col)."""

import time

import numpy as np
import pytest

import irc.ops  # noqa: F401  (registers the ops verify_op knows)
from irc.ir.core import Block, Loc, Module, Op, Region, SymbolRef
from irc.ir.errors import CompileError
from irc.ir.parser import parse_module, parse_type
from irc.ir.printer import format_attr, print_module, print_op
from irc.ir.types import BOOL, F32, F64, I32, I64, TensorType
from irc.ir.verifier import verify
from irc.ops import OpBuilder, verify_op


def ty(text):
    return parse_type(text)


def logreg_module():
    """A tg.global, a function using tg.read/matmul/add/sum/func.return, and a
    fake scan-like op with a region whose block has arguments and a tg.yield."""
    m = Module(attrs={"seed": 0})
    top = OpBuilder(m.body, loc=Loc("logreg.tg", 1, 1))
    top.create("tg.global", attrs={"sym_name": "W", "type": ty("f32[64, 10]"), "init": "zeros"})
    body = Block([ty("f32[N, 64]"), ty("f32")], ["x", "lr"])
    f = top.create(
        "func.func",
        attrs={
            "sym_name": "train",
            "res_types": (ty("f32"), ty("f32[N, 10]")),
            "visibility": "public",
            "arg_defaults": (None, 0.1),
        },
        regions=[Region([body])],
    )
    b = OpBuilder(body, loc=Loc("logreg.tg", 8, 20))
    x, lr = body.args
    W = b.create(
        "tg.read", [], [ty("f32[64, 10]")], {"sym": SymbolRef("W")}, result_names=["W"]
    ).result
    y = b.matmul(x, W)
    z = b.add(y, y)
    s = b.sum(z)
    loop_body = Block([ty("f32[10]"), ty("f32")], ["row", "acc"])
    inner = OpBuilder(loop_body)
    acc2 = inner.add(loop_body.args[1], lr)
    inner.create("tg.yield", [acc2])
    acc = b.create(
        "test.scan",
        [z, s],
        [ty("f32")],
        {"reverse": False},
        [Region([loop_body])],
        result_names=["acc"],
    ).result
    b.create("func.return", [acc, z])
    return m, f


LOGREG_TEXT = """\
module attributes {seed = 0} {
  tg.global {sym_name = "W", type = f32[64, 10], init = "zeros"}
  func.func @train(%x: f32[N, 64], %lr: f32) -> (f32, f32[N, 10]) attributes {visibility = "public", arg_defaults = [none, 0.1]} {
    %W = tg.read {sym = @W} : f32[64, 10]
    %0 = tg.matmul %x, %W : f32[N, 10]
    %1 = tg.add %0, %0 : f32[N, 10]
    %2 = tg.sum %1 {axis = none, keepdims = false} : f32
    %acc = test.scan %1, %2 {reverse = false} : f32 ({
    ^bb0(%row: f32[10], %acc_1: f32):
      %3 = tg.add %acc_1, %lr : f32
      tg.yield %3
    })
    func.return %acc, %1
  }
}
"""


def test_print_module_text():
    m, _ = logreg_module()
    assert print_module(m) == LOGREG_TEXT


def test_parse_module_text_round_trips_and_verifies():
    m = parse_module(LOGREG_TEXT, "logreg.ir")
    assert isinstance(m, Module) and m.attrs == {"seed": 0}
    assert print_module(m) == LOGREG_TEXT
    f = m.lookup("train")
    assert f.attrs["res_types"] == (ty("f32"), ty("f32[N, 10]"))
    assert f.attrs["arg_defaults"] == (None, 0.1)
    assert [a.name_hint for a in f.regions[0].block.args] == ["x", "lr"]
    scan = [op for op in m.walk() if op.name == "test.scan"][0]
    assert scan.result.name_hint == "acc"
    assert [a.name_hint for a in scan.regions[0].block.args] == ["row", "acc_1"]
    # %0 is unnamed; the function's own values keep their hints.
    assert f.regions[0].block.ops[1].result.name_hint is None
    assert scan.regions[0].block.ops[0].operands[1] is f.regions[0].block.args[1]
    verify(m)  # structure, symbols; the fake scan op is not registered
    with pytest.raises(CompileError, match="unknown op 'test.scan'"):
        verify(m, op_check=verify_op)


def test_print_with_locs():
    m, _ = logreg_module()
    text = print_module(m, locs=True)
    lines = text.splitlines()
    assert lines[1].endswith('init = "zeros"} loc("logreg.tg":1:1)')
    assert lines[4] == '    %0 = tg.matmul %x, %W : f32[N, 10] loc("logreg.tg":8:20)'
    # Ops built without a loc print loc(unknown), which parses back to None.
    assert "      tg.yield %3 loc(unknown)" in lines
    assert lines[-1] == "} loc(unknown)"
    m2 = parse_module(text, "other.ir")
    assert print_module(m2, locs=True) == text
    assert m2.loc is None
    yield_op = [op for op in m2.walk() if op.name == "tg.yield"][0]
    assert yield_op.loc is None
    assert m2.lookup("train").loc == Loc("logreg.tg", 1, 1)


def test_parsed_ops_without_loc_get_their_first_token():
    m = parse_module(LOGREG_TEXT, "x.ir")
    ops = {op.name: op for op in m.walk()}
    assert m.loc == Loc("x.ir", 1, 1)
    assert ops["tg.global"].loc == Loc("x.ir", 2, 3)
    assert ops["func.func"].loc == Loc("x.ir", 3, 3)
    assert ops["tg.read"].loc == Loc("x.ir", 4, 5)  # the result name, not the op name
    assert ops["tg.yield"].loc == Loc("x.ir", 11, 7)


def test_loc_file_names_are_escaped():
    op = Op("tg.foo", loc=Loc('dir "x"\\y\n.tg', 3, 5))
    text = print_op(op, locs=True)
    assert text == 'tg.foo loc("dir \\"x\\"\\\\y\\n.tg":3:5)'
    m = parse_module(text)
    assert m.body.ops[0].loc == op.loc


def test_print_op_of_nested_and_function_ops():
    m, f = logreg_module()
    assert print_op(f).splitlines()[0].startswith("func.func @train(%x: f32[N, 64], %lr: f32)")
    add = f.regions[0].block.ops[2]
    assert print_op(add) == "%0 = tg.add %1, %1 : f32[N, 10]"  # operands named on first use
    yield_op = [op for op in m.walk() if op.name == "tg.yield"][0]
    assert print_op(yield_op, locs=True) == "tg.yield %0 loc(unknown)"
    assert print_op(m) + "\n" == print_module(m)


def test_generic_forms():
    t = ty("f32[2]")
    arg = Block([t], ["a"])
    a = arg.args[0]
    ops = [
        Op("tg.noop"),
        Op("tg.use", [a, a]),
        Op("tg.attrs", attrs={"k": 1}),
        Op("tg.two", [a], [t, ty("i32")], result_names=["p", "p"]),
        Op("tg.empty_regions", regions=[Region(), Region([Block()])]),
        Op("weird name!", [a], [t]),
    ]
    for op in ops:
        arg.append(op)
    holder = Op("test.holder", regions=[Region([arg])])
    assert print_op(holder) == "\n".join(
        [
            "test.holder ({",
            "^bb0(%a: f32[2]):",
            "  tg.noop",
            "  tg.use %a, %a",
            "  tg.attrs {k = 1}",
            "  %p, %p_1 = tg.two %a : f32[2], i32",
            "  tg.empty_regions ({",
            "  }, {",
            "  ^bb0:",
            "  })",
            '  %0 = "weird name!" %a : f32[2]',
            "})",
        ]
    )
    m = parse_module(print_op(holder))
    assert print_op(m.body.ops[0]) == print_op(holder)
    assert m.body.ops[0].regions[0].blocks[0].ops[5].name == "weird name!"
    empty = m.body.ops[0].regions[0].blocks[0].ops[4]
    assert len(empty.regions) == 2 and empty.regions[0].blocks == []
    assert len(empty.regions[1].blocks) == 1


def test_func_forms():
    body = Block([])
    body.append(Op("func.return"))
    f = Op("func.func", attrs={"sym_name": "nothing", "res_types": ()}, regions=[Region([body])])
    assert print_op(f) == "func.func @nothing() -> () {\n  func.return\n}"
    # A func.func that does not fit the custom form prints generically.
    g = Op("func.func", attrs={"sym_name": "decl"}, regions=[Region()])
    assert print_op(g) == 'func.func {sym_name = "decl"} ({\n})'
    # Quoted symbol names for odd spellings.
    h = Op("func.func", attrs={"sym_name": "a b", "res_types": ()}, regions=[Region([Block()])])
    assert print_op(h) == 'func.func @"a b"() -> () {\n}'
    for op in (f, g, h):
        m = parse_module(print_op(op))
        assert print_op(m.body.ops[0]) == print_op(op)
    # Lenient input: a single result type without parentheses, no arrow.
    m = parse_module("func.func @f(%x: f32) -> f32 {\n  func.return %x\n}\nfunc.func @g() {\n}")
    assert m.lookup("f").attrs["res_types"] == (ty("f32"),)
    assert m.lookup("g").attrs["res_types"] == ()


def test_value_naming():
    body = Block([ty("f32")] * 4, ["x", "x", "x_1", "0bad"])
    ops = [
        Op("tg.a", [], [ty("f32")], result_names=["x"]),
        Op("tg.b", [], [ty("f32")]),
        Op("tg.c", [], [ty("f32")], result_names=["y.z"]),
        Op("tg.d", [], [ty("f32")], result_names=[""]),
    ]
    for op in ops:
        body.append(op)
    body.append(Op("func.return"))
    f = Op("func.func", attrs={"sym_name": "f", "res_types": ()}, regions=[Region([body])])
    text = print_op(f)
    assert text.splitlines()[0] == "func.func @f(%x: f32, %x_1: f32, %x_1_1: f32, %0: f32) -> () {"
    assert "%x_2 = tg.a : f32" in text and "%1 = tg.b : f32" in text
    assert "%y.z = tg.c : f32" in text and "%2 = tg.d : f32" in text
    m = parse_module(text)
    assert print_op(m.body.ops[0]) == text
    hints = [a.name_hint for a in m.body.ops[0].regions[0].block.args]
    assert hints == ["x", "x_1", "x_1_1", None]


def test_names_are_scoped_per_function():
    text = (
        "module {\n"
        "  func.func @f(%x: f32) -> (f32) {\n    func.return %x\n  }\n"
        "  func.func @g(%x: f32) -> (f32) {\n    func.return %x\n  }\n"
        "}\n"
    )
    assert print_module(parse_module(text)) == text


def test_attribute_values():
    cases = [
        (3, "3"),
        (-1, "-1"),
        (10**30, str(10**30)),
        (1.0, "1.0"),
        (1e-05, "1e-05"),
        (-0.0, "-0.0"),
        (float("inf"), "inf"),
        (float("-inf"), "-inf"),
        (float("nan"), "nan"),
        (0.1, "0.1"),
        (1e300, "1e+300"),
        (True, "true"),
        (False, "false"),
        (None, "none"),
        ("valid", '"valid"'),
        ('a"b\n\u00e9', '"a\\"b\\n\\u00e9"'),
        (SymbolRef("W"), "@W"),
        (SymbolRef("x y"), '@"x y"'),
        (ty("f32[N, 10]"), "f32[N, 10]"),
        (ty("f32"), "f32"),
        (ty("i64[B*T, (H-2)//2+1]"), "i64[B*T, (H-2)//2+1]"),
        (F64, "dtype<f64>"),
        ((), "[]"),
        ((1, (2.5, "a"), ()), '[1, [2.5, "a"], []]'),
        (
            np.array([[1, 2, 3], [4, 5, 6]], np.float32),
            "dense<f32[2, 3], [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]>",
        ),
        (np.array(0.5, np.float32), "dense<f32, 0.5>"),
        (np.array([True, False]), "dense<bool[2], [true, false]>"),
        (np.array([-(2**63), 2**63 - 1], np.int64), f"dense<i64[2], [{-(2**63)}, {2**63 - 1}]>"),
        (np.array([7], np.int32), "dense<i32[1], [7]>"),
        (np.zeros((0, 3), np.float64), "dense<f64[0, 3], []>"),
        (np.zeros((2, 0), np.float64), "dense<f64[2, 0], [[], []]>"),
        (np.float32(0.1), repr(float(np.float32(0.1)))),
        (np.int64(4), "4"),
        (np.bool_(True), "true"),
    ]
    for value, text in cases:
        assert format_attr(value) == text, value
        op = parse_module(f"tg.c {{v = {text}}}").body.ops[0]
        back = op.attrs["v"]
        assert format_attr(back) == text
        if isinstance(value, np.ndarray):
            assert back.dtype == value.dtype and back.shape == value.shape
            assert back.tobytes() == value.tobytes()
        elif isinstance(value, float) and value != value:
            assert back != back
        elif not isinstance(value, np.generic):
            assert back == value and type(back) is type(value)
    # f32 values round-trip bit for bit through repr(float(x)).
    a = np.array([0.1, 1 / 3, 3.4028235e38, 1e-45, -0.0, np.nan, np.inf], np.float32)
    back = parse_module(f"tg.c {{v = {format_attr(a)}}}").body.ops[0].attrs["v"]
    assert back.tobytes() == a.tobytes()


def test_attribute_keys_and_unprintable_values():
    op = Op("tg.c", attrs={"plain": 1, "with space": 2, "dotted.key": 3})
    assert print_op(op) == 'tg.c {plain = 1, "with space" = 2, dotted.key = 3}'
    assert parse_module(print_op(op)).body.ops[0].attrs == op.attrs
    with pytest.raises(TypeError, match="cannot print attribute"):
        format_attr({"a": 1})
    with pytest.raises(TypeError, match="dtype float16"):
        format_attr(np.zeros(2, np.float16))


def test_parse_type():
    assert parse_type("f32") == TensorType(F32, ())
    assert parse_type(" i32[N, 3] ") == TensorType(I32, ("N", 3))
    assert parse_type("f64[T * B, (H - 2) // 2 + 1]") == TensorType(F64, ("B*T", "(H-2)//2+1"))
    assert parse_type("bool[0]") == TensorType(BOOL, (0,))
    assert parse_type("i64[4-1]") == TensorType(I64, (3,))


@pytest.mark.parametrize(
    "text,error",
    [
        ("f16", "<input>:1:1: error: unknown dtype 'f16'"),
        ("f32[N", "<input>:1:6: error: expected ',' or ']' in the shape, found end of input"),
        ("f32[N+]", "<input>:1:5: error: bad dimension expression 'N+'"),
        ("f32[N M]", "<input>:1:5: error: bad dimension expression 'N M'"),
        ("f32[]", "<input>:1:5: error: expected a dimension, found ']'"),
        ("f32[1-3]", "<input>:1:5: error: negative dimension '1-3'"),
        ("f32 x", "<input>:1:5: error: unexpected 'x' after type"),
        ("", "<input>:1:1: error: expected a type, found end of input"),
    ],
)
def test_parse_type_errors(text, error):
    with pytest.raises(CompileError) as e:
        parse_type(text)
    assert str(e.value) == error


FN = "module {\n  func.func @f(%x: f32) -> (f32) {\n"
END = "\n  }\n}\n"


@pytest.mark.parametrize(
    "text,error",
    [
        (FN + "    func.return %y" + END, "t.ir:3:17: error: use of undefined value %y"),
        (
            FN + "    %x = tg.neg %x : f32\n    func.return %x" + END,
            "t.ir:3:5: error: redefinition of value %x",
        ),
        (
            FN + "    %0 tg.neg %x : f32" + END,
            "t.ir:3:8: error: expected '=' after result names, found 'tg.neg'",
        ),
        (
            FN + "    %0 = tg.neg %x" + END,
            "t.ir:3:19: error: expected ':' and the result types of tg.neg, found end of line",
        ),
        (
            FN + "    %0, %1 = tg.neg %x : f32" + END,
            "t.ir:3:24: error: tg.neg has 2 result names but 1 result types",
        ),
        (FN + "    tg.neg %x extra" + END, "t.ir:3:15: error: unexpected 'extra' after op tg.neg"),
        (
            FN + "    neg %x" + END,
            "t.ir:3:5: error: expected an op name (dialect.name), found 'neg'",
        ),
        (FN + "    %0 = tg.c {v = f16[2]} : f32" + END, "t.ir:3:20: error: unknown dtype 'f16'"),
        (FN + "    tg.c {a = 1, a = 2}" + END, "t.ir:3:18: error: duplicate attribute 'a'"),
        (FN + "    tg.c {a = bogus}" + END, "t.ir:3:15: error: unknown attribute value 'bogus'"),
        (FN + '    tg.c {a = "abc}' + END, "t.ir:3:15: error: unterminated or malformed string"),
        (FN + '    tg.c {a = "\\q"}' + END, "t.ir:3:15: error: bad string literal"),
        (
            FN + "    tg.c {a = dense<f32[2], [1.0]>}" + END,
            "t.ir:3:29: error: dense literal does not match its type f32[2]",
        ),
        (
            FN + "    tg.c {a = dense<i32[2], [1.5, 2]>}" + END,
            "t.ir:3:29: error: bad value in dense literal of type i32[2]",
        ),
        (
            FN + "    tg.c {a = dense<i32[1], [3000000000]>}" + END,
            "t.ir:3:29: error: bad value in dense literal of type i32[1]",
        ),
        (
            FN + "    tg.c {a = dense<f32[N], [1.0]>}" + END,
            "t.ir:3:21: error: dense literal needs a static shape, not f32[N]",
        ),
        (
            FN + "    tg.c {a = dense<bool[1], [1]>}" + END,
            "t.ir:3:30: error: bad value in dense literal of type bool[1]",
        ),
        (
            FN + '    tg.c loc("a":1)' + END,
            "t.ir:3:19: error: expected ':' after the line number in loc(...), found ')'",
        ),
        (
            FN + "    tg.c ({\n    ^bb0(%a: f32):\n    })\n    func.return %a" + END,
            "t.ir:6:17: error: use of undefined value %a",
        ),
        (
            "module {\n  %0 = tg.c : f32\n  func.func @g() -> () {\n    tg.use %0\n  }\n}",
            "t.ir:4:12: error: use of undefined value %0",
        ),
        (
            "module {\n  tg.c\n",
            "t.ir:3:1: error: expected '}' to close the module, found end of input",
        ),
        ("module {\n}\nmodule {\n}", "t.ir:3:1: error: unexpected 'module' after the module"),
        (
            "module {\n  func.func @f(%x: f32, %x: f32) -> () {\n  }\n}",
            "t.ir:2:25: error: redefinition of value %x",
        ),
        ("tg.c {a = " + "[" * 150 + "]" * 150 + "}", "t.ir:1:112: error: nesting too deep"),
    ],
)
def test_parse_errors(text, error):
    with pytest.raises(CompileError) as e:
        parse_module(text, "t.ir")
    assert str(e.value).splitlines()[0] == error


def test_error_shows_the_source_line(tmp_path):
    path = tmp_path / "bad.ir"
    text = "module {\n  tg.use %nope\n}\n"
    path.write_text(text)
    with pytest.raises(CompileError) as e:
        parse_module(text, str(path))
    assert (
        str(e.value)
        == f"{path}:2:10: error: use of undefined value %nope\n    tg.use %nope\n           ^"
    )


def test_comments_bare_ops_and_whitespace():
    text = (
        "// ----- IR dump after cse -----\n"
        "// RUN: irc opt %s\n"
        'tg.global {sym_name = "W", type = f32}   // trailing comment\n'
        "\n"
        "func.func @f(%x : f32 ,\n    %y: f32) -> ( f32 ) {\n"
        "  %0 = tg.add %x,\n      %y : f32   // a comment\n"
        "  func.return %0\r\n"
        "}\n"
    )
    m = parse_module(text)
    assert [op.name for op in m.body.ops] == ["tg.global", "func.func"]
    assert m.loc == Loc("<input>", 1, 1)
    f = m.lookup("f")
    assert f.regions[0].block.ops[0].operands == f.regions[0].block.args
    again = print_module(m)
    assert again.startswith("module {\n  tg.global")
    assert print_module(parse_module(again)) == again


def test_region_values_go_out_of_scope_and_regions_see_outside():
    ok = (
        "module {\n  func.func @f(%x: f32) -> (f32) {\n"
        "    %0 = test.loop %x : f32 ({\n    ^bb0(%i: f32):\n      %1 = tg.add %i, %x : f32\n"
        "      tg.yield %1\n    }, {\n    ^bb0(%i: f32):\n      tg.yield %i\n    })\n"
        "    func.return %0\n  }\n}\n"
    )
    m = parse_module(ok)
    assert print_module(m) == ok.replace(
        "^bb0(%i: f32):\n      tg.yield %i", "^bb0(%i_1: f32):\n      tg.yield %i_1"
    )
    verify(m)
    # A nested builtin.module is isolated like a function.
    with pytest.raises(CompileError, match="use of undefined value %x"):
        parse_module(
            "func.func @f(%x: f32) -> () {\n  builtin.module ({\n  ^bb0:\n    tg.use %x\n  })\n}"
        )


def test_parse_is_linear_on_large_modules():
    lines = [
        "module {",
        '  func.func @f(%x: f32[N, 64]) -> (f32[N, 64]) attributes {visibility = "public"} {',
    ]
    prev = "%x"
    for i in range(10000):
        lines.append(
            f'    %v{i} = tg.add {prev}, %x {{alpha = 1.5, axes = [0, 1]}} : f32[N, 64] loc("big.tg":{i}:1)'
        )
        prev = f"%v{i}"
    lines += [f"    func.return {prev} loc(unknown)", "  } loc(unknown)", "} loc(unknown)", ""]
    text = "\n".join(lines)
    t0 = time.perf_counter()
    m = parse_module(text)
    t1 = time.perf_counter()
    out = print_module(m, locs=True)
    t2 = time.perf_counter()
    assert out == text
    # Generous bounds: a quadratic step would take minutes at this size.
    assert t1 - t0 < 5 and t2 - t1 < 5
