"""Vectorisable elementary functions emitted as LLVM IR (no libm calls in f32):
exp, log, log1p, tanh and pow, built from +, *, llvm.fma,
bit casts and selects only, so the loop vectoriser turns a loop calling them
into straight SIMD code for the host's widest vectors.

f32 accuracy (tests/llvm/test_transcendentals.py, against NumPy over the whole
float32 range, infinities, NaN and denormals): exp, log, log1p within 2 ulp,
tanh within 4 ulp (sigmoid and softplus, built from these by their scalar rules in
irc/ops/elementwise.py, within 4 ulp, absolute 1e-7 near zero crossings), pow
via f64 log2/exp2 within 1 ulp, with C99 powf's special cases.

Every polynomial uses llvm.fma explicitly (not contractible fmul/fadd), so the
scalar remainder loop and the vector body give bit-identical results: results
never depend on vector width or thread split.

f64 versions call the LLVM intrinsics / libm (exact, scalar).
Imports llvmlite only.
"""

from __future__ import annotations

import math

from llvmlite import ir

F32 = ir.FloatType()
F64 = ir.DoubleType()
I32 = ir.IntType(32)
I64 = ir.IntType(64)


def _intr(b: ir.IRBuilder, name: str, ty, args):
    mod = b.module
    full = f"llvm.{name}.{'f32' if ty == F32 else 'f64'}"
    fn = mod.globals.get(full)
    if fn is None:
        fn = ir.Function(mod, ir.FunctionType(ty, [ty] * len(args)), full)
    return b.call(fn, args)


def _libm(b: ir.IRBuilder, name: str, ty, args):
    mod = b.module
    fn = mod.globals.get(name)
    if fn is None:
        fn = ir.Function(mod, ir.FunctionType(ty, [ty] * len(args)), name)
    return b.call(fn, args)


def fma(b, x, y, z):
    return _intr(b, "fma", x.type, [x, y, z])


def _c(ty, v):
    return ir.Constant(ty, v)


def _poly(b, x, coeffs):
    """Horner with fma: coeffs from the highest degree down."""
    ty = x.type
    acc = _c(ty, coeffs[0])
    for c in coeffs[1:]:
        acc = fma(b, acc, x, _c(ty, c))
    return acc


def _isnan(b, x):
    return b.fcmp_unordered("uno", x, x)


def _select(b, c, x, y):
    return b.select(c, x, y)


def _pow2i(b, n):
    """2**n for an i32 n in [-126, 127] as f32."""
    bits = b.shl(b.add(n, _c(I32, 127)), _c(I32, 23))
    return b.bitcast(bits, F32)


# -- exp ------------------------------------------------------------------------------------


def exp_f32(b: ir.IRBuilder, x):
    hi, lo = 88.72283935546875, -104.0
    xc = _intr(b, "minnum", F32, [_intr(b, "maxnum", F32, [x, _c(F32, lo)]), _c(F32, hi)])
    n = _intr(b, "rint", F32, [b.fmul(xc, _c(F32, 1.44269504088896341))])
    r = fma(b, n, _c(F32, -0.693359375), xc)
    r = fma(b, n, _c(F32, 2.12194440e-4), r)
    p = _poly(b, r, [1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2,
                     1.6666665459e-1, 5.0000001201e-1])
    r2 = b.fmul(r, r)
    y = fma(b, p, r2, b.fadd(r, _c(F32, 1.0)))
    ni = b.fptosi(n, I32)
    n1 = b.ashr(ni, _c(I32, 1))
    n2 = b.sub(ni, n1)
    y = b.fmul(b.fmul(y, _pow2i(b, n1)), _pow2i(b, n2))
    y = _select(b, b.fcmp_ordered(">", x, _c(F32, hi)), _c(F32, math.inf), y)
    return _select(b, _isnan(b, x), x, y)


# -- log ------------------------------------------------------------------------------------


