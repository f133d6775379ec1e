"""split-step: split a training function into a per-shard gradient function and an
update function, for data-parallel training (irc/distributed.py).

    func.func @train(%x: f32[N, 64], %y: i32[N], %lr: f32) -> (f32) {
      %W = tg.read {sym = @W}
      %loss = tg.mean ...(%x, %y, %W)...
      %gW = tg.grad %loss, %W
      %0 = tg.mul %lr, %gW
      %1 = tg.sub %W, %0
      tg.update %1 {sym = @W}
      func.return %loss
    }
      ->  (train is kept; two functions are added after it)
    func.func @train_grads(%x: f32[N, 64], %y: i32[N], %lr: f32) -> (f32, f32[64, 10], f32)
        attributes {split_of = "train", split_reduce = "mean", split_results = [0], ...} {
      ... the loss and tg.grad on this shard, no updates ...
      %w = tg.dim {dim = "N", dtype = "f32"}              // the shard's weight
      func.return %loss, %gW, %w
    }
    func.func @train_apply(%lr: f32, %gW: f32[64, 10]) -> ()
        attributes {split_of = "train", split_results = [], ...} {
      %W = tg.read {sym = @W}
      %0 = tg.mul %lr, %gW
      %1 = tg.sub %W, %0
      tg.update %1 {sym = @W}
      func.return
    }

Each worker calls FN_grads on its shard; the driver combines the shards' results and
gradients as the loss is combined, and every replica calls FN_apply with the combined
gradients. The combination is exact for a loss of the form S / D + R, where S and D are
sums over the examples (a mean over the batch: D is the number of elements averaged; a
masked mean sum(l * m) / sum(m): D = sum(m)) and R does not depend on the data (a weight
penalty): `split_reduce = "mean"` and the shard's last result is its D, so

    full gradient = sum_k D_k * g_k / sum_k D_k        (g_k: the gradient on shard k)

For a plain sum over the batch (L = S), `split_reduce = "sum"`: the gradients add up, and
the weight returned is 1. A loss of another form (a product of two data terms, a max
over the batch, a sum plus a data-independent term) is a CompileError at its op.

Data are the arguments whose type has the batch dim (option batch-dim; by default N if an
argument uses it, else B, else the first named dim of the first argument: the rule of the
training driver). An update W <- f(...) may read shared variables, gradients and the other
arguments (lr), never a value computed from the data except through grad(...): an update
that reads a batch statistic directly would differ between workers, and is a CompileError
at the update's line. Results of FN computed from the data must be scalars (combined as
the loss: FN_grads returns them); results that do not depend on the data (a gradient norm)
are returned by FN_apply, computed from the combined gradients. `split_results` gives each
function's results' positions among FN's.

Runs on tg IR before `grad` (it needs the tg.grad op); the distributed driver runs it
right after `inline`. Imports only irc.ir, irc.ops and irc.passes.
"""

from __future__ import annotations

from dataclasses import dataclass

from irc.ir.core import Block, Module, Op, OpResult, Region, Value
from irc.ir.dims import dim_names
from irc.ir.errors import CompileError
from irc.ops.registry import PURE, OpBuilder, lookup
from irc.passes.grad import op_inputs
from irc.passes.pass_manager import Pass, register

GRADS_SUFFIX = "_grads"
APPLY_SUFFIX = "_apply"


@register
@dataclass
class SplitStep(Pass):
    name = "split-step"
    summary = "split a training function into per-shard gradients and an update function"
    fn: str = "train"
    batch_dim: str = ""  # empty: N, else B, else the first named dim of the first argument

    def run(self, module: Module) -> bool:
        func = module.lookup(self.fn)
        if func is None or func.name != "func.func":
            raise CompileError(
                f"split-step: no function '{self.fn}' to split",
                module.loc,
                "name the training function with split-step{fn=NAME}",
            )
        grads_fn, apply_fn = split_function(func, self.batch_dim or None)
        for new in (grads_fn, apply_fn):
            name = new.attrs["sym_name"]
            if module.lookup(name) is not None:
                raise CompileError(
                    f"split-step: the module already has a function '{name}'", func.loc
                )
        at = module.body.index_of(func)
        module.body.insert(at + 1, grads_fn)
        module.body.insert(at + 2, apply_fn)
        return True


