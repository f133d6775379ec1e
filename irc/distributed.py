"""Data-parallel training on Ray: `irc train FILE --workers N` and

    import irc.distributed
    result = irc.distributed.train("examples/mlp.tg", "digits", workers=2, epochs=5)

The compiler splits the training step (the split-step pass, passes/split_step.py): FN_grads
returns the loss and the gradients of the shared variables on a shard of the batch, and
the shard's weight; FN_apply applies the updates given gradients. Each step:

  1. the driver splits the global minibatch's indices into N shards (sizes differ by at
     most one) and sends each worker its indices only: the training arrays went to the
     object store once, and every worker reads its shard from there;
  2. each worker (a Ray actor holding a compiled replica of the model) first applies the
     previous step's combined gradients with FN_apply, then returns FN_grads on its shard:
     one round trip per step;
  3. the driver combines the shards' outputs, weighted as the loss is
     (sum_k D_k g_k / sum_k D_k for a mean; sum_k g_k for a sum; see split_step.py), applies
     them to its own replica (the one that evaluates, saves and resumes) and puts them in
     the object store once (inside each worker's next call when under 90 KB), for every
     worker's next step.

Every replica applies the same update to the same state, so they stay identical; the
driver's replica is the reference and the checkpoints come from it, between steps, so a
checkpoint is never a half-applied step. The training loop (shuffling, progress bar,
per-epoch accuracy, --save, --resume, Ctrl-C) is irc/train.py's run_loop.

A worker that dies (its process exits, its node goes away) is a WorkerLost error naming
the worker, its pid and node and the step: the run stops and the last checkpoint stays as
it was. With elastic=True the step is redone on the remaining workers (the global batch
then splits among fewer shards, so the result is unchanged) and training goes on while at
least one is left.

Ray is started locally (ray.init with as many CPUs as the workers ask for) when no address
is given and no Ray session is open, and shut down at the end; `ray_address` connects to a
running cluster (`ray start --head`; every node needs irc installed). Each worker compiles
the optimised IR the driver sends once; the cpu backend's on-disk cache makes that a
cache hit on the driver's machine.

Sits next to irc.train (above irc.api): imports irc.api, irc.train, irc.pipeline, irc.ir
and irc.passes; ray is imported only when training starts.
"""

from __future__ import annotations

import os
import socket
import time

import numpy as np

from irc.ir.errors import CompileError
from irc.train import TrainError

# Gradients below this size are sent inside the step call, not through the object store
# (Ray's own inlining limit for arguments, max_direct_call_object_size, is 100 KB).
INLINE_BYTES = 90_000
RAY_HINT = "data-parallel training needs Ray: pip install 'irc-compiler[ray]'"


class WorkerLost(TrainError):
    """A worker died during training (the run stops; see the module docstring)."""


# -- compiling the split step ------------------------------------------------------------------


def split_module(tg, fn: str = "train"):
    """The optimised module of a tg module whose `fn` is split into FN_grads and FN_apply
    (FN itself is dropped: the workers never run it)."""
    from irc.passes import PassManager, parse_pipeline
    from irc.passes.split_step import APPLY_SUFFIX, GRADS_SUFFIX
    from irc.pipeline import VERIFY_EACH, run_pipeline

    m = tg.clone()
    PassManager(parse_pipeline(f"inline,split-step{{fn={fn}}}"), verify_each=VERIFY_EACH).run(m)
    original = m.lookup(fn)
    original.drop_all_references()
    m.body.remove(original)
    opt = run_pipeline(m)
    assert opt.lookup(fn + GRADS_SUFFIX) is not None and opt.lookup(fn + APPLY_SUFFIX) is not None
    return opt


def build(opt, backend: str, state: dict, device=None, threads: int | None = None, name="<split>"):
    """A CompiledModule running the optimised module `opt` with the given shared values."""
    from irc.api import CompiledModule, _make_backend

    be = _make_backend(backend, opt, state, device)
    if threads is not None and hasattr(be, "set_threads"):
        from irc.runtime.llvm.threads import pin

        pin(be, threads)  # its own count, whatever irc.set_num_threads says
    return CompiledModule("", name, None, opt, opt, be, backend)


def split_info(m, fn: str = "train") -> dict:
    """How to combine the outputs of m's FN_grads: reduce ("mean"/"sum"), the positions
    of FN's results among FN_grads' and FN_apply's outputs, the gradient names."""
    from irc.passes.split_step import APPLY_SUFFIX, GRADS_SUFFIX

    g = m._opt.lookup(fn + GRADS_SUFFIX)
    a = m._opt.lookup(fn + APPLY_SUFFIX)
    shard_results = list(g.attrs["split_results"])
    apply_results = list(a.attrs["split_results"])
    n_grads = len(g.attrs["res_types"]) - len(shard_results) - 1
    apply_sig = m.functions[fn + APPLY_SUFFIX].signature
    return {
        "grads": fn + GRADS_SUFFIX,
        "apply": fn + APPLY_SUFFIX,
        "reduce": g.attrs["split_reduce"],
        "shard_results": shard_results,
        "apply_results": apply_results,
        "grad_names": [p.name for p in apply_sig.args[len(apply_sig.args) - n_grads :]],
        "apply_args": [p.name for p in apply_sig.args[: len(apply_sig.args) - n_grads]],
    }


