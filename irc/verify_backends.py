"""Differential checking of the backends: `irc verify FILE.tg` and `irc.verify(...)`.

Every entry function (or one) of a model runs on random inputs of its declared types
on each backend, from the same shared-variable values, and its results and its
shared-variable updates are compared with the reference interpreter's. When a backend
disagrees, the first value that differs is found by running a probe of the function
(irc/probe.py: the same function, also returning every intermediate value) on the
interpreter and on that backend and comparing the values in program order; it is
reported at its `.tg` file:line:col with the op that computed it.

Inputs: named dims get small odd sizes, distinct per dim (3, 5, 7, ... shuffled by the
seed), so nothing is accidentally square and no even split hides an indexing bug;
floats uniform(-1, 1) (a scalar with a default takes it: learning rates); integers in
[0, k), k the smallest extent they index (labels of a cross-entropy or one_hot,
gathered or dynamically indexed axes; irc.gradcheck finds it), else [0, 2); bools
uniform. Float shared variables take their initial values plus uniform(-0.1, 0.1),
so that zero-initialised weights do not make every product zero.

Tolerances (dtype-aware): floats pass when |got - want| <= atol * scale + rtol * |want|
with scale = max(1, max |want|) and (rtol, atol) from TOLERANCES; NaN and Inf must
be at the same places; integers and bools must be equal.

(Named verify_backends, not verify, so that `irc.verify` stays the function.)

Owns: verify (the API), VerifyReport / FunctionReport / BackendResult (the result, with
its text form), random_args. Top of the layering (beside irc.api): may import anything.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

BACKENDS = ("interp", "cpu", "opencl")
# (rtol, atol) per dtype kind and size. f32: backends use different (but correctly
# rounded to ~1 ulp) transcendental functions and summation orders; errors grow
# through long chains (gradients through scan), hence 1e-3 relative.
TOLERANCES = {"f4": (1e-3, 1e-4), "f8": (1e-9, 1e-10), "f2": (1e-2, 1e-2)}
NOISE = 0.1


# -- comparison ------------------------------------------------------------------------------


def compare(got, want) -> str | None:
    """None when `got` matches `want` within the dtype's tolerance, else why not."""
    got, want = np.asarray(got), np.asarray(want)
    if got.shape != want.shape:
        return f"shape {list(got.shape)}, expected {list(want.shape)}"
    if got.dtype != want.dtype:
        return f"dtype {got.dtype}, expected {want.dtype}"
    if want.size == 0:
        return None
    if want.dtype.kind != "f":
        bad = got != want
        if not bad.any():
            return None
        k = np.unravel_index(int(np.argmax(bad)), want.shape)
        return f"{int(bad.sum())} of {want.size} elements differ; at {_ix(k)}: {got[k]}, expected {want[k]}"
    rtol, atol = TOLERANCES.get(f"f{want.dtype.itemsize}", (1e-3, 1e-4))
    nan_g, nan_w = np.isnan(got), np.isnan(want)
    if (nan_g != nan_w).any():
        k = np.unravel_index(int(np.argmax(nan_g != nan_w)), want.shape)
        return f"NaN at different places; at {_ix(k)}: {got[k]}, expected {want[k]}"
    inf_w = np.isinf(want)
    if (np.isinf(got) != inf_w).any() or (got[inf_w] != want[inf_w]).any():
        bad = (np.isinf(got) != inf_w) | (inf_w & (got != want))
        k = np.unravel_index(int(np.argmax(bad)), want.shape)
        return f"Inf at different places; at {_ix(k)}: {got[k]}, expected {want[k]}"
    fin = np.isfinite(want)
    if not fin.any():
        return None
    w = want.astype(np.float64)
    g = got.astype(np.float64)
    scale = max(1.0, float(np.max(np.abs(w[fin]))))
    with np.errstate(invalid="ignore"):
        err = np.where(fin, np.abs(g - w), 0.0)
    allowed = atol * scale + rtol * np.abs(np.where(fin, w, 0.0))
    bad = err > allowed
    if not bad.any():
        return None
    k = np.unravel_index(int(np.argmax(np.where(bad, err, -1.0))), want.shape)
    return (
        f"max abs error {err[k]:.3g} at {_ix(k)} (got {got[k]!r}, expected {want[k]!r}; "
        f"tolerance {allowed[k]:.2g}); {int(bad.sum())} of {want.size} elements out of tolerance"
    )


def _ix(k) -> str:
    return "[" + ", ".join(str(int(i)) for i in k) + "]" if k else "[]"