def batch_dim_of(args: list) -> str | None:
    """The batch dim of a function's arguments: N if one uses it, else B, else the
    first named dim of the first argument that has one (irc/train.py's rule)."""
    named = [d for a in args for d in a.type.shape if isinstance(d, str)]
    return next((d for d in ("N", "B") if d in named), named[0] if named else None)


def _def(v: Value):
    """The op defining v (None for a block argument)."""
    return v.op if isinstance(v, OpResult) else None


def _name(v: Value) -> str:
    return v.name_hint or "a value"


def split_function(func: Op, batch_dim: str | None = None) -> tuple:
    """(FN_grads, FN_apply) for the training function `func` (left unchanged)."""
    fname = func.attrs["sym_name"]
    body: Block = func.regions[0].block
    ops = list(body.ops)
    ret = body.terminator
    args = list(body.args)
    defaults = list(func.attrs.get("arg_defaults", (None,) * len(args)))

    grads = [o for o in ops if o.name == "tg.grad"]
    if not grads:
        nested = next(
            (o for o in func.walk() if o.name == "tg.grad" and o.parent is not body), None
        )
        raise CompileError(
            f"split-step: @{fname} computes no gradient at its top level",
            (nested or func).loc,
            "a training function takes grad(loss, W, ...) and updates W <- f(W, gW, ...)",
        )
    if len(grads) > 1:
        raise CompileError(
            f"split-step: @{fname} takes grad(...) twice; data-parallel training needs one "
            "grad(loss, W1, W2, ...) per step",
            grads[1].loc,
        )
    gop = grads[0]
    loss, wrt = gop.operands[0], list(gop.operands[1:])

    if batch_dim is None:
        batch_dim = batch_dim_of(args)
    sharded = [a for a in args if batch_dim is not None and batch_dim in a.type.shape]
    if not sharded:
        raise CompileError(
            f"split-step: no argument of @{fname} has the batch dim "
            f"'{batch_dim or '(none: no named dims)'}', so there is no batch to split",
            func.loc,
            "the data arguments carry a named batch dim, e.g. x: f32[N, 64]",
        )

    # Values computed from the data, not counting what flows through the gradients
    # (the tg.grad op's results are what the workers all-reduce).
    data = {a: a for a in sharded}  # value -> the data argument it comes from
    from_grads = set(gop.results)  # values computed from the (shard's) gradients
    for op in ops:
        if op is gop:
            continue
        ins = op_inputs(op)
        src = next((data[v] for v in ins if v in data), None)
        if src is not None:
            for r in op.results:
                data[r] = src
        if any(v in from_grads for v in ins):
            from_grads.update(op.results)

    for w in wrt:
        if w in data:
            raise CompileError(
                f"split-step: grad with respect to '{_name(w)}', which is computed from the "
                f"data argument '{data[w].name_hint}'; only gradients of shared variables "
                "(values that do not depend on the batch) can be summed across workers",
                gop.loc,
            )

    updates = [o for o in ops if o.name == "tg.update"]
    for u in updates:
        v = u.operands[0]
        if v in data:
            culprit = _nearest_data_value(v, data)
            arg = data[culprit].name_hint
            reads = (
                f"reads the data argument '{arg}'"
                if culprit is data[culprit]
                else f"reads '{_name(culprit)}', computed from the data argument '{arg}'"
            )
            raise CompileError(
                f"split-step: the update of '{u.attrs['sym'].name}' {reads} directly, not "
                "through grad(...); each worker would apply a different update",
                u.loc,
                "an update may read shared variables, gradients and non-data arguments (lr)",
            )

    results = list(ret.operands)
    shard_results, apply_results = [], []
    for i, r in enumerate(results):
        if r in data:
            if r.type.rank != 0 or not r.type.dtype.is_float:
                raise CompileError(
                    f"split-step: @{fname} returns '{_name(r)}' ({r.type}), computed from the "
                    "data; only float scalars (a loss, an error rate) can be combined "
                    "across workers",
                    ret.loc or func.loc,
                )
            if r in from_grads:
                raise CompileError(
                    f"split-step: @{fname} returns '{_name(r)}', computed from both the data "
                    "and the gradients of one shard; it has no exact data-parallel value",
                    ret.loc or func.loc,
                )
            shard_results.append(i)
        else:
            apply_results.append(i)

    reduce, weight = classify_loss(loss, data, wrt, batch_dim)

    # -- FN_grads: FN without its updates, returning the shard's values -----------------------
    mapping: dict = {}
    gfn = func.clone(mapping)
    gfn.attrs = dict(gfn.attrs)
    gfn.attrs.update(
        {
            "sym_name": fname + GRADS_SUFFIX,
            "visibility": "public",
            "split_of": fname,
            "split_reduce": reduce,
            "split_results": tuple(shard_results),
            "split_batch_dim": batch_dim,
        }
    )
    gbody = gfn.regions[0].block
    gret = gbody.terminator
    for o in list(gbody.ops):
        if o.name == "tg.update":
            o.erase()
    b = OpBuilder(loc=gop.loc)
    b.set_insertion_before(gret)
    w = _weight_value(b, weight, mapping, loss.type.dtype)
    outs = [mapping[results[i]] for i in shard_results] + [mapping[g] for g in gop.results] + [w]
    gret.set_operands(outs)
    gfn.attrs["res_types"] = tuple(v.type for v in outs)
    _erase_dead(gbody)

    # -- FN_apply: the updates (and data-free results) from the combined gradients -----------
    kept = [(a, d) for a, d in zip(args, defaults) if a not in data]
    taken = {a.name_hint for a, _ in kept}
    gnames = []
    for g, wv in zip(gop.results, wrt):
        n = g.name_hint or "g" + (wv.name_hint or str(len(gnames)))
        while n in taken:
            n += "_"
        taken.add(n)
        gnames.append(n)
    ablock = Block(
        [a.type for a, _ in kept] + [g.type for g in gop.results],
        [a.name_hint for a, _ in kept] + gnames,
    )
    amap = {a: na for (a, _), na in zip(kept, ablock.args)}
    amap.update(zip(gop.results, ablock.args[len(kept) :]))
    roots = [u.operands[0] for u in updates] + [results[i] for i in apply_results]
    needed = _backward_slice(roots, ops, stop=set(gop.results))
    for op in ops:
        if op in needed:
            ablock.append(op.clone(amap))
    for u in updates:
        ablock.append(u.clone(amap))
    aouts = [amap.get(results[i], results[i]) for i in apply_results]
    ablock.append(Op("func.return", aouts, (), {}, (), ret.loc))
    afn = Op(
        "func.func",
        (),
        (),
        {
            "sym_name": fname + APPLY_SUFFIX,
            "visibility": "public",
            "arg_defaults": tuple(d for _, d in kept) + (None,) * len(gnames),
            "res_types": tuple(v.type for v in aouts),
            "split_of": fname,
            "split_results": tuple(apply_results),
        },
        [Region([ablock])],
        func.loc,
    )
    return gfn, afn