def combine(outputs: list, reduce: str) -> list:
    """Combine the FN_grads outputs of the shards [(*results, *grads, weight), ...] into
    [*results, *grads] of the whole batch: sum_k w_k x_k / sum_k w_k ("mean") or
    sum_k x_k ("sum"), accumulated in float64 and returned in each output's dtype."""
    weights = np.array([float(o[-1]) for o in outputs], np.float64)
    if reduce == "mean":
        total = weights.sum()
        coef = weights / total if total != 0 else np.full_like(weights, np.nan)
    elif reduce == "sum":
        coef = np.ones_like(weights)
    else:
        raise ValueError(f"unknown reduction '{reduce}'")
    combined = []
    for i in range(len(outputs[0]) - 1):
        acc = sum(c * np.asarray(o[i], np.float64) for c, o in zip(coef, outputs))
        combined.append(np.asarray(acc, dtype=np.asarray(outputs[0][i]).dtype))
    return combined


def shard_indices(idx, n: int) -> list:
    """The global minibatch's example indices in n contiguous shards (sizes differ by <= 1)."""
    return [s for s in np.array_split(np.asarray(idx), n) if len(s)]


# -- the workers -------------------------------------------------------------------------------


class Worker:
    """One replica (a Ray actor): compiles the split module once, then per step applies the
    previous combined gradients and computes its shard's outputs."""

    def __init__(self, ir_text, backend, device, threads, state, train_arrays, batch_axis, lr):
        from irc.ir.parser import parse_module
        from irc.train import bind, take

        t0 = time.perf_counter()
        self._bind, self._take = bind, take
        opt = parse_module(ir_text, "<driver>")
        self.m = build(opt, backend, dict(state), device, threads)
        self.info = split_info(self.m)
        self.arrays, self.axes, self.lr = train_arrays, batch_axis, lr
        self.grads_fn = self.m.functions[self.info["grads"]]
        self.apply_fn = self.m.functions[self.info["apply"]]
        self.compile_seconds = time.perf_counter() - t0

    def ready(self) -> dict:
        return {
            "pid": os.getpid(),
            "node": socket.gethostname(),
            "compile_seconds": self.compile_seconds,
        }

    def apply(self, grads) -> None:
        if grads is not None:
            kw = {k: v for k, v in grads["args"].items()}
            kw.update(zip(self.info["grad_names"], grads["grads"]))
            self.apply_fn(**kw)

    def step(self, prev, idx):
        """Apply `prev` (the previous step's combined gradients, or None), then return
        FN_grads' outputs on the examples `idx`."""
        self.apply(prev)
        kw = self._bind(self.grads_fn.signature, self._take(self.arrays, self.axes, idx), self.lr)
        out = self.grads_fn(**kw)
        out = out if isinstance(out, tuple) else (out,)
        return [np.asarray(o) for o in out]

    def state(self, prev=None) -> dict:
        self.apply(prev)
        return {n: self.m[n] for n in self.m.shared}

    def exit(self) -> None:
        """End this worker's process at once (tests use it to kill a worker)."""
        os._exit(1)


