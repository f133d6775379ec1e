"""The loop-level dialects that `lower-to-loops` produces and the backends consume:
`mem.*` (buffers), `loop.*` (loop nests, run-time dims, checks) and `scalar.*`
(scalar math, one op per tg elementwise op).

Values. Loop IR reuses the tg types; no new type kinds are needed:
  * a *buffer* is a value of a TensorType whose storage is memory: a row-major,
    contiguous array of its dtype (bool is one byte). Buffers are the function's
    block arguments and the results of mem.alloc, mem.global, mem.constant,
    mem.view and mem.subview. A buffer's shape may hold named dims and dim
    expressions; they are evaluated at run time from the call's dims.
  * a *scalar* is a rank-0 value held in a register: the results of mem.load,
    loop.dim, loop.for and every scalar.* op. A rank-0 buffer and a scalar have
    the same type (`f32`); the defining op tells them apart.
  * an *index* is an i64 scalar (loop induction variables, dims, offsets).

Functions. An entry function keeps its name; its block arguments are the input
buffers, then one output buffer per result (the caller allocates them), and it
returns nothing. Attributes: `n_inputs`, `n_outputs`, `dims` (the named dims
the caller passes at run time, in order), plus the tg function's attributes.
Shared variables stay `tg.global` symbols; `mem.global {sym = @W}` is the
buffer the backend owns for W (updates are stores into it, placed after every
read of the old value by the lowering).

    func.func @f(%x: f32[N, 4], %out0: f32[N, 4]) -> () attributes {dims = ["N"], n_inputs = 1, n_outputs = 1, ...} {
      %N = loop.dim {dim = "N"} : i64
      %c0 = loop.dim {dim = 0} : i64
      %c4 = loop.dim {dim = 4} : i64
      loop.for %c0, %N {parallel = true} ({
      ^bb0(%i: i64):
        loop.for %c0, %c4 {parallel = true} ({
        ^bb0(%j: i64):
          %a = mem.load %x, %i, %j : f32
          %e = scalar.exp %a : f32
          mem.store %e, %out0, %i, %j
          loop.yield
        })
        loop.yield
      })
      func.return
    }

Ops (operands; attributes; results):
  mem.alloc                        -> buffer. A fresh buffer for the function's
                                      lifetime; lowering puts every alloc in the entry
                                      block, so a backend can carve all of them out of
                                      one workspace sized from the dims.
  mem.global {sym}                 -> the shared variable's buffer.
  mem.constant {value}             -> a read-only buffer holding a dense constant.
  mem.view %b                      -> the same storage seen with another shape of
                                      the same element count (reshape, flatten).
  mem.subview %b, %i               -> b[i]: the slice of the leading axis (no copy).
  mem.load %b, %i...               -> scalar b[i...] (one index per axis).
  mem.store %v, %b, %i...             b[i...] = v.
  mem.copy %src, %dst                 dst = src, element for element in row-major order
                                      (same element count and dtype).
  mem.gemm %A, %B, %C, %M, %N, %K, %lda, %ldb, %ldc, %offA, %offB, %offC[, %scale]
           {trans_a, trans_b, alpha, beta}
                                      row-major C = alpha * scale * op(A) @ op(B) + beta * C
                                      on f32/f64 buffers, offsets in elements (BLAS gemm);
                                      scale, when given, is a scalar of their dtype.
  loop.dim {dim}                   -> i64 value of a dim: an int or a named-dim
                                      expression ("N", "B*T", "(H-2)//2+1").
  loop.for %lo, %hi, %init... {parallel}
           ({^bb0(%i: i64, %acc...): ... loop.yield %next...}) -> final carried values.
                                      for i in [lo, hi): one region, one block; carried
                                      scalars as in scf.for. parallel = true: iterations
                                      are independent (a backend may split the range
                                      across threads; results never depend on it).
  loop.yield %v...                    terminator of a loop.for body.
  loop.assert %cond {message}         stop the call with `message` (an IndexError
                                      at the call boundary) when cond is false.
  scalar.const {value} : T         -> an immediate of dtype T.
  scalar.<op> %a... : T            -> the primitive elementwise ops (add, sub, mul, div,
                                      pow, maximum, minimum, neg, abs, exp, log, log1p,
                                      sqrt, tanh, square, sin, cos, sign, not, and, or),
                                      operands already converted to T; NumPy semantics
                                      on one element. Other tg elementwise ops become
                                      these through their scalar rule (OpDef.scalar).
  scalar.lt/le/gt/ge/eq/ne %a, %b  -> bool (operands of one dtype).
  scalar.select %c, %a, %b {unpredictable}
                                   -> T. unpredictable = true: the condition depends on
                                      data (keep a select; no branch).
  scalar.cast %a : T               -> NumPy astype to T.
  scalar.floordiv %a, %b, scalar.mod %a, %b
                                   -> integer floor division and modulo (Python's),
                                      for index arithmetic.

Also the loop-IR helpers both backends use (storage_root, written_buffers,
free_values). Imports only irc.ir and irc.ops.registry.
"""

