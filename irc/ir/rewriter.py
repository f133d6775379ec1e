"""Rewriter: the mutations passes make, in one place (replace, erase, insert).

Keeps use lists consistent and records whether anything changed, which the
pass manager uses for --print-ir-after-change. Imports only irc.ir.
"""

from __future__ import annotations

from typing import Iterable

from irc.ir.builder import Builder
from irc.ir.core import Op, Value


class Rewriter(Builder):
    def __init__(self, loc=None):
        super().__init__(None, None, loc)
        self.changed = False

    def replace_all_uses(self, old: Value, new: Value) -> None:
        if old is not new and old.uses:
            old.replace_all_uses_with(new)
            self.changed = True

    def replace_op(self, op: Op, new_values: Iterable[Value]) -> None:
        """Replace every result of `op` by `new_values`, then erase `op`."""
        new_values = list(new_values)
        if len(new_values) != len(op.results):
            raise ValueError(
                f"replacing {op.name}: {len(op.results)} results, {len(new_values)} values"
            )
        for r, v in zip(op.results, new_values):
            r.replace_all_uses_with(v)
        self.erase_op(op)

    def erase_op(self, op: Op) -> None:
        op.erase()
        self.changed = True

    def insert(self, op: Op) -> Op:
        self.changed = True
        return super().insert(op)
