"""Round trip and fuzz properties of the IR text:

- print(parse(print(m))) == print(m) for generated modules (random types with
  named dims and dim expressions, attributes of every kind including arrays of
  every dtype with nan/inf/-0.0, nested regions, colliding value names, odd
  locations), with and without locs, and the parsed attributes equal the
  originals by value;
- the parser raises nothing but CompileError on random and mutated texts, and
  whatever it accepts prints stably and passes or fails the verifier cleanly.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from irc.ir.core import Block, Loc, Module, Op, Region, SymbolRef, attr_key
from irc.ir.dims import dim_add, dim_floordiv, dim_mul, dim_sub
from irc.ir.errors import CompileError
from irc.ir.parser import parse_module
from irc.ir.printer import print_module
from irc.ir.types import DTYPES, TensorType
from irc.ir.verifier import verify

from .test_printer_parser import LOGREG_TEXT

# Sized so the whole of tests/ir stays well under 15 s; the `slow` variants
# (pytest -m slow) run many more examples.
_HEALTH = [HealthCheck.too_slow, HealthCheck.data_too_large]
_SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=_HEALTH)
_GEN_SETTINGS = settings(max_examples=50, deadline=None, suppress_health_check=_HEALTH)
_LONG = settings(max_examples=2000, deadline=None, suppress_health_check=_HEALTH)

# -- generated modules --------------------------------------------------------------------

_DIMS = [
    0,
    1,
    3,
    64,
    "N",
    "T",
    "B",
    "H",
    dim_mul("T", "B"),
    dim_sub("H", 4),
    dim_add(dim_floordiv(dim_sub("H", 2), 2), 1),
    dim_mul(2, "N"),
    dim_add("N", 1),
    dim_mul(dim_floordiv("N", 3), "B"),
]
types = st.builds(
    TensorType,
    st.sampled_from(list(DTYPES.values())),
    st.lists(st.sampled_from(_DIMS), max_size=3).map(tuple),
)

_HINTS = ["x", "x", "x_1", "x_1_1", "y", "a.b", "_", None, None, "0", "", "bad name", "s"]
_KEYS = ["a", "b", "axis", "value", "k.1", "with space", "x_y", "loc", "true"]
_NAMES = ["tg.add", "tg.foo", "test.scan", "tg.conv2d", "weird name", "d.e.f"]
_FILES = ["m.tg", "a b.tg", 'q"uote\\.tg', "\u00e9\n.tg", ""]


def _arrays(dt):
    if dt.is_float:
        elements = st.floats(width=dt.bits, allow_nan=True, allow_infinity=True)
    elif dt.is_bool:
        elements = st.booleans()
    else:
        info = np.iinfo(dt.np)
        elements = st.integers(int(info.min), int(info.max))
    return hnp.arrays(
        dt.np, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=3), elements=elements
    )


arrays = st.sampled_from(list(DTYPES.values())).flatmap(_arrays)
special_floats = st.sampled_from(
    [0.0, -0.0, float("inf"), float("-inf"), float("nan"), 1e-05, 1e300, 5e-324]
)
scalars = st.one_of(
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    special_floats,
    st.booleans(),
    st.none(),
    st.text(max_size=8),
    st.sampled_from(["W", "x y", "f"]).map(SymbolRef),
    types,
    st.sampled_from(list(DTYPES.values())),
    arrays,
)
attr_values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=3).map(tuple), max_leaves=6
)
attr_dicts = st.dictionaries(st.sampled_from(_KEYS), attr_values, max_size=3)
locs = st.one_of(
    st.none(), st.builds(Loc, st.sampled_from(_FILES), st.integers(0, 500), st.integers(0, 90))
)


def _fill_block(draw, block, visible, depth):
    visible = visible + list(block.args)
    for _ in range(draw(st.integers(0, 3))):
        operands = draw(st.lists(st.sampled_from(visible), max_size=3)) if visible else []
        regions = []
        if depth < 2 and draw(st.integers(0, 4)) == 0:
            for _ in range(draw(st.integers(1, 2))):
                blocks = []
                for _ in range(draw(st.integers(0, 2))):
                    arg_types = draw(st.lists(types, max_size=2))
                    b = Block(arg_types, [draw(st.sampled_from(_HINTS)) for _ in arg_types])
                    _fill_block(draw, b, visible, depth + 1)
                    blocks.append(b)
                regions.append(Region(blocks))
        res_types = draw(st.lists(types, max_size=2))
        op = Op(
            draw(st.sampled_from(_NAMES)),
            operands,
            res_types,
            draw(attr_dicts),
            regions,
            draw(locs),
            [draw(st.sampled_from(_HINTS)) for _ in res_types],
        )
        block.append(op)
        visible = visible + op.results
    if depth and draw(st.booleans()):
        block.append(
            Op("tg.yield", draw(st.lists(st.sampled_from(visible), max_size=2)) if visible else [])
        )


@st.composite
def modules(draw):
    m = Module(draw(locs), draw(st.dictionaries(st.sampled_from(_KEYS), attr_values, max_size=2)))
    for i in range(draw(st.integers(0, 2))):
        attrs = {"sym_name": f"g{i}", "type": draw(types)}
        attrs.update(
            draw(st.dictionaries(st.sampled_from(["init", "init_args"]), attr_values, max_size=2))
        )
        m.body.append(Op("tg.global", attrs=attrs, loc=draw(locs)))
    for i in range(draw(st.integers(0, 2))):
        arg_types = draw(st.lists(types, max_size=3))
        body = Block(arg_types, [draw(st.sampled_from(_HINTS)) for _ in arg_types])
        _fill_block(draw, body, [], 0)
        visible = list(body.args) + [r for op in body.ops for r in op.results]
        rets = draw(st.lists(st.sampled_from(visible), max_size=2)) if visible else []
        body.append(Op("func.return", rets, loc=draw(locs)))
        attrs = {"sym_name": f"f{i}" if i else "main", "res_types": tuple(v.type for v in rets)}
        attrs.update(
            draw(
                st.dictionaries(
                    st.sampled_from(["visibility", "arg_defaults", "a"]), attr_values, max_size=2
                )
            )
        )
        m.body.append(Op("func.func", attrs=attrs, regions=[Region([body])], loc=draw(locs)))
    return m


def _key(v):
    """attr_key, with every NaN alike: the text keeps NaN but not its sign or
    payload (repr(float) spells them all `nan`)."""
    if isinstance(v, float) and v != v:
        return "nan"
    if isinstance(v, np.ndarray) and v.dtype.kind == "f":
        v = np.where(np.isnan(v), np.nan, v).astype(v.dtype)
    if isinstance(v, tuple):
        return tuple(_key(x) for x in v)
    return attr_key(v)


def _same_ir(a, b):
    ops_a, ops_b = list(a.walk()), list(b.walk())
    assert [o.name for o in ops_a] == [o.name for o in ops_b]
    for x, y in zip(ops_a, ops_b):
        assert list(x.attrs) == list(y.attrs) or x.name == "func.func"
        assert {k: _key(v) for k, v in x.attrs.items()} == {k: _key(v) for k, v in y.attrs.items()}
        assert [r.type for r in x.results] == [r.type for r in y.results]
        assert [len(r.blocks) for r in x.regions] == [len(r.blocks) for r in y.regions]


def _round_trip(m, locs):
    verify(m)  # the generator builds valid IR
    text = print_module(m, locs=locs)
    m2 = parse_module(text, "rt.ir")
    assert print_module(m2, locs=locs) == text
    _same_ir(m, m2)
    verify(m2)
    if locs:
        assert [o.loc for o in m.walk()] == [o.loc for o in m2.walk()]


@_GEN_SETTINGS
@given(modules(), st.booleans())
def test_print_parse_print_is_stable(m, locs):
    _round_trip(m, locs)


@pytest.mark.slow
@_LONG
@given(modules(), st.booleans())
def test_print_parse_print_is_stable_long(m, locs):
    _round_trip(m, locs)


# -- fuzzing the parser --------------------------------------------------------------------

_SAMPLE = (
    LOGREG_TEXT
    + """\
