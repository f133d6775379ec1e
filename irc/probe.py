"""Probe modules: an entry function rewritten to also return its intermediate values,
so that any backend can show what it computed for each op of the user's program.

irc verify compares a probe run on a backend with the same probe on the interpreter to
find the first value that differs; the NaN guard scans a probe run for the first NaN
or Inf. Both want values that the user can recognise, so the probe is taken from the
front end's IR after inlining (each op still carries the `.tg` line and column of the
expression it came from), not from the optimised IR. The probe module then goes
through the whole pipeline like any other module: the probed values are outputs, so
they are materialised, and everything else (fusion, plan-memory, codegen) is as usual.

Values inside scan bodies are not probed (they exist once per step); a difference or
a NaN there is reported at the scan.

Owns: Probe (a probe module with the map from its extra outputs to the ops),
probe_module, probe_all, build_module (a CompiledModule from tg IR, for a backend).
Sits beside irc.api (imports irc.api, irc.pipeline, irc.passes, irc.ir); nothing below
irc.api may import it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from irc.ir.core import Module, Op, Value

# Ops whose values tell nothing about a backend: reads are the state as given,
# constants are the program text.
_SKIP = frozenset({"tg.read", "tg.constant", "tg.update", "func.return"})


@dataclass
class ProbePoint:
    """One probed value: result `index` of `op` (a front-end op, with its loc)."""

    op: Op
    index: int
    output: int  # position among the probe function's results

    @property
    def loc(self):
        return self.op.loc

    @property
    def type(self):
        return self.op.results[self.index].type

    def describe(self) -> str:
        where = f"{self.loc}: " if self.loc is not None else ""
        res = f" result {self.index}" if len(self.op.results) > 1 else ""
        return f"{where}{self.op.name}{res} -> {self.type}"


@dataclass
class Probe:
    """A probe module for entry function `fn`: its results are the original ones
    (n_results of them), then each ProbePoint's value, then (with updates taken
    out) the value of each shared-variable update, in `updates` order."""

    module: Module
    fn: str
    n_results: int
    points: list = field(default_factory=list)
    updates: list = field(default_factory=list)  # [(shared name, output index)]


def _inline(module: Module) -> None:
    from irc.passes import PassManager, parse_pipeline

    PassManager(parse_pipeline("inline")).run(module)


def probe_module(tg: Module, fn: str, take_updates: bool = False) -> Probe:
    """A copy of the front-end module `tg` whose entry function `fn` also returns every
    top-level intermediate value (the other entry functions are dropped). With
    take_updates, its tg.update ops are removed and their values returned instead, so
    the caller decides whether to apply them."""
    m = tg.clone()
    for op in list(m.body.ops):
        if (
            op.name == "func.func"
            and op.attrs.get("visibility") == "public"
            and op.attrs["sym_name"] != fn
        ):
            op.drop_all_references()
            m.body.remove(op)
    _inline(m)
    func = m.lookup(fn)
    if func is None:
        raise KeyError(f"no entry function '{fn}'")
    return _probe_func(m, func, take_updates)


def probe_all(tg: Module, take_updates: bool = False) -> tuple:
    """(module, {fn: Probe}): a copy of `tg` with every entry function probed."""
    m = tg.clone()
    _inline(m)
    probes = {}
    for func in m.functions():
        if func.attrs.get("visibility") == "public":
            probes[func.attrs["sym_name"]] = _probe_func(m, func, take_updates)
    return m, probes


def _probe_func(m: Module, func: Op, take_updates: bool) -> Probe:
    block = func.regions[0].block
    ret = block.terminator
    outs: list[Value] = list(ret.operands)
    probe = Probe(m, func.attrs["sym_name"], len(outs))
    for op in list(block.ops):
        if op.name in _SKIP:
            continue
        for i, r in enumerate(op.results):
            probe.points.append(ProbePoint(op, i, len(outs)))
            outs.append(r)
    if take_updates:
        for op in list(block.ops):
            if op.name == "tg.update":
                probe.updates.append((op.attrs["sym"].name, len(outs)))
                outs.append(op.operands[0])
                op.drop_all_references()
                block.remove(op)
    ret.set_operands(outs)
    func.attrs["res_types"] = tuple(v.type for v in outs)
    return probe


def build_module(
    tg: Module,
    backend: str,
    *,
    text: str = "",
    filename: str = "<string>",
    define=None,
    seed=None,
    device=None,
    base_dir=None,
):
    """A CompiledModule of the front-end module `tg` (not changed) for `backend`, as
    irc.load builds one from source text."""
    from irc import api
    from irc.pipeline import run_pipeline
    from irc.runtime.state import initial_values

    opt = run_pipeline(tg.clone())
    module_seed = opt.attrs.get("seed", 0) if seed is None else seed
    state = initial_values(opt, base_dir or os.getcwd(), module_seed)
    return api.CompiledModule(
        text, filename, define, tg, opt, api._make_backend(backend, opt, state, device), backend
    )
