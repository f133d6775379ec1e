"""LLVM types of loop-IR dtypes and the scalar ops of loop IR as IRBuilder code
(float_op, int_op, cast, floordiv, ...), with the tables that map loop ops to
IRBuilder methods. The transcendental functions come from transcendentals.py.

Imports llvmlite and irc.ir only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from llvmlite import ir

from irc.ir.types import DType

from . import transcendentals as tr

if TYPE_CHECKING:
    from .codegen import Gen

I1 = ir.IntType(1)
I8 = ir.IntType(8)
I32 = ir.IntType(32)
I64 = ir.IntType(64)
F32 = ir.FloatType()
F64 = ir.DoubleType()
PTR = ir.PointerType()
VOID = ir.VoidType()

LLTYPE = {"f32": F32, "f64": F64, "i32": I32, "i64": I64, "bool": I1}
MEMTYPE = {"f32": F32, "f64": F64, "i32": I32, "i64": I64, "bool": I8}
SIZE = {"f32": 4, "f64": 8, "i32": 4, "i64": 8, "bool": 1}
ALIGN = 64
# Binary float ops: loop op -> IRBuilder method.
SCALAR_FLOAT = {"add": "fadd", "sub": "fsub", "mul": "fmul", "div": "fdiv"}
SCALAR_INT = {"add": "add", "sub": "sub", "mul": "mul", "and": "and_", "or": "or_"}
FCMP = {"lt": ("<", "o"), "le": ("<=", "o"), "gt": (">", "o"), "ge": (">=", "o"), "eq": ("==", "o"),
        "ne": ("!=", "u")}
ICMP = {"lt": "<", "le": "<=", "gt": ">", "ge": ">=", "eq": "==", "ne": "!="}
WEIGHT = {"exp": 12, "log": 14, "log1p": 18, "tanh": 16, "pow": 40,
          "sin": 30, "cos": 30, "div": 4, "sqrt": 4}


def dtype_name(t) -> str:
    return t.dtype.name


class CodegenError(Exception):
    pass



def const_of(value, dt: DType):
    if dt.is_float:
        return ir.Constant(LLTYPE[dt.name], float(value))
    if dt.is_bool:
        return ir.Constant(I1, int(bool(value)))
    return ir.Constant(LLTYPE[dt.name], int(value))


def _intr(b, name, ty, args):
    return tr._intr(b, name, ty, args)


def float_op(g: Gen, b, short, args, rt, op):
    ty = LLTYPE[rt.name]
    if short in SCALAR_FLOAT:
        v = getattr(b, SCALAR_FLOAT[short])(*args)
        if op.attrs.get("reassoc"):
            v.flags.append("reassoc")
        return v
    if short == "neg":
        return b.fneg(args[0])
    if short == "abs":
        return _intr(b, "fabs", ty, args)
    if short == "sqrt":
        return _intr(b, "sqrt", ty, args)
    if short == "square":
        return b.fmul(args[0], args[0])
    if short == "maximum":
        return _intr(b, "maximum", ty, args)
    if short == "minimum":
        return _intr(b, "minimum", ty, args)
    if short == "sign":
        x = args[0]
        one, zero = ir.Constant(ty, 1.0), ir.Constant(ty, 0.0)
        r = b.select(b.fcmp_ordered(">", x, zero), one, b.select(b.fcmp_ordered("<", x, zero),
                                                                ir.Constant(ty, -1.0), b.fmul(x, zero)))
        return b.select(b.fcmp_unordered("uno", x, x), x, r)
    if short in ("sin", "cos"):
        return _intr(b, short, ty, args)
    f = tr.UNARY.get((short, rt.name)) or tr.BINARY.get((short, rt.name))
    if f is None:
        raise CodegenError(f"no float code for scalar.{short}")
    if g.host and rt.name == "f32":
        return b.call(scalar_call(g.mg.m, short, ty, len(args), f), args)
    return f(b, *args)


def scalar_call(m: ir.Module, short: str, ty, arity: int, build):
    """`__irc_scalar_<op>_<type>`, the function of one polynomial transcendental
    (transcendentals.py), defined once per module. Host code calls it: a function
    of thousands of scalar statements (one long `.tg` function) would otherwise
    hold thousands of inlined polynomials of ~30 instructions, LLVM's time and
    the generator's growing with each. Its body is the same explicit-fma code as
    the inline form, so the results are bit-identical. The name makes it glue
    (jit.py: compiled once, without optimisation, like the code that calls it)."""
    name = f"__irc_scalar_{short}_{ty}"
    fn = m.globals.get(name)
    if fn is None:
        fn = ir.Function(m, ir.FunctionType(ty, [ty] * arity), name)
        fn.linkage = "internal"
        fn.attributes.add("noinline")
        fb = ir.IRBuilder(fn.append_basic_block("entry"))
        fb.ret(build(fb, *fn.args))
    return fn


def int_op(g: Gen, b, short, args, rt):
    ty = LLTYPE[rt.name]
    if rt.is_bool:
        x = args[0]
        if short in ("and", "mul", "minimum"):
            return b.and_(*args)
        if short in ("or", "add", "maximum"):
            return b.or_(*args)
        if short == "not":
            return b.not_(x)
        if short in ("abs", "square", "sign"):
            return x
        if short == "ne":
            return b.xor(*args)
        raise CodegenError(f"no bool code for scalar.{short}")
    if short in SCALAR_INT:
        return getattr(b, SCALAR_INT[short])(*args)
    x = args[0]
    zero = ir.Constant(ty, 0)
    if short == "neg":
        return b.sub(zero, x)
    if short == "not":
        return b.not_(x)
    if short == "abs":
        return b.select(b.icmp_signed("<", x, zero), b.sub(zero, x), x)
    if short == "square":
        return b.mul(x, x)
    if short == "maximum":
        return b.select(b.icmp_signed(">", args[0], args[1]), args[0], args[1])
    if short == "minimum":
        return b.select(b.icmp_signed("<", args[0], args[1]), args[0], args[1])
    if short == "sign":
        return b.sub(b.zext(b.icmp_signed(">", x, zero), ty), b.zext(b.icmp_signed("<", x, zero), ty))
    if short == "floordiv":
        return floordiv(b, *args)
    if short == "mod":
        q = floordiv(b, *args)
        return b.sub(args[0], b.mul(q, args[1]))
    if short == "pow":
        return int_pow(g, b, args[0], args[1], ty)
    if short == "div":
        return floordiv(b, *args)
    raise CodegenError(f"no integer code for scalar.{short}")


def floordiv(b, x, y):
    """Python's floor division for signed integers (y != 0)."""
    ty = x.type
    q = b.sdiv(x, y)
    r = b.srem(x, y)
    zero = ir.Constant(ty, 0)
    adj = b.and_(b.icmp_signed("!=", r, zero), b.icmp_signed("!=", b.icmp_signed("<", r, zero),
                                                               b.icmp_signed("<", y, zero)))
    return b.sub(q, b.zext(adj, ty))


