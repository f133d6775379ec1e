"""AST -> tg IR: scopes, SSA renaming, constants, named-dim unification,
shape and dtype checks, shared variables and updates. grad, `def`
instantiation and scan are in irc/frontend/nested.py (a mixin of IRGen); the
compile-time values and scopes in irc/frontend/values.py; what the generator
shares with the Python API (operators, dim folding, affine forms, update and
scan-length checks, the built-ins) in irc/frontend/host.py and builtins.py.

Values during generation are either IR Values (tensors) or compile-time
values: Python numbers (weakly typed like Python scalars in NumPy 2: they take
the dtype of the tensor they meet), `Dim` (a named dim or an expression over
named dims; it folds with other dims and materialises as `tg.dim`), strings,
dtypes, lists and tuples.

A `def` is a template: each distinct tuple of argument types instantiates a
private func.func (its named dims unified with the caller's), called with
func.call; the `inline` pass then inlines it. An `fn` becomes a public
func.func. Shared variables become tg.global symbols; a function reads them
with tg.read at its entry and writes them with tg.update just before its
return (Theano's updates: every read sees the value from before the call).

Imports irc.ir, irc.ops and irc.frontend only.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from irc.frontend import ast as A
from irc.frontend.builtins import (
    BUILTINS,
    KEYWORDS,
    OPERATORS,
    REDUCTIONS,
    UNARY,
    bind_arguments,
    did_you_mean,
    run_builtin,
)
from irc.frontend.host import Host, default_dtype, literal_array, weak_dtype
from irc.frontend.indexing import ELLIPSIS, NONE, Slice, lower_index
from irc.frontend.nested import NestedGen
from irc.frontend.values import (
    Dim,
    FuncScope,
    FunctionContext,
    SharedRef,
    describe,
    dim_of,
    make_dim,
)
from irc.ir import dims as D
from irc.ir.core import Block, Loc, Module, Op, OpResult, Region, SymbolRef, Value
from irc.ir.dims import INT64_MAX as INT_MAX
from irc.ir.errors import CompileError
from irc.ir.types import (
    DTYPES,
    I32,
    DType,
    TensorType,
    TypeError_,
)
from irc.ops.registry import REGISTRY, OpBuilder, short_name, with_defaults

# The dtype a float literal takes against a tensor of each dtype (by name):
# weak_dtype's answer, which for a float depends on the tensor's dtype alone.
_WEAK_FLOAT: dict = {}

# Built-ins ev_Call makes without their handler where the argument is a tensor
# (and the axis and keepdims plain): name -> (op, "reduce" or None).
_FAST_BUILTINS = {name: ("tg." + name, None) for name in UNARY}
_FAST_BUILTINS.update({name: ("tg." + name, "reduce") for name in REDUCTIONS})
_REDUCTION_KEYWORDS = frozenset(("axis", "keepdims"))  # (a reduction's x, axis, keepdims)

INITIALISERS = ("zeros", "ones", "full", "normal", "uniform", "glorot_uniform", "load")


class IRGen(NestedGen):
    def __init__(self, program: A.Program, filename: str, defines: Optional[dict] = None):
        self.program = program
        self.file = filename
        self.defines = dict(defines or {})
        self.module = Module(Loc(filename, 1, 1))
        self.b = OpBuilder()
        self.consts: dict = {}
        self.shared: dict = {}
        self.defs: dict = {}
        self.fns: dict = {}
        self.seed = 0
        self.instances: dict = {}  # (def name, arg types) -> func op
        self.instantiating: list = []
        self.ctx: Optional[FunctionContext] = None
        self.scope: Optional[FuncScope] = None
        self.scan_depth = 0
        self.host = _Host(self)
        self._ev_methods: dict = {}  # node class -> bound ev_ method (see ev)

    def release(self) -> None:
        """Drop the references that make the generator a cycle (its host, its
        bound ev_ methods): once generated, it and the AST are freed as soon as
        the caller drops them, not by the next full collection, which would
        walk every node of a long function once more."""
        self.host = None
        self._ev_methods = None

    # -- errors ---------------------------------------------------------------------
    def err(self, msg, loc, hint=None):
        return CompileError(msg, loc, hint)

    # -- module -------------------------------------------------------------------
    def generate(self) -> Module:
        used_defines = set()
        for decl in self.program.decls:
            if isinstance(decl, (A.ConstDecl, A.SharedDecl, A.FuncDecl)):
                self._check_fresh(decl.name, decl.loc)
            if isinstance(decl, A.SeedDecl):
                self.seed = decl.value
            elif isinstance(decl, A.ConstDecl):
                if decl.name in self.defines:
                    self.consts[decl.name] = self.defines[decl.name]
                    used_defines.add(decl.name)
                else:
                    self.consts[decl.name] = self._const_value(decl.value)
            elif isinstance(decl, A.SharedDecl):
                self._shared(decl)
            elif isinstance(decl, A.FuncDecl):
                (self.defs if decl.kind == "def" else self.fns)[decl.name] = decl
        unknown = set(self.defines) - used_defines
        if unknown:
            name = sorted(unknown)[0]
            consts = ", ".join(sorted(self.consts)) or "none"
            raise self.err(
                f"-D {name}: the module has no const named '{name}' (consts: {consts})",
                Loc(self.file, 1, 1),
            )
        self.module.attrs["seed"] = self.seed
        for decl in self.program.decls:
            if isinstance(decl, A.FuncDecl) and decl.kind == "fn":
                self._function(decl)
        return self.module

    def _check_fresh(self, name, loc):
        if name in self.consts or name in self.shared or name in self.defs or name in self.fns:
            raise self.err(f"'{name}' is already defined in this module", loc)
        if name in BUILTINS or name in DTYPES or name in ("grad", "scan"):
            raise self.err(f"'{name}' is the name of a built-in", loc)

    def _const_value(self, node):
        saved = self.ctx
        self.ctx = None
        try:
            v = self.ev(node)
        finally:
            self.ctx = saved
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise self.err(
                "a const must be an integer or a float computed from literals and other consts",
                node.loc,
            )
        return v

    def _shared(self, decl: A.SharedDecl):
        try:
            t = self.resolve_type(decl.type, None)
        except CompileError as e:
            e.message = f"shared variable '{decl.name}': {e.message}"
            e.args = (e.message,)
            raise
        if not t.is_static:
            raise self.err(
                f"shared variable '{decl.name}' must have a static shape, got {t}", decl.type.loc
            )
        if decl.init not in INITIALISERS:
            raise self.err(
                f"unknown initialiser '{decl.init}'",
                decl.init_loc,
                "initialisers: " + ", ".join(sorted(INITIALISERS)),
            )
        args = [self._init_arg(a) for a in decl.args]
        kwargs = {k: self._init_arg(v) for k, v, _ in decl.kwargs}
        if decl.init == "full" and len(args) + len(kwargs) != 1:
            raise self.err("full(v) takes one value", decl.init_loc)
        if decl.init in ("normal", "uniform") and len(args) > 2:
            raise self.err(f"{decl.init}() takes at most 2 arguments", decl.init_loc)
        if decl.init == "load" and len(args) not in (1, 2):
            raise self.err('load takes a file and a key: load("data.npz", "x")', decl.init_loc)
        if decl.init in ("zeros", "ones", "glorot_uniform") and (args or kwargs):
            raise self.err(f"{decl.init}() takes no arguments", decl.init_loc)
        for k in kwargs:
            if k not in ("mean", "std", "lo", "hi", "value", "key"):
                raise self.err(f"unknown argument '{k}' of {decl.init}()", decl.init_loc)
        self._check_init_args(decl, t, args, kwargs)
        nbytes = t.dtype.np.itemsize
        for d in t.shape:
            nbytes *= d
        if nbytes > INT_MAX:
            raise self.err(
                f"shared variable '{decl.name}' ({t}) would need {nbytes} bytes, "
                "more than any machine can address",
                decl.type.loc,
            )
        init_args = tuple(args) + tuple((k, v) for k, v in kwargs.items())
        op = Op(
            "tg.global",
            (),
            (),
            {"sym_name": decl.name, "type": t, "init": decl.init, "init_args": init_args},
            (),
            decl.loc,
        )
        self.module.body.append(op)
        self.shared[decl.name] = SharedRef(decl.name, t, decl.loc)

    def _check_init_args(self, decl: A.SharedDecl, t: TensorType, args: list, kwargs: dict):
        """The initialiser's arguments: numbers where numbers are due, lo <= hi,
        std >= 0, a value the dtype can hold; located at the argument."""
        nodes = {}
        keys = {"full": ("value",), "normal": ("mean", "std"), "uniform": ("lo", "hi")}
        keys = keys.get(decl.init, ("file", "key") if decl.init == "load" else ())
        for k, a in zip(keys, decl.args):
            nodes[k] = a.loc
        for k, v, kloc in decl.kwargs:
            if k in nodes:
                raise self.err(f"argument '{k}' of {decl.init}() given twice", kloc)
            nodes[k] = kloc
        values = dict(zip(keys, args))
        values.update(kwargs)
        if decl.init == "load":
            for k, v in values.items():
                if not isinstance(v, str):
                    raise self.err(f"load(): the {k} must be a string, got {v!r}", nodes[k])
            return
        for k, v in values.items():
            if not isinstance(v, (int, float)):
                raise self.err(f"{decl.init}(): {k} must be a number, got {v!r}", nodes[k])
            if v != v or v in (float("inf"), float("-inf")):
                if not (decl.init == "full" and t.dtype.is_float):
                    raise self.err(f"{decl.init}(): {k} must be finite, got {v!r}", nodes[k])
        if decl.init == "full":
            v = values.get("value", 0)
            if not t.dtype.is_float:
                if isinstance(v, float) and v != int(v):
                    raise self.err(f"full(): {v!r} is not an integer ({t.dtype})", nodes["value"])
                info = np.iinfo(t.dtype.np) if t.dtype.np != np.bool_ else None
                if info is not None and not info.min <= v <= info.max:
                    raise self.err(f"full(): {v!r} is out of the {t.dtype} range", nodes["value"])
        if decl.init == "uniform" and values.get("lo", -1.0) > values.get("hi", 1.0):
            lo, hi = values.get("lo", -1.0), values.get("hi", 1.0)
            raise self.err(
                f"uniform(lo, hi): lo = {lo!r} is greater than hi = {hi!r}",
                nodes.get("lo", decl.init_loc),
            )
        if decl.init == "normal" and values.get("std", 1.0) < 0:
            raise self.err(f"normal(): std must be >= 0, got {values['std']!r}", nodes["std"])

    def _init_arg(self, node):
        v = self.ev_static(node)
        if isinstance(v, (int, float, str)) and not isinstance(v, bool):
            return v
        raise self.err("initialiser arguments must be numbers or strings", node.loc)

    # -- types ----------------------------------------------------------------------
    def resolve_dim(self, de: A.DimExpr, dim_map: Optional[dict]):
        """A DimExpr -> int or canonical str. Names that are consts give their
        value; other names are named dims, renamed through dim_map if given."""
        if de.op == "int":
            if de.args[0] > INT_MAX:
                raise self.err(
                    f"dimension {de.args[0]} is out of range (at most 2**63 - 1)", de.loc
                )
            return de.args[0]
        if de.op == "name":
            n = de.args[0]
            if n in self.consts:
                v = self.consts[n]
                if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                    raise self.err(f"const '{n}' = {v!r} cannot be a dimension", de.loc)
                return v
            if n in self.shared or n in self.defs or n in self.fns:
                raise self.err(f"'{n}' is not a dimension", de.loc)
            return dim_map.get(n, n) if dim_map is not None else n
        a = self.resolve_dim(de.args[0], dim_map)
        c = self.resolve_dim(de.args[1], dim_map)
        if de.op == "+":
            r = D.dim_add(a, c)
        elif de.op == "-":
            r = D.dim_sub(a, c)
        elif de.op == "*":
            r = D.dim_mul(a, c)
        else:
            if not isinstance(c, int) or c <= 0:
                raise self.err("a dimension can only be divided by a positive integer", de.loc)
            r = D.dim_floordiv(a, c)
        if isinstance(r, int) and r < 0:
            raise self.err(f"negative dimension {r}", de.loc)
        if isinstance(r, int) and r > INT_MAX:
            raise self.err(f"dimension {r} is out of range (at most 2**63 - 1)", de.loc)
        return r

    def resolve_type(self, te: A.TypeExpr, dim_map: Optional[dict]) -> TensorType:
        dt = DTYPES[te.dtype]
        if not te.dims:
            return TensorType(dt, ())
        return TensorType(dt, tuple(self.resolve_dim(d, dim_map) for d in te.dims))

    # -- functions --------------------------------------------------------------------
    def _new_func(self, name, decl, param_types, visibility):
        block = Block(param_types, [p.name for p in decl.params])
        op = Op(
            "func.func",
            (),
            (),
            {"sym_name": name, "visibility": visibility},
            [Region([block])],
            decl.loc,
        )
        return op

    def _function(self, decl: A.FuncDecl):
        named = set()
        ptypes = []
        for p in decl.params:
            t = self.resolve_type(p.type, None)
            named |= {n for d in t.shape for n in D.dim_names(d)}
            for d in t.shape:
                if isinstance(d, str) and not D.is_name(d):
                    raise self.err(
                        f"an argument's dimensions must be integers or names, got {d}",
                        p.type.loc,
                        "compute derived sizes in the body instead",
                    )
            ptypes.append(t)
        defaults = []
        for p, t in zip(decl.params, ptypes):
            if p.default is None:
                if defaults and defaults[-1] is not None:
                    raise self.err(
                        f"argument '{p.name}' without a default follows one with a default", p.loc
                    )
                defaults.append(None)
                continue
            v = self.ev_static(p.default)
            if t.rank != 0 or isinstance(v, (str, list)) or v is None:
                raise self.err(
                    "only scalar arguments can have a default, and it must be a number",
                    p.default.loc,
                )
            defaults.append(v)
        op = self._new_func(decl.name, decl, ptypes, "public")
        op.attrs["arg_defaults"] = tuple(defaults)
        self.module.body.append(op)
        results = self._body(op, decl, named, dim_map=None)
        op.attrs["res_types"] = tuple(v.type for v in results)

    def _body(self, func_op, decl: A.FuncDecl, named: set, dim_map):
        """Generate the body of a function; returns the returned Values."""
        saved = (self.ctx, self.scope, self.b.block, self.b.pos, self.b.loc)
        self.ctx = FunctionContext(func_op, decl.kind, named)
        self.scope = FuncScope()
        entry = self.ctx.entry
        for p, a in zip(decl.params, entry.args):
            self.scope.vars[p.name] = a
            self._note_int_scalar(a)
        self.b.set_insertion_end(entry)
        try:
            ret = self._stmts(decl.body, allow_return=True)
            if ret is None:
                if decl.ret:
                    raise self.err(
                        f"'{decl.name}' declares a result but has no return statement", decl.loc
                    )
                values, ret_loc = [], decl.loc
            else:
                values, ret_loc = ret
            values = self._check_returns(decl, values, ret_loc, dim_map)
            if decl.kind == "fn":
                for name, v, loc in self.ctx.updates:
                    self.b.loc = loc
                    self.b.create("tg.update", [v], [], {"sym": SymbolRef(name)}, loc=loc)
            self.b.create("func.return", values, [], {}, loc=ret_loc)
            return values
        finally:
            self.ctx, self.scope = saved[0], saved[1]
            self.b.block, self.b.pos, self.b.loc = saved[2], saved[3], saved[4]

    def _check_returns(self, decl, values, loc, dim_map):
        if decl.ret is None:
            return [self.as_tensor(v, loc) for v in values]
        want = [self.resolve_type(t, dim_map) for t in decl.ret]
        if len(want) != len(values):
            raise self.err(
                f"'{decl.name}' declares {len(want)} result(s) but returns {len(values)}", loc
            )
        out = []
        for w, v, te in zip(want, values, decl.ret):
            for n in {n for d in w.shape for n in D.dim_names(d)} - self.ctx.named_dims:
                raise self.err(
                    f"unknown dimension '{n}' in the result type",
                    te.loc,
                    "a result's named dims must appear in the arguments",
                )
            if not isinstance(v, Value):
                v = self.as_tensor(v, loc, dtype=w.dtype)
            if v.type != w:
                raise self.err(f"'{decl.name}' returns {v.type} but declares {w}", loc)
            out.append(v)
        return out

    # -- statements ---------------------------------------------------------------------
    def _stmts(self, stmts, allow_return=False, allow_yield=False):
        """Generate statements; returns (values, loc) of a return/yield, if any."""
        result = None
        for i, st in enumerate(stmts):
            if result is not None:
                raise self.err(
                    "statement after return" if allow_return else "statement after yield", st.loc
                )
            self.b.loc = st.loc
            if isinstance(st, A.Assign):
                self._assign(st)
            elif isinstance(st, A.Update):
                self._update(st)
            elif isinstance(st, A.Return):
                if not allow_return:
                    raise self.err("return is not allowed inside a scan body; use yield", st.loc)
                result = (self._values(st.values), st.loc)
            elif isinstance(st, A.Yield):
                if not allow_yield:
                    raise self.err("yield is only allowed inside a scan body", st.loc)
                result = (self._values(st.values), st.loc)
        return result

    def _values(self, nodes) -> list:
        """The values of `return a, b` / `yield a, b`; a single expression that
        gives several values (a def or grad returning a tuple) is spread out."""
        values = [self.ev(v) for v in nodes]
        if len(values) == 1 and isinstance(values[0], tuple):
            return list(values[0])
        for v, node in zip(values, nodes):
            if isinstance(v, tuple):
                raise self.err(
                    f"this expression gives {len(v)} values; unpack them first", node.loc
                )
        return values

    def _assign(self, st: A.Assign):
        v = self.ev(st.value)
        targets = st.targets
        if len(targets) == 1:
            if isinstance(v, tuple):
                raise self.err(
                    f"this expression gives {len(v)} values; unpack them: "
                    f"{', '.join('v%d' % i for i in range(len(v)))} = ...",
                    st.loc,
                )
            # (one name: the loop below written out)
            name = targets[0]
            if name in self.shared or name in self.consts or name in BUILTINS or name in self.defs:
                self._check_bindable(name, st.loc)
            if isinstance(v, Value) and v.name_hint is None:
                v.name_hint = name
            self.scope.vars[name] = v
            return
        else:
            if not isinstance(v, tuple):
                raise self.err(f"cannot unpack one value into {len(st.targets)} names", st.loc)
            if len(v) != len(st.targets):
                raise self.err(
                    f"cannot unpack {len(v)} values into {len(st.targets)} names", st.loc
                )
            values = list(v)
        for name, val in zip(st.targets, values):
            self._check_bindable(name, st.loc)
            if isinstance(val, Value) and val.name_hint is None:
                val.name_hint = name
            self.scope.vars[name] = val

    def _check_bindable(self, name, loc):
        if name in self.shared:
            raise self.err(f"'{name}' is a shared variable; update it with '{name} <- ...'", loc)
        if name in self.consts:
            raise self.err(f"'{name}' is a const and cannot be rebound", loc)
        if name in BUILTINS or name in self.defs:
            raise self.err(f"'{name}' is the name of a function and cannot be rebound", loc)

    def _update(self, st: A.Update):
        if self.ctx.kind == "def":
            raise self.err("a def cannot update shared variables; do it in an fn", st.loc)
        if self.scan_depth:
            raise self.err("shared variables cannot be updated inside a scan body", st.loc)
        ref = self.shared.get(st.target)
        if ref is None:
            if self.scope.lookup(st.target) is not None:
                raise self.err(
                    f"'{st.target}' is not a shared variable; only shared variables can be updated",
                    st.loc,
                    f"bind it with '{st.target} = ...'",
                )
            raise self.err(f"unknown shared variable '{st.target}'", st.loc)
        if any(n == st.target for n, _, _ in self.ctx.updates):
            raise self.err(f"'{st.target}' is updated twice in one function", st.loc)
        v = self.host.update_value(
            st.target,
            ref.type,
            self.ev(st.value),
            st.loc,
            f"cast it: cast(..., {ref.type.dtype})",
        )
        self.ctx.updates.append((st.target, v, st.loc))

    # -- names --------------------------------------------------------------------
    def lookup(self, name, loc):
        if self.scope is not None:
            v = self.scope.lookup(name)
            if v is not None:
                return v
        if name in self.consts:
            return self.consts[name]
        if name in self.shared:
            if self.ctx is None:
                raise self.err(f"shared variable '{name}' cannot be used in a const", loc)
            return self.read_shared(name)
        if self.ctx is not None and name in self.ctx.named_dims:
            return Dim(name)
        if name in self.defs or name in self.fns or name in BUILTINS:
            raise self.err(f"'{name}' is a function; call it: {name}(...)", loc)
        known = list(self.consts) + list(self.shared)
        if self.scope is not None:
            s = self.scope
            while s is not None:
                known += list(s.vars)
                s = s.parent
        if self.ctx is not None:
            known += list(self.ctx.named_dims)
        known += list(KEYWORDS) + list(self.defs) + list(self.fns) + list(BUILTINS)
        raise self.err(f"unknown name '{name}'", loc, did_you_mean(name, known))

    def _prologue(self, op) -> Value:
        """Insert op among the reads and dims at the function's entry; its result."""
        self.ctx.entry.insert(self.ctx.prologue, op)
        self.ctx.prologue += 1
        if self.b.block is self.ctx.entry and self.b.pos is not None:
            self.b.pos += 1
        return op.result

    def read_shared(self, name) -> Value:
        v = self.ctx.reads.get(name)
        if v is None:
            ref = self.shared[name]
            op = Op("tg.read", (), [ref.type], {"sym": SymbolRef(name)}, (), ref.loc, [name])
            v = self.ctx.reads[name] = self._prologue(op)
        return v

    def dim_value(self, d, dtype: DType, loc) -> Value:
        key = (d, dtype.name)
        v = self.ctx.dim_values.get(key)
        if v is None:
            op = Op("tg.dim", (), [TensorType(dtype, ())], {"dim": d, "dtype": dtype.name}, (), loc)
            v = self.ctx.dim_values[key] = self._prologue(op)
            if dtype.is_int:
                self.ctx.affine[v] = {1: d}
        return v

    def _note_int_scalar(self, v: Value):
        if v.type.rank == 0 and v.type.dtype.is_int:
            self.ctx.affine[v] = {v: 1}

    # -- conversion -----------------------------------------------------------------
    def as_tensor(
        self, v, loc, dtype: Optional[DType] = None, like: Optional[Value] = None
    ) -> Value:
        """Materialise a compile-time value as a tensor. Python numbers take
        `dtype`, or NumPy 2's weak-scalar promotion against `like`."""
        if isinstance(v, Value):
            return v
        if isinstance(v, tuple):
            raise self.err(f"expected one value, got {len(v)}", loc)
        if isinstance(v, Dim):
            if self.ctx is None:
                raise self.err("a named dim cannot be used here", loc)
            dt = dtype or (weak_dtype(like.type.dtype, 1) if like is not None else I32)
            return self.dim_value(v.d, dt, loc)
        if isinstance(v, (bool, int, float)):
            if dtype is None:
                dtype = weak_dtype(like.type.dtype, v) if like is not None else default_dtype(v)
            return self._literal(v, dtype, loc)
        if isinstance(v, list):
            items = v
            if all(isinstance(x, (bool, int, float)) for x in items):
                arr = literal_array(items, dtype, like.type if like is not None else None)
                with self.b.at_loc(loc):
                    return self.b.op("tg.constant", value=arr)
            tensors = [self.as_tensor(x, loc, dtype=dtype, like=like) for x in v]
            with self.b.at_loc(loc):
                return self.b.op("tg.stack", *tensors, axis=0)
        raise self.err(f"expected a tensor, got {describe(v)}", loc)

    def _literal(self, v, dtype: DType, loc) -> Value:
        """A tg.constant of the number v as `dtype`."""
        try:
            arr = np.array(v, dtype=dtype.np)
        except OverflowError:  # (an int beyond the dtype: a slice bound of 2**31)
            raise self.err(f"{v} does not fit {dtype}", loc) from None
        arr.setflags(write=False)  # frozen already: the op keeps it without a copy
        return self._op("tg.constant", [], {"value": arr}, loc)

    def ev_static(self, node):
        """Evaluate an expression that must be known at compile time."""
        v = self.ev(node)
        if isinstance(v, Value):
            raise self.err(
                "this must be known at compile time (a literal, const or named dim)", node.loc
            )
        return v

    # -- expressions --------------------------------------------------------------------
    def ev(self, node):
        # The ev_ method of each node class, looked up once per class (an
        # expression of a long function is a few nodes).
        m = self._ev_methods.get(type(node))
        if m is None:
            m = getattr(self, "ev_" + type(node).__name__, None)
            if m is None:
                raise self.err(f"unexpected {type(node).__name__}", node.loc)
            self._ev_methods[type(node)] = m
        return m(node)

    def ev_Num(self, n):
        return n.value

    def ev_Str(self, n):
        return n.value

    def ev_Bool(self, n):
        return n.value

    def ev_NoneLit(self, n):
        return None

    def ev_DTypeLit(self, n):
        return DTYPES[n.name]

    def ev_Name(self, n):
        # (a name of the innermost scope first: lookup's first answer)
        scope = self.scope
        if scope is not None:
            v = scope.vars.get(n.id)
            if v is not None:
                return v
        return self.lookup(n.id, n.loc)

    def ev_ListLit(self, n):
        return [self.ev(x) for x in n.items]

    def ev_UnaryOp(self, n):
        v = self.ev(n.operand)
        if n.op == "+":
            return v
        if n.op == "-":
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                return -v
            if isinstance(v, Dim):
                return make_dim(D.dim_sub(0, v.d))
            return self.host.negate(self.tensor_operand(v, n.loc), n.loc)
        # ~
        if isinstance(v, bool):
            return not v
        t = self.tensor_operand(v, n.loc)
        with self.b.at_loc(n.loc):
            return self.b.op("tg.not", t)

    def tensor_operand(self, v, loc):
        if isinstance(v, Value):
            return v
        return self.as_tensor(v, loc)

    BINOPS = OPERATORS

    def ev_BinOp(self, n):
        # (names and numbers without ev's dispatch: the operands of most operators)
        left, right = n.left, n.right
        tl, tr = type(left), type(right)
        a = self.ev_Name(left) if tl is A.Name else left.value if tl is A.Num else self.ev(left)
        b = self.ev_Name(right) if tr is A.Name else right.value if tr is A.Num else self.ev(right)
        # A tensor with a tensor or a number (most operators of a long function):
        # nothing to fold (fold_static folds numbers and dims only) and nothing
        # for binop to refuse, so straight to the host.
        if isinstance(a, Value):
            if isinstance(b, (Value, int, float)):
                return self._tensor_binop(n.op, a, b, n.loc)
        elif isinstance(b, Value) and isinstance(a, (int, float)):
            return self._tensor_binop(n.op, a, b, n.loc)
        folded = self.fold_static(n.op, a, b, n.loc)
        if folded is not NotImplemented:
            return folded
        return self.binop(n.op, a, b, n.loc)

    def _tensor_binop(self, sym, a, b, loc):
        """Host.binop for a tensor with a tensor or a number (bool, int, float)
        and a number with a tensor, written out (see there): one per operator
        of a long function."""
        opname = self.BINOPS[sym]
        if opname not in REGISTRY:
            raise CompileError(f"operator '{sym}' is not supported on tensors", loc)
        if type(b) is not OpResult and not isinstance(b, Value):
            tb = type(b)
            if tb is float:  # (as_tensor's case, written out; weak_dtype of a float
                # depends on the tensor's dtype only)
                dt = a.type.dtype
                weak = _WEAK_FLOAT.get(dt.name)
                if weak is None:
                    weak = _WEAK_FLOAT[dt.name] = weak_dtype(dt, b)
                b = self._literal(b, weak, loc)
            elif tb is int:
                b = self._literal(b, weak_dtype(a.type.dtype, b), loc)
            else:
                b = self.as_tensor(b, loc, like=a)
        elif type(a) is not OpResult and not isinstance(a, Value):
            a = self.as_tensor(a, loc, like=b)
        r = self._op(opname, [a, b], {}, loc)
        t = r.type
        if not t.shape and t.dtype.is_int:  # (Host.track_affine: integer scalars only)
            self.host.track_affine(sym, a, b, r)
        return r

    def _op(self, name, operands: list, attrs: dict, loc):
        """The op `name` at `loc` (None: the builder's), inserted by the builder;
        its result (its results if not one). OpBuilder.op_full written out (and
        what it gives the same): the generator makes every op here."""
        b = self.b
        if loc is None:
            loc = b.loc
        d, full = with_defaults(name, attrs)  # (Op copies it; infer only reads it)
        n = len(operands)
        if n == 2:
            types = [operands[0].type, operands[1].type]
        elif n == 1:
            types = [operands[0].type]
        elif n == 0:
            types = []
        else:
            types = [v.type for v in operands]
        try:
            if d.arity is not None and len(types) != d.arity:
                raise TypeError_(f"{short_name(name)} takes {d.arity} operands, got {len(types)}")
            if d.infer is None:
                raise TypeError_(f"{name} has no type inference")
            types = d.infer(types, full)
        except TypeError_ as e:
            raise CompileError(e.message, loc) from None
        op = Op(name, operands, types, full, (), loc)
        block = b.block
        if b.anchor is None and b.pos is None and block is not None:
            op.parent = block
            block.ops.append(op)
        else:
            b.insert(op)
        results = op.results
        return results[0] if len(results) == 1 else results

    def fold_static(self, op, a, b, loc):
        """Fold an operator over compile-time values (numbers and dims)."""
        num = (int, float)
        if (
            isinstance(a, num)
            and isinstance(b, num)
            and not isinstance(a, bool)
            and not isinstance(b, bool)
        ):
            if op == "**" and isinstance(a, int) and isinstance(b, int) and abs(a) >= 2 and b >= 64:
                # Refused before computing: 10 ** 100000000 would take minutes.
                raise self.err(
                    f"{a} ** {b} is out of the integer range (|x| < 2**63)",
                    loc,
                    "compile-time integers are 64-bit; write a float (10.0 ** 38) for a large number",
                )
            try:
                r = {
                    "+": lambda: a + b,
                    "-": lambda: a - b,
                    "*": lambda: a * b,
                    "/": lambda: a / b,
                    "//": lambda: a // b,
                    "%": lambda: a % b,
                    "**": lambda: a**b,
                    "==": lambda: a == b,
                    "!=": lambda: a != b,
                    "<": lambda: a < b,
                    "<=": lambda: a <= b,
                    ">": lambda: a > b,
                    ">=": lambda: a >= b,
                }[op]()
                if (
                    isinstance(r, int)
                    and not isinstance(r, bool)
                    and not -INT_MAX - 1 <= r <= INT_MAX
                ):
                    raise self.err(f"{a} {op} {b} is out of the integer range (|x| < 2**63)", loc)
                return r
            except ZeroDivisionError:
                raise self.err("division by zero", loc) from None
            except KeyError:
                raise self.err(f"operator '{op}' is not defined for numbers", loc) from None
            except OverflowError:
                raise self.err("number too large", loc) from None
        return self.host.fold_dims(op, a, b)

    def binop(self, op, a, b, loc):
        if (
            isinstance(a, (str, list, DType))
            or a is None
            or isinstance(b, (str, list, DType))
            or b is None
        ):
            bad = a if not isinstance(a, (Value, int, float, Dim)) else b
            raise self.err(f"operator '{op}' cannot take {describe(bad)}", loc)
        if isinstance(a, tuple) or isinstance(b, tuple):
            raise self.err(f"operator '{op}' applied to several values; unpack them first", loc)
        return self.host.binop(op, self.BINOPS[op], a, b, loc)

    def affine_form(self, v):
        return self.host.affine_form(v)

    def ev_Call(self, n: A.Call):
        if n.func in self.defs:
            return self.call_def(n)
        if n.func in self.fns:
            raise self.err(
                f"'{n.func}' is an entry function (fn) and cannot be called from the model",
                n.loc,
                "make it a def to reuse it",
            )
        if n.func == "grad":
            return self.grad(n)
        if n.func in BUILTINS:
            if self.ctx is None:
                raise self.err(f"'{n.func}' cannot be used in a const", n.loc)
            args = [self.ev(a) for a in n.args]
            if not n.kwargs and len(args) == 1:
                # One tensor for a unary function or a reduction (bind_arguments
                # binds it to x, the rest to their defaults: axis None, keepdims
                # false): as below, without binding.
                fast = _FAST_BUILTINS.get(n.func)
                if fast is not None and isinstance(args[0], Value):
                    if fast[1] is None:
                        return self._op(fast[0], args, {}, n.loc)
                    return self._op(fast[0], args, {"axis": None, "keepdims": False}, n.loc)
            kwargs = {}
            for k, v, kloc in n.kwargs:
                if k in kwargs:
                    raise self.err(f"argument '{k}' given twice", kloc)
                kwargs[k] = (self.ev(v), kloc)
            # A reduction of one tensor with axis and keepdims given by keyword
            # (`mean(h, axis=1, keepdims=true)`): bound as bind_arguments binds
            # them (the rest to their defaults, None and false), made as below.
            fast = _FAST_BUILTINS.get(n.func)
            if (
                fast is not None
                and fast[1] is not None
                and len(args) == 1
                and isinstance(args[0], Value)
                and kwargs.keys() <= _REDUCTION_KEYWORDS
            ):
                axis = kwargs["axis"][0] if "axis" in kwargs else None
                keep = kwargs["keepdims"][0] if "keepdims" in kwargs else False
                if type(keep) is bool and (axis is None or type(axis) is int):
                    attrs = {"axis": axis if axis is None else (axis,), "keepdims": keep}
                    return self._op(fast[0], args, attrs, n.loc)
            bound, locs = bind_arguments(
                n.func, args, kwargs, n.loc, [getattr(a, "loc", n.loc) for a in n.args]
            )
            # The unary functions and the reductions of a tensor, with an axis
            # of None or an int and keepdims true or false (most calls of a long
            # function), made as their handlers in builtins.py make them.
            if fast is not None:
                x = bound["x"]
                if isinstance(x, Value):
                    if fast[1] is None:
                        return self._op(fast[0], [x], {}, n.loc)
                    axis, keep = bound["axis"], bound["keepdims"]
                    if type(keep) is bool and (axis is None or type(axis) is int):
                        attrs = {"axis": axis if axis is None else (axis,), "keepdims": keep}
                        return self._op(fast[0], [x], attrs, n.loc)
            b = self.b
            saved = b.loc
            b.loc = n.loc  # (`with b.at_loc(n.loc):` written out)
            try:
                return run_builtin(self.host, n.func, bound, n.loc, locs)
            finally:
                b.loc = saved
        hint = did_you_mean(n.func, list(BUILTINS) + list(self.defs) + list(self.fns))
        raise self.err(f"unknown function '{n.func}'", n.loc, hint)

    # -- indexing -----------------------------------------------------------------
    def ev_Index(self, n: A.Index):
        base = self.ev(n.value)
        if not isinstance(base, Value):
            if isinstance(base, list):
                base = self.as_tensor(base, n.value.loc)
            else:
                raise self.err(f"cannot index {describe(base)}", n.loc)
        items = []
        for it in n.items:
            if isinstance(it, A.NoneLit):
                items.append(NONE)
            elif isinstance(it, A.Ellipsis_):
                items.append(ELLIPSIS)
            elif isinstance(it, A.Slice):
                items.append(
                    Slice(
                        None if it.start is None else self.ev(it.start),
                        None if it.stop is None else self.ev(it.stop),
                        None if it.step is None else self.ev_static(it.step),
                        it.loc,
                    )
                )
            else:
                items.append((self.ev(it), it.loc))
        with self.b.at_loc(n.loc):
            return lower_index(self.host, base, items, n.loc)