from __future__ import annotations

from irc.ir.types import BOOL, I64, TensorType, TypeError_
from irc.ops.registry import PURE, SIDE_EFFECT, TERMINATOR, OpDef, REGISTRY, defop

# Unary and binary scalar ops mirror the tg elementwise ops of the same name. They are
# the primitives the backends render; composite elementwise ops (sigmoid, softplus,
# relu, clip, ...) are spelt out in them by their scalar rules (OpDef.scalar).
SCALAR_UNARY = (
    "neg", "abs", "exp", "log", "log1p", "sqrt", "tanh", "square", "sin", "cos", "sign", "not",
)  # fmt: skip
SCALAR_BINARY = ("add", "sub", "mul", "div", "pow", "maximum", "minimum", "and", "or",
                 "floordiv", "mod")
SCALAR_COMPARE = ("lt", "le", "gt", "ge", "eq", "ne")

SCALAR = frozenset({PURE})
EFFECT = frozenset({SIDE_EFFECT})

_I64 = TensorType(I64, ())
_BOOL = TensorType(BOOL, ())


def _scalar_check(n):
    def verify(op):
        if len(op.operands) != n:
            raise TypeError_(f"{op.name} takes {n} operands, got {len(op.operands)}")
        for v in op.operands:
            if v.type.rank != 0:
                raise TypeError_(f"{op.name} operands must be scalars, got {v.type}")
        if len(op.results) != 1 or op.results[0].type.rank != 0:
            raise TypeError_(f"{op.name} has one scalar result")

    return verify


def _same_dtype(op):
    t = op.results[0].type
    for v in op.operands:
        if v.type != t:
            raise TypeError_(f"{op.name}: operand {v.type} differs from the result {t}")


def _unary_verify(op):
    _scalar_check(1)(op)
    _same_dtype(op)


def _binary_verify(op):
    _scalar_check(2)(op)
    _same_dtype(op)


def _compare_verify(op):
    _scalar_check(2)(op)
    if op.operands[0].type != op.operands[1].type:
        raise TypeError_(f"{op.name}: operands differ: {op.operands[0].type}, {op.operands[1].type}")
    if op.results[0].type != _BOOL:
        raise TypeError_(f"{op.name} gives bool")


for _n in SCALAR_UNARY:
    defop(OpDef("scalar." + _n, traits=SCALAR, arity=1, verify=_unary_verify,
                doc=f"scalar {_n}: tg.{_n} on one element"))
for _n in SCALAR_BINARY:
    defop(OpDef("scalar." + _n, traits=SCALAR, arity=2, verify=_binary_verify,
                doc=f"scalar {_n}: tg.{_n} on one element" if _n not in ("floordiv", "mod")
                else f"integer {_n} with Python's floor semantics (index arithmetic)"))
for _n in SCALAR_COMPARE:
    defop(OpDef("scalar." + _n, traits=SCALAR, arity=2, verify=_compare_verify,
                doc=f"scalar comparison {_n} -> bool"))


def _select_verify(op):
    _scalar_check(3)(op)
    c, a, b = (v.type for v in op.operands)
    if c != _BOOL or a != b or op.results[0].type != a:
        raise TypeError_("scalar.select needs (bool, T, T) -> T")


