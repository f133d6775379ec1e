"""cse: common-subexpression elimination.

Two ops compute the same value when they have the same name, the same operands (the same
Value objects; either order for COMMUTATIVE ops), equal attributes (compared by
irc.ir.core.attr_key, so arrays compare by contents and 0.0 differs from -0.0) and the
same result types. The later one is replaced by the earlier one:

    func.func @f(%x: f32[N]) -> (f32[N]) {              func.func @f(%x: f32[N]) -> (f32[N]) {
      %a = tg.exp %x : f32[N]                             %a = tg.exp %x : f32[N]
      %b = tg.exp %x : f32[N]                   ->        %c = tg.add %a, %a : f32[N]
      %c = tg.add %a, %b : f32[N]                         func.return %c
      func.return %c                                    }
    }

Only ops with the PURE trait and no regions are merged: never tg.update or anything
with side effects, never ops the registry does not know. Ops with regions (tg.scan)
are not merged themselves, but their bodies are processed.

Scoping follows dominance: a value computed in an enclosing block is reused inside a
nested region (a scan body may reuse `%a` above), never the other way round, and the
regions of ISOLATED ops (func.func) start from an empty scope. Within a region, each
block sees only its own ops and those of the enclosing blocks.

Imports only irc.ir and irc.ops.
"""

from __future__ import annotations

from dataclasses import dataclass

from irc.ir.core import ERASED_RESULTS, Block, Module, attr_key
from irc.ir.rewriter import Rewriter
from irc.ops.registry import COMMUTATIVE, ISOLATED, PURE, lookup
from irc.passes.pass_manager import Pass, register


@register
@dataclass
class CSE(Pass):
    name = "cse"
    summary = "merge pure ops that compute the same value"
    reports_changes = True

    def run(self, module: Module) -> bool:
        rewriter = Rewriter()
        kinds: dict = {}  # op name -> _NEVER, _PLAIN or _COMMUTATIVE (one registry look-up per name)
        for region in module.regions:
            for block in region.blocks:
                _cse_block(block, {}, rewriter, kinds, owned=True)
        return rewriter.changed

    def at_fixed_point(self) -> bool:
        # A second run merges nothing: when an op is visited, its operands and
        # those of every earlier op in scope are final already (they are defined
        # before it, so visited and merged before it), so two ops equal after a
        # run were equal when the later one was visited, and merged then.
        return True


_NEVER, _PLAIN, _COMMUTATIVE = 0, 1, 2


def _kind(name: str) -> int:
    d = lookup(name)
    if d is None or PURE not in d.traits:
        return _NEVER
    return _COMMUTATIVE if COMMUTATIVE in d.traits else _PLAIN


def _cse_block(
    block: Block, scope, rewriter: Rewriter, kinds: dict | None = None, owned: bool = False
) -> None:
    # `scope` maps an op key (name, operands, attributes) to the earlier op (or ops,
    # in a list) with that key, for this block and the blocks enclosing it, so their
    # result types are compared (==) only when the rest of the key matches, not
    # hashed for every op.
    # The entries this block adds are removed when it is done, so its ops stay
    # invisible to sibling and enclosing blocks (one dict and one lookup per op,
    # where a ChainMap searched every layer); `owned`: scope is this block's own
    # fresh dict, dropped afterwards, so there is nothing to remove.
    if kinds is None:
        kinds = {}
    added = []
    merged = set()  # ops replaced by an earlier equal op: dropped from the block at the end
    # (the op list is not changed during the loop: merged ops are dropped after it)
    for op in block.ops:
        if op.regions:
            d = lookup(op.name)
            # An unknown op might not see values from outside: treat it as isolated.
            isolated = d is None or d.has(ISOLATED)
            for region in op.regions:
                for inner in region.blocks:
                    if isolated:
                        _cse_block(inner, {}, rewriter, kinds, owned=True)
                    else:
                        _cse_block(inner, scope, rewriter, kinds)
            continue
        name = op.name
        kind = kinds.get(name)
        if kind is None:
            kind = kinds[name] = _kind(name)
        results = op.results
        if kind == _NEVER or not results:
            continue
        operands = op.operands
        if kind == _COMMUTATIVE and len(operands) > 1:
            if len(operands) == 2:  # (what sorted(key=id) gives, without its call)
                a, b = operands
                operands = (b, a) if id(b) < id(a) else (a, b)
            else:
                operands = tuple(sorted(operands, key=id))
        else:
            operands = tuple(operands)
        attrs = op.attrs
        if not attrs:
            attrs = ()
        elif len(attrs) == 1:  # (a constant's value: nothing to sort)
            for k, v in attrs.items():
                attrs = ((k, attr_key(v)),)
        else:
            try:
                attrs = tuple(sorted([(k, attr_key(v)) for k, v in attrs.items()]))
            except TypeError:
                continue  # attributes that do not sort: never merge rather than guess
        key = (name, operands, attrs)
        try:
            # (the key hashed once, not twice; an op alone, a list of them once
            # two ops share a key but not their result types)
            entry = scope.setdefault(key, op)
        except TypeError:
            continue  # an attribute that does not hash: never merge rather than guess
        if entry is op:
            if not owned:
                added.append(key)
            continue
        types = [r.type for r in results]
        for existing in entry if type(entry) is list else (entry,):
            if [r.type for r in existing.results] == types:
                break
        else:
            if type(entry) is list:
                entry.append(op)
            else:
                scope[key] = [entry, op]
            if not owned:
                added.append(key)
            continue
        for r, v in zip(results, existing.results):
            r.replace_all_uses_with(v)
        op.drop_all_references()
        merged.add(op)
    for key in reversed(added):  # this block's entries are the last of their lists
        entry = scope[key]
        if type(entry) is list:
            entry.pop()
            if not entry:
                del scope[key]
        else:
            del scope[key]
    if merged:
        # One pass over the block: erasing op by op moves the rest of a long
        # block's op list each time (quadratic over a 20,000-statement function).
        block.ops[:] = [o for o in block.ops if o not in merged]
        for op in merged:
            op.parent = None
            op.results = ERASED_RESULTS
        rewriter.changed = True

