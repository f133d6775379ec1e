"""NumPy indexing in the front end: `x[i]`, `x[a:b:s]`, `x[None]`, `x[...]`,
run-time starts (`X[i*B:(i+1)*B]`) and integer-array gathers (`p[arange(N), y]`).

Lowering order: one tg.index for everything known at compile time (run-time
items become full slices in it), then tg.dynamic_slice / tg.dynamic_index
for run-time items, or one tg.gather for integer arrays (the other items must
then be full slices). A run-time slice needs a length known at compile time:
its stop minus its start must fold to a number or a named-dim expression,
which the generator tracks for integer scalars built from arguments, dims and
literals. Imports irc.ir, irc.ops and irc.frontend only.
"""

from __future__ import annotations

from irc.frontend import ast as A
from irc.ir import dims as D
from irc.ir.core import Value
from irc.ir.errors import CompileError


def lower_index(gen, base: Value, items, loc):
    from irc.frontend.irgen import Dim, describe

    static_items = []  # entries of tg.index
    dynamic = []  # (kind, position in the tg.index result, payload)
    arrays = []  # (position in the result, Value)
    out_axis = 0  # axis of the tg.index result an item maps to
    in_axis = 0
    n_real = sum(1 for it in items if not isinstance(it, (A.NoneLit, A.Ellipsis_)))
    if sum(1 for it in items if isinstance(it, A.Ellipsis_)) > 1:
        raise CompileError("an index can have only one '...'", loc)
    if n_real > base.type.rank:
        raise CompileError(f"too many indices ({n_real}) for a tensor of type {base.type}", loc)
    for it in items:
        if isinstance(it, A.NoneLit):
            static_items.append(("none",))
            out_axis += 1
            continue
        if isinstance(it, A.Ellipsis_):
            skip = base.type.rank - n_real
            static_items.append(("ellipsis",))
            out_axis += skip
            in_axis += skip
            continue
        size = base.type.shape[in_axis]
        if isinstance(it, A.Slice):
            start = gen.ev(it.start) if it.start is not None else None
            stop = gen.ev(it.stop) if it.stop is not None else None
            step = gen.ev_static(it.step) if it.step is not None else None
            if step is not None and (not isinstance(step, int) or isinstance(step, bool) or step == 0):
                raise CompileError("a slice step must be a non-zero integer", it.step.loc)
            if isinstance(start, Value) or isinstance(stop, Value) or isinstance(start, Dim) or isinstance(stop, Dim):
                if step not in (None, 1):
                    raise CompileError("a slice with a run-time or named-dim bound must have step 1", it.loc)
                length = _slice_length(gen, start, stop, size, it.loc)
                static_items.append(("slice", None, None, 1))
                dynamic.append(("slice", out_axis, (start, length, it.loc)))
                out_axis += 1
            else:
                for b, node in ((start, it.start), (stop, it.stop)):
                    if b is not None and (not isinstance(b, int) or isinstance(b, bool)):
                        raise CompileError(f"a slice bound must be an integer, got {describe(b)}", node.loc)
                static_items.append(("slice", start, stop, step if step is not None else 1))
                out_axis += 1
            in_axis += 1
            continue
        v = gen.ev(it)
        if isinstance(v, bool):
            raise CompileError("boolean indices are not supported", it.loc)
        if isinstance(v, int):
            if isinstance(size, int) and not -size <= v < size:
                raise CompileError(f"index {v} is out of range for axis {in_axis} of size {size}", it.loc)
            static_items.append(("int", v))
        elif isinstance(v, Dim) or isinstance(v, list):
            v = gen.as_tensor(v, it.loc)
        if isinstance(v, Value):
            if not (v.type.dtype.is_int):
                raise CompileError(f"indices must be integers, got {v.type}", it.loc)
            static_items.append(("slice", None, None, 1))
            if v.type.rank == 0:
                dynamic.append(("index", out_axis, (v, it.loc)))
            else:
                arrays.append((out_axis, v))
            out_axis += 1
        elif not isinstance(v, int):
            raise CompileError(f"cannot index with {describe(v)}", it.loc)
        in_axis += 1

    x = base
    if any(item != ("slice", None, None, 1) for item in static_items) or not static_items:
        x = gen.b.op("tg.index", x, items=tuple(static_items))
    if arrays and dynamic:
        raise CompileError("integer-array indices cannot be mixed with run-time scalar indices or slices", loc)
    if arrays:
        axes = [a for a, _ in arrays]
        if axes != list(range(axes[0], axes[0] + len(axes))):
            raise CompileError("integer-array indices must be next to each other (x[:, i, j], not x[i, :, j])", loc)
        return gen.b.op("tg.gather", x, *[v for _, v in arrays], axes=tuple(axes))
    slices = [(ax, p) for kind, ax, p in dynamic if kind == "slice"]
    if slices:
        starts = []
        for ax, (start, length, sloc) in slices:
            if start is None:
                start = 0
            starts.append(gen.as_tensor(start, sloc, dtype=None) if not isinstance(start, Value) else start)
        starts = [s if s.type.dtype.is_int else None for s in starts]
        if any(s is None for s in starts):
            raise CompileError("slice bounds must be integers", loc)
        x = gen.b.op("tg.dynamic_slice", x, *starts, axes=tuple(ax for ax, _ in slices),
                     sizes=tuple(p[1] for _, p in slices))
    idx = [(ax, p) for kind, ax, p in dynamic if kind == "index"]
    if idx:
        x = gen.b.op("tg.dynamic_index", x, *[p[0] for _, p in idx], axes=tuple(ax for ax, _ in idx))
    return x


def _form(gen, v):
    """An affine form {Value | 1: dim} of a slice bound, or None."""
    from irc.frontend.irgen import Dim

    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return {1: v} if v else {}
    if isinstance(v, Dim):
        return {1: v.d}
    if isinstance(v, Value):
        f = gen.ctx.affine.get(v)
        if f is None:
            f = gen._const_form(v)
        return f
    return None


def _slice_length(gen, start, stop, size, loc):
    fs = {} if start is None else _form(gen, start)
    fe = {1: size} if stop is None else _form(gen, stop)
    if isinstance(start, int) and start < 0 or isinstance(stop, int) and stop < 0:
        raise CompileError("negative bounds are not supported in a slice with run-time bounds", loc)
    if fs is None or fe is None:
        raise CompileError("cannot work out the length of this slice at compile time", loc,
                           "write it as x[s:s+K] with K an integer, const or named dim")
    diff = dict(fe)
    for k, c in fs.items():
        diff[k] = D.dim_sub(diff.get(k, 0), c)
    diff = {k: c for k, c in diff.items() if c != 0}
    if any(k != 1 for k in diff):
        raise CompileError("cannot work out the length of this slice at compile time", loc,
                           "write it as x[s:s+K] with K an integer, const or named dim")
    length = diff.get(1, 0)
    if isinstance(length, int) and length < 0:
        raise CompileError(f"this slice has a negative length ({length})", loc)
    return length
