"""Builder: creates ops at an insertion point, carrying a current location.

Op-specific construction with type inference lives in irc.ops (OpBuilder);
this class only knows the generic shape of an op. Imports only irc.ir.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterable, Optional

from irc.ir.core import Block, Loc, Op, Region, Value
from irc.ir.types import TensorType


class Builder:
    def __init__(
        self, block: Optional[Block] = None, pos: Optional[int] = None, loc: Optional[Loc] = None
    ):
        self.block = block
        self.pos = pos  # insertion index in block; None: append at the end
        # insert before this op (found when inserting: passes set a builder
        # before every op they visit but insert before few of them)
        self.anchor: Optional[Op] = None
        self.loc = loc

    # -- insertion point ---------------------------------------------------------
    def set_insertion_end(self, block: Block) -> None:
        self.block, self.pos, self.anchor = block, None, None

    def set_insertion_before(self, op: Op) -> None:
        self.block, self.pos, self.anchor = op.parent, None, op

    def set_insertion_after(self, op: Op) -> None:
        self.block, self.pos, self.anchor = op.parent, op.parent.index_of(op) + 1, None

    @contextmanager
    def at_end(self, block: Block):
        saved = (self.block, self.pos, self.anchor)
        self.set_insertion_end(block)
        try:
            yield self
        finally:
            self.block, self.pos, self.anchor = saved

    def at_loc(self, loc: Optional[Loc]) -> "_AtLoc":
        """`with b.at_loc(loc):` ops created inside get `loc` (None: keep the current)."""
        return _AtLoc(self, loc)

    # -- creation ----------------------------------------------------------------
    def insert(self, op: Op) -> Op:
        block = self.block
        if block is None:
            raise ValueError("builder has no insertion block")
        if self.anchor is None and self.pos is None and op.parent is None:
            # (Block.append written out: how the front end adds every op of a function)
            op.parent = block
            block.ops.append(op)
            return op
        if self.anchor is not None:
            self.block.insert_before(self.anchor, op)
        elif self.pos is None:
            self.block.append(op)
        else:
            self.block.insert(self.pos, op)
            self.pos += 1
        return op

    def create(
        self,
        name: str,
        operands: Iterable[Value] = (),
        result_types: Iterable[TensorType] = (),
        attrs: Optional[dict] = None,
        regions: Iterable[Region] = (),
        loc: Optional[Loc] = None,
        result_names=None,
    ) -> Op:
        op = Op(name, operands, result_types, attrs, regions, loc or self.loc, result_names)
        return self.insert(op)


class _AtLoc:
    """The context of Builder.at_loc: a class, not a @contextmanager generator,
    since the front end enters one per expression (a generator-based context
    costs several times as much, felt over a 20,000-statement function)."""

    __slots__ = ("b", "loc", "saved")

    def __init__(self, b: Builder, loc: Optional[Loc]):
        self.b, self.loc = b, loc

    def __enter__(self) -> Builder:
        self.saved = self.b.loc
        if self.loc is not None:
            self.b.loc = self.loc
        return self.b

    def __exit__(self, *exc) -> None:
        self.b.loc = self.saved
