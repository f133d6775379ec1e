"""What every compiled backend (cpu: runtime/llvm, opencl: runtime/opencl) does the
same way, so that each backend is only a renderer of the kernels the kernelize pass
marked and a launcher of them:

  * loop_ir: the loop IR a backend compiles (BACKEND_PIPELINE of irc/pipeline.py:
    lower-to-loops, then kernelize), also what irc.api rebuilds for a dump after
    a module-cache hit;
  * CompiledBackend: the shared variables' types and initial values, get/set with
    the checks of a value for a shared variable (checked_value, also irc.api's),
    the lookup of an entry function for call(), the message of a failed run-time
    check, the "loops" dump stage;
  * PlanCache: per entry function, what a set of dim values needs (buffers,
    launch sizes, workspace), least recently used dropped past a bound.

Argument binding (the call boundary's checks) is runtime/binding.py.
Imports irc.ir and irc.passes (lower-to-loops, kernelize) only; never a backend.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from irc.ir.core import Module
from irc.ir.errors import CallError
from irc.ir.printer import print_module, print_op


def loop_ir(module: Module, owned: bool = False) -> Module:
    """The kernelized loop IR of an optimised tg module (a copy; with `owned`, the
    module itself, lowered in place: the caller gives it up), or of a loop
    module (marked in place if it has not been kernelized yet)."""
    from irc.passes.kernelize import ensure_kernels, kernelize_module

    if module.attrs.get("stage") == "loops":
        return ensure_kernels(module)
    from irc.passes.lower_to_loops import lower_module

    return kernelize_module(lower_module(module if owned else module.clone()))


def checked_value(name: str, t, value, where: str = "") -> np.ndarray:
    """value as a C-contiguous array of shared variable `name`'s type t: the same
    shape, a dtype that converts same-kind (bool, integers and floats only);
    else CallError naming the variable (prefixed by `where`)."""
    arr = np.asarray(value)
    if tuple(arr.shape) != tuple(t.shape):
        raise CallError(f"{where}shared variable '{name}' is {t}; got shape {list(arr.shape)}")
    if arr.dtype != t.dtype.np and (
        arr.dtype.kind not in "biuf" or not np.can_cast(arr.dtype, t.dtype.np, "same_kind")
    ):
        raise CallError(f"{where}shared variable '{name}' is {t}; got dtype {arr.dtype}")
    # (np.array, not np.ascontiguousarray: that one makes a 0-d array 1-d, which a
    # second check of the same value, the backend's after the API's, refused)
    return np.array(arr, dtype=t.dtype.np, order="C", copy=None)


def initial_values(globs, state: dict, owned: bool = False) -> dict:
    """{name: array} of the shared variables (name, type): fresh copies of the
    values in `state` (zeros where it has none), reshaped to the type's shape
    when they have its element count (the Python API holds a scalar as [1]).
    `owned`: the caller gives `state` up, and an array that is already writable,
    C-contiguous and of the type's dtype is taken as it is (a variable of
    gigabytes is not copied: zeros stay unwritten pages until used)."""
    out = {}
    for n, t in globs:
        v = state.get(n)
        shape = tuple(t.shape)
        if v is None:
            out[n] = np.zeros(shape, t.dtype.np)
            continue
        if (owned and isinstance(v, np.ndarray) and v.dtype == t.dtype.np
                and v.flags.c_contiguous and v.flags.writeable):
            arr = v
        else:
            arr = np.array(v, dtype=t.dtype.np, order="C")
        if arr.shape != shape:
            if arr.size != int(np.prod(shape, dtype=np.int64)):
                raise CallError(f"shared variable '{n}' is {t}; got shape {list(arr.shape)}")
            arr = arr.reshape(shape)
        out[n] = arr
    return out


class PlanCache(OrderedDict):
    """{dims key: plan} of one entry function, the `limit` most recently used
    kept. get() is the plain (fast) dict lookup; add() records a new plan."""

    def __init__(self, limit: int | None = None):
        super().__init__()
        self.limit = limit

    def add(self, key, plan):
        self[key] = plan
        if self.limit is not None and len(self) > self.limit:
            self.popitem(last=False)
        return plan

    def touch(self, key):
        self.move_to_end(key)


class CompiledBackend:
    """The part of a compiled backend that is not rendering or launching. A
    subclass sets global_types ({name: TensorType}), functions ({name: its
    function object}) and implements read(name) / write(name, array) of a shared
    variable's storage and run(f, args, env) of one call."""

    name = "?"
    global_types: dict
    functions: dict

    def get(self, name: str) -> np.ndarray:
        """A copy of shared variable `name`."""
        return self.read(name)

    def set(self, name: str, value) -> None:
        self.write(name, checked_value(name, self.global_types[name], value))

    def call(self, fn_name: str, args: list, env: dict | None = None) -> list:
        f = self.functions.get(fn_name)
        if f is None:
            raise CallError(f"no entry function '{fn_name}'")
        return self.run(f, args, env)

    def check_function(self, fn: str | None, known) -> None:
        if fn is not None and fn not in known:
            raise KeyError(f"no entry function '{fn}' (functions: {', '.join(known)})")

    def dump_loops(self, fn: str | None = None, locs: bool = False) -> str:
        """The "loops" stage: the kernelized loop IR (one function's with fn),
        with each op's source location when `locs`."""
        if fn is not None:
            return print_op(self.loop_module.lookup(fn), locs=locs) + "\n"
        return print_module(self.loop_module, locs=locs)


def failure_message(fn_name: str, messages: list, code: int) -> str:
    """The error of a failed run-time check: code k > 0 is the k-th loop.assert."""
    msg = messages[code - 1] if 0 < code <= len(messages) else f"error {code}"
    return f"{fn_name}: {msg}"