defop(OpDef("scalar.select", traits=SCALAR, arity=3, verify=_select_verify,
            doc="c ? a : b"))
defop(OpDef("scalar.cast", traits=SCALAR, arity=1, verify=_scalar_check(1),
            doc="NumPy astype of one element to the result dtype"))


def _const_verify(op):
    if "value" not in op.attrs or op.results[0].type.rank != 0:
        raise TypeError_("scalar.const needs a `value` and a scalar result")


defop(OpDef("scalar.const", traits=SCALAR, arity=0, verify=_const_verify,
            doc="scalar.const {value} : T, an immediate"))


# -- loop ---------------------------------------------------------------------------------


def _dim_verify(op):
    if "dim" not in op.attrs or [r.type for r in op.results] != [_I64]:
        raise TypeError_("loop.dim {dim} : i64")


defop(OpDef("loop.dim", traits=SCALAR, arity=0, verify=_dim_verify, dim_attrs=("dim",),
            doc="the i64 value of a dim (int or named-dim expression) at run time"))


def _for_verify(op):
    if len(op.operands) < 2:
        raise TypeError_("loop.for needs lower and upper bounds")
    lo, hi, *inits = op.operands
    if lo.type != _I64 or hi.type != _I64:
        raise TypeError_("loop.for bounds must be i64")
    if len(op.regions) != 1 or len(op.regions[0].blocks) != 1:
        raise TypeError_("loop.for needs one region with one block")
    body = op.regions[0].block
    want = [_I64] + [v.type for v in inits]
    if [a.type for a in body.args] != want:
        raise TypeError_("loop.for block arguments must be (i64, carried types...)")
    term = body.terminator
    if term is None or term.name != "loop.yield":
        raise TypeError_("loop.for body must end with loop.yield")
    if [v.type for v in term.operands] != [v.type for v in inits]:
        raise TypeError_("loop.yield must yield the carried types")
    if [r.type for r in op.results] != [v.type for v in inits]:
        raise TypeError_("loop.for results must have the carried types")


defop(OpDef("loop.for", traits=EFFECT, verify=_for_verify, defaults={"parallel": False},
            doc="for i in [lo, hi) with carried scalars; parallel = independent iterations"))
defop(OpDef("loop.yield", traits=frozenset({TERMINATOR}), doc="terminator of loop.for"))


def _assert_verify(op):
    if len(op.operands) != 1 or op.operands[0].type != _BOOL:
        raise TypeError_("loop.assert takes one bool scalar")


defop(OpDef("loop.assert", traits=EFFECT, arity=1, verify=_assert_verify,
            doc="stop the call with {message} when the operand is false"))


# -- mem ----------------------------------------------------------------------------------


def _one_result(op):
    if len(op.results) != 1:
        raise TypeError_(f"{op.name} has one result")


def _load_verify(op):
    if not op.operands:
        raise TypeError_("mem.load needs a buffer")
    buf, idx = op.operands[0], op.operands[1:]
    if len(idx) != buf.type.rank:
        raise TypeError_(f"mem.load of {buf.type} needs {buf.type.rank} indices, got {len(idx)}")
    if any(i.type != _I64 for i in idx):
        raise TypeError_("indices must be i64")
    if len(op.results) != 1 or op.results[0].type != TensorType(buf.type.dtype, ()):
        raise TypeError_("mem.load gives one scalar of the buffer's dtype")


def _store_verify(op):
    if len(op.operands) < 2:
        raise TypeError_("mem.store needs a value and a buffer")
    v, buf, idx = op.operands[0], op.operands[1], op.operands[2:]
    if len(idx) != buf.type.rank:
        raise TypeError_(f"mem.store to {buf.type} needs {buf.type.rank} indices, got {len(idx)}")
    if any(i.type != _I64 for i in idx):
        raise TypeError_("indices must be i64")
    if v.type != TensorType(buf.type.dtype, ()):
        raise TypeError_(f"mem.store of {v.type} into {buf.type}")


