"""Symbolic dimension arithmetic: named dims and expressions over them.

A dimension is an int or a string. A string is a canonical expression over
named dims: a sum of products with integer coefficients, where `(e)//k` (floor
division by a positive constant) may appear as an atom. Examples: `N`, `T*B`,
`H-4`, `(H-2)//2`. Canonical strings compare equal exactly when the
polynomials are equal, so type equality stays string equality.

Owns: dim_add, dim_sub, dim_mul, dim_floordiv, parse_dim, eval_dim, dim_tree,
eval_tree, dim_names. Dim text is parsed here and nowhere else (never by eval).
Imports nothing of the project.
"""

from __future__ import annotations

import functools
import re
from typing import Union

Dim = Union[int, str]

# Sizes, dims and compile-time integers are 64-bit signed integers.
INT64_MAX = 2**63 - 1

# A polynomial: {monomial (sorted tuple of atoms): int coefficient}; the empty
# monomial () is the constant term.


def _poly_of(d: Dim) -> dict:
    if isinstance(d, int):
        return {(): d} if d else {}
    return _parse(d)


def _norm(p: dict) -> dict:
    return {m: c for m, c in p.items() if c != 0}


def _to_dim(p: dict) -> Dim:
    p = _norm(p)
    if not p:
        return 0
    if list(p) == [()]:
        return p[()]
    terms = []
    # Deterministic order: higher degree first, then lexicographic; constant last.
    for m in sorted((m for m in p if m), key=lambda m: (-len(m), m)):
        c = p[m]
        # A quotient atom inside a product needs parentheses: 2*(H-2)//2 would
        # read back as (2*(H-2))//2.
        wrap = len(m) > 1 or c != 1
        body = "*".join(f"({a})" if wrap and "//" in a else a for a in m)
        if c == 1:
            t = body
        elif c == -1:
            t = "-" + body
        else:
            t = f"{c}*{body}"
        terms.append(t)
    if () in p:
        terms.append(str(p[()]))
    out = terms[0]
    for t in terms[1:]:
        out += t if t.startswith("-") else "+" + t
    return out


def _add(a: dict, b: dict, sign: int = 1) -> dict:
    r = dict(a)
    for m, c in b.items():
        r[m] = r.get(m, 0) + sign * c
    return _norm(r)


def _mul(a: dict, b: dict) -> dict:
    r: dict = {}
    for ma, ca in a.items():
        for mb, cb in b.items():
            m = tuple(sorted(ma + mb))
            r[m] = r.get(m, 0) + ca * cb
    return _norm(r)


def dim_add(a: Dim, b: Dim) -> Dim:
    if isinstance(a, int) and isinstance(b, int):
        return a + b
    return _to_dim(_add(_poly_of(a), _poly_of(b)))


def dim_sub(a: Dim, b: Dim) -> Dim:
    if isinstance(a, int) and isinstance(b, int):
        return a - b
    return _to_dim(_add(_poly_of(a), _poly_of(b), -1))


def dim_mul(a: Dim, b: Dim) -> Dim:
    if isinstance(a, int) and isinstance(b, int):
        return a * b
    return _to_dim(_mul(_poly_of(a), _poly_of(b)))


def dim_floordiv(a: Dim, k: int) -> Dim:
    """a // k for a positive integer k."""
    if k <= 0:
        raise ValueError("floor division of a dim by a non-positive number")
    if isinstance(a, int):
        return a // k
    return _to_dim(_floordiv_poly(_poly_of(a), k))


