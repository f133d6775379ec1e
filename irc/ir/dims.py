"""Symbolic dimension arithmetic: named dims and expressions over them.

A dimension is an int or a string. A string is a canonical expression over
named dims: a sum of products with integer coefficients, where `(e)//k` (floor
division by a positive constant) may appear as an atom. Examples: `N`, `T*B`,
`H-4`, `(H-2)//2`. Canonical strings compare equal exactly when the
polynomials are equal, so type equality stays string equality.

Owns: dim_add, dim_sub, dim_mul, dim_floordiv, parse_dim, eval_dim, dim_tree,
eval_tree, dim_names, and the unification of unknown dims (Unifier, unifying,
same_dim) that the type rules use to compare dims. Dim text is parsed here and
nowhere else (never by eval).
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


# -- unknown dims and their unification (the Python API without dims=) ----------------


class Unifier:
    """Unknown dims: names that stand for a size nobody has given yet, bound
    by unification as they meet other dims (as named dims are in `.tg`).

    The Python API (irc/symbolic.py) makes one for the inputs made without
    `dims=`: `x @ W` with W f32[8, 3] binds x's last dim to 8, two unknowns that
    meet become one. Types keep the names; `resolve` substitutes the bindings
    (Variables resolve their types lazily, so a later binding reaches earlier
    expressions). An unknown still free when a function is compiled is an
    ordinary named dim there, bound by the arguments at each call.

    Bindings are undoable (`mark`/`rollback`): a failed op leaves no binding
    behind, and `irc.function` binds the dims of `givens` locally.

    A name is released, to be used again, when its owner (the object it was
    made for, held weakly) is garbage: whoever mentions a name must keep its
    owner alive (`owners`), and a binding keeps the owners of the names it
    mentions alive for as long as the bound name lives.
    """

    def __init__(self):
        self.unknown: set = set()  # the names that are unknowns
        self.binding: dict = {}  # unknown name -> Dim (may mention other unknowns)
        self.trail: list = []  # names bound, in order, for rollback
        self.version = 0  # bumped on every change: caches of resolved types check it
        self.owner: dict = {}  # unknown name -> weakref to the object it was made for
        self.refs: dict = {}  # bound name -> owners its binding mentions (kept alive)

    def fresh(self, hint: str, taken=()) -> str:
        """A new unknown named `hint` (made unique: hint, hint_1, ...)."""
        name, k = hint, 0
        while name in self.unknown or name in taken:
            k += 1
            name = f"{hint}_{k}"
        self.unknown.add(name)
        return name

    def adopt(self, names, owner) -> None:
        """Tie the lifetime of the unknowns `names` to `owner`."""
        import weakref

        for n in names:
            self.owner[n] = weakref.ref(owner, lambda _r, n=n: self._release(n))

    def _release(self, name: str) -> None:
        self.unknown.discard(name)
        self.binding.pop(name, None)
        self.refs.pop(name, None)
        self.owner.pop(name, None)
        self.version += 1

    def owners(self, d: Dim) -> list:
        """The live owners of the unknowns `d` mentions (to keep them alive)."""
        if isinstance(d, int):
            return []
        out = []
        for n in dim_names(d):
            r = self.owner.get(n)
            o = r() if r is not None else None
            if o is not None:
                out.append(o)
        return out

    def mark(self) -> int:
        return len(self.trail)

    def rollback(self, mark: int) -> None:
        while len(self.trail) > mark:
            name = self.trail.pop()
            self.binding.pop(name, None)
            self.refs.pop(name, None)
        self.version += 1

    def resolve(self, d: Dim) -> Dim:
        """`d` with every bound unknown replaced by its binding (recursively)."""
        if isinstance(d, int) or not self.binding:
            return d
        if d.isidentifier():
            b = self.binding.get(d)
            return d if b is None else self.resolve(b)
        names = dim_names(d)
        if not any(n in self.binding for n in names):
            return d
        text = re.sub(r"[A-Za-z_][A-Za-z_0-9]*", lambda m: f"({self.resolve(m.group(0))})", d)
        return parse_dim(text)

    def free(self, d: Dim) -> set:
        """The unknowns `d` still depends on (after resolving)."""
        return {n for n in dim_names(self.resolve(d)) if n in self.unknown}

    def _bind(self, name: str, d: Dim) -> bool:
        if name in dim_names(d):  # u = u + 1 has no solution; u = u is caught before
            return False
        self.binding[name] = d
        self.refs[name] = self.owners(d)
        self.trail.append(name)
        self.version += 1
        return True

    def unify(self, a: Dim, b: Dim) -> bool:
        """Make `a` and `b` equal by binding unknowns. True when they are equal
        now, or cannot be decided yet (a product of unknowns against a size:
        the compiled function's verifier checks it once the dims are known);
        False on a genuine conflict."""
        a, b = self.resolve(a), self.resolve(b)
        if a == b:
            return True
        for x, y in ((a, b), (b, a)):
            if isinstance(x, str) and x in self.unknown:
                return self._bind(x, y)
        if not (self.free(a) or self.free(b)):
            return False
        p = _add(_poly_of(a), _poly_of(b), -1)  # a - b == 0
        # One unknown of degree 1 with a coefficient dividing the rest: solve for it.
        for m, c in p.items():
            if len(m) == 1 and m[0] in self.unknown:
                u = m[0]
                rest = {k: v for k, v in p.items() if k != m}
                if any(u in k or any(u in dim_names(x) for x in k) for k in rest):
                    continue
                if all(v % c == 0 for v in rest.values()):
                    return self._bind(u, _to_dim({k: -v // c for k, v in rest.items()}))
        # Two products: cancel their common factors (u0*u1 == 64*u0 gives u1 == 64).
        pa, pb = _poly_of(a), _poly_of(b)
        if len(pa) == 1 and len(pb) == 1:
            (ma, ca), (mb, cb) = next(iter(pa.items())), next(iter(pb.items()))
            la, lb = list(ma), list(mb)
            for x in ma:
                if x in lb:
                    la.remove(x)
                    lb.remove(x)
            if len(la) < len(ma):
                return self.unify(_to_dim({tuple(la): ca}), _to_dim({tuple(lb): cb}))
        return True  # undecidable until call time; the verifier checks it


_ACTIVE: list = []  # the unifier in force while the Python API infers types


class unifying:
    """`with unifying(u):` dims compared by `same_dim` may bind u's unknowns."""

    def __init__(self, unifier: Unifier):
        self.unifier = unifier

    def __enter__(self):
        _ACTIVE.append(self.unifier)
        return self.unifier

    def __exit__(self, *exc):
        _ACTIVE.pop()
        return False


def same_dim(a: Dim, b: Dim) -> bool:
    """Whether two dims are equal: equal canonical forms; where unknown dims are
    in force (`unifying`), also when unification can make them equal."""
    if a == b:
        return True
    return bool(_ACTIVE) and _ACTIVE[-1].unify(a, b)


def same_shape(a: tuple, b: tuple) -> bool:
    return len(a) == len(b) and all(same_dim(x, y) for x, y in zip(a, b))
