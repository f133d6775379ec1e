"""NumPy indexing, shared by the `.tg` front end and the Python builder:
`x[i]`, `x[a:b:s]`, `x[None]`, `x[...]`, run-time starts (`X[i*B:(i+1)*B]`)
and integer-array gathers (`p[arange(N), y]`).

Both front ends evaluate the items of an index their own way, then hand
them to `lower_index` as neutral items (NONE, ELLIPSIS, Slice(start, stop,
step, loc) or (value, loc)) with their `Host` (irc/frontend/host.py), which
knows their kind of values (IR Values or traced Variables, their named-dim
objects) and how to make ops.

Lowering order: one tg.index for everything known at compile time (run-time
items become full slices in it), then tg.dynamic_slice / tg.dynamic_index
for run-time items, or one tg.gather for integer arrays (the other items must
then be full slices). A run-time slice needs a length known at compile time:
its stop minus its start must fold to a number or a named-dim expression.
Both front ends track integer scalars built from arguments, dims and literals
as affine forms {value | 1: dim} (`combine_affine`) for that.
Imports irc.ir only.
"""

from __future__ import annotations

from dataclasses import dataclass

from irc.ir import dims as D
from irc.ir.errors import CompileError

NONE = ("none",)
ELLIPSIS = ("ellipsis",)
FULL = ("slice", None, None, 1)


@dataclass
class Slice:
    start: object
    stop: object
    step: object
    loc: object


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def lower_index(host, base, items: list, loc):
    """The value of base[items]; items are NONE, ELLIPSIS, Slice or (value, loc)."""
    rank = base.type.rank
    n_real = sum(1 for it in items if it is not NONE and it is not ELLIPSIS)
    if sum(1 for it in items if it is ELLIPSIS) > 1:
        raise CompileError("an index can have only one '...'", loc)
    if n_real > rank:
        raise CompileError(f"too many indices ({n_real}) for a tensor of type {base.type}", loc)
    static, dynamic, arrays = [], [], []  # tg.index items; (kind, axis, payload); (axis, tensor)
    out_axis = in_axis = 0  # the tg.index result's axis an item maps to; the base's axis
    for it in items:
        if it is NONE:
            static.append(NONE)
            out_axis += 1
            continue
        if it is ELLIPSIS:
            skip = rank - n_real
            static.append(ELLIPSIS)
            out_axis += skip
            in_axis += skip
            continue
        size = base.type.shape[in_axis]
        if isinstance(it, Slice):
            start, stop, step = it.start, it.stop, it.step
            if step is not None and (not _is_int(step) or step == 0):
                raise CompileError("a slice step must be a non-zero integer", it.loc)
            runtime = [b for b in (start, stop) if host.is_tensor(b) or host.is_dim(b)]
            if runtime:
                if step not in (None, 1):
                    raise CompileError(
                        "a slice with a run-time or named-dim bound must have step 1", it.loc
                    )
                length = _slice_length(host, start, stop, size, it.loc)
                static.append(FULL)
                dynamic.append(("slice", out_axis, (start, length, it.loc)))
            else:
                for bound in (start, stop):
                    if bound is not None and not _is_int(bound):
                        raise CompileError(
                            f"a slice bound must be an integer, got {host.describe(bound)}", it.loc
                        )
                static.append(("slice", start, stop, step if step is not None else 1))
            out_axis += 1
            in_axis += 1
            continue
        v, vloc = it
        if isinstance(v, bool):
            raise CompileError("boolean indices are not supported", vloc, "use where(mask, x, 0)")
        if _is_int(v):
            if isinstance(size, int) and not -size <= v < size:
                raise CompileError(
                    f"index {v} is out of range for axis {in_axis} of size {size}", vloc
                )
            static.append(("int", v))
        else:
            if not host.is_tensor(v):
                try:
                    v = host.as_tensor(v, vloc)
                except CompileError:
                    raise CompileError(f"cannot index with {host.describe(v)}", vloc) from None
            if not v.type.dtype.is_int:
                raise CompileError(f"indices must be integers, got {v.type}", vloc)
            static.append(FULL)
            if v.type.rank == 0:
                dynamic.append(("index", out_axis, (v, vloc)))
            else:
                arrays.append((out_axis, v))
            out_axis += 1
        in_axis += 1
    return _emit(host, base, static, dynamic, arrays, loc)


def _emit(host, x, static, dynamic, arrays, loc):
    if any(item != FULL for item in static) or not static:
        x = host.emit("tg.index", x, loc=loc, items=tuple(static))
    if arrays and dynamic:
        raise CompileError(
            "integer-array indices cannot be mixed with run-time scalar indices or slices", loc
        )
    if arrays:
        axes = [a for a, _ in arrays]
        if axes != list(range(axes[0], axes[0] + len(axes))):
            raise CompileError(
                "integer-array indices must be next to each other (x[:, i, j], not x[i, :, j])", loc
            )
        return host.emit("tg.gather", x, *[v for _, v in arrays], loc=loc, axes=tuple(axes))
    slices = [(ax, p) for kind, ax, p in dynamic if kind == "slice"]
    if slices:
        starts = []
        for _, (start, _length, sloc) in slices:
            s = host.as_tensor(0 if start is None else start, sloc)
            if not s.type.dtype.is_int:
                raise CompileError("slice bounds must be integers", sloc)
            starts.append(s)
        x = host.emit(
            "tg.dynamic_slice",
            x,
            *starts,
            loc=loc,
            axes=tuple(ax for ax, _ in slices),
            sizes=tuple(p[1] for _, p in slices),
        )
    idx = [(ax, p) for kind, ax, p in dynamic if kind == "index"]
    if idx:
        x = host.emit(
            "tg.dynamic_index", x, *[p[0] for _, p in idx], loc=loc, axes=tuple(ax for ax, _ in idx)
        )
    return x


def _slice_length(host, start, stop, size, loc):
    hint = "write it as x[s:s+K] with K an integer, const or named dim"
    if (_is_int(start) and start < 0) or (_is_int(stop) and stop < 0):
        raise CompileError("negative bounds are not supported in a slice with run-time bounds", loc)
    fs = {} if start is None else host.affine_form(start)
    fe = {1: size} if stop is None else host.affine_form(stop)
    if fs is None or fe is None:
        raise CompileError("cannot work out the length of this slice at compile time", loc, hint)
    diff = combine_affine("-", fe, fs)
    if any(not (_is_int(k) and k == 1) for k in diff):
        raise CompileError("cannot work out the length of this slice at compile time", loc, hint)
    length = diff.get(1, 0)
    if _is_int(length) and length < 0:
        raise CompileError(f"this slice has a negative length ({length})", loc)
    return length


def combine_affine(op: str, fa: dict, fb: dict):
    """The affine form of `a op b` for forms {value | 1: dim}, or None when it
    is not affine (a product of two run-time values). Keys other than the
    int 1 are compared by identity, as the front ends' values must be."""
    if op in ("+", "-"):
        out = dict(fa)
        for k, c in fb.items():
            out[k] = (D.dim_add if op == "+" else D.dim_sub)(out.get(k, 0), c)
        return {k: c for k, c in out.items() if c != 0}
    if op == "*":
        if _constant(fa):
            fa, fb = fb, fa
        if _constant(fb):
            c = fb.get(1, 0)
            return {k: D.dim_mul(x, c) for k, x in fa.items() if D.dim_mul(x, c) != 0}
    return None


def _constant(f: dict) -> bool:
    return all(_is_int(k) for k in f)
