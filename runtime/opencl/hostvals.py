"""Host values of an OpenCL schedule: the scalars the host computes for a launch
(dims, constants, host loop indices and scalar ops of them), as small closures
evaluated per set of dim values (HostVal), with the device's semantics
(host_scalar). Kernel arguments and launch sizes are HostVals.

Imports numpy, irc.ir, irc.ops.registry and this package's codegen (types).
"""

from __future__ import annotations

import numpy as np

from irc.ir.dims import eval_dim
from irc.ir.types import DType
from irc.ops.registry import REGISTRY

from .codegen import I64, CodegenError

# -- host values -----------------------------------------------------------------------------------


class HostVal:
    """A scalar the host computes: fn(env) with env holding the named dims and
    the indices of enclosing host loops (keyed by their block argument).
    const is set when the value is known without any env; varies when it
    depends on a host loop index."""

    __slots__ = ("args", "at", "const", "dtype", "fn", "short", "text", "varies")

    def __init__(self, fn, dtype: DType, varies=False, const=None, text="?"):
        self.fn = fn
        self.dtype = dtype
        self.varies = varies
        self.const = const
        self.text = text
        self.short = self.at = None  # an op node: hv_op(short, dtype, args, at)
        self.args = ()

    def eval(self, env):
        return self.const if self.const is not None else self.fn(env)

    def specialize(self, env) -> HostVal:
        """This value for one set of dims: what does not depend on a host loop
        index folded to constants (evaluated once per plan, not per iteration)."""
        if self.const is not None:
            return self
        if not self.varies:
            return hv_const(self.eval(env), self.dtype)
        if self.short is None:
            return self
        return hv_op(self.short, self.dtype, [a.specialize(env) for a in self.args], self.at)

    def __repr__(self):
        return f"HostVal({self.text})"


def hv_const(v, dtype: DType = I64) -> HostVal:
    v = _np_scalar(v, dtype)
    return HostVal(lambda env, v=v: v, dtype, const=v, text=str(v))


def hv_dim(d) -> HostVal:
    if isinstance(d, int):
        return hv_const(d)
    return HostVal(lambda env, d=d: eval_dim(d, env), I64, text=str(d))


def hv_var(key, text) -> HostVal:
    return HostVal(lambda env, key=key: env[key], I64, varies=True, text=text)


def _np_scalar(v, dtype: DType):
    with np.errstate(all="ignore"):
        if dtype.is_bool:
            return bool(v)
        if dtype.is_int:
            return int(np.asarray(v).astype(dtype.np))
        return dtype.np.type(v)


_INT_FAST = {"add": lambda x, y: x + y, "sub": lambda x, y: x - y, "mul": lambda x, y: x * y}
_I64_RANGE = (-(2**63), 2**63)


def hv_op(short: str, rt: DType, args: list, at: DType | None = None) -> HostVal:
    at = at or (args[0].dtype if args else rt)
    fast = _INT_FAST.get(short) if rt.name == "i64" and len(args) == 2 else None
    if fast is not None:
        # index arithmetic, evaluated per host-loop iteration: plain Python ints
        a0, a1 = args

        def fn(env):
            r = fast(a0.eval(env), a1.eval(env))
            if _I64_RANGE[0] <= r < _I64_RANGE[1]:
                return r
            return host_scalar(short, rt, at, [a0.eval(env), a1.eval(env)])
    else:

        def fn(env):
            return host_scalar(short, rt, at, [a.eval(env) for a in args])

    h = HostVal(
        fn, rt, any(a.varies for a in args), text=f"{short}({', '.join(a.text for a in args)})"
    )
    if all(a.const is not None for a in args):
        h.const = host_scalar(short, rt, at, [a.const for a in args])
        h.text = str(h.const)
    return h


def hv_add(a: HostVal, b: HostVal) -> HostVal:
    if a.const == 0 and not isinstance(a.const, bool):
        return b
    if b.const == 0 and not isinstance(b.const, bool):
        return a
    return hv_op("add", I64, [a, b])


def hv_mul(a: HostVal, b: HostVal) -> HostVal:
    if a.const == 1:
        return b
    if b.const == 1:
        return a
    if a.const == 0 or b.const == 0:
        return hv_const(0)
    return hv_op("mul", I64, [a, b])


def hv_sub(a: HostVal, b: HostVal) -> HostVal:
    if b.const == 0:
        return a
    return hv_op("sub", I64, [a, b])


def _ipow(a: int, n: int) -> int:
    if n < 0:
        return 1 if a == 1 else ((-1 if n & 1 else 1) if a == -1 else 0)
    return a**n


def host_scalar(short: str, rt: DType, at: DType, args: list):
    """One scalar op on the host, with the device's semantics."""
    with np.errstate(all="ignore"):
        if short == "select":
            return _np_scalar(args[1] if args[0] else args[2], rt)
        if short == "cast":
            x = args[0]
            if rt.is_bool:
                return bool(x != 0)
            if at.is_float and rt.is_int:
                x = float(x)
                if np.isnan(x):
                    return 0
                info = np.iinfo(rt.np)
                return int(
                    min(
                        max(
                            int(x) if abs(x) < 2.0**63 else (info.max if x > 0 else info.min),
                            info.min,
                        ),
                        info.max,
                    )
                )
            return _np_scalar(x, rt)
        if short in ("floordiv", "mod") or (short == "div" and not rt.is_float):
            a, b = int(args[0]), int(args[1])
            if b == 0:
                return 0
            return _np_scalar(a // b if short != "mod" else a % b, rt)
        if short == "pow" and rt.is_int:
            return _np_scalar(_ipow(int(args[0]), int(args[1])), rt)
        d = REGISTRY.get("tg." + short)
        if d is None or d.numpy is None:
            raise CodegenError(f"no host evaluation of scalar.{short}")
        a = [np.asarray(x, dtype=at.np) for x in args]
        return _np_scalar(np.asarray(d.numpy(*a)).item(), rt)


def numel_hv(shape) -> HostVal:
    n = hv_const(1)
    for d in shape:
        n = hv_mul(n, hv_dim(d))
    return n
