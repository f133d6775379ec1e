"""LLVM machinery: the host target machine, the new pass manager at O3 for the
host CPU and its features, object emission, MCJIT loading of object code, and
the on-disk compile cache.

Optimisation is chosen per function (compile_object):
  - glue (thread-pool thunks, workspace sizes, the blocked-GEMM driver, parfor,
    a loop-free entry function) is marked `optnone`: the pipeline skips it and
    code generation uses the fast instruction selector (tiered);
  - the kernels (outlined loop nests) go into a module of their own with the
    full O3 pipeline for the host CPU and its vector width (vectoriser with
    interleaving, unrolling);
  - an entry function with loops of its own (small static loops, host loops
    around kernels) goes with the glue into a second module whose pipeline
    vectorises but neither interleaves nor unrolls (split_module).
The two objects are linked into one MCJIT engine. For the MLP step this halves
LLVM's time (0.44 -> 0.22 s of CPU) at the same kernel speed. Compiling on
several threads does not help: llvmlite holds one global lock around every
call into LLVM (two threads compiling two modules take as long as one after
the other), and llvmlite exposes no loop-vectoriser pass for a hand-picked
pipeline, so the kernels keep the standard O3 pipeline.

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

import json
import os
import re
import struct
import threading

import llvmlite.binding as llvm

from irc import cachedir

try:  # CPython's own SHA-256: `import hashlib` loads OpenSSL's first (~3-4 ms of start-up)
    from _sha256 import sha256  # (3.11)
except ImportError:  # pragma: no cover - other versions and implementations
    try:
        from _sha2 import sha256  # (3.12+)
    except ImportError:
        from hashlib import sha256

CODEGEN_VERSION = "4"  # 2: tiers, entries and loop nests in two objects; 3: loop-free entries;
# 4: glue in an object of its own (fast code generator)


def _source_hash() -> str:
    """A hash of the code generator's own source: editing it invalidates the cache."""
    h = sha256()
    here = os.path.dirname(os.path.abspath(__file__))
    for name in (
        "codegen.py",
        "scalar.py",
        "parallel.py",
        "transcendentals.py",
        "jit.py",
        "threads.py",
    ):
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


# Functions the code generator emits around the kernels: the thread-pool thunk of a
# kernel, the workspace-size function of an entry, the blocked-GEMM driver and its
# pieces, the parallel-for dispatcher, a kernel's launcher (its thread decision) and
# the segments of a long entry (codegen.py). They run once per call (or once per
# block of a product), never in an inner loop, so they are compiled without
# optimisation.
_GLUE_SUFFIXES = (".thunk", ".ws", ".launch", ".part")
_GLUE_PREFIXES = ("__irc_gemm_", "__irc_parfor", "__irc_scalar_")

_LABEL = r'^"?([^":\s]+)"?:'  # a basic block's label line
_TARGET = r'label %"?([^",\s\]]+)"?'  # a branch target


def _has_cycle(body: list) -> bool:
    """Whether the control-flow graph of a function's body lines has a cycle (a loop)."""
    succ, order, cur = {}, [], None
    label, target = re.compile(_LABEL), re.compile(_TARGET)  # (re caches them)
    for ln in body:
        m = label.match(ln)
        if m:
            cur = m.group(1)
            order.append(cur)
            succ[cur] = []
        elif "label %" in ln:
            if cur is None:  # an unnamed entry block
                cur = ""
                order.append(cur)
                succ[cur] = []
            succ[cur].extend(target.findall(ln))
    if not order:
        return False
    state = dict.fromkeys(order, 0)  # 0 unseen, 1 on the stack, 2 done
    stack = [(order[0], iter(succ[order[0]]))]
    state[order[0]] = 1
    while stack:
        node, it = stack[-1]
        nxt = next(it, None)
        if nxt is None:
            state[node] = 2
            stack.pop()
        elif state.get(nxt) == 1:
            return True
        elif state.get(nxt) == 0:
            state[nxt] = 1
            stack.append((nxt, iter(succ[nxt])))
    return False


def _function_spans(lines: list):
    """(first line, closing line) of each function definition of IR text lines."""
    k = 0
    while k < len(lines):
        if lines[k].startswith("define "):
            j = k + 1
            while j < len(lines) and lines[j] != "}":
                j += 1
            yield k, j
            k = j + 1
        else:
            k += 1


def _fn_attrs(head: str) -> list:
    """The function attributes of a `define` line."""
    return head.rstrip().rstrip("{").rpartition(")")[2].split()