class Pool:
    """The workers of a run and the driver's replica; `step(idx)` is one training step."""

    def __init__(
        self, ray, m, plan, workers, backend, device, cpus_per_worker, threads, elastic, out,
        on_step,
    ):  # fmt: skip
        from irc.ir.printer import print_module

        self.ray, self.m, self.plan = ray, m, plan
        self.info = split_info(m)
        self.elastic, self.out, self.on_step = elastic, out, on_step
        self.apply_fn = m.functions[self.info["apply"]]
        self.lr = plan.lr
        state = {n: m[n] for n in m.shared}
        remote = ray.remote(num_cpus=cpus_per_worker, max_restarts=0)(Worker)
        data_ref = ray.put(plan.ds.train)
        state_ref = ray.put(state)
        text = print_module(m._opt, locs=True)
        self.actors = [
            remote.remote(
                text,
                backend,
                device,
                threads,
                state_ref,
                data_ref,
                plan.ds.batch_axis,
                plan.lr,
            )
            for _ in range(workers)
        ]
        self.ids = list(range(workers))
        self.where = {}
        self.prev = None  # the last combined gradients (or their ref), not yet applied by workers
        self.steps = 0
        infos = self._get_all([a.ready.remote() for a in self.actors], "starting")
        for i, info in zip(self.ids, infos):
            self.where[i] = info
        self.compile_seconds = [info["compile_seconds"] for info in infos]

    def _apply_kwargs(self, grads: dict) -> dict:
        kw = {} if self.lr is None else {"lr": self.lr}
        return {k: v for k, v in kw.items() if k in self.info["apply_args"]} | grads

    def _describe(self, i) -> str:
        info = self.where.get(i)
        if not info:
            return f"worker {i}"
        return f"worker {i} (pid {info['pid']} on {info['node']})"

    def _get_all(self, refs, what):
        out = []
        for i, r in zip(self.ids, refs):
            try:
                out.append(self._get(i, r, what))
            except self.ray.exceptions.RayActorError as e:
                raise WorkerLost(f"{self._describe(i)} died while {what}: {_cause(e)}") from None
        return out

    def _get(self, i, ref, where):
        """ray.get, with an error raised inside a worker re-raised as itself (a
        CompileError) or as a TrainError naming the worker; a dead worker's error passes."""
        ray = self.ray
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as e:
            if isinstance(e, ray.exceptions.RayActorError):
                raise
            cause = getattr(e, "cause", None)
            if isinstance(cause, (CompileError, TrainError)):
                raise cause from None
            text = f"{type(cause).__name__}: {cause}" if cause is not None else _cause(e)
            raise TrainError(f"{self._describe(i)} failed at {where}: {text}") from None

    def step(self, idx, where: str) -> float:
        ray = self.ray
        while True:
            shards = shard_indices(idx, len(self.actors))
            actors = self.actors[: len(shards)]
            refs = [a.step.remote(self.prev, s) for a, s in zip(actors, shards)]
            outs, lost = [], []
            for i, a, r in zip(self.ids, actors, refs):
                try:
                    outs.append(self._get(i, r, where))
                except ray.exceptions.RayActorError as e:
                    lost.append((i, a, e))
            if not lost:
                break
            msg = "; ".join(f"{self._describe(i)} died at {where}: {_cause(e)}" for i, _, e in lost)
            survivors = [
                (i, a) for i, a in zip(self.ids, self.actors) if a not in [x[1] for x in lost]
            ]
            if not self.elastic or not survivors:
                raise WorkerLost(msg)
            _note(self.out, f"{msg}; continuing on {len(survivors)} worker(s) (--elastic)")
            self.ids = [i for i, _ in survivors]
            self.actors = [a for _, a in survivors]
            # The survivors have applied self.prev in the failed call: redo the step only.
            self.prev = None
        combined = combine(outs, self.info["reduce"])
        nres = len(self.info["shard_results"])
        results, grads = combined[:nres], combined[nres:]
        applied = self.apply_fn(**self._apply_kwargs(dict(zip(self.info["grad_names"], grads))))
        applied = applied if isinstance(applied, tuple) else (() if applied is None else (applied,))
        payload = {
            "args": self._apply_kwargs({}),
            "grads": grads,
        }
        # Small gradients travel inside each worker's next call (Ray inlines arguments up
        # to 100 KB: one copy per worker, but no object-store round trip, which costs more
        # than the bytes); larger ones go to the object store once and every worker reads
        # the same object.
        small = sum(g.nbytes for g in grads) < INLINE_BYTES
        self.prev = payload if small else ray.put(payload)
        self.steps += 1
        by_pos = dict(zip(self.info["shard_results"], results))
        by_pos.update(zip(self.info["apply_results"], applied))
        if self.on_step is not None:
            self.on_step(self.steps, self)
        return float(by_pos[0])

    def worker_states(self) -> list:
        """Every worker's shared variables (after it applies the last step)."""
        states = self._get_all([a.state.remote(self.prev) for a in self.actors], "syncing")
        self.prev = None  # applied by every worker now
        return states

    def shutdown(self) -> None:
        for a in self.actors:
            try:
                self.ray.kill(a)
            except Exception:  # noqa: BLE001 - already gone
                pass
        self.actors = []


def _cause(e) -> str:
    text = str(e).strip().splitlines()
    first = next((line for line in text if line.strip()), type(e).__name__)
    return first[:300]


def _note(out, text):
    import sys

    out = sys.stdout if out is None else out
    print(text, file=out)
    try:
        out.flush()
    except (AttributeError, ValueError):
        pass


# -- starting Ray ------------------------------------------------------------------------------


def _import_ray():
    try:
        import ray
    except ImportError:
        raise TrainError(RAY_HINT) from None
    return ray


