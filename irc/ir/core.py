"""Core IR data structures: Loc, Value (with use lists), Op, Block, Region, Module.

The IR is MLIR-shaped: an Op has operands (Values), results (OpResults),
attributes (plain Python values, see `attrs` below), regions (lists of Blocks)
and a source location. Blocks have typed arguments. A Module is an op with one
region holding symbol ops (`func.func`, `tg.global`).

Attribute values are: int, float, bool, str, None, SymbolRef, TensorType,
DType, numpy.ndarray (dense constants) and tuples of these. Lists are stored
as tuples so attributes hash and compare by value (CSE relies on that).

Must not import anything else of the project except irc.ir.types.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator, Optional

import numpy as np

from irc.ir.types import DType, TensorType


@dataclass(frozen=True, init=False)
class Loc:
    """A source position: file, 1-based line and column."""

    file: str
    line: int
    col: int

    def __init__(self, file: str, line: int, col: int):
        # (the fields stored straight into the instance dict: a frozen dataclass's
        # own __init__ goes through object.__setattr__ per field, twice the time,
        # and the parser makes a Loc per node of a long function)
        d = self.__dict__
        d["file"] = file
        d["line"] = line
        d["col"] = col

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}"


@dataclass(frozen=True)
class SymbolRef:
    """A reference to a module-level symbol, printed `@name`."""

    name: str

    def __str__(self) -> str:
        return "@" + self.name


class UseList(dict):
    """The (op, operand index) pairs that read a value, in the order they were
    added. A list in every way the passes use it (iteration, len, truth,
    indexing, list(...)), but adding and removing a use is O(1): a value read
    by thousands of ops (an argument of a long function) would make erasing
    those ops quadratic with list.remove. It is the dict of those pairs
    itself (keys in insertion order, values None), not a wrapper around one:
    every value of the IR has a use list, and one object per value less is
    felt when a long function has hundreds of thousands of them."""

    __slots__ = ()

    def append(self, use) -> None:
        self[use] = None

    def remove(self, use) -> None:
        del self[use]

    def __getitem__(self, i):
        if i == 0 and self:
            return next(iter(self))
        return list(self)[i]

    def __eq__(self, other):
        return list(self) == list(other)

    def __ne__(self, other):
        return not self == other

    __hash__ = None

    def count(self, use) -> int:
        return 1 if use in self else 0

    def __repr__(self):
        return f"UseList({list(self)!r})"


class Value:
    """An SSA value. `uses` lists (op, operand index) pairs that read it."""

    __slots__ = ("type", "uses", "name_hint")

    def __init__(self, type: TensorType, name_hint: Optional[str] = None):
        self.type = type
        self.uses = UseList()
        self.name_hint = name_hint

    @property
    def owner(self):
        raise NotImplementedError  # defined by subclasses

    def replace_all_uses_with(self, new: "Value") -> None:
        if new is self:
            return
        uses = self.uses
        if not uses:
            return
        # (op.set_operand per use, written out: the uses move over in order)
        new_uses = new.uses
        for use in list(uses):
            use[0].operands[use[1]] = new
            new_uses[use] = None
        uses.clear()

    def has_uses(self) -> bool:
        return bool(self.uses)


class OpResult(Value):
    __slots__ = ("op", "index")

    def __init__(self, op: "Op", index: int, type: TensorType, name_hint=None):
        # (Value.__init__ spelled out: an op's results are made by the million.)
        self.type = type
        self.uses = UseList()
        self.name_hint = name_hint
        self.op = op
        self.index = index

    @property
    def owner(self):
        return self.op

    def __repr__(self):
        return f"<OpResult {self.op.name}#{self.index} : {self.type}>"


class BlockArgument(Value):
    __slots__ = ("block", "index")

    def __init__(self, block: "Block", index: int, type: TensorType, name_hint=None):
        # (Value.__init__ spelled out, as OpResult's: a loop body's index is one.)
        self.type = type
        self.uses = UseList()
        self.name_hint = name_hint
        self.block = block
        self.index = index

    @property
    def owner(self):
        return self.block

    def __repr__(self):
        return f"<BlockArgument #{self.index} : {self.type}>"


# Attribute values that are immutable as they are (exact types: a NumPy
# scalar, a float subclass, is turned into a Python number below).
_PLAIN_ATTR_TYPES = frozenset({int, float, str, bool, type(None), SymbolRef, TensorType, DType})


def freeze_attr(v):
    """Normalise an attribute value so it hashes and compares by value."""
    if type(v) in _PLAIN_ATTR_TYPES:
        return v
    if isinstance(v, tuple):
        frozen = tuple(freeze_attr(x) for x in v)
        # The same tuple when nothing changed: cloning an op copies no attributes.
        return v if all(a is b for a, b in zip(frozen, v)) else frozen
    if isinstance(v, list):
        return tuple(freeze_attr(x) for x in v)
    if isinstance(v, np.ndarray):
        if not v.flags.writeable and v.flags.owndata:
            return v  # frozen here before (a read-only copy): shared, not copied again
        v = v.copy()
        v.setflags(write=False)
        return v
    if isinstance(v, np.generic):
        return v.item()
    return v


def attr_key(v):
    """A hashable key for an attribute value (arrays by dtype, shape and bytes)."""
    if isinstance(v, np.ndarray):
        return ("ndarray", v.dtype.str, v.shape, v.tobytes())
    if isinstance(v, tuple):
        return tuple(attr_key(x) for x in v)
    if isinstance(v, float):
        # Distinguish 0.0 from -0.0 and keep NaN equal to itself.
        return ("float", v.hex())
    if isinstance(v, bool):
        return ("bool", v)
    return v


_NO_REGIONS = ()  # the `regions` of every op without regions (see Op.__init__)
_new_result = object.__new__


def _one_result(op: "Op", type: TensorType) -> list:
    """The results list of an op with one unnamed result (OpResult.__init__
    written out: ops are made by the hundred thousand for a long function)."""
    r = _new_result(OpResult)
    r.type = type
    r.uses = UseList()
    r.name_hint = None
    r.op = op
    r.index = 0
    return [r]


class Op:
    """An operation. Create through `Builder.create` or `Op(...)` then insert."""

    __slots__ = ("name", "operands", "results", "attrs", "regions", "loc", "parent")

    def __init__(
        self,
        name: str,
        operands: Iterable[Value] = (),
        result_types: Iterable[TensorType] = (),
        attrs: Optional[dict] = None,
        regions: Iterable["Region"] = (),
        loc: Optional[Loc] = None,
        result_names: Optional[Iterable[Optional[str]]] = None,
    ):
        # Ops are created by the hundred thousand for a long function: the
        # common case (plain attribute values, no regions, one result) takes
        # no comprehension, no method call and no container it does not need.
        self.name = name
        if attrs:
            # (freeze_attr's first test inline: most attribute values are plain)
            self.attrs = {
                k: v if type(v) in _PLAIN_ATTR_TYPES else freeze_attr(v)
                for k, v in attrs.items()
            }
        else:
            self.attrs = {}
        self.loc = loc
        self.parent = None
        if type(result_types) is not list:
            result_types = list(result_types)
        if not result_types:
            self.results = []
        elif len(result_types) == 1 and result_names is None:
            self.results = _one_result(self, result_types[0])
        else:
            names = () if result_names is None else list(result_names)
            self.results = [
                OpResult(self, i, t, names[i] if i < len(names) else None)
                for i, t in enumerate(result_types)
            ]
        # Ops without regions share one empty tuple (add_region makes a list):
        # one container less per op for the cycle collector to walk.
        self.regions = _NO_REGIONS
        if regions:
            for r in regions:
                self.add_region(r)
        # add_operand inlined
        self.operands = operands = list(operands)
        i = 0
        for v in operands:
            if not isinstance(v, Value):
                raise TypeError(f"operand of {name} must be a Value, got {v!r}")
            v.uses[(self, i)] = None
            i += 1

    # -- operands -------------------------------------------------------------
    def add_operand(self, v: Value) -> None:
        if not isinstance(v, Value):
            raise TypeError(f"operand of {self.name} must be a Value, got {v!r}")
        v.uses[(self, len(self.operands))] = None
        self.operands.append(v)

    def set_operand(self, idx: int, v: Value) -> None:
        old = self.operands[idx]
        del old.uses[(self, idx)]  # (UseList.remove and .append, written out)
        self.operands[idx] = v
        v.uses[(self, idx)] = None

    def set_operands(self, values: Iterable[Value]) -> None:
        self.drop_operands()
        for v in values:
            self.add_operand(v)

    def drop_operands(self) -> None:
        i = 0
        for v in self.operands:
            del v.uses[(self, i)]  # (UseList.remove, written out)
            i += 1
        self.operands = []

    # -- regions --------------------------------------------------------------
    def add_region(self, r: "Region") -> "Region":
        r.parent = self
        if self.regions is _NO_REGIONS:
            self.regions = [r]
        else:
            self.regions.append(r)
        return r

    # -- convenience ------------------------------------------------------------
    @property
    def result(self) -> OpResult:
        if len(self.results) != 1:
            raise ValueError(f"{self.name} has {len(self.results)} results, not 1")
        return self.results[0]

    def attr(self, key, default=None):
        return self.attrs.get(key, default)

    def parent_op(self) -> Optional["Op"]:
        if self.parent is None or self.parent.parent is None:
            return None
        return self.parent.parent.parent

    def walk(self) -> Iterator["Op"]:
        """This op and every op nested in its regions, in pre-order."""
        yield self
        if not self.regions:
            return
        # One generator per op with regions, on a stack, instead of one per
        # nesting level that every op of a deep loop nest is yielded through.
        # As the recursive walk: an op's regions are looked at once the op has
        # been yielded, and a block's ops when the walk reaches the block.
        stack = [_nested_ops(self)]
        while stack:
            for op in stack[-1]:
                yield op
                if op.regions:
                    stack.append(_nested_ops(op))
                    break
            else:
                stack.pop()

    def is_ancestor_of(self, other: "Op") -> bool:
        p = other
        while p is not None:
            if p is self:
                return True
            p = p.parent_op()
        return False

    def erase(self) -> None:
        """Remove from its block; the results must have no uses left."""
        for r in self.results:
            if r.uses:
                raise ValueError(f"erasing {self.name} whose result is still used")
        self.drop_all_references()
        if self.parent is not None:
            self.parent.remove(self)
        self.results = ERASED_RESULTS

    def drop_all_references(self) -> None:
        """Drop the operands of this op and of everything nested in it."""
        self.drop_operands()
        for r in self.regions:
            for b in r.blocks:
                for op in b.ops:
                    op.drop_all_references()

    def clone(self, mapping: Optional[dict] = None) -> "Op":
        """A deep copy; operands are remapped through `mapping` (updated in place)."""
        mapping = {} if mapping is None else mapping
        # What Op(...) would do with this op's fields, written out: the
        # pipeline clones every op of a module, and the operands, result types
        # and attributes are known good (the attributes are copied, not shared,
        # and frozen as Op.__init__ does, for values set on `attrs` by hand).
        new = _new_result(Op)
        new.name = self.name
        new.attrs = {
            k: v if type(v) in _PLAIN_ATTR_TYPES else freeze_attr(v)
            for k, v in self.attrs.items()
        }
        new.loc = self.loc
        new.parent = None
        results = []
        for old_r in self.results:
            r = _new_result(OpResult)
            r.type = old_r.type
            r.uses = UseList()
            r.name_hint = old_r.name_hint
            r.op = new
            r.index = len(results)
            results.append(r)
        new.results = results
        new.regions = _NO_REGIONS
        get = mapping.get
        new.operands = operands = [get(v, v) for v in self.operands]
        i = 0
        for v in operands:
            v.uses[(new, i)] = None
            i += 1
        for old_r, r in zip(self.results, results):
            mapping[old_r] = r
        for r in self.regions:
            new.add_region(r.clone(mapping))
        return new

    def __repr__(self):
        return f"<Op {self.name} ({len(self.operands)} operands, {len(self.results)} results)>"


def append_new_op(block: "Block", name: str, operands: list, result_types: list, attrs: dict, loc):
    """`block.append(Op(name, operands, result_types, attrs, (), loc))` for a
    builder whose fields are known good, with its checks and copies left out:
    `operands` a list of Values and `result_types` a list of types, both the
    op's own from now on; `attrs` a dict of frozen values (freeze_attr), the
    op's own too. Regions are added by the caller (add_region). The loop-IR
    emitter (irc/ops/lowering/emit.py) makes ops this way: hundreds of
    thousands of them for a long function. Keep in step with Op.__init__."""
    op = _new_result(Op)
    op.name = name
    op.attrs = attrs
    op.loc = loc
    op.parent = block
    if not result_types:
        op.results = []
    elif len(result_types) == 1:
        op.results = _one_result(op, result_types[0])
    else:
        op.results = [OpResult(op, i, t) for i, t in enumerate(result_types)]
    op.regions = _NO_REGIONS
    op.operands = operands
    i = 0
    for v in operands:
        v.uses[(op, i)] = None
        i += 1
    block.ops.append(op)
    return op


def _nested_ops(op: Op) -> Iterator[Op]:
    """The ops of `op`'s blocks (not deeper), each block's as it was when reached."""
    for r in op.regions:
        for b in r.blocks:
            yield from list(b.ops)


class Block:
    __slots__ = ("args", "ops", "parent", "_hint")

    def __init__(self, arg_types: Iterable[TensorType] = (), arg_names=None):
        if arg_types:
            names = list(arg_names) if arg_names is not None else []
            self.args = [
                BlockArgument(self, i, t, names[i] if i < len(names) else None)
                for i, t in enumerate(arg_types)
            ]
        else:
            self.args = []
        self.ops: list = []
        self.parent: Optional[Region] = None
        # Where index_of last found an op: passes erase and insert in walk
        # order, so the next op searched for is nearby. Searching from here
        # keeps a pass that erases thousands of ops of a long block linear.
        self._hint = 0

    def add_arg(self, type: TensorType, name: Optional[str] = None) -> BlockArgument:
        a = BlockArgument(self, len(self.args), type, name)
        self.args.append(a)
        return a

    def erase_arg(self, index: int) -> None:
        a = self.args[index]
        if a.uses:
            raise ValueError("erasing a block argument that is still used")
        del self.args[index]
        for i, x in enumerate(self.args):
            x.index = i

    def append(self, op: Op) -> Op:
        if op.parent is not None:  # (insert at the end, written out)
            raise ValueError(f"{op.name} is already in a block")
        op.parent = self
        self.ops.append(op)
        return op

    def insert(self, index: int, op: Op) -> Op:
        if op.parent is not None:
            raise ValueError(f"{op.name} is already in a block")
        op.parent = self
        self.ops.insert(index, op)
        return op

    def insert_before(self, anchor: Op, op: Op) -> Op:
        return self.insert(self.index_of(anchor), op)

    def insert_after(self, anchor: Op, op: Op) -> Op:
        return self.insert(self.index_of(anchor) + 1, op)

    def index_of(self, op: Op) -> int:
        # list.index compares by identity first (Op defines no __eq__), in C.
        ops = self.ops
        lo = max(0, min(self._hint, len(ops)) - 16)
        try:
            i = ops.index(op, lo)
        except ValueError:
            try:
                i = ops.index(op, 0, lo)
            except ValueError:
                raise ValueError(f"{op.name} is not in this block") from None
        self._hint = i
        return i

    def remove(self, op: Op) -> None:
        del self.ops[self.index_of(op)]
        op.parent = None

    @property
    def terminator(self) -> Optional[Op]:
        return self.ops[-1] if self.ops else None

    def parent_op(self) -> Optional[Op]:
        return self.parent.parent if self.parent is not None else None

    def clone(self, mapping: dict) -> "Block":
        nb = Block([a.type for a in self.args], [a.name_hint for a in self.args])
        for a, na in zip(self.args, nb.args):
            mapping[a] = na
        for op in self.ops:
            nb.append(op.clone(mapping))
        return nb


class Region:
    __slots__ = ("blocks", "parent")

    def __init__(self, blocks: Iterable[Block] = ()):
        self.blocks: list = []
        self.parent: Optional[Op] = None
        for b in blocks:
            self.add_block(b)

    def add_block(self, b: Block) -> Block:
        b.parent = self
        self.blocks.append(b)
        return b

    @property
    def block(self) -> Block:
        """The single block of a single-block region."""
        return self.blocks[0]

    def clone(self, mapping: dict) -> "Region":
        return Region([b.clone(mapping) for b in self.blocks])


class Module(Op):
    """`builtin.module`: one region, one block of symbol ops."""

    __slots__ = ()

    def __init__(self, loc: Optional[Loc] = None, attrs: Optional[dict] = None):
        super().__init__("builtin.module", (), (), attrs, [Region([Block()])], loc)

    @property
    def body(self) -> Block:
        return self.regions[0].block

    def symbols(self) -> dict:
        """name -> op for every top-level op with a `sym_name` attribute."""
        return {op.attrs["sym_name"]: op for op in self.body.ops if "sym_name" in op.attrs}

    def lookup(self, name: str) -> Optional[Op]:
        for op in self.body.ops:
            if op.attrs.get("sym_name") == name:
                return op
        return None

    def functions(self) -> list:
        return [op for op in self.body.ops if op.name == "func.func"]

    def clone(self, mapping=None) -> "Module":
        mapping = {} if mapping is None else mapping
        m = Module(self.loc, dict(self.attrs))
        for op in self.body.ops:
            m.body.append(op.clone(mapping))
        return m


# What an erased op's `results` becomes. An op and its results point at each
# other (Op.results, OpResult.owner), so an erased op would be left to Python's
# cycle collector; the passes erase them by the ten thousand in a long function
# (the constants cse merges, the means decompose rewrites), and the collection
# after the compile then walks each. Without its results list the op is freed by
# reference counting, or stays alive as the `owner` of a stale result that
# something still holds. (The passes that erase ops in bulk, without
# Op.erase, set it too.)
ERASED_RESULTS = ()


def dismantle(root: Op) -> None:
    """Break every reference cycle in `root` and the ops nested in it, for IR
    that is gone for good (a lowered function's old body, a compiled loop
    module). Ops, their results, use lists, blocks and regions point at each
    other, so dropped IR would be left to Python's cycle collector, which walks
    each of its objects (a 20,000-statement function's: seconds). Cut, it is
    freed by reference counting once the last outside reference goes. The ops
    are unusable afterwards (operands, results, regions and parent are None)."""
    ops = [root]
    blocks = []
    i = 0
    while i < len(ops):
        op = ops[i]
        i += 1
        if op.regions:
            for r in op.regions:
                blocks += r.blocks
                for b in r.blocks:
                    ops += b.ops
    # Every cycle goes through one of these fields: op -> results -> op; op ->
    # operands -> a value's use list -> (op, index) -> op; block -> args, ops ->
    # block; region -> blocks -> parent. Once they are cut, values, use lists
    # and regions are freed with the ops that held them.
    for b in blocks:
        b.args = b.ops = b.parent = None
    for op in ops:
        op.operands = op.results = op.regions = op.parent = None