def log_f32(b: ir.IRBuilder, x):
    tiny = b.fcmp_ordered("<", x, _c(F32, 1.1754943508222875e-38))
    xs = _select(b, tiny, b.fmul(x, _c(F32, 8388608.0)), x)  # scale denormals by 2**23
    bits = b.bitcast(xs, I32)
    e = b.sub(b.lshr(bits, _c(I32, 23)), _c(I32, 126))
    e = b.sub(e, _select(b, tiny, _c(I32, 23), _c(I32, 0)))
    m = b.bitcast(b.or_(b.and_(bits, _c(I32, 0x807FFFFF)), _c(I32, 0x3F000000)), F32)  # [0.5, 1)
    small = b.fcmp_ordered("<", m, _c(F32, 0.707106781186547524))
    e = b.sub(e, _select(b, small, _c(I32, 1), _c(I32, 0)))
    m = b.fsub(_select(b, small, b.fadd(m, m), m), _c(F32, 1.0))
    ef = b.sitofp(e, F32)
    z = b.fmul(m, m)
    p = _poly(b, m, [7.0376836292e-2, -1.1514610310e-1, 1.1676998740e-1, -1.2420140846e-1,
                     1.4249322787e-1, -1.6668057665e-1, 2.0000714765e-1, -2.4999993993e-1,
                     3.3333331174e-1])
    y = b.fmul(b.fmul(p, m), z)
    y = fma(b, ef, _c(F32, -2.12194440e-4), y)
    y = fma(b, z, _c(F32, -0.5), y)
    r = b.fadd(m, y)
    r = fma(b, ef, _c(F32, 0.693359375), r)
    r = _select(b, b.fcmp_ordered("==", x, _c(F32, 0.0)), _c(F32, -math.inf), r)
    r = _select(b, b.fcmp_ordered("<", x, _c(F32, 0.0)), _c(F32, math.nan), r)
    r = _select(b, b.fcmp_ordered("==", x, _c(F32, math.inf)), x, r)
    return _select(b, _isnan(b, x), x, r)


def log1p_f32(b: ir.IRBuilder, x):
    u = b.fadd(x, _c(F32, 1.0))
    d = b.fsub(u, _c(F32, 1.0))
    lu = log_f32(b, u)
    # log(u) * x / (u - 1) corrects the rounding of 1 + x (Goldberg).
    corr = b.fmul(lu, b.fdiv(x, d))
    r = _select(b, b.fcmp_ordered("==", d, _c(F32, 0.0)), x, corr)
    r = _select(b, b.fcmp_ordered("==", u, _c(F32, math.inf)), u, r)
    return _select(b, b.fcmp_ordered("<=", u, _c(F32, 0.0)), lu, r)


# -- tanh --------------------------------------------------------------------------------------


def tanh_f32(b: ir.IRBuilder, x):
    ax = _intr(b, "fabs", F32, [x])
    z = b.fmul(x, x)
    p = _poly(b, z, [-5.70498872745e-3, 2.06390887954e-2, -5.37397155531e-2, 1.33314422036e-1,
                     -3.33332819422e-1])
    small = fma(b, b.fmul(p, z), x, x)
    e = exp_f32(b, b.fmul(ax, _c(F32, 2.0)))
    big = b.fsub(_c(F32, 1.0), b.fdiv(_c(F32, 2.0), b.fadd(e, _c(F32, 1.0))))
    big = _intr(b, "copysign", F32, [big, x])
    r = _select(b, b.fcmp_ordered("<", ax, _c(F32, 0.625)), small, big)
    return _select(b, _isnan(b, x), x, r)


# -- pow (through f64) ---------------------------------------------------------------------------


def _log_f64(b, x):
    """log of a positive, finite, normal f64 (|rel err| ~ 1e-13)."""
    bits = b.bitcast(x, I64)
    e = b.sub(b.lshr(bits, _c(I64, 52)), _c(I64, 1022))
    m = b.bitcast(b.or_(b.and_(bits, _c(I64, 0x800FFFFFFFFFFFFF)), _c(I64, 0x3FE0000000000000)), F64)
    small = b.fcmp_ordered("<", m, _c(F64, 0.70710678118654752))
    e = b.sub(e, _select(b, small, _c(I64, 1), _c(I64, 0)))
    m = _select(b, small, b.fadd(m, m), m)
    s = b.fdiv(b.fsub(m, _c(F64, 1.0)), b.fadd(m, _c(F64, 1.0)))
    s2 = b.fmul(s, s)
    p = _poly(b, s2, [2 / 15, 2 / 13, 2 / 11, 2 / 9, 2 / 7, 2 / 5, 2 / 3, 2.0])
    return fma(b, b.sitofp(e, F64), _c(F64, math.log(2.0)), b.fmul(p, s))


def _exp_f64(b, t):
    """exp of an f64 clamped to [-200, 200] (|rel err| ~ 1e-14)."""
    t = _intr(b, "minnum", F64, [_intr(b, "maxnum", F64, [t, _c(F64, -200.0)]), _c(F64, 200.0)])
    n = _intr(b, "rint", F64, [b.fmul(t, _c(F64, 1.4426950408889634))])
    r = fma(b, n, _c(F64, -0.6931471803691238), t)
    r = fma(b, n, _c(F64, -1.9082149292705877e-10), r)
    p = _poly(b, r, [1 / math.factorial(k) for k in range(12, -1, -1)])
    bits = b.shl(b.add(b.fptosi(n, I64), _c(I64, 1023)), _c(I64, 52))
    return b.fmul(p, b.bitcast(bits, F64))


