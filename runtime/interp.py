"""The reference interpreter: runs tg IR with NumPy, op by op.

It is the semantics every other backend is checked against, and a real
backend (`backend="interp"`). Each op runs its registry `numpy` function;
attributes listed in the op's `dim_attrs` are first evaluated against the
named dims bound by the call's arguments. Results are converted to the
op's declared dtype, so NumPy's value-based corner cases cannot leak through.

Imports irc.ir and irc.ops only.
"""

from __future__ import annotations

from collections import ChainMap

import numpy as np

from irc.ir.core import Block, Module, Op
from irc.ir.dims import eval_dim
from irc.ir.errors import CallError
from irc.ir.sizes import buffer_types, check_sizes
from irc.ops.registry import REGISTRY, semantic_attrs


class InterpError(IndexError):
    """A failure while running IR, e.g. a run-time index out of range. It is an
    IndexError, like the compiled backends' run-time checks, and its text
    names the model's line: `FILE:LINE:COL: error: message`."""

    def __init__(self, message, loc=None):
        super().__init__(f"{loc}: error: {message}" if loc is not None else message)
        self.message = message
        self.loc = loc


def eval_attr(value, env):
    """Evaluate dims (ints and named-dim strings) inside an attribute value."""
    if isinstance(value, tuple):
        return tuple(eval_attr(v, env) for v in value)
    if isinstance(value, (int, str)) and not isinstance(value, bool):
        return eval_dim(value, env)
    return value


def eval_shape(shape, env) -> tuple:
    return tuple(eval_dim(d, env) for d in shape)