def glue_functions(ir_text: str) -> set:
    """Names of the functions of an LLVM IR text compiled without optimisation: the
    code generator's glue (thunks, workspace sizes, the GEMM driver, parfor), and an
    externally visible entry function without loops (it only calls kernels). A
    function with a loop of its own, and any other internal helper (which an
    optimised loop may call or inline, such as integer powers), is optimised."""
    out = set()
    lines = ir_text.splitlines()
    for k, j in _function_spans(lines):
        ln = lines[k]
        name = ln.split("@", 1)[1].split("(", 1)[0].strip('"')
        generated = name.endswith(_GLUE_SUFFIXES) or name.startswith(_GLUE_PREFIXES)
        entry = not ln.startswith("define internal")
        if generated or (entry and not _has_cycle(lines[k + 1 : j])):
            out.add(name)
    return out


def tiered(ir_text: str, glue: set | None = None) -> str:
    """The IR text with its glue functions (glue_functions) marked `optnone noinline`:
    the O3 pipeline then skips them and code generation uses the fast instruction
    selector for them. In the MLP step they are over half of the code and of the
    optimisation and code generation time; the loop nests keep the full pipeline."""
    if glue is None:
        glue = glue_functions(ir_text)
    if not glue:
        return ir_text
    out = []
    for ln in ir_text.splitlines():
        if ln.startswith("define ") and ln.split("@", 1)[1].split("(", 1)[0].strip('"') in glue:
            brace = ln.rstrip().endswith("{")  # `define ... {` on one line
            head, sep, attrs = ln.rstrip().rstrip("{").rpartition(")")
            words = attrs.split()
            for w in ("noinline", "optnone"):
                if w not in words:
                    words.append(w)
            ln = head + sep + " " + " ".join(words) + (" {" if brace else "")
        out.append(ln)
    return "\n".join(out) + "\n"


def _pto(loop_tier: bool):
    """Pipeline tuning of a module: the loop nests' module gets everything (vectoriser
    with interleaving, unrolling: small constant loops inside a nest, a convolution
    window, must be unrolled); the entries' module vectorises its loops but neither
    interleaves nor unrolls them (most of its loops run once per call over a small
    static range, and its share of the compile time halves)."""
    pto = llvm.create_pipeline_tuning_options(speed_level=3)
    pto.loop_vectorization = True
    pto.slp_vectorization = True
    pto.loop_interleaving = loop_tier
    pto.loop_unrolling = loop_tier
    return pto


def _run_pipeline(mod, loop_tier: bool = True, tm=None):
    pb = llvm.create_pass_builder(tm or target_machine(), _pto(loop_tier))
    pb.getModulePassManager().run(mod, pb)
    return mod


def optimize(ir_text: str, tiers: bool = True):
    """Parse, verify and optimise (new pass manager, O3, host CPU) as one module: a
    ModuleRef. With `tiers`, glue functions are left unoptimised (see tiered).
    (Compiled code comes from compile_object, which also splits the module.)"""
    target_machine()
    if tiers:
        ir_text = tiered(ir_text)
    mod = llvm.parse_assembly(ir_text)
    mod.verify()
    return _run_pipeline(mod)


_SERIAL = re.compile(r"\.s\d+$")  # codegen's name of a loop nest run on the calling thread


def _define_name(ln: str) -> str:
    return ln.split("@", 1)[1].split("(", 1)[0].strip('"')


def split_module(ir_text: str, glue: set | None = None):
    """(entries' text, loop nests' text) of a tiered IR text, or None when there is
    nothing to split. The loop-nest module defines the kernels (internal `noinline`
    functions that are not glue, but for the nests run on the calling thread, f.sN);
    the entries' module the entry functions, the glue and the f.sN. Each declares what it calls in the other, and both become external
    symbols, resolved when the two objects are linked into one MCJIT engine (an
    engine resolves its own symbols first, so equal names in other modules do not
    matter). Small internal helpers (integer powers) are copied into both, so they
    stay inlinable; private constants are copied too (unused ones are dropped)."""
    lines = ir_text.splitlines()
    if glue is None:  # (optimize_parts passes the set tiered used: the same, found once)
        glue = glue_functions(ir_text)
    funcs = []  # (first line, last line, home: "K", "E" or "both")
    names = []
    for k, j in _function_spans(lines):
        ln = lines[k]
        name = _define_name(ln)
        internal = ln.startswith("define internal ")
        if name in glue or not internal:
            home = "E"
        elif "noinline" in _fn_attrs(ln):
            # a nest run on the calling thread (codegen's f.sN) was part of its
            # entry before it became a function: it keeps the entries' pipeline,
            # so its results (an interleaved reduction's order) do not change
            home = "E" if _SERIAL.search(name) else "K"
        else:
            home = "both"
        funcs.append((k, j, home))
        names.append(name)
    homes = {f[2] for f in funcs}
    entries_with_loops = [n for n, f in zip(names, funcs) if f[2] == "E" and n not in glue]  # (f.sN too)
    if "K" not in homes or not entries_with_loops:
        return None
    return _distribute(lines, funcs, ("E", "K"))