def max_error(got, want) -> float:
    got, want = np.asarray(got), np.asarray(want)
    if got.shape != want.shape or want.size == 0 or want.dtype.kind != "f":
        return 0.0
    fin = np.isfinite(want) & np.isfinite(got)
    if not fin.any():
        return 0.0
    return float(np.max(np.abs(got[fin].astype(np.float64) - want[fin])))


# -- inputs ----------------------------------------------------------------------------------


def random_args(func, rng) -> tuple:
    """(argument arrays, dims env) for the entry function `func` (front-end tg IR,
    inlined); see the module docstring."""
    from irc.gradcheck import _int_bound
    from irc.ir.dims import dim_names, eval_dim

    block = func.regions[0].block
    names: list = []
    for a in block.args:
        for d in a.type.shape:
            if isinstance(d, str):
                for n in sorted(dim_names(d)):
                    if n not in names:
                        names.append(n)
    sizes = [3 + 2 * k for k in range(max(len(names), 4))]
    order = rng.permutation(len(sizes))
    env = {n: int(sizes[order[k]]) for k, n in enumerate(names)}
    defaults = func.attrs.get("arg_defaults", (None,) * len(block.args))
    args = []
    for a, default in zip(block.args, defaults):
        t = a.type
        shape = tuple(eval_dim(d, env) for d in t.shape)
        if t.rank == 0 and default is not None:
            x = np.asarray(default, dtype=t.dtype.np)
        elif t.dtype.is_float:
            x = rng.uniform(-1.0, 1.0, size=shape).astype(t.dtype.np)
        elif t.dtype.is_int:
            x = rng.integers(0, _int_bound(a, env), size=shape).astype(t.dtype.np)
        else:
            x = rng.random(shape) < 0.5
        args.append(np.asarray(x))
    return args, env


def _noisy_state(module, rng) -> dict:
    out = {}
    for name in module.shared:
        x = module[name]
        if x.dtype.kind == "f":
            x = x + rng.uniform(-NOISE, NOISE, size=x.shape).astype(x.dtype)
        out[name] = x
    return out


# -- results ---------------------------------------------------------------------------------


@dataclass
class BackendResult:
    """One backend on one entry function: ok, or what differs and where."""

    backend: str
    ok: bool
    checked: int = 0  # values compared (results + shared variables)
    max_error: float = 0.0
    differences: list = field(default_factory=list)  # ["result 0 (f32[3]): why", ...]
    error: str | None = None  # the backend failed to compile or to run
    first: str | None = None  # the first differing intermediate value, located
    first_detail: str | None = None
    skipped: str | None = None  # not run (e.g. no OpenCL device), not a failure
    raised: str | None = None  # the error it raised, as the interpreter did

    def lines(self) -> list:
        if self.skipped:
            return [f"{self.backend:<7} skipped: {self.skipped}"]
        if self.ok:
            if self.raised:
                return [f"{self.backend:<7} ok (raises too: {self.raised})"]
            return [
                f"{self.backend:<7} ok ({self.checked} values, max abs error {self.max_error:.2g})"
            ]
        out = [f"{self.backend:<7} DIFFERS from interp"]
        if self.error:
            out.append(f"  {self.error}")
        for d in self.differences:
            out.append(f"  {d}")
        if self.first:
            out.append(f"  first differing value: {self.first}")
            if self.first_detail:
                out.append(f"    {self.first_detail}")
        elif self.differences:
            out.append(
                "  no intermediate value differs when they are all outputs "
                "(the difference depends on fusion or scheduling)"
            )
        return out


@dataclass
class FunctionReport:
    fn: str
    dims: dict
    backends: list = field(default_factory=list)
    error: str | None = None  # the reference itself failed

    @property
    def ok(self) -> bool:
        """Every backend agrees with the interpreter (when the interpreter raises, e.g. a
        run-time index check, agreeing is raising an error of the same kind)."""
        return all(b.ok for b in self.backends)

    def lines(self) -> list:
        dims = ", ".join(f"{k}={v}" for k, v in self.dims.items())
        out = [f"fn {self.fn}" + (f" ({dims})" if dims else "")]
        if self.error:
            out.append(f"  (interp raises {self.error})")
        for b in self.backends:
            out += ["  " + line for line in b.lines()]
        return out


