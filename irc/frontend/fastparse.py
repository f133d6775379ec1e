"""A hand-written recursive-descent parser for `.tg` text: the fast path of
parse.py, for programs the grammar accepts.

grammar/tg.lark stays the language's definition and Lark its reference
parser. Lark's LALR parser in pure Python costs ~0.1 ms a token (the parse
tree, position propagation and the tree-to-AST pass), two thirds of the
compile time of a 20,000-statement function; this parser builds the same AST
(same nodes, same locations) directly, about ten times faster.

It is conservative: on anything unusual it raises `Fallback` and parse.py
parses the text again with Lark, which either accepts it or reports the
located error (so every error message is Lark's path's, unchanged). Unusual
means: any syntax error; a reserved word where a name is expected (Lark's
contextual lexer reads some of them as names in some places); a token
sequence whose meaning depends on that lexer's context (`<-` or `->` inside
an expression); literals near a range limit; a repeated scan option or a
positional argument after a keyword argument (both errors); nesting deep
enough to reach Python's recursion limit. tests/frontend/test_fastparse.py
checks it against Lark on the examples and on mutated programs: it must give
Lark's AST or fall back.

Locations follow Lark's `propagate_positions`: a node starts at the start of
its first child's text including any parentheses around it (`(a) + b` starts
at the `(`); a comparison's and a call's are their operator's and name's.

Imports only irc.frontend.ast and irc.ir.
"""

from __future__ import annotations

import re
from dataclasses import fields

from irc.frontend import ast as A
from irc.ir.core import Loc


class Fallback(Exception):
    """This text is not for the fast path: parse it with Lark."""


# Words the grammar spells as keywords or reserved terminals. Lark's contextual
# lexer reads some of them as NAMEs where a keyword cannot follow; this parser
# never guesses which: such a word where a name is expected falls back.
_RESERVED = frozenset(
    [
        "seed",
        "const",
        "shared",
        "def",
        "fn",
        "return",
        "yield",
        "true",
        "false",
        "True",
        "False",
        "None",
        "scan",
        "in",
        "steps",
        "truncate",
        "f32",
        "f64",
        "i32",
        "i64",
        "bool",
    ]
)
_DTYPES = frozenset(("f32", "f64", "i32", "i64", "bool"))
_EXPR_WORDS = _DTYPES | {"true", "false", "True", "False", "None", "scan"}
_LITERALS = {"true": True, "false": False, "True": True, "False": False}

_COMPARE = frozenset(("==", "!=", "<=", ">=", "<", ">"))
# Binary operators by precedence level (loosest first), each left-associative;
# comparisons (non-associative) sit above them, `**` and unary below.
_LEVELS = (
    {"|": "|"},
    {"&": "&"},
    {"+": "+", "-": "-"},
    {"*": "*", "/": "/", "//": "//", "%": "%", "@": "@"},
)
_PRECEDENCE = {op: level for level, ops in enumerate(_LEVELS) for op in ops}
_UNARY = frozenset(("-", "+", "~"))
_AFTER_ATOM = frozenset(("(", "[", "**"))  # what makes more of an atom (binary's fast case)
_INF = float("inf")
_INT_DIGITS = 18  # longer integer literals go to parse.py's range check
_FLOAT_CHARS = 400


# The tokens of one line (no token holds a newline): whitespace (group 1), then
# the first matching alternative (so longer operators come before their
# prefixes and FLOAT before INT, as Lark orders them): NAME, operator, FLOAT,
# INT, STRING, comment; the last, any other character but whitespace, makes
# the text fall back. The alternatives but FLOAT and INT start with characters
# of their own (FLOAT's `.5` is no operator's), so their order is that of how
# often they come: the regex engine tries them in turn. One match ends where
# the next begins (any character but whitespace matches), so a token's column
# is the length of what came before.
_LINE_TOKEN = re.compile(
    r"""
    ([ \t\f\r]*)
    (?:
      ([A-Za-z_][A-Za-z0-9_]*)
    | (\.\.\.|\*\*|//|->|<-|==|!=|<=|>=|[-+*/%@&|~<>=()\[\]{},:;])
    | ((?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?|[0-9]+[eE][-+]?[0-9]+)
    | ([0-9]+)
    | ("[^"\\]*")
    | (\#.*)
    | ([^ \t\f\r])
    )
    """,
    re.VERBOSE,
)


