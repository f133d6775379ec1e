"""dce: dead-code elimination.

Removes ops with the PURE trait whose results nothing uses (tg.read included), then the
private func.func symbols that nothing reachable from a public one references:

    tg.global {sym_name = "W", ...}                   tg.global {sym_name = "W", ...}
    func.func @unused() -> () attributes              func.func @f(%x: f32[N]) -> (f32[N]) {
        {visibility = "private"} {...}                  %b = tg.exp %x : f32[N]
    func.func @f(%x: f32[N]) -> (f32[N]) {      ->      func.return %b
      %a = tg.mul %x, %x : f32[N]                     }
      %w = tg.read {sym = @W} : f32[4]
      %b = tg.exp %x : f32[N]
      func.return %b
    }

Each block is walked bottom-up, visiting an op's regions before the op, so a chain of
dead ops, or a value used only by dead ops inside a scan body, goes in one sweep. An op
with regions (tg.scan) goes only when everything inside it is pure or a terminator.
Never removed: ops with side effects (tg.update), terminators, ops the registry does not
know, block arguments, public functions and other symbols (tg.global).

Imports only irc.ir and irc.ops.
"""

from __future__ import annotations

from dataclasses import dataclass

from irc.ir.core import ERASED_RESULTS, Block, Module, Op, SymbolRef
from irc.ir.rewriter import Rewriter
from irc.ops.registry import PURE, TERMINATOR, lookup
from irc.passes.pass_manager import Pass, register


@register
@dataclass
class DCE(Pass):
    name = "dce"
    summary = "remove unused pure ops and unreferenced private functions"
    reports_changes = True

    def run(self, module: Module) -> bool:
        rewriter = Rewriter()
        for region in module.regions:
            for block in region.blocks:
                _dce_block(block, rewriter)
        _remove_dead_functions(module, rewriter)
        return rewriter.changed


def _dce_block(block: Block, rewriter: Rewriter, removable: dict | None = None) -> None:
    # removable: op name -> whether an op of that name without regions may go
    # (one registry look-up per name)
    # (the op list is not changed during the loop: dead ops are dropped after it)
    if removable is None:
        removable = {}
    dead = False
    for op in reversed(block.ops):
        if op.regions:
            for region in op.regions:
                for inner in region.blocks:
                    _dce_block(inner, rewriter, removable)
            results = op.results
            if results[0].uses if len(results) == 1 else any(r.uses for r in results):
                continue  # (tested first: the walk of _is_removable only for unused ops)
            if not _is_removable(op, removable):
                continue
        else:
            r = removable.get(op.name)
            if r is None:
                r = removable[op.name] = _is_removable(op)
            if not r:
                continue
            results = op.results
            if results[0].uses if len(results) == 1 else any(r.uses for r in results):
                continue
        # Unlinked now (its operands lose this use), dropped from the op list
        # below in one rebuild: erasing each moved the rest of a long block.
        op.drop_all_references()
        op.parent = None
        op.results = ERASED_RESULTS
        dead = True
    if dead:
        block.ops[:] = [o for o in block.ops if o.parent is block]
        rewriter.changed = True


def _is_removable(op: Op, removable: dict | None = None) -> bool:
    """Pure, not a terminator, and (with regions) pure all the way down.
    removable: _dce_block's cache, where this keeps (name, None) -> whether ops of
    that name may be nested in a removable op (pure or a terminator)."""
    if op.name == "tg.read":
        return True  # reads of shared state have no effect of their own
    d = lookup(op.name)
    if d is None or not d.has(PURE) or d.has(TERMINATOR):
        return False
    if not op.regions:
        return True
    inner = {} if removable is None else removable  # (one registry look-up per name)
    for nested in op.walk():
        if nested is op:
            continue
        key = (nested.name, None)
        ok = inner.get(key)
        if ok is None:
            nd = lookup(nested.name)
            ok = inner[key] = nd is not None and (nd.has(PURE) or nd.has(TERMINATOR))
        if not ok:
            return False
    return True


def _remove_dead_functions(module: Module, rewriter: Rewriter) -> None:
    """Erase private functions not reachable, through symbol references, from any other
    top-level op (public functions, globals): a mark-and-sweep, so mutually recursive
    dead helpers go too."""
    top = list(module.body.ops)
    if not any(_is_private_function(op) for op in top):
        return  # nothing that could go: no walk of every function for its references
    by_name = {op.attrs["sym_name"]: op for op in top if "sym_name" in op.attrs}
    roots = [op for op in top if not _is_private_function(op)]
    live: set = set()
    work = list(roots)
    while work:
        op = work.pop()
        for name in _referenced_symbols(op):
            target = by_name.get(name)
            if target is not None and name not in live:
                live.add(name)
                work.append(target)
    for op in top:
        if _is_private_function(op) and op.attrs["sym_name"] not in live:
            rewriter.erase_op(op)


def _is_private_function(op: Op) -> bool:
    return (
        op.name == "func.func"
        and op.attrs.get("visibility") == "private"
        and "sym_name" in op.attrs
    )


def _referenced_symbols(op: Op) -> set:
    """Names of every symbol referenced by an attribute of `op` or of an op inside it."""
    names: set = set()
    for nested in op.walk():
        for v in nested.attrs.values():
            _collect_refs(v, names)
    return names


def _collect_refs(v, names: set) -> None:
    if isinstance(v, SymbolRef):
        names.add(v.name)
    elif isinstance(v, tuple):
        for x in v:
            _collect_refs(x, names)
