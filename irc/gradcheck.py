"""Gradient checking: the gradients the `grad` pass generates, compared with
central finite differences, in float64, on the reference interpreter
(Theano's verify_grad, for irc). Powers `irc check FILE.tg`.

Owns: GradCheck (one record per checked gradient), verify_grad (a `.tg`
source or tg IR module; every tg.grad of its entry functions), check_module
(the same with generated inputs, for the CLI), verify_grad_fn (an expression
built with the Python IR builder, checked through sum(u * f(x)) for a random
u), to_f64, random_inputs.

How one tg.grad(loss, w1, ..., wk) is checked:
  1. The module is converted to float64 (every f32 type, constant and dtype
     attribute), then runs the pipeline's passes that come before `grad`
     (inlining, stabilisation), as the compiler does.
  2. Its function is rewritten: each wj becomes wj + epsj with epsj a new
     argument (shared variables, arguments and intermediate values alike), the
     function returns (loss, gradients), its updates are dropped. A copy
     returns the loss alone. Then dce, grad, dce.
  3. The gradients gj at eps = 0 are compared, for a few random directions v,
     with (L(epsj = h v) - L(epsj = -h v)) / 2h, which should be gj . v.
     A direction passes when |fd - an| <= rel_tol * max(|fd|, |an|)
     + abs_tol * (1 + |L|): central differences in f64 with h = 1e-6 are good
     to about 1e-9 relative, the abs term absorbs the round-off of L near a
     zero derivative.
Only tg.grad ops in a function's top-level block are checked (a tg.grad in a
scan body has a per-step loss; the grads around it are checked through it).

Generated inputs (random_inputs): named dims get distinct sizes (size,
size+1, ... in order of first appearance, so nothing is accidentally square);
float arguments uniform(-1, 1), float scalars their default or 0.1 (learning
rates); integer arguments are labels or indices in [0, k), k the smallest
extent they index (a class axis of a cross-entropy or one_hot, a gathered or
dynamically indexed axis), found by following their uses through shape ops,
and 2 when nothing bounds them; bools uniform. Shared variables take their
initialisers' values plus uniform(-0.1, 0.1) noise, so that zero-initialised
weights do not sit on the kinks of relu and max.

Imports irc.ir, irc.ops, irc.passes, irc.runtime, irc.pipeline and irc.api.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from irc.ir.core import Block, BlockArgument, Loc, Module, Op, Region, Value, freeze_attr
from irc.ir.dims import dim_names, eval_dim
from irc.ir.errors import CompileError
from irc.ir.types import F32, F64, DType, TensorType, dtype_of_numpy
from irc.ops.registry import OpBuilder

EPS = 1e-6
REL_TOL = 1e-6
ABS_TOL = 1e-8
NOISE = 0.1  # amplitude of the noise added to shared variables


@dataclass
class GradCheck:
    """The check of one gradient: d loss / d wrt of the grad_index-th top-level
    tg.grad of `function`, over n_dirs random directions."""

    function: str
    grad_index: int
    loc: Loc | None
    wrt: str
    max_rel_error: float
    max_abs_error: float
    ok: bool
    error: str | None = None  # why the check could not run (then ok is False)

    def __str__(self) -> str:
        where = f" ({self.loc})" if self.loc is not None else ""
        head = f"{self.function}: grad #{self.grad_index}{where} wrt {self.wrt}"
        if self.error is not None:
            return f"{head}: ERROR {self.error}"
        verdict = "ok" if self.ok else "FAILED"
        return (
            f"{head}: max rel error {self.max_rel_error:.2e}, "
            f"max abs error {self.max_abs_error:.2e}: {verdict}"
        )


# -- float64 -----------------------------------------------------------------------------


def _t64(t):
    if isinstance(t, TensorType) and t.dtype == F32:
        return t.with_dtype(F64)
    return t


def _attr64(key, v):
    if isinstance(v, TensorType):
        return _t64(v)
    if isinstance(v, DType):
        return F64 if v == F32 else v
    if isinstance(v, np.ndarray) and v.dtype == np.float32:
        return freeze_attr(v.astype(np.float64))
    if isinstance(v, str) and key == "dtype" and v == "f32":
        return "f64"
    if isinstance(v, tuple):
        return tuple(_attr64(key, x) for x in v)
    return v


def to_f64(module: Module) -> Module:
    """Rewrite every f32 of `module` (value types, constants, dtype attributes,
    declared types) to f64, in place. Promotion keeps the result consistent:
    NumPy gives f64 for every mix of f64 with the other dtypes."""
    for op in module.walk():
        op.attrs = {k: _attr64(k, v) for k, v in op.attrs.items()}
        for r in op.results:
            r.type = _t64(r.type)
        for region in op.regions:
            for block in region.blocks:
                for a in block.args:
                    a.type = _t64(a.type)
    return module


# -- preparing a module ---------------------------------------------------------------------


def _passes_before_grad() -> list:
    from irc.pipeline import PIPELINE

    names = [p.split("{")[0] for p in PIPELINE]
    if "grad" in names:
        return list(PIPELINE[: names.index("grad")])
    return ["inline", "stabilize"]


def _run_passes(module: Module, passes: list) -> None:
    from irc.passes import PassManager, parse_pipeline

    if passes:
        PassManager(parse_pipeline(",".join(passes))).run(module)


def prepare(source, filename: str = "<string>", defines=None) -> Module:
    """The f64 tg IR of `source` (`.tg` text or a front-end Module, not changed)
    after the pipeline's passes before `grad`."""
    from irc.api import compile_to_ir
    from irc.ir.verifier import verify
    from irc.ops.registry import verify_op

    if isinstance(source, Module):
        m = source.clone()
    else:
        m = compile_to_ir(source, filename, defines)
    to_f64(m)
    verify(m, op_check=verify_op)
    _run_passes(m, _passes_before_grad())
    return m