def tokenize(text: str) -> tuple:
    """(kinds, values, lines, cols) of the tokens, with an end marker."""
    kinds, values, lines, cols = [], [], [], []
    # (findall's tuples of groups, not match objects: no method call per token)
    findall = _LINE_TOKEN.findall
    line_no = 0
    line = ""
    for line_no, line in enumerate(text.split("\n"), 1):
        if not line:
            continue
        col = 1
        for space, name, op, float_, int_, string, comment, other in findall(line):
            col += len(space)
            if name:
                kinds.append("NAME")
                value = name
            elif op:
                kinds.append(op)
                value = op
            elif float_:
                kinds.append("FLOAT")
                value = float_
            elif int_:
                kinds.append("INT")
                value = int_
            elif string:
                kinds.append("STRING")
                value = string
            elif comment:
                break  # (the rest of the line)
            else:
                raise Fallback  # (other)
            values.append(value)
            lines.append(line_no)
            cols.append(col)
            col += len(value)
    kinds.append("$END")
    values.append("")
    lines.append(line_no)
    cols.append(len(line) + 1)
    return kinds, values, lines, cols


def fast_parse(text: str, filename: str) -> A.Program:
    """The AST of `text`, or Fallback."""
    parser = _Parser(text, filename)
    try:
        program = parser.program()
    except (RecursionError, IndexError):
        raise Fallback from None
    # A node's height is at most its token count: only long statements and
    # declarations can be too deep.
    for node in parser.long:
        if _height(node) > MAX_HEIGHT:
            raise Fallback
    return program


# Deeper ASTs go to Lark, whose recursive tree walk either takes them or
# reports "expression nested too deeply": this parser builds long operator
# chains (`x + x + ... + x`) without recursing, so it must not accept more.
MAX_HEIGHT = 40  # Lark walks ~10 tree levels per AST level (precedence rules); 100 overflowed under a deep stack


def _height(program: A.Program) -> int:
    """The height of the AST (iterative: it may be deep)."""
    best = 0
    stack = [(program, 1)]
    while stack:
        node, h = stack.pop()
        if h > best:
            best = h
            if best > MAX_HEIGHT:
                return best
        for v in [getattr(node, f.name) for f in fields(node)]:
            if isinstance(v, A.Node):
                stack.append((v, h + 1))
            elif isinstance(v, (list, tuple)):
                for x in v:
                    if isinstance(x, A.Node):
                        stack.append((x, h + 1))
                    elif isinstance(x, tuple):
                        stack.extend((y, h + 1) for y in x if isinstance(y, A.Node))
            elif isinstance(v, dict):
                stack.extend((y, h + 1) for y in v.values() if isinstance(y, A.Node))
    return best


