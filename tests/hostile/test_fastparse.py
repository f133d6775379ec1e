"""The hand-written parser (irc/frontend/fastparse.py) against Lark, the
reference: on every program it takes, the same AST, locations included; on
everything else it falls back (and Lark reports the error). Mutated programs
from the fuzzer's corpus probe the corners (keywords as names, operators whose
tokens depend on Lark's contextual lexer, trailing commas, slices)."""

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_fuzz_mutations import CORPUS, NAMES, apply, mutation

from irc.frontend.fastparse import Fallback, fast_parse
from irc.frontend.lark_parse import _parser, _ToAST
from irc.frontend.parse import parse_source
from irc.ir.errors import CompileError, decode_source

ROOT = Path(__file__).resolve().parents[2]


def _markdown_programs():
    out = {}
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = path.read_text(encoding="utf-8")
        for k, block in enumerate(re.findall(r"```tg\n(.*?)```", text, re.DOTALL)):
            out[f"{path.name}:{k}"] = block
    return out


PROGRAMS = {**CORPUS, **_markdown_programs()}

# Valid programs written to reach every construct of the grammar, each with
# the location subtleties: parentheses starting a node, comparisons located at
# their operator, calls at their name, slices at their ':' when open.
CORNERS = """
const A = (2 + 3) * 4
shared V: f32[2, (A + 1) // 3 - 1,] = uniform(-1, 1, seed=3,)
def pair(x: f32[N],) -> (f32[N], f32[N],) { return (x), -(x) }
fn f(x: f32[N, 4], k: i32 = 2) -> f32 {
    a, b = pair(x[0, :])
    c = (a + b) * 2 ** -a ** 2 - +a % 3 // 2 @ (b)
    d = x[::2, 1:][..., None][:, :k:]
    e = where((a < b) & ~(a == b) | (a >= b), a, b)
    g = [1, 2.5, .5e3, 1e-3,] + [] + cast(true, f32) + cast(False, f32)
    h = scan (r in x, s in x,; acc = zeros([4]), steps = 2; truncate = 1) {
        acc = acc + r * s
        yield acc
    }
    V <- V * 0.5
    return sum(c) + sum(d) + sum(e) + sum(g) + sum(h) + "s" == "s"
}
"""
PROGRAMS["corners"] = CORNERS


def _lark(text, filename):
    return _ToAST(filename).transform(_parser().parse(text))


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_fast_path_takes_valid_programs(name):
    text = PROGRAMS[name]
    assert fast_parse(text, name) == _lark(text, name)


def test_falls_back_where_lark_reads_words_by_context():
    # Lark's contextual lexer makes `steps` a name outside a scan and `<-` two
    # tokens inside an expression: the fast path leaves both to Lark.
    for text in [
        "fn f(x: f32) -> f32 { steps = x return steps }",
        "fn f(x: f32) -> bool { return x <-x }",
        # deeper than MAX_HEIGHT: Lark's recursive walk decides
        "fn f(x: f32) -> f32 { return " + " + ".join(["x"] * 300) + " }",
        # ... in a signature's result type too, not only in its parameters
        "def g(x: f32[N]) -> f32[" + " + ".join(["N"] * 120) + "] { return x }",
    ]:
        with pytest.raises(Fallback):
            fast_parse(text, "t.tg")
        assert parse_source(text, "t.tg") == _lark(text, "t.tg")


@settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(st.sampled_from(NAMES), st.lists(mutation(), min_size=1, max_size=3))
def test_same_ast_as_lark_or_fallback(name, muts):
    data = apply(CORPUS[name], muts)
    try:
        text = decode_source(data, "m.tg")
    except CompileError:
        return
    if text.startswith("\ufeff"):
        text = " " + text[1:]
    try:
        fast = fast_parse(text, "m.tg")
    except Fallback:
        return
    try:
        ref = _lark(text, "m.tg")
    except Exception as e:  # noqa: BLE001
        pytest.fail(f"the fast path took a program Lark rejects ({type(e).__name__}): {text!r}")
    assert fast == ref, text
