"""The NaN guard (Theano's NanGuardMode): `irc.load(..., nan_guard=True)`,
`irc run --nan-guard`, `irc train --nan-guard`.

With the guard on, each entry function is compiled as its probe (irc/probe.py): the
same function also returning every top-level intermediate value and, instead of
applying them, the new values of the shared variables. After each call the guard
checks, in program order, the float arguments, then each intermediate value, then
each update; the first that holds a NaN or an Inf raises NanGuardError naming the op
and its `.tg` file:line:col (a value inside a scan body is reported at the scan).
Updates are applied only when everything is finite, so a guarded model keeps its
last good weights. This works the same on every backend: the probe is an ordinary
module that any backend compiles.

Off by default and free when off: irc.api builds the usual module and nothing of
this file is imported.

Owns: NanGuardError, NanGuardBackend. Sits beside irc.api (imports irc.probe, irc.ir).
"""

from __future__ import annotations

import numpy as np


class NanGuardError(FloatingPointError):
    """The first op of a call that produced a NaN or an Inf: `FILE:LINE:COL: error: ...`.
    Attributes: loc (or None), op (its name), fn (the entry function), kind ("NaN" or
    "Inf")."""

    def __init__(self, message, loc=None, op=None, fn=None, kind=None):
        super().__init__(f"{loc}: error: {message}" if loc is not None else f"error: {message}")
        self.message, self.loc, self.op, self.fn, self.kind = message, loc, op, fn, kind

    def format(self) -> str:
        """The message with the source line and a caret under the op (as CompileError)."""
        from irc.ir.errors import CompileError

        return CompileError(self.message, self.loc).format()


def _bad(a) -> str | None:
    a = np.asarray(a)
    if a.dtype.kind not in "fc" or a.size == 0:
        return None
    if np.isnan(a).any():
        return "NaN"
    if np.isinf(a).any():
        return "Inf"
    return None


def _where(a) -> str:
    a = np.asarray(a)
    if a.ndim == 0:
        return ""
    k = np.unravel_index(int(np.argmax(~np.isfinite(a))), a.shape)
    return f" (first at [{', '.join(map(str, k))}] of shape {list(a.shape)})"


class NanGuardBackend:
    """A backend (call/get/set) that runs the probes of a module on `inner`, a backend
    built for the probe module, and checks every value (see the module docstring)."""

    def __init__(self, inner, probes: dict, arg_names: dict):
        self.inner = inner
        self.probes = probes  # fn -> irc.probe.Probe
        self.arg_names = arg_names  # fn -> [argument names]
        self.name = getattr(inner, "name", "guarded")

    def call(self, fn_name: str, args: list, env: dict) -> list:
        probe = self.probes[fn_name]
        for name, a in zip(self.arg_names[fn_name], args):
            kind = _bad(a)
            if kind:
                raise NanGuardError(
                    f"argument '{name}' of {fn_name}() holds {kind}{_where(a)}",
                    fn=fn_name,
                    kind=kind,
                )
        results = self.inner.call(fn_name, args, env)
        for p in probe.points:
            v = results[p.output]
            kind = _bad(v)
            if kind:
                raise NanGuardError(
                    f"{p.op.name} produced {kind}{_where(v)} in {fn_name}() "
                    f"(the first op of the call to do so; value {p.type})",
                    loc=p.loc,
                    op=p.op.name,
                    fn=fn_name,
                    kind=kind,
                )
        for name, k in probe.updates:
            kind = _bad(results[k])
            if kind:
                raise NanGuardError(
                    f"the update of shared variable '{name}' holds {kind}", fn=fn_name, kind=kind
                )
        for name, k in probe.updates:
            self.inner.set(name, np.array(results[k], order="C"))
        return list(results[: probe.n_results])

    def get(self, name: str) -> np.ndarray:
        return self.inner.get(name)

    def set(self, name: str, value: np.ndarray) -> None:
        self.inner.set(name, value)

    def __getattr__(self, name):  # dump, set_threads, ... of the inner backend
        # not `entry`: the inner backend's fast call path would skip every check here
        if name in ("inner", "entry"):
            raise AttributeError(name)
        return getattr(self.inner, name)


def guarded_backend(tg, backend: str, state: dict, device, make_backend):
    """A NanGuardBackend for the front-end module `tg` on `backend` with shared values
    `state` (make_backend: irc.api._make_backend)."""
    from irc.pipeline import run_pipeline
    from irc.probe import probe_all

    module, probes = probe_all(tg, take_updates=True)
    opt = run_pipeline(module.clone())  # the probes keep pointing at module's ops
    names = {}
    for func in opt.functions():
        fn = func.attrs["sym_name"]
        if fn in probes:
            names[fn] = [a.name_hint for a in func.regions[0].block.args]
    return NanGuardBackend(make_backend(backend, opt, state, device), probes, names)


__all__ = ["NanGuardBackend", "NanGuardError", "guarded_backend"]
