"""fuse-elementwise: group chains of elementwise ops of one shape, with the
scalar constants they use and a trailing reduction where legal, into one
tg.fused op (one loop nest in the backends, no temporaries).

    %a = tg.mul %x, %w : f32[N, 10]              %l = tg.fused %x, %w, %b {shape = ["N", 10], reduce = none} : f32[N, 10] ({
    %b2 = tg.add %a, %b : f32[N, 10]     ->      ^bb0(%0: f32, %1: f32, %2: f32):
    %l = tg.tanh %b2 : f32[N, 10]                  %3 = tg.mul %0, %1 : f32
                                                   %4 = tg.add %3, %2 : f32
                                                   %5 = tg.tanh %4 : f32
                                                   tg.yield %5
                                                 })

Rules:
- An elementwise op joins the group of an operand's producer when both
  compute the same shape (a smaller producer broadcast into a bigger
  consumer would be recomputed per element), and no
  op outside the group placed before it uses a group value (the fused op
  sits where the group's last op was: such a user, or an operand of the op
  that depends on the group through it, would make a cycle).
- The one exception: a group of a smaller shape that broadcasts to the op's,
  of at most MAX_BROADCAST_OPS cheap arithmetic ops (CHEAP_BROADCAST: add,
  mul, ..., no division, no transcendental) whose values only the op (and
  the group itself) reads, joins the op's group and is recomputed at each
  element: a few cycles per element against a loop nest of its own that
  writes a temporary the op reads back (`x - mean(x, axis=1, keepdims=true)`
  scales the row sums inside the subtraction's loop). LLVM hoists what does
  not vary in the inner loop.
- Values of the group used outside it become extra results.
- A tg.sum/mean/max/min over the value of a float group's last op joins as
  the group's `reduce` (the first such, when there are several) if every
  other user of a group value comes after it: the fused op takes the
  reduction's place, and those values become its other results, stored by
  the reduction's loop (`t = tanh(x)` with `sum(t, axis=1)`: one loop nest).
  With such other results, only a reduction of the innermost axes (all, or
  the last k) joins: a column sum's loop is serial over the rows, and the
  map would lose its parallel axes.
- When an op has joined (or started) a group, the groups of its other
  operands join it as well if no op outside them uses their values before
  it (same shape, within MAX_FUSED_OPS), so independent chains that meet in
  one op become one loop nest.
- Groups of one elementwise op without a reduction stay as they are.
- A group stops growing at MAX_FUSED_OPS ops (irc/ops/fused.py: loop bodies
  that big make LLVM super-linear); the next op starts a new group.
Imports only irc.ir and irc.ops.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from functools import lru_cache

from irc.ir.core import Block, Module, Op, Region, append_new_op, freeze_attr
from irc.ir.types import TensorType, broadcast_shapes
from irc.ops.common import norm_axes
from irc.ops.fused import MAX_FUSED_OPS
from irc.ops.registry import ELEMENTWISE, lookup
from irc.passes.pass_manager import Pass, register

REDUCE_OPS = {"tg.sum": "sum", "tg.mean": "mean", "tg.max": "max", "tg.min": "min"}


def is_elementwise(op: Op) -> bool:
    d = lookup(op.name)
    return d is not None and ELEMENTWISE in d.traits and not op.regions and len(op.results) == 1


def is_scalar_constant(op: Op) -> bool:
    return op.name == "tg.constant" and op.results[0].type.rank == 0


@register
@dataclass
class FuseElementwise(Pass):
    name = "fuse-elementwise"
    summary = "fuse chains of elementwise ops (and a trailing reduction) into tg.fused"

    def run(self, module: Module) -> bool:
        changed = False
        blocks: list = []
        _blocks(module, blocks)
        for block in blocks:
            changed |= fuse_block(block)
        return changed


def _blocks(op: Op, out: list) -> None:
    """The blocks nested in op's regions, in walk order, tg.fused bodies left out
    (a walk of the blocks alone: a long function's ops are not yielded one by one)."""
    for r in op.regions:
        for b in r.blocks:
            out.append(b)
    for r in op.regions:
        for b in r.blocks:
            for inner in b.ops:
                if inner.regions and inner.name != "tg.fused":
                    _blocks(inner, out)


class _Group:
    """A growing fusion group. Its members are appended in block order, so the
    first is the earliest. `users` is a heap of (position, op) of the
    block-level users of member values (users that later join the group are
    skipped lazily), so each grouping test is amortised O(log n) and fusing a
    long function stays near-linear."""

    __slots__ = ("ops", "members", "users", "shape")

    def __init__(self, op: Op, position: dict, block: Block):
        self.shape = op.results[0].type.shape  # (the first op's: every member's)
        self.ops = [op]
        self.members = {op}
        self.users: list = []
        self._add_users(op, position, block)

    def add(self, op: Op, position: dict, block: Block):
        self.ops.append(op)
        self.members.add(op)
        self._add_users(op, position, block)

    def _add_users(self, op: Op, position: dict, block: Block):
        users = self.users
        for u, _ in op.results[0].uses:
            if u.parent is not block:
                while u is not None and u.parent is not block:
                    u = u.parent_op()
                if u is None:
                    continue
            heapq.heappush(users, (position[u], id(u), u))

    def absorb(self, other: "_Group", position: dict) -> None:
        """Take in the members of `other` (which then is empty), keeping block order."""
        self.ops = sorted(self.ops + other.ops, key=position.__getitem__)
        self.members |= other.members
        for entry in other.users:
            heapq.heappush(self.users, entry)
        other.ops, other.members, other.users = [], set(), []

    def only_used_by(self, group: "_Group", op: Op, position: dict) -> bool:
        """Whether every user of this group's values placed before `op` is in
        this group or in `group`: then this group may be fused into `group`
        at op's place."""
        p = position[op]
        return all(
            pos >= p or u in self.members or u in group.members for pos, _, u in self.users
        )

    def used_before(self, op: Op, position: dict) -> bool:
        """Whether an op outside the group, placed before `op`, uses a group value:
        the fused op replaces the group at its last op, after that user."""
        while self.users and self.users[0][2] in self.members:
            heapq.heappop(self.users)
        return bool(self.users) and self.users[0][0] < position[op]


def fuse_block(block: Block) -> bool:
    group_of: dict = {}  # op -> _Group
    groups: list = []  # in creation order
    position = {op: i for i, op in enumerate(block.ops)}
    elementwise: dict = {}  # op name -> whether ELEMENTWISE (one registry look-up per name)
    for op in block.ops:
        ew = elementwise.get(op.name)
        if ew is None:
            d = lookup(op.name)
            ew = elementwise[op.name] = d is not None and ELEMENTWISE in d.traits
        if not ew or op.regions or len(op.results) != 1:  # (is_elementwise)
            continue
        shape = op.results[0].type.shape
        target = None
        operands = op.operands
        for v in operands:
            # (group_of holds this block's ops only; None for a block argument's None)
            g = group_of.get(getattr(v, "op", None))
            if g is None or g.shape != shape:
                continue
            if len(g.ops) >= MAX_FUSED_OPS:
                continue
            # No outside user of the group before op means no operand of op
            # can depend on the group through an outside op either (that
            # path would start at such a user): the one test covers both.
            if not g.used_before(op, position):
                target = g
                break
        if target is None:
            target = _Group(op, position, block)
            groups.append(target)
        else:
            target.add(op, position, block)
        group_of[op] = target
        # Cheap groups of a smaller shape that only op reads are recomputed in
        # op's group (the exception to the same-shape rule: module docstring).
        for v in operands:
            h = group_of.get(getattr(v, "op", None))
            if (
                h is not None
                and h is not target
                and h.ops
                and h.shape != shape
                and _broadcast_absorbable(h, op, shape, len(target.ops))
            ):
                for m in h.ops:
                    group_of[m] = target
                target.absorb(h, position)
        # The groups of op's other operands join too when nothing outside
        # them uses their values before op: one loop nest instead of one per
        # group (`y_i = tanh(x * c_i) + k_i` summed by `s_i = s_i-1 + y_i`
        # gives one group per 64 statements, not one per statement).
        # (An op of one operand has none: that operand's group is target, or was
        # not joined because a user outside it comes before op, a test
        # only_used_by fails too, or for its shape or size, tested again here.)
        if len(operands) < 2:
            continue
        for v in operands:
            h = group_of.get(getattr(v, "op", None))
            if h is None or h is target or not h.ops or h.shape != shape:
                continue
            if len(target.ops) + len(h.ops) > MAX_FUSED_OPS:
                continue
            if h.only_used_by(target, op, position):
                for m in h.ops:
                    group_of[m] = target
                target.absorb(h, position)
    # Each fused op takes its anchor's place; the block's op list is rebuilt
    # once at the end (erasing op by op would search the list each time).
    placed: dict = {}  # anchor op -> its tg.fused
    dead: set = set()
    broadcasts: set = set()  # (input shape, group shape) pairs build_fused has checked
    for g in groups:
        ops = g.ops
        if not ops:
            continue  # absorbed into another group
        # (_trailing_reduction's first test inline: most groups have none)
        reduce_op = None
        for u, _ in ops[-1].results[0].uses:
            if u.name in REDUCE_OPS:
                reduce_op = _trailing_reduction(ops, g.members, position)
                break
        if len(ops) < 2 and reduce_op is None:
            continue
        fused = build_fused(ops, reduce_op, placed, dead, g.members, broadcasts)
        # (users of a later group's values may now be this fused op: its place)
        position[fused] = position[reduce_op if reduce_op is not None else ops[-1]]
    if not placed:
        return False
    new_ops = []
    for op in block.ops:
        if op in dead:
            if op.parent is block:  # (a group's op moved into its fused op's body is not)
                op.parent = None
        else:
            new_ops.append(op)
        fused = placed.get(op)
        if fused is not None:
            fused.parent = block
            new_ops.append(fused)
    block.ops[:] = new_ops
    return True


# Elementwise ops cheap enough to compute once per element of a consumer they are
# broadcast into (a few cycles, no call), rather than in a loop nest of their own
# that writes a temporary the consumer reads back.
CHEAP_BROADCAST = frozenset((
    "tg.add", "tg.sub", "tg.mul", "tg.neg", "tg.abs", "tg.maximum", "tg.minimum",
    "tg.relu", "tg.square", "tg.cast",
))
MAX_BROADCAST_OPS = 4  # ops of such a group recomputed per element of the consumer


def _broadcast_absorbable(h, op, shape, n_target) -> bool:
    """Whether group `h`, of a smaller shape than `shape`, may be recomputed in
    `op`'s group at each of its elements: a few cheap ops whose values only
    `op` reads (and each other), of a shape that broadcasts to `shape`."""
    ops = h.ops
    if len(ops) > MAX_BROADCAST_OPS or n_target + len(ops) > MAX_FUSED_OPS:
        return False
    hs = h.shape
    k = len(shape) - len(hs)
    if k < 0 or any(d != 1 and d != shape[k + i] for i, d in enumerate(hs)):
        return False
    members = h.members
    for m in ops:
        if m.name not in CHEAP_BROADCAST:
            return False
        for u, _ in m.results[0].uses:
            if u is not op and u not in members:
                return False
    return True


def _trailing_reduction(ops: list, members: set, position: dict):
    """The reduction that may join the group `ops` (members: the set of them;
    position: op -> its index in the block): the first tg.sum/mean/max/min of
    the last op's value. The fused op takes the reduction's place, so every
    other user of a group value (those values become the fused op's other
    results) must come after it."""
    last = ops[-1]
    r = last.results[0]
    if not r.type.dtype.is_float:
        return None
    block = last.parent
    user = None
    for u, _ in r.uses:
        if u.name in REDUCE_OPS and u.parent is block and (
            user is None or position[u] < position[user]
        ):
            user = u
    if user is None or user.results[0].type.dtype != r.type.dtype:
        return None
    at = position[user]
    others = False  # whether the fused op will have other results
    for op in ops:
        for u, _ in op.results[0].uses:
            if u is not user and u not in members:
                # (a user nested in a later op's region has no position: refused)
                if position.get(u, -1) <= at:
                    return None
                others = True
    if others and not _reduces_inner_axes(user, len(r.type.shape)):
        return None
    return user


def _reduces_inner_axes(reduce_op: Op, rank: int) -> bool:
    """Whether reduce_op reduces the innermost axes (all, or the last k): then its
    loop nest keeps the map's parallel axes outermost (rows, or a reduce kernel
    cut into chunks), and storing the map's values there costs no parallelism.
    A column sum's loop runs over the rows in order, one work-item per column:
    the map stays a loop nest of its own, parallel over every element."""
    axis = reduce_op.attrs.get("axis")
    return _inner_axes(tuple(axis) if isinstance(axis, list) else axis, rank)


@lru_cache(maxsize=256)
def _inner_axes(axis, rank: int) -> bool:
    axes = norm_axes(axis, rank)
    return axes == tuple(range(rank - len(axes), rank))  # (norm_axes sorts them)


_SCALAR_TYPES: dict = {}  # dtype name -> its rank-0 type (types are immutable: shared)


def _scalar_type(dtype) -> TensorType:
    # (keyed by the name, a str whose hash is kept, not by the DType; types compare
    # and print by their dtype's name)
    t = _SCALAR_TYPES.get(dtype.name)
    if t is None:
        t = _SCALAR_TYPES[dtype.name] = TensorType(dtype, ())
    return t


def build_fused(
    ops: list,
    reduce_op,
    placed: dict,
    dead: set,
    members: set | None = None,
    broadcasts: set | None = None,
) -> Op:
    """The tg.fused op of a group (and its reduction), with every use of the
    group's results redirected to it. It is not inserted: placed[anchor] = it,
    and the group's ops, left without operands, are added to `dead`; the caller
    puts it in the anchor's place and drops the dead ops from the block.
    members: the set of `ops`, if the caller has it; broadcasts: the (input
    shape, group shape) pairs checked before, skipped (broadcast_shapes answers
    from the two shapes alone, or, under a unifier, the same once it has
    passed: unification only adds equalities)."""
    if members is None:
        members = set(ops)
    shape = ops[-1].results[0].type.shape  # (the anchor's: an absorbed broadcast member's may be smaller)
    inputs: dict = {}  # value -> None: an ordered set (a list's `in` is O(n) per operand)
    consts: dict = {}
    for op in ops:
        for v in op.operands:
            p = getattr(v, "op", None)
            if p is not None:
                if p in members:
                    continue
                if p.name == "tg.constant" and not p.results[0].type.shape:  # (is_scalar_constant)
                    consts[v] = None
                    continue
            inputs[v] = None
    inputs = list(inputs)
    # Results: values used outside the group (in block order); with a reduction,
    # the reduced value first (the fused op's result 0), then those (its others).
    if reduce_op is not None:
        # (the reduction's operand: no use from outside once the reduction is gone)
        reduce_op.drop_all_references()
        outs = [ops[-1].results[0]]
    else:
        outs = []
    for op in ops:
        r = op.results[0]
        for u, _ in r.uses:
            if u not in members:
                outs.append(r)
                break
    scalar_type = _scalar_type

    attrs = {"shape": tuple(shape), "reduce": None}
    if reduce_op is not None:
        attrs.update(
            reduce=REDUCE_OPS[reduce_op.name],
            axis=reduce_op.attrs.get("axis"),
            keepdims=bool(reduce_op.attrs.get("keepdims", False)),
        )
        # (the reduction's own type: the same dtype, _trailing_reduction checked,
        # and its operand is the group's last value, of the group's shape)
        res_types = [reduce_op.results[0].type] + [v.type for v in outs[1:]]
        anchor, replaced = reduce_op, [reduce_op.results[0], *outs[1:]]
    else:
        res_types = [v.type for v in outs]
        anchor, replaced = ops[-1], outs
    for v in inputs:
        vs = v.type.shape
        if vs and vs != shape:
            if broadcasts is None or (vs, shape) not in broadcasts:
                broadcast_shapes(vs, shape)  # checked when grouping; asserts the invariant
                if broadcasts is not None:
                    broadcasts.add((vs, shape))
    # The group's ops move into the body (a new op each cost as much as the rest of
    # the pass): their operands are dropped now, so that their results keep only
    # the uses from outside the group, redirected to the fused op's results, and
    # set again below in op order (the use lists a fresh copy of each would get).
    operands = [op.operands for op in ops]
    for op in ops:
        op.drop_operands()
    body = Block([scalar_type(v.type.dtype) for v in inputs])
    fused = Op(
        "tg.fused",
        inputs,
        res_types,
        None,
        [Region([body])],
        anchor.loc,
        [v.name_hint for v in replaced],
    )
    fused.attrs = attrs  # (plain values and tuples of them, or the reduction's own: frozen)
    for old, new in zip(replaced, fused.results):
        old.replace_all_uses_with(new)
    if reduce_op is not None:
        if reduce_op.results[0].uses:
            raise ValueError(f"erasing {reduce_op.name} whose result is still used")
        dead.add(reduce_op)
    mapping = dict(zip(inputs, body.args))
    body_ops = body.ops
    for c in consts:
        # c.op.clone(mapping) and body.append of the copy, for a scalar constant
        # (no operands, no regions, one result) through append_new_op: one op per
        # constant per group, the commonest op these bodies hold
        cop = c.op
        copy = append_new_op(
            body, cop.name, [], [c.type], {k: freeze_attr(v) for k, v in cop.attrs.items()},
            cop.loc,
        ).results[0]
        copy.name_hint = c.name_hint
        mapping[c] = copy
    get = mapping.get
    for op, vals in zip(ops, operands):
        r = op.results[0]
        if r.uses:
            raise ValueError(f"moving {op.name} whose result is still used outside the group")
        vals = [get(v, v) for v in vals]  # (a member's result stays itself)
        i = 0
        for v in vals:
            v.uses[(op, i)] = None
            i += 1
        op.operands = vals
        r.type = scalar_type(r.type.dtype)
        dead.add(op)  # leaves the block (its parent is the body's by then)
        op.parent = body  # (Block.append, spelled out)
        body_ops.append(op)
    append_new_op(body, "tg.yield", list(outs), [], {}, ops[-1].loc)
    placed[anchor] = fused
    return fused
