"""Parsing `.tg` text with Lark (LALR, strict, positions kept) -> AST: the
fallback of parse.py for every program the hand-written fast path (fastparse.py)
does not take, every error included.

Owns the grammar loading (grammar/tg.lark, shipped as package data
irc.grammar), the tree-to-AST transformer, and the conversion of every Lark
error into a located CompileError. Kept apart from parse.py so that a program
the fast path takes never imports Lark (25-45 ms of a cold load in a fresh
process). Imports lark, irc.ir and irc.frontend (ast, builtins).
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import (
    LarkError,
    UnexpectedCharacters,
    UnexpectedEOF,
    UnexpectedInput,
    UnexpectedToken,
    VisitError,
)

from irc.frontend import ast as A
from irc.frontend.builtins import KEYWORDS, did_you_mean
from irc.ir.core import Loc
from irc.ir.dims import INT64_MAX as INT_MAX
from irc.ir.errors import CompileError


def _grammar_text() -> str:
    try:
        from importlib.resources import files

        return (files("irc.grammar") / "tg.lark").read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError):
        # Running from a source tree without an install.
        return (Path(__file__).resolve().parents[2] / "grammar" / "tg.lark").read_text(
            encoding="utf-8"
        )


@functools.lru_cache(maxsize=1)
def _parser() -> Lark:
    # Built LALR tables from a shipped or per-user JSON file, never Lark's
    # cache=True (a pickle in the shared temp dir): see lark_table.py.
    from irc.frontend.lark_table import load_parser

    return load_parser(_grammar_text())


# Readable names for the terminals Lark reports as expected.
_TOKEN_NAMES = {
    "NAME": "a name",
    "INT": "an integer",
    "FLOAT": "a number",
    "STRING": "a string",
    "DTYPE": "a dtype",
    "LPAR": "'('",
    "RPAR": "')'",
    "LSQB": "'['",
    "RSQB": "']'",
    "LBRACE": "'{'",
    "RBRACE": "'}'",
    "COMMA": "','",
    "COLON": "':'",
    "SEMICOLON": "';'",
    "EQUAL": "'='",
    "MINUS": "'-'",
    "PLUS": "'+'",
    "STAR": "'*'",
    "SLASH": "'/'",
    "__ANON_0": "'->'",
    "COMPARE": "a comparison",
    "$END": "end of file",
}


def _describe_expected(expected) -> str:
    names = sorted(
        {
            _TOKEN_NAMES.get(t, t.lower().strip("_") if not t.startswith("__") else t)
            for t in expected
        }
    )
    names = [n for n in names if not n.startswith("__")]
    if not names:
        return ""
    if len(names) > 8:
        names = names[:8] + ["..."]
    return "expected " + ", ".join(names)


def _keyword_hint(text: str, tok):
    """A "did you mean 'return'?" hint when the word before (or at) an unexpected
    token is a misspelt keyword (`retrun x`)."""
    pos = getattr(tok, "start_pos", None)
    if pos is None:
        return None
    words = re.findall(r"[A-Za-z_][A-Za-z_0-9]*", text[:pos])
    for word in ([str(tok.value)] if tok.type == "NAME" else []) + words[-1:]:
        if word not in KEYWORDS and len(word) >= 3:
            hint = did_you_mean(word, KEYWORDS, strict=True)
            if hint:
                return hint
    return None


def lark_parse(text: str, filename: str) -> A.Program:
    """Parse `.tg` text (its byte-order mark already replaced) with Lark, raising
    CompileError on any mistake."""
    try:
        tree = _parser().parse(text)
        return _ToAST(filename).transform(tree)
    except UnexpectedCharacters as e:
        ch = (
            text[e.pos_in_stream]
            if e.pos_in_stream is not None and e.pos_in_stream < len(text)
            else "?"
        )
        raise CompileError(
            f"unexpected character {ch!r}", Loc(filename, e.line, e.column)
        ) from None
    except UnexpectedToken as e:
        tok = e.token
        if tok.type == "$END":
            msg = "unexpected end of file"
            line, col = _end_pos(text)
        else:
            msg = f"unexpected {tok.value!r}"
            line, col = tok.line, tok.column
        exp = _describe_expected(e.expected)
        raise CompileError(
            msg + (f"; {exp}" if exp else ""), Loc(filename, line, col), _keyword_hint(text, tok)
        ) from None
    except UnexpectedEOF as e:
        line, col = _end_pos(text)
        exp = _describe_expected(e.expected)
        raise CompileError(
            "unexpected end of file" + (f"; {exp}" if exp else ""), Loc(filename, line, col)
        ) from None
    except UnexpectedInput as e:
        raise CompileError(
            "syntax error", Loc(filename, getattr(e, "line", 1), getattr(e, "column", 1))
        ) from None
    except VisitError as e:
        if isinstance(e.orig_exc, CompileError):
            raise e.orig_exc from None
        if isinstance(e.orig_exc, RecursionError):
            raise CompileError("expression nested too deeply", Loc(filename, 1, 1)) from None
        raise
    except RecursionError:
        raise CompileError("expression nested too deeply", Loc(filename, 1, 1)) from None
    except LarkError as e:
        raise CompileError(f"syntax error: {e}", Loc(filename, 1, 1)) from None


def _end_pos(text: str):
    lines = text.split("\n")
    return len(lines), len(lines[-1]) + 1


@v_args(meta=True)
class _ToAST(Transformer):
    """Lark tree -> AST nodes; one method per grammar rule or alias."""

    def __init__(self, filename: str):
        super().__init__()
        self.file = filename

    def _loc(self, meta) -> Loc:
        if getattr(meta, "empty", True):
            return Loc(self.file, 1, 1)
        return Loc(self.file, meta.line, meta.column)

    def _tloc(self, tok: Token) -> Loc:
        return Loc(self.file, tok.line, tok.column)

    # declarations ---------------------------------------------------------------
    def start(self, meta, decls):
        return A.Program(Loc(self.file, 1, 1), list(decls))

    def seed_decl(self, meta, c):
        return A.SeedDecl(self._loc(meta), self._int(c[0]))

    def const_decl(self, meta, c):
        return A.ConstDecl(self._loc(meta), str(c[0]), c[1])

    def shared_decl(self, meta, c):
        name, typ, init, args = c
        pos, kw = args if args is not None else ([], [])
        return A.SharedDecl(self._loc(meta), str(name), typ, str(init), self._tloc(init), pos, kw)

    def _func(self, kind, meta, c):
        name, params, ret, body = c
        ret_types, is_tuple = (None, False) if ret is None else ret
        return A.FuncDecl(self._loc(meta), kind, str(name), params or [], ret_types, is_tuple, body)

    def def_decl(self, meta, c):
        return self._func("def", meta, c)

    def fn_decl(self, meta, c):
        return self._func("fn", meta, c)

    def params(self, meta, c):
        return list(c)

    def param(self, meta, c):
        return A.Param(self._loc(meta), str(c[0]), c[1], c[2])

    def ret_single(self, meta, c):
        return ([c[0]], False)

    def ret_tuple(self, meta, c):
        return (list(c), True)

    def type(self, meta, c):
        dtype, dims = c
        # `f32` and `f32[]` are both scalars.
        return A.TypeExpr(self._loc(meta), str(dtype), dims or None)

    def dims(self, meta, c):
        return list(c)

    def dim_int(self, meta, c):
        # The range is checked by irgen, which can name the variable; only the length here.
        if len(str(c[0])) > 100:
            raise CompileError(f"dimension {str(c[0])[:12]}... is out of range", self._tloc(c[0]))
        return A.DimExpr(self._loc(meta), "int", [int(c[0])])

    def dim_name(self, meta, c):
        return A.DimExpr(self._loc(meta), "name", [str(c[0])])

    def _dim_bin(op):
        def f(self, meta, c):
            return A.DimExpr(self._loc(meta), op, list(c))

        return f

    dim_add = _dim_bin("+")
    dim_sub = _dim_bin("-")
    dim_mul = _dim_bin("*")
    dim_floordiv = _dim_bin("//")

    def block(self, meta, c):
        return list(c)

    # statements -------------------------------------------------------------------
    def assign(self, meta, c):
        return A.Assign(self._loc(meta), [str(t) for t in c[:-1]], c[-1])

    def update(self, meta, c):
        return A.Update(self._loc(meta), str(c[0]), c[1])

    def return_stmt(self, meta, c):
        return A.Return(self._loc(meta), list(c))

    def yield_stmt(self, meta, c):
        return A.Yield(self._loc(meta), list(c))

    # expressions -----------------------------------------------------------------
    def compare(self, meta, c):
        return A.BinOp(self._tloc(c[1]), str(c[1]), c[0], c[2])

    def _bin(op):
        def f(self, meta, c):
            return A.BinOp(self._loc(meta), op, c[0], c[1])

        return f

    or_ = _bin("|")
    and_ = _bin("&")
    add = _bin("+")
    sub = _bin("-")
    mul = _bin("*")
    div = _bin("/")
    floordiv = _bin("//")
    mod = _bin("%")
    matmul = _bin("@")
    pow = _bin("**")

    def neg(self, meta, c):
        return A.UnaryOp(self._loc(meta), "-", c[0])

    def pos(self, meta, c):
        return A.UnaryOp(self._loc(meta), "+", c[0])

    def not_(self, meta, c):
        return A.UnaryOp(self._loc(meta), "~", c[0])

    def index(self, meta, c):
        return A.Index(self._loc(meta), c[0], c[1])

    def index_items(self, meta, c):
        return list(c)

    def slice(self, meta, c):
        return A.Slice(self._loc(meta), c[0], c[1], c[2])

    def ellipsis(self, meta, c):
        return A.Ellipsis_(self._loc(meta))

    def call(self, meta, c):
        name, args = c
        pos, kw = args if args is not None else ([], [])
        return A.Call(self._tloc(name), str(name), pos, kw)

    def args(self, meta, c):
        pos, kw = [], []
        for a in c:
            if isinstance(a, tuple):
                kw.append(a)
            else:
                if kw:
                    raise CompileError("positional argument after a keyword argument", a.loc)
                pos.append(a)
        return (pos, kw)

    def kwarg(self, meta, c):
        return (str(c[0]), c[1], self._tloc(c[0]))

    def _int(self, tok: Token) -> int:
        """An integer literal: at most the i64 range (a dim, an index or an
        i32/i64 value cannot be larger; Python would parse any length)."""
        text = str(tok)
        if len(text.lstrip("0")) > 19 or int(text) > INT_MAX:
            shown = text if len(text) <= 30 else f"{text[:12]}...{text[-6:]} ({len(text)} digits)"
            raise CompileError(
                f"integer literal {shown} is out of range (at most 2**63 - 1)", self._tloc(tok)
            )
        return int(text)

    def int_lit(self, meta, c):
        return A.Num(self._loc(meta), self._int(c[0]), False)

    def float_lit(self, meta, c):
        text = str(c[0])
        if len(text) > 400:
            raise CompileError(
                f"number literal too long ({len(text)} characters)", self._tloc(c[0])
            )
        v = float(text)
        if v == float("inf"):
            raise CompileError(f"number {text} is out of the f64 range", self._tloc(c[0]))
        return A.Num(self._loc(meta), v, True)

    def str_lit(self, meta, c):
        return A.Str(self._loc(meta), str(c[0])[1:-1])

    def true_lit(self, meta, c):
        return A.Bool(self._loc(meta), True)

    def false_lit(self, meta, c):
        return A.Bool(self._loc(meta), False)

    def none_lit(self, meta, c):
        return A.NoneLit(self._loc(meta))

    def dtype_lit(self, meta, c):
        return A.DTypeLit(self._loc(meta), str(c[0]))

    def name(self, meta, c):
        return A.Name(self._loc(meta), str(c[0]))

    def list_lit(self, meta, c):
        return A.ListLit(self._loc(meta), [x for x in c if x is not None])

    # scan ------------------------------------------------------------------------
    def scan_expr(self, meta, c):
        seqs, carries, opts, body = c
        options = {}
        carry_list = []
        for item in (carries or []) + (opts or []):
            if item[0] == "opt":
                _, name, value, loc = item
                if name in options:
                    raise CompileError(f"scan option '{name}' given twice", loc)
                options[name] = value
            else:
                carry_list.append(item[1:])
        return A.Scan(self._loc(meta), seqs or [], carry_list, options, body)

    def scan_seqs(self, meta, c):
        return list(c)

    def scan_seq(self, meta, c):
        return (str(c[0]), c[1], self._tloc(c[0]))

    def scan_carries(self, meta, c):
        return list(c)

    def carry(self, meta, c):
        return ("carry", str(c[0]), c[1], self._tloc(c[0]))

    def scan_opt(self, meta, c):
        return ("opt", str(c[0]), c[1], self._tloc(c[0]))

    def scan_opts(self, meta, c):
        return list(c)
