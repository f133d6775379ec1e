"""Overflow-checked sizes of a function's tensors, for every backend's call path.

Before a backend allocates anything for a call, it checks, in exact (Python)
integers, that every tensor the function holds (arguments, results, temporaries:
every value with a TensorType of rank > 0, in whatever IR the backend runs) has
a byte size within MAX_BYTES, and so does their sum (a bound on any workspace).
Compiled code computes sizes, strides and offsets in int64: once these checks
pass, none of that arithmetic can wrap. A size over the bound is a CallError
naming the tensor type and the dims, never a wrapped size, a MemoryError or a
segfault.

Owns: buffer_types, check_sizes, MAX_BYTES. Imports irc.ir only.
"""

from __future__ import annotations

from irc.ir.dims import eval_dim
from irc.ir.errors import CallError
from irc.ir.types import TensorType

# Half the int64 range: room for alignment padding and one more addition
# in any workspace arithmetic of the generated code.
MAX_BYTES = 2**62


def buffer_types(func_op) -> list:
    """The distinct TensorTypes of rank > 0 held by values of func_op (block
    arguments and results at any depth), in the order a pre-order walk meets
    them (an op's regions' arguments, its results, then the ops inside)."""
    seen: dict = {}  # type -> None: the distinct types, by equality, in order
    # Type objects already looked at, by identity: most values share their type
    # object with many others (a loop nest's scalars, a buffer's every load), and
    # an identity test costs no hash of a shape. The objects are those of
    # func_op's values, alive while it is: their ids stay theirs.
    met: set = set()
    _op_types(func_op, seen, met)
    for t in func_op.attrs.get("iter_types", ()):  # (a loop function's: see iteration_type)
        _note(seen, met, t)
    return list(seen)


def iteration_type(op):
    """The tensor a tg.fused op with a reduction computes before reducing it (of
    its iteration shape and result dtype): no value of the IR has that type,
    and it may be far bigger than any that does (`sum(exp(a[:, None] * b))`).
    Checked like the buffers: a call whose iteration space overflows is a
    CallError, not a loop of 2**62 steps. None for any other op. Lowering
    keeps these types in the loop function's `iter_types` attribute."""
    if op.name != "tg.fused" or not op.attrs.get("reduce"):
        return None
    return TensorType(op.results[0].type.dtype, tuple(op.attrs["shape"]))


def _op_types(op, seen: dict, met: set) -> None:
    regions = op.regions
    for r in regions:
        for b in r.blocks:
            for a in b.args:
                if id(a.type) not in met:
                    _note(seen, met, a.type)
    for v in op.results:
        if id(v.type) not in met:
            _note(seen, met, v.type)
    for r in regions:
        for b in r.blocks:
            for inner in b.ops:
                if inner.regions:
                    _op_types(inner, seen, met)
                    t = iteration_type(inner)
                    if t is not None:
                        _note(seen, met, t)
                    continue
                for v in inner.results:
                    if id(v.type) not in met:
                        _note(seen, met, v.type)


def _note(seen: dict, met: set, t) -> None:
    met.add(id(t))
    if isinstance(t, TensorType) and t.shape and t not in seen:
        seen[t] = None


def _human(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"):
        if n < 1024 or unit == "EiB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} EiB"


def check_sizes(fn_name: str, types, env: dict) -> int:
    """Raise CallError if a tensor of `types` (dims bound by `env`) has a
    negative dim or over MAX_BYTES bytes, or all of them together do.
    Returns the total byte count."""
    total = 0
    for t in types:
        if not isinstance(t, TensorType):
            continue
        n = t.dtype.np.itemsize
        for d in t.shape:
            try:
                v = eval_dim(d, env)
            except KeyError:
                n = None  # a dim the arguments do not bind: checked where it is bound
                break
            if v < 0:
                raise CallError(f"{fn_name}(): a tensor {t} has dimension {d} = {v} < 0 ({_dims(t, env)})")
            n *= v
        if n is None:
            continue
        if n > MAX_BYTES:
            raise CallError(
                f"{fn_name}(): a tensor {t} would need {n} bytes ({_human(n)}; {_dims(t, env)}), "
                f"over the limit of 2**62 bytes: the sizes overflow"
            )
        total += n
    if total > MAX_BYTES:
        raise CallError(
            f"{fn_name}(): the tensors of one call would need {total} bytes ({_human(total)}), "
            "over the limit of 2**62 bytes"
        )
    return total


def _dims(t: TensorType, env: dict) -> str:
    from irc.ir.dims import dim_names

    names = sorted({n for d in t.shape for n in dim_names(d)})
    return ", ".join(f"{n}={env[n]}" for n in names if n in env) or "static shape"
