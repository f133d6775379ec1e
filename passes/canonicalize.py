"""canonicalize: algebraic simplification and constant folding to a fixed point.

    %c = tg.constant {value = dense<f32, 1.0>} : f32         %s = tg.exp %x : f32[N]
    %y = tg.mul %x, %c : f32[N]                      ->
    %s = tg.exp %y : f32[N]

Two kinds of rewrites, applied until nothing changes (or max-iterations):
- each op's canonical patterns (irc/ops/canonical.py, found through the
  registry's OpDef.canonical);
- constant folding: a PURE op without regions whose operands are all
  constants, whose dim attributes are static and whose result has at most
  `max-fold-elements` elements is replaced by a tg.constant computed with
  the op's NumPy semantics (the interpreter's semantics, by construction).
Dead ops left behind are erased when their results have no uses.
Imports only irc.ir and irc.ops.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import irc.ops.canonical  # noqa: F401  (attaches the patterns to the registry)
from irc.ir.core import ERASED_RESULTS, Module, Op
from irc.ir.types import num_elements
from irc.ops.registry import PURE, OpBuilder, lookup, semantic_attrs
from irc.passes.pass_manager import Pass, register


@register
@dataclass
class Canonicalize(Pass):
    name = "canonicalize"
    summary = "algebraic simplification and constant folding, to a fixed point"
    max_iterations: int = 20
    max_fold_elements: int = 1 << 16

    reports_changes = True

    def run(self, module: Module) -> bool:
        changed = False
        self._fixed = False
        for _ in range(self.max_iterations):
            b = self._builder = _CountingBuilder()
            if not self._sweep(module):
                # A sweep that rewrote nothing, and whose patterns left no ops behind
                # (one may build ops and then decline): the next would do the same.
                self._fixed = b.inserted == 0
                changed |= b.inserted > 0
                break
            changed = True
        return changed

    def at_fixed_point(self) -> bool:
        return getattr(self, "_fixed", False)

    def _sweep(self, module: Module) -> bool:
        changed = False
        # Erased ops are unlinked at once (no operands, no parent) but leave their
        # block's op list in one rebuild at the end of the sweep: removing each
        # from the list moved the rest of a long block every time.
        touched: dict = {}  # block -> None, in order

        def erase(op: Op) -> None:
            if any(r.uses for r in op.results):
                raise ValueError(f"erasing {op.name} whose result is still used")
            op.drop_all_references()
            if op.parent is not None:
                touched[op.parent] = None
                op.parent = None
            op.results = ERASED_RESULTS

        b = getattr(self, "_builder", None) or _CountingBuilder()
        info = {}  # op name -> (OpDef, pure, foldable by name, patterns), or None if unknown
        for op in list(module.walk()):
            name = op.name
            if op.parent is None or name == "tg.constant" or name == "builtin.module":
                continue
            i = info.get(name, False)
            if i is False:
                i = info[name] = _name_info(name)
            if i is None:
                continue
            d, pure, foldable, patterns = i
            results = op.results
            if pure and results and not (
                results[0].uses if len(results) == 1 else any(r.uses for r in results)
            ):
                erase(op)
                changed = True
                continue
            new = None
            if foldable and results and not op.regions:
                # (_fold's first test, that every operand is a constant, inline:
                # it fails for nearly every op)
                for v in op.operands:
                    p = getattr(v, "op", None)
                    if p is None or p.name != "tg.constant":
                        break
                else:
                    new = self._fold(op, d)
            if new is None and patterns:
                # One builder for the sweep, set as a fresh one would be: block,
                # anchor and position by set_insertion_before, the op's loc.
                b.loc = op.loc
                b.block, b.pos, b.anchor = op.parent, None, op  # (set_insertion_before)
                for pattern in patterns:
                    new = pattern(b, op)
                    if new is not None:
                        break
            if new is None:
                continue
            for r, v in zip(results, new):
                if v is not r:
                    r.replace_all_uses_with(v)
            if not any(r.uses for r in results):
                erase(op)
            changed = True
        for block in touched:
            block.ops[:] = [o for o in block.ops if o.parent is block]
        return changed

    def _fold(self, op: Op, d):
        """(Called for ops that _name_info finds foldable, without regions, with results.)"""
        consts = []
        for v in op.operands:
            p = getattr(v, "op", None)
            if p is None or p.name != "tg.constant":
                return None
            consts.append(p.attrs["value"])
        for r in op.results:
            n = num_elements(r.type.shape)
            if n is None or n > self.max_fold_elements:
                return None
        attrs = semantic_attrs(op)
        for k in d.dim_attrs:
            if _has_names(attrs.get(k)):
                return None
        try:
            with np.errstate(all="ignore"):
                out = d.numpy(*consts, **attrs)
        except Exception:
            return None  # e.g. an index out of range: leave it to fail at run time
        if len(op.results) == 1:
            out = (out,)
        b = OpBuilder(loc=op.loc)
        b.set_insertion_before(op)
        return [
            b.op("tg.constant", value=np.asarray(v, dtype=r.type.dtype.np))
            for r, v in zip(op.results, out)
        ]


class _CountingBuilder(OpBuilder):
    """The patterns' builder, counting the ops they insert (kept or not)."""

    inserted = 0

    def insert(self, op: Op) -> Op:
        self.inserted += 1
        return super().insert(op)


def _name_info(name: str):
    """What a sweep needs to know of an op name, looked up once per name: (OpDef, PURE,
    whether _fold may apply, the canonical patterns); None for an unknown op."""
    d = lookup(name)
    if d is None:
        return None
    pure = PURE in d.traits
    foldable = pure and d.numpy is not None and name not in ("tg.read", "tg.grad", "tg.scan")
    return d, pure, foldable, d.canonical


def _has_names(v) -> bool:
    if isinstance(v, tuple):
        return any(_has_names(x) for x in v)
    return isinstance(v, str)