def _top_grads(func: Op) -> list:
    return [op for op in func.regions[0].block.ops if op.name == "tg.grad"]


def _public_functions(m: Module) -> list:
    return [op for op in m.functions() if op.attrs.get("visibility") == "public"]


# -- the check functions ---------------------------------------------------------------------


@dataclass
class _CheckFns:
    module: Module
    grad_fn: str  # returns (loss, gradients...)
    loss_fn: str  # returns loss
    wrt: list  # (name, type) per distinct wrt value
    slots: list  # for each tg.grad operand after the loss: index into wrt
    loc: Loc | None


def _build_check(m: Module, fname: str, k: int) -> _CheckFns:
    from irc.passes.grad import merge_reads

    cm = m.clone()
    for op in list(cm.body.ops):
        public = op.name == "func.func" and op.attrs.get("visibility") == "public"
        if public and op.attrs["sym_name"] != fname:
            op.drop_all_references()
            cm.body.remove(op)
    func = cm.lookup(fname)
    block: Block = func.regions[0].block
    merge_reads(block)
    gop = _top_grads(func)[k]
    b = OpBuilder(loc=gop.loc)
    distinct: list = []
    slots = []
    for w in gop.operands[1:]:
        if w in distinct:
            slots.append(distinct.index(w))
            continue
        slots.append(len(distinct))
        distinct.append(w)
    wrt = []
    for j, w in enumerate(distinct):
        name = w.name_hint or f"#{j}"
        wrt.append((name, w.type))
        eps = block.add_arg(w.type, f"__eps{j}")
        uses = list(w.uses)
        if isinstance(w, BlockArgument):
            b.set_insertion_before(block.ops[0])
        else:
            b.set_insertion_after(w.op)
        shifted = b.add(w, eps)
        shifted.name_hint = w.name_hint  # errors of the grad pass name the user's value
        for op, idx in uses:
            op.set_operand(idx, shifted)
    # gop's wrt operands are now the shifted values; the loss is operand 0.
    loss = gop.operands[0]
    for op in [o for o in block.ops if o.name == "tg.update"]:
        op.erase()
    ret = block.terminator
    ret.set_operands([loss] + list(gop.results))
    func.attrs["res_types"] = tuple(v.type for v in ret.operands)
    defaults = tuple(func.attrs.get("arg_defaults", (None,) * (len(block.args) - len(distinct))))
    func.attrs["arg_defaults"] = defaults + (None,) * len(distinct)
    mapping: dict = {}
    lf = func.clone(mapping)
    lf.attrs["sym_name"] = f"{fname}__loss"
    lf.attrs["res_types"] = (loss.type,)
    lf.regions[0].block.terminator.set_operands([mapping[loss]])
    cm.body.append(lf)
    _run_passes(cm, ["dce", "grad", "dce"])
    from irc.ir.verifier import verify
    from irc.ops.registry import verify_op

    verify(cm, op_check=verify_op)
    return _CheckFns(cm, fname, f"{fname}__loss", wrt, slots, gop.loc)