def _view_verify(op):
    _one_result(op)
    if len(op.operands) != 1 or op.operands[0].type.dtype != op.results[0].type.dtype:
        raise TypeError_("mem.view takes one buffer and keeps its dtype")


def _subview_verify(op):
    _one_result(op)
    if len(op.operands) != 2 or op.operands[1].type != _I64:
        raise TypeError_("mem.subview takes a buffer and an i64 index")
    b, r = op.operands[0].type, op.results[0].type
    if b.rank == 0 or r != b.with_shape(b.shape[1:]):
        raise TypeError_(f"mem.subview of {b} gives {b.with_shape(b.shape[1:])}, not {r}")


def _copy_verify(op):
    if len(op.operands) != 2 or op.operands[0].type.dtype != op.operands[1].type.dtype:
        raise TypeError_("mem.copy takes two buffers of one dtype")


def _gemm_verify(op):
    if len(op.operands) not in (12, 13):
        raise TypeError_("mem.gemm takes A, B, C, M, N, K, lda, ldb, ldc, offA, offB, offC[, scale]")
    a, b, c = (v.type for v in op.operands[:3])
    if not (a.dtype == b.dtype == c.dtype and a.dtype.is_float):
        raise TypeError_("mem.gemm needs f32 or f64 buffers of one dtype")
    if any(v.type != _I64 for v in op.operands[3:12]):
        raise TypeError_("mem.gemm sizes, strides and offsets are i64")


defop(OpDef("mem.alloc", traits=EFFECT, arity=0, verify=_one_result,
            doc="a fresh buffer of the result type (placed in the entry block)"))
defop(OpDef("mem.global", traits=EFFECT, arity=0, verify=_one_result,
            doc="mem.global {sym = @W}: the buffer of a shared variable"))
defop(OpDef("mem.constant", traits=EFFECT, arity=0, verify=_one_result,
            doc="mem.constant {value = dense<...>}: a read-only constant buffer"))
defop(OpDef("mem.view", traits=EFFECT, arity=1, verify=_view_verify,
            doc="the same storage with another shape of equal element count"))
defop(OpDef("mem.subview", traits=EFFECT, arity=2, verify=_subview_verify,
            doc="b[i]: a slice of the leading axis, without a copy"))
defop(OpDef("mem.load", traits=frozenset(), verify=_load_verify, doc="scalar b[i...]"))
defop(OpDef("mem.store", traits=EFFECT, verify=_store_verify, doc="b[i...] = v"))
defop(OpDef("mem.copy", traits=EFFECT, arity=2, verify=_copy_verify,
            doc="dst = src, element for element"))
defop(OpDef("mem.gemm", traits=EFFECT, verify=_gemm_verify,
            doc="row-major C = alpha * op(A) @ op(B) + beta * C (BLAS gemm)",
            defaults={"trans_a": False, "trans_b": False, "alpha": 1.0, "beta": 0.0}))

LOOP_OPS = frozenset(n for n in REGISTRY if n.split(".")[0] in ("loop", "mem", "scalar"))


# -- helpers on loop IR shared by the backends ------------------------------------------------


def storage_root(v):
    """The buffer whose storage v is: v itself, or what its views and subviews view."""
    while getattr(v, "op", None) is not None and v.op.name in ("mem.view", "mem.subview"):
        v = v.op.operands[0]
    return v


def written_buffers(op) -> set:
    """Storage roots of the buffers op (or any op nested in it) writes."""
    out = set()
    for o in op.walk():
        if o.name in ("mem.store", "mem.copy"):
            out.add(storage_root(o.operands[1]))
        elif o.name == "mem.gemm":
            out.add(storage_root(o.operands[2]))
    return out


def free_values(op) -> list:
    """Values op's regions use that are defined outside op, in first-use order."""
    inside = set()
    for o in op.walk():
        inside.update(o.results)
        for r in o.regions:
            for bl in r.blocks:
                inside.update(bl.args)
    out, seen = [], set()
    for o in op.walk():
        for v in o.operands:
            if v not in inside and v not in seen:
                seen.add(v)
                out.append(v)
    return out
