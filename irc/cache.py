"""The whole-module cache of irc.load / irc.loads: a cached load skips the
front end, every pass and lower-to-loops, and maps the stored object code and
call metadata.

Key: a SHA-256 of the source text, its file name, the defines, the backend,
irc's version, a stamp of irc's own code (size and mtime of every source file
of the installed package, so editing the compiler invalidates entries) and the
target (the cpu backend's: LLVM version, host CPU and features, code
generator's hash; runtime/llvm/jit.py target_id).

Entry: `<key>.irm` in the cache dir (runtime/llvm/jit.py cache_dir:
$XDG_CACHE_HOME/irc or ~/.cache/irc, created 0700), JSON: the entry functions'
signatures, the shared variables (their declarations as tg IR text, so the
initial values are computed as on a cold load: random initialisers from the
seed, `load(...)` files read again), the module's seed and the backend's part
(LLVMBackend.cache_entry: call specs, assertion messages, the object code's
key; the object itself is the `.o` file of the object cache). Written
atomically (temporary file + rename). Anything missing, unreadable,
malformed or not fitting is a miss: the module is compiled and the entry
rewritten, never an error.

Values: `<key>.irv` keeps the initial values of the shared variables for the
module's seed, so that a cached load neither imports numpy.random nor draws
them again (a 784x500 glorot_uniform matrix: ~15 ms). Written only when no
variable is read from a file (`load(...)`: the file may change) and they
take at most VALUES_LIMIT bytes together; read only for the seed they were
drawn with, checked (magic, sizes, dtypes, shapes, CRC-32), anything else
computed as on a cold load.

Only the cpu backend is cached here (the interpreter runs the IR itself, the
OpenCL backend has its own program cache).

Imports irc.ir, irc.runtime (binding, llvm.jit) and the standard library.
"""

from __future__ import annotations

import json
import math
import os

FORMAT = "irc-module-1"
_STAMP = None


def _code_stamp() -> str:
    """Size and mtime of every source file of irc's packages (computed once)."""
    global _STAMP
    if _STAMP is None:
        import importlib.util

        import irc
        from irc.runtime.llvm.jit import sha256

        h = sha256(irc.__version__.encode())
        for pkg in ("irc", "irc.passes", "irc.runtime", "irc.grammar"):
            spec = importlib.util.find_spec(pkg)
            for top in (spec and spec.submodule_search_locations) or ():
                for dirpath, dirnames, files in os.walk(top):
                    dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
                    for name in sorted(files):
                        if name.endswith((".py", ".lark")):
                            st = os.stat(os.path.join(dirpath, name))
                            h.update(f"{dirpath}/{name}:{st.st_size}:{st.st_mtime_ns};".encode())
        _STAMP = h.hexdigest()
    return _STAMP


def module_key(text: str, filename: str, define: dict, backend: str) -> str:
    from irc.runtime.llvm import jit

    h = jit.sha256()
    defines = json.dumps(sorted((k, v) for k, v in (define or {}).items()))
    for part in (FORMAT, text, filename, defines, backend, _code_stamp(), jit.target_id()):
        h.update(part.encode("utf-8", "surrogatepass"))
        h.update(b"\0")
    return h.hexdigest()


def read(key: str):
    """The entry dict for key, or None (missing, unreadable or malformed)."""
    from irc.runtime.llvm import jit

    data = jit.blob_read(key + ".irm")
    if data is None:
        return None
    try:
        entry = json.loads(data.decode("utf-8"))
    except ValueError:
        return None
    if not isinstance(entry, dict) or entry.get("format") != FORMAT or entry.get("key") != key:
        return None
    return entry


VALUES_LIMIT = 16 << 20  # bytes of initial values kept per entry
_VALUES_MAGIC = b"IRCVAL1\n"
_CACHEABLE_INITS = ("zeros", "ones", "full", "normal", "uniform", "glorot_uniform")


def write_values(key: str, seed: int, inits: list, state: dict) -> None:
    """Keep the initial values `state` ({name: array}) drawn with `seed`; `inits`:
    (name, initialiser) of every shared variable, in declaration order."""
    import struct
    import zlib

    if not inits or any(init not in _CACHEABLE_INITS for _, init in inits):
        return
    arrays, chunks, at = [], [], 0
    for name, _ in inits:
        a = state.get(name)
        if a is None or not a.flags.c_contiguous:
            return
        if at + a.nbytes > VALUES_LIMIT:
            return  # (before copying it: a variable can be gigabytes)
        arrays.append([name, a.dtype.str, list(a.shape), at, a.nbytes])
        chunks.append(a.tobytes())
        at += a.nbytes
    body = b"".join(chunks)
    head = json.dumps({"seed": seed, "arrays": arrays, "crc32": zlib.crc32(body)}).encode()
    from irc.runtime.llvm import jit

    jit.blob_write(key + ".irv", _VALUES_MAGIC + struct.pack("<Q", len(head)) + head + body)


def read_values(key: str, seed: int, types: list):
    """{name: read-only array} kept for this key and seed, or None. `types`:
    (name, TensorType) of every shared variable, in declaration order."""
    import struct
    import zlib

    from irc.runtime.llvm import jit

    data = jit.blob_read(key + ".irv")
    m = len(_VALUES_MAGIC)
    if data is None or not data.startswith(_VALUES_MAGIC) or len(data) < m + 8:
        return None
    try:
        (n,) = struct.unpack("<Q", data[m : m + 8])
        head = json.loads(data[m + 8 : m + 8 + n].decode("utf-8"))
        body = memoryview(data)[m + 8 + n :]
        if head["seed"] != seed or len(head["arrays"]) != len(types):
            return None
        if zlib.crc32(body) != head["crc32"]:
            return None
        import numpy as np

        from irc.runtime.state import memory_limit

        limit = memory_limit()  # (a variable over it: drawn again, so its error is raised)
        out = {}
        for (name, t), (name2, dt, shape, at, nbytes) in zip(types, head["arrays"]):
            dt = np.dtype(dt)
            shape = tuple(shape)
            if name != name2 or dt != t.dtype.np or shape != tuple(t.shape):
                return None
            if at < 0 or at + nbytes > len(body) or nbytes != dt.itemsize * math.prod(shape):
                return None
            if nbytes > limit:
                return None
            out[name] = np.frombuffer(body, dt, nbytes // dt.itemsize, at).reshape(shape)
        return out
    except (ValueError, TypeError, KeyError, AttributeError, struct.error):
        return None


def write(key: str, entry: dict) -> None:
    from irc.runtime.llvm import jit

    try:
        data = json.dumps(dict(entry, format=FORMAT, key=key)).encode("utf-8")
    except (TypeError, ValueError):
        return  # a default that is not plain data: such modules are not cached
    jit.blob_write(key + ".irm", data)
