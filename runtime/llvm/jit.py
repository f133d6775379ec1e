"""LLVM machinery: the host target machine, the new pass manager at O3 for the
host CPU and its features, object emission, MCJIT loading of object code, and
the on-disk compile cache.

Cache: object code plus a JSON header (per function: assertion messages) in
irc's private cache folder (irc/cachedir.py: $XDG_CACHE_HOME/irc or
~/.cache/irc, 0700, owner checked), one file per key, where the key hashes
the loop IR text, irc's version, the codegen version, LLVM's version and the
host CPU name and features. Files are written to a temporary name in the same
folder and renamed into place (atomic; concurrent writers are harmless). A
second load of the same model therefore does no LLVM code generation or
optimisation, only the MCJIT link of the object; an in-process table also
reuses the linked engine itself.

Imports llvmlite, irc.cachedir and the standard library only.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import threading

import llvmlite.binding as llvm

from irc import cachedir

CODEGEN_VERSION = "1"


def _source_hash() -> str:
    """A hash of the code generator's own source: editing it invalidates the cache."""
    h = hashlib.sha256()
    here = os.path.dirname(os.path.abspath(__file__))
    for name in ("codegen.py", "scalar.py", "parallel.py", "transcendentals.py", "jit.py", "threads.py"):
        try:
            with open(os.path.join(here, name), "rb") as f:
                h.update(f.read())
        except OSError:
            h.update(name.encode())
    return h.hexdigest()[:16]


class CacheMiss(Exception):
    """A cache entry that is missing, damaged or does not fit: compile instead."""


_SOURCE_HASH = None
_MAGIC = b"IRCOBJ1\n"
_lock = threading.Lock()
_TM = None
_ENGINES: dict = {}  # cache key -> Linked


def init() -> None:
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()


_HOST = None


def host_cpu() -> tuple:
    """(CPU name, feature string) of the host, asked once (each ask costs ~10 ms)."""
    global _HOST
    if _HOST is None:
        _HOST = llvm.get_host_cpu_name(), llvm.get_host_cpu_features().flatten()
    return _HOST


def _new_target_machine():
    init()
    cpu, features = host_cpu()
    target = llvm.Target.from_triple(llvm.get_process_triple())
    return target.create_target_machine(cpu=cpu, features=features, opt=3, codemodel="jitdefault")


def target_machine():
    """The shared target machine of code generation (never given to an engine)."""
    global _TM
    if _TM is None:
        _TM = _new_target_machine()
    return _TM


def optimize(ir_text: str):
    """Parse, verify and optimise (new pass manager, O3, host CPU): a ModuleRef."""
    tm = target_machine()
    mod = llvm.parse_assembly(ir_text)
    mod.verify()
    pto = llvm.create_pipeline_tuning_options(speed_level=3)
    pto.loop_vectorization = True
    pto.slp_vectorization = True
    pto.loop_interleaving = True
    pto.loop_unrolling = True
    pb = llvm.create_pass_builder(tm, pto)
    pb.getModulePassManager().run(mod, pb)
    return mod


def emit_object(mod) -> bytes:
    return target_machine().emit_object(mod)


def emit_assembly(mod) -> str:
    return target_machine().emit_assembly(mod)


def cache_dir() -> str:
    return cachedir.cache_dir()


def target_id() -> str:
    """What the object code depends on besides its IR: LLVM, host CPU, code generator."""
    global _SOURCE_HASH
    if _SOURCE_HASH is None:
        _SOURCE_HASH = _source_hash()
    cpu, features = host_cpu()
    return "|".join((CODEGEN_VERSION, _SOURCE_HASH, ".".join(map(str, llvm.llvm_version_info)), cpu, features))


def cache_key(loop_ir_text: str, version: str) -> str:
    global _SOURCE_HASH
    if _SOURCE_HASH is None:
        _SOURCE_HASH = _source_hash()
    cpu, features = host_cpu()
    h = hashlib.sha256()
    for part in (loop_ir_text, version, CODEGEN_VERSION, _SOURCE_HASH, ".".join(map(str, llvm.llvm_version_info)),
                 cpu, features):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


def cache_read(key: str):
    """(object bytes, metadata dict) or None."""
    data = cachedir.read(key + ".o")
    if data is None:
        return None
    if not data.startswith(_MAGIC) or len(data) < len(_MAGIC) + 8:
        return None
    (n,) = struct.unpack("<Q", data[len(_MAGIC): len(_MAGIC) + 8])
    start = len(_MAGIC) + 8
    try:
        meta = json.loads(data[start: start + n].decode())
    except ValueError:
        return None
    obj = data[start + n:]
    # a damaged object file could crash the linker: check it before use
    if not isinstance(meta, dict) or meta.get("sha256") != hashlib.sha256(obj).hexdigest():
        return None
    return obj, meta


def blob_read(name: str):
    """The bytes of cache file `name`, or None (irc/cachedir.py: private folder only)."""
    return cachedir.read(name)


def blob_write(name: str, data: bytes) -> None:
    """Write cache file `name` atomically (irc/cachedir.py)."""
    cachedir.write(name, data)


def cache_write(key: str, obj: bytes, meta: dict) -> None:
    head = json.dumps(dict(meta, sha256=hashlib.sha256(obj).hexdigest())).encode()
    blob_write(key + ".o", _MAGIC + struct.pack("<Q", len(head)) + head + obj)


class Linked:
    """An MCJIT engine holding one object file; addresses by symbol name."""

    def __init__(self, obj: bytes):
        # An MCJIT engine owns (and frees) its target machine: give it its own.
        tm = _new_target_machine()
        self.engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), tm)
        self.engine.add_object_file(llvm.ObjectFileRef.from_data(obj))
        self.engine.finalize_object()

    def address(self, name: str) -> int:
        a = self.engine.get_function_address(name)
        if not a:
            raise KeyError(name)
        return a


def linked(key: str, obj: bytes) -> Linked:
    with _lock:
        l = _ENGINES.get(key)
        if l is None:
            l = Linked(obj)
            _ENGINES[key] = l
        return l


def cached_engine(key: str):
    return _ENGINES.get(key)