def _distribute(lines: list, funcs: list, parts: tuple) -> tuple:
    """The texts of `parts` modules made of IR text lines whose functions are
    `funcs` [(first line, closing line, home)]: a function is defined (made
    external) in its home part and declared in the others, or copied whole into
    every part when its home is "both"; every other line (types, globals,
    declarations, metadata) goes to every part."""
    out = {p: [] for p in parts}
    starts = {f[0]: f for f in funcs}
    k = 0
    while k < len(lines):
        f = starts.get(k)
        if f is None:
            for p in parts:
                out[p].append(lines[k])
            k += 1
            continue
        a, b, home = f
        for p in parts:
            if home == "both":
                out[p].extend(lines[a : b + 1])
            elif home == p:
                out[p].append(lines[a].replace("define internal ", "define ", 1))
                out[p].extend(lines[a + 1 : b + 1])
            else:
                head = lines[a].rstrip().rstrip("{").rpartition(")")
                decl = (head[0] + head[1])[len("define ") :].removeprefix("internal ")
                out[p].append("declare " + decl)
        k = b + 1
    return tuple("\n".join(out[p]) + "\n" for p in parts)


def split_glue(entries_text: str):
    """(glue's text, the rest's text) of the entries' module of split_module, or
    None when it has no glue or nothing else. The glue functions (`optnone`,
    see tiered) are defined in the first and declared in the second, and the
    other way round for the rest; inlinable internal helpers are copied into
    both. split_module already made every function of the entries' module
    external, so the rest's optimisation sees exactly what it saw with the glue
    beside it (the glue is never optimised, and calls into the rest only
    through external symbols)."""
    lines = entries_text.splitlines()
    funcs = []  # (first line, closing line, home: "G", "R" or "both")
    for k, j in _function_spans(lines):
        ln = lines[k]
        attrs = _fn_attrs(ln)
        if "optnone" in attrs:
            home = "G"
        elif ln.startswith("define internal ") and "noinline" not in attrs:
            home = "both"
        else:
            home = "R"
        funcs.append((k, j, home))
    homes = {f[2] for f in funcs}
    if "G" not in homes or "R" not in homes:
        return None
    if any(lines[a].startswith("define internal ") for a, _, h in funcs if h != "both"):
        return None  # (not the entries' module of split_module: leave it whole)
    return _distribute(lines, funcs, ("G", "R"))


# The name of an optimised module that holds only glue: emit_object generates its
# code with the fast code generator (codegen level 0: fast register allocation, no
# scheduling). Glue is `optnone`, so the O3 code generator already selects its
# instructions with FastISel and skips its machine optimisations; the level only
# saves the rest of the pipeline's work (a third of the entries' code generation
# time in the MLP step). `irc build` links the parts into one module whose name is
# not this one: the library's glue comes from the O3 code generator.
GLUE_MODULE = "irc.glue"


def optimize_parts(ir_text: str, tm=None) -> list:
    """The optimised modules of an IR text: [glue, entries, loop nests] after tiered,
    split_module and split_glue, [entries, loop nests] when the entries' module
    has no glue, or [one module] when it does not split. `tm`: the target machine
    (default: the host's); `irc build` (aot.py) links the parts into one module, so
    that a library computes exactly what the JIT computes."""
    if tm is None:
        target_machine()
    glue = glue_functions(ir_text)
    text = tiered(ir_text, glue)
    parts = split_module(text, glue)
    if parts is None:
        mod = llvm.parse_assembly(text)
        mod.verify()
        return [_run_pipeline(mod, True, tm)]
    tiers = [(parts[0], False, None), (parts[1], True, None)]
    glue = split_glue(parts[0])
    if glue is not None:
        tiers[:1] = [(glue[0], False, GLUE_MODULE), (glue[1], False, None)]
    mods = []
    for part, loop_tier, name in tiers:
        mod = llvm.parse_assembly(part)
        mod.verify()
        if name is not None:
            mod.name = name
        mods.append(_run_pipeline(mod, loop_tier, tm))
    return mods


_PARTS = b"IRCPARTS"