def _nearest_data_value(v: Value, data: dict) -> Value:
    """The data-dependent value nearest to `v` (breadth first) that has a name, for the
    message; `v` itself when none has."""
    seen, frontier = {v}, [v]
    while frontier:
        nxt = []
        for x in frontier:
            if x.name_hint and x in data:
                return x
            op = _def(x)
            for y in op_inputs(op) if op is not None else ():
                if y in data and y not in seen:
                    seen.add(y)
                    nxt.append(y)
        frontier = nxt
    return v


def _backward_slice(roots: list, ops: list, stop: set) -> set:
    """The ops of `ops` that the `roots` depend on, not looking past values in `stop`."""
    want = {v for v in roots if v not in stop}
    needed = set()
    for op in reversed(ops):
        if any(r in want for r in op.results):
            needed.add(op)
            want.update(v for v in op_inputs(op) if v not in stop)
    return needed


def _erase_dead(block: Block) -> None:
    for o in reversed(list(block.ops)):
        d = lookup(o.name)
        if d is not None and PURE in d.traits and o.results and not any(r.uses for r in o.results):
            o.erase()


# -- the loss's form -------------------------------------------------------------------------
#
# A form is ("const",) for a value that does not depend on the data, ("sum",) for a sum
# over the batch, or ("mean", weight) for S / D with weight D: a tuple of dims (the
# elements a mean averages) or a Value (a data sum D, e.g. sum(mask)).


