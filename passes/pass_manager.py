"""The pass infrastructure: the `Pass` base class, the registry of passes by CLI name,
pipeline strings (`cse,dce,scan-unroll{max-steps=16}`) and the `PassManager` that runs a
list of passes with the dump, timing and verification options of `irc opt`.

A pass is a dataclass named after its CLI name (`cse` -> passes/cse.py -> `CSE`):

    @register
    @dataclass
    class ScanUnroll(Pass):
        '''...before/after IR example...'''
        name = "scan-unroll"
        summary = "unroll scans with at most max-steps steps"
        max_steps: int = 16          # `scan-unroll{max-steps=16}`: `_` is `-` in the text

        def run(self, module) -> bool:   # True when the IR changed
            ...

Registration is by class decorator; a pass named `foo-bar` that is not registered yet is
looked for in the module irc.passes.foo_bar, so adding a pass is adding its file.

Imports only irc.ir and irc.ops (never irc.frontend, irc.runtime, irc.pipeline, irc.api,
irc.cli): tests/test_layering.py checks it.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import sys
import time
import typing
from dataclasses import dataclass
from typing import ClassVar, Iterable, Optional, TextIO

from irc.ir.core import Module
from irc.ir.errors import CompileError

__all__ = [
    "Pass",
    "PassCrash",
    "PassManager",
    "PipelineError",
    "available_passes",
    "get_pass",
    "parse_pipeline",
    "register",
]

DUMP_HEADER = "// ----- IR dump after {} -----"


class PipelineError(ValueError):
    """A pipeline string names an unknown pass or option, or has a bad value."""


class PassCrash(RuntimeError):
    """A pass raised something other than a CompileError: a bug in the pass.
    The original exception is the __cause__."""

    def __init__(self, pass_name: str, error: BaseException):
        super().__init__(f"pass '{pass_name}' crashed: {type(error).__name__}: {error}")
        self.pass_name = pass_name
        self.error = error


@dataclass
class Pass:
    """Base class of every pass. Subclasses are dataclasses whose fields are the options."""

    name: ClassVar[str] = ""  # the CLI name, e.g. "cse"
    summary: ClassVar[str] = ""  # one line for `irc opt --list-passes`
    # True when run() returns True for every change it makes, added ops left
    # unused included: the pass manager then knows an IR it left unchanged is
    # still whatever it was (see PassManager.run).
    reports_changes: ClassVar[bool] = False

    def run(self, module: Module) -> bool:
        """Transform `module` in place; return True when the IR changed."""
        raise NotImplementedError

    def at_fixed_point(self) -> bool:
        """After run(): whether running this pass again (same options) on the IR it
        left would change nothing. A pass saying so is skipped by the pass manager
        while only passes that report their changes, and change nothing, ran since."""
        return False

    @classmethod
    def options(cls) -> dict:
        """CLI option name -> dataclass field."""
        return {f.name.replace("_", "-"): f for f in dataclasses.fields(cls)}

    def __str__(self) -> str:
        """The pipeline text of this pass with every option spelled out."""
        opts = [f"{k}={_format_value(getattr(self, f.name))}" for k, f in self.options().items()]
        return self.name + ("{" + ",".join(opts) + "}" if opts else "")


def ops_named(root, names) -> list:
    """The ops of `root.walk()` (root included) whose name is in `names`, in the
    same order: a walk of the blocks that yields no op one by one (a pass looking
    for a few kinds of op in a long function pays one comparison per op)."""
    out = [root] if root.name in names else []
    _ops_named(root, names, out)
    return out


def _ops_named(op, names, out: list) -> None:
    for r in op.regions:
        for b in r.blocks:
            for o in b.ops:
                if o.name in names:
                    out.append(o)
                if o.regions:
                    _ops_named(o, names, out)


# -- registry -------------------------------------------------------------------------------

_REGISTRY: dict = {}


def register(cls: type) -> type:
    """Class decorator: make the pass available under `cls.name`."""
    if not cls.name:
        raise ValueError(f"pass class {cls.__name__} has no name")
    other = _REGISTRY.get(cls.name)
    if other is not None and other is not cls:
        raise ValueError(
            f"pass name '{cls.name}' registered twice ({other.__name__}, {cls.__name__})"
        )
    _REGISTRY[cls.name] = cls
    return cls


def _pass_modules() -> list:
    """Names of the modules of this package that may define passes."""
    package = sys.modules[__package__] if __package__ else None
    if package is None or not hasattr(package, "__path__"):
        return []
    skip = {"pass_manager"}
    return [m.name for m in pkgutil.iter_modules(package.__path__) if m.name not in skip]


def get_pass(name: str) -> type:
    """The pass class registered as `name`, importing irc.passes.<name with _> on demand."""
    cls = _REGISTRY.get(name)
    if cls is None and __package__:
        module = name.replace("-", "_")
        if module.isidentifier() and module in _pass_modules():
            importlib.import_module(f"{__package__}.{module}")
            cls = _REGISTRY.get(name)
    if cls is None:
        known = ", ".join(available_passes())
        raise PipelineError(f"unknown pass '{name}' (available: {known})")
    return cls


def available_passes() -> list:
    """Sorted names of every pass in the package (imports all pass modules)."""
    for module in _pass_modules():
        importlib.import_module(f"{__package__}.{module}")
    return sorted(_REGISTRY)


# -- pipeline strings -----------------------------------------------------------------------


def parse_pipeline(text: str) -> list:
    """`"cse,dce,scan-unroll{max-steps=16}"` -> [CSE(), DCE(), ScanUnroll(max_steps=16)]."""
    passes = []
    for item in _split_top_level(text, ","):
        item = item.strip()
        if not item:
            continue  # tolerate "cse,,dce" and a trailing comma
        if "{" in item:
            if not item.endswith("}"):
                raise PipelineError(f"bad pass options in '{item}': expected name{{opt=value,...}}")
            name, _, body = item[:-1].partition("{")
            name = name.strip()
            opts = [o for o in _split_top_level(body, ",") if o.strip()]
        else:
            name, opts = item, []
        if "}" in name or not name:
            raise PipelineError(f"bad pass name in '{item}'")
        cls = get_pass(name)
        passes.append(cls(**_parse_options(cls, opts)))
    return passes


def _split_top_level(text: str, sep: str) -> list:
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth < 0:
                raise PipelineError(f"unbalanced '}}' in pipeline '{text}'")
        if ch == sep and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if depth:
        raise PipelineError(f"unbalanced '{{' in pipeline '{text}'")
    parts.append("".join(cur))
    return parts


def _parse_options(cls: type, items: list) -> dict:
    fields = cls.options()
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for item in items:
        key, eq, raw = item.partition("=")
        key, raw = key.strip(), raw.strip()
        f = fields.get(key)
        if f is None:
            known = ", ".join(fields) or "none"
            raise PipelineError(f"pass '{cls.name}' has no option '{key}' (options: {known})")
        if not eq:
            raise PipelineError(f"option '{key}' of pass '{cls.name}' needs a value: {key}=...")
        kwargs[f.name] = _parse_value(raw, hints.get(f.name, str), cls.name, key)
    return kwargs


def _parse_value(raw: str, typ, pass_name: str, key: str):
    if typing.get_origin(typ) is typing.Union:  # Optional[int] and friends
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        if raw in ("none", "None") and len(args) < len(typing.get_args(typ)):
            return None
        typ = args[0] if len(args) == 1 else str
    parse = _VALUE_PARSERS.get(typ)
    if parse is None:
        return raw  # an option of another type receives its text
    try:
        return parse(raw)
    except ValueError:
        expected = {bool: "true or false", int: "an integer", float: "a number"}[typ]
        raise PipelineError(
            f"bad value '{raw}' for option '{key}' of pass '{pass_name}': expected {expected}"
        ) from None


def _parse_bool(raw: str) -> bool:
    low = raw.lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ValueError(raw)


_VALUE_PARSERS = {bool: _parse_bool, int: int, float: float, str: str}


def _format_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


# -- the pass manager -----------------------------------------------------------------------


class PassManager:
    """Runs passes in order over a module, with mlir-opt's debugging options.

    print_ir_after: pass names after which the module is dumped.
    print_ir_after_all: dump after every pass.
    print_ir_after_change: alone, dump after every pass that changed the IR; together with
        the options above, dump only those of their dumps whose pass changed the IR.
    time_passes: print a table of per-pass wall times and the total at the end of run().
    verify_each: verify the module after each pass; an error names the pass.
    print_locs: dumps include loc(...) annotations.
    Dumps start with `// ----- IR dump after NAME -----`, a comment, so a dump can be fed
    back to `irc opt`; they and the timing table go to `out` (default: stderr, as in MLIR,
    so stdout keeps the final module).
    """

    def __init__(
        self,
        passes: Iterable[Pass],
        print_ir_after: Iterable[str] = (),
        print_ir_after_all: bool = False,
        print_ir_after_change: bool = False,
        time_passes: bool = False,
        verify_each: bool = False,
        print_locs: bool = False,
        out: Optional[TextIO] = None,
    ):
        self.passes = list(passes)
        self.print_ir_after = set(print_ir_after)
        self.print_ir_after_all = print_ir_after_all
        self.print_ir_after_change = print_ir_after_change
        self.time_passes = time_passes
        self.verify_each = verify_each
        self.print_locs = print_locs
        self.out = out
        self.timings: list = []  # (pass text, seconds) of the last run

    def run(self, module: Module) -> bool:
        """Run every pass over `module` in place; True when any of them changed it."""
        self.timings = []
        any_change = False
        # The pipeline texts of the passes the IR is a fixed point of: a pass that
        # said so (at_fixed_point) when only passes that report their changes, and
        # changed nothing, ran after it. Running it again would change nothing
        # (e.g. the pipeline's second canonicalize, when stabilize and grad found
        # nothing to do): skipped.
        fixed: set = set()
        try:
            for p in self.passes:
                start = time.perf_counter()
                text = str(p)
                if text in fixed:
                    changed = False
                else:
                    try:
                        changed = bool(p.run(module))
                    except CompileError:
                        raise
                    except Exception as e:
                        raise PassCrash(p.name, e) from e
                    if changed or not p.reports_changes:
                        fixed.clear()
                    if p.at_fixed_point():
                        fixed.add(text)
                self.timings.append((text, time.perf_counter() - start))
                any_change |= changed
                if self.verify_each:
                    self._verify(module, p)
                if self._should_dump(p, changed):
                    self._dump(module, p)
        finally:
            # Also after a failure: the timings of the passes that ran still help.
            if self.time_passes:
                self._print_timings()
        return any_change

    def _should_dump(self, p: Pass, changed: bool) -> bool:
        selected = self.print_ir_after_all or p.name in self.print_ir_after
        if self.print_ir_after_change:
            # Alone, --print-ir-after-change selects every pass; with the others it filters.
            alone = not (self.print_ir_after_all or self.print_ir_after)
            return changed and (selected or alone)
        return selected

    def _stream(self) -> TextIO:
        return self.out if self.out is not None else sys.stderr

    def _dump(self, module: Module, p: Pass) -> None:
        from irc.ir.printer import print_module

        text = print_module(module, locs=self.print_locs)
        out = self._stream()
        out.write(DUMP_HEADER.format(p.name) + "\n")
        out.write(text if text.endswith("\n") else text + "\n")
        out.flush()

    def _verify(self, module: Module, p: Pass) -> None:
        from irc.ir.verifier import verify
        from irc.ops.registry import verify_op

        try:
            verify(module, op_check=verify_op)
        except CompileError as e:
            raise CompileError(
                f"the IR is invalid after pass '{p.name}': {e.message}",
                e.loc,
                hint=e.hint or f"this is a bug in the '{p.name}' pass; please report it",
            ) from e

    def _print_timings(self) -> None:
        # Comment lines, like the dumps, so a captured stderr still parses as IR.
        total = sum(t for _, t in self.timings)
        rows = [("pass", "wall (ms)", "share")]
        for text, t in self.timings:
            rows.append((text, f"{t * 1e3:.3f}", f"{100 * t / total:.1f}%" if total else "-"))
        rows.append(("total", f"{total * 1e3:.3f}", "100.0%" if total else "-"))
        w0 = max(len(r[0]) for r in rows)
        w1 = max(len(r[1]) for r in rows)
        out = self._stream()
        out.write("// ----- pass execution times -----\n")
        for i, (name, ms, share) in enumerate(rows):
            if i == len(rows) - 1:
                out.write("// " + "-" * (w0 + w1 + 11) + "\n")
            out.write(f"// {name:<{w0}}  {ms:>{w1}}  {share:>6}\n")
        out.flush()