@dataclass
class VerifyReport:
    """The result of irc.verify: `ok` (also its truth value), one FunctionReport per
    entry function, and the text report (str)."""

    filename: str
    backends: list
    seed: int
    functions: list = field(default_factory=list)
    errors: list = field(default_factory=list)  # backends that could not compile the module

    @property
    def ok(self) -> bool:
        return not self.errors and all(f.ok for f in self.functions)

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        out = [f"verify {self.filename} on {', '.join(self.backends)} (seed {self.seed})"]
        out += self.errors
        for f in self.functions:
            out += f.lines()
        bad = sum(1 for f in self.functions if not f.ok)
        if self.ok:
            out.append(
                f"ok: {len(self.functions)} function(s) agree with the interpreter "
                f"on {', '.join(b for b in self.backends if b != 'interp') or 'interp'}"
            )
        else:
            out.append(
                f"FAILED: {bad} of {len(self.functions)} function(s) differ"
                + (f"; {len(self.errors)} backend error(s)" if self.errors else "")
            )
        return "\n".join(out)

    def to_dict(self) -> dict:
        return {
            "file": self.filename,
            "backends": self.backends,
            "seed": self.seed,
            "ok": self.ok,
            "errors": self.errors,
            "functions": [
                {
                    "fn": f.fn,
                    "dims": f.dims,
                    "ok": f.ok,
                    "error": f.error,
                    "backends": [b.__dict__ for b in f.backends],
                }
                for f in self.functions
            ],
        }


# -- running ---------------------------------------------------------------------------------


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"


def _run(module, fn, args, state) -> tuple:
    """(results tuple, shared values after the call) of one call from `state`."""
    for name, value in state.items():
        module[name] = value
    out = getattr(module, fn)(*args)
    results = out if isinstance(out, tuple) else (() if out is None else (out,))
    return tuple(np.asarray(r) for r in results), {n: module[n] for n in state}


def verify(
    path_or_source,
    backends=BACKENDS,
    fn: str | None = None,
    define: dict | None = None,
    seed: int = 0,
    device: str | None = None,
    filename: str | None = None,
    locate: bool = True,
    strict: bool = False,
) -> VerifyReport:
    """Check that every backend in `backends` computes what the interpreter computes for
    every entry function of a `.tg` model (a path or source text), or only `fn`. Returns
    a VerifyReport (true when everything agrees; print it for the report). Without an
    OpenCL device, opencl is skipped with a note, or fails with `strict`. A mistake in
    the model raises CompileError; an unknown backend or function, ValueError."""
    from irc import api

    if isinstance(backends, str):
        backends = [b.strip() for b in backends.split(",") if b.strip()]
    backends = list(dict.fromkeys(backends))
    for b in backends:
        if b not in api.BACKENDS:
            raise ValueError(f"unknown backend '{b}' (choose from {', '.join(api.BACKENDS)})")
    text, filename, base_dir = _source(path_or_source, filename)
    tg = api.compile_to_ir(text, filename, define)
    ref = api._build(text, filename, base_dir, "interp", define, seed, None)
    if fn is not None and fn not in ref.functions:
        raise ValueError(
            f"{filename} has no entry function '{fn}' (functions: {', '.join(ref.functions)})"
        )
    report = VerifyReport(filename, backends, seed)
    modules = {}
    skipped = {}
    for b in backends:
        if b == "interp":
            modules[b] = api._build(text, filename, base_dir, "interp", define, seed, None)
            continue
        try:
            modules[b] = api._build(text, filename, base_dir, b, define, seed, device)
        except Exception as e:  # noqa: BLE001  (a backend that cannot build the model is a finding)
            why = _unavailable(b, e)
            if why and not strict:
                skipped[b] = why
            else:
                report.errors.append(f"{b}: cannot compile the module: {_one_line(e)}")
    fns = [fn] if fn is not None else list(ref.functions)
    rng = np.random.default_rng(seed)
    inlined = _inlined(tg)
    for name in fns:
        args, env = random_args(inlined.lookup(name), rng)
        state = _noisy_state(ref, rng)
        fr = FunctionReport(name, dict(env))
        report.functions.append(fr)
        try:
            want = _run(ref, name, args, state)
        except Exception as e:  # noqa: BLE001
            fr.error = _one_line(e)
            want = None
        for b in backends:
            if b in skipped:
                fr.backends.append(BackendResult(b, True, skipped=skipped[b]))
                continue
            if b not in modules:
                fr.backends.append(BackendResult(b, False, error="the module did not compile"))
                continue
            res = _check_backend(modules[b], b, name, args, state, want, fr.error)
            if not res.ok and locate and want is not None and not res.error:
                _locate(res, tg, text, filename, base_dir, define, seed, device, name, args, state)
            fr.backends.append(res)
    return report


