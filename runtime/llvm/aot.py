"""Ahead-of-time object code for `irc build`: the same loop IR -> LLVM IR code
generation as the JIT (codegen.generate), plus the thread pool (threads.py),
optimised for a target machine (the host, or any triple LLVM knows) with the
JIT's per-function pipelines (jit.optimize_parts: a library computes exactly
what the JIT computes), linked and emitted as one relocatable object file with
position-independent code.

What the object holds and exports (all with hidden visibility, so a shared
library built from it exports only its C API, written by irc/build.py):

    i32 irc_<model>__fn_<f>(ptr bufs, ptr dims, ptr ws, ptr ctx)   the entry f
    i64 irc_<model>__ws_<f>(ptr dims)                               its workspace size
    irc_<model>__init_<k>                                           the k-th shared
        variable's initial value (bytes, 64-aligned, little-endian)

with the entry ABI of codegen.py. Everything else (kernels, helpers, the pool) is
internal. Matrix products call irc_<model>__sgemm / __dgemm with the CBLAS
argument list (the JIT's scipy_cblas_* renamed): the C part of the library
forwards them to the CBLAS found at link time, or runs its own blocked GEMM
(--no-blas). Other undefined symbols: pthreads, libm and a few libc functions.

Imports llvmlite, irc.ir and the rest of runtime.llvm only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import llvmlite.binding as llvm
import numpy as np
from llvmlite import ir

from irc.ir.core import Module

from . import jit
from .codegen import generate, ws_symbol
from .threads import build_module as pool_module

BLAS_RENAMES = {"scipy_cblas_sgemm": "sgemm", "scipy_cblas_dgemm": "dgemm"}


class TargetError(ValueError):
    """An unknown target triple or CPU name."""


@dataclass
class ObjectCode:
    """The object file and what the C glue must know about it."""

    data: bytes
    triple: str
    cpu: str
    messages: dict = field(default_factory=dict)  # entry -> loop.assert messages (codes 1..)
    uses_blas: set = field(default_factory=set)  # {"sgemm", "dgemm"} called by the code


def host_triple() -> str:
    jit.init()
    return llvm.get_process_triple()


def target_machine(triple: str | None, cpu: str | None):
    """A target machine for `triple` (None: the host) with PIC relocations. cpu None:
    the host CPU and its features for the host, "generic" for another triple."""
    jit.init()
    host = llvm.get_process_triple()
    triple = triple or host
    if triple != host:
        llvm.initialize_all_targets()
        llvm.initialize_all_asmprinters()
    try:
        target = llvm.Target.from_triple(triple)
    except RuntimeError as e:
        raise TargetError(f"unknown target '{triple}': {str(e).strip()}") from None
    features = ""
    if cpu is None:
        if triple == host:
            cpu, features = jit.host_cpu()
        else:
            cpu = "generic"
    elif cpu == "host":
        if triple != host:
            raise TargetError("--cpu host needs the host target")
        cpu, features = jit.host_cpu()
    tm = target.create_target_machine(
        cpu=cpu, features=features, opt=3, reloc="pic", codemodel="default"
    )
    return triple, cpu, tm


def _drop_unused(mod, tm) -> None:
    """Global dead-code elimination after internalising: entries not asked for, and
    what only they used, go."""
    pb = llvm.create_pass_builder(tm, llvm.create_pipeline_tuning_options(speed_level=3))
    mpm = llvm.create_new_module_pass_manager()
    mpm.add_global_dead_code_eliminate_pass()
    mpm.add_strip_dead_prototype_pass()
    mpm.run(mod, pb)


def _init_global(m: ir.Module, name: str, arr: np.ndarray) -> None:
    data = bytearray(
        np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()
    )
    ty = ir.ArrayType(ir.IntType(8), max(1, len(data)))
    g = ir.GlobalVariable(m, ty, name)
    g.global_constant = True
    g.align = 64
    g.initializer = ir.Constant(ty, data or bytearray(b"\0"))


def build_object(
    loop_module: Module,
    model: str,
    entries: list,
    init: list,
    triple: str | None = None,
    cpu: str | None = None,
) -> ObjectCode:
    """Object code for the entry functions `entries` of a loop module; `init`: the
    initial value of each tg.global, in module order (arrays of its type)."""
    triple, cpu, tm = target_machine(triple, cpu)
    m, infos = generate(loop_module, triple, str(tm.target_data))
    prefix = f"irc_{model}__"
    # Optimised exactly as the JIT optimises it (per-function tiers, the entries'
    # and the loop nests' pipelines: jit.optimize_parts), so that the library's
    # floating-point results are the JIT's; then linked into one module.
    parts = jit.optimize_parts(str(m), tm)
    mod = parts[0]
    for part in parts[1:]:
        mod.link_in(part)
    pool = llvm.parse_assembly(str(pool_module(triple)))
    mod.link_in(jit.optimize_parts(str(pool), tm)[0])
    inits = ir.Module("irc_init")
    inits.triple, inits.data_layout = triple, str(tm.target_data)
    for k, arr in enumerate(init):
        _init_global(inits, f"{prefix}init_{k}", arr)
    mod.link_in(llvm.parse_assembly(str(inits)))
    mod.triple = triple
    mod.data_layout = str(tm.target_data)
    wanted = set(entries)
    ws_names = {ws_symbol(e): e for e in entries}
    uses = set()
    for f in mod.functions:
        name = f.name
        if f.is_declaration:
            if name in BLAS_RENAMES:
                uses.add(BLAS_RENAMES[name])
                f.name = prefix + BLAS_RENAMES[name]
            continue
        if name in wanted:
            f.name = f"{prefix}fn_{name}"
            f.visibility = "hidden"
        elif name in ws_names:
            f.name = f"{prefix}ws_{ws_names[name]}"
            f.visibility = "hidden"
        else:
            f.linkage = "internal"  # kernels, helpers, the pool, entries not asked for
    for g in mod.global_variables:
        if g.is_declaration:
            continue
        if g.name.startswith(prefix + "init_"):
            g.visibility = "hidden"
        elif g.linkage not in (llvm.Linkage.private, llvm.Linkage.internal):
            g.linkage = "internal"
    names = {f.name for f in mod.functions}
    missing = [n for e in entries for n in (f"{prefix}fn_{e}", f"{prefix}ws_{e}") if n not in names]
    if missing:  # codegen's naming changed under us: fail here, not in the C linker
        raise RuntimeError(f"aot: no symbol {missing[0]} after code generation")
    mod.verify()
    _drop_unused(mod, tm)
    # a BLAS routine only the unused entries called is gone after optimisation
    uses = {
        BLAS_RENAMES[k]
        for k in BLAS_RENAMES
        if any(f.name == prefix + BLAS_RENAMES[k] for f in mod.functions)
    }
    messages = {name: infos[name].messages for name in entries}
    return ObjectCode(tm.emit_object(mod), triple, cpu, messages, uses)