def int_pow(g: Gen, b, x, y, ty):
    """x ** y for integers by squaring; y < 0 gives 0 except for x = +-1 (C-like)."""
    fn = g.mg.m.globals.get(f"__irc_ipow_{ty}")
    if fn is None:
        fn = ir.Function(g.mg.m, ir.FunctionType(ty, [ty, ty]), f"__irc_ipow_{ty}")
        fn.linkage = "internal"
        e = fn.append_basic_block("e")
        loop = fn.append_basic_block("loop")
        done = fn.append_basic_block("done")
        bb = ir.IRBuilder(e)
        a0, n0 = fn.args
        one, zero = ir.Constant(ty, 1), ir.Constant(ty, 0)
        bb.cbranch(bb.icmp_signed(">", n0, zero), loop, done)
        bl = ir.IRBuilder(loop)
        acc = bl.phi(ty)
        base = bl.phi(ty)
        n = bl.phi(ty)
        acc.add_incoming(one, e)
        base.add_incoming(a0, e)
        n.add_incoming(n0, e)
        odd = bl.icmp_signed("!=", bl.and_(n, one), zero)
        acc2 = bl.select(odd, bl.mul(acc, base), acc)
        base2 = bl.mul(base, base)
        n2 = bl.ashr(n, one)
        acc.add_incoming(acc2, loop)
        base.add_incoming(base2, loop)
        n.add_incoming(n2, loop)
        bl.cbranch(bl.icmp_signed(">", n2, zero), loop, done)
        bd = ir.IRBuilder(done)
        res = bd.phi(ty)
        # negative exponents: 1 for x == 1, +-1 for x == -1, else 0
        bb.position_before(bb.block.terminator)
        neg = bb.select(bb.icmp_signed("==", a0, one), one,
                        bb.select(bb.icmp_signed("==", a0, ir.Constant(ty, -1)),
                                  bb.select(bb.icmp_signed("==", bb.and_(n0, one), zero), one, ir.Constant(ty, -1)),
                                  zero))
        res.add_incoming(bb.select(bb.icmp_signed("==", n0, zero), one, neg), e)
        res.add_incoming(acc2, loop)
        bd.ret(res)
    return b.call(fn, [x, y])


def cast(b, x, src: DType, dst: DType):
    if src == dst:
        return x
    st, dt = LLTYPE[src.name], LLTYPE[dst.name]
    if dst.is_bool:
        if src.is_float:
            return b.fcmp_unordered("une", x, ir.Constant(st, 0.0))
        return b.icmp_signed("!=", x, ir.Constant(st, 0))
    if src.is_bool:
        return b.uitofp(x, dt) if dst.is_float else b.zext(x, dt)
    if src.is_float and dst.is_float:
        return b.fpext(x, dt) if dst.bits > src.bits else b.fptrunc(x, dt)
    if src.is_float:
        nm = f"llvm.fptosi.sat.{dt}.{'f32' if src.name == 'f32' else 'f64'}"
        fn = b.module.globals.get(nm)
        if fn is None:
            fn = ir.Function(b.module, ir.FunctionType(dt, [st]), nm)
        return b.call(fn, [x])
    if dst.is_float:
        return b.sitofp(x, dt)
    if dst.bits > src.bits:
        return b.sext(x, dt)
    return b.trunc(x, dt)