def _check_grad_op(m, fname, k, args, state, env, n_dirs, eps, rel_tol, abs_tol, rng) -> list:
    from irc.runtime.interp import InterpError, Interpreter

    func = m.lookup(fname)
    gop = _top_grads(func)[k]
    names = [w.name_hint or f"#{j}" for j, w in enumerate(gop.operands[1:])]

    def failed(message):
        return [
            GradCheck(fname, k, gop.loc, n, float("nan"), float("nan"), False, message)
            for n in names
        ]

    try:
        c = _build_check(m, fname, k)
    except CompileError as e:
        return failed(e.message)
    interp = Interpreter(c.module)
    zeros = [np.zeros(tuple(eval_dim(d, env) for d in t.shape)) for _, t in c.wrt]
    try:
        out, _ = interp.run(c.grad_fn, list(args) + zeros, state, env)
    except InterpError as e:
        return failed(e.message)
    loss0, grads = float(out[0]), out[1:]
    # A wrt listed twice has the same gradient in both slots: check the first.
    distinct_grads = {}
    for slot, g in zip(c.slots, grads):
        distinct_grads.setdefault(slot, g)
    records = []
    for j, (name, t) in enumerate(c.wrt):
        g = np.asarray(distinct_grads[j], dtype=np.float64)
        max_rel = max_abs = 0.0
        ok = bool(np.isfinite(loss0)) and bool(np.all(np.isfinite(g)))
        error = None if ok else "the loss or its gradient is not finite"
        for _ in range(n_dirs if ok else 0):
            v = rng.standard_normal(zeros[j].shape)
            losses = []
            for sign in (1.0, -1.0):
                e = list(zeros)
                e[j] = sign * eps * v
                try:
                    (lv,), _ = interp.run(c.loss_fn, list(args) + e, state, env)
                except InterpError as err:
                    return failed(err.message)
                losses.append(float(lv))
            fd = (losses[0] - losses[1]) / (2 * eps)
            an = float(np.sum(g * v))
            err_abs = abs(fd - an)
            scale = max(abs(fd), abs(an))
            max_abs = max(max_abs, err_abs)
            max_rel = max(max_rel, err_abs / scale if scale > 0 else 0.0)
            if not np.isfinite(fd) or err_abs > rel_tol * scale + abs_tol * (1 + abs(loss0)):
                ok = False
        records.append(GradCheck(fname, k, c.loc, name, max_rel, max_abs, ok, error))
    # One record per tg.grad operand, in operand order.
    return [
        records[slot] if i == c.slots.index(slot) else _dup(records[slot], names[i])
        for i, slot in enumerate(c.slots)
    ]


def _dup(r: GradCheck, name: str) -> GradCheck:
    return GradCheck(
        r.function, r.grad_index, r.loc, name, r.max_rel_error, r.max_abs_error, r.ok, r.error
    )


# -- inputs ---------------------------------------------------------------------------------

# Ops through which an integer value keeps indexing the same thing.
_PASS_THROUGH = {
    "tg.reshape", "tg.flatten", "tg.index", "tg.transpose", "tg.broadcast_to", "tg.concat",
    "tg.stack", "tg.cast", "tg.dynamic_slice", "tg.dynamic_index",
}  # fmt: skip


def _axes(op: Op, rank: int) -> tuple:
    axes = op.attrs.get("axes", ())
    if isinstance(axes, int):
        axes = (axes,)
    return tuple(a % rank for a in axes)


