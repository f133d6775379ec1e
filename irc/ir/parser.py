"""The IR parser: reads the text irc.ir.printer writes back into ops.

Owns `parse_module` and `parse_type`. A hand-written scanner and recursive
descent: every token is one anchored regular expression without nested
quantifiers, so parsing is linear in the text (IR dumps can be large).

Grammar (whitespace free except where noted; `//` starts a comment to the end
of the line, so pass-manager dump headers and FileCheck lines are skipped):

    file     := 'module' ['attributes' attrdict] '{' op* '}' [loc]  |  op*
    op       := [values '='] OPNAME ...generic...  |  'func.func' @sym (...) ...
    generic  := [operands] [attrdict] [':' types] ['(' region (',' region)* ')'] [loc]
    region   := '{' block* '}'      block := ^label ['(' %a ':' type, ... ')'] ':' op*
    type     := dtype ['[' dim (',' dim)* ']']

The clauses of an op (operands, attributes, types, regions, loc) start on the
line of the op name: one op per line is what tells `tg.a` followed by a line
`%0 = ...` from `tg.a %0`.

Values must be defined before use. A region sees the values of enclosing
regions, except the regions of func.func and builtin.module (isolated).
The parser accepts any op name; the verifier reports unknown ops. It raises
only irc.ir.errors.CompileError, located at the offending token.

Must not import anything of the project outside irc.ir.
"""

from __future__ import annotations

import json
import re
from bisect import bisect_left

import numpy as np

from irc.ir.core import Block, Loc, Module, Op, Region, SymbolRef
from irc.ir.dims import parse_dim
from irc.ir.errors import CompileError, trust_source_file
from irc.ir.types import DTYPES, TensorType, TypeError_

__all__ = ["parse_module", "parse_type"]

_WS = re.compile(r"[ \t\r\n]*(?://[^\n]*[ \t\r\n]*)*")
_HWS = re.compile(r"[ \t\r]*")
_VALUE = re.compile(r"%(?:([A-Za-z_][A-Za-z0-9_.]*)|([0-9]+))")
_OPNAME = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*(?:\.[A-Za-z0-9_$]+)+")
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_.$]*")
_STRING = re.compile(r'"(?:[^"\\\n]|\\.)*"')
_NUMBER = re.compile(r"-?[0-9]+(\.[0-9]*)?([eE][-+]?[0-9]+)?")
_INT = re.compile(r"[0-9]+")
_LABEL = re.compile(r"\^[A-Za-z0-9_.$]+")
_DIM = re.compile(r"[A-Za-z0-9_ \t+\-*/()]*")
_DENSE_BODY = re.compile(r"[-+.A-Za-z0-9_ \t\r\n,\[\]]*")
_DENSE_TOKEN = re.compile(r"\[|\]|,|[^ \t\r\n,\[\]]+")
_TOKEN_TEXT = re.compile(r"[A-Za-z0-9_.$%@^\-]+|\S")
# One-line spans of a type and of an attribute dictionary, used as keys of the
# per-parse caches (big modules repeat the same few types and attributes).
_TYPE_SPAN = re.compile(r"[A-Za-z_][A-Za-z0-9_.$]*(?:[ \t\r]*\[[^\]\n]*\])?(?![ \t\r]*\[)")
_DICT_SPAN = re.compile(r'\{(?:[^{}"\n]|"(?:[^"\\\n]|\\.)*")*\}')
_WS_CHARS = frozenset(" \t\r\n/")
_LOC = re.compile(r'loc\(("(?:[^"\\\n]|\\.)*"):([0-9]+):([0-9]+)\)')

# Regions whose ops must not see values from outside.
_ISOLATED = ("func.func", "builtin.module")
# Deep nesting (tuples, regions) would otherwise end in a RecursionError.
_MAX_DEPTH = 100


def parse_module(text: str, filename: str = "<input>") -> Module:
    """Parse `module {...}`, or a file of bare top-level ops (wrapped in a Module)."""
    trust_source_file(filename)  # the file being compiled: its lines may be shown
    p = _Parser(text, filename)
    try:
        return p.file()
    except RecursionError:
        raise CompileError("nesting too deep", p.loc_at(p.pos)) from None