// trailing module-level comment
"""
)
_ALPHABET = st.sampled_from(
    list('%@^{}()[]<>,:=."\\-+*/ \n\tabfimnxdtgloc0123456789_') + ["\u00e9", "\x00"]
)
_PIECES = st.sampled_from(
    [
        "module",
        "func.func",
        "tg.add",
        "%x",
        "%0",
        "@W",
        "f32[N, 3]",
        "dense<f32[1], [nan]>",
        "({",
        "})",
        "^bb0(%a: f32):",
        "loc(unknown)",
        'loc("a":1:2)',
        "{a = [1, [2]]}",
        ": f32",
        "-inf",
        "//",
        "\n",
        "dtype<i32>",
    ]
)


def _accepts_cleanly(text):
    try:
        m = parse_module(text, "fuzz.ir")
    except CompileError as e:
        assert e.loc is not None and e.loc.file == "fuzz.ir"
        return
    out = print_module(m)
    assert print_module(parse_module(out)) == out
    try:
        verify(m)
    except CompileError:
        pass


@_SETTINGS
@given(st.text(_ALPHABET, max_size=80))
def test_parser_raises_only_compile_errors_on_random_text(text):
    _accepts_cleanly(text)


@_SETTINGS
@given(st.lists(st.one_of(_PIECES, st.text(_ALPHABET, max_size=3)), max_size=20).map(" ".join))
def test_parser_raises_only_compile_errors_on_token_soup(text):
    _accepts_cleanly(text)


@st.composite
def mutated(draw):
    text = draw(
        st.sampled_from(
            [_SAMPLE, "module attributes {a = [1, 2.5]} {\n" + _SAMPLE.split("\n", 1)[1]]
        )
    )
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(text)))
        j = draw(st.integers(i, min(len(text), i + 12)))
        kind = draw(st.sampled_from(["delete", "insert", "replace", "duplicate"]))
        if kind == "delete":
            text = text[:i] + text[j:]
        elif kind == "insert":
            text = text[:i] + draw(st.one_of(_PIECES, st.text(_ALPHABET, max_size=4))) + text[i:]
        elif kind == "replace":
            text = text[:i] + draw(st.text(_ALPHABET, min_size=1, max_size=4)) + text[j:]
        else:
            text = text[:i] + text[i:j] + text[i:]
    return text


@_SETTINGS
@given(mutated())
def test_parser_raises_only_compile_errors_on_mutated_text(text):
    _accepts_cleanly(text)


def _mutate_generated(text, data):
    i = data.draw(st.integers(0, len(text)))
    j = data.draw(st.integers(i, min(len(text), i + 20)))
    _accepts_cleanly(text[:i] + data.draw(st.one_of(st.just(""), _PIECES)) + text[j:])


@_GEN_SETTINGS
@given(modules().map(print_module), st.data())
def test_parser_raises_only_compile_errors_on_mutated_generated_text(text, data):
    _mutate_generated(text, data)


@pytest.mark.slow
@_LONG
@given(modules().map(print_module), st.data())
def test_parser_raises_only_compile_errors_on_mutated_generated_text_long(text, data):
    _mutate_generated(text, data)