def _index_bounds(v: Value, seen: set) -> list:
    """Dims that the integer value v indexes (labels, gather indices)."""
    if v in seen:
        return []
    seen.add(v)
    out = []
    for op, i in list(v.uses):
        name = op.name
        if name in ("tg.categorical_crossentropy", "tg.crossentropy_logits") and i == 1:
            out.append(op.operands[0].type.shape[-1])
        elif name == "tg.one_hot":
            out.append(op.attrs["n"])
        elif name in ("tg.gather", "tg.dynamic_index") and i >= 1:
            x = op.operands[0]
            out.append(x.type.shape[_axes(op, x.type.rank)[i - 1]])
        elif name == "tg.dynamic_slice" and i >= 1:
            x = op.operands[0]
            a = _axes(op, x.type.rank)[i - 1]
            size = op.attrs["sizes"][i - 1]
            out.append(("slice", x.type.shape[a], size))
        elif name in _PASS_THROUGH and (i == 0 or name in ("tg.concat", "tg.stack")):
            out += _index_bounds(op.results[0], seen)
        elif name == "tg.scan" and op.regions:
            out += _index_bounds(op.regions[0].block.args[i], seen)
    return out


def _int_bound(v: Value, env: dict, default: int = 2) -> int:
    bounds = []
    for d in _index_bounds(v, set()):
        try:
            if isinstance(d, tuple):  # a dynamic slice: starts in [0, extent - size]
                bounds.append(eval_dim(d[1], env) - eval_dim(d[2], env) + 1)
            else:
                bounds.append(eval_dim(d, env))
        except KeyError:
            continue
    return max(1, min(bounds)) if bounds else default


def _bind_dims(types: list, size: int) -> dict:
    env: dict = {}
    for t in types:
        for d in t.shape:
            for n in sorted(dim_names(d)) if isinstance(d, str) else ():
                if n not in env:
                    env[n] = size + len(env)
    return env


def random_inputs(func: Op, size: int, rng) -> tuple:
    """(argument arrays, dims env) for an entry function; see the module docstring."""
    block = func.regions[0].block
    env = _bind_dims([a.type for a in block.args], size)
    defaults = func.attrs.get("arg_defaults", (None,) * len(block.args))
    args = []
    for a, default in zip(block.args, defaults):
        t = a.type
        shape = tuple(eval_dim(d, env) for d in t.shape)
        if t.dtype.is_float:
            if t.rank == 0:
                x = np.asarray(0.1 if default is None else default, dtype=t.dtype.np)
            else:
                x = rng.uniform(-1.0, 1.0, size=shape).astype(t.dtype.np)
        elif t.dtype.is_int:
            if t.rank == 0 and default is not None:
                x = np.asarray(default, dtype=t.dtype.np)
            else:
                x = rng.integers(0, _int_bound(a, env), size=shape).astype(t.dtype.np)
        else:
            x = rng.random(shape) < 0.5
        args.append(np.asarray(x))
    return args, env


def _initial_state(m: Module, base_dir: str, rng, shared: dict | None) -> dict:
    from irc.runtime.state import initial_values

    state = initial_values(m, base_dir, m.attrs.get("seed", 0))
    for name, x in state.items():
        if x.dtype.kind == "f":
            state[name] = x + rng.uniform(-NOISE, NOISE, size=x.shape).astype(x.dtype)
    for name, x in (shared or {}).items():
        if name not in state:
            raise KeyError(f"no shared variable '{name}'")
        state[name] = np.asarray(x, dtype=state[name].dtype).reshape(state[name].shape)
    return state


def _bind_args(func: Op, args) -> tuple:
    """Given arguments (a list or a {name: value} dict) checked and converted."""
    from irc.api import check_arg

    block = func.regions[0].block
    fname = func.attrs["sym_name"]
    defaults = func.attrs.get("arg_defaults", (None,) * len(block.args))
    if isinstance(args, dict):
        values = []
        for a, d in zip(block.args, defaults):
            if a.name_hint in args:
                values.append(args[a.name_hint])
            elif d is not None:
                values.append(d)
            else:
                raise KeyError(f"{fname}(): no value for argument '{a.name_hint}'")
    else:
        values = list(args)
    if len(values) != len(block.args):
        raise ValueError(f"{fname}() takes {len(block.args)} arguments, got {len(values)}")
    env: dict = {}
    where: dict = {}
    arrays = [
        check_arg(fname, a.name_hint or f"#{i}", a.type, v, env, where)
        for i, (a, v) in enumerate(zip(block.args, values))
    ]
    return arrays, env


# -- entry points --------------------------------------------------------------------------