def pow_f32(b: ir.IRBuilder, x, y):
    ax = _intr(b, "fabs", F32, [x])
    ay = _intr(b, "fabs", F32, [y])
    yi = _intr(b, "rint", F32, [y])
    is_int = b.fcmp_ordered("==", yi, y)
    yclamp = _intr(b, "minnum", F32, [ay, _c(F32, 16777216.0)])
    odd_bit = b.trunc(b.fptosi(yclamp, I32), ir.IntType(1))
    odd = b.and_(b.and_(is_int, b.fcmp_ordered("<", ay, _c(F32, 16777216.0))), odd_bit)
    # |x| ** y in f64: exact enough that rounding to f32 is correct nearly always.
    axd = b.fpext(ax, F64)
    safe = _select(b, b.fcmp_ordered(">", axd, _c(F64, 0.0)), axd, _c(F64, 1.0))
    safe = _select(b, b.fcmp_ordered("==", safe, _c(F64, math.inf)), _c(F64, 1.0), safe)
    t = b.fmul(b.fpext(y, F64), _log_f64(b, safe))
    mag = b.fptrunc(_exp_f64(b, t), F32)
    # |x| == 0 or inf: 0 or inf by the sign of y (and of log|x|).
    zero_or_inf = b.or_(b.fcmp_ordered("==", ax, _c(F32, 0.0)), b.fcmp_ordered("==", ax, _c(F32, math.inf)))
    big = b.xor(b.fcmp_ordered("==", ax, _c(F32, math.inf)), b.fcmp_ordered("<", y, _c(F32, 0.0)))
    mag = _select(b, zero_or_inf, _select(b, big, _c(F32, math.inf), _c(F32, 0.0)), mag)
    # y = +-inf: |x| < 1, == 1, > 1
    lt1 = b.fcmp_ordered("<", ax, _c(F32, 1.0))
    yinf = b.fcmp_ordered("==", ay, _c(F32, math.inf))
    inf_res = _select(b, b.xor(lt1, b.fcmp_ordered(">", y, _c(F32, 0.0))), _c(F32, math.inf), _c(F32, 0.0))
    inf_res = _select(b, b.fcmp_ordered("==", ax, _c(F32, 1.0)), _c(F32, 1.0), inf_res)
    mag = _select(b, yinf, inf_res, mag)
    neg = b.fcmp_ordered("<", x, _c(F32, 0.0))
    negz = b.and_(b.fcmp_ordered("==", x, _c(F32, 0.0)),
                  b.icmp_signed("<", b.bitcast(x, I32), _c(I32, 0)))
    signed = b.and_(b.or_(neg, negz), odd)
    r = _select(b, signed, b.fneg(mag), mag)
    neg_finite = b.and_(neg, b.fcmp_ordered("!=", x, _c(F32, -math.inf)))
    r = _select(b, b.and_(neg_finite, b.and_(b.not_(is_int), b.not_(yinf))), _c(F32, math.nan), r)
    r = _select(b, b.or_(_isnan(b, x), _isnan(b, y)), _c(F32, math.nan), r)
    r = _select(b, b.fcmp_ordered("==", x, _c(F32, 1.0)), _c(F32, 1.0), r)
    return _select(b, b.fcmp_ordered("==", y, _c(F32, 0.0)), _c(F32, 1.0), r)


# -- f64: intrinsics and libm ----------------------------------------------------------------------


def exp_f64(b, x):
    return _intr(b, "exp", F64, [x])


def log_f64(b, x):
    return _intr(b, "log", F64, [x])


def log1p_f64(b, x):
    return _libm(b, "log1p", F64, [x])


def tanh_f64(b, x):
    return _libm(b, "tanh", F64, [x])


def pow_f64(b, x, y):
    return _intr(b, "pow", F64, [x, y])


UNARY = {
    ("exp", "f32"): exp_f32, ("log", "f32"): log_f32, ("log1p", "f32"): log1p_f32,
    ("tanh", "f32"): tanh_f32,
    ("exp", "f64"): exp_f64, ("log", "f64"): log_f64, ("log1p", "f64"): log1p_f64,
    ("tanh", "f64"): tanh_f64,
}  # fmt: skip
BINARY = {("pow", "f32"): pow_f32, ("pow", "f64"): pow_f64}