def parse_type(text: str, filename: str = "<input>") -> TensorType:
    """Parse a whole string as one type: `f32`, `i32[N]`, `f32[T*B, (H-2)//2+1]`."""
    p = _Parser(text, filename)
    p.skip()
    t = p.type()
    p.skip()
    if p.pos != len(text):
        p.error(f"unexpected {p.describe()} after type")
    return t


class _Parser:
    def __init__(self, text: str, filename: str):
        if not isinstance(text, str):
            raise CompileError("IR text must be a string", Loc(filename, 1, 1))
        self.text = text
        self.filename = filename
        self.pos = 0
        self.newlines = [m.start() for m in re.finditer("\n", text)]
        # name (without %) -> Value for the values visible at this point, and
        # per open region the names it defined (dropped when it closes).
        self.values: dict = {}
        self.scopes: list = []
        self.depth = 0
        # Span of text -> parsed type / attribute dict / dim. A span is only
        # stored after the full parser consumed exactly it, and the full parser
        # reads nothing beyond it, so a cache hit parses as the parser would.
        self.type_cache: dict = {}
        self.dict_cache: dict = {}
        self.dim_cache: dict = {}
        self.file_cache: dict = {}

    # -- positions and errors ------------------------------------------------------
    def loc_at(self, pos: int) -> Loc:
        line = bisect_left(self.newlines, pos)  # newlines strictly before pos
        start = self.newlines[line - 1] + 1 if line else 0
        return Loc(self.filename, line + 1, pos - start + 1)

    def error(self, message: str, pos: int | None = None):
        raise CompileError(message, self.loc_at(self.pos if pos is None else pos))

    def describe(self) -> str:
        if self.pos >= len(self.text):
            return "end of input"
        if self.text[self.pos] == "\n":
            return "end of line"
        m = _TOKEN_TEXT.match(self.text, self.pos)
        tok = m.group(0) if m else self.text[self.pos]
        return f"'{tok[:30]}'"

    def expected(self, what: str):
        self.error(f"expected {what}, found {self.describe()}")

    # -- scanning --------------------------------------------------------------------
    def skip(self) -> None:
        if self.pos < len(self.text) and self.text[self.pos] in _WS_CHARS:
            self.pos = _WS.match(self.text, self.pos).end()

    def hskip(self) -> None:
        self.pos = _HWS.match(self.text, self.pos).end()

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def startswith(self, s: str) -> bool:
        return self.text.startswith(s, self.pos)

    def expect(self, s: str, what: str | None = None) -> None:
        if not self.text.startswith(s, self.pos):
            self.expected(what or f"'{s}'")
        self.pos += len(s)

    def match(self, rx):
        m = rx.match(self.text, self.pos)
        if m is not None:
            self.pos = m.end()
        return m

    def at_line_end(self) -> bool:
        c = self.peek()
        return c in ("", "\n", "}") or self.startswith("//")

    def string(self) -> str:
        start = self.pos
        m = self.match(_STRING)
        if m is None:
            self.error("unterminated or malformed string", start)
        try:
            s = json.loads(m.group(0))
        except ValueError:
            self.error("bad string literal", start)
        return s

    def keyword_here(self, word: str) -> bool:
        m = _IDENT.match(self.text, self.pos)
        return m is not None and m.group(0) == word

    # -- top level -----------------------------------------------------------------
    def file(self) -> Module:
        self.skip()
        if self.keyword_here("module"):
            m = self.module()
            self.skip()
            if self.pos != len(self.text):
                self.error(f"unexpected {self.describe()} after the module")
            return m
        m = Module(Loc(self.filename, 1, 1))
        while True:
            self.skip()
            if self.pos >= len(self.text):
                return m
            self.values = {}  # each top-level op is its own namespace
            m.body.append(self.op())

    def module(self) -> Module:
        start = self.pos
        self.pos += len("module")
        self.skip()
        attrs = {}
        if self.keyword_here("attributes"):
            self.pos += len("attributes")
            self.skip()
            attrs = self.attr_dict()
            self.skip()
        self.expect("{", "'{' to open the module body")
        ops = []
        while True:
            self.skip()
            if self.peek() == "}":
                self.pos += 1
                break
            if self.pos >= len(self.text):
                self.expected("'}' to close the module")
            self.values = {}
            ops.append(self.op())
        loc = self.trailing_loc(self.loc_at(start))
        m = Module(loc, attrs)
        for op in ops:
            m.body.append(op)
        return m

    def trailing_loc(self, default: Loc):
        """An optional `loc(...)` on the current line, else `default`."""
        self.hskip()
        if self.startswith("loc("):
            return self.loc_literal()
        return default

    def loc_literal(self):
        m = _LOC.match(self.text, self.pos)
        if m is not None:  # the common, well-formed case in one match
            file = self.file_cache.get(m.group(1))
            if file is None:
                self.pos = m.start(1)
                file = self.string()  # decodes and reports a bad escape
                self.file_cache[m.group(1)] = file
            self.pos = m.end()
            return Loc(file, int(m.group(2)), int(m.group(3)))
        self.pos += len("loc(")
        self.skip()
        if self.keyword_here("unknown"):
            self.pos += len("unknown")
            self.skip()
            self.expect(")")
            return None
        if self.peek() != '"':
            self.expected("a file name string or 'unknown' in loc(...)")
        file = self.string()
        self.expect(":", "':' after the file name in loc(...)")
        m = self.match(_INT)
        if m is None:
            self.expected("a line number in loc(...)")
        line = int(m.group(0))
        self.expect(":", "':' after the line number in loc(...)")
        m = self.match(_INT)
        if m is None:
            self.expected("a column number in loc(...)")
        col = int(m.group(0))
        self.expect(")", "')' to close loc(...)")
        return Loc(file, line, col)

    # -- ops -------------------------------------------------------------------------
    def op(self) -> Op:
        start = self.pos
        result_names = []  # (text without %, position)
        if self.peek() == "%":
            while True:
                self.skip()
                p = self.pos
                m = self.match(_VALUE)
                if m is None:
                    self.expected("a result name")
                result_names.append((m.group(0)[1:], p, m.group(1)))
                self.skip()
                if self.peek() == ",":
                    self.pos += 1
                    continue
                break
            if self.peek() != "=":
                self.expected("'=' after result names")
            self.pos += 1
            self.skip()
        if self.peek() == '"':
            name = self.string()
        else:
            m = self.match(_OPNAME)
            if m is None:
                self.expected("an op name (dialect.name)")
            name = m.group(0)
        default_loc = self.loc_at(start)
        self.hskip()
        if name == "func.func" and self.peek() == "@":
            if result_names:
                self.error("func.func has no results", result_names[0][1])
            op = self.func(default_loc)
        else:
            op = self.generic(name, result_names, default_loc)
        for (text, p, _), r in zip(result_names, op.results):
            self.define(text, r, p)
        self.hskip()
        if not self.at_line_end():
            self.error(f"unexpected {self.describe()} after op {name}")
        return op

    def define(self, text: str, value, pos: int) -> None:
        if text in self.values:
            self.error(f"redefinition of value %{text}", pos)
        self.values[text] = value
        if self.scopes:
            self.scopes[-1].append(text)

    def isolate(self):
        """Start a namespace that sees nothing from outside; returns the old one."""
        saved = (self.values, self.scopes)
        self.values, self.scopes = {}, []
        return saved

    def restore(self, saved) -> None:
        self.values, self.scopes = saved

    def use(self):
        p = self.pos
        m = self.match(_VALUE)
        if m is None:
            self.expected("a value (%name)")
        v = self.values.get(m.group(0)[1:])
        if v is None:
            self.error(f"use of undefined value {m.group(0)}", p)
        return v

    def generic(self, name, result_names, default_loc) -> Op:
        operands = []
        if self.peek() == "%":
            while True:
                operands.append(self.use())
                self.hskip()
                if self.peek() != ",":
                    break
                self.pos += 1
                self.skip()
        attrs = {}
        if self.peek() == "{":
            attrs = self.attr_dict()
            self.hskip()
        types = []
        if self.peek() == ":":
            colon = self.pos
            self.pos += 1
            self.skip()
            types = self.type_list()
            if len(types) != len(result_names):
                self.error(
                    f"{name} has {len(result_names)} result names but {len(types)} result types",
                    colon,
                )
            self.hskip()
        elif result_names:
            self.expected(f"':' and the result types of {name}")
        regions = []
        if self.peek() == "(":
            self.pos += 1
            isolated = name in _ISOLATED
            saved = self.isolate() if isolated else None
            while True:
                self.skip()
                regions.append(self.region(generic=True))
                self.skip()
                if self.peek() == ",":
                    self.pos += 1
                    continue
                break
            self.expect(")", "')' after the regions")
            if isolated:
                self.restore(saved)
        loc = self.trailing_loc(default_loc)
        return Op(
            name,
            operands,
            types,
            attrs,
            regions,
            loc,
            [hint for _, _, hint in result_names],
        )

    def func(self, default_loc) -> Op:
        sym = self.symbol()
        self.skip()
        self.expect("(", "'(' before the parameters")
        saved = self.isolate()  # a function sees nothing from outside
        block = Block()
        self.skip()
        if self.peek() != ")":
            while True:
                self.skip()
                p = self.pos
                m = self.match(_VALUE)
                if m is None:
                    self.expected("a parameter (%name: type)")
                self.skip()
                self.expect(":", "':' after the parameter name")
                self.skip()
                arg = block.add_arg(self.type(), m.group(1))
                self.define(m.group(0)[1:], arg, p)
                self.skip()
                if self.peek() == ",":
                    self.pos += 1
                    continue
                break
        self.expect(")", "')' after the parameters")
        self.skip()
        res = ()
        if self.startswith("->"):
            self.pos += 2
            self.skip()
            if self.peek() == "(":
                self.pos += 1
                self.skip()
                res = tuple(self.type_list()) if self.peek() != ")" else ()
                self.skip()
                self.expect(")", "')' after the result types")
            else:
                res = (self.type(),)
            self.skip()
        attrs = {"sym_name": sym.name, "res_types": res}
        if self.keyword_here("attributes"):
            self.pos += len("attributes")
            self.skip()
            dpos = self.pos
            for k, v in self.attr_dict().items():
                if k in attrs:
                    self.error(f"duplicate attribute '{k}'", dpos)
                attrs[k] = v
            self.skip()
        self.expect("{", "'{' to open the function body")
        self.depth_in()
        self.block_ops(block)
        self.depth_out()
        self.expect("}", "'}' to close the function body")
        self.restore(saved)
        loc = self.trailing_loc(default_loc)
        return Op("func.func", (), (), attrs, [Region([block])], loc)

    def symbol(self) -> SymbolRef:
        p = self.pos
        self.expect("@", "a symbol (@name)")
        if self.peek() == '"':
            return SymbolRef(self.string())
        m = self.match(_IDENT)
        if m is None:
            self.error("expected a symbol name after '@'", p)
        return SymbolRef(m.group(0))

    def depth_in(self) -> None:
        self.depth += 1
        if self.depth > _MAX_DEPTH:
            self.error("nesting too deep")

    def depth_out(self) -> None:
        self.depth -= 1

    # -- regions and blocks --------------------------------------------------------------
    def region(self, generic: bool) -> Region:
        self.expect("{", "'{' to open a region")
        self.depth_in()
        # Names defined inside the region go out of scope at its end.
        self.scopes.append([])
        blocks = []
        self.skip()
        if self.peek() not in ("}", "^", ""):
            # Lenient: a region written without a block header has one
            # argument-less block.
            b = Block()
            self.block_ops(b)
            blocks.append(b)
        while self.peek() == "^":
            blocks.append(self.block())
        self.skip()
        self.expect("}", "'}' to close the region")
        for k in self.scopes.pop():
            del self.values[k]
        self.depth_out()
        return Region(blocks)

    def block(self) -> Block:
        m = self.match(_LABEL)
        if m is None:
            self.expected("a block label (^bb0)")
        b = Block()
        if self.peek() == "(":
            self.pos += 1
            self.skip()
            if self.peek() != ")":
                while True:
                    self.skip()
                    p = self.pos
                    vm = self.match(_VALUE)
                    if vm is None:
                        self.expected("a block argument (%name: type)")
                    self.skip()
                    self.expect(":", "':' after the block argument name")
                    self.skip()
                    a = b.add_arg(self.type(), vm.group(1))
                    self.define(vm.group(0)[1:], a, p)
                    self.skip()
                    if self.peek() == ",":
                        self.pos += 1
                        continue
                    break
            self.expect(")", "')' after the block arguments")
        self.expect(":", "':' after the block header")
        self.block_ops(b)
        return b

    def block_ops(self, b: Block) -> None:
        """Ops up to the next block label or closing brace."""
        while True:
            self.skip()
            c = self.peek()
            if c in ("}", "^", ""):
                return
            b.append(self.op())

    # -- types -----------------------------------------------------------------------
    def type_list(self) -> list:
        types = [self.type()]
        while True:
            self.hskip()
            if self.peek() != ",":
                return types
            self.pos += 1
            self.skip()
            types.append(self.type())

    def type(self) -> TensorType:
        start = self.pos
        span = _TYPE_SPAN.match(self.text, start)
        if span is not None:
            t = self.type_cache.get(span.group(0))
            if t is not None:
                self.pos = span.end()
                return t
        t = self._type()
        self.type_cache[self.text[start : self.pos]] = t
        return t

    def _type(self) -> TensorType:
        start = self.pos
        m = self.match(_IDENT)
        if m is None:
            self.expected("a type")
        dt = DTYPES.get(m.group(0))
        if dt is None:
            self.error(f"unknown dtype '{m.group(0)}'", start)
        j = _HWS.match(self.text, self.pos).end()
        if not self.text.startswith("[", j):
            return TensorType(dt, ())
        self.pos = j + 1
        dims = []
        while True:
            self.skip()
            dpos = self.pos
            text = self.match(_DIM).group(0).strip()
            if not text:
                self.expected("a dimension")
            d = self.dim_cache.get(text)
            if d is None:
                try:
                    d = parse_dim(text)
                except Exception:  # any failure of the dim parser is a bad input
                    self.error(f"bad dimension expression '{_clip(text)}'", dpos)
                self.dim_cache[text] = d
            if isinstance(d, int) and d < 0:
                self.error(f"negative dimension '{_clip(text)}'", dpos)
            dims.append(d)
            self.skip()
            if self.peek() == ",":
                self.pos += 1
                continue
            if self.peek() == "]":
                self.pos += 1
                break
            self.expected("',' or ']' in the shape")
        try:
            return TensorType(dt, tuple(dims))
        except TypeError_ as e:
            self.error(e.message, start)

    # -- attributes --------------------------------------------------------------------
    def attr_dict(self) -> dict:
        start = self.pos
        span = _DICT_SPAN.match(self.text, start)
        if span is not None:
            d = self.dict_cache.get(span.group(0))
            if d is not None:
                self.pos = span.end()
                return d
        d = self._attr_dict()
        self.dict_cache[self.text[start : self.pos]] = d
        return d

    def _attr_dict(self) -> dict:
        self.expect("{", "'{'")
        attrs = {}
        self.skip()
        if self.peek() == "}":
            self.pos += 1
            return attrs
        while True:
            self.skip()
            kpos = self.pos
            if self.peek() == '"':
                key = self.string()
            else:
                m = self.match(_IDENT)
                if m is None:
                    self.expected("an attribute name")
                key = m.group(0)
            if key in attrs:
                self.error(f"duplicate attribute '{key}'", kpos)
            self.skip()
            self.expect("=", f"'=' after attribute name '{key}'")
            self.skip()
            attrs[key] = self.attr_value()
            self.skip()
            if self.peek() == ",":
                self.pos += 1
                continue
            self.expect("}", "',' or '}' in the attribute dictionary")
            return attrs

    def attr_value(self):
        c = self.peek()
        start = self.pos
        if c == '"':
            return self.string()
        if c == "@":
            return self.symbol()
        if c == "[":
            self.pos += 1
            self.depth_in()
            items = []
            self.skip()
            if self.peek() == "]":
                self.pos += 1
            else:
                while True:
                    self.skip()
                    items.append(self.attr_value())
                    self.skip()
                    if self.peek() == ",":
                        self.pos += 1
                        continue
                    self.expect("]", "',' or ']' in the list")
                    break
            self.depth_out()
            return tuple(items)
        if c == "-" and self.startswith("-inf") and not self._ident_continues(4):
            self.pos += 4
            return float("-inf")
        if c == "-" or "0" <= c <= "9":
            m = self.match(_NUMBER)
            if m is None:
                self.expected("a number")
            text = m.group(0)
            return float(text) if (m.group(1) is not None or m.group(2) is not None) else int(text)
        m = _IDENT.match(self.text, self.pos)
        if m is None:
            self.expected("an attribute value")
        word = m.group(0)
        simple = {
            "true": True,
            "false": False,
            "none": None,
            "inf": float("inf"),
            "nan": float("nan"),
        }
        if word in simple:
            self.pos = m.end()
            return simple[word]
        if word in DTYPES or self.text.startswith("[", m.end()):
            return self.type()  # reports an unknown dtype
        if word == "dtype":
            self.pos = m.end()
            self.skip()
            self.expect("<", "'<' after dtype")
            self.skip()
            dm = self.match(_IDENT)
            if dm is None or dm.group(0) not in DTYPES:
                self.error(f"unknown dtype '{dm.group(0) if dm else ''}'", start)
            self.skip()
            self.expect(">", "'>' to close dtype<...>")
            return DTYPES[dm.group(0)]
        if word == "dense":
            self.pos = m.end()
            return self.dense(start)
        self.error(f"unknown attribute value '{word[:30]}'", start)

    def _ident_continues(self, offset: int) -> bool:
        i = self.pos + offset
        return i < len(self.text) and (self.text[i].isalnum() or self.text[i] in "_.$")

    def dense(self, start: int) -> np.ndarray:
        self.skip()
        self.expect("<", "'<' after dense")
        self.skip()
        tpos = self.pos
        t = self.type()
        if not t.is_static:
            self.error(f"dense literal needs a static shape, not {t}", tpos)
        self.skip()
        self.expect(",", "',' after the type of a dense literal")
        self.skip()
        bpos = self.pos
        body = self.match(_DENSE_BODY).group(0)
        self.expect(">", "'>' to close the dense literal")
        toks = _DENSE_TOKEN.findall(body)
        flat = _dense_scalars(toks, t.shape)
        if flat is None:
            self.error(f"dense literal does not match its type {t}", bpos)
        try:
            if t.dtype.is_bool:
                vals = []
                for s in flat:
                    if s not in ("true", "false"):
                        raise ValueError(s)
                    vals.append(s == "true")
            elif t.dtype.is_float:
                vals = [float(s) for s in flat]
            else:
                vals = [int(s) for s in flat]
            with np.errstate(all="ignore"):
                arr = np.array(vals, dtype=t.dtype.np).reshape(t.shape)
        except (ValueError, OverflowError, TypeError):
            self.error(f"bad value in dense literal of type {t}", bpos)
        return arr


def _clip(text: str, n: int = 40) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


def _dense_scalars(toks: list, shape: tuple):
    """The scalar tokens of a nested list literal of `shape`, or None if the
    nesting, the separators or the lengths do not match the shape."""
    flat = []
    n = len(toks)
    rank = len(shape)
    if rank == 0:
        if n != 1 or toks[0] in ("[", "]", ","):
            return None
        return toks
    i = 0
    # An explicit stack instead of recursion: the rank comes from the input.
    stack = []  # items still expected at each open level
    while True:
        if len(stack) < rank:
            if i >= n or toks[i] != "[":
                return None
            i += 1
            stack.append(shape[len(stack)])
            if stack[-1] == 0:
                if i >= n or toks[i] != "]":
                    return None
                i += 1
                stack.pop()
            else:
                continue
        else:
            if i >= n or toks[i] in ("[", "]", ","):
                return None
            flat.append(toks[i])
            i += 1
        # one item of the innermost open list is done; close finished lists
        while stack:
            stack[-1] -= 1
            if stack[-1] > 0:
                if i >= n or toks[i] != ",":
                    return None
                i += 1
                break
            if i >= n or toks[i] != "]":
                return None
            i += 1
            stack.pop()
        if not stack:
            return flat if i == n else None