def verify_grad(
    source,
    fn_name: str | None = None,
    args=None,
    *,
    shared: dict | None = None,
    filename: str = "<string>",
    defines: dict | None = None,
    base_dir: str | None = None,
    size: int = 4,
    seed: int = 0,
    n_dirs: int = 3,
    eps: float = EPS,
    rel_tol: float = REL_TOL,
    abs_tol: float = ABS_TOL,
) -> list:
    """Check every top-level tg.grad of entry function `fn_name` (None: of every
    entry function) of `source` (`.tg` text or a front-end tg Module) against
    central differences. `source` may also be a Python function of symbolic
    variables (irc.symbolic), as in Theano: `verify_grad(lambda x, w: irc.tanh(x @ w),
    [x0, w0])` checks the gradient of sum(u * f) for a random u at the arrays
    given as `args`. `args` (a list or {name: value}; only with fn_name) and
    `shared` ({name: value}) replace generated inputs. Returns GradCheck records,
    one per (tg.grad, wrt operand)."""
    if callable(source):
        # Theano's order: verify_grad(fun, pt); pt arrives as the second argument.
        pt = args if args is not None else fn_name
        return _verify_grad_callable(
            source, pt, seed=seed, n_dirs=n_dirs, eps=eps, rel_tol=rel_tol, abs_tol=abs_tol
        )
    rng = np.random.default_rng(seed)
    m = prepare(source, filename, defines)
    if base_dir is None:
        base_dir = (
            os.path.dirname(os.path.abspath(filename)) if os.path.exists(filename) else os.getcwd()
        )
    funcs = _public_functions(m)
    if fn_name is not None:
        funcs = [f for f in funcs if f.attrs["sym_name"] == fn_name]
        if not funcs:
            raise KeyError(f"no entry function '{fn_name}'")
    elif args is not None:
        raise ValueError("args need fn_name")
    state = _initial_state(m, base_dir, rng, shared)
    records = []
    for func in funcs:
        grads = _top_grads(func)
        if not grads:
            continue
        if args is None:
            arrays, env = random_inputs(func, size, rng)
        else:
            arrays, env = _bind_args(func, args)
        arrays = [a.astype(np.float64) if a.dtype == np.float32 else a for a in arrays]
        for k in range(len(grads)):
            records += _check_grad_op(
                m, func.attrs["sym_name"], k, arrays, state, env, n_dirs, eps, rel_tol, abs_tol, rng
            )
    return records


def check_module(
    text: str,
    filename: str = "<string>",
    defines=None,
    size: int = 4,
    seed: int = 0,
    n_dirs: int = 3,
) -> list:
    """`irc check`: every gradient of every entry function of a `.tg` source, on
    generated inputs (see the module docstring). Returns GradCheck records."""
    return verify_grad(
        text, filename=filename, defines=defines, size=size, seed=seed, n_dirs=n_dirs
    )