class _Host(Host):
    """The generator's values for the shared front-end logic (irc/frontend/host.py):
    IR Values of the function being generated; the affine forms of its integer
    scalars live in the function's context."""

    tensor_class, dim_class = Value, Dim

    def __init__(self, gen: IRGen):
        self.gen = gen
        # the generator's own methods, not a method calling them: one call less
        # per literal and per dim of a long function
        self.as_tensor = gen.as_tensor
        self.dim_of = dim_of

    def dim_of(self, v):
        return dim_of(v)

    def as_tensor(self, v, loc, dtype=None, like=None):
        return self.gen.as_tensor(v, loc, dtype=dtype, like=like)

    def dtype(self, v, call, p):
        if not isinstance(v, DType):
            raise CompileError(
                f"{call.name}(): '{p}' must be a dtype ({', '.join(DTYPES)}), got {describe(v)}",
                call.where(p),
            )
        return v

    def op(self, name, operands, attrs, loc):
        return self.gen._op(name, list(operands), attrs, loc)

    def form(self, v):
        return self.gen.ctx.affine.get(v)

    def set_form(self, v, f):
        self.gen.ctx.affine[v] = f

    def constant_value(self, v):
        op = getattr(v, "op", None)
        return op.attrs["value"] if op is not None and op.name == "tg.constant" else None


def generate(program: A.Program, filename: str, defines=None) -> Module:
    """The tg IR module of a parsed program."""
    gen = IRGen(program, filename, defines)
    try:
        return gen.generate()
    except RecursionError:
        raise CompileError("expression nested too deeply", Loc(filename, 1, 1)) from None
    finally:
        gen.release()
