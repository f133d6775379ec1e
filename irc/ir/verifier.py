"""The IR verifier: structural invariants every pass must keep.

Owns `verify(module_or_op, op_check=None)`. It checks, raising a CompileError
located at the offending op:

- parent links, result and block-argument indices, and use lists that match
  the operands exactly (each operand slot is one use, each use is a slot);
- types are TensorTypes whose named dims are canonical dim expressions, and
  attribute values are of the kinds the printer can write;
- dominance: an operand is defined earlier in its block or in an enclosing
  region (single-block, straight-line regions); regions of func.func and
  builtin.module are isolated from above; block arguments and results are not
  used outside their region;
- terminators: a func.func body ends with func.return; a terminator
  (func.return, *.yield, *.return) is the last op of its block;
- symbols: unique `sym_name`s per module; `func.call` (`callee`), `tg.read`
  and `tg.update` (`sym`) refer to an existing func.func / tg.global, with
  matching types for tg.read and tg.update and matching counts for func.call.

Then, for each op, `op_check(op)` if given: irc.ops.registry.verify_op is the
intended one (known op, arity, inferred types); a TypeError_ it raises becomes
a CompileError at the op's loc. Must not import irc.ops or anything of the
project outside irc.ir (irc.ir is the bottom layer).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Callable, Optional

import numpy as np

from irc.ir.core import Op, OpResult, SymbolRef
from irc.ir.dims import parse_dim
from irc.ir.errors import CompileError
from irc.ir.types import DType, TensorType, TypeError_

__all__ = ["ISOLATED_OPS", "verify"]

# Ops whose regions do not see values from outside. The registry's ISOLATED
# trait says the same, but irc.ir cannot read the registry.
ISOLATED_OPS = frozenset({"func.func", "builtin.module"})

_ARRAY_DTYPES = frozenset(
    np.dtype(t) for t in (np.float32, np.float64, np.int32, np.int64, np.bool_)
)


def _is_terminator(name: str) -> bool:
    return name == "func.return" or name.endswith((".yield", ".return"))


def verify(module_or_op: Op, op_check: Optional[Callable] = None) -> None:
    """Raise CompileError for the first broken invariant in `module_or_op`."""
    # The common case, IR that is right, in one walk (_quick_check); anything
    # it does not find right, or cannot decide, is checked again by the walks
    # below, which find the first broken invariant in their order.
    if module_or_op.name in ISOLATED_OPS:
        try:
            if _QuickCheck(module_or_op, op_check).run():
                return
        except Exception:  # (a broken invariant or a failing op_check: the walks say which)
            pass
    v = _Verifier(module_or_op)
    ops = list(module_or_op.walk())  # walked once, for every check below
    v.structure(ops)
    v.dominance(module_or_op)
    v.symbols(ops)
    if op_check is not None:
        for op in ops:
            try:
                op_check(op)
            except TypeError_ as e:
                raise CompileError(f"{op.name}: {e.message}", op.loc) from None


def _err(op: Op, message: str):
    raise CompileError(message, op.loc)


@lru_cache(maxsize=4096)
def _canonical_dim(d: str) -> bool:
    try:
        return parse_dim(d) == d
    except Exception:  # an unparsable dim is simply not canonical
        return False


def _check_type(op: Op, t, what: str) -> None:
    if not isinstance(t, TensorType):
        _err(op, f"{what} of {op.name} has no tensor type ({t!r})")
    for d in t.shape:
        if isinstance(d, str) and not _canonical_dim(d):
            _err(op, f"{what} of {op.name} has type {t} whose dim '{d}' is not in canonical form")


# Attribute values that need no further look (exact types; the rest, subclasses
# included, go through _check_attr).
_PLAIN_ATTRS = frozenset({bool, int, float, str, type(None), SymbolRef, TensorType, DType})


def _check_attr(op: Op, key: str, v) -> None:
    if v is None or isinstance(v, (bool, int, float, str, SymbolRef, TensorType, DType)):
        return
    if isinstance(v, tuple):
        for x in v:
            _check_attr(op, key, x)
        return
    if isinstance(v, np.ndarray):
        if v.dtype not in _ARRAY_DTYPES:
            _err(op, f"attribute '{key}' of {op.name} is an array of unsupported dtype {v.dtype}")
        return
    _err(op, f"attribute '{key}' of {op.name} has a value of unsupported kind {type(v).__name__}")


class _Verifier:
    def __init__(self, root: Op):
        self.root = root
        # Every value defined inside the root's regions (not the root's own
        # results), and the op that defines it, for error messages.
        self.defined: dict = {}
        self.ops: set = set()
        self.symbol_tables: dict = {}
        self.good_shapes: set = set()  # shapes of TensorTypes _check_type passed

    # -- structure and use lists -------------------------------------------------------
    def structure(self, ops: list) -> None:
        """ops: the root and every op nested in it (root.walk())."""
        before = len(self.ops)
        self.ops.update(ops)
        for op in ops:
            self.check_op(op)
        for value, owner in self.defined.items():
            for use_op, _ in value.uses:
                if use_op not in self.ops:
                    _err(
                        owner,
                        f"a value of {owner.name} is used by a {use_op.name} that is "
                        "not in the IR (removed without erase?)",
                    )
        if len(self.ops) - before != len(ops):  # an op listed twice (in one block or two)
            seen = set()
            for op in ops:
                if op in seen:
                    _err(op, f"{op.name} is listed twice in the IR")
                seen.add(op)

    def check_op(self, op: Op) -> None:
        # (Written for speed: it runs for every op of a long function. The
        # checks and their order are those of _check_type, _check_attr,
        # _is_terminator and check_uses, which the rare cases still call.)
        name = op.name
        if not isinstance(name, str) or not name:
            _err(op, f"op has a bad name {op.name!r}")
        good_shapes = self.good_shapes
        defined = self.defined
        not_root = op is not self.root
        for i, r in enumerate(op.results):
            if r.op is not op or r.index != i:
                _err(op, f"result #{i} of {op.name} has a wrong owner or index")
            t = r.type
            if type(t) is not TensorType or type(t.shape) is not tuple or t.shape not in good_shapes:
                _check_type(op, t, f"result #{i}")
                good_shapes.add(t.shape)
            if not_root:
                defined[r] = op
        for i, v in enumerate(op.operands):
            # (a use list is keyed by its (op, index) pairs: an O(1) test)
            if (op, i) not in v.uses:
                _err(op, f"operand #{i} of {op.name} is missing from its value's use list")
        for key, val in op.attrs.items():
            if type(key) is not str:
                if not isinstance(key, str):
                    _err(op, f"attribute name {key!r} of {op.name} is not a string")
            if type(val) not in _PLAIN_ATTRS:
                _check_attr(op, key, val)
        for region in op.regions:
            if region.parent is not op:
                _err(op, f"a region of {op.name} has a wrong parent")
            for block in region.blocks:
                if block.parent is not region:
                    _err(op, f"a block in {op.name} has a wrong parent")
                for i, a in enumerate(block.args):
                    if a.block is not block or a.index != i:
                        _err(op, f"block argument #{i} in {op.name} has a wrong owner or index")
                    _check_type(op, a.type, f"block argument #{i}")
                    defined[a] = op
                last = len(block.ops) - 1
                for j, inner in enumerate(block.ops):
                    if inner.parent is not block:
                        _err(inner, f"{inner.name} has a wrong parent block")
                    if j != last:
                        n = inner.name
                        if n == "func.return" or n.endswith((".yield", ".return")):
                            _err(inner, f"{inner.name} must be the last op of its block")
        # Each use must be the operand slot it names (stale entries after a
        # careless mutation show up here).
        for r in op.results:
            # (A use is listed at most once: the use list is a dict keyed by it.)
            for u_op, u_idx in r.uses:
                operands = u_op.operands
                if not (0 <= u_idx < len(operands)) or operands[u_idx] is not r:
                    self.check_uses(op, r)
        for region in op.regions:
            for block in region.blocks:
                for a in block.args:
                    self.check_uses(op, a)
        if name == "func.func":
            self.check_func(op)
        elif name == "func.return":
            parent = op.parent_op()
            if op.parent is not None and (parent is None or parent.name != "func.func"):
                _err(op, "func.return outside a func.func")

    def check_uses(self, owner: Op, value) -> None:
        # (A use is listed at most once: the use list is a dict keyed by it.)
        for u_op, u_idx in value.uses:
            if not (0 <= u_idx < len(u_op.operands)) or u_op.operands[u_idx] is not value:
                _err(
                    owner,
                    f"a value of {owner.name} has a stale use by {u_op.name} (operand #{u_idx})",
                )

    def check_func(self, op: Op) -> None:
        name = op.attrs.get("sym_name")
        if not isinstance(name, str):
            _err(op, "func.func needs a string sym_name")
        if len(op.regions) != 1 or len(op.regions[0].blocks) != 1:
            _err(op, f"function @{name} must have one region with one block")
        term = op.regions[0].blocks[0].terminator
        if term is None or term.name != "func.return":
            _err(term or op, f"function @{name} does not end with func.return")

    # -- dominance -----------------------------------------------------------------------
    def dominance(self, root: Op) -> None:
        # Values defined outside a non-isolated root are taken as given (a
        # nested op verified on its own); an isolated root sees nothing.
        self.visible: set = set()
        self.walk_regions(root, open_outside=root.name not in ISOLATED_OPS)

    def walk_regions(self, op: Op, open_outside: bool) -> None:
        saved = None
        if op.name in ISOLATED_OPS:
            saved, self.visible = self.visible, set()
            open_outside = False
        for region in op.regions:
            for block in region.blocks:
                added = []
                for a in block.args:
                    self.visible.add(a)
                    added.append(a)
                visible = self.visible  # (the same set after walk_regions returns)
                for inner in block.ops:
                    for i, v in enumerate(inner.operands):
                        if v not in visible:
                            self.not_visible(inner, i, v, open_outside)
                    if inner.regions:
                        self.walk_regions(inner, open_outside)
                    results = inner.results
                    visible.update(results)
                    added += results
                # Straight-line single-block regions: a block's values end with it.
                for v in added:
                    self.visible.discard(v)
        if saved is not None:
            self.visible = saved

    def not_visible(self, op: Op, i: int, v, open_outside: bool) -> None:
        owner = self.defined.get(v)
        what = f"operand #{i} of {op.name}"
        if owner is None:
            if open_outside:
                return
            _err(op, f"{what} is not defined in this function or module")
        if isinstance(v, OpResult):
            # The ancestor of `op` in the defining block, if any, comes first.
            a = op
            while a is not None and a.parent is not owner.parent:
                a = a.parent_op()
            if a is not None and _before(a, owner):
                _err(op, f"{what} is used before it is defined (by {owner.name})")
            _err(op, f"{what} is a result of {owner.name} used outside its scope")
        _err(op, f"{what} is a block argument of {owner.name} used outside its scope")

    # -- symbols ---------------------------------------------------------------------------
    def symbols(self, ops: list) -> None:
        for op in ops:
            if op.name == "builtin.module":
                self.unique_symbols(op)
        for op in ops:
            if op.name in ("func.call", "tg.read", "tg.update"):
                self.check_reference(op)

    def unique_symbols(self, module: Op) -> None:
        seen = {}
        for region in module.regions:
            for block in region.blocks:
                for op in block.ops:
                    name = op.attrs.get("sym_name")
                    if name is None:
                        continue
                    if not isinstance(name, str):
                        _err(op, f"sym_name of {op.name} must be a string")
                    if name in seen:
                        _err(op, f"redefinition of symbol @{name}")
                    seen[name] = op

    def check_reference(self, op: Op) -> None:
        key = "callee" if op.name == "func.call" else "sym"
        ref = op.attrs.get(key)
        if not isinstance(ref, SymbolRef):
            _err(op, f"{op.name} needs a symbol reference attribute '{key}'")
        module = _enclosing_module(op)
        if module is None:
            return  # a detached op verified on its own: nothing to resolve against
        table = self.symbol_tables.get(module)
        if table is None:
            table = self.symbol_tables[module] = {
                sym.attrs["sym_name"]: sym
                for region in module.regions
                for block in region.blocks
                for sym in block.ops
                if isinstance(sym.attrs.get("sym_name"), str)
            }
        target = table.get(ref.name)
        if target is None:
            _err(op, f"{op.name} references unknown symbol {ref}")
        if op.name == "func.call":
            self.check_call(op, target, ref)
            return
        if target.name != "tg.global":
            _err(op, f"{op.name} of {ref}: {ref} is a {target.name}, not a tg.global")
        gtype = target.attrs.get("type")
        if op.name == "tg.read":
            if len(op.results) != 1:
                _err(op, f"tg.read of {ref} must have one result")
            if op.results[0].type != gtype:
                _err(
                    op,
                    f"tg.read of {ref} has type {op.results[0].type} but the global has type {gtype}",
                )
        else:
            if len(op.operands) != 1:
                _err(op, f"tg.update of {ref} must have one operand")
            if op.operands[0].type != gtype:
                _err(
                    op,
                    f"tg.update of {ref} stores {op.operands[0].type} but the global has type {gtype}",
                )

    def check_call(self, op: Op, target: Op, ref: SymbolRef) -> None:
        if target.name != "func.func":
            _err(op, f"func.call of {ref}: {ref} is a {target.name}, not a func.func")
        # Types are not compared: a callee's named dims are bound per call
        # (N in the callee may be B at the call site); `inline` checks them.
        res = target.attrs.get("res_types", ())
        if isinstance(res, tuple) and len(op.results) != len(res):
            _err(
                op, f"func.call of {ref} has {len(op.results)} results but {ref} returns {len(res)}"
            )
        if len(target.regions) == 1 and len(target.regions[0].blocks) == 1:
            n_params = len(target.regions[0].blocks[0].args)
            defaults = target.attrs.get("arg_defaults")
            n_required = n_params
            if isinstance(defaults, tuple) and len(defaults) == n_params:
                # Trailing parameters with defaults may be left out.
                while n_required and defaults[n_required - 1] is not None:
                    n_required -= 1
            n = len(op.operands)
            if not n_required <= n <= n_params:
                expect = str(n_params) if n_required == n_params else f"{n_required} to {n_params}"
                _err(op, f"func.call of {ref} passes {n} arguments but {ref} takes {expect}")


class _QuickCheck:
    """Every invariant _Verifier checks, in one walk of an isolated root (a
    module or a function), for IR that is right: `run` says whether all hold
    (or raises); it never says so where _Verifier would raise. Its order is
    not _Verifier's: where it answers False (or raises), _Verifier's walks
    find the first broken invariant, for their error message.

    The use lists of the values defined in the root are checked by counting,
    not use by use: each operand slot (op, i) of a nested op is a key of its
    value's use list (checked), and that value is defined in the root (it is
    visible); distinct slots are distinct keys, so the slots are as many as
    the uses of those values only when every use is such a slot: the operand
    slot it names, of an op in the IR (_Verifier checks both, use by use). A
    use naming a slot that holds another value, an op outside the IR, or no
    slot at all is a use more than there are slots. (An op listed twice would
    count its slots and uses twice: block_ok answers False for it, met as a
    result defined twice or, without results, in `listed`.)

    op_check is called for each op as the walk meets it (the root first);
    what it raises goes to _Verifier's walks too, which call it after
    every structural check, in their order."""

    def __init__(self, root: Op, op_check: Optional[Callable]):
        self.root = root
        self.op_check = op_check
        self.good_shapes: set = set()
        self.slots = 0  # operand slots of the ops nested in the root
        self.uses = 0  # uses of the values defined in the root
        self.refs: list = []  # func.call, tg.read, tg.update ops
        self.modules: list = []  # builtin.module ops
        self.funcs: list = []  # func.func ops nested in the root
        # op names neither terminators nor _SPECIAL (str, not empty), seen
        self.plain_names: set = set()
        self.listed: set = set()  # the ops without results met in the walk

    def run(self) -> bool:
        root = self.root
        name = root.name
        if type(name) is not str or not name:
            return False
        for i, r in enumerate(root.results):
            if r.op is not root or r.index != i or not self.type_ok(r.type):
                return False
            if not self.uses_ok(r):
                return False
        for i, v in enumerate(root.operands):
            if (root, i) not in v.uses:
                return False
        if not self.attrs_ok(root):
            return False
        if self.op_check is not None:
            self.op_check(root)
        if not self.regions_ok(root, None):
            return False
        if name == "builtin.module":
            self.modules.append(root)
        if self.slots != self.uses:
            return False
        v = _Verifier(root)
        if name == "func.func":
            v.check_func(root)
        for f in self.funcs:
            v.check_func(f)
        for m in self.modules:
            v.unique_symbols(m)
        for op in self.refs:
            v.check_reference(op)
        return True

    def type_ok(self, t) -> bool:
        if type(t) is TensorType and type(t.shape) is tuple and t.shape in self.good_shapes:
            return True
        _check_type(self.root, t, "a type")  # (raises where it is not)
        self.good_shapes.add(t.shape)
        return True

    def uses_ok(self, value) -> bool:
        """Whether each use of `value`, a result of the root, is the operand
        slot it names (the root's results are not counted)."""
        for u_op, u_idx in value.uses:
            operands = u_op.operands
            if not (0 <= u_idx < len(operands)) or operands[u_idx] is not value:
                return False
        return True

    def attrs_ok(self, op: Op) -> bool:
        plain = _PLAIN_ATTRS
        for key, val in op.attrs.items():
            if type(key) is not str:
                return False
            if type(val) not in plain:
                _check_attr(op, key, val)  # (raises where it is not)
        return True

    def regions_ok(self, op: Op, visible: Optional[set]) -> bool:
        """The regions of `op`; `visible`: the values its regions see from
        outside (None where it is isolated)."""
        if op.name in ISOLATED_OPS:
            visible = None
        for region in op.regions:
            if region.parent is not op:
                return False
            for block in region.blocks:
                if block.parent is not region:
                    return False
                if not self.block_ok(block, visible):
                    return False
        return True

    def block_ok(self, block, outer: Optional[set]) -> bool:
        # The values the block's ops see: those of outer blocks (none in an
        # isolated op), then its arguments and the results of its ops in turn.
        if outer is None:
            visible = set()
            added = None
        else:
            visible = outer
            added = []
        type_ok = self.type_ok
        attrs_ok = self.attrs_ok
        op_check = self.op_check
        good_shapes = self.good_shapes
        listed = self.listed
        nuses = 0
        for i, a in enumerate(block.args):
            if a.block is not block or a.index != i or not type_ok(a.type):
                return False
            nuses += len(a.uses)
            visible.add(a)
            if added is not None:
                added.append(a)
        ops = block.ops
        last = len(ops) - 1
        slots = 0
        plain = self.plain_names
        j = -1
        for op in ops:
            j += 1
            if op.parent is not block:
                return False
            name = op.name
            if name not in plain:  # (a name seen before needs none of these tests)
                if type(name) is not str or not name:
                    return False
                if name == "func.return" or name.endswith((".yield", ".return")):
                    if j != last:
                        return False
                elif name not in _SPECIAL:
                    plain.add(name)
            i = 0
            for v in op.operands:
                if v not in visible or (op, i) not in v.uses:
                    return False
                i += 1
            slots += i
            # (attrs_ok written out for the common case: plain values)
            for key, val in op.attrs.items():
                if type(key) is not str:
                    return False
                if type(val) not in _PLAIN_ATTRS and not attrs_ok(op):
                    return False
            if op.regions:
                if not self.regions_ok(op, visible):
                    return False
                if name == "builtin.module":
                    self.modules.append(op)
            if name in plain:
                pass
            elif name == "func.func":
                self.funcs.append(op)
            elif name == "func.return":
                parent = op.parent_op()
                if parent is None or parent.name != "func.func":
                    return False
            elif name in _REFERENCES:
                self.refs.append(op)
            if op_check is not None:
                op_check(op)
            results = op.results
            if not results:
                if op in listed:
                    return False
                listed.add(op)
            i = 0
            for r in results:
                if r.op is not op or r.index != i or r in visible:
                    return False
                t = r.type
                if type(t) is not TensorType or type(t.shape) is not tuple or (
                    t.shape not in good_shapes
                ):
                    type_ok(t)
                nuses += len(r.uses)  # (the uses themselves: see the class docstring)
                visible.add(r)
                if added is not None:
                    added.append(r)
                i += 1
        self.uses += nuses
        self.slots += slots
        if added is not None:
            # Straight-line single-block regions: a block's values end with it.
            visible.difference_update(added)
        return True


_REFERENCES = frozenset({"func.call", "tg.read", "tg.update"})
# The op names block_ok looks at again after the common tests.
_SPECIAL = _REFERENCES | {"func.func", "builtin.module"}


def _before(a: Op, b: Op) -> bool:
    """Whether op `a` comes before (or is) op `b` in their common block."""
    for o in a.parent.ops:
        if o is a:
            return True
        if o is b:
            return False
    return False


def _enclosing_module(op: Op) -> Optional[Op]:
    p = op.parent_op()
    while p is not None and p.name != "builtin.module":
        p = p.parent_op()
    return p