def verify_grad_fn(
    f: Callable,
    inputs: Sequence,
    types: Sequence | None = None,
    wrt: Sequence[int] | None = None,
    *,
    seed: int = 0,
    n_dirs: int = 2,
    eps: float = EPS,
    rel_tol: float = REL_TOL,
    abs_tol: float = ABS_TOL,
    second_order: bool = False,
) -> list:
    """Check the gradient of sum(u * f(x...)), u a fixed random tensor, where
    `f(b, *xs)` builds IR with the OpBuilder `b` from the argument values xs.

    inputs: arrays. types: optional TensorTypes (or type strings such as
    "f64[N, 3]") declaring named dims; default each array's own shape. wrt:
    indices of the inputs to differentiate (default: every float input).
    second_order: also check the gradient of sum(v * grad) (a Hessian-vector
    product) for a random v. Returns GradCheck records."""
    from irc.ir.parser import parse_type

    rng = np.random.default_rng(seed)
    arrays = [np.asarray(x) for x in inputs]
    if types is None:
        types = [TensorType(dtype_of_numpy(a.dtype), a.shape) for a in arrays]
    types = [parse_type(t) if isinstance(t, str) else t for t in types]
    if wrt is None:
        wrt = [i for i, t in enumerate(types) if t.dtype.is_float]
    block = Block(types, [f"x{i}" for i in range(len(types))])
    func = Op("func.func", (), (), {"sym_name": "f", "visibility": "public"}, [Region([block])])
    m = Module(attrs={"seed": 0})
    m.body.append(func)
    b = OpBuilder()
    b.set_insertion_end(block)
    out = f(b, *block.args)
    u = block.add_arg(out.type, "u")
    loss = b.sum(b.mul(u, out))
    xs = [block.args[i] for i in wrt]
    gop = b.op_full("tg.grad", [loss] + xs, {})
    results = [loss] + list(gop.results)
    if second_order:
        vs = [block.add_arg(x.type, f"v{i}") for i, x in zip(wrt, xs)]
        dots = [b.sum(b.mul(g, v)) for g, v in zip(gop.results, vs)]
        total = dots[0]
        for d in dots[1:]:
            total = b.add(total, d)
        results += b.op_full("tg.grad", [total] + xs, {"disconnected": "zero"}).results
    # Returned, so that no pass drops the (pure) tg.grad ops as unused.
    b.create("func.return", results, [])
    func.attrs["res_types"] = tuple(v.type for v in results)
    func.attrs["arg_defaults"] = (None,) * len(block.args)
    to_f64(m)
    fixed, env = _bind_args_types(types, arrays)
    extra = [rng.standard_normal(tuple(eval_dim(d, env) for d in u.type.shape))]
    if second_order:
        extra += [rng.standard_normal(tuple(eval_dim(d, env) for d in x.type.shape)) for x in xs]
    args = [a.astype(np.float64) if a.dtype.kind == "f" else a for a in fixed] + extra
    return verify_grad(
        m, "f", args, seed=seed, n_dirs=n_dirs, eps=eps, rel_tol=rel_tol, abs_tol=abs_tol
    )


def _bind_args_types(types, arrays) -> tuple:
    from irc.api import check_arg

    env: dict = {}
    where: dict = {}
    out = []
    for i, (t, a) in enumerate(zip(types, arrays)):
        want = t.with_dtype(F64) if t.dtype == F32 else t
        out.append(check_arg("f", f"x{i}", want, a, env, where))
    return out, env


__all__ = [
    "GradCheck",
    "check_module",
    "prepare",
    "random_inputs",
    "to_f64",
    "verify_grad",
    "verify_grad_fn",
]


def _verify_grad_callable(fun, pt, *, seed, n_dirs, eps, rel_tol, abs_tol) -> list:
    """Theano's verify_grad for the Python builder: the gradient of
    sum(u * fun(*xs)), u fixed and random, against central differences of the
    same cost along random directions, in float64 on the interpreter."""
    import irc.symbolic as S

    if pt is None:
        raise ValueError("verify_grad(fun, pt): give the point as a list of arrays")
    arrays = [np.asarray(a, dtype=np.float64) for a in pt]
    xs = [S.tensor(f"x{i}", "float64", a.shape) for i, a in enumerate(arrays)]
    out = fun(*xs)
    rng = np.random.default_rng(seed)
    out_shape = S.function(xs, out)(*arrays)
    u = S.shared(rng.normal(size=np.shape(out_shape)), name="u")
    cost = S.sum(out * u)
    grads = S.grad(cost, xs)
    f_cost = S.function(xs, cost)
    f_grad = S.function(xs, grads if isinstance(grads, (list, tuple)) else [grads])
    gs = f_grad(*arrays)
    records = []
    for i, (a, g) in enumerate(zip(arrays, gs)):
        worst_rel, worst_abs, ok = 0.0, 0.0, True
        for _ in range(n_dirs):
            v = rng.normal(size=a.shape)
            plus = [x + eps * v if j == i else x for j, x in enumerate(arrays)]
            minus = [x - eps * v if j == i else x for j, x in enumerate(arrays)]
            fd = (float(f_cost(*plus)) - float(f_cost(*minus))) / (2 * eps)
            an = float(np.sum(np.asarray(g) * v))
            err = abs(fd - an)
            scale = max(abs(fd), abs(an), 1e-12)
            worst_rel, worst_abs = max(worst_rel, err / scale), max(worst_abs, err)
            ok &= err <= rel_tol * scale + abs_tol * (1 + abs(float(f_cost(*arrays))))
        records.append(GradCheck("<function>", 0, None, f"x{i}", worst_rel, worst_abs, bool(ok)))
    return records