def classify_loss(loss: Value, data: dict, wrt: list, batch_dim: str) -> tuple:
    """("mean", weight) or ("sum", None) for the loss of the step; CompileError else."""
    form = _form(loss, data, wrt, batch_dim)
    if form[0] == "const":
        raise CompileError(
            "split-step: the loss does not depend on the data arguments; there is nothing "
            "to split across workers",
            _loc(loss),
        )
    if form[0] == "sum":
        return "sum", None
    return "mean", form[1]


def _loc(v: Value):
    op = _def(v)
    return op.loc if op is not None else None


def _not_a_batch_sum(v: Value, why: str) -> CompileError:
    op = _def(v)
    what = f"'{op.name.split('.', 1)[1]}'" if op is not None else f"'{_name(v)}'"
    return CompileError(
        f"split-step: cannot split the loss across workers: {what} {why}",
        _loc(v),
        "a data-parallel loss is a mean or sum over the examples (plus terms that do not "
        "depend on the data, such as a weight penalty)",
    )


def _form(v: Value, data: dict, wrt: list, bd: str) -> tuple:
    if v not in data:
        return ("const",)
    op = _def(v)
    if op is None:
        raise _not_a_batch_sum(v, "is a data argument, not a reduction over the batch")
    name = op.name
    if name in ("tg.mean", "tg.sum"):
        x = op.operands[0]
        if v.type.rank != 0:
            raise _not_a_batch_sum(v, f"leaves a {v.type} value, not a scalar")
        if not any(bd in dim_names(d) for d in x.type.shape):
            raise _not_a_batch_sum(
                v, f"reduces a {x.type} value, which has no batch dim {bd}: not per-example terms"
            )
        if name == "tg.sum":
            return ("sum",)
        return ("mean", tuple(x.type.shape))
    if name == "tg.neg":
        return _form(op.operands[0], data, wrt, bd)
    if name in ("tg.add", "tg.sub"):
        fa, fb = (_form(o, data, wrt, bd) for o in op.operands)
        if fa[0] == "const":
            fa, fb = fb, fa
        if fb[0] == "const":
            if fa[0] == "sum":
                raise _not_a_batch_sum(
                    v,
                    "adds a term that does not depend on the data to a sum over the batch: "
                    "each worker would count it once",
                )
            return fa
        if fa[0] == "sum" and fb[0] == "sum":
            return fa
        if fa[0] == "mean" and fb[0] == "mean" and _same_weight(fa[1], fb[1]):
            return fa
        raise _not_a_batch_sum(v, "combines two terms averaged over different counts")
    if name == "tg.mul":
        fa, fb = (_form(o, data, wrt, bd) for o in op.operands)
        if fa[0] == "const":
            return fb
        if fb[0] == "const":
            return fa
        raise _not_a_batch_sum(v, "multiplies two values computed from the data")
    if name == "tg.div":
        a, d = op.operands
        fa, fd = _form(a, data, wrt, bd), _form(d, data, wrt, bd)
        if fd[0] == "const":
            return fa
        if fa[0] == "sum" and fd[0] == "sum" and not _depends_on(d, wrt):
            return ("mean", d)  # a weighted mean: sum(l * m) / sum(m)
        raise _not_a_batch_sum(v, "divides by a value computed from the data")
    raise _not_a_batch_sum(v, "is not a mean or sum over the batch")


def _same_weight(a, b) -> bool:
    return a is b if isinstance(a, Value) or isinstance(b, Value) else a == b


def _depends_on(v: Value, targets: list) -> bool:
    targets = set(targets)
    seen, stack = set(), [v]
    while stack:
        x = stack.pop()
        if x in targets:
            return True
        if x in seen:
            continue
        seen.add(x)
        op = _def(x)
        if op is not None:
            stack.extend(op_inputs(op))
    return False


def _weight_value(b: OpBuilder, weight, mapping: dict, dtype) -> Value:
    """The shard's weight as a scalar of `dtype` in the cloned function."""
    if weight is None:
        return b.const(1.0, dtype)
    if isinstance(weight, Value):
        return mapping.get(weight, weight)
    static, w = 1, None
    for d in weight:
        if isinstance(d, int):
            static *= d
        else:
            t = b.op("tg.dim", dim=d, dtype=dtype.name)
            w = t if w is None else b.mul(w, t)
    if w is None:
        return b.const(float(static), dtype)
    return w if static == 1 else b.mul(w, b.const(float(static), dtype))
