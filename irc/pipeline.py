"""THE pipeline: the ordered list of passes every model goes through, in
one readable place. Reorder or extend it here and nowhere else.

Stages of a compiled module:
  tg   what the front end (or the Python builder) produced: defs as calls
  opt  after PIPELINE below: gradients expanded, defs inlined, optimised
Backends take the `opt` module.
"""

from __future__ import annotations

import os

from irc.ir.core import Module
from irc.passes import PassManager, parse_pipeline

PIPELINE = [
    "inline",  # instantiated defs into their callers
    "canonicalize",
    "stabilize",  # stable forms first, so gradients are derived from them
    "grad",  # tg.grad -> reverse-mode gradient code
    "canonicalize",  # gradient code is full of x*1, x+0 and broadcasts of constants
    "cse",
    "scan-unroll{max-steps=16}",  # short static loops become straight-line code
    "decompose",  # mean -> sum * (1/n), so the sum can fuse as a reduction
    "canonicalize",
    "cse",
    "dce",
    "fuse-elementwise",  # elementwise chains -> one tg.fused loop nest each
    "dce",  # scalar constants now copied into the fused bodies
    "scan-hoist",  # scan-body work that needs no carry moves before/after the loop
    "plan-memory",  # results that may overwrite a dead operand's buffer (lowering obeys)
]

# What the compiled backends (cpu, opencl) run on the `opt` module to get loop IR:
# runtime/base.py's loop_ir runs exactly these passes (the runtime may not import
# this module; the list is kept here so the whole path is on one screen). The
# interpreter runs `opt`.
BACKEND_PIPELINE = [
    "lower-to-loops",  # tg ops -> loop nests over buffers (irc/ops/lowering/)
    "kernelize",  # which nests are map / reduce / gemm / copy / serial kernels, for every backend
]


def pass_names() -> list:
    return [p.split("{")[0] for p in PIPELINE]


def backend_pass_names() -> list:
    return [p.split("{")[0] for p in BACKEND_PIPELINE]


# Verify the IR after every pass: on in the test suite (tests/conftest.py) and
# with IRC_DEBUG=1, the one debug switch; off by default for compile speed.
VERIFY_EACH = os.environ.get("IRC_DEBUG", "") not in ("", "0")


def run_pipeline(
    module: Module, until: str | None = None, verify_each: bool | None = None, **pm_options
) -> Module:
    """Run the pipeline over `module` in place (stopping after the first pass
    named `until`, if given) and return it. pm_options go to PassManager
    (print_ir_after, print_ir_after_all, time_passes, out, ...)."""
    if verify_each is None:
        verify_each = VERIFY_EACH
    names = list(PIPELINE)
    if until is not None:
        if until not in pass_names():
            raise ValueError(f"'{until}' is not a pass of the pipeline ({', '.join(pass_names())})")
        names = names[: pass_names().index(until) + 1]
    pm = PassManager(parse_pipeline(",".join(names)), verify_each=verify_each, **pm_options)
    pm.run(module)
    return module


def run_backend_pipeline(module: Module, **pm_options) -> Module:
    """Run BACKEND_PIPELINE over an `opt` module in place: its loop IR."""
    verify_each = pm_options.pop("verify_each", VERIFY_EACH)
    pm = PassManager(
        parse_pipeline(",".join(BACKEND_PIPELINE)), verify_each=verify_each, **pm_options
    )
    pm.run(module)
    return module


def module_at(tg: Module, opt: Module, after: str | None = None, stage: str = "opt") -> Module:
    """The module of a compiled function or model at a stage: "tg" (as the front
    end or builder made it), "opt" (after the pipeline), or right after the
    pipeline pass `after` (recomputed from the tg module)."""
    if after is not None:
        return run_pipeline(tg.clone(), until=after)
    if stage == "tg":
        return tg
    if stage == "opt":
        return opt
    raise ValueError(f"unknown stage '{stage}' (tg or opt)")