def pack_objects(objs: list) -> bytes:
    """One object, as is, or several in a container Linked unpacks."""
    if len(objs) == 1:
        return objs[0]
    head = _PARTS + struct.pack("<Q", len(objs)) + b"".join(struct.pack("<Q", len(o)) for o in objs)
    return head + b"".join(objs)


def unpack_objects(data: bytes) -> list:
    if not data.startswith(_PARTS):
        return [data]
    n_at = len(_PARTS)
    if len(data) < n_at + 8:
        raise CacheMiss("truncated object container")
    (n,) = struct.unpack("<Q", data[n_at : n_at + 8])
    sizes_at = n_at + 8
    if n > 64 or len(data) < sizes_at + 8 * n:
        raise CacheMiss("malformed object container")
    sizes = struct.unpack(f"<{n}Q", data[sizes_at : sizes_at + 8 * n])
    at = sizes_at + 8 * n
    if at + sum(sizes) != len(data):
        raise CacheMiss("malformed object container")
    out = []
    for size in sizes:
        out.append(data[at : at + size])
        at += size
    return out


def compile_object(ir_text: str) -> bytes:
    """Object code of an LLVM IR text: tiered, split into the entries' and the loop
    nests' modules, each optimised with its own pipeline (see _pto), emitted and
    packed (pack_objects) for Linked."""
    return pack_objects([emit_object(m) for m in optimize_parts(ir_text)])


_GLUE_TM = None


def _tm_for(mod):
    """The target machine that generates a module's code: the fast code generator
    for a glue module of optimize_parts, the shared O3 one for any other."""
    global _GLUE_TM
    if mod.name != GLUE_MODULE:
        return target_machine()
    if _GLUE_TM is None:
        target_machine()
        cpu, features = host_cpu()
        target = llvm.Target.from_triple(llvm.get_process_triple())
        _GLUE_TM = target.create_target_machine(
            cpu=cpu, features=features, opt=0, codemodel="jitdefault"
        )
    return _GLUE_TM


def emit_object(mod) -> bytes:
    return _tm_for(mod).emit_object(mod)


def emit_assembly(mod) -> str:
    return _tm_for(mod).emit_assembly(mod)


def cache_dir() -> str:
    return cachedir.cache_dir()


def target_id() -> str:
    """What the object code depends on besides its IR: LLVM, host CPU, code generator."""
    global _SOURCE_HASH
    if _SOURCE_HASH is None:
        _SOURCE_HASH = _source_hash()
    cpu, features = host_cpu()
    return "|".join(
        (CODEGEN_VERSION, _SOURCE_HASH, ".".join(map(str, llvm.llvm_version_info)), cpu, features)
    )


def cache_key(loop_ir_text: str, version: str) -> str:
    global _SOURCE_HASH
    if _SOURCE_HASH is None:
        _SOURCE_HASH = _source_hash()
    cpu, features = host_cpu()
    h = sha256()
    for part in (
        loop_ir_text,
        version,
        CODEGEN_VERSION,
        _SOURCE_HASH,
        ".".join(map(str, llvm.llvm_version_info)),
        cpu,
        features,
    ):
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
    (n,) = struct.unpack("<Q", data[len(_MAGIC) : len(_MAGIC) + 8])
    start = len(_MAGIC) + 8
    try:
        meta = json.loads(data[start : start + n].decode())
    except ValueError:
        return None
    obj = data[start + n :]
    # a damaged object file could crash the linker: check it before use
    if not isinstance(meta, dict) or meta.get("sha256") != sha256(obj).hexdigest():
        return None
    try:
        unpack_objects(obj)  # (several objects: their container must be whole)
    except CacheMiss:
        return None
    return obj, meta


def blob_read(name: str):
    """The bytes of cache file `name`, or None (irc/cachedir.py: private folder only)."""
    return cachedir.read(name)


def blob_write(name: str, data: bytes) -> None:
    """Write cache file `name` atomically (irc/cachedir.py)."""
    cachedir.write(name, data)


def cache_write(key: str, obj: bytes, meta: dict) -> None:
    head = json.dumps(dict(meta, sha256=sha256(obj).hexdigest())).encode()
    blob_write(key + ".o", _MAGIC + struct.pack("<Q", len(head)) + head + obj)


class Linked:
    """An MCJIT engine holding one object file; addresses by symbol name."""

    def __init__(self, obj: bytes):
        # An MCJIT engine owns (and frees) its target machine: give it its own.
        tm = _new_target_machine()
        self.engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), tm)
        for part in unpack_objects(obj):  # (the parts call each other: resolved on finalize)
            self.engine.add_object_file(llvm.ObjectFileRef.from_data(part))
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