def start_ray(ray, address, cpus: int) -> bool:
    """Connect to `address`, or reuse the open session, or start a local Ray; True when
    this call started it (and the caller shuts it down)."""
    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    kwargs = {"include_dashboard": False, "configure_logging": False, "log_to_driver": True}
    try:
        if address:
            ray.init(address=address, **kwargs)
        else:
            ray.init(num_cpus=max(cpus, os.cpu_count() or 1), **kwargs)
    except (ConnectionError, RuntimeError, ValueError) as e:
        where = f"the Ray cluster at {address}" if address else "a local Ray"
        raise TrainError(f"cannot start {where}: {e}") from None
    return True


# -- the driver --------------------------------------------------------------------------------


def _tg_of(module_or_path, define):
    """(tg module, path for messages, header, initial shared values or None)."""
    from irc.api import CompiledModule, compile_to_ir
    from irc.ir.errors import read_source
    from irc.train import TrainError, read_header, resolve_model

    if isinstance(module_or_path, CompiledModule):
        m = module_or_path
        state = {n: m[n] for n in m.shared}
        return m._tg, m._filename, read_header(m._text or ""), state
    path = resolve_model(module_or_path)
    try:
        text = read_source(path)
    except OSError as e:
        raise TrainError(f"cannot read {path}: {e.strerror or e}") from None
    return compile_to_ir(text, path, define), path, read_header(text), None


def train(
    module_or_path,
    data=None,
    workers: int = 2,
    ray_address: str | None = None,
    elastic: bool = False,
    epochs: int | None = None,
    batch: int | None = None,
    lr: float | None = None,
    backend: str | None = None,
    seed: int | None = None,
    save=None,
    resume=None,
    plot=None,
    progress: bool = True,
    out=None,
    define: dict | None = None,
    device: str | None = None,
    threads: int | None = None,
    cpus_per_worker: int = 1,
    on_step=None,
    keep_pool: bool = False,
) -> dict:
    """Train a model (a .tg path, a shipped example's name, or a CompiledModule from
    irc.load, whose current shared values are the start) on `workers` Ray actors; the
    arguments and the result are irc.train.train's, plus workers (the count at the end),
    lost_workers, and compile_seconds (each worker's). on_step(step, pool) is called
    after every step; keep_pool=True leaves the workers running and returns the pool as
    result["pool"] (the caller shuts it down). Each worker asks Ray for cpus_per_worker
    CPUs and runs the cpu backend on `threads` threads (default: cpus_per_worker); the
    driver's replica (evaluation, updates) on `threads` (default: the API's)."""
    import irc.api
    from irc.runtime.state import initial_values
    from irc.train import _check_plot_available, prepare, run_loop

    if threads is not None and (isinstance(threads, bool) or int(threads) < 1):
        raise TrainError(f"threads must be a positive integer, got {threads!r}")
    if int(workers) < 1:
        raise TrainError(f"workers must be >= 1 (got {workers})")
    workers = int(workers)
    backend = backend or irc.api.DEFAULT_BACKEND
    if backend not in irc.api.BACKENDS:
        raise TrainError(f"unknown backend '{backend}' (choose from {', '.join(irc.api.BACKENDS)})")
    if plot is not None:
        _check_plot_available()
    ray = _import_ray()
    tg, path, header, state = _tg_of(module_or_path, define)
    opt = split_module(tg)
    if state is None:
        base = os.path.dirname(os.path.abspath(path))
        module_seed = opt.attrs.get("seed", 0) if seed is None else seed
        state = initial_values(opt, base, module_seed)
    m = build(opt, backend, state, device, threads, name=path)
    plan = prepare(path, header, m, data, epochs, batch, lr, backend, seed, resume, "train_grads")
    if plan.batch < workers:
        raise TrainError(
            f"the global batch ({plan.batch}) is smaller than the number of workers ({workers})"
        )
    started = start_ray(ray, ray_address, workers * cpus_per_worker)
    pool = None
    try:
        t0 = time.perf_counter()
        pool = Pool(
            ray, m, plan, workers, backend, device, cpus_per_worker, threads or cpus_per_worker,
            elastic, out, on_step,
        )  # fmt: skip
        startup = time.perf_counter() - t0

        def step(idx):
            return pool.step(idx, f"step {pool.steps + 1}")

        note = f", {workers} Ray workers (ready in {startup:.1f} s)"
        result = run_loop(
            plan, step, seed=seed, save=save, plot=plot, progress=progress, out=out, note=note
        )
        result["workers"] = len(pool.actors)
        result["lost_workers"] = workers - len(pool.actors)
        result["compile_seconds"] = pool.compile_seconds
        result["startup_seconds"] = startup
        result["module"] = m
        if keep_pool:
            result["pool"] = pool
        return result
    finally:
        if pool is not None and not keep_pool:
            pool.shutdown()
        if started and not keep_pool:
            ray.shutdown()