def _unavailable(backend, e) -> str | None:
    if backend != "opencl":
        return None
    try:
        from irc.runtime.opencl.device import open_device

        open_device()
    except Exception as why:  # noqa: BLE001
        return f"no OpenCL device ({_one_line(why)})"
    return None


def _source(path_or_source, filename):
    """(text, filename, base dir): a path (os.PathLike, or one line naming a file or
    ending in .tg) is read as irc.load reads it; anything else is source text."""
    from irc import api
    from irc.ir.errors import read_source

    text = path_or_source
    if isinstance(text, (bytes, bytearray)):
        from irc.ir.errors import decode_source

        return decode_source(bytes(text), filename or "<string>"), filename or "<string>", os.getcwd()
    one_line = "\n" not in text
    if isinstance(text, os.PathLike) or (
        one_line and (os.path.exists(text) or text.endswith((".tg", ".tgir")))
    ):
        path = os.fspath(text)
        try:
            text = read_source(path)
        except OSError as e:
            raise api.CompileError(f"cannot read {path}: {e.strerror or e}") from None
        return text, filename or path, os.path.dirname(os.path.abspath(path))
    return str(path_or_source), filename or "<string>", os.getcwd()


def _inlined(tg):
    from irc.passes import PassManager, parse_pipeline

    m = tg.clone()
    PassManager(parse_pipeline("inline")).run(m)
    return m


def _check_backend(module, b, name, args, state, want, ref_error) -> BackendResult:
    res = BackendResult(b, True)
    try:
        got = _run(module, name, args, state)
    except Exception as e:  # noqa: BLE001
        if ref_error is not None and (
            type(e).__name__ == ref_error.split(":")[0]
            or (isinstance(e, IndexError) and ref_error.startswith(("IndexError", "InterpError")))
        ):
            res.raised = _one_line(e)  # both raise (e.g. a run-time index check)
            return res
        res.ok = False
        res.error = f"raised {_one_line(e)}" + (
            f" where interp raised {ref_error}" if ref_error else ""
        )
        return res
    if want is None:
        res.ok = False
        res.error = f"returned where interp raised {ref_error}"
        return res
    (r_got, s_got), (r_want, s_want) = got, want
    sig = module.signature(name)
    for i, (g, w) in enumerate(zip(r_got, r_want)):
        res.checked += 1
        why = compare(g, w)
        if why:
            t = sig.results[i] if i < len(sig.results) else ""
            res.differences.append(f"result {i} ({t}): {why}")
        res.max_error = max(res.max_error, max_error(g, w))
    if len(r_got) != len(r_want):
        res.differences.append(f"{len(r_got)} results, expected {len(r_want)}")
    for n in s_want:
        res.checked += 1
        why = compare(s_got[n], s_want[n])
        if why:
            res.differences.append(f"shared {n} after the call ({module.shared[n]}): {why}")
        res.max_error = max(res.max_error, max_error(s_got[n], s_want[n]))
    res.ok = not res.differences
    return res


def _locate(res, tg, text, filename, base_dir, define, seed, device, name, args, state):
    """Fill res.first: the first probed value (program order) where the backend differs."""
    from irc.diagnostics import source_line
    from irc.probe import build_module, probe_module

    try:
        probe = probe_module(tg, name)
        kw = dict(text=text, filename=filename, define=define, seed=seed, base_dir=base_dir)
        ref = build_module(probe.module, "interp", **kw)
        mod = build_module(probe.module, res.backend, device=device, **kw)
        (want, _), (got, _) = _run(ref, name, args, state), _run(mod, name, args, state)
    except Exception as e:  # noqa: BLE001
        res.first_detail = f"(could not probe intermediate values: {_one_line(e)})"
        return
    for p in probe.points:
        why = compare(got[p.output], want[p.output])
        if why:
            res.first = f"{p.describe()}: {why}"
            if p.op.regions:  # a scan: its body's values are per step, not probed
                lines = sorted(
                    {o.loc.line for o in p.op.walk() if o is not p.op and o.loc is not None}
                )
                if lines:
                    res.first += f" (inside its body, lines {lines[0]}-{lines[-1]})"
            if p.loc is not None:
                line = source_line(p.loc.file, p.loc.line)
                if line is None and p.loc.file == filename:
                    lines = text.splitlines()
                    line = lines[p.loc.line - 1] if 0 < p.loc.line <= len(lines) else None
                if line is not None:
                    res.first_detail = f"{p.loc.line:>4} | {line.rstrip()}"
            return