class _Parser:
    def __init__(self, text: str, filename: str):
        self.kinds, self.values, self.lines, self.cols = tokenize(text)
        self.locs = [None] * len(self.kinds)  # token index -> its Loc, once made
        self.file = filename
        self.i = 0
        self.long = []  # statements and declarations of over MAX_HEIGHT tokens

    # -- tokens -----------------------------------------------------------------------------------
    def loc(self, i: int) -> Loc:
        # One Loc per token at most: the nodes that start at one token (`a * b + c`:
        # a name and two operators) share it.
        loc = self.locs[i]
        if loc is None:
            loc = self.locs[i] = Loc(self.file, self.lines[i], self.cols[i])
        return loc

    def expect(self, kind: str) -> int:
        i = self.i
        if self.kinds[i] != kind:
            raise Fallback
        self.i = i + 1
        return i

    def name(self) -> int:
        """The index of a NAME token that is not a reserved word."""
        i = self.expect("NAME")
        if self.values[i] in _RESERVED:
            raise Fallback
        return i

    def keyword(self, word: str) -> int:
        i = self.i
        if self.kinds[i] != "NAME" or self.values[i] != word:
            raise Fallback
        self.i = i + 1
        return i

    def accept(self, kind: str) -> bool:
        if self.kinds[self.i] == kind:
            self.i += 1
            return True
        return False

    def at_word(self, word: str) -> bool:
        return self.kinds[self.i] == "NAME" and self.values[self.i] == word

    # -- declarations -----------------------------------------------------------------------------
    def program(self) -> A.Program:
        decls = []
        while self.kinds[self.i] != "$END":
            start = self.i
            decls.append(self.decl())
            if self.i - start > MAX_HEIGHT and not isinstance(decls[-1], A.FuncDecl):
                self.long.append(decls[-1])
        return A.Program(Loc(self.file, 1, 1), decls)

    def decl(self):
        i = self.i
        word = self.values[i] if self.kinds[i] == "NAME" else None
        if word == "seed":
            self.i += 1
            return A.SeedDecl(self.loc(i), self.int_value(self.expect("INT")))
        if word == "const":
            self.i += 1
            name = self.values[self.name()]
            self.expect("=")
            return A.ConstDecl(self.loc(i), name, self.expr())
        if word == "shared":
            self.i += 1
            name = self.values[self.name()]
            self.expect(":")
            typ = self.type()
            self.expect("=")
            init = self.name()
            self.expect("(")
            pos, kw = self.args(")")
            return A.SharedDecl(self.loc(i), name, typ, self.values[init], self.loc(init), pos, kw)
        if word in ("def", "fn"):
            self.i += 1
            name = self.values[self.name()]
            self.expect("(")
            params = []
            while not self.accept(")"):
                params.append(self.param())
                if not self.accept(","):
                    self.expect(")")
                    break
            ret, is_tuple = None, False
            if self.accept("->"):
                if self.accept("("):
                    ret, is_tuple = [self.type()], True
                    while self.accept(","):
                        if self.kinds[self.i] == ")":
                            break
                        ret.append(self.type())
                    self.expect(")")
                else:
                    ret = [self.type()]
            if self.i - i > MAX_HEIGHT:  # the signature: parameter and result types
                self.long.extend(params + (ret or []))
            return A.FuncDecl(self.loc(i), word, name, params, ret, is_tuple, self.block())
        raise Fallback

    def param(self) -> A.Param:
        i = self.name()
        self.expect(":")
        typ = self.type()
        default = self.expr() if self.accept("=") else None
        return A.Param(self.loc(i), self.values[i], typ, default)

    def type(self) -> A.TypeExpr:
        i = self.expect("NAME")
        if self.values[i] not in _DTYPES:
            raise Fallback
        dims = None
        if self.accept("[") and not self.accept("]"):
            dims = [self.dim_sum()[0]]
            while self.accept(","):
                if self.kinds[self.i] == "]":
                    break
                dims.append(self.dim_sum()[0])
            self.expect("]")
        return A.TypeExpr(self.loc(i), self.values[i], dims)

    # Each dim_* returns (node, index of the token its text starts at, parentheses included).
    def dim_sum(self):
        left, start = self.dim_prod()
        while self.kinds[self.i] in ("+", "-"):
            op = self.kinds[self.i]
            self.i += 1
            right, _ = self.dim_prod()
            left = A.DimExpr(self.loc(start), op, [left, right])
        return left, start

    def dim_prod(self):
        left, start = self.dim_atom()
        while self.kinds[self.i] in ("*", "//"):
            op = self.kinds[self.i]
            self.i += 1
            right, _ = self.dim_atom()
            left = A.DimExpr(self.loc(start), op, [left, right])
        return left, start

    def dim_atom(self):
        i = self.i
        kind = self.kinds[i]
        if kind == "INT":
            self.i += 1
            if len(self.values[i]) > _INT_DIGITS:
                raise Fallback
            return A.DimExpr(self.loc(i), "int", [int(self.values[i])]), i
        if kind == "NAME":
            self.name()
            return A.DimExpr(self.loc(i), "name", [self.values[i]]), i
        self.expect("(")
        node, _ = self.dim_sum()
        self.expect(")")
        return node, i

    # -- statements -------------------------------------------------------------------------------
    def block(self) -> list:
        self.expect("{")
        body = []
        while not self.accept("}"):
            start = self.i
            body.append(self.stmt())
            if self.i - start > MAX_HEIGHT:
                self.long.append(body[-1])
        return body

    def stmt(self):
        i = self.i
        if self.kinds[i] != "NAME":
            raise Fallback
        word = self.values[i]
        if word == "return" or word == "yield":
            self.i += 1
            values = [self.expr()]
            while self.accept(","):
                values.append(self.expr())
            return (A.Return if word == "return" else A.Yield)(self.loc(i), values)
        if word in _RESERVED:  # (self.name(), written out)
            raise Fallback
        kinds = self.kinds
        k = kinds[i + 1]
        if k == "=":  # (`x = ...`: most statements)
            self.i = i + 2
            return A.Assign(self.loc(i), [word], self.expr())
        self.i = i + 1
        if k == "<-":
            self.i += 1
            return A.Update(self.loc(i), word, self.expr())
        targets = [word]
        while self.accept(","):
            targets.append(self.values[self.name()])
        self.expect("=")
        return A.Assign(self.loc(i), targets, self.expr())

    # -- expressions ------------------------------------------------------------------------------
    # Each returns (node, index of the token its text starts at, parentheses included).
    def expr(self):
        # (compare()[0], written out)
        left, start = self.binary(0)
        if self.kinds[self.i] in _COMPARE:
            op = self.i
            self.i += 1
            right, _ = self.binary(0)
            return A.BinOp(self.loc(op), self.values[op], left, right)
        return left

    def compare(self):
        left, start = self.binary(0)
        k = self.kinds[self.i]
        if k in _COMPARE:
            op = self.i
            self.i += 1
            right, _ = self.binary(0)
            return A.BinOp(self.loc(op), self.values[op], left, right), start
        return left, start

    def binary(self, level: int):
        """An operand and the operators of _LEVELS[level:] that follow it, left
        associative (precedence climbing: one call per operand, not one per
        level of _LEVELS)."""
        # (An operand that is a name or a number with no call, index or `**`
        # after it, as unary and atom make it: most operands.)
        kinds = self.kinds
        start = self.i
        k = kinds[start]
        if k == "NAME" and kinds[start + 1] not in _AFTER_ATOM:
            value = self.values[start]
            if value in _RESERVED:
                left, start = self.unary()
            else:
                self.i = start + 1
                left = A.Name(self.loc(start), value)
        elif k == "FLOAT" and kinds[start + 1] not in _AFTER_ATOM:
            value = self.values[start]
            if len(value) > _FLOAT_CHARS:
                raise Fallback
            v = float(value)
            if v == _INF:
                raise Fallback
            self.i = start + 1
            left = A.Num(self.loc(start), v, True)
        elif k == "INT" and kinds[start + 1] not in _AFTER_ATOM:
            self.i = start + 1
            left = A.Num(self.loc(start), self.int_value(start), False)
        else:
            left, start = self.unary()
        if kinds[self.i] in ("<-", "->"):
            raise Fallback  # Lark's contextual lexer reads these as two tokens here
        precedence = _PRECEDENCE
        while True:
            k = kinds[self.i]
            p = precedence.get(k)
            if p is None or p < level:
                return left, start
            self.i += 1
            right, _ = self.binary(p + 1)
            left = A.BinOp(self.loc(start), k, left, right)

    def unary(self):
        i = self.i
        k = self.kinds[i]
        if k in _UNARY:
            self.i += 1
            operand, _ = self.unary()
            return A.UnaryOp(self.loc(i), k, operand), i
        base, start = self.atom()  # (postfix, written out)
        while self.kinds[self.i] == "[":
            self.i += 1
            base = A.Index(self.loc(start), base, self.index_items())
        if self.kinds[self.i] == "**":
            self.i += 1
            exponent, _ = self.unary()
            return A.BinOp(self.loc(start), "**", base, exponent), start
        return base, start

    def index_items(self) -> list:
        items = [self.index_item()]
        while self.accept(","):
            if self.kinds[self.i] == "]":
                break
            items.append(self.index_item())
        self.expect("]")
        return items

    def index_item(self):
        i = self.i
        if self.accept("..."):
            return A.Ellipsis_(self.loc(i))
        start = None if self.kinds[i] == ":" else self.compare()
        if self.kinds[self.i] != ":":
            if start is None:
                raise Fallback
            return start[0]
        loc = self.loc(i)  # the slice's first token: its start, or the ':'
        self.i += 1
        stop = step = None
        if self.kinds[self.i] not in (":", ",", "]"):
            stop = self.expr()
        if self.accept(":") and self.kinds[self.i] not in (",", "]"):
            step = self.expr()
        return A.Slice(loc, start and start[0], stop, step)

    def atom(self):
        i = self.i
        kind = self.kinds[i]
        value = self.values[i]
        self.i = i + 1
        if kind == "NAME":
            if value in _RESERVED:
                if value in _LITERALS:
                    return A.Bool(self.loc(i), _LITERALS[value]), i
                if value == "None":
                    return A.NoneLit(self.loc(i)), i
                if value in _DTYPES:
                    return A.DTypeLit(self.loc(i), value), i
                if value == "scan":
                    return self.scan(i), i
                raise Fallback
            if self.kinds[i + 1] == "(":
                self.i += 1
                pos, kw = self.args(")")
                return A.Call(self.loc(i), value, pos, kw), i
            return A.Name(self.loc(i), value), i
        if kind == "INT":
            return A.Num(self.loc(i), self.int_value(i), False), i
        if kind == "FLOAT":
            if len(value) > _FLOAT_CHARS:
                raise Fallback
            v = float(value)
            if v == _INF:
                raise Fallback
            return A.Num(self.loc(i), v, True), i
        if kind == "(":
            node, _ = self.compare()
            self.expect(")")
            return node, i
        if kind == "STRING":
            return A.Str(self.loc(i), value[1:-1]), i
        if kind == "[":
            items = []
            while not self.accept("]"):
                items.append(self.expr())
                if not self.accept(","):
                    self.expect("]")
                    break
            return A.ListLit(self.loc(i), items), i
        raise Fallback

    def int_value(self, i: int) -> int:
        text = self.values[i]
        if len(text) > _INT_DIGITS:
            raise Fallback
        return int(text)

    def args(self, close: str):
        """Call or initialiser arguments up to `close`: (positional, keyword)."""
        pos, kw = [], []
        while not self.accept(close):
            i = self.i
            if self.kinds[i] == "NAME" and self.kinds[i + 1] == "=":
                # Where an argument starts, Lark's lexer reads as keywords only
                # the words that can start an expression; `seed=` is a name.
                if self.values[i] in _EXPR_WORDS:
                    raise Fallback
                self.i += 2
                kw.append((self.values[i], self.expr(), self.loc(i)))
            else:
                if kw:
                    raise Fallback
                pos.append(self.expr())
            if not self.accept(","):
                self.expect(close)
                break
        return pos, kw

    def scan(self, i: int) -> A.Scan:
        self.expect("(")
        seqs = []
        while self.kinds[self.i] != ";":
            n = self.name()
            self.keyword("in")
            seqs.append((self.values[n], self.expr(), self.loc(n)))
            if not self.accept(","):
                break
        self.expect(";")
        carries, options = [], {}
        while self.kinds[self.i] not in (";", ")"):
            n = self.expect("NAME")
            word = self.values[n]
            self.expect("=")
            value = self.expr()
            if word in ("steps", "truncate"):
                if word in options:
                    raise Fallback
                options[word] = value
            elif word in _RESERVED:
                raise Fallback
            else:
                carries.append((word, value, self.loc(n)))
            if not self.accept(","):
                break
        if self.accept(";"):
            while self.kinds[self.i] != ")":
                n = self.expect("NAME")
                word = self.values[n]
                if word not in ("steps", "truncate") or word in options:
                    raise Fallback
                self.expect("=")
                options[word] = self.expr()
                if not self.accept(","):
                    break
        self.expect(")")
        return A.Scan(self.loc(i), seqs, carries, options, self.block())