class Interpreter:
    def __init__(self, module: Module):
        self.module = module
        self.symbols = module.symbols()

    def run(self, fn_name: str, args: list, state: dict, env: dict):
        """Run a function. Returns (results, updates: {name: array})."""
        func = self.symbols[fn_name]
        updates: dict = {}
        results = self._run_block(func.regions[0].block, list(args), state, env, updates, {})
        return results, updates

    def _run_block(self, block: Block, args, state, env, updates, values):
        for a, v in zip(block.args, args):
            values[a] = v
        for op in block.ops:
            name = op.name
            if name in ("func.return", "tg.yield"):
                return [values[v] for v in op.operands]
            if name == "tg.read":
                values[op.results[0]] = state[op.attrs["sym"].name]
            elif name == "tg.update":
                updates[op.attrs["sym"].name] = values[op.operands[0]]
            elif name == "func.call":
                callee = self.symbols[op.attrs["callee"].name]
                res = self._run_block(
                    callee.regions[0].block,
                    [values[v] for v in op.operands],
                    state,
                    env,
                    updates,
                    {},
                )
                for r, v in zip(op.results, res):
                    values[r] = v
            elif name == "tg.scan":
                for r, v in zip(op.results, self._scan(op, values, state, env, updates)):
                    values[r] = v
            elif name == "tg.fused":
                for r, v in zip(op.results, self._fused(op, values, state, env, updates)):
                    values[r] = v
            else:
                self._run_op(op, values, env)
        return []

    def _run_op(self, op: Op, values, env):
        d = REGISTRY.get(op.name)
        if d is None or d.numpy is None:
            if op.name == "tg.grad":
                raise InterpError(
                    "tg.grad must be expanded by the grad pass before it can run", op.loc
                )
            raise InterpError(f"the interpreter cannot run {op.name}", op.loc)
        attrs = semantic_attrs(op)
        for k in d.dim_attrs:
            if k in attrs:
                attrs[k] = eval_attr(attrs[k], env)
        operands = [values[v] for v in op.operands]
        with np.errstate(all="ignore"):
            try:
                out = d.numpy(*operands, **attrs)
            except (IndexError, ValueError) as e:
                raise InterpError(f"{op.name}: {e}", op.loc) from None
        if len(op.results) == 1:
            out = (out,)
        for r, v in zip(op.results, out):
            values[r] = np.asarray(v, dtype=r.type.dtype.np)

    def _fused(self, op: Op, values, state, env, updates):
        """Run a fused group on whole arrays: its scalar body ops are NumPy
        elementwise functions, so they apply to the broadcast inputs as they are."""
        shape = eval_shape(op.attrs["shape"], env)
        body = op.regions[0].block
        args = [np.broadcast_to(values[v], shape) for v in op.operands]
        inner = ChainMap({}, values)
        for a, v in zip(body.args, args):
            inner[a] = v
        for o in body.ops:
            if o.name == "tg.yield":
                outs = [inner[v] for v in o.operands]
                break
            d = REGISTRY[o.name]
            with np.errstate(all="ignore"):
                res = d.numpy(*[inner[v] for v in o.operands], **semantic_attrs(o))
            inner[o.results[0]] = np.asarray(res, dtype=o.results[0].type.dtype.np)
        reduce = op.attrs.get("reduce")
        if reduce is not None:
            axis = op.attrs.get("axis")
            # result 0 reduced; the other results (values of the group that
            # other ops read) at every element
            outs = [
                _REDUCE[reduce](outs[0], axis=axis, keepdims=bool(op.attrs.get("keepdims", False)))
            ] + outs[1:]
        return [
            np.broadcast_to(
                np.asarray(v, dtype=r.type.dtype.np), eval_shape(r.type.shape, env)
            ).copy()
            for v, r in zip(outs, op.results)
        ]

    def _scan(self, op: Op, values, state, env, updates):
        ns, nc = op.attrs["n_seqs"], op.attrs["n_carries"]
        length = eval_dim(op.attrs["length"], env)
        seqs = [values[v] for v in op.operands[:ns]]
        for s in seqs:
            if s.shape[0] != length:
                raise InterpError(
                    f"scan sequence has {s.shape[0]} steps, expected {length}", op.loc
                )
        carries = [values[v] for v in op.operands[ns:]]
        body = op.regions[0].block
        outs = op.results[nc:]
        stacked = [np.zeros(eval_shape(r.type.shape, env), dtype=r.type.dtype.np) for r in outs]
        order = range(length - 1, -1, -1) if op.attrs.get("reverse", False) else range(length)
        for t in order:
            inner = ChainMap({}, values)  # the body sees outer values
            res = self._run_block(body, [s[t] for s in seqs] + carries, state, env, updates, inner)
            carries = res[:nc]
            for buf, v in zip(stacked, res[nc:]):
                buf[t] = v
        return list(carries) + stacked


_REDUCE = {"sum": np.sum, "mean": np.mean, "max": np.max, "min": np.min}


class InterpBackend:
    """The interpreter as a backend: owns the shared variables' arrays and
    applies a call's updates after its outputs are computed."""

    name = "interp"

    def __init__(self, module: Module, state: dict):
        self.interp = Interpreter(module)
        self.state = dict(state)
        self._buffers: dict = {}

    def call(self, fn_name: str, args: list, env: dict) -> list:
        types = self._buffers.get(fn_name)
        if types is None:
            types = self._buffers[fn_name] = buffer_types(self.interp.symbols[fn_name])
        check_sizes(fn_name, types, env)  # before NumPy allocates anything
        try:
            results, updates = self.interp.run(fn_name, args, self.state, env)
        except MemoryError:
            raise CallError(f"{fn_name}(): out of memory (the tensors fit in int64)") from None
        # A result may be a shared variable's own array (`return W`): hand out
        # a copy so the caller cannot change the state behind our back.
        held = {id(a) for a in self.state.values()} | {id(a) for a in args}
        results = [r.copy() if id(r) in held else r for r in results]
        self.state.update(updates)
        return results

    def get(self, name: str) -> np.ndarray:
        return self.state[name].copy()

    def set(self, name: str, value: np.ndarray) -> None:
        self.state[name] = value