def _floordiv_poly(p: dict, k: int) -> dict:
    if k == 1:
        return p
    if all(c % k == 0 for c in p.values()):  # exact, e.g. (2*N)//2 = N
        return {m: c // k for m, c in p.items()}
    inner = _to_dim(p)
    if isinstance(inner, int):
        return {(): inner // k} if inner // k else {}
    # A non-exact quotient is an opaque atom; its text parses back to itself.
    text = f"{inner}//{k}" if inner.isidentifier() else f"({inner})//{k}"
    return {(text,): 1}


# -- parsing ---------------------------------------------------------------------

_TOKEN = re.compile(r"\s*(?:(\d+)|([A-Za-z_][A-Za-z_0-9]*)|(//|[-+*()]))")


def _tokens(text: str) -> list:
    toks = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m or m.end() == pos:
            raise ValueError(f"bad dimension expression {text!r}")
        pos = m.end()
        if m.group(1):
            toks.append(("int", int(m.group(1))))
        elif m.group(2):
            toks.append(("name", m.group(2)))
        else:
            toks.append(("op", m.group(3)))
    toks.append(("end", None))
    return toks


def _parse(text: str) -> dict:
    toks = _tokens(text)
    i = 0

    def peek():
        return toks[i]

    def take():
        nonlocal i
        t = toks[i]
        i += 1
        return t

    def expr():
        p = term()
        while peek() in (("op", "+"), ("op", "-")):
            sign = 1 if take()[1] == "+" else -1
            p = _add(p, term(), sign)
        return p

    def term():
        p = factor()
        while peek() in (("op", "*"), ("op", "//")):
            op = take()[1]
            rhs = factor()
            if op == "*":
                p = _mul(p, rhs)
            else:
                if list(rhs) != [()] or rhs[()] <= 0:
                    raise ValueError(f"floor division by a non-constant in {text!r}")
                p = _floordiv_poly(p, rhs[()])
        return p

    def factor():
        t = take()
        if t == ("op", "-"):
            return _mul({(): -1}, factor())
        if t[0] == "int":
            return {(): t[1]} if t[1] else {}
        if t[0] == "name":
            return {(t[1],): 1}
        if t == ("op", "("):
            p = expr()
            if take() != ("op", ")"):
                raise ValueError(f"unbalanced parentheses in {text!r}")
            # A parenthesised group followed by // becomes an atom in term().
            return p
        raise ValueError(f"bad dimension expression {text!r}")

    p = expr()
    if peek()[0] != "end":
        raise ValueError(f"bad dimension expression {text!r}")
    return p


def parse_dim(text: str) -> Dim:
    """Canonical Dim for the text of a dimension (`3`, `N`, `T*B`, `(H-2)//2`)."""
    return _to_dim(_parse(text))


def is_name(d: Dim) -> bool:
    return isinstance(d, str) and d.isidentifier()


def dim_names(d: Dim) -> set:
    if isinstance(d, int):
        return set()
    return set(re.findall(r"[A-Za-z_][A-Za-z_0-9]*", d))


def dim_tree(d: Dim):
    """The expression tree of a dim, for code generators and evaluation:
    ("int", v) | ("name", n) | ("neg", t) | (op, a, b) with op one of
    + - * //. Parsed here, never by Python's parser: a dim named `True`,
    `class` or `print` is a name like any other."""
    if isinstance(d, int):
        return ("int", d)
    return _tree_cache(d)


@functools.lru_cache(maxsize=4096)
def _tree_cache(text: str):
    toks = _tokens(text)
    pos = 0

    def peek():
        return toks[pos]

    def take():
        nonlocal pos
        pos += 1
        return toks[pos - 1]

    def expr():
        t = term()
        while peek() in (("op", "+"), ("op", "-")):
            t = (take()[1], t, term())
        return t

    def term():
        t = factor()
        while peek() in (("op", "*"), ("op", "//")):
            t = (take()[1], t, factor())
        return t

    def factor():
        k, v = take()
        if (k, v) == ("op", "-"):
            return ("neg", factor())
        if k == "int":
            return ("int", v)
        if k == "name":
            return ("name", v)
        if (k, v) == ("op", "("):
            t = expr()
            if take() != ("op", ")"):
                raise ValueError(f"unbalanced parentheses in {text!r}")
            return t
        raise ValueError(f"bad dimension expression {text!r}")

    t = expr()
    if peek()[0] != "end":
        raise ValueError(f"bad dimension expression {text!r}")
    return t


def eval_tree(t, env: dict) -> int:
    """The value of a dim tree given values for its names; KeyError if one is
    unbound. Python integers: no overflow here (callers check the range)."""
    k = t[0]
    if k == "int":
        return t[1]
    if k == "name":
        return int(env[t[1]])
    if k == "neg":
        return -eval_tree(t[1], env)
    a, b = eval_tree(t[1], env), eval_tree(t[2], env)
    if k == "+":
        return a + b
    if k == "-":
        return a - b
    if k == "*":
        return a * b
    return a // b


def eval_dim(d: Dim, env: dict) -> int:
    """The value of a dim given values for its names; KeyError if one is unbound."""
    if isinstance(d, int):
        return d
    if d in env:  # a plain name (the common case)
        return int(env[d])
    return eval_tree(dim_tree(d), env)
